// device_arena.h: RAII CUDA resources (device and pinned allocations,
// streams, events, the current-device guard). The engine's arena is one
// cudaMalloc made when it starts, handed out by gpu::StackArena
// (cuda/batch_plan.h), so the hot path never calls cudaMalloc or cudaFree.
#pragma once

#include <cuda_runtime.h>

#include <memory>
#include <type_traits>

#include "cuda/batch_plan.h"
#include "cuda/cuda_check.h"
#include "cuda/device_guard.h"

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

struct CudaDeviceApi {
  static Status current(int* device) { return cuda_status(cudaGetDevice(device), "cudaGetDevice"); }
  static Status set(int device) { return cuda_status(cudaSetDevice(device), "cudaSetDevice"); }
};
using DeviceGuard = BasicDeviceGuard<CudaDeviceApi>;

}  // namespace ferry::gpu
