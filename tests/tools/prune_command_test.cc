// prune_command_test.cc: runs the built `ferry prune` (FERRY_BIN) on a real
// store as an operator would: a dry run shows exactly what the prune then
// removes, by the store's own retention rule (the receiver's commit times);
// a --keep_within of any length keeps everything it covers instead of
// overflowing into removals; each job is counted on its own and --job
// prunes one; bad durations and rewrite thresholds are usage errors.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "base/clock.h"
#include "store/local_store.h"
#include "tests/store/chunk_store_test_util.h"
#include "tests/testing/testing.h"
#include "tests/tools/ferry_cli.h"

namespace ferry {
namespace {

namespace fs = std::filesystem;

using cli_test::CliRun;
using cli_test::ferry;
using cli_test::quote;

class PruneCommandTest : public ::testing::Test {
 protected:
  // Commits `names` in order, each a manifest dated `created_ns`.
  void commit(const std::vector<std::string>& names, std::int64_t created_ns) {
    auto store = open_local_store(store_dir(), {.log = [](std::string_view) {}});
    ASSERT_TRUE(store.is_ok()) << store.status().to_string();
    for (const std::string& name : names) {
      Status st = (*store)->commit_snapshot("host-a", name, testing::chunkless_manifest(1, 20, created_ns));
      ASSERT_TRUE(st.is_ok()) << st.to_string();
    }
  }
  // Commits one snapshot of `job` per name, in order.
  void commit_job(const std::string& job, const std::vector<std::string>& names) {
    auto store = open_local_store(store_dir(), {.log = [](std::string_view) {}});
    ASSERT_TRUE(store.is_ok()) << store.status().to_string();
    for (const std::string& name : names) {
      Manifest m;
      m.host = "host-a";
      m.job = job;
      m.step = 1;
      m.created_ns = 1;
      Status st = (*store)->commit_snapshot("host-a", name, serialize_manifest(m));
      ASSERT_TRUE(st.is_ok()) << st.to_string();
    }
  }
  std::string store_dir() const { return (dir_ / "store").string(); }
  CliRun prune(const std::string& flags) {
    return ferry("prune --store=" + quote(store_dir()) + " --namespace=host-a " + flags);
  }
  static bool says(const CliRun& r, const std::string& line) { return r.out.find(line) != std::string::npos; }

  testing::TempDir dir_;
};

TEST_F(PruneCommandTest, AKeepWithinOfCenturiesKeepsEverything) {
  commit({"s0", "s1", "s2"}, 1'700'000'000'000'000'000);
  // 30500 weeks: its nanoseconds pass int64.
  CliRun dry = prune("--keep_last=1 --keep_within=30500w --dry_run");
  ASSERT_EQ(dry.code, 0) << dry.out;
  EXPECT_FALSE(says(dry, "remove")) << dry.out;
  for (const char* name : {"keep   s0", "keep   s1", "keep   s2"}) EXPECT_TRUE(says(dry, name)) << dry.out;
  CliRun real = prune("--keep_last=1 --keep_within=30500w --nogc");
  ASSERT_EQ(real.code, 0) << real.out;
  EXPECT_TRUE(says(real, "kept 3 snapshots, removed 0")) << real.out;
}

TEST_F(PruneCommandTest, TheDryRunShowsWhatThePruneRemovesByCommitTime) {
  // Dated ahead by the host but committed first: retention takes the
  // receiver's commit order.
  commit({"ahead-0", "ahead-1"}, wall_ns() + 3600 * kNanosPerSecond);
  commit({"real-0", "real-1"}, 1'700'000'000'000'000'000);
  CliRun dry = prune("--keep_last=2 --dry_run");
  ASSERT_EQ(dry.code, 0) << dry.out;
  for (const char* line : {"remove ahead-0", "remove ahead-1", "keep   real-0", "keep   real-1"}) {
    EXPECT_TRUE(says(dry, line)) << line << "\n" << dry.out;
  }
  CliRun real = prune("--keep_last=2");
  ASSERT_EQ(real.code, 0) << real.out;
  EXPECT_TRUE(says(real, "removed ahead-0")) << real.out;
  EXPECT_TRUE(says(real, "removed ahead-1")) << real.out;
  EXPECT_TRUE(says(real, "kept 2 snapshots, removed 2")) << real.out;
}

// keep_last counts each job on its own; --job prunes one job only.
TEST_F(PruneCommandTest, JobsAreNeverCountedTogether) {
  commit_job("llama", {"llama-1", "llama-2", "llama-3"});
  commit_job("gpt", {"gpt-1", "gpt-2"});
  CliRun dry = prune("--keep_last=1 --dry_run");
  ASSERT_EQ(dry.code, 0) << dry.out;
  for (const char* line :
       {"remove llama-1", "remove llama-2", "keep   llama-3", "remove gpt-1", "keep   gpt-2"}) {
    EXPECT_TRUE(says(dry, line)) << line << "\n" << dry.out;
  }
  CliRun one = prune("--job=gpt --keep_last=1 --nogc --json");
  ASSERT_EQ(one.code, 0) << one.out;
  const auto lines = cli_test::json_lines(one.out);
  for (const nlohmann::json& j : lines) {
    if (j["type"] == "snapshot") {
      EXPECT_EQ(j["snapshot"], "gpt-1") << one.out;
    }
    if (j["type"] == "prune") {
      EXPECT_EQ(j["removed"], 1) << one.out;
      EXPECT_EQ(j["kept"], 4) << one.out;
    }
  }
  EXPECT_EQ(lines.size(), 2u) << one.out;
  CliRun daily = prune("--keep_daily=1 --dry_run");
  ASSERT_EQ(daily.code, 0) << daily.out;
  // Committed within a second: one day, the newest of each job kept.
  EXPECT_TRUE(says(daily, "keep   llama-3")) << daily.out;
  EXPECT_TRUE(says(daily, "remove llama-2")) << daily.out;
  EXPECT_TRUE(says(daily, "keep   gpt-2")) << daily.out;
}

TEST_F(PruneCommandTest, BadDurationsAreUsageErrors) {
  commit({"s0"}, 1);
  for (const char* flag : {"--keep_within=0s", "--keep_within=7y", "--keep_within=1234567890123w",
                           "--keep_within=-5d", "--keep_within=d"}) {
    CliRun r = prune(std::string("--dry_run ") + flag);
    EXPECT_EQ(r.code, 2) << flag << "\n" << r.out;
    EXPECT_TRUE(says(r, "--keep_within")) << r.out;
  }
}

TEST_F(PruneCommandTest, ARewriteThresholdOutsidePercentsIsAUsageError) {
  commit({"s0"}, 1);
  for (const char* flag : {"--s3_repack_live_percent=101", "--s3_repack_live_percent=-1"}) {
    CliRun r = prune(std::string("--keep_last=1 ") + flag);
    EXPECT_EQ(r.code, 2) << flag << "\n" << r.out;
    EXPECT_TRUE(says(r, "--s3_repack_live_percent must be from 0 to 100")) << r.out;
  }
  EXPECT_EQ(prune("--keep_last=1 --s3_repack_live_percent=0").code, 0);
}

}  // namespace
}  // namespace ferry
