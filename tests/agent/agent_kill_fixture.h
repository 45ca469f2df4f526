// agent_kill_fixture.h: what the kill -9 tests of ferry-agent share
// (agent_kill_slow_test.cc, agent_kill_delta_slow_test.cc): a real `ferry
// serve` on loopback with certificates, the real ferry-agent started on a
// root and state directory (with extra flags) and its log, and the trial
// count (FERRY_KILL_TRIALS).
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <optional>
#include <random>

#include "replication/cert_gen.h"
#include "replication/restore.h"
#include "tests/agent/agent_fixture.h"
#include "tests/replication/ferry_child.h"

namespace ferry::agent::kill_testing {

namespace fs = std::filesystem;
using ferry::testing::ChildProcess;
using namespace ferry::agent::testing;

inline constexpr int kDefaultTrials = 20;
inline constexpr int kCheckpointsPerTrial = 3;
inline constexpr int kStartMs = 20'000;
inline constexpr int kDrainMs = 90'000;
inline constexpr int kMaxKillDelayMs = 1'200;
// Slow enough that a kill lands inside a push more often than not.
inline constexpr const char* kBandwidth = "--bandwidth_mbps=1";

inline int trials() {
  const char* env = std::getenv("FERRY_KILL_TRIALS");
  return env != nullptr && std::atoi(env) > 0 ? std::atoi(env) : kDefaultTrials;
}

class AgentKillTest : public ::testing::Test {
 protected:
  void SetUp() override {
    replication::CertSetOptions co;
    co.hosts = {"alpha"};
    auto certs = replication::create_cert_set(dir_ / "certs", co);
    ASSERT_TRUE(certs.is_ok()) << certs.status().to_string();
    certs_ = *certs;
    fs::create_directories(dir_ / "store");
    auto child =
        ChildProcess::spawn({FERRY_BIN, "serve", "--store=" + (dir_ / "store").string(),
                             "--ca=" + certs_.ca_cert.string(), "--cert=" + certs_.receiver_cert.string(),
                             "--key=" + certs_.receiver_key.string(), "--listen=127.0.0.1:0"},
                            dir_ / "serve.log");
    ASSERT_TRUE(child.is_ok()) << child.status().to_string();
    auto line = child->wait_for_line("listening on", kStartMs);
    ASSERT_TRUE(line.is_ok()) << line.status().to_string();
    address_ = "127.0.0.1:" + std::to_string(ferry::testing::port_of_listening_line(*line));
    serve_.emplace(std::move(child).value());
    remote_.address = address_;
    remote_.tls.ca_file = certs_.ca_cert.string();
    remote_.tls.cert_file = certs_.host_cert("alpha").string();
    remote_.tls.key_file = certs_.host_key("alpha").string();
  }

  // Starts ferry-agent watching `root` as job `job` with its state in `state`.
  std::unique_ptr<ChildProcess> start_agent(const fs::path& root, const std::string& job,
                                            const fs::path& state,
                                            const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args = {FERRY_AGENT_BIN,
                                     "--watch=" + root.string() + "=" + job,
                                     "--targets=" + address_,
                                     "--ca=" + certs_.ca_cert.string(),
                                     "--cert=" + certs_.host_cert("alpha").string(),
                                     "--key=" + certs_.host_key("alpha").string(),
                                     "--state_dir=" + state.string(),
                                     "--control_socket=" + (state / "ctl.sock").string(),
                                     "--metrics_listen=",
                                     "--nice=0",
                                     "--io_class=best-effort",
                                     "--engine=cpu",
                                     "--skip_superseded=false",
                                     "--rescan_interval_s=1",
                                     "--probe_interval_s=1",
                                     "--streams=2",
                                     kBandwidth};
    args.insert(args.end(), extra.begin(), extra.end());
    auto child = ChildProcess::spawn(args, dir_ / "agent.log");
    EXPECT_TRUE(child.is_ok()) << child.status().to_string();
    if (!child.is_ok()) return nullptr;
    auto ready = child->wait_for_line("ferry-agent: ready", kStartMs);
    EXPECT_TRUE(ready.is_ok()) << ready.status().to_string() << "\n" << log_tail();
    return std::make_unique<ChildProcess>(std::move(child).value());
  }

  // True once the target lists exactly `expected` (sorted) of `job`'s
  // snapshots, within kDrainMs.
  bool drained(const std::string& job, const std::vector<std::string>& expected) {
    return wait_until(
        [&] {
          std::vector<std::string> have;
          for (const auto& n : remote_names(remote_)) {
            if (n.rfind(job + "-", 0) == 0) have.push_back(n);
          }
          std::sort(have.begin(), have.end());
          return have == expected;
        },
        kDrainMs);
  }

  // Exactly once over the whole run: the target lists no snapshot but the
  // expected ones.
  void expect_exactly(std::vector<std::string> expected, std::uint64_t seed) {
    auto all = remote_names(remote_);
    std::sort(all.begin(), all.end());
    std::sort(expected.begin(), expected.end());
    EXPECT_EQ(all, expected) << "FERRY_TEST_SEED=" << seed;
  }

  std::string log_tail() const {
    if (!fs::exists(dir_ / "agent.log")) return "";
    auto bytes = ferry::testing::read_file(dir_ / "agent.log");
    std::string s(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    return s.size() > 6000 ? s.substr(s.size() - 6000) : s;
  }

  ferry::testing::TempDir dir_;
  replication::CertSet certs_;
  std::optional<ChildProcess> serve_;
  std::string address_;
  replication::RemoteOptions remote_;
};

}  // namespace ferry::agent::kill_testing
