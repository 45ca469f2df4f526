// thread_pool.h: a fixed set of worker threads for CPU-parallel work
// (hashing leaves, coding chunks). Tasks must not throw. The queue is bounded
// by the caller's use of parallel_for, which blocks until all parts finish.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace ferry {

class ThreadPool {
 public:
  // threads == 0: one thread per CPU, the caller's included (it runs parts of
  // each parallel_for too), so hardware_concurrency() - 1 workers, at least 1.
  explicit ThreadPool(std::size_t threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  std::size_t size() const { return workers_.size(); }

  // Runs fn(i) for every i in [0, n), spread over the workers and the calling
  // thread, and returns when all have finished. Safe to call from several
  // threads at once; not from inside a task of the same pool.
  void parallel_for(std::size_t n, const std::function<void(std::size_t)>& fn);

  // The process-wide pool used when a caller passes none.
  static ThreadPool& shared();

 private:
  void run();

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace ferry
