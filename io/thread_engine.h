// thread_engine.h: the fallback backend of io::Engine, for kernels where
// io_uring is missing or refused. A few worker threads run file operations
// with pread/pwrite/fsync and try socket operations without blocking; a
// socket operation that would block is parked with a poller thread, which
// hands it back to a worker when its socket is ready, and which also runs
// timers, deadlines and cancellation of parked work. A blocked socket
// therefore never holds a worker, so any number of sockets can be busy.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "base/unique_fd.h"
#include "io/engine.h"
#include "io/stream_order.h"

namespace ferry::io {

class ThreadEngine final : public Engine {
 public:
  static Result<std::unique_ptr<ThreadEngine>> create(const EngineOptions& options);
  ~ThreadEngine() override;
  ThreadEngine(const ThreadEngine&) = delete;
  ThreadEngine& operator=(const ThreadEngine&) = delete;

  Backend backend() const override { return Backend::kThreads; }
  unsigned queue_depth() const override { return depth_; }
  unsigned outstanding() const override;
  Status submit(const Op& op) override;
  Status flush() override { return Status::ok(); }
  Result<std::size_t> wait(std::span<Completion> out, std::size_t min_count, int timeout_ms) override;
  Status cancel(std::uint64_t tag) override;
  void cancel_all() override;
  Status register_buffers(std::span<const iovec>) override { return Status::ok(); }
  Status register_file(int) override { return Status::ok(); }
  Status unregister_file(int) override { return Status::ok(); }

 private:
  using Clock = std::chrono::steady_clock;
  enum class State { kFree, kQueued, kRunnable, kRunning, kParked };
  struct Slot {
    Op op;
    std::size_t done = 0;
    State state = State::kFree;
    std::atomic<bool> cancelled{false};
    bool connecting = false;  // a non-blocking connect is under way
    int saved_flags = 0;      // the socket's flags before that connect
    short events = 0;         // poll events a parked operation waits for
    Clock::time_point deadline{};
    bool has_deadline = false;
  };
  // What one attempt at an operation came to.
  struct Outcome {
    bool park = false;
    short events = 0;
    Status status;
    int fd = -1;
  };

  ThreadEngine(unsigned depth, unsigned threads, UniqueFd wake);
  void worker();
  void poller();
  void wake_poller();
  Outcome attempt(Slot& s);
  Outcome attempt_connect(Slot& s);
  // REQUIRES: mu_ held.
  void finish_locked(unsigned index, Status status, int fd = -1);
  void park_locked(unsigned index, short events);

  const unsigned depth_;
  std::unique_ptr<Slot[]> slots_;
  UniqueFd wake_;  // eventfd that interrupts the poller's poll()

  mutable std::mutex mu_;
  std::condition_variable work_cv_;
  std::condition_variable done_cv_;
  std::vector<unsigned> free_;
  unsigned busy_ = 0;
  StreamOrder order_;  // kQueued: behind an earlier send/recv on its socket
  std::deque<unsigned> runnable_;
  std::vector<unsigned> parked_;
  std::deque<Completion> ready_;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
  std::thread poller_;
};

}  // namespace ferry::io
