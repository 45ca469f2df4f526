// gpu_memory.h: device buffers, pinned host memory, copy streams and a
// device-to-device copy baseline behind a plain C++ interface, for callers
// outside cuda/ (restore to device, ferry-bench, tests) that keep data
// resident on the GPU. Without CUDA every call is Unavailable.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "base/status.h"

namespace ferry {

class GpuBuffer {
 public:
  static Result<GpuBuffer> allocate(std::size_t bytes, int device = 0);
  GpuBuffer() = default;
  GpuBuffer(GpuBuffer&&) noexcept = default;
  GpuBuffer& operator=(GpuBuffer&&) noexcept = default;
  ~GpuBuffer();

  std::span<std::byte> span() const { return {data_.get(), size_}; }
  Status upload(std::span<const std::byte> host, std::size_t offset = 0);
  Status download(std::span<std::byte> host, std::size_t offset = 0) const;

 private:
  struct Free {
    void operator()(std::byte* p) const;
  };
  std::unique_ptr<std::byte, Free> data_;
  std::size_t size_ = 0;
};

struct GpuMemoryInfo {
  std::uint64_t free_bytes = 0;
  std::uint64_t total_bytes = 0;
};
// Free and total memory of `device` (cudaMemGetInfo).
Result<GpuMemoryInfo> gpu_memory_info(int device);

// Makes `device` current for the calling thread, for good: only for threads
// ferry owns (a restore's decode lanes) that launch work or copy for a
// device other than 0. Every other call here that names a device makes it
// current only while it runs and leaves the caller's current device as it
// was (a PyTorch thread keeps its torch.cuda.current_device()).
Status gpu_set_device(int device);
// The calling thread's current device (cudaGetDevice).
Result<int> gpu_current_device();

// Device memory shared by its owners; cudaFree when the last one goes.
// Aligned to at least 256 bytes.
Result<std::shared_ptr<std::byte>> gpu_allocate_shared(std::size_t bytes, int device);
// Page-locked host memory (cudaMallocHost) for DMA at full PCIe rate;
// cudaFreeHost when the last owner goes.
Result<std::shared_ptr<std::byte>> pinned_allocate_shared(std::size_t bytes);

// Synchronous copies between host memory (pinned or not) and device memory.
Status gpu_copy_to_device(std::byte* device_dst, const std::byte* host_src, std::size_t bytes);
Status gpu_copy_to_host(std::byte* host_dst, const std::byte* device_src, std::size_t bytes);

// One non-blocking CUDA stream for copies that overlap other work (the host
// source must be pinned for the copy to be truly asynchronous).
class GpuStream {
 public:
  static Result<GpuStream> create(int device = 0);
  GpuStream() = default;
  GpuStream(GpuStream&&) noexcept = default;
  GpuStream& operator=(GpuStream&&) noexcept = default;
  ~GpuStream();

  Status copy_to_device_async(std::byte* device_dst, const std::byte* host_src, std::size_t bytes);
  // Waits for every copy queued on the stream.
  Status synchronize();

 private:
  struct Destroy {
    void operator()(void* s) const;
  };
  std::unique_ptr<void, Destroy> stream_;
};

// Device-to-device copy rate (bytes read + written per second / 1e9) over
// `bytes`, the ceiling GPU codec figures are quoted against.
Result<double> gpu_copy_gbps(std::size_t bytes, int repeats = 5);

}  // namespace ferry
