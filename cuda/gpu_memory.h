// gpu_memory.h: device buffers and a device-to-device copy baseline behind
// a plain C++ interface, for callers outside cuda/ (ferry-bench, tests) that
// keep data resident on the GPU. Without CUDA every call is Unavailable.
#pragma once

#include <cstddef>
#include <memory>
#include <span>

#include "codec/status.h"

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

// Device-to-device copy rate (bytes read + written per second / 1e9) over
// `bytes`, the ceiling GPU codec figures are quoted against.
Result<double> gpu_copy_gbps(std::size_t bytes, int repeats = 5);

}  // namespace ferry
