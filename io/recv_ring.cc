// recv_ring.cc: the provided buffer ring behind multishot receive.
#include "io/recv_ring.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>

namespace ferry::io {

RecvRing::RecvRing(io_uring* ring, std::uint16_t group, unsigned count, std::size_t bytes)
    : ring_(ring), group_(group), count_(count), bytes_(bytes) {}

Result<std::unique_ptr<RecvRing>> RecvRing::create(io_uring* ring, std::uint16_t group, unsigned count,
                                                   std::size_t bytes) {
  if (count == 0 || (count & (count - 1)) != 0 || count > 32768) {
    return Status::invalid_argument("recv buffer ring: " + std::to_string(count) +
                                    " buffers, need a power of two up to 32768");
  }
  std::unique_ptr<RecvRing> r(new RecvRing(ring, group, count, bytes));
  r->br_bytes_ = count * sizeof(io_uring_buf);
  void* br = ::mmap(nullptr, r->br_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (br == MAP_FAILED) return Status::from_errno(errno, "recv buffer ring: mmap ring");
  r->br_ = static_cast<io_uring_buf_ring*>(br);
  void* bufs = ::mmap(nullptr, count * bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (bufs == MAP_FAILED) return Status::from_errno(errno, "recv buffer ring: mmap buffers");
  r->buffers_ = static_cast<std::byte*>(bufs);

  io_uring_buf_reg reg{};
  reg.ring_addr = reinterpret_cast<std::uint64_t>(r->br_);
  reg.ring_entries = count;
  reg.bgid = group;
  int rc = io_uring_register_buf_ring(ring, &reg, 0);
  if (rc < 0) {
    return Status(rc == -EINVAL ? Code::kUnsupported : Code::kIOError,
                  std::string("io_uring register buffer ring: ") + std::strerror(-rc));
  }
  r->registered_ = true;
  io_uring_buf_ring_init(r->br_);
  int mask = io_uring_buf_ring_mask(count);
  for (unsigned i = 0; i < count; ++i) {
    io_uring_buf_ring_add(r->br_, r->buffers_ + i * bytes, static_cast<unsigned>(bytes),
                          static_cast<unsigned short>(i), mask, static_cast<int>(i));
  }
  io_uring_buf_ring_advance(r->br_, static_cast<int>(count));
  return r;
}

RecvRing::~RecvRing() {
  if (registered_) io_uring_unregister_buf_ring(ring_, group_);
  if (buffers_ != nullptr) ::munmap(buffers_, count_ * bytes_);
  if (br_ != nullptr) ::munmap(br_, br_bytes_);
}

std::span<const std::byte> RecvRing::data(unsigned bid, std::size_t len) const {
  return {buffers_ + static_cast<std::size_t>(bid) * bytes_, len};
}

void RecvRing::recycle(unsigned bid) {
  io_uring_buf_ring_add(br_, buffers_ + static_cast<std::size_t>(bid) * bytes_, static_cast<unsigned>(bytes_),
                        static_cast<unsigned short>(bid), io_uring_buf_ring_mask(count_), 0);
  io_uring_buf_ring_advance(br_, 1);
}

}  // namespace ferry::io
