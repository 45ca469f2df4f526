// chunk_batch.cuh: the per-chunk records of one GPU batch (EncChunk for
// encode, DecChunk for decode): where each chunk's buffers are (device
// memory when the kernels run, host memory when host-only tests run the same
// steps) and what the kernels write back. Plain C++: cuda/batch_plan.h fills
// them on the host, cuda/encode_steps.cuh and cuda/decode_steps.cuh use them.
#pragma once

#include "cuda/gpu_limits.h"
#include "cuda/rans_lane.cuh"

namespace ferry::gpu {

// One chunk of an encode batch; pointers are device memory in the arena
// (or the caller's device buffers).
struct EncChunk {
  const std::uint8_t* in;
  std::uint8_t* frame;
  std::uint8_t* planes;      // width * n
  std::uint16_t* words;      // width * blocks * 8192 (one slot per block)
  std::uint32_t* states;     // width * blocks * 32
  std::uint8_t* digests;     // 32 * leaves
  std::uint32_t* hist;       // width * 2 * 256: full, then every 16th symbol
  std::uint32_t* stored;     // width * blocks
  std::uint32_t* block_off;  // width * blocks, payload-relative
  std::uint32_t* seg_crc;    // payload segments of 4 KiB
  EncSym* tables;            // width * 256
  std::uint32_t raw_bytes, n, width, blocks, leaves;
  std::uint8_t codec, dtype;
  // Written on the device:
  std::uint32_t mode[kMaxWidth], plane_off[kMaxWidth], table_k[kMaxWidth];
  std::uint32_t payload_bytes, is_raw;
};

struct EncResult {
  std::uint8_t id[kDigestBytes];
  std::uint32_t codec;
  std::uint32_t frame_bytes;
};

enum DecError : std::uint32_t {
  kDecOk = 0,
  kDecPayloadCrc = 1,
  kDecStructure = 2,  // mode byte, table or block sizes; `plane` set
  kDecBlock = 3,      // a coded block does not decode; `plane`, `block` set
  kDecHash = 4,       // decoded bytes do not hash to the header's chunk id
};

// One frame of a decode batch. codec 0 is a raw frame (width 1, no blocks).
struct DecChunk {
  const std::uint8_t* payload;
  std::uint8_t* out;
  std::uint8_t* digests;     // 32 * leaves
  std::uint32_t* seg_crc;    // payload segments of 4 KiB
  std::uint32_t* dec_table;  // width * 4096
  std::uint32_t* block_in;   // width * blocks: payload offset of each block
  std::uint32_t* block_st;   // width * blocks: stored size
  std::uint32_t raw_bytes, payload_bytes, width, n, blocks, leaves, codec, payload_crc;
  std::uint8_t chunk_id[kDigestBytes];
  std::uint32_t mode[kMaxWidth], plane_off[kMaxWidth];
  // Written on the device; the first error of a chunk wins.
  std::uint32_t err, err_plane, err_block, err_detail;
};

FERRY_HD std::uint32_t blocks_of(std::uint32_t symbols) {
  return (symbols + kBlockSymbols - 1) / kBlockSymbols;
}
FERRY_HD std::uint32_t leaves_of(std::uint32_t bytes) { return (bytes + kLeafBytes - 1) / kLeafBytes; }

}  // namespace ferry::gpu
