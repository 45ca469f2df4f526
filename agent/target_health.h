// target_health.h: which DR targets are up. A target is marked down after
// `down_after` failed probes in a row and up again after `up_after` good
// ones, so one lost packet does not move every job to another site and a
// flapping site is not trusted at its first answer. TargetHealth is the
// state machine (thread-safe, no I/O); HealthProber runs the probe loop on
// its own thread with a probe function (the agent dials the receiver and
// completes HELLO).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/status.h"

namespace ferry::agent {

struct TargetState {
  std::string address;
  bool up = true;
  int consecutive_failures = 0;
  int consecutive_successes = 0;
  std::string last_error;
};

class TargetHealth {
 public:
  enum class Change { kNone, kWentDown, kCameUp };

  // Every target starts up (the agent probes each one at start).
  TargetHealth(std::vector<std::string> targets, int down_after, int up_after);

  // Records one probe's outcome (a push's failure may be recorded too).
  Change record(const std::string& target, const Status& probe);
  bool is_up(const std::string& target) const;
  bool any_up() const;
  // The targets in configured order, the ones up first.
  std::vector<std::string> healthy_first() const;
  std::vector<std::string> targets() const;
  std::vector<TargetState> states() const;
  // A reload: keeps the state of targets that stay, adds new ones as up.
  void reconfigure(std::vector<std::string> targets, int down_after, int up_after);

 private:
  mutable std::mutex mu_;
  std::vector<std::string> order_;
  std::map<std::string, TargetState> states_;
  int down_after_;
  int up_after_;
};

class HealthProber {
 public:
  using Probe = std::function<Status(const std::string& target)>;
  using OnChange = std::function<void(const std::string& target, TargetHealth::Change, const Status&)>;

  // Probes every target of `health` each interval_ms, on its own thread.
  HealthProber(TargetHealth& health, Probe probe, OnChange on_change, int interval_ms);
  ~HealthProber();  // stops and joins
  HealthProber(const HealthProber&) = delete;
  HealthProber& operator=(const HealthProber&) = delete;

  void set_interval_ms(int interval_ms);
  // Probes now instead of at the next interval.
  void wake();

 private:
  void run();

  TargetHealth& health_;
  Probe probe_;
  OnChange on_change_;
  std::mutex mu_;
  std::condition_variable cv_;
  int interval_ms_;
  bool stop_ = false;
  bool woken_ = false;
  std::thread thread_;
};

}  // namespace ferry::agent
