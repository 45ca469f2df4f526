// device_arena.h: RAII CUDA resources and the reusable device stack
// allocator. The arena is one cudaMalloc made when the engine starts;
// each sub-batch takes aligned slices of it and releases them all at once,
// so the hot path never calls cudaMalloc or cudaFree.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <memory>

#include "cuda/cuda_check.h"

namespace ferry::gpu {

struct DeviceFree {
  void operator()(void* p) const { cudaFree(p); }
};
struct HostFree {
  void operator()(void* p) const { cudaFreeHost(p); }
};
struct StreamDestroy {
  void operator()(cudaStream_t s) const { cudaStreamDestroy(s); }
};
struct EventDestroy {
  void operator()(cudaEvent_t e) const { cudaEventDestroy(e); }
};
using DeviceBuffer = std::unique_ptr<void, DeviceFree>;
using PinnedBuffer = std::unique_ptr<void, HostFree>;
using Stream = std::unique_ptr<std::remove_pointer_t<cudaStream_t>, StreamDestroy>;
using Event = std::unique_ptr<std::remove_pointer_t<cudaEvent_t>, EventDestroy>;

inline constexpr std::size_t kArenaAlign = 256;

class StackArena {
 public:
  StackArena() = default;
  StackArena(std::byte* base, std::size_t bytes) : base_(base), size_(bytes) {}

  std::size_t capacity() const { return size_; }
  std::size_t used() const { return top_; }
  void reset() { top_ = 0; }

  // nullptr when the arena is full (the caller splits its batch).
  template <typename T>
  T* take(std::size_t count) {
    std::size_t at = (top_ + kArenaAlign - 1) / kArenaAlign * kArenaAlign;
    std::size_t bytes = count * sizeof(T);
    if (at > size_ || size_ - at < bytes) return nullptr;
    top_ = at + bytes;
    return reinterpret_cast<T*>(base_ + at);
  }

  // Bytes take() would use for these sizes, for planning sub-batches.
  static std::size_t rounded(std::size_t bytes) {
    return (bytes + kArenaAlign - 1) / kArenaAlign * kArenaAlign;
  }

 private:
  std::byte* base_ = nullptr;
  std::size_t size_ = 0;
  std::size_t top_ = 0;
};

}  // namespace ferry::gpu
