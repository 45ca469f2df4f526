// decode_steps.cuh: the per-thread and per-warp steps of the decode kernels
// (cuda/decode_kernels.cuh) as FERRY_HD functions: a frame's structural
// checks (parse), the bytes of a decoded tile (TileBytes), one warp's rANS
// block, the fused decode-and-hash of one block with its block-uniform
// entry, the raw copy of one leaf, and the final checks. Every frame is
// hostile: an error is recorded for its chunk, never trapped.
// tests/cuda/decode_kernels_test.cc runs them on the host over the grid and
// compares with the CPU decoder on real frames, the fuzz corpus and damage.
#pragma once

#include "cuda/encode_steps.cuh"

namespace ferry::gpu {

// The chunk's error code as it is now (other blocks set it concurrently).
FERRY_HD std::uint32_t load_err(const DecChunk& c) {
#if defined(__CUDA_ARCH__)
  return *static_cast<const volatile std::uint32_t*>(&c.err);
#else
  return __atomic_load_n(&c.err, __ATOMIC_ACQUIRE);
#endif
}

// Records the chunk's first error; later ones are dropped.
FERRY_HD void set_error(DecChunk& c, std::uint32_t code, std::uint32_t plane, std::uint32_t block,
                        std::uint32_t detail) {
#if defined(__CUDA_ARCH__)
  const bool first = atomicCAS(&c.err, 0u, code) == 0u;
#else
  std::uint32_t expected = 0;
  const bool first =
      __atomic_compare_exchange_n(&c.err, &expected, code, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
#endif
  if (first) {
    c.err_plane = plane;
    c.err_block = block;
    c.err_detail = detail;
  }
}

// Structural check codes (DecChunk::err_detail with kDecStructure), in the
// order FloatDecoder makes the same checks.
enum ParseCheck : std::uint32_t {
  kCheckModeBytes = 1,
  kCheckRawPlane = 2,
  kCheckMode = 3,
  kCheckBitmap = 4,
  kCheckFreqTable = 5,
  kCheckFreqSum = 6,
  kCheckBlockSizes = 7,
  kCheckStoredSize = 8,
  kCheckBlockBytes = 9,
  kCheckTail = 10,
  kCheckTableCount = 11,  // version 2: K not in 1..16
  kCheckChoices = 12,     // version 2: segment choices truncated or >= K
};

// Reads and checks one stored table at in[pos..size) (FORMAT.md 4.1).
// Returns the check that failed, or 0 with pos past the table.
FERRY_HD std::uint32_t read_table(const std::uint8_t* in, std::uint32_t size, std::uint32_t& pos) {
  if (size - pos < kPresentBytes) return kCheckBitmap;
  const std::uint8_t* present = in + pos;
  pos += kPresentBytes;
  std::uint32_t cum = 0;
  for (std::uint32_t s = 0; s < kAlphabet; ++s) {
    if (!(present[s >> 3] & (1u << (s & 7)))) continue;
    if (size - pos < 2) return kCheckFreqTable;
    const std::uint32_t f = get_le16(in + pos);
    pos += 2;
    if (f == 0 || cum + f > kProbScale) return kCheckFreqSum;
    cum += f;
  }
  return cum == kProbScale ? 0u : static_cast<std::uint32_t>(kCheckFreqSum);
}

// A version 1 coded plane at in[pos..size): one table (slot 0), u16 block
// sizes.
FERRY_HD std::uint32_t parse_plane_v1(DecChunk& c, std::uint32_t p, std::uint32_t& pos,
                                      std::uint32_t* bad_block) {
  const std::uint8_t* in = c.payload;
  const std::uint32_t size = c.payload_bytes, B = c.blocks;
  c.table_at[p][0] = pos;
  c.tables_used[p] = 1;
  if (const std::uint32_t err = read_table(in, size, pos)) return err;
  if ((size - pos) / 2 < B) return kCheckBlockSizes;
  const std::uint8_t* stored = in + pos;
  pos += 2 * B;
  for (std::uint32_t b = 0; b < B; ++b) {
    const std::uint32_t m = block_symbols(c.n, b);
    const std::uint32_t st = get_le16(stored + 2 * b);
    *bad_block = b;
    if (st != m && (st > m || st % 2 != 0 || st < kStateBytes)) return kCheckStoredSize;
    if (size - pos < st) return kCheckBlockBytes;
    c.block_in[p * B + b] = pos;
    c.block_st[p * B + b] = st;
    pos += st;
  }
  return 0;
}

// A version 2 coded plane at in[pos..size) (FORMAT.md 4.2): K tables, the
// segments' choices, u32 block sizes. Only the tables a segment uses get a
// decoder-table slot, in order of first use (a hostile frame may hold more
// tables than segments); records each slot's table and each segment's slot.
FERRY_HD std::uint32_t parse_plane_v2(DecChunk& c, std::uint32_t p, std::uint32_t& pos,
                                      std::uint32_t* bad_block) {
  const std::uint8_t* in = c.payload;
  const std::uint32_t size = c.payload_bytes, B = c.blocks, S = c.segments;
  if (size - pos < 1) return kCheckTableCount;
  const std::uint32_t K = in[pos++];
  if (K < 1 || K > kMaxTables) return kCheckTableCount;
  std::uint32_t table_at[kMaxTables];
  for (std::uint32_t k = 0; k < K; ++k) {
    table_at[k] = pos;
    if (const std::uint32_t err = read_table(in, size, pos)) return err;
  }
  const std::uint8_t* sel = nullptr;
  if (K > 1) {
    if (size - pos < S) return kCheckChoices;
    sel = in + pos;
    for (std::uint32_t g = 0; g < S; ++g)
      if (sel[g] >= K) return kCheckChoices;
    pos += S;
  }
  if ((size - pos) / 4 < B) return kCheckBlockSizes;
  const std::uint8_t* stored = in + pos;
  pos += 4 * B;
  std::uint64_t need = 0;
  for (std::uint32_t b = 0; b < B; ++b) {
    const std::uint32_t m = block_symbols(c.n, b, kV2BlockSymbols);
    const std::uint32_t st = get_le32(stored + 4 * b);
    *bad_block = b;
    if (st != m && (st > m || st % 2 != 0 || st < kStateBytes)) return kCheckStoredSize;
    c.block_in[p * B + b] = static_cast<std::uint32_t>(pos + need);
    c.block_st[p * B + b] = st;
    need += st;
  }
  *bad_block = 0;
  if (size - pos < need) return kCheckBlockBytes;
  pos += static_cast<std::uint32_t>(need);
  std::uint8_t slot_of[kMaxTables];
  for (std::uint32_t k = 0; k < kMaxTables; ++k) slot_of[k] = 0xff;
  std::uint32_t slots = 0;
  for (std::uint32_t g = 0; g < S; ++g) {
    const std::uint32_t k = sel ? sel[g] : 0;
    if (slot_of[k] == 0xff) {  // slots <= segments, so within table_slots
      slot_of[k] = static_cast<std::uint8_t>(slots);
      c.table_at[p][slots++] = table_at[k];
    }
    c.seg_slot[static_cast<std::size_t>(p) * S + g] = slot_of[k];
  }
  c.tables_used[p] = slots;
  return 0;
}

// parse, one thread per planes frame: every mode byte, table and block size
// against the payload before any block is read, in FloatDecoder's order;
// fills mode, plane_off, dec_table, block_in and block_st (and, version 2,
// seg_slot).
FERRY_HD void parse_chunk(DecChunk& c) {
  if (c.codec == 0) return;
  const std::uint8_t* in = c.payload;
  const std::uint32_t size = c.payload_bytes, w = c.width, n = c.n;
  if (size < w) return set_error(c, kDecStructure, 0, 0, kCheckModeBytes);
  const std::uint8_t coded = c.version == 2 ? kModeCodedV2 : kModeCodedV1;
  std::uint32_t pos = w;
  for (std::uint32_t p = 0; p < w; ++p) {
    c.mode[p] = in[p];
    if (in[p] == kModeRaw) {
      if (size - pos < n) return set_error(c, kDecStructure, p, 0, kCheckRawPlane);
      c.plane_off[p] = pos;
      pos += n;
      continue;
    }
    if (in[p] != coded || n == 0) return set_error(c, kDecStructure, p, 0, kCheckMode);
    std::uint32_t block = 0;
    const std::uint32_t err =
        c.version == 2 ? parse_plane_v2(c, p, pos, &block) : parse_plane_v1(c, p, pos, &block);
    if (err) return set_error(c, kDecStructure, p, block, err);
  }
  if (size - pos != c.raw_bytes - n * w) return set_error(c, kDecStructure, w, 0, kCheckTail);
}

// Thread t of `threads` builds its share of the decoder tables parse_chunk
// recorded (checked already): every threads-th slot entry, so each table's
// 4096 entries are written by all threads side by side.
FERRY_HD void build_tables(DecChunk& c, std::uint32_t t, std::uint32_t threads) {
  for (std::uint32_t p = 0; p < c.width; ++p) {
    if (c.mode[p] == kModeRaw) continue;
    for (std::uint32_t slot = 0; slot < c.tables_used[p]; ++slot) {
      const std::uint8_t* present = c.payload + c.table_at[p][slot];
      const std::uint8_t* freqs = present + kPresentBytes;
      std::uint32_t* slots = c.dec_table + (static_cast<std::size_t>(p) * c.table_slots + slot) * kProbScale;
      std::uint32_t cum = 0;
      for (std::uint32_t s = 0; s < kAlphabet; ++s) {
        if (!(present[s >> 3] & (1u << (s & 7)))) continue;
        const std::uint32_t f = get_le16(freqs);
        freqs += 2;
        for (std::uint32_t i = cum + (t + threads - cum % threads) % threads; i < cum + f; i += threads)
          slots[i] = dec_entry(s, f, i - cum);
        cum += f;
      }
    }
  }
}

// parse, one block per planes frame: thread 0 checks the structure
// (parse_chunk), then every thread builds its share of the decoder tables
// unless the frame was refused (err is written only by thread 0 before the
// barrier, so every thread sees the same value).
template <typename Block>
FERRY_HD void parse_block(DecChunk& c, const Block& block) {
  if (c.codec == 0) return;  // host-written: block-uniform
  block.each([&](std::uint32_t t) {
    if (t == 0) parse_chunk(c);
  });
  block.sync();
  block.each([&](std::uint32_t t) {
    if (load_err(c) == 0) build_tables(c, t, block.size());
  });
}

// Byte o (chunk-relative) of the decoded output, from the plane tile of
// block b (elements first_elem ... first_elem + 16383) or the payload's
// raw tail; for a delta frame, rebuilt from the base (FORMAT.md 3.1), so
// what is stored and hashed is the chunk itself. REQUIRES: o lies in block b's bytes
// (decoded_bytes_of_block).
struct TileBytes {
  const std::uint8_t* tile;  // width planes of kBlockSymbols bytes
  const DecChunk* c;
  std::uint32_t first_elem;
  FERRY_HD std::uint8_t operator()(std::uint32_t o) const {
    const std::uint32_t w = c->width, e = o / w;
    if (e >= c->n) {
      const std::uint8_t t = c->payload[c->payload_bytes - (c->raw_bytes - o)];
      return c->base ? static_cast<std::uint8_t>(delta_inverse(t, c->base[o], 1)) : t;
    }
    std::uint32_t r = 0;
    for (std::uint32_t p = 0; p < w; ++p)
      r |= static_cast<std::uint32_t>(tile[p * kBlockSymbols + e - first_elem]) << (8 * (w - 1 - p));
    std::uint32_t v = unrotate_element(r, static_cast<int>(w));
    if (c->base) v = delta_inverse(v, load_elem(c->base + static_cast<std::size_t>(e) * w, w), w);
    return static_cast<std::uint8_t>(v >> (8 * (o % w)));
  }
};

// Blocks of decode_fused per planes frame: one per tile, at least one
// (a frame of fewer bytes than one element still has its tail to copy).
FERRY_HD std::uint32_t fused_blocks(const DecChunk& c) { return c.tiles > 0 ? c.tiles : 1; }

// Output bytes block b of decode_fused writes: its elements, and the tail
// after the last element for the last block.
FERRY_HD ByteRange decoded_bytes_of_block(const DecChunk& c, std::uint32_t b) {
  const std::uint32_t begin = hd_min(b * kBlockSymbols * c.width, c.raw_bytes);
  const std::uint32_t end =
      b + 1 >= fused_blocks(c) ? c.raw_bytes : hd_min((b + 1) * kBlockSymbols * c.width, c.raw_bytes);
  return {begin, end};
}

// One warp decodes a coded block of m symbols, `st` stored bytes at `in`,
// into dst; group g of 32 symbols with the decoder table table_of(g).
// Returns true (warp-uniform) when the block does not decode.
template <typename Warp, typename TableOf>
FERRY_HD bool decode_rans_block(const std::uint8_t* in, std::uint32_t st, std::uint32_t m, std::uint8_t* dst,
                                const TableOf& table_of, const Warp& warp) {
  const std::uint32_t nwords = (st - kStateBytes) / 2;
  typename Warp::template Each<std::uint32_t> x;
  typename Warp::template Each<bool> low;
  warp.each([&](int lane) {
    x[lane] = get_le32(in + 4 * lane);
    low[lane] = x[lane] < kStateLow;
  });
  bool bad = warp.any(low);
  std::uint32_t pos = 0;
  for (std::uint32_t g = 0; g * kLanes < m && !bad; ++g) {
    const std::uint32_t* slots = table_of(g);
    typename Warp::template Each<bool> need;
    warp.each([&](int lane) {
      const std::uint32_t i = g * kLanes + static_cast<std::uint32_t>(lane);
      need[lane] = false;
      if (i < m) {
        const std::uint32_t e = slots[x[lane] & (kProbScale - 1)];
        dst[i] = static_cast<std::uint8_t>(e);
        x[lane] = dec_step(x[lane], e);
        need[lane] = x[lane] < kStateLow;
      }
    });
    const std::uint32_t needs = warp.ballot(need);
    if (pos + static_cast<std::uint32_t>(hd_popc(needs)) > nwords) {
      bad = true;
      break;
    }
    warp.each([&](int lane) {
      if (need[lane])
        x[lane] = (x[lane] << 16) | get_le16(in + kStateBytes + 2 * dec_word_index(needs, lane, pos));
    });
    pos += static_cast<std::uint32_t>(hd_popc(needs));
  }
  typename Warp::template Each<bool> off;
  warp.each([&](int lane) { off[lane] = x[lane] != kStateLow; });
  const bool unfinished = warp.any(off);
  return bad || pos != nwords || unfinished;
}

template <typename Warp>
FERRY_HD void copy_symbols(const std::uint8_t* in, std::uint32_t m, std::uint8_t* dst, const Warp& warp) {
  warp.each([&](int lane) {
    for (std::uint32_t i = static_cast<std::uint32_t>(lane); i < m; i += kLanes) dst[i] = in[i];
  });
}

// One warp fills tile b of plane p (kBlockSymbols symbols) into dst: from
// a raw plane, from the planes decode_blocks wrote (version 2), or by
// decoding version 1 block b. Returns true (warp-uniform) when a version 1
// coded block does not decode.
template <typename Warp>
FERRY_HD bool decode_plane_block(const DecChunk& c, std::uint32_t p, std::uint32_t b, std::uint8_t* dst,
                                 const Warp& warp) {
  const std::uint32_t first = b * kBlockSymbols;
  const std::uint32_t m = block_symbols(c.n, b);
  if (m == 0) return false;
  if (c.mode[p] == kModeRaw) {
    copy_symbols(c.payload + c.plane_off[p] + first, m, dst, warp);
    return false;
  }
  if (c.version == 2) {
    copy_symbols(c.planes + static_cast<std::size_t>(p) * c.n + first, m, dst, warp);
    return false;
  }
  const std::uint32_t q = p * c.blocks + b;
  const std::uint32_t st = c.block_st[q];
  const std::uint8_t* in = c.payload + c.block_in[q];
  if (st == m) {
    copy_symbols(in, m, dst, warp);
    return false;
  }
  const std::uint32_t* slots = c.dec_table + p * kProbScale;
  return decode_rans_block(
      in, st, m, dst, [&](std::uint32_t) { return slots; }, warp);
}

// decode_blocks, one warp per (plane, block) unit q of a version 2 frame:
// decodes (or copies, for a raw block) the block into c.planes, each group
// with its segment's table. Does nothing for a frame with an error already.
template <typename Warp>
FERRY_HD void decode_block_v2(DecChunk& c, std::uint32_t q, const Warp& warp) {
  if (c.version != 2 || q >= c.width * c.blocks) return;  // host-written fields: warp-uniform
  typename Warp::template Each<bool> failed;
  warp.each([&](int lane) { failed[lane] = load_err(c) != 0; });
  if (warp.any(failed)) return;
  const std::uint32_t p = q / c.blocks, b = q % c.blocks;
  if (c.mode[p] == kModeRaw) return;
  const std::uint32_t m = block_symbols(c.n, b, kV2BlockSymbols);
  const std::uint32_t st = c.block_st[q];
  const std::uint8_t* in = c.payload + c.block_in[q];
  std::uint8_t* dst =
      c.planes + static_cast<std::size_t>(p) * c.n + static_cast<std::size_t>(b) * kV2BlockSymbols;
  if (st == m) return copy_symbols(in, m, dst, warp);
  constexpr std::uint32_t kGroupsPerSegment = kSegmentSymbols / kLanes;
  const std::uint8_t* seg_slot = c.seg_slot + static_cast<std::size_t>(p) * c.segments +
                                 static_cast<std::size_t>(b) * (kV2BlockSymbols / kSegmentSymbols);
  const std::uint32_t* tables = c.dec_table + static_cast<std::size_t>(p) * c.table_slots * kProbScale;
  const bool bad = decode_rans_block(
      in, st, m, dst, [&](std::uint32_t g) { return tables + seg_slot[g / kGroupsPerSegment] * kProbScale; },
      warp);
  warp.each([&](int lane) {
    if (bad && lane == 0) set_error(c, kDecBlock, p, b, 0);
  });
}

// decode_fused, block b of a planes frame: warp p decodes plane p's block b
// into the shared tile; then every thread merges planes into elements,
// stores them and hashes the block's leaves from the tile. `err_seen` is
// block-shared memory: thread 0 samples the chunk's error flag into it
// before the first barrier and every thread decides after it, so the whole
// block passes each barrier or none of it does, even while another block
// records an error for the same chunk.
template <typename Block>
FERRY_HD void decode_fused_block(DecChunk& c, std::uint32_t b, std::uint8_t* tile, std::uint32_t& err_seen,
                                 const Block& block) {
  if (c.codec == 0 || b >= fused_blocks(c)) return;  // host-written fields: block-uniform
  block.each([&](std::uint32_t t) {
    if (t == 0) err_seen = load_err(c);
  });
  block.sync();
  if (err_seen != 0) return;
  block.each_warp([&](std::uint32_t p, const auto& warp) {
    if (p >= c.width) return;
    const bool bad = decode_plane_block(c, p, b, tile + p * kBlockSymbols, warp);
    warp.each([&](int lane) {
      if (bad && lane == 0) set_error(c, kDecBlock, p, b, 0);
    });
  });
  block.sync();
  // No barrier follows: a thread that sees an error (its own block's, or
  // another block's) may stop on its own.
  const ByteRange bytes = decoded_bytes_of_block(c, b);
  const TileBytes at{tile, &c, b * kBlockSymbols};
  block.each([&](std::uint32_t t) {
    if (load_err(c) != 0) return;
    for (std::uint32_t o = bytes.begin + t; o < bytes.end; o += block.size()) c.out[o] = at(o);
    const std::uint32_t leaf0 = bytes.begin / kLeafBytes;
    const std::uint32_t leaves = (bytes.end - bytes.begin + kLeafBytes - 1) / kLeafBytes;
    for (std::uint32_t l = t; l < leaves; l += block.size()) {
      const ByteRange leaf = leaf_bytes(leaf0 + l, c.raw_bytes);
      const std::uint32_t len = leaf.end - leaf.begin;
      auto fetch = [&](std::uint32_t i) {
        std::uint32_t v = 0;
        for (std::uint32_t k = 0; k < 4; ++k) {
          const std::uint32_t o = 4 * i + k;
          v |= (o < len ? static_cast<std::uint32_t>(at(leaf.begin + o)) : 0u) << (24 - 8 * k);
        }
        return v;
      };
      sha256_prefixed(0x00, len, fetch, c.digests + static_cast<std::size_t>(kDigestBytes) * (leaf0 + l));
    }
  });
}

// raw_copy_hash, one thread per leaf of a raw frame: copies and hashes it.
FERRY_HD void raw_copy_leaf(const DecChunk& c, std::uint32_t leaf) {
  if (c.codec != 0 || leaf >= c.leaves) return;
  const ByteRange r = leaf_bytes(leaf, c.raw_bytes);
  for (std::uint32_t i = r.begin; i < r.end; ++i) c.out[i] = c.payload[i];
  sha256_prefixed(0x00, r.end - r.begin, global_leaf(c.payload + r.begin, r.end - r.begin),
                  c.digests + static_cast<std::size_t>(kDigestBytes) * leaf);
}

// dec_finish, one block per chunk. Thread 0 samples the error of the
// earlier kernels into `err_seen` (block-shared) before it writes one
// itself; the tree is reduced only for a chunk without one. Then thread 0
// checks the payload CRC first, as the CPU decoder does, then the root
// against the chunk id.
template <typename Block>
FERRY_HD void finish_decode_block(DecChunk& c, const std::uint32_t* shift4k, std::uint32_t& err_seen,
                                  const Block& block) {
  block.each([&](std::uint32_t t) {
    if (t == 0) err_seen = load_err(c);
  });
  block.sync();
  if (err_seen == 0 && c.leaves > 0) tree_reduce(block, c.digests, c.leaves);
  block.each([&](std::uint32_t t) {
    if (t != 0) return;
    if (join_crcs(c.seg_crc, c.payload_bytes, shift4k) != c.payload_crc) {
      c.err = kDecPayloadCrc;
      return;
    }
    if (err_seen != 0) return;
    for (std::uint32_t k = 0; k < kDigestBytes; ++k)
      if (c.digests[k] != c.chunk_id[k]) {
        c.err = kDecHash;
        return;
      }
  });
}

}  // namespace ferry::gpu
