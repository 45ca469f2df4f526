// uring_engine.h: the io_uring backend of io::Engine. Submissions are batched
// (queued SQEs go to the kernel at flush() or wait()), socket deadlines are
// linked timeouts, cancel() is IORING_OP_ASYNC_CANCEL, and short transfers,
// -EAGAIN and -EINTR are resubmitted from the completion handler, as
// liburing's io_uring-cp example does. Registered buffers and files are used
// whenever an operation's buffer or descriptor is registered. The sends of
// one socket go to the kernel as IOSQE_IO_LINK chains, so that many are
// queued in the socket at once and still leave in order; recvs use multishot
// receive into a provided buffer ring where the kernel has them
// (io/uring_recv.cc), single-shot recv one at a time per socket otherwise.
#pragma once

#include <liburing.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <unordered_map>
#include <vector>

#include "io/engine.h"
#include "io/recv_ring.h"
#include "io/stream_order.h"

namespace ferry::io {

// user_data layout: bit 63 marks a linked timeout's CQE, bit 62 a cancel or
// timeout-remove request's, bit 61 a multishot receive's (bits 0..31: its
// stream), bit 60 a recv deadline's; otherwise and for deadlines bits 32..59
// are the slot's generation, 0..31 its index. The generation keeps a late
// cancel from hitting a reused slot.
inline constexpr std::uint64_t kLinkTimeoutBit = 1ull << 63;
inline constexpr std::uint64_t kCancelBit = 1ull << 62;
inline constexpr std::uint64_t kMultishotBit = 1ull << 61;
inline constexpr std::uint64_t kRecvTimerBit = 1ull << 60;

inline __kernel_timespec to_timespec(int ms) {
  __kernel_timespec ts{};
  ts.tv_sec = ms / 1000;
  ts.tv_nsec = static_cast<long long>(ms % 1000) * 1'000'000;
  return ts;
}

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
  Result<std::size_t> wait(std::span<Completion> out, std::size_t min_count, int timeout_ms) override;
  Status cancel(std::uint64_t tag) override;
  void cancel_all() override;
  Status register_buffers(std::span<const iovec> buffers) override;
  Status register_file(int fd) override;
  Status unregister_file(int fd) override;

  // Whether recvs go through multishot receive and the provided buffer ring
  // (false before the first recv, and where the kernel lacks them).
  bool multishot_recv() const { return multishot_ok_; }

 private:
  struct Slot {
    Op op;
    std::size_t done = 0;
    std::uint32_t generation = 0;
    bool busy = false;
    bool cancelled = false;
    bool started = false;         // false while queued behind an earlier send/recv on its socket
    bool multishot = false;       // a recv served by its socket's multishot receive
    bool timed_out = false;       // its deadline passed while its direct recv was in the kernel
    __kernel_timespec timeout{};  // read by the kernel when the SQE is submitted
  };

  // The sends of one socket, oldest first. The first `in_flight` of them are
  // in the kernel as one chain linked with IOSQE_IO_LINK (so their bytes
  // leave in order while all of them are queued in the socket at once); the
  // rest wait for the whole chain to end and then go as the next chain. A
  // member that fails or goes short breaks the chain: the kernel cancels
  // the members after it, which are resubmitted in order with the next chain.
  struct SendStream {
    std::deque<unsigned> slots;
    unsigned in_flight = 0;
    bool broken = false;  // a member of the current chain failed or went short
  };

  // Multishot receive (io/uring_recv.cc): the recvs of one socket, oldest
  // first, are filled from one IORING_OP_RECV multishot into the provided
  // buffer ring, armed while a recv waits and cancelled when none does (so
  // that a socket the caller closes is not held open by the ring). Bytes
  // that arrive while no recv waits are kept in `stash` for the next one.
  struct RecvStream {
    std::uint32_t id = 0;  // in the multishot's user_data
    int fd = -1;
    unsigned long ino = 0;    // the socket's inode: tells a reused descriptor number apart
    bool armed = false;       // a multishot is in the kernel
    bool cancelling = false;  // ... and was asked to stop
    bool eof = false;
    bool orphan = false;  // its descriptor now names another socket
    bool pumping = false;
    std::deque<unsigned> ops;
    std::vector<std::byte> stash;
    std::size_t stash_off = 0;
    std::uint64_t timer = 0;     // user_data of the head recv's deadline; 0: none
    std::size_t timer_mark = 0;  // the head's bytes when that deadline was set
  };

  explicit UringEngine(unsigned depth);
  bool multishot_for(const Op& op);
  RecvStream* recv_stream(int fd);
  void recv_submit(unsigned index);
  void recv_release(unsigned index);
  void recv_pump(RecvStream& st);
  void recv_deliver(RecvStream& st, std::span<const std::byte> data);
  void recv_arm_timer(RecvStream& st, unsigned index);
  void recv_drop_timer(RecvStream& st);
  void recv_cqe(const io_uring_cqe& cqe);
  void recv_timer_cqe(const io_uring_cqe& cqe);
  void recv_forget(RecvStream& st);
  void recv_direct_cqe(unsigned index, int res);
  io_uring_sqe* get_sqe();
  std::uint64_t user_data(unsigned index) const;
  // Queues the SQE(s) for the slot's next attempt; with `link_next` the
  // next SQE queued is linked after them.
  Status start(unsigned index, bool link_next = false);
  // Starts the waiting sends of `fd` as one linked chain when none is in flight.
  void start_send_chain(int fd);
  // A send's attempt ended without finishing it: it goes again with the next chain.
  void requeue_send(unsigned index);
  void handle_send(unsigned index, int res);
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
  StreamOrder order_;  // recvs
  std::unordered_map<int, SendStream> sends_;
  bool multishot_wanted_ = false;
  bool multishot_ok_ = false;  // buffer ring registered
  std::unique_ptr<RecvRing> recv_ring_;
  // A multishot was cancelled: wait() lets the kernel finish that before it
  // returns (with DEFER_TASKRUN it would wait for the next wait), so that the
  // ring lets go of a socket the caller is about to close.
  bool release_pending_ = false;
  std::uint32_t next_stream_id_ = 1;
  std::unordered_map<std::uint32_t, std::unique_ptr<RecvStream>> streams_;
  std::unordered_map<int, std::uint32_t> stream_of_fd_;
  std::vector<iovec> buffers_;
  bool files_ok_ = false;
  std::unordered_map<int, int> file_index_;  // fd -> registered slot
  std::vector<int> free_file_slots_;
};

}  // namespace ferry::io
