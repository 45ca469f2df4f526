// rpo_test.cc: the RPO forecast and its warning's hysteresis, on numbers.
#include "agent/rpo.h"
#include "base/human_size.h"

#include <gtest/gtest.h>

#include <cmath>

namespace ferry::agent {
namespace {

constexpr std::int64_t kSec = 1'000'000'000;

RpoInputs base() {
  RpoInputs in;
  in.now_ns = 10'000 * kSec;
  in.newest_committed_ns = 10'000 * kSec - 100 * kSec;
  in.rpo_target_s = 3600;
  in.throughput_bytes_per_s = 100e6;
  return in;
}

TEST(RpoTest, AgeOfNewestCommittedCheckpoint) {
  RpoForecast f = forecast_rpo(base());
  EXPECT_DOUBLE_EQ(f.rpo_seconds, 100);
  EXPECT_DOUBLE_EQ(f.forecast_rpo_seconds, 100);
  EXPECT_FALSE(f.breach_expected);
  EXPECT_TRUE(f.healthy);
}

TEST(RpoTest, NothingCommittedCountsFromTheOldestPendingCheckpoint) {
  RpoInputs in = base();
  in.newest_committed_ns.reset();
  in.oldest_pending_ns = in.now_ns - 30 * kSec;
  in.backlog_bytes = 1000;
  EXPECT_DOUBLE_EQ(forecast_rpo(in).rpo_seconds, 30);
  // Nothing queued either: from the oldest directory seen not yet complete.
  in.oldest_pending_ns.reset();
  in.backlog_bytes = 0;
  in.oldest_incomplete_ns = in.now_ns - 700 * kSec;
  EXPECT_DOUBLE_EQ(forecast_rpo(in).rpo_seconds, 700);
  // A job that has replicated nothing is never "0 s behind": with nothing
  // seen at all its RPO is unknown, and that is no warning.
  in.oldest_incomplete_ns.reset();
  RpoForecast f = forecast_rpo(in);
  EXPECT_TRUE(std::isnan(f.rpo_seconds));
  EXPECT_TRUE(std::isnan(f.forecast_rpo_seconds));
  EXPECT_FALSE(f.breach_expected);
  EXPECT_TRUE(f.healthy);
}

TEST(RpoTest, StuckCheckpointDirectoriesWarnOncePastTheTarget) {
  RpoInputs in = base();
  in.newest_committed_ns.reset();
  in.oldest_incomplete_ns = in.now_ns - 100 * kSec;
  in.stuck_dirs = 2;
  in.stuck_detail = "step-100 waits for marker COMMITTED";
  EXPECT_FALSE(forecast_rpo(in).breach_expected);  // 100 s, under the target
  in.oldest_incomplete_ns = in.now_ns - 4000 * kSec;
  RpoForecast f = forecast_rpo(in);
  EXPECT_TRUE(f.breach_expected);
  EXPECT_FALSE(f.healthy);
  EXPECT_EQ(f.reason,
            "RPO 4000 s exceeds the target 3600 s: 2 checkpoint directories never became complete "
            "(step-100 waits for marker COMMITTED)");
  // An old RPO with nothing newer waiting (training stopped) is no warning.
  in.stuck_dirs = 0;
  EXPECT_FALSE(forecast_rpo(in).breach_expected);
}

TEST(RpoTest, ForecastAddsTheDrainTime) {
  RpoInputs in = base();
  in.backlog_bytes = 1'000'000'000;  // 10 s at 100 MB/s
  RpoForecast f = forecast_rpo(in);
  EXPECT_DOUBLE_EQ(f.drain_seconds, 10);
  EXPECT_DOUBLE_EQ(f.forecast_rpo_seconds, 110);
  EXPECT_FALSE(f.breach_expected);
  EXPECT_TRUE(f.healthy);  // nothing waits behind the push in flight
  in.waiting_bytes = 1;
  EXPECT_FALSE(forecast_rpo(in).healthy);
}

TEST(RpoTest, AllTargetsDownWithABacklogCannotDrain) {
  RpoInputs in = base();
  in.backlog_bytes = 2'100'000'000;
  in.any_target_up = false;
  RpoForecast f = forecast_rpo(in);
  EXPECT_TRUE(std::isinf(f.forecast_rpo_seconds));
  EXPECT_TRUE(f.breach_expected);
  EXPECT_EQ(f.reason, "backlog 2.1 GB at 0 B/s (all targets down): RPO 3600 s will be breached");
}

TEST(RpoTest, NoThroughputMeasuredYetIsUnknownNotABreach) {
  RpoInputs in = base();
  in.backlog_bytes = 5;
  in.throughput_bytes_per_s = 0;
  in.checkpoint_interval_s = 10;
  RpoForecast f = forecast_rpo(in);
  EXPECT_TRUE(std::isinf(f.forecast_rpo_seconds));
  EXPECT_FALSE(f.breach_expected) << f.reason;       // a fresh start's first push
  in.newest_committed_ns = in.now_ns - 4000 * kSec;  // but an RPO already past target is
  EXPECT_TRUE(forecast_rpo(in).breach_expected);
}

TEST(RpoTest, SteadyStateWithOnePushInFlightIsHealthy) {
  RpoInputs in = base();
  in.backlog_bytes = 500'000'000;  // the checkpoint being sent: 5 s
  in.waiting_bytes = 0;
  in.checkpoint_interval_s = 10;
  RpoForecast f = forecast_rpo(in);
  EXPECT_FALSE(f.breach_expected);
  EXPECT_TRUE(f.healthy);
  in.waiting_bytes = 1;  // one waits behind it: not yet
  EXPECT_FALSE(forecast_rpo(in).healthy);
}

TEST(RpoTest, ForecastPastTheTargetWarns) {
  RpoInputs in = base();
  in.backlog_bytes = 400'000'000'000;  // 4000 s
  RpoForecast f = forecast_rpo(in);
  EXPECT_TRUE(f.breach_expected);
  EXPECT_NE(f.reason.find("will be breached"), std::string::npos) << f.reason;
}

TEST(RpoTest, DrainSlowerThanTheCheckpointIntervalWarns) {
  RpoInputs in = base();
  in.backlog_bytes = 6'000'000'000;  // 60 s to drain
  in.checkpoint_interval_s = 30;
  RpoForecast f = forecast_rpo(in);
  EXPECT_TRUE(f.breach_expected);
  EXPECT_NE(f.reason.find("grows without bound"), std::string::npos) << f.reason;
  in.checkpoint_interval_s = 120;
  EXPECT_FALSE(forecast_rpo(in).breach_expected);
}

TEST(RpoTest, WarningRaisesOnceAndClearsOnlyWhenDrainedAndUnderTarget) {
  RpoWarning w;
  RpoInputs in = base();
  in.backlog_bytes = 1000;
  in.any_target_up = false;
  EXPECT_EQ(w.update(forecast_rpo(in)), RpoWarning::Change::kRaised);
  EXPECT_TRUE(w.active());
  EXPECT_FALSE(w.text().empty());
  EXPECT_EQ(w.update(forecast_rpo(in)), RpoWarning::Change::kNone);
  in.waiting_bytes = 1000;
  // Targets back, a checkpoint still waiting but the forecast fine: stays raised.
  in.any_target_up = true;
  EXPECT_EQ(w.update(forecast_rpo(in)), RpoWarning::Change::kNone);
  EXPECT_TRUE(w.active());
  in.backlog_bytes = 0;
  in.waiting_bytes = 0;
  EXPECT_EQ(w.update(forecast_rpo(in)), RpoWarning::Change::kCleared);
  EXPECT_FALSE(w.active());
  EXPECT_EQ(w.text(), "");
}

TEST(RpoTest, ThroughputAndIntervalAreMovingAverages) {
  ThroughputEstimate t;
  EXPECT_EQ(t.bytes_per_second(), 0);
  t.add(100, 1);
  EXPECT_DOUBLE_EQ(t.bytes_per_second(), 100);
  t.add(200, 1);
  EXPECT_DOUBLE_EQ(t.bytes_per_second(), kThroughputEwmaWeight * 200 + (1 - kThroughputEwmaWeight) * 100);
  t.add(0, 0);  // ignored
  IntervalEstimate i;
  i.observe(10 * kSec);
  EXPECT_EQ(i.seconds(), 0);
  i.observe(40 * kSec);
  EXPECT_DOUBLE_EQ(i.seconds(), 30);
  i.observe(20 * kSec);  // older, found late: no negative interval
  EXPECT_DOUBLE_EQ(i.seconds(), 30);
  i.observe(40 * kSec + kSec / 10);  // a burst: not an interval
  EXPECT_DOUBLE_EQ(i.seconds(), 30);
}

TEST(RpoTest, HumanBytes) {
  EXPECT_EQ(format_bytes(0), "0 B");
  EXPECT_EQ(format_bytes(999), "999 B");
  EXPECT_EQ(format_bytes(2'100'000'000), "2.1 GB");
  EXPECT_EQ(format_bytes_exact(999), "999 B");
  EXPECT_EQ(format_bytes_exact(2'147'483'648), "2.1 GB (2147483648 bytes)");
}

}  // namespace
}  // namespace ferry::agent
