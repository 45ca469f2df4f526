// simt.cuh: the warp and block primitives that the kernels' shared steps
// (cuda/encode_steps.cuh, cuda/decode_steps.cuh) are written against. On the
// GPU, DeviceWarp and DeviceBlock are one thread's view: `each` runs the
// step for this thread's lane, `Each<T>` is this lane's register, `ballot`
// and `sync` are __ballot_sync and __syncthreads, `add` is atomicAdd, and
// `each_warp` hands the thread's warp index and warp to a step. Host-only tests supply
// objects with the same members that run every lane of a step in turn
// (tests/cuda/kernel_emulator.h), so they execute the kernels' own code.
//
// Contract of code written against them: between two collectives (ballot,
// any, sync) no lane reads what another lane writes in the same step, and
// every lane reaches every collective (control flow around collectives
// depends only on warp- or block-uniform values). That is what makes the
// host's lane-by-lane run equal to the GPU's parallel one; compute-sanitizer
// racecheck and synccheck check it on a GPU (scripts/gpu-run.sh).
#pragma once

#include "cuda/gpu_limits.h"
#include "cuda/hd.cuh"

namespace ferry::gpu {

#if defined(__CUDACC__)

struct DeviceWarp {
  int lane;
  template <typename T>
  struct Each {
    T v{};
    FERRY_HD T& operator[](int) { return v; }
    FERRY_HD const T& operator[](int) const { return v; }
  };
  template <typename F>
  FERRY_HD void each(F&& f) const {
    f(lane);
  }
  FERRY_HD std::uint32_t ballot(const Each<bool>& pred) const {
#if defined(__CUDA_ARCH__)
    return __ballot_sync(0xffffffffu, pred.v);
#else
    return pred.v ? 1u : 0u;  // never called on the host
#endif
  }
  FERRY_HD bool any(const Each<bool>& pred) const { return ballot(pred) != 0; }
};

struct DeviceBlock {
  template <typename T>
  struct Each {
    FERRY_HD explicit Each(const DeviceBlock&) {}
    T v{};
    FERRY_HD T& operator[](std::uint32_t) { return v; }
  };
  FERRY_HD std::uint32_t size() const {
#if defined(__CUDA_ARCH__)
    return blockDim.x;
#else
    return 1;
#endif
  }
  template <typename F>
  FERRY_HD void each(F&& f) const {
#if defined(__CUDA_ARCH__)
    f(threadIdx.x);
#else
    f(0u);
#endif
  }
  FERRY_HD void sync() const {
#if defined(__CUDA_ARCH__)
    __syncthreads();
#endif
  }
  // *p += v, atomically between the block's threads (shared or global memory).
  FERRY_HD void add(std::uint32_t* p, std::uint32_t v) const {
#if defined(__CUDA_ARCH__)
    atomicAdd(p, v);
#else
    *p += v;
#endif
  }
  // f(warp index, this thread's DeviceWarp).
  template <typename F>
  FERRY_HD void each_warp(F&& f) const {
#if defined(__CUDA_ARCH__)
    f(threadIdx.x / kWarpLanes, DeviceWarp{static_cast<int>(threadIdx.x % kWarpLanes)});
#else
    f(0u, DeviceWarp{0});
#endif
  }
};

#endif  // __CUDACC__

}  // namespace ferry::gpu
