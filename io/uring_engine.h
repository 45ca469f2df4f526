// uring_engine.h: the io_uring backend of io::Engine. Submissions are batched
// (queued SQEs go to the kernel at flush() or wait()), socket deadlines are
// linked timeouts, cancel() is IORING_OP_ASYNC_CANCEL, and short transfers,
// -EAGAIN and -EINTR are resubmitted from the completion handler, as
// liburing's io_uring-cp example does. Registered buffers and files are used
// whenever an operation's buffer or descriptor is registered.
#pragma once

#include <liburing.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <unordered_map>
#include <vector>

#include "io/engine.h"
#include "io/stream_order.h"

namespace ferry::io {

class UringEngine final : public Engine {
 public:
  // Fails (so make_engine falls back) when io_uring_queue_init is refused or
  // the kernel lacks an opcode ferry needs.
  static Result<std::unique_ptr<UringEngine>> create(const EngineOptions& options);
  ~UringEngine() override;
  UringEngine(const UringEngine&) = delete;
  UringEngine& operator=(const UringEngine&) = delete;

  Backend backend() const override { return Backend::kUring; }
  unsigned queue_depth() const override { return depth_; }
  unsigned outstanding() const override { return busy_ + static_cast<unsigned>(ready_.size()); }
  Status submit(const Op& op) override;
  Status flush() override;
  Result<std::size_t> wait(std::span<Completion> out, std::size_t min_count,
                           int timeout_ms) override;
  Status cancel(std::uint64_t tag) override;
  void cancel_all() override;
  Status register_buffers(std::span<const iovec> buffers) override;
  Status register_file(int fd) override;
  Status unregister_file(int fd) override;

 private:
  struct Slot {
    Op op;
    std::size_t done = 0;
    std::uint32_t generation = 0;
    bool busy = false;
    bool cancelled = false;
    bool started = false;  // false while queued behind an earlier send/recv on its socket
    __kernel_timespec timeout{};  // read by the kernel when the SQE is submitted
  };

  explicit UringEngine(unsigned depth);
  io_uring_sqe* get_sqe();
  std::uint64_t user_data(unsigned index) const;
  // Queues the SQE(s) for the slot's next attempt.
  Status start(unsigned index);
  void handle(const io_uring_cqe& cqe);
  void finish(unsigned index, Status status, int fd = -1);
  void reap_ready();

  io_uring ring_{};
  bool ring_ok_ = false;
  unsigned depth_;
  std::vector<Slot> slots_;
  std::vector<unsigned> free_;
  unsigned busy_ = 0;
  std::deque<Completion> ready_;
  StreamOrder order_;
  std::vector<iovec> buffers_;
  bool files_ok_ = false;
  std::unordered_map<int, int> file_index_;  // fd -> registered slot
  std::vector<int> free_file_slots_;
};

}  // namespace ferry::io
