// encode_kernels.cuh: the GPU float encoder (payload version 2) and chunk
// hash, one batch of chunks per launch (blockIdx.y is the chunk). Stages:
// split_hash (one read of the input: leaf hashes, byte planes, each
// segment's histogram and the sampled one); then the host plans every plane
// from those histograms with the CPU encoder's planner (batch_plan.h:
// plan_chunk); encode_blocks (one warp per 65536-symbol block, each segment
// with its table), layout (offsets, tables, choices, stored sizes),
// assemble (blocks into the frame), crc_segments and finish (tree root,
// payload CRC, header). Byte layout: docs/FORMAT.md 4.2. Each kernel is a
// thin launch over the steps of cuda/encode_steps.cuh, which host-only
// tests run over the same grid.
#pragma once

#include "cuda/encode_steps.cuh"

namespace ferry::gpu {

__global__ void split_hash_kernel(EncChunk* chunks) {
  __shared__ std::uint32_t hist[kSplitHistWords];
  split_hash_block(chunks[blockIdx.y], blockIdx.x, hist, DeviceBlock{});
}

__global__ void encode_blocks_kernel(EncChunk* chunks) {
  encode_block(chunks[blockIdx.y], blockIdx.x * kWarpsPerBlock + threadIdx.x / kWarpLanes,
               DeviceWarp{static_cast<int>(threadIdx.x % kWarpLanes)});
}

__global__ void layout_kernel(EncChunk* chunks) {
  if (threadIdx.x == 0) layout_chunk(chunks[blockIdx.x]);
}

__global__ void assemble_kernel(EncChunk* chunks) {
  assemble_lane(chunks[blockIdx.y], blockIdx.x * kWarpsPerBlock + threadIdx.x / kWarpLanes,
                threadIdx.x % kWarpLanes);
}

// The CRC32C byte table in shared memory, filled by the whole block.
__device__ __forceinline__ void load_crc_table(std::uint32_t* table) {
  for (int i = threadIdx.x; i < 256; i += blockDim.x) table[i] = crc_table_entry(i);
  __syncthreads();
}

__global__ void enc_crc_kernel(EncChunk* chunks) {
  __shared__ std::uint32_t table[256];
  load_crc_table(table);
  const EncChunk& c = chunks[blockIdx.y];
  crc_segment(table, c.frame + kFrameHeaderBytes, c.payload_bytes, blockIdx.x * blockDim.x + threadIdx.x,
              c.seg_crc);
}

__global__ void enc_finish_kernel(EncChunk* chunks, EncResult* results, const std::uint32_t* shift4k) {
  __shared__ std::uint32_t table[256];
  load_crc_table(table);
  finish_encode_block(chunks[blockIdx.x], table, shift4k, results[blockIdx.x], DeviceBlock{});
}

}  // namespace ferry::gpu
