// thread_engine.cc: the thread-pool fallback backend.
#include "io/thread_engine.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace ferry::io {

ThreadEngine::ThreadEngine(unsigned depth, unsigned threads, UniqueFd wake)
    : depth_(depth), slots_(new Slot[depth]), wake_(std::move(wake)) {
  free_.reserve(depth);
  for (unsigned i = depth; i-- > 0;) free_.push_back(i);
  parked_.reserve(depth);
  for (unsigned i = 0; i < threads; ++i) workers_.emplace_back([this] { worker(); });
  poller_ = std::thread([this] { poller(); });
}

Result<std::unique_ptr<ThreadEngine>> ThreadEngine::create(const EngineOptions& options) {
  UniqueFd wake(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake.valid()) return Status::from_errno(errno, "eventfd for the io thread pool");
  unsigned threads = std::clamp(options.threads, 1u, kMaxFallbackThreads);
  threads = std::min(threads, options.queue_depth);
  return std::unique_ptr<ThreadEngine>(new ThreadEngine(options.queue_depth, threads, std::move(wake)));
}

ThreadEngine::~ThreadEngine() {
  cancel_all_and_drain();
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  work_cv_.notify_all();
  wake_poller();
  for (auto& t : workers_) t.join();
  poller_.join();
}

unsigned ThreadEngine::outstanding() const {
  std::lock_guard<std::mutex> lock(mu_);
  return busy_ + static_cast<unsigned>(ready_.size());
}

void ThreadEngine::wake_poller() {
  std::uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(wake_.get(), &one, sizeof one);
}

Status ThreadEngine::submit(const Op& op) {
  RETURN_IF_ERROR(detail::validate(op));
  std::unique_lock<std::mutex> lock(mu_);
  if (busy_ + ready_.size() >= depth_) {
    return Status::exhausted("io engine queue full (" + std::to_string(depth_) +
                             " outstanding): wait for completions first");
  }
  unsigned index = free_.back();
  free_.pop_back();
  ++busy_;
  Slot& s = slots_[index];
  s.op = op;
  s.done = 0;
  s.cancelled.store(false);
  s.connecting = false;
  s.has_deadline = false;
  if (op.kind == OpKind::kTimer) {
    s.deadline = Clock::now() + std::chrono::milliseconds(op.timeout_ms);
    s.has_deadline = true;
    s.state = State::kParked;
    s.events = 0;
    parked_.push_back(index);
    lock.unlock();
    wake_poller();
    return Status::ok();
  }
  if (StreamOrder::applies(op.kind) && !order_.admit(op.fd, op.kind, index)) {
    s.state = State::kQueued;
    return Status::ok();
  }
  s.state = State::kRunnable;
  runnable_.push_back(index);
  lock.unlock();
  work_cv_.notify_one();
  return Status::ok();
}

void ThreadEngine::finish_locked(unsigned index, Status status, int fd) {
  Slot& s = slots_[index];
  if (s.connecting) {
    ::fcntl(s.op.fd, F_SETFL, s.saved_flags);
    s.connecting = false;
  }
  Completion c;
  c.tag = s.op.tag;
  c.kind = s.op.kind;
  c.status = std::move(status);
  c.bytes = s.done;
  c.fd = fd;
  ready_.push_back(std::move(c));
  s.state = State::kFree;
  --busy_;
  free_.push_back(index);
  done_cv_.notify_all();
  if (StreamOrder::applies(s.op.kind)) {
    if (auto next = order_.release(s.op.fd, s.op.kind, index)) {
      slots_[*next].state = State::kRunnable;
      runnable_.push_back(*next);
      work_cv_.notify_one();
    }
  }
}

void ThreadEngine::park_locked(unsigned index, short events) {
  Slot& s = slots_[index];
  s.state = State::kParked;
  s.events = events;
  s.has_deadline = s.op.timeout_ms > 0;
  // Deadlines mean "no progress within timeout_ms", as with io_uring's
  // linked timeouts, so each wait starts its own.
  if (s.has_deadline) s.deadline = Clock::now() + std::chrono::milliseconds(s.op.timeout_ms);
  parked_.push_back(index);
}

void ThreadEngine::worker() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    work_cv_.wait(lock, [this] { return stopping_ || !runnable_.empty(); });
    if (stopping_) return;
    unsigned index = runnable_.front();
    runnable_.pop_front();
    Slot& s = slots_[index];
    s.state = State::kRunning;
    lock.unlock();
    Outcome o = attempt(s);
    lock.lock();
    if (o.park && s.cancelled.load()) {
      finish_locked(index, detail::op_cancelled(s.op));
    } else if (o.park) {
      park_locked(index, o.events);
      wake_poller();
    } else {
      finish_locked(index, std::move(o.status), o.fd);
    }
  }
}

ThreadEngine::Outcome ThreadEngine::attempt(Slot& s) {
  const Op& op = s.op;
  Outcome o;
  switch (op.kind) {
    case OpKind::kRead:
    case OpKind::kWrite: {
      bool rd = op.kind == OpKind::kRead;
      while (s.done < op.len) {
        int fd = detail::transfer_fd(op, s.done);
        auto off = static_cast<off_t>(op.offset + s.done);
        ssize_t n = rd ? ::pread(fd, op.buf + s.done, op.len - s.done, off)
                       : ::pwrite(fd, op.buf + s.done, op.len - s.done, off);
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (n < 0) {
          o.status = detail::op_error(op, errno, s.done);
          return o;
        }
        if (n == 0 && rd) return o;  // end of file
        if (n == 0) {
          o.status = detail::op_error(op, EIO, s.done);
          return o;
        }
        s.done += static_cast<std::size_t>(n);
      }
      return o;
    }
    case OpKind::kFsync:
    case OpKind::kFdatasync: {
      int rc;
      do {
        rc = op.kind == OpKind::kFsync ? ::fsync(op.fd) : ::fdatasync(op.fd);
      } while (rc != 0 && errno == EINTR);
      if (rc != 0) o.status = detail::op_error(op, errno, 0);
      return o;
    }
    case OpKind::kConnect:
      return attempt_connect(s);
    case OpKind::kAccept: {
      // The listener may be a blocking socket: look before accepting.
      pollfd p{op.fd, POLLIN, 0};
      int ready = ::poll(&p, 1, 0);
      if (ready == 0 || (ready < 0 && errno == EINTR)) {
        o.park = true;
        o.events = POLLIN;
        return o;
      }
      int fd = ::accept4(op.fd, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0 && (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)) {
        o.park = true;
        o.events = POLLIN;
      } else if (fd < 0) {
        o.status = detail::op_error(op, errno, 0);
      } else {
        o.fd = fd;
      }
      return o;
    }
    case OpKind::kSend:
      while (s.done < op.len) {
        ssize_t n = ::send(op.fd, op.buf + s.done, op.len - s.done, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) {
          o.park = true;
          o.events = POLLOUT;
          return o;
        }
        if (n < 0) {
          o.status = detail::op_error(op, errno, s.done);
          return o;
        }
        s.done += static_cast<std::size_t>(n);
      }
      return o;
    case OpKind::kRecv:
      while (s.done < op.len) {
        ssize_t n = ::recv(op.fd, op.buf + s.done, op.len - s.done, MSG_DONTWAIT);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) {
          if (s.done > 0 && !op.fill) return o;
          o.park = true;
          o.events = POLLIN;
          return o;
        }
        if (n < 0) {
          o.status = detail::op_error(op, errno, s.done);
          return o;
        }
        s.done += static_cast<std::size_t>(n);
        if (n == 0 || !op.fill) return o;
      }
      return o;
    case OpKind::kTimer:
      return o;  // timers never reach a worker
  }
  return o;
}

ThreadEngine::Outcome ThreadEngine::attempt_connect(Slot& s) {
  const Op& op = s.op;
  Outcome o;
  if (!s.connecting) {
    int flags = ::fcntl(op.fd, F_GETFL);
    if (flags < 0 || ::fcntl(op.fd, F_SETFL, flags | O_NONBLOCK) != 0) {
      o.status = detail::op_error(op, errno, 0);
      return o;
    }
    s.saved_flags = flags;
    s.connecting = true;
    int rc;
    do {
      rc = ::connect(op.fd, op.addr->get(), op.addr->size());
    } while (rc != 0 && errno == EINTR);
    if (rc == 0) return o;  // finish_locked restores the flags
    if (errno != EINPROGRESS) {
      o.status = detail::op_error(op, errno, 0);
      return o;
    }
    o.park = true;
    o.events = POLLOUT;
    return o;
  }
  int err = 0;
  socklen_t len = sizeof err;
  if (::getsockopt(op.fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
  if (err != 0) o.status = detail::op_error(op, err, 0);
  return o;
}

void ThreadEngine::poller() {
  std::vector<pollfd> fds;
  std::vector<unsigned> polled;
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    fds.clear();
    polled.clear();
    fds.push_back({wake_.get(), POLLIN, 0});
    auto now = Clock::now();
    int timeout_ms = kFallbackPollSliceMs;
    for (unsigned index : parked_) {
      Slot& s = slots_[index];
      if (s.has_deadline) {
        auto left = std::chrono::ceil<std::chrono::milliseconds>(s.deadline - now).count();
        timeout_ms = std::clamp(static_cast<int>(left), 0, timeout_ms);
      }
      if (s.events != 0) {
        fds.push_back({s.op.fd, s.events, 0});
        polled.push_back(index);
      }
    }
    lock.unlock();
    ::poll(fds.data(), fds.size(), timeout_ms);
    if (fds[0].revents & POLLIN) {
      std::uint64_t v;
      [[maybe_unused]] ssize_t n = ::read(wake_.get(), &v, sizeof v);
    }
    lock.lock();
    // Sockets that became ready go back to the workers.
    for (std::size_t i = 0; i < polled.size(); ++i) {
      if (fds[i + 1].revents == 0) continue;
      Slot& s = slots_[polled[i]];
      if (s.state != State::kParked) continue;
      s.state = State::kRunnable;
      runnable_.push_back(polled[i]);
      work_cv_.notify_one();
    }
    // Then cancellations, expired deadlines and timers.
    now = Clock::now();
    std::vector<unsigned> still;
    still.reserve(parked_.size());
    for (unsigned index : parked_) {
      Slot& s = slots_[index];
      if (s.state != State::kParked) continue;
      if (s.cancelled.load()) {
        finish_locked(index, detail::op_cancelled(s.op));
      } else if (s.has_deadline && now >= s.deadline) {
        finish_locked(index, s.op.kind == OpKind::kTimer ? Status::ok() : detail::op_timeout(s.op));
      } else {
        still.push_back(index);
      }
    }
    parked_.swap(still);
  }
}

Result<std::size_t> ThreadEngine::wait(std::span<Completion> out, std::size_t min_count, int timeout_ms) {
  std::unique_lock<std::mutex> lock(mu_);
  auto enough = [&] {
    std::size_t want = std::min<std::size_t>({min_count, out.size(), busy_ + ready_.size()});
    return ready_.size() >= want;
  };
  if (timeout_ms < 0) {
    done_cv_.wait(lock, enough);
  } else {
    done_cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms), enough);
  }
  std::size_t n = std::min(out.size(), ready_.size());
  for (std::size_t i = 0; i < n; ++i) {
    out[i] = std::move(ready_.front());
    ready_.pop_front();
  }
  return n;
}

Status ThreadEngine::cancel(std::uint64_t tag) {
  bool found = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (unsigned i = 0; i < depth_; ++i) {
      Slot& s = slots_[i];
      if (s.state == State::kFree || s.op.tag != tag) continue;
      found = true;
      s.cancelled.store(true);
      if (s.state == State::kRunnable) {
        runnable_.erase(std::find(runnable_.begin(), runnable_.end(), i));
        finish_locked(i, detail::op_cancelled(s.op));
      } else if (s.state == State::kQueued) {
        finish_locked(i, detail::op_cancelled(s.op));
      }
      // Parked ones the poller finishes; running ones finish on their own.
    }
  }
  if (!found) {
    return Status::not_found("cancel: no outstanding operation with tag " + std::to_string(tag));
  }
  wake_poller();
  return Status::ok();
}

void ThreadEngine::cancel_all() {
  std::vector<std::uint64_t> tags;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (unsigned i = 0; i < depth_; ++i) {
      if (slots_[i].state != State::kFree) tags.push_back(slots_[i].op.tag);
    }
  }
  for (std::uint64_t t : tags) (void)cancel(t);
}

}  // namespace ferry::io
