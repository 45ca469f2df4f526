// chunk_batch.cuh: the per-chunk records of one GPU batch (EncChunk for
// encode, DecChunk for decode): where each chunk's buffers are (device
// memory when the kernels run, host memory when host-only tests run the same
// steps) and what the kernels write back. Plain C++: cuda/batch_plan.h fills
// them on the host, cuda/encode_steps.cuh and cuda/decode_steps.cuh use them.
#pragma once

#include "cuda/gpu_limits.h"
#include "cuda/rans_lane.cuh"

namespace ferry::gpu {

// One chunk of an encode batch (float payload version 2); pointers are
// device memory in the arena (or the caller's device buffers).
struct EncChunk {
  const std::uint8_t* in;
  // A delta (docs/FORMAT.md 3.1): the base chunk (raw_bytes bytes), whose
  // id goes into the header; the planes then code the transformed chunk and
  // codec is a delta codec. nullptr: the chunk is coded alone.
  const std::uint8_t* base;
  std::uint8_t base_id[kDigestBytes];
  std::uint8_t* frame;
  std::uint8_t* planes;      // width * n
  std::uint16_t* words;      // width * plane_words: block b of plane p at p * plane_words + b * 32768
  std::uint32_t* states;     // width * blocks * 32
  std::uint8_t* digests;     // 32 * leaves
  std::uint32_t* hist;       // hist_words(): each segment's counts per plane, then every 16th symbol's
  std::uint32_t* stored;     // width * blocks
  std::uint32_t* block_off;  // width * blocks, payload-relative
  std::uint32_t* seg_crc;    // payload segments of 4 KiB
  EncSym* tables;            // width * table_slots * 256: plane p's table k at (p * table_slots + k) * 256
  std::uint8_t* assign;      // width * segments: each segment's table
  std::uint32_t raw_bytes, n, width, blocks, segments, table_slots, plane_words, leaves;
  std::uint8_t codec, dtype;
  // The host's plan (batch_plan.h: plan_chunk), between split_hash and encode_blocks:
  std::uint32_t mode[kMaxWidth], table_k[kMaxWidth], table_bytes[kMaxWidth];
  // Written on the device:
  std::uint32_t plane_off[kMaxWidth];
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
// Version 1 and 2 frames decode in tiles of kBlockSymbols elements (one
// decode_fused block each); a version 1 tile is one rANS block, decoded in
// place, while version 2 blocks (65536 symbols) are first decoded into
// `planes` by decode_blocks.
struct DecChunk {
  const std::uint8_t* payload;
  std::uint8_t* out;
  // A delta frame's base chunk (raw_bytes bytes): each decoded byte is
  // rebuilt from it before it is stored and hashed. nullptr otherwise.
  const std::uint8_t* base;
  std::uint8_t* digests;     // 32 * leaves
  std::uint32_t* seg_crc;    // payload segments of 4 KiB
  std::uint32_t* dec_table;  // width * table_slots * 4096
  std::uint32_t* block_in;   // width * blocks: payload offset of each block
  std::uint32_t* block_st;   // width * blocks: stored size
  std::uint8_t* planes;      // version 2: width * n decoded symbols; else unused
  std::uint8_t* seg_slot;    // version 2: width * segments, the dec_table slot of each segment
  std::uint32_t raw_bytes, payload_bytes, width, n, blocks, tiles, segments, table_slots, version, leaves,
      codec, payload_crc;
  std::uint8_t chunk_id[kDigestBytes];
  std::uint32_t mode[kMaxWidth], plane_off[kMaxWidth];
  // parse: the payload offset of the stored table of each decoder-table
  // slot, and the slots each plane uses (1 for a version 1 coded plane).
  std::uint32_t table_at[kMaxWidth][kMaxTables], tables_used[kMaxWidth];
  // Written on the device; the first error of a chunk wins.
  std::uint32_t err, err_plane, err_block, err_detail;
};

FERRY_HD std::uint32_t blocks_of(std::uint32_t symbols) {
  return (symbols + kBlockSymbols - 1) / kBlockSymbols;
}
FERRY_HD std::uint32_t v2_blocks_of(std::uint32_t symbols) {
  return (symbols + kV2BlockSymbols - 1) / kV2BlockSymbols;
}
FERRY_HD std::uint32_t segments_of(std::uint32_t symbols) {
  return (symbols + kSegmentSymbols - 1) / kSegmentSymbols;
}
// Decoder table slots of a version 2 plane: a table no segment uses is
// checked but never built, so a plane needs at most one per segment.
FERRY_HD std::uint32_t table_slots_of(std::uint32_t symbols) {
  const std::uint32_t s = segments_of(symbols);
  return s < kMaxTables ? (s > 0 ? s : 1) : kMaxTables;
}
FERRY_HD std::uint32_t leaves_of(std::uint32_t bytes) { return (bytes + kLeafBytes - 1) / kLeafBytes; }

}  // namespace ferry::gpu
