// encode_kernels.cuh: the GPU float encoder and chunk hash, one batch of
// chunks per launch (blockIdx.y is the chunk). Stages: split_hash (one read
// of the input: leaf hashes, byte planes, histograms), plan (tables and the
// plane rule), encode_blocks (one warp per 16384-symbol block), layout
// (offsets, tables, stored sizes), assemble (blocks into the frame),
// crc_segments and finish (tree root, payload CRC, header). Byte layout:
// docs/FORMAT.md; every step mirrors codec/ and is checked on the host by
// tests/cuda/device_logic_test.cc.
#pragma once

#include "cuda/crc32c.cuh"
#include "cuda/frame_header.cuh"
#include "cuda/rans_lane.cuh"
#include "cuda/sha256.cuh"

namespace ferry::gpu {

inline constexpr std::uint32_t kLeafBytes = 4096;
inline constexpr std::uint32_t kMaxWidth = 4;
inline constexpr int kThreads = 128;
inline constexpr int kWarpsPerBlock = kThreads / 32;

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
  std::uint8_t id[32];
  std::uint32_t codec;
  std::uint32_t frame_bytes;
};

__device__ __forceinline__ std::uint32_t load_elem(const std::uint8_t* p, std::uint32_t w) {
  std::uint32_t e = 0;
  for (std::uint32_t k = 0; k < w; ++k) e |= static_cast<std::uint32_t>(p[k]) << (8 * k);
  return e;
}

// Word fetch for SHA-256 from global memory: aligned 32-bit loads where the
// whole word is inside the leaf, byte loads at the ragged end.
struct GlobalLeaf {
  const std::uint8_t* p;
  std::uint32_t len;
  bool aligned;
  __device__ std::uint32_t operator()(std::uint32_t i) const {
    if (aligned && 4 * i + 4 <= len) return hd_bswap(reinterpret_cast<const std::uint32_t*>(p)[i]);
    return load_be_word(p, i, len);
  }
};

__global__ void split_hash_kernel(EncChunk* chunks) {
  EncChunk& c = chunks[blockIdx.y];
  __shared__ std::uint32_t hist[2 * kMaxWidth * kAlphabet];
  for (int i = threadIdx.x; i < 2 * kMaxWidth * kAlphabet; i += blockDim.x) hist[i] = 0;
  __syncthreads();
  const std::uint32_t leaf = blockIdx.x * blockDim.x + threadIdx.x;
  const std::uint32_t w = c.width;
  if (leaf < c.leaves) {
    const std::uint32_t off = leaf * kLeafBytes;
    const std::uint32_t len = min(kLeafBytes, c.raw_bytes - off);
    const std::uint8_t* p = c.in + off;
    GlobalLeaf fetch{p, len, (reinterpret_cast<std::uintptr_t>(p) & 3) == 0};
    sha256_prefixed(0x00, len, fetch, c.digests + 32 * static_cast<std::size_t>(leaf));
    const std::uint32_t first = off / w, last = min((off + len) / w, c.n);
    for (std::uint32_t i = first; i < last; ++i) {
      std::uint32_t r = rotate_element(load_elem(c.in + static_cast<std::size_t>(i) * w, w), w);
      for (std::uint32_t q = 0; q < w; ++q) {
        std::uint8_t s = plane_byte(r, w, q);
        c.planes[static_cast<std::size_t>(q) * c.n + i] = s;
        atomicAdd(&hist[q * kAlphabet + s], 1u);
        if (i % kSampleStride == 0) atomicAdd(&hist[(kMaxWidth + q) * kAlphabet + s], 1u);
      }
    }
  }
  __syncthreads();
  for (std::uint32_t i = threadIdx.x; i < w * kAlphabet; i += blockDim.x) {
    std::uint32_t q = i / kAlphabet, s = i % kAlphabet;
    if (hist[i]) atomicAdd(&c.hist[q * 2 * kAlphabet + s], hist[i]);
    std::uint32_t v = hist[(kMaxWidth + q) * kAlphabet + s];
    if (v) atomicAdd(&c.hist[q * 2 * kAlphabet + kAlphabet + s], v);
  }
}

// One thread per plane of a chunk.
__global__ void plan_kernel(EncChunk* chunks) {
  EncChunk& c = chunks[blockIdx.x];
  const std::uint32_t p = threadIdx.x;
  if (p >= c.width) return;
  std::uint32_t freq[kAlphabet];
  const std::uint32_t* counts = c.hist + p * 2 * kAlphabet;
  bool pays = plane_pays(counts, counts + kAlphabet, c.n, p != 0, freq);
  c.mode[p] = pays ? 1 : 0;
  if (!pays) return;
  std::uint32_t cum = 0, k = 0;
  for (int s = 0; s < kAlphabet; ++s) {
    c.tables[p * kAlphabet + s] = make_enc_sym(freq[s], cum);
    cum += freq[s];
    k += freq[s] != 0;
  }
  c.table_k[p] = k;
}

// One warp per (plane, block); words go below the block's slot end in the
// order the CPU's lanes 31..0 would write them (enc_word_index).
__global__ void encode_blocks_kernel(EncChunk* chunks) {
  EncChunk& c = chunks[blockIdx.y];
  const std::uint32_t q = blockIdx.x * kWarpsPerBlock + threadIdx.x / 32;
  const int lane = static_cast<int>(threadIdx.x % 32);
  if (q >= c.width * c.blocks) return;
  const std::uint32_t p = q / c.blocks, b = q % c.blocks;
  const std::uint32_t m = min(kBlockSymbols, c.n - b * kBlockSymbols);
  if (!c.mode[p] || m <= kStateBytes) {
    if (lane == 0) c.stored[q] = m;
    return;
  }
  const std::uint8_t* sym = c.planes + static_cast<std::size_t>(p) * c.n + b * kBlockSymbols;
  const EncSym* table = c.tables + p * kAlphabet;
  std::uint16_t* slot = c.words + static_cast<std::size_t>(q) * (kBlockSymbols / 2);
  const std::uint32_t max_words = (m - kStateBytes - 1) / 2;
  std::uint32_t x = kStateLow, end = m / 2;
  bool pays = true;
  for (std::uint32_t g = (m + 31) / 32; g-- > 0;) {
    const std::uint32_t i = g * 32 + static_cast<std::uint32_t>(lane);
    bool emit = false;
    std::uint16_t word = 0;
    if (i < m) x = enc_step(x, table[sym[i]], &emit, &word);
    const std::uint32_t emits = __ballot_sync(0xffffffffu, emit);
    if (emit) slot[enc_word_index(emits, lane, end)] = word;
    end -= static_cast<std::uint32_t>(__popc(emits));
    if (m / 2 - end > max_words) {
      pays = false;
      break;
    }
  }
  if (lane == 0) c.stored[q] = pays ? kStateBytes + 2 * (m / 2 - end) : m;
  if (pays) c.states[static_cast<std::size_t>(q) * 32 + lane] = x;
}

// One thread per chunk: payload offsets, mode bytes, tables, stored sizes
// and the tail; decides raw when the payload would not shrink.
__global__ void layout_kernel(EncChunk* chunks) {
  EncChunk& c = chunks[blockIdx.x];
  if (threadIdx.x != 0) return;
  const std::uint32_t w = c.width, B = c.blocks;
  std::uint64_t pos = w;
  for (std::uint32_t p = 0; p < w; ++p) {
    c.plane_off[p] = static_cast<std::uint32_t>(pos);
    if (!c.mode[p]) {
      pos += c.n;
      continue;
    }
    pos += kPresentBytes + 2 * c.table_k[p] + 2 * B;
    for (std::uint32_t b = 0; b < B; ++b) {
      c.block_off[p * B + b] = static_cast<std::uint32_t>(pos);
      pos += c.stored[p * B + b];
    }
  }
  const std::uint32_t tail = c.raw_bytes - c.n * w;
  pos += tail;
  c.is_raw = pos >= c.raw_bytes;
  if (c.is_raw) {
    c.payload_bytes = c.raw_bytes;
    return;
  }
  c.payload_bytes = static_cast<std::uint32_t>(pos);
  std::uint8_t* out = c.frame + kFrameHeaderBytes;
  for (std::uint32_t p = 0; p < w; ++p) {
    out[p] = static_cast<std::uint8_t>(c.mode[p]);
    if (!c.mode[p]) continue;
    std::uint8_t* t = out + c.plane_off[p];
    for (int i = 0; i < 32; ++i) t[i] = 0;
    std::uint32_t at = kPresentBytes;
    for (int s = 0; s < kAlphabet; ++s) {
      std::uint32_t f = c.tables[p * kAlphabet + s].freq;
      if (!f) continue;
      t[s >> 3] |= static_cast<std::uint8_t>(1u << (s & 7));
      t[at] = static_cast<std::uint8_t>(f);
      t[at + 1] = static_cast<std::uint8_t>(f >> 8);
      at += 2;
    }
    for (std::uint32_t b = 0; b < B; ++b, at += 2) {
      t[at] = static_cast<std::uint8_t>(c.stored[p * B + b]);
      t[at + 1] = static_cast<std::uint8_t>(c.stored[p * B + b] >> 8);
    }
  }
  for (std::uint32_t i = 0; i < tail; ++i) out[pos - tail + i] = c.in[c.n * w + i];
}

__device__ __forceinline__ void warp_copy(std::uint8_t* dst, const std::uint8_t* src, std::uint32_t bytes,
                                          int lane) {
  for (std::uint32_t i = static_cast<std::uint32_t>(lane); i < bytes; i += 32) dst[i] = src[i];
}

// One warp per (plane, block): moves coded blocks, raw blocks and raw
// planes into the frame; for a raw chunk, copies the input instead.
__global__ void assemble_kernel(EncChunk* chunks) {
  EncChunk& c = chunks[blockIdx.y];
  const std::uint32_t q = blockIdx.x * kWarpsPerBlock + threadIdx.x / 32;
  const int lane = static_cast<int>(threadIdx.x % 32);
  const std::uint32_t units = c.width * c.blocks;
  if (q >= units) return;
  std::uint8_t* out = c.frame + kFrameHeaderBytes;
  if (c.is_raw) {
    std::uint32_t from = q * kBlockSymbols;
    std::uint32_t to = q + 1 == units ? c.raw_bytes : min(c.raw_bytes, from + kBlockSymbols);
    if (from < to) warp_copy(out + from, c.in + from, to - from, lane);
    return;
  }
  const std::uint32_t p = q / c.blocks, b = q % c.blocks;
  const std::uint32_t m = min(kBlockSymbols, c.n - b * kBlockSymbols);
  const std::uint8_t* sym = c.planes + static_cast<std::size_t>(p) * c.n + b * kBlockSymbols;
  if (!c.mode[p]) {
    warp_copy(out + c.plane_off[p] + b * kBlockSymbols, sym, m, lane);
    return;
  }
  std::uint8_t* dst = out + c.block_off[q];
  const std::uint32_t st = c.stored[q];
  if (st == m) {
    warp_copy(dst, sym, m, lane);
    return;
  }
  const std::uint32_t x = c.states[static_cast<std::size_t>(q) * 32 + lane];
  for (int k = 0; k < 4; ++k) dst[4 * lane + k] = static_cast<std::uint8_t>(x >> (8 * k));
  const std::uint32_t nw = (st - kStateBytes) / 2;
  const std::uint16_t* words = c.words + static_cast<std::size_t>(q) * (kBlockSymbols / 2) + m / 2 - nw;
  for (std::uint32_t i = static_cast<std::uint32_t>(lane); i < nw; i += 32) {
    dst[kStateBytes + 2 * i] = static_cast<std::uint8_t>(words[i]);
    dst[kStateBytes + 2 * i + 1] = static_cast<std::uint8_t>(words[i] >> 8);
  }
}

__device__ __forceinline__ void load_crc_table(std::uint32_t* table) {
  for (int i = threadIdx.x; i < 256; i += blockDim.x) table[i] = crc_table_entry(i);
  __syncthreads();
}

// One thread per 4 KiB segment of a payload (at `payload`, `bytes` long).
__device__ void crc_segment(const std::uint32_t* table, const std::uint8_t* payload, std::uint32_t bytes,
                            std::uint32_t seg, std::uint32_t* out) {
  const std::uint32_t off = seg * kLeafBytes;
  if (off >= bytes) return;
  out[seg] = crc32c_update(table, 0, payload + off, min(kLeafBytes, bytes - off));
}

__global__ void enc_crc_kernel(EncChunk* chunks) {
  __shared__ std::uint32_t table[256];
  load_crc_table(table);
  EncChunk& c = chunks[blockIdx.y];
  crc_segment(table, c.frame + kFrameHeaderBytes, c.payload_bytes, blockIdx.x * blockDim.x + threadIdx.x,
              c.seg_crc);
}

// Joins per-segment CRCs: a fixed operator for whole 4 KiB segments.
__device__ std::uint32_t join_crcs(const std::uint32_t* seg, std::uint32_t bytes,
                                   const std::uint32_t* shift4k) {
  std::uint32_t crc = 0;
  for (std::uint32_t off = 0, s = 0; off < bytes; off += kLeafBytes, ++s) {
    std::uint32_t len = min(kLeafBytes, bytes - off);
    crc = s == 0              ? seg[0]
          : len == kLeafBytes ? gf2_times(shift4k, crc) ^ seg[s]
                              : crc32c_combine(crc, seg[s], len);
  }
  return crc;
}

// Reduces `count` digests in place to the root at d[0], level by level with
// the unpaired last one promoted (docs/FORMAT.md section 2). Whole block.
__device__ void tree_reduce(std::uint8_t* d, std::uint32_t count) {
  while (count > 1) {
    const std::uint32_t pairs = count / 2;
    for (std::uint32_t base = 0; base < pairs; base += blockDim.x) {
      const std::uint32_t i = base + threadIdx.x;
      std::uint8_t node[32];
      if (i < pairs) sha256_node(d + 64 * i, d + 64 * i + 32, node);
      __syncthreads();
      if (i < pairs)
        for (int k = 0; k < 32; ++k) d[32 * i + k] = node[k];
      __syncthreads();
    }
    if (count & 1) {
      if (threadIdx.x == 0)
        for (int k = 0; k < 32; ++k) d[32 * pairs + k] = d[32 * (count - 1) + k];
      __syncthreads();
    }
    count = (count + 1) / 2;
  }
}

__global__ void enc_finish_kernel(EncChunk* chunks, EncResult* results, const std::uint32_t* shift4k) {
  __shared__ std::uint32_t table[256];
  load_crc_table(table);
  EncChunk& c = chunks[blockIdx.x];
  tree_reduce(c.digests, c.leaves);
  if (threadIdx.x != 0) return;
  const std::uint32_t crc = join_crcs(c.seg_crc, c.payload_bytes, shift4k);
  const std::uint8_t codec = c.is_raw ? 0 : c.codec;
  write_frame_header(table, codec, c.dtype, c.raw_bytes, c.payload_bytes, c.digests, crc, c.frame);
  EncResult& r = results[blockIdx.x];
  for (int k = 0; k < 32; ++k) r.id[k] = c.digests[k];
  r.codec = codec;
  r.frame_bytes = kFrameHeaderBytes + c.payload_bytes;
}

}  // namespace ferry::gpu
