// agent_kill_slow_test.cc: kill -9 of the real ferry-agent at random points
// while it replicates checkpoints to a real `ferry serve`, then a restart on
// the same state directory. Every checkpoint must end up committed exactly
// once (one snapshot per checkpoint, no other), none partial, each restoring
// byte for byte. FERRY_KILL_TRIALS sets the number of trials (20 by
// default); FERRY_TEST_SEED replays a run (the seed is printed on failure).
#include <gtest/gtest.h>

#include <memory>
#include <optional>
#include <random>

#include "replication/cert_gen.h"
#include "replication/restore.h"
#include "tests/agent/agent_fixture.h"
#include "tests/replication/ferry_child.h"

namespace ferry::agent {
namespace {

namespace fs = std::filesystem;
using ferry::testing::ChildProcess;
using namespace ferry::agent::testing;

constexpr int kDefaultTrials = 20;
constexpr int kCheckpointsPerTrial = 3;
constexpr int kStartMs = 20'000;
constexpr int kDrainMs = 90'000;
constexpr int kMaxKillDelayMs = 1'200;
// Slow enough that a kill lands inside a push more often than not.
constexpr const char* kBandwidth = "--bandwidth_mbps=1";

int trials() {
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
                                            const fs::path& state) {
    auto child = ChildProcess::spawn(
        {FERRY_AGENT_BIN, "--watch=" + root.string() + "=" + job, "--targets=" + address_,
         "--ca=" + certs_.ca_cert.string(), "--cert=" + certs_.host_cert("alpha").string(),
         "--key=" + certs_.host_key("alpha").string(), "--state_dir=" + state.string(),
         "--control_socket=" + (state / "ctl.sock").string(), "--metrics_listen=", "--nice=0",
         "--io_class=best-effort", "--engine=cpu", "--skip_superseded=false", "--rescan_interval_s=1",
         "--probe_interval_s=1", "--streams=2", kBandwidth},
        dir_ / "agent.log");
    EXPECT_TRUE(child.is_ok()) << child.status().to_string();
    if (!child.is_ok()) return nullptr;
    auto ready = child->wait_for_line("ferry-agent: ready", kStartMs);
    EXPECT_TRUE(ready.is_ok()) << ready.status().to_string() << "\n" << log_tail();
    return std::make_unique<ChildProcess>(std::move(child).value());
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

TEST_F(AgentKillTest, EveryCheckpointCommittedExactlyOnceAcrossKills) {
  const std::uint64_t seed = ferry::testing::test_seed();
  std::mt19937_64 rng(seed);
  std::vector<std::string> expected_all;
  for (int trial = 0; trial < trials(); ++trial) {
    SCOPED_TRACE("trial " + std::to_string(trial) + ", FERRY_TEST_SEED=" + std::to_string(seed));
    const std::string job = "t" + std::to_string(trial);
    const fs::path root = dir_ / "ckpt" / job;
    const fs::path state = dir_ / "state" / job;
    fs::create_directories(root);
    fs::create_directories(state);
    std::vector<std::string> expected;
    // Two checkpoints are there at start, the third appears while the
    // agent runs (and may be killed around it).
    for (int k = 1; k <= 2; ++k) {
      write_checkpoint(root / ("step-" + std::to_string(k)), seed + trial * 10 + k,
                       400'000 + rng() % 300'000);
      expected.push_back(job + "-step-" + std::to_string(k));
    }
    auto agent = start_agent(root, job, state);
    ASSERT_TRUE(agent != nullptr);
    const int kills = 1 + static_cast<int>(rng() % 2);
    for (int k = 0; k < kills; ++k) {
      std::this_thread::sleep_for(std::chrono::milliseconds(rng() % kMaxKillDelayMs));
      if (k == 0) {
        write_checkpoint(root / "step-3", seed + trial * 10 + 3, 300'000);
        expected.push_back(job + "-step-3");
        std::this_thread::sleep_for(std::chrono::milliseconds(rng() % kMaxKillDelayMs));
      }
      agent->kill_and_wait(SIGKILL);
      agent = start_agent(root, job, state);
      ASSERT_TRUE(agent != nullptr);
    }
    std::sort(expected.begin(), expected.end());
    const bool drained = wait_until(
        [&] {
          std::vector<std::string> have;
          for (const auto& n : remote_names(remote_)) {
            if (n.rfind(job + "-", 0) == 0) have.push_back(n);
          }
          std::sort(have.begin(), have.end());
          return have == expected;
        },
        kDrainMs);
    ASSERT_TRUE(drained) << log_tail();
    for (int k = 1; k <= kCheckpointsPerTrial; ++k) {
      EXPECT_TRUE(restores_identical(remote_, job + "-step-" + std::to_string(k),
                                     root / ("step-" + std::to_string(k))));
    }
    // A clean stop now leaves nothing owed: a new start pushes nothing more.
    const int st = agent->kill_and_wait(SIGTERM);
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << log_tail();
    expected_all.insert(expected_all.end(), expected.begin(), expected.end());
  }
  // The kills must have hit unfinished work (else this tests nothing): count
  // the restarts whose journal held checkpoints still owed.
  std::string log;
  {
    auto bytes = ferry::testing::read_file(dir_ / "agent.log");
    log.assign(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  }
  int resumed = 0;
  for (std::size_t at = 0; (at = log.find("requeued=", at)) != std::string::npos; at += 9) {
    resumed += log[at + 9] != '0';
  }
  std::fprintf(stderr, "[ferry] %d restarts resumed unfinished checkpoints\n", resumed);
  EXPECT_GT(resumed, 0) << log.substr(0, 8000);
  // Exactly once over the whole run: no snapshot but the expected ones.
  auto all = remote_names(remote_);
  std::sort(all.begin(), all.end());
  std::sort(expected_all.begin(), expected_all.end());
  EXPECT_EQ(all, expected_all) << "FERRY_TEST_SEED=" << seed;
}

}  // namespace
}  // namespace ferry::agent
