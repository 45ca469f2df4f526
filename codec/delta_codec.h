// delta_codec.h: delta frames (docs/FORMAT.md section 3.1): a chunk coded
// against a base chunk, the same tensor's chunk in an earlier checkpoint.
// The transform is the element-wise integer difference of the bit patterns,
// folded to sign and magnitude, then coded as a version 2 float payload (the
// byte-plane coder of codec/plane_coder.h, which turns the folded
// difference into a zigzag code by its sign rotation). Measured on a real
// training run (docs/BENCHMARKS.md, "Delta frames"), the difference beats
// the XOR of the two chunks on every tensor class where a delta pays.
//
// The encoder keeps the smaller of the delta and the chunk coded alone, so a
// delta never costs more than no delta. The decoder checks every length,
// rebuilds the chunk from its base and verifies the result against the
// chunk's own id, never only the delta.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "base/status.h"
#include "codec/chunk_codec.h"
#include "codec/float_codec.h"
#include "codec/frame.h"
#include "codec/tree_hash.h"

namespace ferry {

class ThreadPool;

// The element width a delta of this chunk uses: the dtype's for a float
// dtype tag, else the width of the planes codec the chunk got alone (a
// trial on unknown layouts), else 1.
int delta_element_width(DType dtype, Codec standalone);

// The transform, element-wise on width-byte little-endian integers (1, 2, 4);
// the trailing size % width bytes are transformed as 1-byte elements.
// REQUIRES: all three spans have the same size; `out` may alias `chunk`.
void delta_transform(std::span<const std::byte> chunk, std::span<const std::byte> base, int width,
                     std::span<std::byte> out);
// The inverse: rebuilds the chunk in place from the transformed bytes.
// REQUIRES: both spans have the same size.
void delta_untransform(std::span<std::byte> inout, std::span<const std::byte> base, int width);

// Which loop the transform and its inverse run. kAuto picks the widest the
// CPU has; every path gives the same bytes (tests force each in turn).
enum class DeltaTransformPath { kAuto, kScalar, kAvx2 };
// Sets the path for the whole process; a path the CPU lacks falls back to
// scalar. Returns the path now in effect.
DeltaTransformPath set_delta_transform_path(DeltaTransformPath path);

// Whether a chunk may become a delta against this base (FORMAT.md 3.1's
// encoder rule): a base of the same size, a chunk of at least one byte, a
// base id other than zero and other than the chunk's own id (`id` nullptr:
// not known yet; a caller that learns it later must check it then).
bool delta_base_usable(std::size_t chunk_bytes, std::size_t base_bytes, const Digest* id,
                       const Digest& base_id);

// Reusable scratch: one encoder per thread; not thread-safe.
class DeltaEncoder {
 public:
  // Which codings the whole chunk gets (FORMAT.md 3.1): the chunk alone,
  // the delta alone, or both (the smaller wins).
  enum class Plan { kAlone, kDelta, kBoth };

  // The plan encode() follows for a chunk whose base is usable: a float
  // chunk larger than the sample is judged on the codec choice's sample;
  // every other chunk is coded both ways. Reads only the
  // codec_choice_sample(chunk.size()) pieces of `chunk` and `base` (at their
  // offsets), so a caller whose chunk is elsewhere (device memory) may pass
  // buffers holding just those. REQUIRES: chunk.size() == base.size().
  Plan plan_codings(std::span<const std::byte> chunk, std::span<const std::byte> base, DType dtype);

  // Codes `chunk` (id `id`) alone and against `base` (id `base_id`), and
  // writes the smaller frame into `frame`: a version 2 delta frame naming
  // base_id when the delta is strictly smaller, else the standalone frame
  // ChunkEncoder writes. A float chunk is first judged on a sample (FORMAT.md
  // 3.1): where the sample is clear only the winner codes the whole chunk.
  // A base of another size, or one whose id is the chunk's own, gives the
  // standalone frame. Deterministic.
  // REQUIRES: base_id is the chunk id of `base` (the caller hashed what it
  // read); a wrong base id makes a frame that never rebuilds.
  EncodedChunk encode(std::span<const std::byte> chunk, DType dtype, const Digest& id,
                      std::span<const std::byte> base, const Digest& base_id, std::vector<std::byte>& frame,
                      const EncodeOptions& opts = {});
  // The same frame, written at the start of `frame`, which holds at least
  // max_frame_bytes(chunk.size()) bytes (FERRY_CHECKed). With
  // frame_room_bytes(chunk.size()) the delta payload is coded where the
  // frame holds it, so a frame that wins as a delta is never copied (the
  // CPU engine codes into the packer's frame buffers this way).
  EncodedChunk encode_into(std::span<const std::byte> chunk, DType dtype, const Digest& id,
                           std::span<const std::byte> base, const Digest& base_id, std::span<std::byte> frame,
                           const EncodeOptions& opts = {});

  // The delta payload alone (no standalone coding, no header), for
  // measurement: the transformed chunk coded as a float payload.
  std::span<const std::byte> delta_payload(std::span<const std::byte> chunk, std::span<const std::byte> base,
                                           int width);

  // Whole-chunk standalone codings so far (ChunkEncoder::whole_codings):
  // none for a chunk whose sample shows a clear delta.
  std::uint64_t standalone_codings() const { return standalone_.whole_codings(); }

 private:
  // The sample's judgement of a float chunk larger than the sample.
  Plan plan(std::span<const std::byte> chunk, std::span<const std::byte> base, int width);
  // The delta payload coded into `room` (float_encode_bound bytes at least).
  std::span<const std::byte> code_delta(std::span<const std::byte> chunk, std::span<const std::byte> base,
                                        int width, std::span<std::byte> room);

  // A buffer that grows without being cleared (the coders write every
  // byte they hand back).
  struct Room {
    std::unique_ptr<std::byte[]> bytes;
    std::size_t size = 0;
    std::span<std::byte> at_least(std::size_t n);
  };

  ChunkEncoder standalone_;
  FloatEncoder floats_;
  Room delta_frame_;                // header room, then the delta payload (encode()'s whole frame)
  Room alone_frame_;                // the standalone frame, when both are coded
  std::vector<std::byte> payload_;  // the sample's codings
  std::vector<std::byte> sample_, sample_base_;
};

// Reusable scratch: one decoder per thread; not thread-safe.
class DeltaDecoder {
 public:
  // Decodes `frame` into `out` (exactly raw_bytes). A delta frame is rebuilt
  // from `base`, which must be the bytes of the frame's base chunk (exactly
  // raw_bytes; a caller fetches it by the header's base_id); any other frame
  // decodes as ChunkDecoder does and `base` is ignored. Validates the header
  // and payload CRC first, then recomputes the chunk id over the rebuilt
  // bytes and compares it with the header's and with *expected_id. Every
  // failure is Corruption naming the chunk id (and the base id for a delta)
  // or InvalidArgument for a base or output of the wrong size.
  Status decode(std::span<const std::byte> frame, std::span<const std::byte> base, std::span<std::byte> out,
                const Digest* expected_id = nullptr, ThreadPool* pool = nullptr);

  // decode() for a frame whose header and CRCs the caller has already checked.
  // REQUIRES: parse_frame_header(frame) returned `verified`.
  Status decode_verified(const FrameHeader& verified, std::span<const std::byte> frame,
                         std::span<const std::byte> base, std::span<std::byte> out,
                         const Digest* expected_id = nullptr, ThreadPool* pool = nullptr);

 private:
  ChunkDecoder plain_;
  FloatDecoder floats_;
};

// Fetches the frame of a chunk by id (from a store, over the network).
using FrameFetch = std::function<Result<std::vector<std::byte>>(const Digest& id)>;

// Rebuilds the chunk of `frame` (whose header the caller checked: `verified`)
// into `out` (resized to raw_bytes): a standalone frame decodes as is; a
// delta frame's base is fetched by id and rebuilt first, recursively, at
// most kMaxDeltaChainFrames frames in all, and the chunk is verified
// against its own id. A base that cannot be fetched keeps its own status
// with context naming the base and the chunk that needs it; damage is
// Corruption naming the chunk and base. `depth` counts frames read so far.
Status rebuild_chunk(const FrameHeader& verified, std::span<const std::byte> frame, const FrameFetch& fetch,
                     std::vector<std::byte>& out, int depth = 1);

}  // namespace ferry
