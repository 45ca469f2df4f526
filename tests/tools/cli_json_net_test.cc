// cli_json_net_test.cc: `ferry serve`, `push`, `list` and `restore` as
// child processes over real mutual TLS on loopback: two checkpoint
// directories of one job with the same step (a DCP one and a safetensors
// export) both commit under their own names, `list --job` shows one job,
// and --json prints one JSON object per result line that scripts parse.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "replication/cert_gen.h"
#include "tests/replication/ferry_child.h"
#include "tests/testing/testing.h"
#include "tests/tools/ferry_cli.h"

namespace ferry {
namespace {

namespace fs = std::filesystem;

using cli_test::CliRun;
using cli_test::ferry;
using cli_test::json_lines;
using cli_test::quote;
using testing::ChildProcess;

constexpr int kServeStartMs = 20'000;

class CliJsonNetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    replication::CertSetOptions co;
    co.hosts = {"host-a"};
    auto certs = replication::create_cert_set(dir_ / "pki", co);
    ASSERT_TRUE(certs.is_ok()) << certs.status().to_string();
    certs_ = *certs;
    auto child =
        ChildProcess::spawn({FERRY_BIN, "serve", "--store=" + (dir_ / "store").string(),
                             "--ca=" + certs_.ca_cert.string(), "--cert=" + certs_.receiver_cert.string(),
                             "--key=" + certs_.receiver_key.string(), "--listen=127.0.0.1:0"},
                            dir_ / "serve.log");
    ASSERT_TRUE(child.is_ok()) << child.status().to_string();
    auto line = child->wait_for_line("listening on", kServeStartMs);
    ASSERT_TRUE(line.is_ok()) << line.status().to_string();
    serve_.emplace(std::move(child).value());
    target_ = "127.0.0.1:" + std::to_string(testing::port_of_listening_line(*line));
    tls_ = " --ca=" + quote(certs_.ca_cert) + " --cert=" + quote(certs_.host_cert("host-a")) +
           " --key=" + quote(certs_.host_key("host-a"));
  }
  void TearDown() override {
    if (serve_) serve_->kill_and_wait(SIGTERM);
  }
  fs::path checkpoint(const std::string& name, std::uint64_t seed) {
    const fs::path d = dir_ / "ckpt" / name;
    fs::create_directories(d);
    testing::write_file(d / "model.bin", testing::random_bytes(200'000, seed));
    return d;
  }

  testing::TempDir dir_;
  replication::CertSet certs_;
  std::optional<ChildProcess> serve_;
  std::string target_, tls_;
};

TEST_F(CliJsonNetTest, TwoCheckpointKindsOfOneStepBothCommitAndListAsJson) {
  const fs::path dcp = checkpoint("step-100", 1);
  const fs::path st = checkpoint("step-100-safetensors", 2);
  std::vector<std::string> names;
  for (const fs::path& d : {dcp, st}) {
    CliRun push = ferry("push " + quote(d) + " --to=" + target_ + tls_ + " --job=llama --step=100 --json");
    ASSERT_EQ(push.code, 0) << push.out;
    auto lines = json_lines(push.out);
    ASSERT_FALSE(lines.empty()) << push.out;
    const nlohmann::json& r = lines.back();
    EXPECT_EQ(r["type"], "push") << push.out;
    EXPECT_EQ(r["target"], target_);
    EXPECT_EQ(r["logical_bytes"], 200'000);
    names.push_back(r["snapshot"]);
  }
  EXPECT_EQ(names, (std::vector<std::string>{"llama-step-100", "llama-step-100-safetensors"}));
  CliRun other = ferry("push " + quote(checkpoint("step-1", 3)) + " --to=" + target_ + tls_ + " --job=gpt");
  ASSERT_EQ(other.code, 0) << other.out;

  CliRun list = ferry("list --from=" + target_ + tls_ + " --job=llama --json");
  ASSERT_EQ(list.code, 0) << list.out;
  auto listed = json_lines(list.out);
  ASSERT_EQ(listed.size(), 2u) << list.out;
  for (const auto& j : listed) {
    EXPECT_EQ(j["type"], "snapshot");
    EXPECT_EQ(j["job"], "llama");
    EXPECT_EQ(j["step"], 100);
  }
  CliRun table = ferry("list --from=" + target_ + tls_);
  ASSERT_EQ(table.code, 0) << table.out;
  EXPECT_NE(table.out.find("gpt-step-1"), std::string::npos) << table.out;

  CliRun restore = ferry("restore llama-step-100-safetensors --from=" + target_ + tls_ +
                         " --to=" + quote(dir_ / "out") + " --json");
  ASSERT_EQ(restore.code, 0) << restore.out;
  auto result = json_lines(restore.out);
  ASSERT_FALSE(result.empty()) << restore.out;
  EXPECT_EQ(result.back()["type"], "restore");
  EXPECT_EQ(result.back()["files"], 1);
  EXPECT_EQ(testing::read_file(dir_ / "out" / "model.bin"), testing::read_file(st / "model.bin"));
}

TEST_F(CliJsonNetTest, ScrubAndRestoreReportDamageAsCorruption) {
  const fs::path d = checkpoint("step-5", 9);
  ASSERT_EQ(ferry("push " + quote(d) + " --to=" + target_ + tls_ + " --job=j").code, 0);
  serve_->kill_and_wait(SIGTERM);
  serve_.reset();
  // Flip a byte in the middle of every pack file.
  for (const auto& e : fs::recursive_directory_iterator(dir_ / "store")) {
    if (!e.is_regular_file() || e.path().extension() != ".pack") continue;
    auto bytes = testing::read_file(e.path());
    bytes[bytes.size() / 2] ^= std::byte{0x10};
    testing::write_file(e.path(), bytes);
  }
  CliRun scrub = ferry("scrub --store=" + quote(dir_ / "store") + " --json");
  EXPECT_EQ(scrub.code, 4) << scrub.out;
  auto lines = json_lines(scrub.out);
  ASSERT_FALSE(lines.empty()) << scrub.out;
  EXPECT_EQ(lines.front()["type"], "bad_chunk") << scrub.out;
  EXPECT_EQ(lines.back()["type"], "scrub");
  EXPECT_EQ(lines.back()["clean"], false);
}

}  // namespace
}  // namespace ferry
