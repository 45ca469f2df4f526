// retention_test.cc: the one retention rule (store/retention.h) that prune,
// the receiver's dry-run PRUNE and `ferry prune --dry_run` share: order and
// age by the receiver's commit time, never the host's created time; ties by
// name; any keep_within, however long, saturates instead of overflowing.
#include "store/retention.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "base/clock.h"

namespace ferry {
namespace {

constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max();
constexpr std::int64_t kMin = std::numeric_limits<std::int64_t>::min();
constexpr std::int64_t kNow = 1'750'000'000LL * kNanosPerSecond;

SnapshotInfo snap(std::string name, std::int64_t committed_ns, std::int64_t created_ns = 0,
                  std::string job = "") {
  SnapshotInfo s;
  s.job = std::move(job);
  s.name = std::move(name);
  s.committed_ns = committed_ns;
  s.created_ns = created_ns;
  return s;
}

using Names = std::vector<std::string>;

TEST(Retention, KeepLastCountsByCommitTimeNotCreatedTime) {
  // "fake" claims to be from 2096 but was committed first.
  const std::vector<SnapshotInfo> snaps = {
      snap("real-2", kNow - 1, 0),
      snap("fake", kNow - 300 * kNanosPerSecond, 3'976'300'800LL * kNanosPerSecond),
      snap("real-1", kNow - 2, 0)};
  PruneReport r = select_retention(snaps, {.keep_last = 2}, kNow);
  EXPECT_EQ(r.removed, Names{"fake"});
  EXPECT_EQ(r.kept, (Names{"real-1", "real-2"}));
}

TEST(Retention, TiesGoByNameAndEverythingIsReportedOldestFirst) {
  const std::vector<SnapshotInfo> snaps = {snap("b", 5), snap("c", 5), snap("a", 5), snap("z", 1)};
  PruneReport r = select_retention(snaps, {.keep_last = 2}, kNow);
  EXPECT_EQ(r.removed, (Names{"z", "a"}));
  EXPECT_EQ(r.kept, (Names{"b", "c"}));
}

TEST(Retention, EachJobIsCountedOnItsOwn) {
  // A job that checkpoints often must not push another job's only
  // snapshot out of keep_last.
  const std::vector<SnapshotInfo> snaps = {snap("gpt-1", 1, 0, "gpt"), snap("llama-1", 2, 0, "llama"),
                                           snap("llama-2", 3, 0, "llama"), snap("llama-3", 4, 0, "llama")};
  PruneReport r = select_retention(snaps, {.keep_last = 2}, kNow);
  EXPECT_EQ(r.removed, Names{"llama-1"});
  EXPECT_EQ(r.kept, (Names{"gpt-1", "llama-2", "llama-3"}));
  // job: only that job's snapshots may go.
  RetentionPolicy only_llama{.keep_last = 1};
  only_llama.job = "llama";
  r = select_retention(snaps, only_llama, kNow);
  EXPECT_EQ(r.removed, (Names{"llama-1", "llama-2"}));
  EXPECT_EQ(r.kept, (Names{"gpt-1", "llama-3"}));
}

TEST(Retention, KeepDailyWeeklyMonthlyKeepTheNewestOfEachPeriod) {
  constexpr std::int64_t kDay = 86400 * kNanosPerSecond;
  // 2025-01-06 00:00 UTC is a Monday.
  constexpr std::int64_t kMonday = 1'736'121'600LL * kNanosPerSecond;
  const std::vector<SnapshotInfo> snaps = {snap("dec-31", kMonday - 6 * kDay),   // December, the week before
                                           snap("mon-a", kMonday + 1),           // Monday, twice
                                           snap("mon-b", kMonday + 2),           //
                                           snap("tue", kMonday + kDay),          // Tuesday
                                           snap("sun", kMonday + 6 * kDay + 5),  // Sunday: same week
                                           snap("next-mon", kMonday + 7 * kDay)};  // the next week
  RetentionPolicy daily{.keep_daily = 3};
  EXPECT_EQ(select_retention(snaps, daily, kNow).kept, (Names{"tue", "sun", "next-mon"}));
  RetentionPolicy weekly{.keep_weekly = 2};
  EXPECT_EQ(select_retention(snaps, weekly, kNow).kept, (Names{"sun", "next-mon"}));
  RetentionPolicy monthly{.keep_monthly = 5};
  EXPECT_EQ(select_retention(snaps, monthly, kNow).kept, (Names{"dec-31", "next-mon"}));
  RetentionPolicy both{.keep_last = 1, .keep_daily = 1};
  EXPECT_EQ(select_retention(snaps, both, kNow).kept, Names{"next-mon"});
  RetentionPolicy days5{.keep_daily = 5};
  EXPECT_EQ(select_retention(snaps, days5, kNow).kept, (Names{"dec-31", "mon-b", "tue", "sun", "next-mon"}));
}

TEST(Retention, KeepWithinIsInclusiveAtTheCutoff) {
  const std::vector<SnapshotInfo> snaps = {snap("old", kNow - 3601 * kNanosPerSecond),
                                           snap("edge", kNow - 3600 * kNanosPerSecond),
                                           snap("new", kNow - kNanosPerSecond)};
  PruneReport r = select_retention(snaps, {.keep_within_seconds = 3600}, kNow);
  EXPECT_EQ(r.removed, Names{"old"});
  EXPECT_EQ(r.kept, (Names{"edge", "new"}));
  // Either rule keeps.
  r = select_retention(snaps, {.keep_last = 2, .keep_within_seconds = 60}, kNow);
  EXPECT_EQ(r.removed, Names{"old"});
}

TEST(Retention, LongKeepWithinSaturatesInsteadOfOverflowing) {
  // 30500 weeks: 1.8e10 s fits int64 seconds, but 1.8e19 ns does not.
  const std::int64_t weeks_30500 = std::int64_t{30500} * 7 * 86400;
  // The duration saturates at kMax ns (292 years), the cutoff before any
  // commit time a store holds.
  EXPECT_EQ(keep_within_cutoff_ns(kNow, weeks_30500), kNow - kMax);
  EXPECT_EQ(keep_within_cutoff_ns(kNow, kMax), kNow - kMax);
  EXPECT_EQ(keep_within_cutoff_ns(kNow, 60), kNow - 60 * kNanosPerSecond);
  EXPECT_EQ(keep_within_cutoff_ns(kMin + 5, 1), kMin);
  EXPECT_EQ(keep_within_cutoff_ns(kNow, -5), kNow) << "a negative duration counts as none";
  const std::vector<SnapshotInfo> snaps = {snap("a", kNow - 600 * kNanosPerSecond), snap("b", kNow - 60),
                                           snap("c", kNow)};
  for (std::int64_t within : {weeks_30500, kMax}) {
    PruneReport r = select_retention(snaps, {.keep_last = 1, .keep_within_seconds = within}, kNow);
    EXPECT_TRUE(r.removed.empty()) << within;
    EXPECT_EQ(r.kept.size(), 3u);
  }
}

TEST(Retention, AnEmptyPolicyRemovesNothing) {
  const std::vector<SnapshotInfo> snaps = {snap("a", 1), snap("b", 2)};
  PruneReport r = select_retention(snaps, {}, kNow);
  EXPECT_TRUE(r.removed.empty());
  EXPECT_EQ(r.kept, (Names{"a", "b"}));
  EXPECT_TRUE(select_retention({}, {.keep_last = 1}, kNow).kept.empty());
}

TEST(Retention, SaturatingClockArithmetic) {
  EXPECT_EQ(seconds_to_ns_saturated(3), 3 * kNanosPerSecond);
  EXPECT_EQ(seconds_to_ns_saturated(kMax / 1000), kMax);
  EXPECT_EQ(seconds_to_ns_saturated(kMin / 1000), kMin);
  EXPECT_EQ(add_ns_saturated(kMax, 1), kMax);
  EXPECT_EQ(add_ns_saturated(kMin, -1), kMin);
  EXPECT_EQ(add_ns_saturated(-5, 3), -2);
}

}  // namespace
}  // namespace ferry
