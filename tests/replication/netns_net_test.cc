// netns_net_test.cc: one end-to-end run between two hosts, each a network
// namespace created by the test (ip netns add, a veth pair with 10.x
// addresses that exist only inside the two namespaces). The real binaries
// run on each side: `ferry serve` in one namespace, `ferry push`, `ferry
// list` and `ferry restore` in the other, with certificates from `ferry
// certs` whose receiver SAN holds the receiver's address. The restored tree
// must equal the source byte for byte. Skipped when not root or when the
// kernel refuses network namespaces; the namespaces are deleted even when
// the test fails.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "tests/replication/ferry_child.h"
#include "tests/testing/testing.h"

namespace ferry {
namespace {

namespace fs = std::filesystem;
using ferry::testing::ChildProcess;

constexpr int kServeStartMs = 20'000;

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr
};

CommandResult run_command(const std::string& cmd) {
  CommandResult r;
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  for (std::size_t n; (n = std::fread(buf, 1, sizeof(buf), p)) > 0;) r.output.append(buf, n);
  int status = ::pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

std::string quote(const std::string& s) { return "'" + s + "'"; }

// Two namespaces joined by a veth pair; deleted (with the veth) on
// destruction, whatever happened in between.
class NamespacePair {
 public:
  explicit NamespacePair(int tag)
      : a_("ferry-a-" + std::to_string(tag)), b_("ferry-b-" + std::to_string(tag)),
        subnet_("10.213." + std::to_string(tag % 250) + ".") {}
  ~NamespacePair() {
    if (added_a_) run_command("ip netns del " + a_);
    if (added_b_) run_command("ip netns del " + b_);
  }

  // Empty on success, else why the namespaces could not be made.
  std::string create() {
    CommandResult r = run_command("ip netns add " + a_);
    if (r.exit_code != 0) return "ip netns add refused: " + r.output;
    added_a_ = true;
    r = run_command("ip netns add " + b_);
    if (r.exit_code != 0) return "ip netns add refused: " + r.output;
    added_b_ = true;
    const std::vector<std::string> steps = {
        "ip -n " + a_ + " link add veth-a type veth peer name veth-b netns " + b_,
        "ip -n " + a_ + " addr add " + address_a() + "/24 dev veth-a",
        "ip -n " + b_ + " addr add " + address_b() + "/24 dev veth-b",
        "ip -n " + a_ + " link set lo up",
        "ip -n " + b_ + " link set lo up",
        "ip -n " + a_ + " link set veth-a up",
        "ip -n " + b_ + " link set veth-b up",
    };
    for (const auto& s : steps) {
      r = run_command(s);
      if (r.exit_code != 0) return s + ": " + r.output;
    }
    return "";
  }

  const std::string& a() const { return a_; }
  const std::string& b() const { return b_; }
  std::string address_a() const { return subnet_ + "1"; }
  std::string address_b() const { return subnet_ + "2"; }

 private:
  std::string a_, b_, subnet_;
  bool added_a_ = false, added_b_ = false;
};

void write_tree(const fs::path& root, std::uint64_t seed) {
  fs::create_directories(root / "model");
  for (int i = 0; i < 4; ++i) {
    ferry::testing::write_file(root / "model" / ("w" + std::to_string(i) + ".bin"),
                               ferry::testing::normal_floats(250'000, 2, true, 0.02, seed + i));
  }
  ferry::testing::write_file(root / "model/empty", {});
  ferry::testing::write_file(root / "config.json", ferry::testing::random_bytes(1234, seed + 9));
}

TEST(NetnsTest, PushAndRestoreBetweenTwoNamespaces) {
  if (::geteuid() != 0) GTEST_SKIP() << "creating network namespaces needs root";
  if (run_command("ip netns list").exit_code != 0)
    GTEST_SKIP() << "the ip command or netns support is missing";

  ferry::testing::TempDir dir;
  NamespacePair ns(static_cast<int>(::getpid()));
  std::string why = ns.create();
  if (!why.empty()) GTEST_SKIP() << "network namespaces refused here: " << why;
  const std::string bin = FERRY_BIN;
  fs::path certs = dir.path() / "certs";
  CommandResult r = run_command(quote(bin) + " certs --dir=" + quote(certs.string()) +
                                " --hosts=host-a --receiver_name=" + ns.address_a());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string tls = " --ca=" + quote((certs / "ca.pem").string()) +
                          " --cert=" + quote((certs / "host-host-a.pem").string()) +
                          " --key=" + quote((certs / "host-host-a.key").string());
  ASSERT_TRUE(fs::exists(certs / "host-host-a.pem")) << "ferry certs laid out: " << r.output;

  auto serve = ChildProcess::spawn(
      {"ip", "netns", "exec", ns.a(), bin, "serve", "--store=" + (dir.path() / "store").string(),
       "--ca=" + (certs / "ca.pem").string(), "--cert=" + (certs / "receiver.pem").string(),
       "--key=" + (certs / "receiver.key").string(), "--listen=" + ns.address_a() + ":0"},
      dir.path() / "serve.log");
  ASSERT_TRUE(serve.is_ok()) << serve.status().to_string();
  auto line = serve->wait_for_line("listening on", kServeStartMs);
  ASSERT_TRUE(line.is_ok()) << line.status().to_string();
  std::uint16_t port = ferry::testing::port_of_listening_line(*line);
  ASSERT_NE(port, 0) << *line;
  const std::string target = ns.address_a() + ":" + std::to_string(port);
  std::printf("[netns] receiver in %s at %s, sender in %s (%s)\n", ns.a().c_str(), target.c_str(),
              ns.b().c_str(), ns.address_b().c_str());

  // The receiver's address exists only inside the namespaces.
  CommandResult outside = run_command(
      "timeout 5 bash -c " + quote("exec 3<>/dev/tcp/" + ns.address_a() + "/" + std::to_string(port)));
  EXPECT_NE(outside.exit_code, 0) << "the receiver was reachable from the root namespace";

  fs::path src = dir.path() / "ckpt";
  write_tree(src, ferry::testing::test_seed());
  const std::string in_b = "ip netns exec " + ns.b() + " " + quote(bin);
  r = run_command(in_b + " push " + quote(src.string()) + " --to=" + target + tls +
                  " --name=netns-1 --streams=2 --progress=false");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::printf("[netns] push: %s\n", r.output.c_str());

  r = run_command(in_b + " list --from=" + target + tls);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("netns-1"), std::string::npos) << r.output;

  fs::path out = dir.path() / "restored";
  r = run_command(in_b + " restore netns-1 --from=" + target + " --to=" + quote(out.string()) + tls +
                  " --progress=false");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::size_t files = 0;
  for (const auto& e : fs::recursive_directory_iterator(src)) {
    if (!e.is_regular_file()) continue;
    ++files;
    fs::path rel = fs::relative(e.path(), src);
    ASSERT_TRUE(fs::exists(out / rel)) << rel;
    EXPECT_TRUE(ferry::testing::read_file(e.path()) == ferry::testing::read_file(out / rel)) << rel;
  }
  EXPECT_EQ(files, 6u);
  serve->kill_and_wait(SIGTERM);
}

}  // namespace
}  // namespace ferry
