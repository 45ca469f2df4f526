// chunk_codec.h: codes one chunk into one frame and back, choosing the codec
// (docs/FORMAT.md section 3): float chunks use the byte-plane codec unless
// zstd clearly wins on a fixed sample; other chunks use zstd; anything that
// does not shrink is stored raw, so a frame never outgrows its chunk by more
// than the 88-byte header. Decoding validates the header, the payload CRC and
// recomputes the chunk id over the decoded bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "base/status.h"
#include "codec/dtype.h"
#include "codec/float_codec.h"
#include "codec/frame.h"
#include "codec/tree_hash.h"
#include "codec/zstd_codec.h"

namespace ferry {

class ThreadPool;

struct EncodeOptions {
  int zstd_level = kDefaultZstdLevel;
  // Float payload version of planes frames (kFloatPayloadV1 for a CPU
  // reference of the GPU encoder, which writes version 1).
  int float_version = kFloatPayloadV2;
  // Unknown layout (DCP .distcp, raw dumps): pick among planes32/16/8 and
  // zstd by trial on a fixed sample, whatever the dtype tag says.
  bool trial = false;
  // Hash leaves on this pool (large chunks); nullptr hashes on the caller.
  ThreadPool* pool = nullptr;
};

struct EncodedChunk {
  Digest id{};
  Codec codec = Codec::kRaw;
  DType dtype = DType::kBytes;
  std::uint32_t raw_bytes = 0;
  std::uint32_t frame_bytes = 0;  // header + payload
  Digest base_id{};               // set only for a delta frame (codec/delta_codec.h)
};

// The codec a chunk gets (docs/FORMAT.md section 3), judged on a fixed
// sample (a few leaf-aligned pieces spread over the chunk) so it is cheap and
// deterministic. ChunkEncoder uses it, and so does the GPU engine, which codes
// the float payload elsewhere but must make the same choice. The scratch is
// the caller's, one per thread.
struct CodecChoiceScratch {
  ZstdCompressor zstd;
  FloatEncoder floats;
  std::vector<std::byte> buf;
  std::vector<std::byte> sample;  // the gathered pieces
  // When non-zero, the sample was the whole chunk and `buf` holds the chunk's
  // float payload at this element width (an encoder can reuse it).
  int buf_width = 0;
  int buf_version = 0;
  // Version 2 only: when the sample could not tell the chosen codec from
  // this one (within kCloseCallNum/Den), the encoder codes the whole chunk
  // both ways and keeps the smaller; kRaw when the sample was clear.
  Codec runner_up = Codec::kRaw;
  // The sample's zstd frame at the choice's level (bytes).
  std::size_t sample_zstd_bytes = 0;
};
Codec choose_chunk_codec(std::span<const std::byte> chunk, DType dtype, bool trial,
                         CodecChoiceScratch& scratch, int float_version = kFloatPayloadV2);
// Where the choice looks in a chunk of chunk_bytes: up to
// kCodecSamplePieces leaf-aligned [offset, offset + length) pieces, in order;
// one piece covering the whole chunk when it is no larger than the sample.
struct SamplePiece {
  std::size_t offset = 0;
  std::size_t length = 0;
};
inline constexpr std::size_t kCodecSamplePieces = 4;
std::vector<SamplePiece> codec_choice_sample(std::size_t chunk_bytes);
// Those pieces of `chunk` one after another in `out` (replaced): the bytes
// the codec choice (and the delta encoder's) judges.
void gather_codec_choice_sample(std::span<const std::byte> chunk, std::vector<std::byte>& out);

// Largest frame encode() can produce for a chunk of raw_bytes.
constexpr std::size_t max_frame_bytes(std::size_t raw_bytes) { return kFrameHeaderBytes + raw_bytes; }
// A frame buffer of at least this many bytes (a little more than
// max_frame_bytes: the coders' transient bounds) lets encode_into, and so the
// CPU engine, code the payload in place after the header instead of into
// scratch and copying it there. The frame is the same either way.
std::size_t frame_room_bytes(std::size_t raw_bytes);

// Reusable scratch: one encoder per thread; not thread-safe.
class ChunkEncoder {
 public:
  // Codes `chunk` (at most kMaxChunkBytes; FERRY_CHECKed) tagged `dtype` into
  // `frame` (resized to header + payload). Deterministic: the same input and
  // options always give the same bytes.
  EncodedChunk encode(std::span<const std::byte> chunk, DType dtype, std::vector<std::byte>& frame,
                      const EncodeOptions& opts = {});

  // As encode(), with the chunk id already known (computed by the caller,
  // e.g. from leaf hashes shared with the file root).
  EncodedChunk encode_with_id(std::span<const std::byte> chunk, DType dtype, const Digest& id,
                              std::vector<std::byte>& frame, const EncodeOptions& opts = {});

  // As encode_with_id(), into the start of a caller's buffer of at least
  // max_frame_bytes(chunk.size()) bytes (FERRY_CHECKed), so a batch writes
  // each frame where it is wanted; with frame_room_bytes(chunk.size()) the
  // payload is coded there directly, without a copy from scratch.
  EncodedChunk encode_into(std::span<const std::byte> chunk, DType dtype, const Digest& id,
                           std::span<std::byte> frame, const EncodeOptions& opts = {});

  // Whole-chunk codings so far: one per coded chunk, two where the sample
  // left a close call between zstd and the planes, one more for a zstd
  // retry at a higher level. The cost the codec choice is there to avoid.
  std::uint64_t whole_codings() const { return whole_codings_; }

 private:
  // Chooses the codec and codes the payload: in `room` when it holds the
  // chosen coder's bound, else in payload_ (or `chunk` itself when stored raw).
  std::span<const std::byte> code_payload(std::span<const std::byte> chunk, DType dtype,
                                          const EncodeOptions& opts, Codec& codec, std::span<std::byte> room);

  // Codes the whole chunk with `codec` (zstd or planes): in `room` when it
  // holds the coder's bound, else in `scratch`. Empty on failure (zstd out
  // of memory), so the caller stores the chunk raw.
  std::span<const std::byte> code_with(Codec codec, std::span<const std::byte> chunk, int zstd_level,
                                       std::span<std::byte> room, std::vector<std::byte>& scratch);

  // A close call the sample left (choice_.runner_up set) settled on a larger
  // sample: when the planes win clearly there, `codec` becomes the planes
  // and the runner-up is dropped, so the chunk is coded once.
  void settle_close_call(std::span<const std::byte> chunk, Codec& codec);
  // Whether a chunk that ends with zstd is worth coding again at the retry
  // level, judged on the choice's sample.
  bool retry_pays(std::span<const std::byte> chunk);

  CodecChoiceScratch choice_;  // its zstd and float coders code the chunk too
  std::vector<std::byte> settle_sample_;
  std::vector<std::byte> settle_buf_;
  std::uint64_t whole_codings_ = 0;
  std::vector<std::byte> payload_;
  std::vector<std::byte> runner_up_;
};

// Reusable scratch: one decoder per thread; not thread-safe.
class ChunkDecoder {
 public:
  // Decodes `frame` into `out`, which must be exactly the frame's raw_bytes
  // (peek the header with parse_frame_header_only to size it). Validates
  // header and payload CRC, decodes, then recomputes the chunk id and
  // compares it with the header's and with *expected_id when given. Every
  // failure is Corruption naming the chunk id (hex), or "frame header" when
  // the header itself is unreadable; `out` is then unspecified.
  Status decode(std::span<const std::byte> frame, std::span<std::byte> out,
                const Digest* expected_id = nullptr, ThreadPool* pool = nullptr);

  // Convenience: decode into `out`, resized to raw_bytes.
  Status decode(std::span<const std::byte> frame, std::vector<std::byte>& out,
                const Digest* expected_id = nullptr, ThreadPool* pool = nullptr);

  // decode() for a frame whose header the caller has already checked:
  // decodes and recomputes the chunk id, without a second pass of the
  // CRCs over the frame. REQUIRES: parse_frame_header(frame) returned
  // `verified` (a receiver checks a frame's CRCs once and reuses them).
  Status decode_verified(const FrameHeader& verified, std::span<const std::byte> frame,
                         std::span<std::byte> out, const Digest* expected_id = nullptr,
                         ThreadPool* pool = nullptr);

 private:
  ZstdDecompressor zstd_;
  FloatDecoder float_;
};

}  // namespace ferry
