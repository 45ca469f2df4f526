// uring_recv.cc: the io_uring engine's multishot receive. One
// IORING_OP_RECV with IORING_RECV_MULTISHOT per socket stays armed while a
// recv waits on it; every chunk the kernel receives lands in a buffer of the
// provided ring (io/recv_ring.h), is copied to the oldest waiting recv's
// buffer (the rest to the next one, or to the stream's stash) and the buffer
// goes straight back. One armed request replaces a submit and a completion
// round trip per recv, and a recv that fills its whole buffer (recv_all)
// completes without being resubmitted for every partial arrival. From the
// caller's view a recv behaves as the single-shot path: it completes with the
// bytes that landed in its buffer, 0 at end of stream, an error naming the
// peer, Timeout when no byte arrives within its deadline.
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "io/uring_engine.h"

namespace ferry::io {

bool UringEngine::multishot_for(const Op& op) {
  if (op.kind != OpKind::kRecv || !multishot_wanted_) return false;
  if (!multishot_ok_) {
    // The ring is made at the first recv, so engines that only touch files
    // do not pin its memory.
    auto ring = RecvRing::create(&ring_, kRecvBufferGroup, kRecvRingBuffers, kRecvRingBufferBytes);
    if (!ring.is_ok()) {
      multishot_wanted_ = false;  // single-shot recv from now on
      return false;
    }
    recv_ring_ = std::move(ring).value();
    multishot_ok_ = true;
  }
  return true;
}

UringEngine::RecvStream* UringEngine::recv_stream(int fd) {
  auto it = stream_of_fd_.find(fd);
  // With a recv pending the caller cannot have closed the socket.
  if (it != stream_of_fd_.end() && !streams_.at(it->second)->ops.empty()) {
    return streams_.at(it->second).get();
  }
  struct stat sb {};
  unsigned long ino = ::fstat(fd, &sb) == 0 ? static_cast<unsigned long>(sb.st_ino) : 0;
  if (it != stream_of_fd_.end()) {
    RecvStream& old = *streams_.at(it->second);
    if (old.ino == ino) return &old;
    // The descriptor number now names another socket: whatever the old one
    // still delivers is dropped.
    old.orphan = true;
    stream_of_fd_.erase(it);
    if (!old.armed) streams_.erase(old.id);
  }
  auto st = std::make_unique<RecvStream>();
  st->id = next_stream_id_++;
  if (next_stream_id_ == 0) next_stream_id_ = 1;
  st->fd = fd;
  st->ino = ino;
  RecvStream* p = st.get();
  stream_of_fd_[fd] = st->id;
  streams_[st->id] = std::move(st);
  return p;
}

void UringEngine::recv_submit(unsigned index) {
  Slot& s = slots_[index];
  s.started = false;  // no request of its own in the kernel: cancel() finishes it directly
  RecvStream* st = recv_stream(s.op.fd);
  st->ops.push_back(index);
  if (st->ops.size() == 1) recv_pump(*st);
}

void UringEngine::recv_release(unsigned index) {
  Slot& s = slots_[index];
  auto it = stream_of_fd_.find(s.op.fd);
  if (it == stream_of_fd_.end()) return;
  RecvStream& st = *streams_.at(it->second);
  bool head = !st.ops.empty() && st.ops.front() == index;
  auto pos = std::find(st.ops.begin(), st.ops.end(), index);
  if (pos != st.ops.end()) st.ops.erase(pos);
  if (head) {
    recv_drop_timer(st);
    recv_pump(st);
  }
}

void UringEngine::recv_pump(RecvStream& st) {
  if (st.pumping) return;  // an outer pump of this stream goes on
  st.pumping = true;
  while (!st.ops.empty()) {
    unsigned index = st.ops.front();
    Slot& s = slots_[index];
    const Op& op = s.op;
    std::size_t have = st.stash.size() - st.stash_off;
    if (have > 0) {
      std::size_t n = std::min(have, op.len - s.done);
      if (n > 0) std::memcpy(op.buf + s.done, st.stash.data() + st.stash_off, n);
      s.done += n;
      st.stash_off += n;
      if (st.stash_off == st.stash.size()) {
        st.stash.clear();
        st.stash_off = 0;
      }
    }
    bool full = s.done == op.len;
    if (full || (s.done > 0 && !op.fill) || (st.eof && st.stash.empty())) {
      finish(index, Status::ok());  // recv_release pops it; the nested pump returns at once
      continue;
    }
    if (op.fill && op.len - s.done >= kDirectRecvMinBytes) {
      // Straight into the caller's buffer, once the multishot (if any) has
      // delivered all it took from the socket.
      if (st.armed) {
        if (!st.cancelling) {
          io_uring_sqe* sqe = get_sqe();
          if (sqe != nullptr) {
            io_uring_prep_cancel64(sqe, kMultishotBit | st.id, 0);
            io_uring_sqe_set_data64(sqe, kCancelBit);
            st.cancelling = true;
          }
        }
        break;
      }
      if (!s.started) {
        io_uring_sqe* sqe = get_sqe();
        if (sqe == nullptr) {
          finish(index, Status::internal("io_uring submission queue full"));
          continue;
        }
        io_uring_prep_recv(sqe, st.fd, op.buf + s.done, op.len - s.done, MSG_WAITALL);
        io_uring_sqe_set_data64(sqe, user_data(index));
        s.started = true;  // cancel() now has a request to cancel
      }
      if (op.timeout_ms > 0 && st.timer == 0) recv_arm_timer(st, index);
      break;
    }
    if (!st.armed) {
      io_uring_sqe* sqe = get_sqe();
      if (sqe == nullptr) {
        finish(index, Status::internal("io_uring submission queue full"));
        continue;
      }
      io_uring_prep_recv_multishot(sqe, st.fd, nullptr, 0, 0);
      sqe->flags |= IOSQE_BUFFER_SELECT;
      sqe->buf_group = recv_ring_->group();
      io_uring_sqe_set_data64(sqe, kMultishotBit | st.id);
      st.armed = true;
    }
    if (op.timeout_ms > 0 && st.timer == 0) recv_arm_timer(st, index);
    break;
  }
  if (st.ops.empty() && st.armed && !st.cancelling) {
    // Nobody waits: stop receiving, so that flow control holds the peer
    // back and a socket the caller closes is released by the ring.
    io_uring_sqe* sqe = get_sqe();
    if (sqe != nullptr) {
      io_uring_prep_cancel64(sqe, kMultishotBit | st.id, 0);
      io_uring_sqe_set_data64(sqe, kCancelBit);
      st.cancelling = true;
      release_pending_ = true;
    }
  }
  st.pumping = false;
}

void UringEngine::recv_arm_timer(RecvStream& st, unsigned index) {
  io_uring_sqe* sqe = get_sqe();
  if (sqe == nullptr) return;  // no deadline rather than no recv
  Slot& s = slots_[index];
  s.timeout = to_timespec(s.op.timeout_ms);
  io_uring_prep_timeout(sqe, &s.timeout, 0, 0);
  st.timer = kRecvTimerBit | user_data(index);
  st.timer_mark = s.done;
  io_uring_sqe_set_data64(sqe, st.timer);
}

void UringEngine::recv_drop_timer(RecvStream& st) {
  if (st.timer == 0) return;
  io_uring_sqe* sqe = get_sqe();
  if (sqe != nullptr) {
    io_uring_prep_timeout_remove(sqe, st.timer, 0);
    io_uring_sqe_set_data64(sqe, kCancelBit);
  }
  st.timer = 0;  // a late expiry no longer matches and is ignored
}

void UringEngine::recv_deliver(RecvStream& st, std::span<const std::byte> data) {
  while (!data.empty() && !st.ops.empty()) {
    unsigned index = st.ops.front();
    Slot& s = slots_[index];
    std::size_t n = std::min(data.size(), s.op.len - s.done);
    if (n > 0) std::memcpy(s.op.buf + s.done, data.data(), n);
    s.done += n;
    data = data.subspan(n);
    if (s.done == s.op.len || !s.op.fill) finish(index, Status::ok());
  }
  if (!data.empty()) st.stash.insert(st.stash.end(), data.begin(), data.end());
}

void UringEngine::recv_forget(RecvStream& st) {
  if (!st.orphan) stream_of_fd_.erase(st.fd);
  streams_.erase(st.id);
}

void UringEngine::recv_cqe(const io_uring_cqe& cqe) {
  auto id = static_cast<std::uint32_t>(cqe.user_data & 0xffffffffu);
  auto it = streams_.find(id);
  bool has_buffer = (cqe.flags & IORING_CQE_F_BUFFER) != 0;
  unsigned bid = cqe.flags >> IORING_CQE_BUFFER_SHIFT;
  if (it == streams_.end()) {
    if (has_buffer) recv_ring_->recycle(bid);
    return;
  }
  RecvStream& st = *it->second;
  if (cqe.res > 0 && has_buffer) {
    if (!st.orphan) recv_deliver(st, recv_ring_->data(bid, static_cast<std::size_t>(cqe.res)));
    recv_ring_->recycle(bid);
  } else if (has_buffer) {
    recv_ring_->recycle(bid);
  }
  if (cqe.flags & IORING_CQE_F_MORE) return;

  // The multishot ended: end of stream, an error, our cancel, or no free
  // buffer (-ENOBUFS: it is re-armed, the buffers being back already).
  st.armed = false;
  st.cancelling = false;
  int res = cqe.res;
  if (res == 0) st.eof = true;
  if (res < 0 && res != -ENOBUFS && res != -ECANCELED && !st.ops.empty()) {
    unsigned index = st.ops.front();
    finish(index, detail::op_error(slots_[index].op, -res, slots_[index].done));
  }
  if (st.orphan || (st.ops.empty() && st.stash.empty() && !st.eof)) return recv_forget(st);
  recv_pump(st);
}

void UringEngine::recv_timer_cqe(const io_uring_cqe& cqe) {
  if (cqe.res != -ETIME) return;  // removed: its recv finished first
  std::uint64_t ud = cqe.user_data & ~kRecvTimerBit;
  unsigned index = static_cast<unsigned>(ud & 0xffffffffu);
  if (index >= slots_.size()) return;
  Slot& s = slots_[index];
  if (!s.busy || !s.multishot || s.generation != (ud >> 32)) return;
  auto it = stream_of_fd_.find(s.op.fd);
  if (it == stream_of_fd_.end()) return;
  RecvStream& st = *streams_.at(it->second);
  if (st.timer != cqe.user_data) return;
  st.timer = 0;
  if (s.done != st.timer_mark) {  // progress since: a new deadline from now
    recv_arm_timer(st, index);
    return;
  }
  if (s.started) {  // its direct recv owns the buffer until it completes
    s.timed_out = true;
    io_uring_sqe* sqe = get_sqe();
    if (sqe != nullptr) {
      io_uring_prep_cancel64(sqe, user_data(index), 0);
      io_uring_sqe_set_data64(sqe, kCancelBit);
    }
    return;
  }
  finish(index, detail::op_timeout(s.op));
}

void UringEngine::recv_direct_cqe(unsigned index, int res) {
  Slot& s = slots_[index];
  const Op& op = s.op;
  s.started = false;
  if (res > 0) s.done += static_cast<std::size_t>(res);
  if (s.cancelled) return finish(index, detail::op_cancelled(op));
  if (s.timed_out) return finish(index, detail::op_timeout(op));
  if (res < 0 && res != -EAGAIN && res != -EINTR) {
    return finish(index, detail::op_error(op, -res, s.done));
  }
  auto it = stream_of_fd_.find(op.fd);
  if (it == stream_of_fd_.end()) return finish(index, Status::internal("recv stream lost"));
  RecvStream& st = *streams_.at(it->second);
  if (res == 0) st.eof = true;
  // Full, end of stream, or short: the pump finishes it or goes on.
  recv_pump(st);
}

}  // namespace ferry::io
