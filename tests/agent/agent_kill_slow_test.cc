// agent_kill_slow_test.cc: kill -9 of the real ferry-agent at random points
// while it replicates checkpoints to a real `ferry serve`, then a restart on
// the same state directory. Every checkpoint must end up committed exactly
// once (one snapshot per checkpoint, no other), none partial, each restoring
// byte for byte. FERRY_KILL_TRIALS sets the number of trials (20 by
// default); FERRY_TEST_SEED replays a run (the seed is printed on failure).
#include <gtest/gtest.h>

#include "tests/agent/agent_kill_fixture.h"

namespace ferry::agent {
namespace {

using namespace kill_testing;

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
    ASSERT_TRUE(drained(job, expected)) << log_tail();
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
  expect_exactly(expected_all, seed);
}

}  // namespace
}  // namespace ferry::agent
