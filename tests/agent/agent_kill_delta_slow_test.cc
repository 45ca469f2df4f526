// agent_kill_delta_slow_test.cc: kill -9 of the real ferry-agent while it
// pushes delta snapshots (successive checkpoints of one job, drifting like
// training, each coded against the job's key snapshot), then a restart on
// the same state directory. Every checkpoint ends up committed exactly
// once, nothing partial is listed, each snapshot restores byte for byte
// (its deltas rebuilt from their bases), later checkpoints are delta
// snapshots, and a restart that finds a push started resumes it against
// the base its journal recorded. FERRY_KILL_TRIALS sets the number of
// trials (6 by default here); FERRY_TEST_SEED replays a run.
#include <gtest/gtest.h>

#include "tests/agent/agent_kill_fixture.h"

namespace ferry::agent {
namespace {

using namespace kill_testing;

constexpr int kDefaultDeltaTrials = 6;
// 6 MiB of bf16 a checkpoint: its delta snapshot takes about two seconds at
// the fixture's 1 MB/s, so most kills land inside a push.
constexpr std::size_t kElems = 3u << 20;

int delta_trials() {
  const char* env = std::getenv("FERRY_KILL_TRIALS");
  return env != nullptr && std::atoi(env) > 0 ? std::atoi(env) : kDefaultDeltaTrials;
}

// A checkpoint the agent sees complete once DONE appears (written last).
void write_drifted(const fs::path& dir, std::vector<std::byte>& weights, std::uint64_t seed) {
  ferry::testing::drift_bf16(weights, seed);
  fs::create_directories(dir);
  ferry::testing::write_bf16_safetensors(dir / "model.safetensors", weights, 4);
  ferry::testing::write_file(dir / "DONE", {});
}

std::string read_text(const fs::path& p) {
  auto bytes = ferry::testing::read_file(p);
  return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

TEST_F(AgentKillTest, DeltaSnapshotsCommittedExactlyOnceAcrossKills) {
  const std::uint64_t seed = ferry::testing::test_seed();
  std::mt19937_64 rng(seed);
  const std::vector<std::string> flags = {"--marker_file=DONE", "--marker_only", "--delta=key",
                                          "--key_every=10"};
  std::vector<std::string> expected_all;
  int deltas = 0;
  for (int trial = 0; trial < delta_trials(); ++trial) {
    SCOPED_TRACE("trial " + std::to_string(trial) + ", FERRY_TEST_SEED=" + std::to_string(seed));
    const std::string job = "d" + std::to_string(trial);
    const fs::path root = dir_ / "ckpt" / job;
    const fs::path state = dir_ / "state" / job;
    fs::create_directories(state);
    std::vector<std::byte> weights = ferry::testing::normal_floats(kElems, 2, true, 0.02, seed + trial);
    // The key snapshot first, undisturbed; the next checkpoints appear while
    // the agent runs and is killed.
    write_drifted(root / "step-1", weights, seed + trial * 10 + 1);
    std::vector<std::string> expected = {job + "-step-1"};
    auto agent = start_agent(root, job, state, flags);
    ASSERT_TRUE(agent != nullptr);
    ASSERT_TRUE(wait_until(
        [&] {
          auto names = remote_names(remote_);
          return std::find(names.begin(), names.end(), job + "-step-1") != names.end();
        },
        kDrainMs))
        << log_tail();
    for (int k = 2; k <= 3; ++k) {
      write_drifted(root / ("step-" + std::to_string(k)), weights, seed + trial * 10 + k);
      expected.push_back(job + "-step-" + std::to_string(k));
      // The push starts once the watcher sees DONE; the kill lands before,
      // inside or after it.
      std::this_thread::sleep_for(std::chrono::milliseconds(100 + rng() % kMaxKillDelayMs));
      agent->kill_and_wait(SIGKILL);
      agent = start_agent(root, job, state, flags);
      ASSERT_TRUE(agent != nullptr);
    }
    std::sort(expected.begin(), expected.end());
    ASSERT_TRUE(drained(job, expected)) << log_tail();
    auto listed = replication::list_remote(remote_, true);
    ASSERT_TRUE(listed.is_ok()) << listed.status().to_string();
    for (const auto& s : *listed) {
      if (s.job != job) continue;
      if (s.info.name == job + "-step-1") {
        EXPECT_EQ(s.origin.kind, SnapshotKind::kKey);
      } else if (s.origin.kind == SnapshotKind::kDelta) {
        ++deltas;
        EXPECT_EQ(s.origin.base_snapshot, job + "-step-1") << s.info.name;
      }
      EXPECT_EQ(s.origin.source_dir, (root / s.info.name.substr(job.size() + 1)).string());
    }
    for (int k = 1; k <= 3; ++k) {
      EXPECT_TRUE(restores_identical(remote_, job + "-step-" + std::to_string(k),
                                     root / ("step-" + std::to_string(k))));
    }
    const int st = agent->kill_and_wait(SIGTERM);
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << log_tail();
    expected_all.insert(expected_all.end(), expected.begin(), expected.end());
  }
  const std::string log = read_text(dir_ / "agent.log");
  int pinned = 0;
  for (std::size_t at = 0;
       (at = log.find("the base journaled by an earlier attempt", at)) != std::string::npos; ++at)
    ++pinned;
  std::fprintf(stderr, "[ferry] %d delta snapshots; %d pushes resumed against a journaled base\n", deltas,
               pinned);
  EXPECT_GT(deltas, 0) << "later checkpoints must go as delta snapshots";
  std::string events;  // what the agent said about bases and restarts, for a failure
  for (std::size_t at = 0, end = 0; (end = log.find('\n', at)) != std::string::npos; at = end + 1) {
    const std::string line = log.substr(at, end - at);
    if (line.find("delta_base") != std::string::npos || line.find("journal_opened") != std::string::npos)
      events += line + "\n";
  }
  EXPECT_GT(pinned, 0) << "no kill landed between a base's choice and its commit\n" << events;
  expect_exactly(expected_all, seed);
}

}  // namespace
}  // namespace ferry::agent
