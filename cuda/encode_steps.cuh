// encode_steps.cuh: the per-thread and per-warp steps of the encode kernels
// (cuda/encode_kernels.cuh) as FERRY_HD functions: the leaf and element
// ranges of split_hash and its segment histograms, one warp's rANS block
// (float payload version 2; the plan between them is the host's), the
// layout of a chunk's payload, one lane's share of assembling the frame
// (including the raw-copy ranges), CRC segments and their join, the tree
// reduction and the header. The kernels are thin launches over these, and
// tests/cuda/encode_kernels_test.cc runs the same functions on the host over
// the whole grid and compares the frames with the CPU encoder byte for byte.
#pragma once

#include "cuda/chunk_batch.cuh"
#include "cuda/crc32c.cuh"
#include "cuda/delta_steps.cuh"
#include "cuda/frame_header.cuh"
#include "cuda/sha256.cuh"
#include "cuda/simt.cuh"

namespace ferry::gpu {

struct ByteRange {
  std::uint32_t begin, end;
};

// Word fetch for SHA-256: aligned 32-bit loads where the whole word is
// inside the leaf, byte loads at the ragged end.
struct GlobalLeaf {
  const std::uint8_t* p;
  std::uint32_t len;
  bool aligned;
  FERRY_HD std::uint32_t operator()(std::uint32_t i) const {
    if (aligned && 4 * i + 4 <= len) return hd_bswap(reinterpret_cast<const std::uint32_t*>(p)[i]);
    return load_be_word(p, i, len);
  }
};

FERRY_HD GlobalLeaf global_leaf(const std::uint8_t* p, std::uint32_t len) {
  return GlobalLeaf{p, len, (reinterpret_cast<std::uintptr_t>(p) & 3) == 0};
}

// Bytes of leaf `leaf` of a chunk; empty past the last leaf.
FERRY_HD ByteRange leaf_bytes(std::uint32_t leaf, std::uint32_t raw_bytes) {
  const std::uint64_t begin = static_cast<std::uint64_t>(leaf) * kLeafBytes;
  if (begin >= raw_bytes) return {raw_bytes, raw_bytes};
  return {static_cast<std::uint32_t>(begin),
          hd_min(raw_bytes, static_cast<std::uint32_t>(begin) + kLeafBytes)};
}

// Elements whose bytes lie in leaf `leaf` (w divides 4096, so none
// straddles two leaves); the tail bytes after element n - 1 belong to none.
FERRY_HD ByteRange leaf_elements(std::uint32_t leaf, std::uint32_t raw_bytes, std::uint32_t w,
                                 std::uint32_t n) {
  const ByteRange b = leaf_bytes(leaf, raw_bytes);
  return {hd_min(b.begin / w, n), hd_min(b.end / w, n)};
}

// EncChunk::hist: the counts of segment g of plane q at hist_segment(q, g),
// then those of every 16th symbol of plane q at hist_sampled(q).
FERRY_HD std::size_t hist_segment(const EncChunk& c, std::uint32_t q, std::uint32_t g) {
  return (static_cast<std::size_t>(q) * c.segments + g) * kAlphabet;
}
FERRY_HD std::size_t hist_sampled(const EncChunk& c, std::uint32_t q) {
  return (static_cast<std::size_t>(c.width) * c.segments + q) * kAlphabet;
}
FERRY_HD std::size_t hist_words(const EncChunk& c) {
  return static_cast<std::size_t>(c.width) * (c.segments + 1) * kAlphabet;
}

// Element i of what the planes code: the chunk's, or for a delta (c.base
// set) the transformed chunk's (FORMAT.md 3.1).
FERRY_HD std::uint32_t coded_elem(const EncChunk& c, std::uint32_t i) {
  const std::size_t at = static_cast<std::size_t>(i) * c.width;
  const std::uint32_t e = load_elem(c.in + at, c.width);
  return c.base ? delta_forward(e, load_elem(c.base + at, c.width), c.width) : e;
}

// Tail byte o (o >= n * width) of what the planes code.
FERRY_HD std::uint8_t coded_tail_byte(const EncChunk& c, std::uint32_t o) {
  return c.base ? static_cast<std::uint8_t>(delta_forward(c.in[o], c.base[o], 1)) : c.in[o];
}

// split_hash, one thread's leaf: hashes the chunk's bytes into c.digests
// (a delta's id is still the chunk's own) and moves its coded elements into
// the planes; count(q, s, i) counts symbol s of element i in plane q.
template <typename Count>
FERRY_HD void split_leaf(const EncChunk& c, std::uint32_t leaf, Count&& count) {
  if (leaf >= c.leaves) return;
  const ByteRange r = leaf_bytes(leaf, c.raw_bytes);
  const std::uint32_t len = r.end - r.begin;
  sha256_prefixed(0x00, len, global_leaf(c.in + r.begin, len),
                  c.digests + static_cast<std::size_t>(kDigestBytes) * leaf);
  const std::uint32_t w = c.width;
  const ByteRange e = leaf_elements(leaf, c.raw_bytes, w, c.n);
  for (std::uint32_t i = e.begin; i < e.end; ++i) {
    const std::uint32_t rot = rotate_element(coded_elem(c, i), w);
    for (std::uint32_t q = 0; q < w; ++q) {
      const std::uint8_t s = plane_byte(rot, w, q);
      c.planes[static_cast<std::size_t>(q) * c.n + i] = s;
      count(q, s, i);
    }
  }
}

// A split_hash block's leaves hold whole segments of every plane (a leaf
// is 4096 / w elements, a segment 16384), kSplitSegments plane-segments in
// all whatever the width; the block counts them in shared memory and owns
// their histograms outright.
inline constexpr std::uint32_t kSplitSegments = kThreads * kLeafBytes / kSegmentSymbols;
static_assert(kSegmentSymbols % kLeafBytes == 0 &&
              kThreads * kLeafBytes % (kMaxWidth * kSegmentSymbols) == 0);
// Histogram words split_hash keeps per block: its segments' counts, then
// every 16th symbol's per plane.
inline constexpr std::uint32_t kSplitHistWords = (kSplitSegments + kMaxWidth) * kAlphabet;

// split_hash, block x of a chunk: its threads' leaves counted in the block's
// `hist` (kSplitHistWords, shared memory); the segment counts are then
// stored as the chunk's (no other block counts them) and the sampled counts
// added to the chunk's (which start at zero).
template <typename Block>
FERRY_HD void split_hash_block(EncChunk& c, std::uint32_t x, std::uint32_t* hist, const Block& block) {
  const std::uint32_t per_plane = kSplitSegments / c.width;  // segments of each plane in this block
  const std::uint32_t first = x * per_plane;                 // the first of them
  std::uint32_t* sampled = hist + kSplitSegments * kAlphabet;
  block.each([&](std::uint32_t t) {
    for (std::uint32_t i = t; i < kSplitHistWords; i += block.size()) hist[i] = 0;
  });
  block.sync();
  block.each([&](std::uint32_t t) {
    split_leaf(c, x * block.size() + t, [&](std::uint32_t q, std::uint32_t s, std::uint32_t i) {
      block.add(&hist[(q * per_plane + i / kSegmentSymbols - first) * kAlphabet + s], 1u);
      if (i % kSampleStride == 0) block.add(&sampled[q * kAlphabet + s], 1u);
    });
  });
  block.sync();
  block.each([&](std::uint32_t t) {
    for (std::uint32_t i = t; i < c.width * per_plane * kAlphabet; i += block.size()) {
      const std::uint32_t q = i / (per_plane * kAlphabet), g = first + i / kAlphabet % per_plane;
      if (g < c.segments) c.hist[hist_segment(c, q, g) + i % kAlphabet] = hist[i];
    }
    for (std::uint32_t i = t; i < c.width * kAlphabet; i += block.size())
      if (sampled[i]) block.add(&c.hist[hist_sampled(c, i / kAlphabet) + i % kAlphabet], sampled[i]);
  });
}

// Symbols of block b of a plane of n symbols, in blocks of `block` symbols.
FERRY_HD std::uint32_t block_symbols(std::uint32_t n, std::uint32_t b, std::uint32_t block = kBlockSymbols) {
  const std::uint64_t first = static_cast<std::uint64_t>(b) * block;
  return n > first ? hd_min(block, n - static_cast<std::uint32_t>(first)) : 0;
}

// The word slot of unit q (plane p, block b): m / 2 words, the block's
// words ending at its top (fewer than m / 2 when coding pays).
FERRY_HD std::uint16_t* word_slot(const EncChunk& c, std::uint32_t p, std::uint32_t b) {
  return c.words + static_cast<std::size_t>(p) * c.plane_words +
         static_cast<std::size_t>(b) * (kV2BlockSymbols / 2);
}

// The encoder table of segment g of plane p.
FERRY_HD const EncSym* segment_table(const EncChunk& c, std::uint32_t p, std::uint32_t g) {
  const std::uint32_t k = c.assign[static_cast<std::size_t>(p) * c.segments + g];
  return c.tables + (static_cast<std::size_t>(p) * c.table_slots + k) * kAlphabet;
}

// encode_blocks, one warp per (plane, block) unit q: words go below the
// block's slot end in the order the CPU's lanes 31..0 would write them
// (enc_word_index), each group of 32 symbols with its segment's table (no
// group straddles two segments); stored[q] is the coded size, or m when
// coding does not pay or the block is raw.
template <typename Warp>
FERRY_HD void encode_block(EncChunk& c, std::uint32_t q, const Warp& warp) {
  if (q >= c.width * c.blocks) return;
  const std::uint32_t p = q / c.blocks, b = q % c.blocks;
  const std::uint32_t m = block_symbols(c.n, b, kV2BlockSymbols);
  if (c.mode[p] == kModeRaw || m <= kStateBytes) {
    warp.each([&](int lane) {
      if (lane == 0) c.stored[q] = m;
    });
    return;
  }
  const std::uint8_t* sym =
      c.planes + static_cast<std::size_t>(p) * c.n + static_cast<std::size_t>(b) * kV2BlockSymbols;
  std::uint16_t* slot = word_slot(c, p, b);
  const std::uint32_t max_words = (m - kStateBytes - 1) / 2;
  typename Warp::template Each<std::uint32_t> x;
  warp.each([&](int lane) { x[lane] = kStateLow; });
  std::uint32_t end = m / 2;
  bool pays = true;
  constexpr std::uint32_t kGroupsPerSegment = kSegmentSymbols / kLanes;
  for (std::uint32_t g = (m + kLanes - 1) / kLanes; g-- > 0;) {
    const EncSym* table =
        segment_table(c, p, b * (kV2BlockSymbols / kSegmentSymbols) + g / kGroupsPerSegment);
    typename Warp::template Each<bool> emit;
    typename Warp::template Each<std::uint16_t> word;
    warp.each([&](int lane) {
      const std::uint32_t i = g * kLanes + static_cast<std::uint32_t>(lane);
      emit[lane] = false;
      if (i < m) x[lane] = enc_step(x[lane], table[sym[i]], &emit[lane], &word[lane]);
    });
    const std::uint32_t emits = warp.ballot(emit);
    warp.each([&](int lane) {
      if (emit[lane]) slot[enc_word_index(emits, lane, end)] = word[lane];
    });
    end -= static_cast<std::uint32_t>(hd_popc(emits));
    if (m / 2 - end > max_words) {
      pays = false;
      break;
    }
  }
  warp.each([&](int lane) {
    if (lane == 0) c.stored[q] = pays ? kStateBytes + 2 * (m / 2 - end) : m;
    if (pays) c.states[static_cast<std::size_t>(q) * kLanes + lane] = x[lane];
  });
}

// Writes one stored table (FORMAT.md 4.1: bitmap, then the present
// symbols' u16 frequencies) from encoder constants; returns its bytes.
FERRY_HD std::uint32_t write_table(const EncSym* table, std::uint8_t* t) {
  for (std::uint32_t i = 0; i < kPresentBytes; ++i) t[i] = 0;
  std::uint32_t at = kPresentBytes;
  for (int s = 0; s < kAlphabet; ++s) {
    const std::uint32_t f = table[s].freq;
    if (!f) continue;
    t[s >> 3] |= static_cast<std::uint8_t>(1u << (s & 7));
    put_le16(t + at, f);
    at += 2;
  }
  return at;
}

// layout, one thread per chunk: payload offsets, mode bytes, each coded
// plane's header (table count, tables, segment choices, stored sizes) and
// the tail (FORMAT.md 4.2); decides raw when the payload would not shrink
// (for a delta: the delta does not pay, and the host keeps the chunk's
// standalone frame).
FERRY_HD void layout_chunk(EncChunk& c) {
  const std::uint32_t w = c.width, B = c.blocks, S = c.segments;
  std::uint64_t pos = w;
  for (std::uint32_t p = 0; p < w; ++p) {
    c.plane_off[p] = static_cast<std::uint32_t>(pos);
    if (c.mode[p] == kModeRaw) {
      pos += c.n;
      continue;
    }
    pos += 1 + c.table_bytes[p] + (c.table_k[p] > 1 ? S : 0) + 4 * B;
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
    if (c.mode[p] == kModeRaw) continue;
    std::uint8_t* t = out + c.plane_off[p];
    const std::uint32_t K = c.table_k[p];
    t[0] = static_cast<std::uint8_t>(K);
    std::uint32_t at = 1;
    for (std::uint32_t k = 0; k < K; ++k)
      at += write_table(c.tables + (static_cast<std::size_t>(p) * c.table_slots + k) * kAlphabet, t + at);
    if (K > 1)
      for (std::uint32_t g = 0; g < S; ++g) t[at++] = c.assign[static_cast<std::size_t>(p) * S + g];
    for (std::uint32_t b = 0; b < B; ++b, at += 4) put_le32(t + at, c.stored[p * B + b]);
  }
  for (std::uint32_t i = 0; i < tail; ++i) out[pos - tail + i] = coded_tail_byte(c, c.n * w + i);
}

// A raw chunk is copied into its frame by raw_copy_units warps, unit u
// taking bytes raw_copy_range(u): every byte once, whatever the element
// width (a chunk smaller than one element has no plane block at all).
FERRY_HD std::uint32_t raw_copy_units(std::uint32_t raw_bytes) {
  return (raw_bytes + kRawCopyUnitBytes - 1) / kRawCopyUnitBytes;
}
FERRY_HD ByteRange raw_copy_range(std::uint32_t unit, std::uint32_t raw_bytes) {
  const std::uint64_t begin = static_cast<std::uint64_t>(unit) * kRawCopyUnitBytes;
  if (begin >= raw_bytes) return {raw_bytes, raw_bytes};
  return {static_cast<std::uint32_t>(begin),
          hd_min(raw_bytes, static_cast<std::uint32_t>(begin) + kRawCopyUnitBytes)};
}

// Warps assemble needs for a chunk, whether or not layout makes it raw.
FERRY_HD std::uint32_t assemble_units(const EncChunk& c) {
  return hd_max(c.width * c.blocks, raw_copy_units(c.raw_bytes));
}

// assemble, lane `lane` of the warp for unit q: moves coded blocks, raw
// blocks and raw planes into the frame; for a raw chunk, copies the input.
FERRY_HD void assemble_lane(const EncChunk& c, std::uint32_t q, std::uint32_t lane) {
  std::uint8_t* out = c.frame + kFrameHeaderBytes;
  if (c.is_raw) {
    const ByteRange r = raw_copy_range(q, c.raw_bytes);
    for (std::uint32_t i = r.begin + lane; i < r.end; i += kLanes) out[i] = c.in[i];
    return;
  }
  if (q >= c.width * c.blocks) return;
  const std::uint32_t p = q / c.blocks, b = q % c.blocks;
  const std::uint32_t m = block_symbols(c.n, b, kV2BlockSymbols);
  const std::size_t first = static_cast<std::size_t>(b) * kV2BlockSymbols;
  const std::uint8_t* sym = c.planes + static_cast<std::size_t>(p) * c.n + first;
  const bool raw_plane = c.mode[p] == kModeRaw;
  std::uint8_t* dst = raw_plane ? out + c.plane_off[p] + first : out + c.block_off[q];
  const std::uint32_t st = raw_plane ? m : c.stored[q];
  if (st == m) {
    for (std::uint32_t i = lane; i < m; i += kLanes) dst[i] = sym[i];
    return;
  }
  put_le32(dst + 4 * lane, c.states[static_cast<std::size_t>(q) * kLanes + lane]);
  const std::uint32_t nw = (st - kStateBytes) / 2;
  const std::uint16_t* words = word_slot(c, p, b) + m / 2 - nw;
  for (std::uint32_t i = lane; i < nw; i += kLanes) put_le16(dst + kStateBytes + 2 * i, words[i]);
}

// One thread per 4 KiB segment of a payload (at `payload`, `bytes` long).
FERRY_HD void crc_segment(const std::uint32_t* table, const std::uint8_t* payload, std::uint32_t bytes,
                          std::uint32_t seg, std::uint32_t* out) {
  const ByteRange r = leaf_bytes(seg, bytes);
  if (r.begin == r.end) return;
  out[seg] = crc32c_update(table, 0, payload + r.begin, r.end - r.begin);
}

// Joins per-segment CRCs: a fixed operator for whole 4 KiB segments.
FERRY_HD std::uint32_t join_crcs(const std::uint32_t* seg, std::uint32_t bytes,
                                 const std::uint32_t* shift4k) {
  std::uint32_t crc = 0;
  for (std::uint32_t off = 0, s = 0; off < bytes; off += kLeafBytes, ++s) {
    const std::uint32_t len = hd_min(kLeafBytes, bytes - off);
    crc = s == 0              ? seg[0]
          : len == kLeafBytes ? gf2_times(shift4k, crc) ^ seg[s]
                              : crc32c_combine(crc, seg[s], len);
  }
  return crc;
}

struct DigestBytes {
  std::uint8_t b[kDigestBytes];
};

// Reduces `count` digests in place to the root at d[0], level by level with
// the unpaired last one promoted (docs/FORMAT.md section 2). A whole block:
// each round of block.size() pairs reads its children before any thread
// overwrites a parent, and round r writes below where round r + 1 reads.
template <typename Block>
FERRY_HD void tree_reduce(const Block& block, std::uint8_t* d, std::uint32_t count) {
  while (count > 1) {
    const std::uint32_t pairs = count / 2;
    for (std::uint32_t base = 0; base < pairs; base += block.size()) {
      typename Block::template Each<DigestBytes> node(block);
      block.each([&](std::uint32_t t) {
        const std::size_t i = base + t;
        if (i < pairs)
          sha256_node(d + 2 * kDigestBytes * i, d + 2 * kDigestBytes * i + kDigestBytes, node[t].b);
      });
      block.sync();
      block.each([&](std::uint32_t t) {
        const std::size_t i = base + t;
        if (i < pairs)
          for (std::uint32_t k = 0; k < kDigestBytes; ++k) d[kDigestBytes * i + k] = node[t].b[k];
      });
      block.sync();
    }
    if (count & 1) {
      block.each([&](std::uint32_t t) {
        if (t == 0)
          for (std::uint32_t k = 0; k < kDigestBytes; ++k)
            d[kDigestBytes * pairs + k] = d[static_cast<std::size_t>(kDigestBytes) * (count - 1) + k];
      });
      block.sync();
    }
    count = (count + 1) / 2;
  }
}

// enc_finish, one block per chunk: the tree root, then (thread 0) the
// payload CRC, the header and the result.
template <typename Block>
FERRY_HD void finish_encode_block(EncChunk& c, const std::uint32_t* crc_table, const std::uint32_t* shift4k,
                                  EncResult& r, const Block& block) {
  tree_reduce(block, c.digests, c.leaves);
  block.each([&](std::uint32_t t) {
    if (t != 0) return;
    const std::uint32_t crc = join_crcs(c.seg_crc, c.payload_bytes, shift4k);
    const std::uint8_t codec = c.is_raw ? 0 : c.codec;
    const bool delta = c.base != nullptr && !c.is_raw;
    write_frame_header(crc_table, codec, c.dtype, c.raw_bytes, c.payload_bytes, c.digests,
                       delta ? c.base_id : nullptr, crc, c.frame);
    for (std::uint32_t k = 0; k < kDigestBytes; ++k) r.id[k] = c.digests[k];
    r.codec = codec;
    r.frame_bytes = kFrameHeaderBytes + c.payload_bytes;
  });
}

}  // namespace ferry::gpu
