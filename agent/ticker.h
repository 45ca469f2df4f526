// ticker.h: a thread that runs one function every period and early when
// woken (the agent's RPO, warning and gauge refresh: a commit wakes it so
// status and /metrics show the new DR copy at once). Thread-safe.
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

namespace ferry::agent {

class Ticker {
 public:
  // Starts the thread; `fn` runs at once, then every period_ms.
  Ticker(std::function<void()> fn, int period_ms);
  ~Ticker();  // stop()
  Ticker(const Ticker&) = delete;
  Ticker& operator=(const Ticker&) = delete;

  // Runs `fn` again now (or as soon as the current run ends).
  void wake();
  // Lets the current run finish and joins the thread. Idempotent.
  void stop();

 private:
  void run();

  std::function<void()> fn_;
  const int period_ms_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  bool woken_ = false;
  std::thread thread_;
};

}  // namespace ferry::agent
