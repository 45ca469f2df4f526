// gpu_limits.h: every size and launch limit of the GPU engine, in one place,
// for the kernels (cuda/*.cuh), the host planning (cuda/batch_plan.h) and the
// engine (cuda/gpu_engine.cu). Plain C++: host-only tests include it too.
#pragma once

#include <cstddef>
#include <cstdint>

namespace ferry::gpu {

// Leaf of the chunk-id tree (docs/FORMAT.md section 2); also the segment of
// the parallel payload CRC.
inline constexpr std::uint32_t kLeafBytes = 4096;
// SHA-256 digest: one per leaf, the tree's nodes, the chunk id.
inline constexpr std::uint32_t kDigestBytes = 32;
// Frame header (docs/FORMAT.md section 3); equal to ferry::kFrameHeaderBytes.
inline constexpr std::uint32_t kFrameHeaderBytes = 88;
inline constexpr std::uint32_t kHeaderCrcOffset = 84;
// Widest element the float codec splits into planes (fp32).
inline constexpr std::uint32_t kMaxWidth = 4;

// Threads per block of the per-leaf and per-warp kernels; a warp is 32 lanes.
inline constexpr int kThreads = 128;
inline constexpr int kWarpLanes = 32;
inline constexpr int kWarpsPerBlock = kThreads / kWarpLanes;
// Threads per block of the per-chunk finish kernels (tree reduce).
inline constexpr int kFinishThreads = 256;
// Threads of the per-chunk parse and layout kernels (parse: one checks the
// structure, all build the decoder tables; layout: one).
inline constexpr int kPlanThreads = 32;
// CUDA caps gridDim.y (the chunk index of a launch) at 65535: a sub-batch
// never holds more chunks than this.
inline constexpr std::uint32_t kMaxChunksPerLaunch = 65535;
// A raw chunk is copied into its frame by one warp per this many bytes.
inline constexpr std::uint32_t kRawCopyUnitBytes = 16384;

// Device arena slices are aligned like cudaMalloc's.
inline constexpr std::size_t kArenaAlign = 256;
// The engine's pinned pool is at least this large (frame headers fetched
// from device memory, small host batches).
inline constexpr std::size_t kMinPinnedBytes = std::size_t{64} << 10;

// Device memory the CUDA context takes when the engine's kernels first
// run, beyond what cudaMemGetInfo shows before: local memory reserved for
// every thread the device can hold (ptxas -v on sm_90: the finish kernels
// have the largest frame, 384 bytes, parse 80, the rest less; the default
// stack limit is 1 KiB), and the module's code and constants.
inline constexpr std::size_t kLocalBytesPerThread = 2048;
inline constexpr std::size_t kModuleReserveBytes = std::size_t{64} << 20;

}  // namespace ferry::gpu
