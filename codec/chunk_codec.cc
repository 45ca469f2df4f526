// chunk_codec.cc: codec choice, framing and verified decoding of one chunk.
//
// Codec choice is made on a fixed sample so that it is cheap and
// deterministic (the same chunk always gives the same frame, which dedup and
// the golden vectors rely on): the sample is at most kSampleBytes from the
// middle of the chunk, leaf-aligned.
#include "codec/chunk_codec.h"

#include <algorithm>
#include <array>
#include <string>

#include "base/crc32c.h"
#include "codec/limits.h"

namespace ferry {
namespace {

// The sample: kCodecSamplePieces pieces of 16 KiB, spread evenly, so one
// odd region (a sparse tensor, a run of zeros) does not decide alone.
constexpr std::size_t kSamplePieceBytes = 16 * 1024;
constexpr std::size_t kSampleBytes = kCodecSamplePieces * kSamplePieceBytes;
// zstd on the sample is cheap at level 1 and ranks data the same way.
constexpr int kSampleZstdLevel = 1;
// A chunk known to hold floats goes to zstd only when zstd beats the float
// codec on the sample by more than 1/8: the float codec decodes far faster
// (and on the GPU), so zstd has to pay for that; sparse or quantised tensors
// clear this easily.
constexpr std::size_t kZstdWinNum = 7;
constexpr std::size_t kZstdWinDen = 8;
// A chunk of unknown layout (trial) goes to zstd when it beats the best plane
// width by more than 1/32: the sample is small, so the float codec's table
// costs more there than on the whole chunk, and a smaller margin lets zstd
// win wherever it really does (measured on the corpus, docs/BENCHMARKS.md).
constexpr std::size_t kTrialZstdWinNum = 31;
constexpr std::size_t kTrialZstdWinDen = 32;
// Version 2: a chunk of bytes (no float type: integers, quantised weights,
// metadata) tries planes8 on the sample too, and takes it when it beats zstd
// by the trial margin.
// When zstd is within 1/32 of the planes on the sample, the sample cannot
// tell them apart: both code the whole chunk and the smaller wins. The
// margin is narrow because the second coding is costly and rarely wins: on
// the corpus's trial chunks, zstd within 1/16 of version 1 planes on the
// sample (70% of the bytes) never beat version 2 planes on the whole chunk,
// and 1/32 keeps the same sizes with a third of the zstd work
// (docs/BENCHMARKS.md).
constexpr std::size_t kCloseCallNum = 33;
constexpr std::size_t kCloseCallDen = 32;

// Version 2: a chunk that ends with zstd is also coded at this level, and
// the smaller frame wins. The chunks zstd wins are few in checkpoints
// (sparse and quantised tensors, metadata), and level 1 alone left some of
// the corpus's files larger than `zstd -3` of the whole file (a TFJS
// uint8-quantised model, a small ONNX model); level 6 made them smaller, while
// on others (a sparse TFJS model) level 1 stays smaller than any higher one.
constexpr int kZstdRetryLevel = 6;
// ...but only where the sample says the level pays: its level-6 frame at
// least 1/64 smaller than its level-1 frame. Where it does not (on the
// corpus: a uint8-quantised model and a sparse one, 7 MB, where level 6
// saved 306 bytes in all, and lost 10 KB on the sparse one), the retry cost
// as much CPU as a tenth of a push's whole coding.
constexpr std::size_t kZstdRetryPaysNum = 63;
constexpr std::size_t kZstdRetryPaysDen = 64;

// A close call on the sample (or zstd ahead there) is first settled on a
// larger one, before the whole chunk is coded both ways: eight 64 KiB
// pieces. The small sample's planes size is a version 1 payload over four
// 16 KiB pieces, which overstates the planes; on the larger one the planes
// are a version 2 payload. On every contested chunk of the corpus, the
// larger sample's planes-to-zstd ratio was at most 0.6% below the whole
// chunk's (it overstates the planes by up to 5%, their tables weighing more
// on less data), so the planes win outright when they beat zstd on it by
// 1/80; otherwise both code the whole chunk as before. Only for chunks of
// 1 MiB and more, where the larger sample costs at most half of the coding
// it may save (on the corpus, four chunks of 1-2 MiB are then coded once,
// with the same frames).
constexpr std::size_t kSettlePieces = 8;
constexpr std::size_t kSettlePieceBytes = 64 * 1024;
constexpr std::size_t kSettleMinChunkBytes = 2 * kSettlePieces * kSettlePieceBytes;
constexpr std::size_t kSettleWinNum = 79;
constexpr std::size_t kSettleWinDen = 80;

bool close_call(std::size_t winner, std::size_t loser) {
  return loser * kCloseCallDen <= winner * kCloseCallNum;
}

Status chunk_error(const Digest& id, const std::string& what) {
  return Status::corruption("chunk " + to_hex(id) + ": " + what);
}

}  // namespace

namespace {

// `count` pieces of `piece_bytes`, or one covering a chunk no larger. Piece
// i starts at the leaf boundary at or before i/(count-1) of the way to the
// last piece's start, so the first piece opens the chunk and the last one
// ends within a leaf of its end.
std::vector<SamplePiece> spread_pieces(std::size_t chunk_bytes, std::size_t count, std::size_t piece_bytes) {
  if (chunk_bytes <= count * piece_bytes) return {{0, chunk_bytes}};
  std::vector<SamplePiece> pieces(count);
  const std::size_t span = chunk_bytes - piece_bytes;
  for (std::size_t i = 0; i < count; ++i) {
    std::size_t off = span * i / (count - 1);
    pieces[i] = {off - off % kLeafBytes, piece_bytes};
  }
  return pieces;
}

void gather(std::span<const std::byte> chunk, std::span<const SamplePiece> pieces,
            std::vector<std::byte>& out) {
  out.clear();
  for (const SamplePiece& p : pieces) {
    auto piece = chunk.subspan(p.offset, p.length);
    out.insert(out.end(), piece.begin(), piece.end());
  }
}

}  // namespace

std::vector<SamplePiece> codec_choice_sample(std::size_t chunk_bytes) {
  return spread_pieces(chunk_bytes, kCodecSamplePieces, kSamplePieceBytes);
}

void gather_codec_choice_sample(std::span<const std::byte> chunk, std::vector<std::byte>& out) {
  gather(chunk, codec_choice_sample(chunk.size()), out);
}

Codec choose_chunk_codec(std::span<const std::byte> chunk, DType dtype, bool trial,
                         CodecChoiceScratch& scratch, int float_version) {
  scratch.buf_width = 0;
  scratch.buf_version = float_version;
  scratch.runner_up = Codec::kRaw;
  if (chunk.empty()) return Codec::kRaw;
  const bool v2 = float_version == kFloatPayloadV2;
  if (!trial && !is_float(dtype) && !v2) return Codec::kZstd;

  std::span<const std::byte> sample = chunk;
  const bool whole = chunk.size() <= kSampleBytes;
  if (!whole) {
    gather_codec_choice_sample(chunk, scratch.sample);
    sample = scratch.sample;
  }
  Status st = scratch.zstd.compress(sample, kSampleZstdLevel, scratch.buf);
  const std::size_t zstd_size = st.is_ok() ? scratch.buf.size() : sample.size();
  scratch.sample_zstd_bytes = zstd_size;

  // The winner of zstd and planes at `width` on the sample. Version 2 notes
  // a runner-up that codes the whole chunk too: the planes whenever zstd
  // wins (a sample of a few pieces misleads most there: on the corpus, the
  // chunks whose sample favoured zstd by 10% were up to 9% smaller as
  // planes), zstd when the planes win by less than the close-call margin.
  auto decide = [&](bool zstd_wins, int width, std::size_t planes_size) {
    const Codec planes = planes_codec(width, float_version);
    const Codec winner = zstd_wins ? Codec::kZstd : planes;
    if (v2 && (zstd_wins || close_call(planes_size, zstd_size)))
      scratch.runner_up = zstd_wins ? planes : Codec::kZstd;
    return winner;
  };
  if (!trial) {
    const bool bytes = !is_float(dtype);
    const int width = bytes ? 1 : static_cast<int>(element_bytes(dtype));
    scratch.floats.encode(sample, width, scratch.buf, float_version);
    scratch.buf_width = whole ? width : 0;
    const std::size_t planes_size = scratch.buf.size();
    const bool zstd_wins = bytes ? planes_size * kTrialZstdWinDen >= zstd_size * kTrialZstdWinNum
                                 : zstd_size * kZstdWinDen < planes_size * kZstdWinNum;
    return decide(zstd_wins, width, planes_size);
  }

  // Unknown layout: the smallest plane width on the sample (ties go to the
  // wider planes, which keeps the choice deterministic), then zstd if it
  // beats that by the trial margin. Widths are ranked by version 1 payloads
  // in either version: on a sample of 64 KiB, version 2's tables per 16 KiB
  // segment favour the narrow planes (more segments per plane), which the
  // whole chunk then does not bear out (measured on the corpus's TFJS and
  // TFLite files).
  Codec best = Codec::kRaw;
  int best_width = 0;
  std::size_t best_size = 0;
  for (int width : {4, 2, 1}) {
    scratch.floats.encode(sample, width, scratch.buf, kFloatPayloadV1);
    scratch.buf_width = whole ? width : 0;
    scratch.buf_version = kFloatPayloadV1;
    if (best == Codec::kRaw || scratch.buf.size() < best_size) {
      best = planes_codec(width, float_version);
      best_width = width;
      best_size = scratch.buf.size();
    }
  }
  return decide(zstd_size * kTrialZstdWinDen < best_size * kTrialZstdWinNum, best_width, best_size);
}

EncodedChunk ChunkEncoder::encode(std::span<const std::byte> chunk, DType dtype,
                                  std::vector<std::byte>& frame, const EncodeOptions& opts) {
  FERRY_CHECK(chunk.size() <= kMaxChunkBytes);
  return encode_with_id(chunk, dtype, chunk_id(chunk, opts.pool), frame, opts);
}

std::size_t frame_room_bytes(std::size_t raw_bytes) {
  std::size_t payload = std::max(raw_bytes, zstd_compress_bound(raw_bytes));
  for (int width : {1, 2, 4}) payload = std::max(payload, float_encode_bound(raw_bytes, width));
  return kFrameHeaderBytes + payload;
}

std::span<const std::byte> ChunkEncoder::code_with(Codec codec, std::span<const std::byte> chunk,
                                                   int zstd_level, std::span<std::byte> room,
                                                   std::vector<std::byte>& scratch) {
  ++whole_codings_;
  if (codec == Codec::kZstd) {
    // A failed compression (out of memory) is not fatal: the chunk goes raw.
    if (room.size() >= zstd_compress_bound(chunk.size())) {
      Result<std::size_t> n = choice_.zstd.compress_into(chunk, zstd_level, room);
      return n ? room.first(*n) : std::span<const std::byte>();
    }
    if (!choice_.zstd.compress(chunk, zstd_level, scratch).is_ok()) return {};
    return scratch;
  }
  const int width = codec_element_width(codec);
  const int version = codec_payload_version(codec);
  if (choice_.buf_width == width && choice_.buf_version == version) {
    scratch.swap(choice_.buf);  // a chunk no larger than the sample was encoded by the trial
    choice_.buf_width = 0;
    return scratch;
  }
  if (room.size() >= float_encode_bound(chunk.size(), width))
    return room.first(choice_.floats.encode_into(chunk, width, room, version));
  choice_.floats.encode(chunk, width, scratch, version);
  return scratch;
}

void ChunkEncoder::settle_close_call(std::span<const std::byte> chunk, Codec& codec) {
  const Codec planes = codec == Codec::kZstd ? choice_.runner_up : codec;
  gather(chunk, spread_pieces(chunk.size(), kSettlePieces, kSettlePieceBytes), settle_sample_);
  if (!choice_.zstd.compress(settle_sample_, kSampleZstdLevel, settle_buf_).is_ok()) return;
  const std::size_t zstd_size = settle_buf_.size();
  choice_.floats.encode(settle_sample_, codec_element_width(planes), settle_buf_,
                        codec_payload_version(planes));
  if (settle_buf_.size() * kSettleWinDen < zstd_size * kSettleWinNum) {
    codec = planes;
    choice_.runner_up = Codec::kRaw;
  }
}

bool ChunkEncoder::retry_pays(std::span<const std::byte> chunk) {
  if (chunk.size() <= kSampleBytes) return true;  // the sample was the chunk: retrying costs no more
  if (!choice_.zstd.compress(choice_.sample, kZstdRetryLevel, settle_buf_).is_ok()) return false;
  return settle_buf_.size() * kZstdRetryPaysDen <= choice_.sample_zstd_bytes * kZstdRetryPaysNum;
}

std::span<const std::byte> ChunkEncoder::code_payload(std::span<const std::byte> chunk, DType dtype,
                                                      const EncodeOptions& opts, Codec& codec,
                                                      std::span<std::byte> room) {
  FERRY_CHECK(chunk.size() <= kMaxChunkBytes);
  codec = choose_chunk_codec(chunk, dtype, opts.trial, choice_, opts.float_version);
  if (choice_.runner_up != Codec::kRaw && chunk.size() >= kSettleMinChunkBytes)
    settle_close_call(chunk, codec);
  std::span<const std::byte> payload = chunk;
  if (codec != Codec::kRaw) {
    payload = code_with(codec, chunk, opts.zstd_level, room, payload_);
    if (payload.empty()) codec = Codec::kRaw;
  }
  if (codec != Codec::kRaw && choice_.runner_up != Codec::kRaw) {
    // A close call on the sample: the runner-up codes the whole chunk too
    // (into scratch, the winner may be in `room`), and wins only when
    // strictly smaller, so the choice stays deterministic.
    std::span<const std::byte> other = code_with(choice_.runner_up, chunk, opts.zstd_level, {}, runner_up_);
    if (!other.empty() && other.size() < payload.size()) {
      codec = choice_.runner_up;
      payload = other;
    }
  }
  if (codec == Codec::kZstd && opts.float_version == kFloatPayloadV2 && opts.zstd_level < kZstdRetryLevel &&
      retry_pays(chunk)) {
    // Into whichever scratch the payload is not in.
    std::vector<std::byte>& spare = payload.data() == runner_up_.data() ? payload_ : runner_up_;
    std::span<const std::byte> other = code_with(Codec::kZstd, chunk, kZstdRetryLevel, {}, spare);
    if (!other.empty() && other.size() < payload.size()) payload = other;
  }
  if (codec == Codec::kRaw || payload.size() >= chunk.size()) {  // never grow: store raw
    codec = Codec::kRaw;
    payload = chunk;
  }
  return payload;
}

namespace {

// Writes the header and payload at the start of `frame` (room checked by the
// caller) and describes the frame.
EncodedChunk write_frame(std::span<const std::byte> chunk, DType dtype, const Digest& id, Codec codec,
                         std::span<const std::byte> payload, std::span<std::byte> frame) {
  FrameHeader h;
  h.codec = codec;
  h.dtype = dtype;
  h.raw_bytes = static_cast<std::uint32_t>(chunk.size());
  h.payload_bytes = static_cast<std::uint32_t>(payload.size());
  h.chunk_id = id;
  h.payload_crc = mask_crc(crc32c(payload));
  write_frame_header(h, std::span<std::byte, kFrameHeaderBytes>(frame.data(), kFrameHeaderBytes));
  // A payload coded in place is already there.
  if (payload.data() != frame.data() + kFrameHeaderBytes) {
    std::copy(payload.begin(), payload.end(), frame.begin() + kFrameHeaderBytes);
  }

  EncodedChunk e;
  e.id = id;
  e.codec = codec;
  e.dtype = dtype;
  e.raw_bytes = h.raw_bytes;
  e.frame_bytes = static_cast<std::uint32_t>(kFrameHeaderBytes + payload.size());
  return e;
}

}  // namespace

EncodedChunk ChunkEncoder::encode_with_id(std::span<const std::byte> chunk, DType dtype, const Digest& id,
                                          std::vector<std::byte>& frame, const EncodeOptions& opts) {
  Codec codec = Codec::kRaw;
  std::span<const std::byte> payload = code_payload(chunk, dtype, opts, codec, {});
  frame.resize(kFrameHeaderBytes + payload.size());
  return write_frame(chunk, dtype, id, codec, payload, frame);
}

EncodedChunk ChunkEncoder::encode_into(std::span<const std::byte> chunk, DType dtype, const Digest& id,
                                       std::span<std::byte> frame, const EncodeOptions& opts) {
  FERRY_CHECK(frame.size() >= max_frame_bytes(chunk.size()));
  Codec codec = Codec::kRaw;
  std::span<const std::byte> payload =
      code_payload(chunk, dtype, opts, codec, frame.subspan(kFrameHeaderBytes));
  return write_frame(chunk, dtype, id, codec, payload, frame);
}

Status ChunkDecoder::decode(std::span<const std::byte> frame, std::span<std::byte> out,
                            const Digest* expected_id, ThreadPool* pool) {
  ASSIGN_OR_RETURN(FrameHeader h, parse_frame_header(frame));
  return decode_verified(h, frame, out, expected_id, pool);
}

Status ChunkDecoder::decode_verified(const FrameHeader& h, std::span<const std::byte> frame,
                                     std::span<std::byte> out, const Digest* expected_id, ThreadPool* pool) {
  FERRY_CHECK(frame.size() == kFrameHeaderBytes + h.payload_bytes);
  if (expected_id != nullptr && *expected_id != h.chunk_id) {
    return chunk_error(h.chunk_id, "frame holds a different chunk than expected " + to_hex(*expected_id));
  }
  if (out.size() != h.raw_bytes) {
    return Status::invalid_argument("chunk " + to_hex(h.chunk_id) + ": output buffer is " +
                                    std::to_string(out.size()) + " bytes, chunk is " +
                                    std::to_string(h.raw_bytes));
  }
  std::span<const std::byte> payload = frame.subspan(kFrameHeaderBytes);
  switch (h.codec) {
    case Codec::kRaw:
      std::copy(payload.begin(), payload.end(), out.begin());
      break;
    case Codec::kZstd: {
      Status st = zstd_.decompress(payload, out);
      if (!st.is_ok()) return chunk_error(h.chunk_id, st.message());
      break;
    }
    case Codec::kPlanes8:
    case Codec::kPlanes16:
    case Codec::kPlanes32:
    case Codec::kPlanes8V2:
    case Codec::kPlanes16V2:
    case Codec::kPlanes32V2: {
      Status st = float_.decode(payload, codec_element_width(h.codec), out, codec_payload_version(h.codec));
      if (!st.is_ok()) {
        return chunk_error(h.chunk_id, std::string(codec_name(h.codec)) + " payload: " + st.message());
      }
      break;
    }
    case Codec::kDeltaPlanes8:
    case Codec::kDeltaPlanes16:
    case Codec::kDeltaPlanes32:
      // Rebuilding needs the base chunk: codec/delta_codec.h.
      return Status::invalid_argument("chunk " + to_hex(h.chunk_id) + ": a delta frame against base " +
                                      to_hex(h.base_id) + " is decoded with its base");
  }
  Digest actual = chunk_id(out, pool);
  if (actual != h.chunk_id) {
    return chunk_error(h.chunk_id, "decoded bytes hash to " + to_hex(actual));
  }
  return Status::ok();
}

Status ChunkDecoder::decode(std::span<const std::byte> frame, std::vector<std::byte>& out,
                            const Digest* expected_id, ThreadPool* pool) {
  ASSIGN_OR_RETURN(FrameHeader h, parse_frame_header_only(frame));
  // Size the output only for a frame whose length agrees with its header, so
  // a hostile header cannot make us allocate 64 MiB for a short frame; the
  // span overload reports the length mismatch.
  out.resize(frame.size() == kFrameHeaderBytes + h.payload_bytes ? h.raw_bytes : 0);
  return decode(frame, std::span<std::byte>(out), expected_id, pool);
}

}  // namespace ferry
