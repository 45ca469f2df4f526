// buffer_pool.cc: the aligned buffer region and its free list.
#include "tests/testing/buffer_pool.h"

#include <sys/mman.h>

#include <cerrno>

#include "io/io_limits.h"

namespace ferry::io {

namespace {

class MmapAllocator final : public HostAllocator {
 public:
  Result<void*> allocate(std::size_t bytes, std::size_t alignment) override {
    if (alignment > 4096) return Status::invalid_argument("mmap allocator aligns to 4 KiB at most");
    void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
      int err = errno;
      return Status::exhausted("allocate " + std::to_string(bytes) +
                               " bytes of I/O buffers: " + Status::from_errno(err, "mmap").message());
    }
    return p;
  }
  void deallocate(void* p, std::size_t bytes) override { ::munmap(p, bytes); }
  const char* name() const override { return "host"; }
};

}  // namespace

HostAllocator& default_host_allocator() {
  static MmapAllocator allocator;
  return allocator;
}

BufferPool::BufferPool(std::unique_ptr<std::byte, RegionDeleter> region, std::size_t buffer_bytes,
                       std::size_t count)
    : region_(std::move(region)), buffer_bytes_(buffer_bytes), count_(count), out_(count, false) {
  free_.reserve(count);
  for (std::size_t i = count; i-- > 0;) free_.push_back(i);
}

Result<BufferPool> BufferPool::create(std::size_t buffer_bytes, std::size_t count, HostAllocator* allocator) {
  if (buffer_bytes == 0 || count == 0) {
    return Status::invalid_argument("buffer pool needs a non-zero buffer size and count");
  }
  if (allocator == nullptr) allocator = &default_host_allocator();
  std::size_t rounded = (buffer_bytes + kDirectAlignBytes - 1) / kDirectAlignBytes * kDirectAlignBytes;
  if (count > SIZE_MAX / rounded) return Status::invalid_argument("buffer pool size overflows");
  std::size_t total = rounded * count;
  ASSIGN_OR_RETURN(void* p, allocator->allocate(total, kDirectAlignBytes));
  FERRY_CHECK(reinterpret_cast<std::uintptr_t>(p) % kDirectAlignBytes == 0);
  std::unique_ptr<std::byte, RegionDeleter> region(static_cast<std::byte*>(p),
                                                   RegionDeleter{allocator, total});
  return BufferPool(std::move(region), rounded, count);
}

std::span<std::byte> BufferPool::buffer(std::size_t index) const {
  FERRY_CHECK(index < count_);
  return {region_.get() + index * buffer_bytes_, buffer_bytes_};
}

std::optional<std::size_t> BufferPool::acquire() {
  if (free_.empty()) return std::nullopt;
  std::size_t i = free_.back();
  free_.pop_back();
  out_[i] = true;
  return i;
}

void BufferPool::release(std::size_t index) {
  FERRY_CHECK(index < count_ && out_[index]);
  out_[index] = false;
  free_.push_back(index);
}

iovec BufferPool::region() const { return {region_.get(), buffer_bytes_ * count_}; }

}  // namespace ferry::io
