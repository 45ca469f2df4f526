// scheduler_test.cc: newest first, superseded checkpoints skipped (or not),
// pause/resume per job and for all, retry backoff, stop.
#include "agent/scheduler.h"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

namespace ferry::agent {
namespace {

QueuedJob job(std::uint64_t id, const std::string& name, std::int64_t mtime) {
  QueuedJob j;
  j.id = id;
  j.job = name;
  j.mtime_ns = mtime;
  j.step = static_cast<std::uint64_t>(mtime);
  j.logical_bytes = 100;
  return j;
}

TEST(SchedulerTest, NewestFirstWithoutSkipping) {
  Scheduler s(SchedulerOptions{false});
  s.add(job(1, "a", 10));
  s.add(job(2, "a", 30));
  s.add(job(3, "b", 20));
  s.add(job(2, "a", 30));  // a repeat is ignored
  EXPECT_EQ(s.queued(), 3u);
  std::vector<std::uint64_t> order;
  for (int i = 0; i < 3; ++i) {
    auto n = s.next(0);
    ASSERT_TRUE(n.run.has_value());
    EXPECT_TRUE(n.skipped.empty());
    order.push_back(n.run->id);
  }
  EXPECT_EQ(order, (std::vector<std::uint64_t>{2, 3, 1}));
  EXPECT_EQ(s.running(), 3u);
  EXPECT_FALSE(s.next(0).run.has_value());
  s.finish(2, true);
  EXPECT_EQ(s.running(), 2u);
}

TEST(SchedulerTest, SupersededCheckpointsAreSkipped) {
  Scheduler s(SchedulerOptions{true});
  s.add(job(1, "a", 10));
  s.add(job(2, "a", 20));
  s.add(job(3, "a", 30));
  s.add(job(4, "b", 5));
  auto n = s.next(0);
  ASSERT_TRUE(n.run.has_value());
  EXPECT_EQ(n.run->id, 3u);
  ASSERT_EQ(n.skipped.size(), 2u);
  EXPECT_EQ(n.run->job, "a");
  n = s.next(0);
  ASSERT_TRUE(n.run.has_value());
  EXPECT_EQ(n.run->id, 4u);  // another job is not superseded by a
  // An older one found late is superseded by the committed newer one.
  s.finish(3, true);
  s.add(job(5, "a", 15));
  n = s.next(0);
  EXPECT_FALSE(n.run.has_value());
  ASSERT_EQ(n.skipped.size(), 1u);
  EXPECT_EQ(n.skipped[0].id, 5u);
}

TEST(SchedulerTest, PauseAndResume) {
  Scheduler s;
  s.add(job(1, "a", 10));
  s.add(job(2, "b", 20));
  s.pause("b");
  EXPECT_TRUE(s.paused("b"));
  EXPECT_FALSE(s.paused("a"));
  auto n = s.next(0);
  ASSERT_TRUE(n.run.has_value());
  EXPECT_EQ(n.run->id, 1u);
  EXPECT_FALSE(s.next(0).run.has_value());
  s.pause("");
  EXPECT_TRUE(s.all_paused());
  s.resume("b");
  EXPECT_FALSE(s.next(0).run.has_value());  // still paused as a whole
  s.resume("");
  n = s.next(0);
  ASSERT_TRUE(n.run.has_value());
  EXPECT_EQ(n.run->id, 2u);
}

TEST(SchedulerTest, RetryWaitsForItsBackoff) {
  Scheduler s;
  s.add(job(1, "a", 10));
  auto n = s.next(0);
  ASSERT_TRUE(n.run.has_value());
  s.retry(*n.run, 200);
  EXPECT_EQ(s.running(), 0u);
  EXPECT_FALSE(s.next(50).run.has_value());
  const auto t0 = std::chrono::steady_clock::now();
  n = s.next(2000);
  ASSERT_TRUE(n.run.has_value());
  EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(100));
}

TEST(SchedulerTest, NextWakesOnAddAndStop) {
  Scheduler s;
  std::thread adder([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    s.add(job(7, "a", 1));
  });
  auto n = s.next(5000);
  adder.join();
  ASSERT_TRUE(n.run.has_value());
  EXPECT_EQ(n.run->id, 7u);
  std::thread stopper([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    s.stop();
  });
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(s.next(5000).run.has_value());
  stopper.join();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2));
}

TEST(SchedulerTest, EntriesListRunningThenQueuedNewestFirst) {
  Scheduler s(SchedulerOptions{false});
  s.add(job(1, "a", 10));
  s.add(job(2, "a", 30));
  s.add(job(3, "a", 20));
  (void)s.next(0);  // takes 2
  auto e = s.entries();
  ASSERT_EQ(e.size(), 3u);
  EXPECT_TRUE(e[0].running);
  EXPECT_EQ(e[0].job.id, 2u);
  EXPECT_EQ(e[1].job.id, 3u);
  EXPECT_EQ(e[2].job.id, 1u);
}

}  // namespace
}  // namespace ferry::agent
