// decode_kernels.cuh: GPU decode + verify of a batch of frames, thin
// launches over cuda/decode_steps.cuh. parse checks every length and table
// of a (hostile) float payload before any block is touched, then its
// threads build the decoder tables side by side; decode_blocks
// has one warp per version 2 block (65536 symbols) decode it into the
// chunk's planes; decode_fused has one warp per plane fill tile b of every
// plane into shared memory (decoding version 1 block b in place, copying
// raw planes and version 2 planes), merges the planes into elements,
// writes them out and hashes the tile's 4 KiB leaves straight from shared
// memory (no second pass over device memory); finish joins the payload CRC and reduces the tree, and compares
// both with the header. Errors are recorded per chunk, never trapped, so one
// bad frame cannot hurt the others.
#pragma once

#include "cuda/decode_steps.cuh"
#include "cuda/encode_kernels.cuh"

namespace ferry::gpu {

__global__ void dec_crc_kernel(DecChunk* chunks) {
  __shared__ std::uint32_t table[256];
  load_crc_table(table);
  const DecChunk& c = chunks[blockIdx.y];
  crc_segment(table, c.payload, c.payload_bytes, blockIdx.x * blockDim.x + threadIdx.x, c.seg_crc);
}

__global__ void parse_kernel(DecChunk* chunks) { parse_block(chunks[blockIdx.x], DeviceBlock{}); }

__global__ void decode_blocks_kernel(DecChunk* chunks) {
  decode_block_v2(chunks[blockIdx.y], blockIdx.x * kWarpsPerBlock + threadIdx.x / kWarpLanes,
                  DeviceWarp{static_cast<int>(threadIdx.x % kWarpLanes)});
}

__global__ void decode_fused_kernel(DecChunk* chunks) {
  extern __shared__ std::uint8_t tile[];  // width * kBlockSymbols
  __shared__ std::uint32_t err_seen;
  decode_fused_block(chunks[blockIdx.y], blockIdx.x, tile, err_seen, DeviceBlock{});
}

__global__ void raw_copy_hash_kernel(DecChunk* chunks) {
  raw_copy_leaf(chunks[blockIdx.y], blockIdx.x * blockDim.x + threadIdx.x);
}

__global__ void dec_finish_kernel(DecChunk* chunks, const std::uint32_t* shift4k) {
  __shared__ std::uint32_t err_seen;
  finish_decode_block(chunks[blockIdx.x], shift4k, err_seen, DeviceBlock{});
}

}  // namespace ferry::gpu
