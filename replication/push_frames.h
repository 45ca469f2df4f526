// push_frames.h: the frames of one push between the packer and the streams
// (sender.cc): the abort flag every thread of a push watches, the frame
// buffers lent to the packer and given back once sent, one frame on its way
// (Outgoing) and the bounded queue that carries them. Internal to push().
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <variant>
#include <vector>

#include "base/buffer_stash.h"
#include "base/status.h"
#include "codec/frame.h"
#include "codec/frame_rebuilder.h"
#include "replication/protocol.h"

namespace ferry::replication {

// How long a stream with nothing in flight waits for the queue before it
// looks at the abort flag again.
inline constexpr int kQueuePollMs = 50;
// Frame buffers kept for the next push in this process when one ends
// (base/buffer_stash.h): a push of the defaults holds 11 to 13.
inline constexpr std::size_t kKeptFrameBuffers = 16;

// Shared by every stream of a push: stops everything on the first final
// error, which it keeps.
class AbortFlag {
 public:
  explicit AbortFlag(const std::function<bool()>& should_stop) : should_stop_(should_stop) {}
  void raise(const Status& s) {
    std::lock_guard lock(mu_);
    if (status_.is_ok()) status_ = s;
    raised_.store(true);
  }
  // Also true once the caller's should_stop says so (the push is cancelled).
  bool raised() const {
    if (raised_.load()) return true;
    if (should_stop_ && should_stop_()) {
      std::lock_guard lock(mu_);
      if (status_.is_ok()) status_ = Status::aborted("push cancelled");
      raised_.store(true);
      return true;
    }
    return false;
  }
  Status status() const {
    std::lock_guard lock(mu_);
    return status_;
  }

 private:
  const std::function<bool()>& should_stop_;
  mutable std::mutex mu_;
  // Mutable: raised() records a cancellation it observes.
  mutable Status status_;
  mutable std::atomic<bool> raised_{false};
};

// The buffer stash shared by the pushes of this process (push_frames.cc).
BufferStash<std::vector<std::byte>>& frame_buffer_stash();

// Frame buffers given back as soon as their frames are sent and lent again
// to the packer, which codes the next frames straight into them: a fresh
// multi-MiB buffer per frame costs a page fault and the kernel's zeroing for
// every 4 KiB, about as much CPU as coding into it. Every buffer has room for
// a frame of the push's largest chunk, so any buffer serves any chunk. It
// holds at most what was unsent at once: the packer's window being coded,
// the queue, and one frame per stream being sent (or rebuilt for a resend);
// never the windows in flight.
class FrameBuffers {
 public:
  explicit FrameBuffers(std::size_t buffer_bytes) : buffer_bytes_(buffer_bytes) {}
  FrameBuffers(const FrameBuffers&) = delete;
  FrameBuffers& operator=(const FrameBuffers&) = delete;
  // Every buffer is free by now (it outlives the frames): kept for the
  // next push in this process.
  ~FrameBuffers() {
    for (auto& v : free_) frame_buffer_stash().keep(std::move(v));
  }
  // A buffer of size `bytes`: one of this push's that is free, else one an
  // earlier push kept, else a new one. Its bytes are stale (they are
  // overwritten): a recycled buffer keeps its last frame's size, so
  // resizing zeroes only the difference.
  std::vector<std::byte> take(std::size_t bytes) {
    std::vector<std::byte> v;
    {
      std::lock_guard lock(mu_);
      if (!free_.empty()) {
        v = std::move(free_.back());
        free_.pop_back();
      }
    }
    if (v.capacity() < bytes) {
      const std::size_t room = std::max(bytes, buffer_bytes_);
      v = frame_buffer_stash().take(room, 2 * room);
      if (v.capacity() < room) {
        v = {};
        v.reserve(room);
      }
      allocated_bytes_.fetch_add(v.capacity());
    }
    v.resize(bytes);
    return v;
  }
  void give(std::vector<std::byte>&& v) {
    if (v.capacity() == 0) return;
    std::lock_guard lock(mu_);
    free_.push_back(std::move(v));
  }
  // What the buffers made so far hold (PushReport::frame_memory_bytes).
  std::uint64_t allocated_bytes() const { return allocated_bytes_.load(); }

 private:
  const std::size_t buffer_bytes_;
  std::atomic<std::uint64_t> allocated_bytes_{0};
  std::mutex mu_;
  std::vector<std::vector<std::byte>> free_;
};

// One frame on its way: a PUT message (its request id is set by the stream
// that sends it), the chunk it carries and where that comes from. Its frame
// buffer goes back to `buffers` once the frame is sent; a resend after a
// break rebuilds the frame from `origin` (frame_rebuilder.h).
struct Outgoing {
  Digest id{};
  Message put;  // a Put; its frame is empty once released
  ChunkOrigin origin;
  std::size_t frame_size = 0;  // kept when the frame is released
  FrameBuffers* buffers = nullptr;
  Outgoing() = default;
  Outgoing(const Outgoing&) = delete;
  Outgoing& operator=(const Outgoing&) = delete;
  ~Outgoing() { release_frame(); }
  std::vector<std::byte>& frame() { return std::get<Put>(put).frame; }
  bool has_frame() { return !frame().empty(); }
  void release_frame() {
    auto* p = std::get_if<Put>(&put);
    if (p == nullptr) return;
    if (buffers != nullptr) buffers->give(std::move(p->frame));
    p->frame = {};
  }
  std::size_t frame_bytes() const { return frame_size; }
};

// Frames between the packer and the streams, bounded in bytes.
class FrameQueue {
 public:
  explicit FrameQueue(std::uint64_t capacity_bytes) : capacity_(capacity_bytes) {}

  // Blocks while the queue is full. Aborted when the push is being stopped.
  Status push(std::unique_ptr<Outgoing> item, const AbortFlag& abort) {
    std::unique_lock lock(mu_);
    const std::size_t n = item->frame_bytes();
    while (bytes_ > 0 && bytes_ + n > capacity_ && !abort.raised()) {
      not_full_.wait_for(lock, std::chrono::milliseconds(kQueuePollMs));
    }
    if (abort.raised()) return abort.status();
    bytes_ += n;
    items_.push_back(std::move(item));
    not_empty_.notify_one();
    return Status::ok();
  }
  // The next frame, waiting up to wait_ms; null when none came (see done()).
  std::unique_ptr<Outgoing> pop(int wait_ms) {
    std::unique_lock lock(mu_);
    if (items_.empty() && !closed_ && wait_ms > 0) {
      not_empty_.wait_for(lock, std::chrono::milliseconds(wait_ms));
    }
    if (items_.empty()) return nullptr;
    auto item = std::move(items_.front());
    items_.pop_front();
    bytes_ -= item->frame_bytes();
    not_full_.notify_one();
    return item;
  }
  // No more frames will come.
  void close() {
    std::lock_guard lock(mu_);
    closed_ = true;
    not_empty_.notify_all();
  }
  bool done() {
    std::lock_guard lock(mu_);
    return closed_ && items_.empty();
  }
  void wake_all() {
    not_full_.notify_all();
    not_empty_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable not_full_, not_empty_;
  std::deque<std::unique_ptr<Outgoing>> items_;
  std::uint64_t bytes_ = 0;
  std::uint64_t capacity_;
  bool closed_ = false;
};

}  // namespace ferry::replication
