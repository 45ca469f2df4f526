// thread_pool.cc: see thread_pool.h.
#include "base/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <memory>

namespace ferry {

ThreadPool::ThreadPool(std::size_t threads) {
  // The caller drains parts of every parallel_for beside the workers, so a
  // worker per CPU on top of it ran one CPU-bound thread more than there are
  // cores (measured on 2 cores: a push's sender took 3% more CPU per GB with
  // the extra worker, its ratio to the pipeline's 0.51 against 0.47 on
  // average, at about the same throughput; docs/BENCHMARKS.md, replicate).
  if (threads == 0) {
    const unsigned cpus = std::thread::hardware_concurrency();
    threads = cpus > 1 ? cpus - 1 : 1;
  }
  workers_.reserve(threads);
  for (std::size_t i = 0; i < threads; ++i) workers_.emplace_back([this] { run(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::run() {
  for (;;) {
    std::function<void()> task;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !tasks_.empty(); });
      if (tasks_.empty()) return;
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    task();
  }
}

void ThreadPool::parallel_for(std::size_t n, const std::function<void(std::size_t)>& fn) {
  if (n == 0) return;
  if (n == 1) {
    fn(0);
    return;
  }
  // Work is claimed through a shared counter, so uneven parts balance out.
  struct State {
    std::atomic<std::size_t> next{0};
    std::atomic<std::size_t> done{0};
    std::mutex mu;
    std::condition_variable cv;
  };
  auto state = std::make_shared<State>();
  auto drain = [state, n, &fn] {
    std::size_t finished = 0;
    for (std::size_t i; (i = state->next.fetch_add(1)) < n;) {
      fn(i);
      ++finished;
    }
    if (finished && state->done.fetch_add(finished) + finished == n) {
      std::lock_guard lock(state->mu);
      state->cv.notify_all();
    }
  };
  std::size_t helpers = std::min(workers_.size(), n - 1);
  {
    std::lock_guard lock(mu_);
    for (std::size_t i = 0; i < helpers; ++i) tasks_.emplace_back(drain);
  }
  cv_.notify_all();
  drain();
  std::unique_lock lock(state->mu);
  state->cv.wait(lock, [&] { return state->done.load() == n; });
}

ThreadPool& ThreadPool::shared() {
  static ThreadPool pool;
  return pool;
}

}  // namespace ferry
