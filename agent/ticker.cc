// ticker.cc: see ticker.h.
#include "agent/ticker.h"

#include <chrono>

namespace ferry::agent {

Ticker::Ticker(std::function<void()> fn, int period_ms)
    : fn_(std::move(fn)), period_ms_(period_ms), thread_([this] { run(); }) {}

Ticker::~Ticker() { stop(); }

void Ticker::wake() {
  {
    std::lock_guard lock(mu_);
    woken_ = true;
  }
  cv_.notify_all();
}

void Ticker::stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Ticker::run() {
  std::unique_lock lock(mu_);
  while (!stop_) {
    woken_ = false;
    lock.unlock();
    fn_();
    lock.lock();
    cv_.wait_for(lock, std::chrono::milliseconds(period_ms_), [this] { return stop_ || woken_; });
  }
}

}  // namespace ferry::agent
