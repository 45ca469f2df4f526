// hd.cuh: FERRY_HD marks functions that compile both for the GPU and, in a
// plain C++ build, for the host, so host-only tests can check the GPU's
// per-lane integer logic against the CPU codec bit for bit.
#pragma once

#include <cstddef>
#include <cstdint>

#if defined(__CUDACC__)
#define FERRY_HD __host__ __device__ __forceinline__
#else
#define FERRY_HD inline
#endif

namespace ferry::gpu {

FERRY_HD int hd_popc(std::uint32_t v) {
#if defined(__CUDA_ARCH__)
  return __popc(v);
#else
  return __builtin_popcount(v);
#endif
}

FERRY_HD int hd_clz(std::uint32_t v) {
#if defined(__CUDA_ARCH__)
  return __clz(static_cast<int>(v));
#else
  return v == 0 ? 32 : __builtin_clz(v);
#endif
}

FERRY_HD std::uint64_t hd_mulhi64(std::uint64_t a, std::uint64_t b) {
#if defined(__CUDA_ARCH__)
  return __umul64hi(a, b);
#else
  return static_cast<std::uint64_t>((static_cast<unsigned __int128>(a) * b) >> 64);
#endif
}

FERRY_HD std::uint32_t hd_bswap(std::uint32_t v) {
#if defined(__CUDA_ARCH__)
  return __byte_perm(v, 0, 0x0123);
#else
  return __builtin_bswap32(v);
#endif
}

FERRY_HD std::uint32_t hd_min(std::uint32_t a, std::uint32_t b) { return a < b ? a : b; }
FERRY_HD std::uint32_t hd_max(std::uint32_t a, std::uint32_t b) { return a > b ? a : b; }

}  // namespace ferry::gpu
