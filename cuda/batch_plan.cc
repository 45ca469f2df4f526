// batch_plan.cc: see batch_plan.h.
#include "cuda/batch_plan.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "base/crc32c.h"
#include "cuda/decode_steps.cuh"
#include "cuda/gpu_engine.h"

namespace ferry::gpu {

static_assert(kV2BlockSymbols == kRansV2BlockSymbols && kSegmentSymbols == kRansV2SegmentSymbols &&
              kMaxTables == static_cast<std::uint32_t>(kRansV2MaxTables) &&
              kBlockSymbols == kRansBlockSymbols && kSampleStride == planes::kSampleStride);

namespace {

// Plan regions are handed out in 8-byte steps, so every chunk's share of
// the tables stays aligned for EncSym.
std::size_t round8(std::size_t bytes) { return (bytes + 7) / 8 * 8; }
std::size_t enc_table_entries(const EncChunk& c) {
  return static_cast<std::size_t>(c.width) * c.table_slots * kAlphabet;
}
std::size_t enc_assign_bytes(const EncChunk& c) {
  return round8(static_cast<std::size_t>(c.width) * c.segments);
}

}  // namespace

Codec gpu_chunk_codec(std::span<const std::byte> sample, DType dtype, bool trial,
                      CodecChoiceScratch& scratch) {
  const Codec codec = choose_chunk_codec(sample, dtype, trial, scratch, kGpuFloatPayloadVersion);
  if (codec_element_width(codec) == 0 || scratch.runner_up != Codec::kRaw) return Codec::kRaw;
  return codec;
}

EncChunk make_enc_chunk(std::uint32_t raw_bytes, std::uint32_t width, std::uint8_t codec,
                        std::uint8_t dtype) {
  EncChunk c;
  std::memset(&c, 0, sizeof c);
  c.raw_bytes = raw_bytes;
  c.width = width;
  c.n = raw_bytes / width;
  c.blocks = v2_blocks_of(c.n);
  c.segments = segments_of(c.n);
  c.table_slots = table_slots_of(c.n);
  c.plane_words = (c.n + 1) / 2;
  c.leaves = leaves_of(raw_bytes);
  c.codec = codec;
  c.dtype = dtype;
  return c;
}

bool take_enc_slices(StackArena& arena, EncChunk& c, bool stage_io) {
  const std::size_t w = c.width, units = w * c.blocks;
  const bool delta = is_delta_codec(static_cast<Codec>(c.codec));
  if (stage_io) {
    c.in = arena.take<std::uint8_t>(c.raw_bytes);
    if (!c.in) return false;
    if (delta && !(c.base = arena.take<std::uint8_t>(c.raw_bytes))) return false;
  }
  // A delta frame is kept only when it wins (the host decides after the
  // kernels), so it is never written straight into the caller's frame.
  if (stage_io || delta) {
    c.frame = arena.take<std::uint8_t>(kFrameHeaderBytes + c.raw_bytes);
    if (!c.frame) return false;
  }
  c.planes = arena.take<std::uint8_t>(w * c.n);
  c.words = arena.take<std::uint16_t>(w * c.plane_words);
  c.states = arena.take<std::uint32_t>(units * kLanes);
  c.digests = arena.take<std::uint8_t>(std::size_t{kDigestBytes} * c.leaves);
  c.stored = arena.take<std::uint32_t>(units);
  c.block_off = arena.take<std::uint32_t>(units);
  c.seg_crc = arena.take<std::uint32_t>(c.leaves + 1);
  return c.planes && c.words && c.states && c.digests && c.stored && c.block_off && c.seg_crc;
}

bool take_enc_plan_slices(StackArena& arena, std::span<EncChunk> chunks, EncPlanRegions& r) {
  r = {};
  for (const EncChunk& c : chunks) {
    r.hist_words += hist_words(c);
    r.table_entries += enc_table_entries(c);
    r.assign_bytes += enc_assign_bytes(c);
  }
  r.hist = arena.take<std::uint32_t>(r.hist_words);
  r.tables = arena.take<EncSym>(r.table_entries);
  r.assign = arena.take<std::uint8_t>(r.assign_bytes);
  if (!r.hist || !r.tables || !r.assign) return false;
  std::size_t h = 0, t = 0, a = 0;
  for (EncChunk& c : chunks) {
    c.hist = r.hist + h;
    c.tables = r.tables + t;
    c.assign = r.assign + a;
    h += hist_words(c);
    t += enc_table_entries(c);
    a += enc_assign_bytes(c);
  }
  return true;
}

void plan_chunk(EncChunk& c, const std::uint32_t* hist, EncSym* tables, std::uint8_t* assign,
                planes::Planner& planner) {
  for (std::uint32_t p = 0; p < c.width; ++p) {
    planes::SegmentCounts counts;
    counts.n = c.n;
    counts.segments = hist + hist_segment(c, p, 0);
    counts.sampled = hist + hist_sampled(c, p);
    const planes::Plan& plan = planner.plan(counts, /*sample_first=*/p != 0);
    c.mode[p] = plan.coded ? kModeCodedV2 : kModeRaw;
    c.table_k[p] = 0;
    c.table_bytes[p] = 0;
    if (!plan.coded) continue;
    const auto K = static_cast<std::uint32_t>(plan.freq.size());
    FERRY_CHECK(K >= 1 && K <= c.table_slots && plan.assign.size() == c.segments);
    c.table_k[p] = K;
    for (std::uint32_t k = 0; k < K; ++k) {
      EncSym* t = tables + (static_cast<std::size_t>(p) * c.table_slots + k) * kAlphabet;
      std::uint32_t cum = 0, present = 0;
      for (int s = 0; s < kAlphabet; ++s) {
        const std::uint32_t f = plan.freq[k][s];
        t[s] = make_enc_sym(f, cum);
        cum += f;
        present += f != 0;
      }
      c.table_bytes[p] += kPresentBytes + 2 * present;
    }
    std::memcpy(assign + static_cast<std::size_t>(p) * c.segments, plan.assign.data(), c.segments);
  }
}

int dec_codec_width(Codec codec) {
  return is_delta_codec(codec) ? delta_codec_width(codec) : codec_element_width(codec);
}
int dec_payload_version(Codec codec) {
  return is_delta_codec(codec) ? kFloatPayloadV2 : codec_payload_version(codec);
}

DecChunk make_dec_chunk(const FrameHeader& h) {
  DecChunk c;
  std::memset(&c, 0, sizeof c);
  const std::uint32_t w = std::max(1, dec_codec_width(h.codec));
  c.raw_bytes = h.raw_bytes;
  c.payload_bytes = h.payload_bytes;
  c.width = w;
  c.n = h.raw_bytes / w;
  c.version = static_cast<std::uint32_t>(dec_payload_version(h.codec));
  c.blocks = c.version == 2 ? v2_blocks_of(c.n) : c.version == 1 ? blocks_of(c.n) : 0;
  c.tiles = c.version == 0 ? 0 : blocks_of(c.n);
  c.segments = c.version == 2 ? segments_of(c.n) : 0;
  c.table_slots = c.version == 2 ? table_slots_of(c.n) : 1;
  c.leaves = leaves_of(h.raw_bytes);
  c.codec = static_cast<std::uint32_t>(h.codec);
  c.payload_crc = unmask_crc(h.payload_crc);
  std::memcpy(c.chunk_id, h.chunk_id.data(), kDigestBytes);
  return c;
}

bool take_dec_slices(StackArena& arena, DecChunk& c, bool stage_io) {
  const std::size_t w = c.width, units = w * c.blocks;
  if (stage_io) {
    // One spare byte: a zero-length payload still gets a distinct slice.
    c.payload = arena.take<std::uint8_t>(c.payload_bytes + 1);
    c.out = arena.take<std::uint8_t>(c.raw_bytes);
    if (!c.payload || !c.out) return false;
    if (is_delta_codec(static_cast<Codec>(c.codec)) && !(c.base = arena.take<std::uint8_t>(c.raw_bytes)))
      return false;
  }
  c.digests = arena.take<std::uint8_t>(std::size_t{kDigestBytes} * c.leaves);
  c.seg_crc = arena.take<std::uint32_t>(leaves_of(c.payload_bytes) + 1);
  c.dec_table = arena.take<std::uint32_t>(w * c.table_slots * kProbScale);
  c.block_in = arena.take<std::uint32_t>(units + 1);
  c.block_st = arena.take<std::uint32_t>(units + 1);
  if (!c.digests || !c.seg_crc || !c.dec_table || !c.block_in || !c.block_st) return false;
  if (c.version != 2) return true;
  c.planes = arena.take<std::uint8_t>(w * c.n);
  c.seg_slot = arena.take<std::uint8_t>(w * c.segments);
  return c.planes && c.seg_slot;
}

std::size_t enc_chunk_device_bytes(std::uint32_t raw_bytes, std::uint32_t width, bool stage_io, bool delta) {
  StackArena a = StackArena::sizing();
  EncChunk c = make_enc_chunk(raw_bytes, width,
                              delta ? static_cast<std::uint8_t>(delta_codec(static_cast<int>(width))) : 0, 0);
  take_enc_slices(a, c, stage_io);
  const std::size_t plan =
      hist_words(c) * sizeof(std::uint32_t) + enc_table_entries(c) * sizeof(EncSym) + enc_assign_bytes(c);
  return StackArena::rounded(a.used()) + plan + sizeof(EncChunk) + sizeof(EncResult);
}

std::size_t dec_chunk_device_bytes(const FrameHeader& h, bool stage_io) {
  StackArena a = StackArena::sizing();
  DecChunk c = make_dec_chunk(h);
  take_dec_slices(a, c, stage_io);
  return StackArena::rounded(a.used()) + sizeof(DecChunk);
}

std::size_t dec_chunk_worst_device_bytes(std::uint32_t raw_bytes, bool stage_io) {
  std::size_t most = 0;
  for (Codec codec : {Codec::kRaw, Codec::kPlanes8, Codec::kPlanes16, Codec::kPlanes32, Codec::kPlanes8V2,
                      Codec::kPlanes16V2, Codec::kPlanes32V2, Codec::kDeltaPlanes8, Codec::kDeltaPlanes16,
                      Codec::kDeltaPlanes32}) {
    FrameHeader h;
    h.codec = codec;
    h.raw_bytes = raw_bytes;
    h.payload_bytes = raw_bytes;  // a payload never exceeds its chunk
    most = std::max(most, dec_chunk_device_bytes(h, stage_io));
  }
  return most;
}

std::size_t enc_chunk_pinned_bytes(std::uint32_t raw_bytes) {
  return StackArena::rounded(std::size_t{kFrameHeaderBytes} + raw_bytes);
}
std::size_t dec_chunk_pinned_bytes(std::uint32_t raw_bytes) { return StackArena::rounded(raw_bytes); }

std::uint64_t context_reserve_bytes(std::uint32_t sms, std::uint32_t threads_per_sm) {
  return std::uint64_t{sms} * threads_per_sm * kLocalBytesPerThread + kModuleReserveBytes;
}

Result<std::vector<SubBatch>> plan_sub_batches(std::span<const ChunkNeed> needs, const BatchCaps& caps) {
  std::vector<SubBatch> parts;
  std::size_t device = 0, pinned = 0;
  bool closed = true;  // the last sub-batch takes no more chunks
  for (std::size_t i = 0; i < needs.size(); ++i) {
    const ChunkNeed& n = needs[i];
    if (n.device_bytes + kBatchFixedBytes > caps.device_bytes) {
      return Status::exhausted("chunk " + std::to_string(i) + " of the batch needs " +
                               std::to_string(n.device_bytes + kBatchFixedBytes) +
                               " bytes of device memory, more than the engine's cap of " +
                               std::to_string(caps.device_bytes));
    }
    const bool alone = n.pinned_bytes > caps.pinned_bytes;  // larger than the whole pool
    const bool pin = n.pinned_bytes > 0 && !alone;
    const bool fits = !closed && !alone && parts.back().pinned == pin &&
                      parts.back().count < caps.max_chunks &&
                      device + n.device_bytes + kBatchFixedBytes <= caps.device_bytes &&
                      pinned + n.pinned_bytes <= caps.pinned_bytes;
    if (!fits) {
      parts.push_back({i, 0, pin});
      device = pinned = 0;
    }
    parts.back().count++;
    device += n.device_bytes;
    pinned += pin ? n.pinned_bytes : 0;
    closed = alone;
  }
  return parts;
}

EncGrids enc_grids(std::span<const EncChunk> chunks) {
  std::uint32_t leaves = 1, units = 1, assemble = 1, segments = 1;
  for (const EncChunk& c : chunks) {
    leaves = std::max(leaves, c.leaves);
    units = std::max(units, c.width * c.blocks);
    assemble = std::max(assemble, assemble_units(c));
    // The payload is at most the chunk (raw fallback): its segments at most
    // the chunk's leaves.
    segments = std::max(segments, c.leaves + 1);
  }
  return {grid_for(leaves, kThreads), grid_for(units, kWarpsPerBlock), grid_for(assemble, kWarpsPerBlock),
          grid_for(segments, kThreads)};
}

DecGrids dec_grids(std::span<const DecChunk> chunks) {
  std::uint32_t segments = 1, units = 1, tiles = 1, leaves = 1;
  for (const DecChunk& c : chunks) {
    segments = std::max(segments, leaves_of(c.payload_bytes) + 1);
    if (c.version == 2) units = std::max(units, c.width * c.blocks);
    tiles = std::max(tiles, fused_blocks(c));
    leaves = std::max(leaves, c.leaves);
  }
  return {grid_for(segments, kThreads), grid_for(units, kWarpsPerBlock), tiles, grid_for(leaves, kThreads)};
}

}  // namespace ferry::gpu

namespace ferry {

std::size_t gpu_decode_arena_bytes(std::span<const std::uint32_t> raw_chunk_bytes) {
  std::size_t bytes = gpu::kBatchFixedBytes;
  for (std::uint32_t raw : raw_chunk_bytes)
    bytes += gpu::dec_chunk_worst_device_bytes(raw, /*stage_io=*/false);
  return bytes;
}

}  // namespace ferry
