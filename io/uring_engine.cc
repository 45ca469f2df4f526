// uring_engine.cc: the io_uring backend.
#include "io/uring_engine.h"

#include <sys/utsname.h>

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

namespace ferry::io {

namespace {

constexpr std::uint32_t kGenerationMask = (1u << 28) - 1;

bool is_socket_op(OpKind k) {
  return k == OpKind::kConnect || k == OpKind::kAccept || k == OpKind::kSend || k == OpKind::kRecv;
}

// Multishot receive came with Linux 6.0; older kernels refuse it only when
// the first recv runs, so ask the version up front.
bool kernel_has_multishot_recv() {
  utsname u{};
  if (::uname(&u) != 0) return false;
  int major = 0, minor = 0;
  if (std::sscanf(u.release, "%d.%d", &major, &minor) != 2) return false;
  return major >= 6;
}

// Every opcode ferry submits; a kernel lacking one gets the fallback.
Status probe_opcodes(io_uring* ring) {
  io_uring_probe* probe = io_uring_get_probe_ring(ring);
  if (probe == nullptr) return Status::unsupported("io_uring opcode probe refused");
  struct Need {
    int op;
    const char* name;
  };
  static constexpr Need kNeeded[] = {
      {IORING_OP_READ, "READ"},
      {IORING_OP_WRITE, "WRITE"},
      {IORING_OP_READ_FIXED, "READ_FIXED"},
      {IORING_OP_WRITE_FIXED, "WRITE_FIXED"},
      {IORING_OP_FSYNC, "FSYNC"},
      {IORING_OP_CONNECT, "CONNECT"},
      {IORING_OP_ACCEPT, "ACCEPT"},
      {IORING_OP_SEND, "SEND"},
      {IORING_OP_RECV, "RECV"},
      {IORING_OP_TIMEOUT, "TIMEOUT"},
      {IORING_OP_LINK_TIMEOUT, "LINK_TIMEOUT"},
      {IORING_OP_ASYNC_CANCEL, "ASYNC_CANCEL"},
  };
  Status st;
  for (const Need& n : kNeeded) {
    if (!io_uring_opcode_supported(probe, n.op)) {
      st = Status::unsupported(std::string("io_uring lacks IORING_OP_") + n.name);
      break;
    }
  }
  io_uring_free_probe(probe);
  return st;
}

}  // namespace

UringEngine::UringEngine(unsigned depth) : depth_(depth), slots_(depth) {
  free_.reserve(depth);
  for (unsigned i = depth; i-- > 0;) free_.push_back(i);
}

Result<std::unique_ptr<UringEngine>> UringEngine::create(const EngineOptions& options) {
  std::unique_ptr<UringEngine> e(new UringEngine(options.queue_depth));
  // Each operation may need a second SQE for its linked timeout, and cancels
  // need room too.
  unsigned entries = options.queue_depth * 2 + 8;
  io_uring_params params{};
  params.flags = IORING_SETUP_COOP_TASKRUN;
  if (options.single_thread && !options.sqpoll) {
    params.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
  }
  if (options.sqpoll) {
    params.flags |= IORING_SETUP_SQPOLL;
    params.sq_thread_idle = 100;  // ms before the poller sleeps
  }
  int rc = io_uring_queue_init_params(entries, &e->ring_, &params);
  if (rc == -EINVAL) {  // kernels before 5.19 lack COOP_TASKRUN
    params = {};
    if (options.sqpoll) {
      params.flags = IORING_SETUP_SQPOLL;
      params.sq_thread_idle = 100;
    }
    rc = io_uring_queue_init_params(entries, &e->ring_, &params);
  }
  if (rc < 0) return Status::from_errno(-rc, "io_uring_queue_init");
  e->ring_ok_ = true;
  RETURN_IF_ERROR(probe_opcodes(&e->ring_));
  e->multishot_wanted_ = options.recv_multishot && kernel_has_multishot_recv();
  if (io_uring_register_files_sparse(&e->ring_, kRegisteredFileSlots) == 0) {
    e->files_ok_ = true;
    for (int i = kRegisteredFileSlots; i-- > 0;) e->free_file_slots_.push_back(i);
  }
  return e;
}

UringEngine::~UringEngine() {
  if (!ring_ok_) return;
  cancel_all_and_drain();
  recv_ring_.reset();  // unregistered while the ring is still open
  io_uring_queue_exit(&ring_);
}

std::uint64_t UringEngine::user_data(unsigned index) const {
  return (static_cast<std::uint64_t>(slots_[index].generation) << 32) | index;
}

io_uring_sqe* UringEngine::get_sqe() {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  if (sqe == nullptr) {
    io_uring_submit(&ring_);
    sqe = io_uring_get_sqe(&ring_);
  }
  return sqe;
}

Status UringEngine::submit(const Op& op) {
  RETURN_IF_ERROR(detail::validate(op));
  if (outstanding() >= depth_) {
    return Status::exhausted("io engine queue full (" + std::to_string(depth_) +
                             " outstanding): wait for completions first");
  }
  unsigned index = free_.back();
  free_.pop_back();
  Slot& s = slots_[index];
  s.op = op;
  s.done = 0;
  s.busy = true;
  s.cancelled = false;
  s.generation = (s.generation + 1) & kGenerationMask;
  ++busy_;
  s.started = false;
  s.multishot = false;
  s.timed_out = false;
  if (op.kind == OpKind::kSend) {
    sends_[op.fd].slots.push_back(index);
    start_send_chain(op.fd);
    return Status::ok();
  }
  if (multishot_for(op)) {
    s.multishot = true;
    recv_submit(index);
    return Status::ok();
  }
  if (StreamOrder::applies(op.kind) && !order_.admit(op.fd, op.kind, index)) {
    return Status::ok();  // starts when the earlier one on this socket finishes
  }
  Status st = start(index);
  if (!st.is_ok()) {
    if (StreamOrder::applies(op.kind)) (void)order_.release(op.fd, op.kind, index);
    s.busy = false;
    --busy_;
    free_.push_back(index);
  }
  return st;
}

Status UringEngine::start(unsigned index, bool link_next) {
  Slot& s = slots_[index];
  s.started = true;
  const Op& op = s.op;
  bool link = op.timeout_ms > 0 && is_socket_op(op.kind);
  // Two SQEs must be adjacent for a link: make room for both first. (A send
  // chain made room for all its members before its first.)
  if (io_uring_sq_space_left(&ring_) < (link ? 2u : 1u)) io_uring_submit(&ring_);
  io_uring_sqe* sqe = get_sqe();
  if (sqe == nullptr) return Status::internal("io_uring submission queue full");

  switch (op.kind) {
    case OpKind::kRead:
    case OpKind::kWrite: {
      int fd = detail::transfer_fd(op, s.done);
      std::byte* buf = op.buf + s.done;
      unsigned len = static_cast<unsigned>(std::min<std::size_t>(op.len - s.done, 1u << 30));
      std::uint64_t off = op.offset + s.done;
      int buf_index = -1;
      for (std::size_t i = 0; i < buffers_.size(); ++i) {
        auto* base = static_cast<std::byte*>(buffers_[i].iov_base);
        if (buf >= base && buf + len <= base + buffers_[i].iov_len) {
          buf_index = static_cast<int>(i);
          break;
        }
      }
      bool rd = op.kind == OpKind::kRead;
      if (buf_index >= 0) {
        if (rd)
          io_uring_prep_read_fixed(sqe, fd, buf, len, off, buf_index);
        else
          io_uring_prep_write_fixed(sqe, fd, buf, len, off, buf_index);
      } else {
        if (rd)
          io_uring_prep_read(sqe, fd, buf, len, off);
        else
          io_uring_prep_write(sqe, fd, buf, len, off);
      }
      break;
    }
    case OpKind::kFsync:
    case OpKind::kFdatasync:
      io_uring_prep_fsync(sqe, op.fd, op.kind == OpKind::kFdatasync ? IORING_FSYNC_DATASYNC : 0);
      break;
    case OpKind::kConnect:
      io_uring_prep_connect(sqe, op.fd, op.addr->get(), op.addr->size());
      break;
    case OpKind::kAccept:
      io_uring_prep_accept(sqe, op.fd, nullptr, nullptr, SOCK_CLOEXEC);
      break;
    case OpKind::kSend:
      // MSG_WAITALL lets the kernel finish a large send itself instead of
      // returning it short for us to resubmit.
      io_uring_prep_send(sqe, op.fd, op.buf + s.done, op.len - s.done, MSG_NOSIGNAL | MSG_WAITALL);
      break;
    case OpKind::kRecv:
      io_uring_prep_recv(sqe, op.fd, op.buf + s.done, op.len - s.done, op.fill ? MSG_WAITALL : 0);
      break;
    case OpKind::kTimer:
      s.timeout = to_timespec(op.timeout_ms);
      io_uring_prep_timeout(sqe, &s.timeout, 0, 0);
      break;
  }
  if (files_ok_ && op.kind != OpKind::kTimer) {
    auto it = file_index_.find(sqe->fd);
    if (it != file_index_.end()) {
      sqe->fd = it->second;
      sqe->flags |= IOSQE_FIXED_FILE;
    }
  }
  io_uring_sqe_set_data64(sqe, user_data(index));
  if (link) {
    sqe->flags |= IOSQE_IO_LINK;
    io_uring_sqe* t = get_sqe();
    FERRY_CHECK(t != nullptr);  // room was made above
    s.timeout = to_timespec(op.timeout_ms);
    io_uring_prep_link_timeout(t, &s.timeout, 0);
    io_uring_sqe_set_data64(t, user_data(index) | kLinkTimeoutBit);
    sqe = t;
  }
  if (link_next) sqe->flags |= IOSQE_IO_LINK;
  return Status::ok();
}

void UringEngine::start_send_chain(int fd) {
  auto it = sends_.find(fd);
  if (it == sends_.end()) return;
  SendStream& st = it->second;
  if (st.in_flight > 0 || st.slots.empty()) return;
  st.broken = false;
  unsigned n = static_cast<unsigned>(std::min<std::size_t>(st.slots.size(), kMaxSendChain));
  unsigned sqes = 0;
  for (unsigned i = 0; i < n; ++i) sqes += slots_[st.slots[i]].op.timeout_ms > 0 ? 2 : 1;
  // A chain must reach the kernel in one submit: a submit that ends inside
  // it would cut it in two unordered chains.
  if (io_uring_sq_space_left(&ring_) < sqes) io_uring_submit(&ring_);
  for (unsigned i = 0; i < n; ++i) {
    unsigned index = st.slots[i];
    Status status = start(index, i + 1 < n);
    if (!status.is_ok()) {  // cannot happen with the room made above
      n = i;
      finish(index, std::move(status));
      break;
    }
    ++st.in_flight;
  }
}

void UringEngine::requeue_send(unsigned index) {
  Slot& s = slots_[index];
  s.started = false;
  SendStream& st = sends_[s.op.fd];
  --st.in_flight;
  start_send_chain(s.op.fd);
}

void UringEngine::handle_send(unsigned index, int res) {
  Slot& s = slots_[index];
  const Op& op = s.op;
  SendStream& st = sends_[op.fd];
  if (res == -ECANCELED && !s.cancelled && (st.broken || st.slots.front() != index)) {
    return requeue_send(index);  // an earlier member broke the chain
  }
  if (res > 0) s.done += static_cast<std::size_t>(res);
  if (res > 0 && s.done >= op.len) return finish(index, Status::ok());
  st.broken = true;  // the kernel cancels the rest of this chain
  if (s.cancelled) return finish(index, detail::op_cancelled(op));
  if (res == -ECANCELED) {
    return finish(index,
                  op.timeout_ms > 0 ? detail::op_timeout(op) : detail::op_error(op, ECANCELED, s.done));
  }
  if (res > 0 || res == -EAGAIN || res == -EINTR) return requeue_send(index);
  return finish(index, detail::op_error(op, res == 0 ? EIO : -res, s.done));
}

Status UringEngine::flush() {
  int rc = io_uring_submit(&ring_);
  if (rc < 0 && rc != -EBUSY && rc != -EAGAIN && rc != -EINTR) {
    return Status::from_errno(-rc, "io_uring_submit");
  }
  return Status::ok();
}

void UringEngine::finish(unsigned index, Status status, int fd) {
  Slot& s = slots_[index];
  Completion c;
  c.tag = s.op.tag;
  c.kind = s.op.kind;
  c.status = std::move(status);
  c.bytes = s.done;
  c.fd = fd;
  ready_.push_back(std::move(c));
  s.busy = false;
  --busy_;
  free_.push_back(index);
  if (s.multishot) return recv_release(index);
  if (s.op.kind == OpKind::kSend) {
    auto it = sends_.find(s.op.fd);
    if (it == sends_.end()) return;
    SendStream& st = it->second;
    if (s.started) --st.in_flight;
    s.started = false;
    st.slots.erase(std::find(st.slots.begin(), st.slots.end(), index));
    if (st.slots.empty()) {
      sends_.erase(it);
    } else {
      start_send_chain(s.op.fd);
    }
    return;
  }
  if (StreamOrder::applies(s.op.kind)) {
    if (auto next = order_.release(s.op.fd, s.op.kind, index)) {
      Status st = start(*next);
      if (!st.is_ok()) finish(*next, std::move(st));
    }
  }
}

void UringEngine::handle(const io_uring_cqe& cqe) {
  std::uint64_t ud = cqe.user_data;
  if (ud == LIBURING_UDATA_TIMEOUT) return;
  if (ud & kMultishotBit) return recv_cqe(cqe);
  if (ud & kRecvTimerBit) return recv_timer_cqe(cqe);
  if (ud & (kLinkTimeoutBit | kCancelBit)) return;
  unsigned index = static_cast<unsigned>(ud & 0xffffffffu);
  if (index >= slots_.size()) return;
  Slot& s = slots_[index];
  if (!s.busy || s.generation != (ud >> 32)) return;
  const Op& op = s.op;
  int res = cqe.res;
  if (op.kind == OpKind::kSend) return handle_send(index, res);
  if (s.multishot) return recv_direct_cqe(index, res);

  if (op.kind == OpKind::kTimer && res == -ETIME) return finish(index, Status::ok());
  if (res == -ECANCELED || (s.cancelled && (res == -EINTR || res == -EAGAIN))) {
    if (s.cancelled) return finish(index, detail::op_cancelled(op));
    if (op.timeout_ms > 0) return finish(index, detail::op_timeout(op));
    return finish(index, detail::op_error(op, ECANCELED, s.done));
  }
  if (res == -EAGAIN || res == -EINTR) {
    Status st = start(index);
    if (!st.is_ok()) finish(index, std::move(st));
    return;
  }
  if (res < 0) return finish(index, detail::op_error(op, -res, s.done));

  switch (op.kind) {
    case OpKind::kRead:
      if (res == 0) return finish(index, Status::ok());  // end of file
      [[fallthrough]];
    case OpKind::kWrite:
    case OpKind::kSend:  // handled by handle_send
      if (res == 0) return finish(index, detail::op_error(op, EIO, s.done));
      s.done += static_cast<std::size_t>(res);
      if (s.done >= op.len) return finish(index, Status::ok());
      if (s.cancelled) return finish(index, detail::op_cancelled(op));
      {
        Status st = start(index);
        if (!st.is_ok()) finish(index, std::move(st));
      }
      return;
    case OpKind::kRecv:
      s.done += static_cast<std::size_t>(res);
      if (!op.fill || res == 0 || s.done >= op.len) return finish(index, Status::ok());
      if (s.cancelled) return finish(index, detail::op_cancelled(op));
      {
        Status st = start(index);
        if (!st.is_ok()) finish(index, std::move(st));
      }
      return;
    case OpKind::kAccept:
      return finish(index, Status::ok(), res);
    case OpKind::kConnect:
    case OpKind::kFsync:
    case OpKind::kFdatasync:
    case OpKind::kTimer:
      return finish(index, Status::ok());
  }
}

void UringEngine::reap_ready() {
  io_uring_cqe* cqes[64];
  for (;;) {
    unsigned n = io_uring_peek_batch_cqe(&ring_, cqes, 64);
    if (n == 0) return;
    for (unsigned i = 0; i < n; ++i) handle(*cqes[i]);
    io_uring_cq_advance(&ring_, n);
  }
}

Result<std::size_t> UringEngine::wait(std::span<Completion> out, std::size_t min_count, int timeout_ms) {
  using Clock = std::chrono::steady_clock;
  auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms < 0 ? 0 : timeout_ms);
  RETURN_IF_ERROR(flush());
  for (;;) {
    reap_ready();
    std::size_t want = std::min<std::size_t>({min_count, out.size(), std::size_t{outstanding()}});
    if (ready_.size() >= want || busy_ == 0) break;
    io_uring_cqe* cqe = nullptr;
    int rc;
    if (timeout_ms < 0) {
      rc = io_uring_submit_and_wait(&ring_, 1);
    } else {
      auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - Clock::now());
      if (left.count() <= 0) break;
      __kernel_timespec ts{};
      ts.tv_sec = left.count() / 1'000'000'000;
      ts.tv_nsec = left.count() % 1'000'000'000;
      rc = io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, &ts, nullptr);
    }
    if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
      return Status::from_errno(-rc, "io_uring wait");
    }
  }
  // Resubmissions made while reaping go to the kernel now, not at the
  // caller's next call.
  RETURN_IF_ERROR(flush());
  if (release_pending_) {
    release_pending_ = false;
    (void)io_uring_get_events(&ring_);
  }
  std::size_t n = std::min(out.size(), ready_.size());
  for (std::size_t i = 0; i < n; ++i) {
    out[i] = std::move(ready_.front());
    ready_.pop_front();
  }
  return n;
}

Status UringEngine::cancel(std::uint64_t tag) {
  bool found = false;
  for (unsigned i = 0; i < slots_.size(); ++i) {
    Slot& s = slots_[i];
    if (!s.busy || s.op.tag != tag) continue;
    found = true;
    if (s.cancelled) continue;
    s.cancelled = true;
    if (!s.started) {  // still waiting for its socket: never reached the kernel
      finish(i, detail::op_cancelled(s.op));
      continue;
    }
    io_uring_sqe* sqe = get_sqe();
    if (sqe == nullptr) return Status::internal("io_uring submission queue full");
    io_uring_prep_cancel64(sqe, user_data(i), 0);
    io_uring_sqe_set_data64(sqe, kCancelBit);
  }
  if (!found) return Status::not_found("cancel: no outstanding operation with tag " + std::to_string(tag));
  return flush();
}

void UringEngine::cancel_all() {
  for (unsigned i = 0; i < slots_.size(); ++i) {
    if (slots_[i].busy) (void)cancel(slots_[i].op.tag);
  }
}

Status UringEngine::register_buffers(std::span<const iovec> buffers) {
  if (busy_ > 0) return Status::invalid_argument("register buffers: operations in flight");
  if (!buffers_.empty()) {
    io_uring_unregister_buffers(&ring_);
    buffers_.clear();
  }
  if (buffers.empty()) return Status::ok();
  int rc = io_uring_register_buffers(&ring_, buffers.data(), static_cast<unsigned>(buffers.size()));
  if (rc < 0) {
    Status st = Status::from_errno(-rc, "io_uring register " + std::to_string(buffers.size()) + " buffers");
    return rc == -ENOMEM ? Status::exhausted(st.message() + " (RLIMIT_MEMLOCK?)") : st;
  }
  buffers_.assign(buffers.begin(), buffers.end());
  return Status::ok();
}

Status UringEngine::register_file(int fd) {
  if (!files_ok_) return Status::ok();  // plain descriptors work as well, a little slower
  if (file_index_.count(fd)) return Status::ok();
  if (free_file_slots_.empty()) {
    return Status::exhausted("io_uring registered file table full (" + std::to_string(kRegisteredFileSlots) +
                             " slots)");
  }
  int slot = free_file_slots_.back();
  int rc = io_uring_register_files_update(&ring_, static_cast<unsigned>(slot), &fd, 1);
  if (rc < 0) return Status::from_errno(-rc, "io_uring register fd " + std::to_string(fd));
  free_file_slots_.pop_back();
  file_index_[fd] = slot;
  return Status::ok();
}

Status UringEngine::unregister_file(int fd) {
  auto it = file_index_.find(fd);
  if (it == file_index_.end()) return Status::ok();
  int empty = -1;
  int rc = io_uring_register_files_update(&ring_, static_cast<unsigned>(it->second), &empty, 1);
  if (rc < 0) return Status::from_errno(-rc, "io_uring unregister fd " + std::to_string(fd));
  free_file_slots_.push_back(it->second);
  file_index_.erase(it);
  return Status::ok();
}

}  // namespace ferry::io
