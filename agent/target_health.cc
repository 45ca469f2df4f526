// target_health.cc: the up/down state machine and the probe loop (see
// target_health.h).
#include "agent/target_health.h"

#include <algorithm>
#include <chrono>

namespace ferry::agent {

TargetHealth::TargetHealth(std::vector<std::string> targets, int down_after, int up_after)
    : down_after_(down_after), up_after_(up_after) {
  reconfigure(std::move(targets), down_after, up_after);
}

void TargetHealth::reconfigure(std::vector<std::string> targets, int down_after, int up_after) {
  std::lock_guard lock(mu_);
  down_after_ = std::max(1, down_after);
  up_after_ = std::max(1, up_after);
  std::map<std::string, TargetState> next;
  for (const auto& t : targets) {
    auto it = states_.find(t);
    if (it != states_.end()) {
      next.emplace(t, it->second);
    } else {
      TargetState s;
      s.address = t;
      next.emplace(t, s);
    }
  }
  states_ = std::move(next);
  order_ = std::move(targets);
}

TargetHealth::Change TargetHealth::record(const std::string& target, const Status& probe) {
  std::lock_guard lock(mu_);
  auto it = states_.find(target);
  if (it == states_.end()) return Change::kNone;
  TargetState& s = it->second;
  if (probe.is_ok()) {
    s.consecutive_failures = 0;
    ++s.consecutive_successes;
    if (!s.up && s.consecutive_successes >= up_after_) {
      s.up = true;
      s.last_error.clear();
      return Change::kCameUp;
    }
    return Change::kNone;
  }
  s.consecutive_successes = 0;
  ++s.consecutive_failures;
  s.last_error = probe.to_string();
  if (s.up && s.consecutive_failures >= down_after_) {
    s.up = false;
    return Change::kWentDown;
  }
  return Change::kNone;
}

bool TargetHealth::is_up(const std::string& target) const {
  std::lock_guard lock(mu_);
  auto it = states_.find(target);
  return it != states_.end() && it->second.up;
}

bool TargetHealth::any_up() const {
  std::lock_guard lock(mu_);
  for (const auto& [t, s] : states_) {
    if (s.up) return true;
  }
  return false;
}

std::vector<std::string> TargetHealth::healthy_first() const {
  std::lock_guard lock(mu_);
  std::vector<std::string> up, down;
  for (const auto& t : order_) (states_.at(t).up ? up : down).push_back(t);
  up.insert(up.end(), down.begin(), down.end());
  return up;
}

std::vector<std::string> TargetHealth::targets() const {
  std::lock_guard lock(mu_);
  return order_;
}

std::vector<TargetState> TargetHealth::states() const {
  std::lock_guard lock(mu_);
  std::vector<TargetState> out;
  for (const auto& t : order_) out.push_back(states_.at(t));
  return out;
}

HealthProber::HealthProber(TargetHealth& health, Probe probe, OnChange on_change, int interval_ms)
    : health_(health), probe_(std::move(probe)), on_change_(std::move(on_change)), interval_ms_(interval_ms) {
  thread_ = std::thread([this] { run(); });
}

HealthProber::~HealthProber() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void HealthProber::set_interval_ms(int interval_ms) {
  {
    std::lock_guard lock(mu_);
    interval_ms_ = interval_ms;
    woken_ = true;
  }
  cv_.notify_all();
}

void HealthProber::wake() {
  {
    std::lock_guard lock(mu_);
    woken_ = true;
  }
  cv_.notify_all();
}

void HealthProber::run() {
  while (true) {
    {
      std::unique_lock lock(mu_);
      cv_.wait_for(lock, std::chrono::milliseconds(interval_ms_), [&] { return stop_ || woken_; });
      if (stop_) return;
      woken_ = false;
    }
    for (const auto& target : health_.targets()) {
      {
        std::lock_guard lock(mu_);
        if (stop_) return;
      }
      Status st = probe_(target);
      TargetHealth::Change change = health_.record(target, st);
      if (on_change_) on_change_(target, change, st);
    }
  }
}

}  // namespace ferry::agent
