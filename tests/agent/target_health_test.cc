// target_health_test.cc: down after K failures in a row, up after M
// successes, ordering healthy-first, reload keeping state; and the prober
// thread driving it with a real probe function.
#include "agent/target_health.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

namespace ferry::agent {
namespace {

const Status kDown = Status::unavailable("connection refused");

TEST(TargetHealthTest, DownAfterKFailuresInARowUpAfterMSuccesses) {
  TargetHealth h({"a:1", "b:2"}, 3, 2);
  EXPECT_TRUE(h.is_up("a:1"));
  EXPECT_EQ(h.record("a:1", kDown), TargetHealth::Change::kNone);
  EXPECT_EQ(h.record("a:1", kDown), TargetHealth::Change::kNone);
  EXPECT_EQ(h.record("a:1", Status::ok()), TargetHealth::Change::kNone);  // the run is broken
  EXPECT_EQ(h.record("a:1", kDown), TargetHealth::Change::kNone);
  EXPECT_EQ(h.record("a:1", kDown), TargetHealth::Change::kNone);
  EXPECT_EQ(h.record("a:1", kDown), TargetHealth::Change::kWentDown);
  EXPECT_FALSE(h.is_up("a:1"));
  EXPECT_EQ(h.record("a:1", kDown), TargetHealth::Change::kNone);
  EXPECT_EQ(h.states()[0].consecutive_failures, 4);
  EXPECT_NE(h.states()[0].last_error.find("connection refused"), std::string::npos);
  EXPECT_EQ(h.record("a:1", Status::ok()), TargetHealth::Change::kNone);
  EXPECT_EQ(h.record("a:1", kDown), TargetHealth::Change::kNone);  // flapping: not trusted yet
  EXPECT_EQ(h.record("a:1", Status::ok()), TargetHealth::Change::kNone);
  EXPECT_EQ(h.record("a:1", Status::ok()), TargetHealth::Change::kCameUp);
  EXPECT_TRUE(h.is_up("a:1"));
  EXPECT_EQ(h.states()[0].last_error, "");
}

TEST(TargetHealthTest, HealthyFirstKeepsConfiguredOrder) {
  TargetHealth h({"a:1", "b:2", "c:3"}, 1, 1);
  EXPECT_EQ(h.healthy_first(), (std::vector<std::string>{"a:1", "b:2", "c:3"}));
  (void)h.record("a:1", kDown);
  EXPECT_EQ(h.healthy_first(), (std::vector<std::string>{"b:2", "c:3", "a:1"}));
  (void)h.record("b:2", kDown);
  (void)h.record("c:3", kDown);
  EXPECT_FALSE(h.any_up());
  (void)h.record("a:1", Status::ok());
  EXPECT_TRUE(h.any_up());
  EXPECT_EQ(h.healthy_first().front(), "a:1");
  EXPECT_EQ(h.record("zzz:9", kDown), TargetHealth::Change::kNone);  // unknown target
}

TEST(TargetHealthTest, ReconfigureKeepsStateOfTargetsThatStay) {
  TargetHealth h({"a:1", "b:2"}, 1, 1);
  (void)h.record("a:1", kDown);
  h.reconfigure({"c:3", "a:1"}, 2, 2);
  EXPECT_EQ(h.targets(), (std::vector<std::string>{"c:3", "a:1"}));
  EXPECT_FALSE(h.is_up("a:1"));
  EXPECT_TRUE(h.is_up("c:3"));
  EXPECT_FALSE(h.is_up("b:2"));
}

TEST(TargetHealthTest, ProberDrivesTheStateMachine) {
  TargetHealth h({"a:1"}, 2, 2);
  std::atomic<bool> reachable{false};
  std::atomic<int> downs{0}, ups{0};
  {
    HealthProber p(
        h, [&](const std::string&) { return reachable.load() ? Status::ok() : kDown; },
        [&](const std::string&, TargetHealth::Change c, const Status&) {
          if (c == TargetHealth::Change::kWentDown) ++downs;
          if (c == TargetHealth::Change::kCameUp) ++ups;
        },
        10);
    auto wait_for = [&](auto pred) {
      for (int i = 0; i < 500 && !pred(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
      return pred();
    };
    EXPECT_TRUE(wait_for([&] { return !h.is_up("a:1"); }));
    reachable = true;
    EXPECT_TRUE(wait_for([&] { return h.is_up("a:1"); }));
  }  // joins promptly
  EXPECT_EQ(downs.load(), 1);
  EXPECT_EQ(ups.load(), 1);
}

}  // namespace
}  // namespace ferry::agent
