// decode_kernels.cuh: GPU decode + verify of a batch of frames. parse
// checks every length and table of a (hostile) float payload before any
// block is touched; decode_fused has one warp per plane decode block b of
// every plane into shared memory, merges the planes into elements, writes
// them out and hashes the block's 4 KiB leaves straight from shared memory
// (no second pass over device memory); finish joins the payload CRC and
// reduces the tree, and compares both with the header. Errors are recorded
// per chunk, never trapped, so one bad frame cannot hurt the others.
#pragma once

#include "cuda/encode_kernels.cuh"

namespace ferry::gpu {

enum DecError : std::uint32_t {
  kDecOk = 0,
  kDecPayloadCrc = 1,
  kDecStructure = 2,  // mode byte, table or block sizes; `plane` set
  kDecBlock = 3,      // a coded block does not decode; `plane`, `block` set
  kDecHash = 4,       // decoded bytes do not hash to the header's chunk id
};

struct DecChunk {
  const std::uint8_t* payload;
  std::uint8_t* out;
  std::uint8_t* digests;  // 32 * leaves
  std::uint32_t* seg_crc;
  std::uint32_t* dec_table;  // width * 4096
  std::uint32_t* block_in;   // width * blocks: payload offset of each block
  std::uint32_t* block_st;   // width * blocks: stored size
  std::uint32_t raw_bytes, payload_bytes, width, n, blocks, leaves, codec, payload_crc;
  std::uint8_t chunk_id[32];
  std::uint32_t mode[kMaxWidth], plane_off[kMaxWidth];
  std::uint32_t err, err_plane, err_block, err_detail;
};

__device__ __forceinline__ void set_error(DecChunk& c, std::uint32_t code, std::uint32_t plane,
                                          std::uint32_t block, std::uint32_t detail) {
  if (atomicCAS(&c.err, 0u, code) == 0u) {
    c.err_plane = plane;
    c.err_block = block;
    c.err_detail = detail;
  }
}

__global__ void dec_crc_kernel(DecChunk* chunks) {
  __shared__ std::uint32_t table[256];
  load_crc_table(table);
  DecChunk& c = chunks[blockIdx.y];
  crc_segment(table, c.payload, c.payload_bytes, blockIdx.x * blockDim.x + threadIdx.x, c.seg_crc);
}

// One thread per planes chunk: FloatDecoder's structural checks, in order.
__global__ void parse_kernel(DecChunk* chunks) {
  DecChunk& c = chunks[blockIdx.x];
  if (threadIdx.x != 0 || c.codec == 0) return;
  const std::uint8_t* in = c.payload;
  const std::uint32_t size = c.payload_bytes, w = c.width, n = c.n, B = c.blocks;
  if (size < w) return set_error(c, kDecStructure, 0, 0, 1);
  std::uint32_t pos = w;
  for (std::uint32_t p = 0; p < w; ++p) {
    c.mode[p] = in[p];
    if (in[p] == 0) {
      if (size - pos < n) return set_error(c, kDecStructure, p, 0, 2);
      c.plane_off[p] = pos;
      pos += n;
      continue;
    }
    if (in[p] != 1 || n == 0) return set_error(c, kDecStructure, p, 0, 3);
    if (size - pos < kPresentBytes) return set_error(c, kDecStructure, p, 0, 4);
    const std::uint8_t* present = in + pos;
    pos += kPresentBytes;
    std::uint32_t* slots = c.dec_table + p * kProbScale;
    std::uint32_t cum = 0;
    for (std::uint32_t s = 0; s < kAlphabet; ++s) {
      if (!(present[s >> 3] & (1u << (s & 7)))) continue;
      if (size - pos < 2) return set_error(c, kDecStructure, p, 0, 5);
      std::uint32_t f = get_le16(in + pos);
      pos += 2;
      if (f == 0 || cum + f > kProbScale) return set_error(c, kDecStructure, p, 0, 6);
      for (std::uint32_t i = 0; i < f; ++i) slots[cum + i] = dec_entry(s, f, i);
      cum += f;
    }
    if (cum != kProbScale) return set_error(c, kDecStructure, p, 0, 6);
    if ((size - pos) / 2 < B) return set_error(c, kDecStructure, p, 0, 7);
    const std::uint8_t* stored = in + pos;
    pos += 2 * B;
    for (std::uint32_t b = 0; b < B; ++b) {
      std::uint32_t m = min(kBlockSymbols, n - b * kBlockSymbols);
      std::uint32_t st = get_le16(stored + 2 * b);
      if (st != m && (st > m || st % 2 != 0 || st < kStateBytes)) return set_error(c, kDecStructure, p, b, 8);
      if (size - pos < st) return set_error(c, kDecStructure, p, b, 9);
      c.block_in[p * B + b] = pos;
      c.block_st[p * B + b] = st;
      pos += st;
    }
  }
  if (size - pos != c.raw_bytes - n * w) return set_error(c, kDecStructure, w, 0, 10);
}

// Byte o (chunk-relative) of the decoded output, from the plane tile of
// block b (elements b * 16384 ...) or the payload's raw tail.
struct TileBytes {
  const std::uint8_t* tile;  // width planes of kBlockSymbols bytes
  const DecChunk* c;
  std::uint32_t first_elem;
  __device__ std::uint8_t operator()(std::uint32_t o) const {
    const std::uint32_t w = c->width, e = o / w;
    if (e >= c->n) return c->payload[c->payload_bytes - (c->raw_bytes - o)];
    std::uint32_t r = 0;
    for (std::uint32_t p = 0; p < w; ++p)
      r |= static_cast<std::uint32_t>(tile[p * kBlockSymbols + e - first_elem]) << (8 * (w - 1 - p));
    return static_cast<std::uint8_t>(unrotate_element(r, static_cast<int>(w)) >> (8 * (o % w)));
  }
};

// Block x of every plane: warp p decodes plane p; then all threads merge,
// store, and 4w threads hash the block's leaves from shared memory.
__global__ void decode_fused_kernel(DecChunk* chunks) {
  extern __shared__ std::uint8_t tile[];  // width * kBlockSymbols
  DecChunk& c = chunks[blockIdx.y];
  const std::uint32_t nb = c.blocks > 0 ? c.blocks : 1;
  if (c.codec == 0 || blockIdx.x >= nb || c.err != 0) return;
  const std::uint32_t b = blockIdx.x, w = c.width;
  const std::uint32_t first = b * kBlockSymbols;
  const std::uint32_t m = c.n > first ? min(kBlockSymbols, c.n - first) : 0;
  const std::uint32_t p = threadIdx.x / 32;
  const int lane = static_cast<int>(threadIdx.x % 32);
  if (p < w && m > 0) {
    std::uint8_t* dst = tile + p * kBlockSymbols;
    if (c.mode[p] == 0) {
      for (std::uint32_t i = lane; i < m; i += 32) dst[i] = c.payload[c.plane_off[p] + first + i];
    } else {
      const std::uint32_t q = p * c.blocks + b, st = c.block_st[q];
      const std::uint8_t* in = c.payload + c.block_in[q];
      if (st == m) {
        for (std::uint32_t i = lane; i < m; i += 32) dst[i] = in[i];
      } else {
        const std::uint32_t* slots = c.dec_table + p * kProbScale;
        std::uint32_t x = get_le32(in + 4 * lane);
        const std::uint32_t nwords = (st - kStateBytes) / 2;
        bool bad = __any_sync(0xffffffffu, x < kStateLow);
        std::uint32_t pos = 0;
        for (std::uint32_t g = 0; g * 32 < m && !bad; ++g) {
          const std::uint32_t i = g * 32 + lane;
          bool need = false;
          if (i < m) {
            std::uint32_t e = slots[x & (kProbScale - 1)];
            dst[i] = static_cast<std::uint8_t>(e);
            x = dec_step(x, e);
            need = x < kStateLow;
          }
          const std::uint32_t needs = __ballot_sync(0xffffffffu, need);
          if (pos + __popc(needs) > nwords) {
            bad = true;
            break;
          }
          if (need) x = (x << 16) | get_le16(in + kStateBytes + 2 * dec_word_index(needs, lane, pos));
          pos += __popc(needs);
        }
        bad = bad || pos != nwords || __any_sync(0xffffffffu, x != kStateLow);
        if (bad && lane == 0) set_error(c, kDecBlock, p, b, 0);
      }
    }
  }
  __syncthreads();
  if (c.err != 0) return;  // uniform: set before the barrier or not at all
  const std::uint32_t byte0 = first * w;
  const std::uint32_t byte1 = b + 1 >= nb ? c.raw_bytes : (first + kBlockSymbols) * w;
  TileBytes bytes{tile, &c, first};
  for (std::uint32_t o = byte0 + threadIdx.x; o < byte1; o += blockDim.x) c.out[o] = bytes(o);
  const std::uint32_t leaf0 = byte0 / kLeafBytes;
  const std::uint32_t leaves = (byte1 - byte0 + kLeafBytes - 1) / kLeafBytes;
  for (std::uint32_t t = threadIdx.x; t < leaves; t += blockDim.x) {
    const std::uint32_t off = (leaf0 + t) * kLeafBytes;
    const std::uint32_t len = min(kLeafBytes, c.raw_bytes - off);
    auto fetch = [&](std::uint32_t i) {
      std::uint32_t v = 0;
      for (std::uint32_t k = 0; k < 4; ++k) {
        std::uint32_t at = 4 * i + k;
        v |= (at < len ? static_cast<std::uint32_t>(bytes(off + at)) : 0u) << (24 - 8 * k);
      }
      return v;
    };
    sha256_prefixed(0x00, len, fetch, c.digests + 32 * static_cast<std::size_t>(leaf0 + t));
  }
}

// Raw frames: one thread per leaf copies and hashes it.
__global__ void raw_copy_hash_kernel(DecChunk* chunks) {
  DecChunk& c = chunks[blockIdx.y];
  const std::uint32_t leaf = blockIdx.x * blockDim.x + threadIdx.x;
  if (c.codec != 0 || leaf >= c.leaves) return;
  const std::uint32_t off = leaf * kLeafBytes, len = min(kLeafBytes, c.raw_bytes - off);
  for (std::uint32_t i = 0; i < len; ++i) c.out[off + i] = c.payload[off + i];
  GlobalLeaf fetch{c.payload + off, len, (reinterpret_cast<std::uintptr_t>(c.payload + off) & 3) == 0};
  sha256_prefixed(0x00, len, fetch, c.digests + 32 * static_cast<std::size_t>(leaf));
}

__global__ void dec_finish_kernel(DecChunk* chunks, const std::uint32_t* shift4k) {
  DecChunk& c = chunks[blockIdx.x];
  if (c.err == 0 && c.leaves > 0) tree_reduce(c.digests, c.leaves);
  if (threadIdx.x != 0) return;
  const std::uint32_t crc = join_crcs(c.seg_crc, c.payload_bytes, shift4k);
  if (crc != c.payload_crc) {
    c.err = kDecPayloadCrc;  // reported first, as the CPU decoder checks it first
    return;
  }
  if (c.err != 0) return;
  for (int k = 0; k < 32; ++k)
    if (c.digests[k] != c.chunk_id[k]) {
      c.err = kDecHash;
      return;
    }
}

}  // namespace ferry::gpu
