// batch_plan.h: host-side planning of GPU batches, shared by the engine
// (cuda/gpu_engine.cu) and the host-only tests that run the kernels' steps
// over the same plan: the device stack arena, the records and arena slices
// of each chunk, the bytes a chunk needs (so callers can size the arena),
// the split of a batch into sub-batches that fit the arena, the pinned pool
// and CUDA's grid limit, and the grid of each kernel. Plain C++.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "base/status.h"
#include "codec/chunk_codec.h"
#include "codec/frame.h"
#include "codec/plane_coder.h"
#include "cuda/chunk_batch.cuh"

namespace ferry::gpu {

// Reusable stack allocator over one allocation: each sub-batch takes
// aligned slices and releases them all at once, so the hot path never
// allocates.
class StackArena {
 public:
  StackArena() = default;
  StackArena(std::byte* base, std::size_t bytes) : base_(base), size_(bytes) {}
  // An arena that only counts: unbounded, at a fake non-null address whose
  // slices are never dereferenced (for sizing a plan before allocating).
  static StackArena sizing() {
    return StackArena(reinterpret_cast<std::byte*>(kArenaAlign), static_cast<std::size_t>(-1) / 2);
  }

  std::size_t capacity() const { return size_; }
  std::size_t used() const { return top_; }
  void reset() { top_ = 0; }

  // nullptr when the arena is full (the caller splits its batch).
  template <typename T>
  T* take(std::size_t count) {
    const std::size_t at = rounded(top_);
    const std::size_t bytes = count * sizeof(T);
    if (at > size_ || size_ - at < bytes) return nullptr;
    top_ = at + bytes;
    return reinterpret_cast<T*>(base_ + at);
  }

  static std::size_t rounded(std::size_t bytes) {
    return (bytes + kArenaAlign - 1) / kArenaAlign * kArenaAlign;
  }

 private:
  std::byte* base_ = nullptr;
  std::size_t size_ = 0;
  std::size_t top_ = 0;
};

// The planes codec the kernels code a chunk with, or Codec::kRaw when the
// CPU engine codes it: zstd, an empty chunk, and a close call on the sample
// (the CPU encoder then codes the whole chunk both ways and keeps the
// smaller; it does so inside the GPU engine too, so frames stay the CPU
// engine's). `sample` is the chunk, or its codec_choice_sample pieces at
// their offsets (the rest unread).
Codec gpu_chunk_codec(std::span<const std::byte> sample, DType dtype, bool trial,
                      CodecChoiceScratch& scratch);

// The record of a chunk of raw_bytes coded as planes of `width` bytes; no
// buffers yet.
EncChunk make_enc_chunk(std::uint32_t raw_bytes, std::uint32_t width, std::uint8_t codec, std::uint8_t dtype);
// Takes c's work slices from the arena, and with stage_io its input (and a
// delta's base) and frame too (host-memory batches); a delta's frame always
// (the host copies it out only when the delta wins). False when the arena
// is full. The slices the host plan reads and writes come from
// take_enc_plan_slices.
bool take_enc_slices(StackArena& arena, EncChunk& c, bool stage_io);

// The slices of a sub-batch that cross to the host between split_hash and
// encode_blocks, each one region for all its chunks so that one copy each
// way serves the sub-batch: the histograms (read back), the encoder tables
// and the segments' choices (written).
struct EncPlanRegions {
  std::uint32_t* hist = nullptr;
  std::size_t hist_words = 0;
  EncSym* tables = nullptr;
  std::size_t table_entries = 0;
  std::uint8_t* assign = nullptr;
  std::size_t assign_bytes = 0;
};
// Takes the regions and points every chunk's hist, tables and assign into
// them. False when the arena is full.
bool take_enc_plan_slices(StackArena& arena, std::span<EncChunk> chunks, EncPlanRegions& regions);

// The host step between split_hash and encode_blocks: plans every plane of
// c from the histograms split_hash counted, with the CPU encoder's own
// planes::Planner (so the GPU codes with the CPU encoder's choices), and
// writes c.mode, c.table_k, c.table_bytes and, at `tables` and `assign`
// (host copies of c.tables and c.assign), the encoder tables and each
// segment's table. `hist` is a host copy of c.hist.
void plan_chunk(EncChunk& c, const std::uint32_t* hist, EncSym* tables, std::uint8_t* assign,
                planes::Planner& planner);

// The element width and float payload version the kernels decode a
// frame's payload with: a delta frame's is a version 2 float payload of
// the delta codec's width (FORMAT.md 3.1); 0 for what they do not decode.
int dec_codec_width(Codec codec);
int dec_payload_version(Codec codec);

// The record of a frame with header h (raw frames decode at width 1). A
// delta frame's base pointer is the caller's to set.
DecChunk make_dec_chunk(const FrameHeader& h);
// Takes c's work slices, and with stage_io its payload, output and (delta
// frames) base too.
bool take_dec_slices(StackArena& arena, DecChunk& c, bool stage_io);

// Arena bytes a batch takes beyond its chunks' own (the rounding of its two
// record arrays and three plan regions); a chunk's own bytes include its
// records and its share of the regions.
inline constexpr std::size_t kBatchFixedBytes = 5 * kArenaAlign;
// Arena bytes of one chunk in an encode or decode batch.
// delta: coded against a base (its base staged too with stage_io).
std::size_t enc_chunk_device_bytes(std::uint32_t raw_bytes, std::uint32_t width, bool stage_io,
                                   bool delta = false);
std::size_t dec_chunk_device_bytes(const FrameHeader& h, bool stage_io);
// The most any frame of raw_bytes can take in a decode batch (any codec).
std::size_t dec_chunk_worst_device_bytes(std::uint32_t raw_bytes, bool stage_io);
// Pinned staging of one chunk of a host-memory batch: the input, then the
// frame over it (encode); the payload, then the output over it (decode).
std::size_t enc_chunk_pinned_bytes(std::uint32_t raw_bytes);
std::size_t dec_chunk_pinned_bytes(std::uint32_t raw_bytes);

// Device bytes the CUDA context takes when the engine's kernels first run
// on a device of `sms` multiprocessors of `threads_per_sm` threads each.
std::uint64_t context_reserve_bytes(std::uint32_t sms, std::uint32_t threads_per_sm);

struct ChunkNeed {
  std::size_t device_bytes = 0;
  std::size_t pinned_bytes = 0;  // 0: the batch is in device memory
};
struct BatchCaps {
  std::size_t device_bytes = 0;
  std::size_t pinned_bytes = 0;
  std::uint32_t max_chunks = kMaxChunksPerLaunch;
};
struct SubBatch {
  std::size_t first = 0;
  std::size_t count = 0;
  // Staged through the pinned pool; false for a chunk larger than the whole
  // pool, which runs alone and copies from pageable memory.
  bool pinned = false;
};

// Splits chunks `needs` (in order) into consecutive sub-batches that each
// fit: device bytes plus kBatchFixedBytes within caps.device_bytes, at most
// caps.max_chunks chunks (CUDA's gridDim.y), pinned bytes within
// caps.pinned_bytes. ResourceExhausted naming the chunk's index when one
// chunk alone needs more device memory than the cap.
Result<std::vector<SubBatch>> plan_sub_batches(std::span<const ChunkNeed> needs, const BatchCaps& caps);

inline std::uint32_t grid_for(std::uint64_t items, std::uint32_t per_block) {
  const std::uint64_t g = (items + per_block - 1) / per_block;
  return g == 0 ? 1 : static_cast<std::uint32_t>(g);
}

// gridDim.x of each per-chunk-row kernel of a batch (gridDim.y is the chunk).
struct EncGrids {
  std::uint32_t leaf_blocks = 1;      // split_hash: one thread per leaf
  std::uint32_t block_blocks = 1;     // encode_blocks: one warp per (plane, 65536-symbol block)
  std::uint32_t assemble_blocks = 1;  // assemble: one warp per unit (assemble_units)
  std::uint32_t crc_blocks = 1;       // enc_crc: one thread per payload segment
};
EncGrids enc_grids(std::span<const EncChunk> chunks);

struct DecGrids {
  std::uint32_t crc_blocks = 1;    // dec_crc: one thread per payload segment
  std::uint32_t block_blocks = 1;  // decode_blocks: one warp per (plane, version 2 block)
  std::uint32_t fused_blocks = 1;  // decode_fused: one block per tile of 16384 elements
  std::uint32_t leaf_blocks = 1;   // raw_copy_hash: one thread per leaf
};
DecGrids dec_grids(std::span<const DecChunk> chunks);

}  // namespace ferry::gpu
