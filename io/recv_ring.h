// recv_ring.h: a provided buffer ring for io_uring's multishot receive. The
// kernel picks a free buffer from the ring for each chunk a socket receives
// and names it in the completion (IORING_CQE_F_BUFFER, buffer id in the upper
// 16 bits of the flags); the engine copies the bytes out to the caller's
// buffer and hands the buffer straight back with recycle().
#pragma once

#include <liburing.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "base/status.h"

namespace ferry::io {

class RecvRing {
 public:
  // Registers `count` (a power of two) buffers of `bytes` each as buffer
  // group `group` of `ring`. Unsupported where the kernel lacks buffer rings
  // (before 5.19).
  static Result<std::unique_ptr<RecvRing>> create(io_uring* ring, std::uint16_t group, unsigned count,
                                                  std::size_t bytes);
  ~RecvRing();
  RecvRing(const RecvRing&) = delete;
  RecvRing& operator=(const RecvRing&) = delete;

  std::uint16_t group() const { return group_; }
  // The `len` bytes the kernel wrote into buffer `bid`.
  std::span<const std::byte> data(unsigned bid, std::size_t len) const;
  // Gives buffer `bid` back to the kernel.
  void recycle(unsigned bid);

 private:
  RecvRing(io_uring* ring, std::uint16_t group, unsigned count, std::size_t bytes);

  io_uring* ring_;
  std::uint16_t group_;
  unsigned count_;
  std::size_t bytes_;
  io_uring_buf_ring* br_ = nullptr;  // mmap'd, page aligned as the kernel requires
  std::size_t br_bytes_ = 0;
  std::byte* buffers_ = nullptr;  // mmap'd, count_ * bytes_
  bool registered_ = false;
};

}  // namespace ferry::io
