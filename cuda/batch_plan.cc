// batch_plan.cc: see batch_plan.h.
#include "cuda/batch_plan.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "base/crc32c.h"
#include "cuda/decode_steps.cuh"
#include "cuda/gpu_engine.h"

namespace ferry::gpu {

EncChunk make_enc_chunk(std::uint32_t raw_bytes, std::uint32_t width, std::uint8_t codec,
                        std::uint8_t dtype) {
  EncChunk c;
  std::memset(&c, 0, sizeof c);
  c.raw_bytes = raw_bytes;
  c.width = width;
  c.n = raw_bytes / width;
  c.blocks = blocks_of(c.n);
  c.leaves = leaves_of(raw_bytes);
  c.codec = codec;
  c.dtype = dtype;
  return c;
}

bool take_enc_slices(StackArena& arena, EncChunk& c, bool stage_io) {
  const std::size_t w = c.width, units = w * c.blocks;
  if (stage_io) {
    c.in = arena.take<std::uint8_t>(c.raw_bytes);
    c.frame = arena.take<std::uint8_t>(kFrameHeaderBytes + c.raw_bytes);
    if (!c.in || !c.frame) return false;
  }
  c.planes = arena.take<std::uint8_t>(w * c.n);
  c.words = arena.take<std::uint16_t>(units * (kBlockSymbols / 2));
  c.states = arena.take<std::uint32_t>(units * kLanes);
  c.digests = arena.take<std::uint8_t>(std::size_t{kDigestBytes} * c.leaves);
  c.hist = arena.take<std::uint32_t>(w * 2 * kAlphabet);
  c.stored = arena.take<std::uint32_t>(units);
  c.block_off = arena.take<std::uint32_t>(units);
  c.seg_crc = arena.take<std::uint32_t>(c.leaves + 1);
  c.tables = arena.take<EncSym>(w * kAlphabet);
  return c.planes && c.words && c.states && c.digests && c.hist && c.stored && c.block_off && c.seg_crc &&
         c.tables;
}

DecChunk make_dec_chunk(const FrameHeader& h) {
  DecChunk c;
  std::memset(&c, 0, sizeof c);
  const std::uint32_t w = std::max(1, codec_element_width(h.codec));
  c.raw_bytes = h.raw_bytes;
  c.payload_bytes = h.payload_bytes;
  c.width = w;
  c.n = h.raw_bytes / w;
  c.blocks = h.codec == Codec::kRaw ? 0 : blocks_of(c.n);
  c.leaves = leaves_of(h.raw_bytes);
  c.codec = static_cast<std::uint32_t>(h.codec);
  c.payload_crc = unmask_crc(h.payload_crc);
  std::memcpy(c.chunk_id, h.chunk_id.data(), kDigestBytes);
  return c;
}

bool take_dec_slices(StackArena& arena, DecChunk& c, bool stage_io) {
  const std::size_t units = std::size_t{c.width} * c.blocks;
  if (stage_io) {
    // One spare byte: a zero-length payload still gets a distinct slice.
    c.payload = arena.take<std::uint8_t>(c.payload_bytes + 1);
    c.out = arena.take<std::uint8_t>(c.raw_bytes);
    if (!c.payload || !c.out) return false;
  }
  c.digests = arena.take<std::uint8_t>(std::size_t{kDigestBytes} * c.leaves);
  c.seg_crc = arena.take<std::uint32_t>(leaves_of(c.payload_bytes) + 1);
  c.dec_table = arena.take<std::uint32_t>(std::size_t{c.width} * kProbScale);
  c.block_in = arena.take<std::uint32_t>(units + 1);
  c.block_st = arena.take<std::uint32_t>(units + 1);
  return c.digests && c.seg_crc && c.dec_table && c.block_in && c.block_st;
}

std::size_t enc_chunk_device_bytes(std::uint32_t raw_bytes, std::uint32_t width, bool stage_io) {
  StackArena a = StackArena::sizing();
  EncChunk c = make_enc_chunk(raw_bytes, width, 0, 0);
  take_enc_slices(a, c, stage_io);
  return StackArena::rounded(a.used()) + sizeof(EncChunk) + sizeof(EncResult);
}

std::size_t dec_chunk_device_bytes(const FrameHeader& h, bool stage_io) {
  StackArena a = StackArena::sizing();
  DecChunk c = make_dec_chunk(h);
  take_dec_slices(a, c, stage_io);
  return StackArena::rounded(a.used()) + sizeof(DecChunk);
}

std::size_t dec_chunk_worst_device_bytes(std::uint32_t raw_bytes, bool stage_io) {
  std::size_t most = 0;
  for (Codec codec : {Codec::kRaw, Codec::kPlanes8, Codec::kPlanes16, Codec::kPlanes32}) {
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
  std::uint32_t segments = 1, blocks = 1, leaves = 1;
  for (const DecChunk& c : chunks) {
    segments = std::max(segments, leaves_of(c.payload_bytes) + 1);
    blocks = std::max(blocks, fused_blocks(c));
    leaves = std::max(leaves, c.leaves);
  }
  return {grid_for(segments, kThreads), blocks, grid_for(leaves, kThreads)};
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
