// buffer_pool.h: a fixed set of equal, 4 KiB-aligned I/O buffers carved from
// one region that is allocated up front, reused for the life of the pool and
// registered with the engine (io_uring fixed buffers). A test and benchmark
// aid for the engine's file operations (tests/io, `ferry-bench io`), which
// ferry's own files do not use (see io_file.h). Where the memory comes from is
// the allocator's business: plain aligned host memory by default, or any
// other HostAllocator (pinned memory, for instance).
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "base/status.h"

namespace ferry::io {

class HostAllocator {
 public:
  virtual ~HostAllocator() = default;
  // REQUIRES: alignment is a power of two. Never returns null on success.
  virtual Result<void*> allocate(std::size_t bytes, std::size_t alignment) = 0;
  virtual void deallocate(void* p, std::size_t bytes) = 0;
  virtual const char* name() const = 0;
};

// Page-aligned anonymous memory (mmap). Thread-safe; lives forever.
HostAllocator& default_host_allocator();

// Not thread-safe: one owner hands buffers out and takes them back.
class BufferPool {
 public:
  // `buffer_bytes` is rounded up to kDirectAlignBytes. `allocator` must
  // outlive the pool; null means default_host_allocator().
  static Result<BufferPool> create(std::size_t buffer_bytes, std::size_t count,
                                   HostAllocator* allocator = nullptr);

  BufferPool(BufferPool&&) noexcept = default;
  BufferPool& operator=(BufferPool&&) noexcept = default;

  std::size_t buffer_bytes() const { return buffer_bytes_; }
  std::size_t count() const { return count_; }
  std::span<std::byte> buffer(std::size_t index) const;

  // A free buffer's index, or nothing when all are out (back-pressure).
  std::optional<std::size_t> acquire();
  // REQUIRES: index came from acquire() and was not released since.
  void release(std::size_t index);
  std::size_t free_count() const { return free_.size(); }

  // The whole region, for Engine::register_buffers.
  iovec region() const;

 private:
  struct RegionDeleter {
    HostAllocator* allocator;
    std::size_t bytes;
    void operator()(std::byte* p) const { allocator->deallocate(p, bytes); }
  };

  BufferPool(std::unique_ptr<std::byte, RegionDeleter> region, std::size_t buffer_bytes, std::size_t count);

  std::unique_ptr<std::byte, RegionDeleter> region_;
  std::size_t buffer_bytes_ = 0;
  std::size_t count_ = 0;
  std::vector<std::size_t> free_;
  std::vector<bool> out_;
};

}  // namespace ferry::io
