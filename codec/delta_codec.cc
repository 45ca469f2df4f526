// delta_codec.cc: see delta_codec.h. The transform and its inverse run on
// AVX2 vectors where the CPU has them (chosen at run time; a scalar loop
// elsewhere and for the tails); the float coder does the rest.
#include "codec/delta_codec.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>

#include "base/crc32c.h"
#include "codec/limits.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define FERRY_DELTA_SIMD 1
#endif

namespace ferry {
namespace {

// The sample decides which codings a float chunk gets (FORMAT.md 3.1): the
// delta alone when it is smaller than 15/16 of the chunk alone on the
// sample, the chunk alone when the delta is no smaller on the sample, else
// both and the smaller wins. Chunks no larger than the sample code both.
// Measured on the bench's training run (fp32 master weights and Adam state,
// 10 and 100 steps apart): the whole chunk's delta-to-alone ratio was
// never more than 0.014 above the sample's, so a delta 1/16 ahead on the
// sample is ahead on the chunk; coding both cost half the encode speed of
// the chunks between 7/8 (the margin before) and 15/16.
constexpr std::size_t kDeltaClearWinNum = 15;
constexpr std::size_t kDeltaClearWinDen = 16;
constexpr std::size_t kDeltaSampleMinBytes = 64 * 1024;

// d = a - b (mod 2^bits); negative d (top bit set) gets its other bits
// flipped: sign and magnitude, ones' complement. The float coder's rotation
// by one bit then makes a zigzag code of it, so a small difference of either
// sign has zero high bytes. The fold is its own inverse.
template <typename T>
T fold(T d) {
  constexpr T kMagnitude = static_cast<T>(static_cast<T>(~T{0}) >> 1);
  constexpr int kTopBit = static_cast<int>(sizeof(T) * 8 - 1);
  return static_cast<T>(d ^ (static_cast<T>(0 - static_cast<T>(d >> kTopBit)) & kMagnitude));
}

template <typename T>
void transform_elems(const std::byte* a, const std::byte* b, std::byte* out, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    T x, y;
    std::memcpy(&x, a + i * sizeof(T), sizeof(T));
    std::memcpy(&y, b + i * sizeof(T), sizeof(T));
    x = fold<T>(static_cast<T>(x - y));
    std::memcpy(out + i * sizeof(T), &x, sizeof(T));
  }
}

template <typename T>
void untransform_elems(std::byte* inout, const std::byte* b, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    T x, y;
    std::memcpy(&x, inout + i * sizeof(T), sizeof(T));
    std::memcpy(&y, b + i * sizeof(T), sizeof(T));
    x = static_cast<T>(y + fold<T>(x));
    std::memcpy(inout + i * sizeof(T), &x, sizeof(T));
  }
}

#if FERRY_DELTA_SIMD
// The same steps on whole vectors (GCC does not vectorise the scalar loops
// at -O2). Each returns how many elements it did, a multiple of the
// vector's elements; the scalar loops do the rest. For widths 2 and 4 the
// fold's mask is the arithmetic shift of the sign; bytes have no such
// shift, so their sign comes from a signed compare with zero.
template <int W>
__attribute__((target("avx2"))) inline __m256i fold_avx2(__m256i d) {
  if constexpr (W == 4)
    return _mm256_xor_si256(d, _mm256_and_si256(_mm256_srai_epi32(d, 31), _mm256_set1_epi32(0x7fffffff)));
  if constexpr (W == 2)
    return _mm256_xor_si256(d, _mm256_and_si256(_mm256_srai_epi16(d, 15), _mm256_set1_epi16(0x7fff)));
  return _mm256_xor_si256(
      d, _mm256_and_si256(_mm256_cmpgt_epi8(_mm256_setzero_si256(), d), _mm256_set1_epi8(0x7f)));
}

template <int W>
__attribute__((target("avx2"))) inline __m256i sub_avx2(__m256i a, __m256i b) {
  if constexpr (W == 4) return _mm256_sub_epi32(a, b);
  if constexpr (W == 2) return _mm256_sub_epi16(a, b);
  return _mm256_sub_epi8(a, b);
}

template <int W>
__attribute__((target("avx2"))) inline __m256i add_avx2(__m256i a, __m256i b) {
  if constexpr (W == 4) return _mm256_add_epi32(a, b);
  if constexpr (W == 2) return _mm256_add_epi16(a, b);
  return _mm256_add_epi8(a, b);
}

template <int W>
__attribute__((target("avx2"))) std::size_t transform_avx2(const std::byte* a, const std::byte* b,
                                                           std::byte* out, std::size_t n) {
  constexpr std::size_t kStep = 64 / W;  // two vectors a step
  std::size_t i = 0;
  for (; i + kStep <= n; i += kStep) {
    for (int v = 0; v < 2; ++v) {
      const std::size_t off = i * W + 32 * static_cast<std::size_t>(v);
      __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + off));
      __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + off));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + off), fold_avx2<W>(sub_avx2<W>(x, y)));
    }
  }
  return i;
}

template <int W>
__attribute__((target("avx2"))) std::size_t untransform_avx2(std::byte* inout, const std::byte* b,
                                                             std::size_t n) {
  constexpr std::size_t kStep = 64 / W;
  std::size_t i = 0;
  for (; i + kStep <= n; i += kStep) {
    for (int v = 0; v < 2; ++v) {
      const std::size_t off = i * W + 32 * static_cast<std::size_t>(v);
      __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(inout + off));
      __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + off));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(inout + off), add_avx2<W>(y, fold_avx2<W>(x)));
    }
  }
  return i;
}

bool cpu_has_avx2() {
  static const bool has = __builtin_cpu_supports("avx2");
  return has;
}
#endif

std::atomic<DeltaTransformPath>& transform_path() {
#if FERRY_DELTA_SIMD
  static std::atomic<DeltaTransformPath> path{cpu_has_avx2() ? DeltaTransformPath::kAvx2
                                                             : DeltaTransformPath::kScalar};
#else
  static std::atomic<DeltaTransformPath> path{DeltaTransformPath::kScalar};
#endif
  return path;
}

template <typename T>
void transform_run(const std::byte* a, const std::byte* b, std::byte* out, std::size_t n) {
  std::size_t i = 0;
#if FERRY_DELTA_SIMD
  if (transform_path().load(std::memory_order_relaxed) == DeltaTransformPath::kAvx2)
    i = transform_avx2<sizeof(T)>(a, b, out, n);
#endif
  const std::size_t off = i * sizeof(T);
  transform_elems<T>(a + off, b + off, out + off, n - i);
}

template <typename T>
void untransform_run(std::byte* inout, const std::byte* b, std::size_t n) {
  std::size_t i = 0;
#if FERRY_DELTA_SIMD
  if (transform_path().load(std::memory_order_relaxed) == DeltaTransformPath::kAvx2)
    i = untransform_avx2<sizeof(T)>(inout, b, n);
#endif
  const std::size_t off = i * sizeof(T);
  untransform_elems<T>(inout + off, b + off, n - i);
}

Status delta_error(const FrameHeader& h, const std::string& what) {
  return Status::corruption("chunk " + to_hex(h.chunk_id) + " (delta against base " + to_hex(h.base_id) +
                            "): " + what);
}

}  // namespace

DeltaTransformPath set_delta_transform_path(DeltaTransformPath path) {
#if FERRY_DELTA_SIMD
  if (path == DeltaTransformPath::kAuto)
    path = cpu_has_avx2() ? DeltaTransformPath::kAvx2 : DeltaTransformPath::kScalar;
  if (path == DeltaTransformPath::kAvx2 && !cpu_has_avx2()) path = DeltaTransformPath::kScalar;
#else
  path = DeltaTransformPath::kScalar;
#endif
  transform_path().store(path, std::memory_order_relaxed);
  return path;
}

int delta_element_width(DType dtype, Codec standalone) {
  if (is_float(dtype)) return static_cast<int>(element_bytes(dtype));
  const int w = codec_element_width(standalone);
  return w > 0 ? w : 1;
}

void delta_transform(std::span<const std::byte> chunk, std::span<const std::byte> base, int width,
                     std::span<std::byte> out) {
  FERRY_CHECK(chunk.size() == base.size() && out.size() == chunk.size());
  FERRY_CHECK(width == 1 || width == 2 || width == 4);
  const std::size_t n = chunk.size() / static_cast<std::size_t>(width);
  const std::size_t body = n * static_cast<std::size_t>(width);
  if (width == 4) transform_run<std::uint32_t>(chunk.data(), base.data(), out.data(), n);
  if (width == 2) transform_run<std::uint16_t>(chunk.data(), base.data(), out.data(), n);
  transform_run<std::uint8_t>(chunk.data() + (width == 1 ? 0 : body), base.data() + (width == 1 ? 0 : body),
                              out.data() + (width == 1 ? 0 : body), width == 1 ? n : chunk.size() - body);
}

void delta_untransform(std::span<std::byte> inout, std::span<const std::byte> base, int width) {
  FERRY_CHECK(inout.size() == base.size());
  FERRY_CHECK(width == 1 || width == 2 || width == 4);
  const std::size_t n = inout.size() / static_cast<std::size_t>(width);
  const std::size_t body = n * static_cast<std::size_t>(width);
  if (width == 4) untransform_run<std::uint32_t>(inout.data(), base.data(), n);
  if (width == 2) untransform_run<std::uint16_t>(inout.data(), base.data(), n);
  untransform_run<std::uint8_t>(inout.data() + (width == 1 ? 0 : body), base.data() + (width == 1 ? 0 : body),
                                width == 1 ? n : inout.size() - body);
}

std::span<std::byte> DeltaEncoder::Room::at_least(std::size_t n) {
  if (size < n) {
    bytes = std::make_unique_for_overwrite<std::byte[]>(n);
    size = n;
  }
  return {bytes.get(), n};
}

std::span<const std::byte> DeltaEncoder::code_delta(std::span<const std::byte> chunk,
                                                    std::span<const std::byte> base, int width,
                                                    std::span<std::byte> room) {
  // The difference is made a stretch at a time as the float coder splits
  // it into planes, never stored whole (one pass over the chunk's size fewer).
  const FloatEncoder::StretchFill fill = [&](std::size_t offset, std::span<std::byte> dst) {
    delta_transform(chunk.subspan(offset, dst.size()), base.subspan(offset, dst.size()), width, dst);
  };
  return room.first(floats_.encode_into(chunk.size(), fill, width, room, kFloatPayloadV2));
}

std::span<const std::byte> DeltaEncoder::delta_payload(std::span<const std::byte> chunk,
                                                       std::span<const std::byte> base, int width) {
  return code_delta(chunk, base, width,
                    delta_frame_.at_least(frame_room_bytes(chunk.size())).subspan(kFrameHeaderBytes));
}

DeltaEncoder::Plan DeltaEncoder::plan(std::span<const std::byte> chunk, std::span<const std::byte> base,
                                      int width) {
  if (chunk.size() <= kDeltaSampleMinBytes) return Plan::kBoth;
  gather_codec_choice_sample(chunk, sample_);
  gather_codec_choice_sample(base, sample_base_);  // the same size, so the same pieces
  floats_.encode(sample_, width, payload_, kFloatPayloadV2);
  const std::size_t alone = payload_.size();
  delta_transform(sample_, sample_base_, width, sample_);
  floats_.encode(sample_, width, payload_, kFloatPayloadV2);
  const std::size_t delta = payload_.size();
  if (delta >= alone) return Plan::kAlone;
  if (delta * kDeltaClearWinDen < alone * kDeltaClearWinNum) return Plan::kDelta;
  return Plan::kBoth;
}

bool delta_base_usable(std::size_t chunk_bytes, std::size_t base_bytes, const Digest* id,
                       const Digest& base_id) {
  return base_bytes == chunk_bytes && chunk_bytes > 0 && base_id != Digest{} &&
         (id == nullptr || *id != base_id);
}

DeltaEncoder::Plan DeltaEncoder::plan_codings(std::span<const std::byte> chunk,
                                              std::span<const std::byte> base, DType dtype) {
  // A float chunk is judged on the sample first; a chunk of bytes (unknown
  // layout) needs its standalone codec to know its width, so codes both.
  return is_float(dtype) ? plan(chunk, base, static_cast<int>(element_bytes(dtype))) : Plan::kBoth;
}

EncodedChunk DeltaEncoder::encode(std::span<const std::byte> chunk, DType dtype, const Digest& id,
                                  std::span<const std::byte> base, const Digest& base_id,
                                  std::vector<std::byte>& frame, const EncodeOptions& opts) {
  // Coded in a buffer that is never cleared (a vector would zero what it
  // grows by), then copied into `frame` once. The delta room holds a whole
  // frame, so encode_into codes the delta in place there and needs no other.
  std::span<std::byte> room = delta_frame_.at_least(frame_room_bytes(chunk.size()));
  const EncodedChunk e = encode_into(chunk, dtype, id, base, base_id, room, opts);
  frame.assign(room.begin(), room.begin() + e.frame_bytes);
  return e;
}

EncodedChunk DeltaEncoder::encode_into(std::span<const std::byte> chunk, DType dtype, const Digest& id,
                                       std::span<const std::byte> base, const Digest& base_id,
                                       std::span<std::byte> frame, const EncodeOptions& opts) {
  FERRY_CHECK(frame.size() >= max_frame_bytes(chunk.size()));
  const bool usable = delta_base_usable(chunk.size(), base.size(), &id, base_id);
  const Plan p = usable ? plan_codings(chunk, base, dtype) : Plan::kAlone;
  if (p == Plan::kAlone) return standalone_.encode_into(chunk, dtype, id, frame, opts);

  // When both are coded, the standalone frame goes into a buffer of its own
  // and is copied into `frame` only if it wins.
  EncodedChunk alone;
  std::span<const std::byte> alone_frame;
  std::size_t alone_payload = chunk.size();
  int width = static_cast<int>(element_bytes(dtype));
  if (p == Plan::kBoth) {
    std::span<std::byte> room = alone_frame_.at_least(frame_room_bytes(chunk.size()));
    alone = standalone_.encode_into(chunk, dtype, id, room, opts);
    alone_frame = room.first(alone.frame_bytes);
    alone_payload = alone.frame_bytes - kFrameHeaderBytes;
    width = delta_element_width(dtype, alone.codec);
  } else {
    alone.id = id;
    alone.dtype = dtype;
    alone.raw_bytes = static_cast<std::uint32_t>(chunk.size());
  }
  // The delta payload after the header in `frame` where the coder's bound
  // fits there, else in a room of its own.
  const bool in_place = frame.size() >= frame_room_bytes(chunk.size());
  std::span<const std::byte> payload =
      code_delta(chunk, base, width,
                 in_place ? frame.subspan(kFrameHeaderBytes)
                          : delta_frame_.at_least(frame_room_bytes(chunk.size())).subspan(kFrameHeaderBytes));
  // Strictly smaller than the standalone frame (or, when only the delta was
  // coded, than the chunk), or no delta: a tie keeps the frame that needs no
  // base.
  if (payload.size() >= alone_payload) {
    if (p == Plan::kDelta) return standalone_.encode_into(chunk, dtype, id, frame, opts);
    std::memcpy(frame.data(), alone_frame.data(), alone_frame.size());
    return alone;
  }

  FrameHeader h;
  h.version = kFrameVersionDelta;
  h.codec = delta_codec(width);
  h.dtype = dtype;
  h.raw_bytes = static_cast<std::uint32_t>(chunk.size());
  h.payload_bytes = static_cast<std::uint32_t>(payload.size());
  h.chunk_id = id;
  h.base_id = base_id;
  h.payload_crc = mask_crc(crc32c(payload));
  if (!in_place) std::memcpy(frame.data() + kFrameHeaderBytes, payload.data(), payload.size());
  write_frame_header(h, std::span<std::byte, kFrameHeaderBytes>(frame.data(), kFrameHeaderBytes));

  EncodedChunk e = alone;
  e.codec = h.codec;
  e.frame_bytes = static_cast<std::uint32_t>(kFrameHeaderBytes + payload.size());
  e.base_id = base_id;
  return e;
}

Status DeltaDecoder::decode(std::span<const std::byte> frame, std::span<const std::byte> base,
                            std::span<std::byte> out, const Digest* expected_id, ThreadPool* pool) {
  ASSIGN_OR_RETURN(FrameHeader h, parse_frame_header(frame));
  return decode_verified(h, frame, base, out, expected_id, pool);
}

Status DeltaDecoder::decode_verified(const FrameHeader& h, std::span<const std::byte> frame,
                                     std::span<const std::byte> base, std::span<std::byte> out,
                                     const Digest* expected_id, ThreadPool* pool) {
  if (!is_delta_codec(h.codec)) return plain_.decode_verified(h, frame, out, expected_id, pool);
  FERRY_CHECK(frame.size() == kFrameHeaderBytes + h.payload_bytes);
  if (expected_id != nullptr && *expected_id != h.chunk_id) {
    return delta_error(h, "frame holds a different chunk than expected " + to_hex(*expected_id));
  }
  if (out.size() != h.raw_bytes || base.size() != h.raw_bytes) {
    return Status::invalid_argument("chunk " + to_hex(h.chunk_id) + ": output buffer is " +
                                    std::to_string(out.size()) + " bytes and base " + to_hex(h.base_id) +
                                    " " + std::to_string(base.size()) + " bytes, chunk is " +
                                    std::to_string(h.raw_bytes));
  }
  const int width = delta_codec_width(h.codec);
  Status st = floats_.decode(frame.subspan(kFrameHeaderBytes), width, out, kFloatPayloadV2);
  if (!st.is_ok()) return delta_error(h, std::string(codec_name(h.codec)) + " payload: " + st.message());
  delta_untransform(out, base, width);
  const Digest actual = chunk_id(out, pool);
  if (actual != h.chunk_id) {
    return delta_error(h, "rebuilt bytes hash to " + to_hex(actual) + " (a wrong base or a damaged delta)");
  }
  return Status::ok();
}

Status rebuild_chunk(const FrameHeader& h, std::span<const std::byte> frame, const FrameFetch& fetch,
                     std::vector<std::byte>& out, int depth) {
  thread_local DeltaDecoder decoder;
  out.resize(h.raw_bytes);
  if (!is_delta_codec(h.codec)) return decoder.decode_verified(h, frame, {}, out, &h.chunk_id);
  if (depth >= kMaxDeltaChainFrames) {
    return delta_error(h,
                       "more than " + std::to_string(kMaxDeltaChainFrames) + " frames of deltas to rebuild");
  }
  auto base_frame = fetch(h.base_id);
  if (!base_frame) {
    return base_frame.status().with_context("base " + to_hex(h.base_id) + " of delta chunk " +
                                            to_hex(h.chunk_id));
  }
  auto bh = parse_frame_header(*base_frame);
  if (!bh) return bh.status().with_context("base of delta chunk " + to_hex(h.chunk_id));
  if (bh->chunk_id != h.base_id) {
    return delta_error(h, "fetched base frame holds chunk " + to_hex(bh->chunk_id));
  }
  std::vector<std::byte> base;
  RETURN_IF_ERROR(rebuild_chunk(*bh, *base_frame, fetch, base, depth + 1)
                      .with_context("base of delta chunk " + to_hex(h.chunk_id)));
  return decoder.decode_verified(h, frame, base, out, &h.chunk_id);
}

}  // namespace ferry
