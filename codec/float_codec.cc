// float_codec.cc: see float_codec.h. Splits elements into byte planes,
// decides per plane (integer cost estimate) whether rANS pays, and lays out
// the payload of docs/FORMAT.md section 4; the decoder checks every byte of
// structure before it trusts it.
#include "codec/float_codec.h"

#include "codec/rans_table.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <string>

#if defined(__SSSE3__)
#include <immintrin.h>
#define FERRY_FLOAT_SSE 1
#endif
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define FERRY_FLOAT_AVX512 1
#endif

namespace ferry {

namespace {

using rans::kAlphabet;
using rans::kBlockSymbols;
using rans::kPresentBytes;
using rans::kStateBytes;

// Mantissa planes are first judged on the same sample in both versions
// (FORMAT.md 4.1 and 4.2): only a plane that passes on it gets a full
// histogram.
using planes::kSampleMinSymbols;
using planes::kSampleStride;
// A plane is coded only when the estimate is below 63/64 of its raw size.
constexpr std::uint64_t kPaysNum = 63;
constexpr std::uint64_t kPaysDen = 64;
constexpr std::size_t kMaxTableBytes = kPresentBytes + 2 * kAlphabet;

constexpr std::uint8_t kModeRaw = 0;
constexpr std::uint8_t kModeCoded = 1;    // version 1: one table, 16384-symbol blocks
constexpr std::uint8_t kModeCodedV2 = 2;  // version 2: plane_coder.h

bool valid_width(int w) { return w == 1 || w == 2 || w == 4; }

std::size_t block_count(std::size_t n) { return (n + kBlockSymbols - 1) / kBlockSymbols; }

void put_u16(std::uint8_t* p, std::uint32_t v) {
  auto x = static_cast<std::uint16_t>(v);
  std::memcpy(p, &x, 2);
}
std::uint32_t get_u16(const std::uint8_t* p) {
  std::uint16_t x;
  std::memcpy(&x, p, 2);
  return x;
}

#if FERRY_FLOAT_AVX512
bool cpu_has_avx512_planes() {
  static const bool has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512vbmi") && __builtin_cpu_supports("avx512vbmi2");
  return has;
}

// GCC 12's AVX-512 headers pass _mm512_undefined_epi32() as the unused
// merge source of unmasked intrinsics, which -Wmaybe-uninitialized flags.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// split_planes for widths 2 and 4, 64 elements a step: rotate each element
// (one instruction), then gather bytes with byte permutes, where the SSE
// path needs a dozen shifts, packs and unpacks per 16 elements. Same bytes;
// returns how many elements it split (a multiple of 64).
__attribute__((target("avx512f,avx512bw,avx512vbmi,avx512vbmi2"))) std::size_t split_planes_avx512(
    const std::uint8_t* in, std::size_t n, int w, std::uint8_t* planes, std::size_t stride) {
  std::size_t i = 0;
  if (w == 2) {
    std::uint8_t* p0 = planes;
    std::uint8_t* p1 = planes + stride;
    alignas(64) std::uint8_t hi[64], lo[64];
    for (int j = 0; j < 64; ++j) {
      hi[j] = static_cast<std::uint8_t>(2 * j + 1);  // byte 1 of elements 0..63 of a:b
      lo[j] = static_cast<std::uint8_t>(2 * j);
    }
    const __m512i hi_idx = _mm512_load_si512(hi), lo_idx = _mm512_load_si512(lo);
    for (; i + 64 <= n; i += 64) {
      __m512i a = _mm512_loadu_si512(in + 2 * i);
      __m512i b = _mm512_loadu_si512(in + 2 * i + 64);
      a = _mm512_shldi_epi16(a, a, 1);
      b = _mm512_shldi_epi16(b, b, 1);
      _mm512_storeu_si512(p0 + i, _mm512_permutex2var_epi8(a, hi_idx, b));
      _mm512_storeu_si512(p1 + i, _mm512_permutex2var_epi8(a, lo_idx, b));
    }
  } else if (w == 4) {
    std::uint8_t* p[4] = {planes, planes + stride, planes + 2 * stride, planes + 3 * stride};
    // Within a vector of 16 elements: lane q (16 bytes) = byte 3 - q of each.
    alignas(64) std::uint8_t g[64];
    for (int q = 0; q < 4; ++q) {
      for (int k = 0; k < 16; ++k) g[16 * q + k] = static_cast<std::uint8_t>(4 * k + 3 - q);
    }
    const __m512i gather = _mm512_load_si512(g);
    for (; i + 64 <= n; i += 64) {
      __m512i v[4];
      for (int k = 0; k < 4; ++k) {
        v[k] = _mm512_permutexvar_epi8(gather, _mm512_rol_epi32(_mm512_loadu_si512(in + 4 * i + 64 * k), 1));
      }
      // Transpose the 4x4 lanes: plane q gets lane q of v[0..3].
      __m512i t0 = _mm512_shuffle_i64x2(v[0], v[1], 0x44), t1 = _mm512_shuffle_i64x2(v[0], v[1], 0xee);
      __m512i t2 = _mm512_shuffle_i64x2(v[2], v[3], 0x44), t3 = _mm512_shuffle_i64x2(v[2], v[3], 0xee);
      _mm512_storeu_si512(p[0] + i, _mm512_shuffle_i64x2(t0, t2, 0x88));
      _mm512_storeu_si512(p[1] + i, _mm512_shuffle_i64x2(t0, t2, 0xdd));
      _mm512_storeu_si512(p[2] + i, _mm512_shuffle_i64x2(t1, t3, 0x88));
      _mm512_storeu_si512(p[3] + i, _mm512_shuffle_i64x2(t1, t3, 0xdd));
    }
  }
  return i;
}

// merge_planes for widths 2 and 4, 64 elements a step: the mirror of
// split_planes_avx512 (byte permutes, then one rotate), a few instructions
// per 64 output bytes where the SSE loops need a dozen per 32; decode of
// 4 MiB payloads measured 1-6% faster. Same bytes. Returns how many
// elements it merged (a multiple of 64).
__attribute__((target("avx512f,avx512bw,avx512vbmi,avx512vbmi2"))) std::size_t merge_planes_avx512(
    const std::uint8_t* const* planes, std::size_t n, int w, std::uint8_t* out) {
  std::size_t i = 0;
  if (w == 2) {
    const std::uint8_t* p0 = planes[0];
    const std::uint8_t* p1 = planes[1];
    // Element j of 32: its low byte from plane 1 (table a), high from plane 0 (table b).
    alignas(64) std::uint8_t first[64], second[64];
    for (int j = 0; j < 32; ++j) {
      first[2 * j] = static_cast<std::uint8_t>(j);
      first[2 * j + 1] = static_cast<std::uint8_t>(64 + j);
      second[2 * j] = static_cast<std::uint8_t>(32 + j);
      second[2 * j + 1] = static_cast<std::uint8_t>(96 + j);
    }
    const __m512i first_idx = _mm512_load_si512(first), second_idx = _mm512_load_si512(second);
    for (; i + 64 <= n; i += 64) {
      const __m512i h = _mm512_loadu_si512(p0 + i);
      const __m512i l = _mm512_loadu_si512(p1 + i);
      const __m512i a = _mm512_permutex2var_epi8(l, first_idx, h);
      const __m512i b = _mm512_permutex2var_epi8(l, second_idx, h);
      _mm512_storeu_si512(out + 2 * i, _mm512_shrdi_epi16(a, a, 1));
      _mm512_storeu_si512(out + 2 * i + 64, _mm512_shrdi_epi16(b, b, 1));
    }
  } else if (w == 4) {
    const std::uint8_t* const* p = planes;
    // Within a vector of 16 elements whose lane q (16 bytes) holds plane q:
    // byte b of element j comes from plane 3 - b.
    alignas(64) std::uint8_t g[64];
    for (int j = 0; j < 16; ++j) {
      for (int b = 0; b < 4; ++b) g[4 * j + b] = static_cast<std::uint8_t>(16 * (3 - b) + j);
    }
    const __m512i scatter = _mm512_load_si512(g);
    for (; i + 64 <= n; i += 64) {
      const __m512i q0 = _mm512_loadu_si512(p[0] + i), q1 = _mm512_loadu_si512(p[1] + i);
      const __m512i q2 = _mm512_loadu_si512(p[2] + i), q3 = _mm512_loadu_si512(p[3] + i);
      // Transpose the 4x4 lanes (the split's transpose, its own inverse):
      // vector k gets lane k of each plane.
      const __m512i t0 = _mm512_shuffle_i64x2(q0, q1, 0x44), t1 = _mm512_shuffle_i64x2(q0, q1, 0xee);
      const __m512i t2 = _mm512_shuffle_i64x2(q2, q3, 0x44), t3 = _mm512_shuffle_i64x2(q2, q3, 0xee);
      const __m512i v[4] = {_mm512_shuffle_i64x2(t0, t2, 0x88), _mm512_shuffle_i64x2(t0, t2, 0xdd),
                            _mm512_shuffle_i64x2(t1, t3, 0x88), _mm512_shuffle_i64x2(t1, t3, 0xdd)};
      for (int k = 0; k < 4; ++k) {
        _mm512_storeu_si512(out + 4 * i + 64 * k,
                            _mm512_ror_epi32(_mm512_permutexvar_epi8(scatter, v[k]), 1));
      }
    }
  }
  return i;
}
#pragma GCC diagnostic pop
#endif

// Plane p of element i is byte (w - 1 - p) of the element rotated left by
// one bit (sign to the bottom, exponent in the top byte); plane p starts at
// planes + p * stride (stride >= n: a stretch of elements can be split into
// planes of more).
void split_planes(const std::uint8_t* in, std::size_t n, int w, std::uint8_t* planes, std::size_t stride) {
  std::size_t i = 0;
#if FERRY_FLOAT_AVX512
  if (w > 1 && cpu_has_avx512_planes()) i = split_planes_avx512(in, n, w, planes, stride);
#endif
  if (w == 1) {
    for (; i < n; ++i) planes[i] = static_cast<std::uint8_t>((in[i] << 1) | (in[i] >> 7));
  } else if (w == 2) {
    std::uint8_t* p0 = planes;
    std::uint8_t* p1 = planes + stride;
#if FERRY_FLOAT_SSE
    const __m128i low = _mm_set1_epi16(0xff);
    for (; i + 16 <= n; i += 16) {
      __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + 2 * i));
      __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + 2 * i + 16));
      a = _mm_or_si128(_mm_slli_epi16(a, 1), _mm_srli_epi16(a, 15));
      b = _mm_or_si128(_mm_slli_epi16(b, 1), _mm_srli_epi16(b, 15));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(p0 + i),
                       _mm_packus_epi16(_mm_srli_epi16(a, 8), _mm_srli_epi16(b, 8)));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(p1 + i),
                       _mm_packus_epi16(_mm_and_si128(a, low), _mm_and_si128(b, low)));
    }
#endif
    for (; i < n; ++i) {
      std::uint16_t e;
      std::memcpy(&e, in + 2 * i, 2);
      auto r = static_cast<std::uint16_t>((e << 1) | (e >> 15));
      p0[i] = static_cast<std::uint8_t>(r >> 8);
      p1[i] = static_cast<std::uint8_t>(r);
    }
  } else {
    std::uint8_t* p0 = planes;
    std::uint8_t* p1 = planes + stride;
    std::uint8_t* p2 = planes + 2 * stride;
    std::uint8_t* p3 = planes + 3 * stride;
#if FERRY_FLOAT_SSE
    // Per 16-byte vector gather byte 3, 2, 1, 0 of its four elements into
    // dwords 0..3, then transpose the 4x4 dwords of four vectors.
    const __m128i gather = _mm_setr_epi8(3, 7, 11, 15, 2, 6, 10, 14, 1, 5, 9, 13, 0, 4, 8, 12);
    for (; i + 16 <= n; i += 16) {
      __m128i v[4];
      for (int k = 0; k < 4; ++k) {
        __m128i e = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + 4 * i + 16 * k));
        e = _mm_or_si128(_mm_slli_epi32(e, 1), _mm_srli_epi32(e, 31));
        v[k] = _mm_shuffle_epi8(e, gather);
      }
      __m128i t0 = _mm_unpacklo_epi32(v[0], v[1]), t1 = _mm_unpacklo_epi32(v[2], v[3]);
      __m128i t2 = _mm_unpackhi_epi32(v[0], v[1]), t3 = _mm_unpackhi_epi32(v[2], v[3]);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(p0 + i), _mm_unpacklo_epi64(t0, t1));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(p1 + i), _mm_unpackhi_epi64(t0, t1));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(p2 + i), _mm_unpacklo_epi64(t2, t3));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(p3 + i), _mm_unpackhi_epi64(t2, t3));
    }
#endif
    for (; i < n; ++i) {
      std::uint32_t e;
      std::memcpy(&e, in + 4 * i, 4);
      std::uint32_t r = (e << 1) | (e >> 31);
      p0[i] = static_cast<std::uint8_t>(r >> 24);
      p1[i] = static_cast<std::uint8_t>(r >> 16);
      p2[i] = static_cast<std::uint8_t>(r >> 8);
      p3[i] = static_cast<std::uint8_t>(r);
    }
  }
}

void merge_planes(const std::uint8_t* const* planes, std::size_t n, int w, std::uint8_t* out) {
  std::size_t i = 0;
#if FERRY_FLOAT_AVX512
  if (w > 1 && cpu_has_avx512_planes()) i = merge_planes_avx512(planes, n, w, out);
#endif
  if (w == 1) {
    const std::uint8_t* p0 = planes[0];
    for (; i < n; ++i) out[i] = static_cast<std::uint8_t>((p0[i] >> 1) | (p0[i] << 7));
  } else if (w == 2) {
    const std::uint8_t* p0 = planes[0];
    const std::uint8_t* p1 = planes[1];
#if FERRY_FLOAT_SSE
    for (; i + 16 <= n; i += 16) {
      __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p0 + i));
      __m128i l = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p1 + i));
      __m128i a = _mm_unpacklo_epi8(l, h), b = _mm_unpackhi_epi8(l, h);
      a = _mm_or_si128(_mm_srli_epi16(a, 1), _mm_slli_epi16(a, 15));
      b = _mm_or_si128(_mm_srli_epi16(b, 1), _mm_slli_epi16(b, 15));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 2 * i), a);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 2 * i + 16), b);
    }
#endif
    for (; i < n; ++i) {
      auto r = static_cast<std::uint16_t>((p0[i] << 8) | p1[i]);
      auto e = static_cast<std::uint16_t>((r >> 1) | (r << 15));
      std::memcpy(out + 2 * i, &e, 2);
    }
  } else {
    const std::uint8_t* p0 = planes[0];
    const std::uint8_t* p1 = planes[1];
    const std::uint8_t* p2 = planes[2];
    const std::uint8_t* p3 = planes[3];
#if FERRY_FLOAT_SSE
    // The split's transpose is its own inverse; then put each element's
    // bytes back in order (byte 0 from plane 3 ... byte 3 from plane 0).
    const __m128i scatter = _mm_setr_epi8(12, 8, 4, 0, 13, 9, 5, 1, 14, 10, 6, 2, 15, 11, 7, 3);
    for (; i + 16 <= n; i += 16) {
      __m128i q0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p0 + i));
      __m128i q1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p1 + i));
      __m128i q2 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p2 + i));
      __m128i q3 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p3 + i));
      __m128i t0 = _mm_unpacklo_epi32(q0, q1), t1 = _mm_unpacklo_epi32(q2, q3);
      __m128i t2 = _mm_unpackhi_epi32(q0, q1), t3 = _mm_unpackhi_epi32(q2, q3);
      __m128i v[4] = {_mm_unpacklo_epi64(t0, t1), _mm_unpackhi_epi64(t0, t1), _mm_unpacklo_epi64(t2, t3),
                      _mm_unpackhi_epi64(t2, t3)};
      for (int k = 0; k < 4; ++k) {
        __m128i r = _mm_shuffle_epi8(v[k], scatter);
        r = _mm_or_si128(_mm_srli_epi32(r, 1), _mm_slli_epi32(r, 31));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 4 * i + 16 * k), r);
      }
    }
#endif
    for (; i < n; ++i) {
      std::uint32_t r = (static_cast<std::uint32_t>(p0[i]) << 24) |
                        (static_cast<std::uint32_t>(p1[i]) << 16) | (static_cast<std::uint32_t>(p2[i]) << 8) |
                        p3[i];
      std::uint32_t e = (r >> 1) | (r << 31);
      std::memcpy(out + 4 * i, &e, 4);
    }
  }
}

using planes::estimate_bytes;
using planes::histogram;

// FORMAT.md "When a plane is coded". Fills freq when the answer is yes.
bool plane_pays(const std::uint8_t* plane, std::size_t n, bool mantissa, std::uint32_t freq[kAlphabet]) {
  if (n == 0) return false;
  std::uint32_t counts[kAlphabet];
  if (mantissa && n >= kSampleMinSymbols) {
    histogram(plane, n, kSampleStride, counts);
    std::uint64_t sampled = (n + kSampleStride - 1) / kSampleStride;
    if (estimate_bytes(counts, freq) * kPaysDen >= sampled * kPaysNum) return false;
  }
  histogram(plane, n, 1, counts);
  std::uint64_t k = 0;
  for (int s = 0; s < kAlphabet; ++s) k += counts[s] != 0;
  std::uint64_t blocks = block_count(n);
  std::uint64_t est =
      estimate_bytes(counts, freq) + kPresentBytes + 2 * k + 2 * blocks + kStateBytes * blocks;
  return est * kPaysDen < n * kPaysNum;
}

}  // namespace

std::size_t float_encode_bound(std::size_t raw_bytes, int element_width) {
  if (!valid_width(element_width)) return raw_bytes;
  auto w = static_cast<std::size_t>(element_width);
  std::size_t n = raw_bytes / w;
  // Room in front of the planes for the larger of the two versions' plane
  // headers (see encode_into).
  std::size_t header = std::max(kMaxTableBytes + 2 * block_count(n), planes::header_bound(n));
  return w + w * header + raw_bytes;
}

std::size_t FloatEncoder::encode_plane(const std::uint8_t* plane, std::size_t n, int p, std::uint8_t* out,
                                       std::size_t pos) {
  std::uint32_t freq[kAlphabet];
  if (!plane_pays(plane, n, p != 0, freq)) {
    out[p] = kModeRaw;
    if (n) std::memmove(out + pos, plane, n);  // may overlap: see encode_into
    return pos + n;
  }
  out[p] = kModeCoded;
  if (!words_) words_ = std::make_unique<rans::EncScratch>();
  if (!table_) table_ = std::make_unique<rans::EncTable>();
  table_->build(freq);
  pos += rans::write_table(freq, out + pos);
  const std::size_t blocks = block_count(n);
  std::uint8_t* stored = out + pos;
  pos += 2 * blocks;
  for (std::size_t b = 0; b < blocks; ++b) {
    const std::uint8_t* sym = plane + b * kBlockSymbols;
    std::size_t m = std::min(kBlockSymbols, n - b * kBlockSymbols);
    std::size_t size = rans::encode_block(*table_, sym, m, *words_, out + pos);
    if (size == m) std::memmove(out + pos, sym, m);  // may overlap: see encode_into
    put_u16(stored + 2 * b, static_cast<std::uint32_t>(size));
    pos += size;
  }
  return pos;
}

void FloatEncoder::encode(std::span<const std::byte> in, int element_width, std::vector<std::byte>& out,
                          int version) {
  FERRY_CHECK(valid_width(element_width));
  out.resize(float_encode_bound(in.size(), element_width));
  out.resize(encode_into(in, element_width, out, version));
}

std::size_t FloatEncoder::encode_into(std::span<const std::byte> in, int element_width,
                                      std::span<std::byte> out, int version) {
  return encode_into(in.size(), nullptr, in.data(), element_width, out, version);
}

std::size_t FloatEncoder::encode_into(std::size_t size, const StretchFill& fill, int element_width,
                                      std::span<std::byte> out, int version) {
  return encode_into(size, &fill, nullptr, element_width, out, version);
}

std::size_t FloatEncoder::encode_into(std::size_t size, const StretchFill* fill, const std::byte* in,
                                      int element_width, std::span<std::byte> out, int version) {
  FERRY_CHECK(valid_width(element_width));
  FERRY_CHECK(version == kFloatPayloadV1 || version == kFloatPayloadV2);
  FERRY_CHECK(out.size() >= float_encode_bound(size, element_width));
  const auto w = static_cast<std::size_t>(element_width);
  const std::size_t n = size / w;
  const std::size_t tail = size % w;
  auto* dst = reinterpret_cast<std::uint8_t*>(out.data());
  // The planes are split into the last n * w bytes of `out` and coded from
  // there towards its start, so no scratch the size of the chunk is needed.
  // The bound leaves at least w + w * (the larger plane header of the two
  // versions: table(s), choices, block sizes) bytes in front of them, so the output never passes the input it
  // still has to read: before plane p, pos <= w + (tables and block sizes of planes < p)
  // + p * n <= plane p's start; within it the table and block sizes fit in
  // that slack, and block b's output (at most its m symbols, written only
  // after the block is read) ends no later than block b itself. Raw planes
  // and raw blocks therefore move down with memmove.
  std::uint8_t* planes = dst + out.size() - n * w;
  const std::uint8_t* tail_bytes = nullptr;
  if (fill == nullptr) {
    auto* src = reinterpret_cast<const std::uint8_t*>(in);
    split_planes(src, n, element_width, planes, n);
    tail_bytes = src + n * w;
  } else {
    // A stretch at a time, split while it is still in the cache; the last
    // stretch holds the tail bytes too.
    if (!stretch_) stretch_ = std::make_unique<std::array<std::byte, kFillStretchBytes>>();
    std::uint8_t* buf = reinterpret_cast<std::uint8_t*>(stretch_->data());
    for (std::size_t off = 0; off < size; off += kFillStretchBytes) {
      const std::size_t bytes = std::min(kFillStretchBytes, size - off);
      (*fill)(off, std::span<std::byte>(stretch_->data(), bytes));
      const std::size_t elems = std::min(bytes, n * w - off) / w;
      split_planes(buf, elems, element_width, planes + off / w, n);
      if (off + bytes == size) tail_bytes = buf + elems * w;
    }
  }

  std::size_t pos = w;
  for (std::size_t p = 0; p < w; ++p) {
    const std::uint8_t* plane = planes + p * n;
    if (version == kFloatPayloadV1) {
      pos = encode_plane(plane, n, static_cast<int>(p), dst, pos);
      continue;
    }
    bool coded = false;
    pos = v2_.encode(plane, n, p != 0, dst, pos, &coded);
    dst[p] = coded ? kModeCodedV2 : kModeRaw;
    if (!coded) {
      if (n) std::memmove(dst + pos, plane, n);  // may overlap: see above
      pos += n;
    }
  }
  if (tail) std::memcpy(dst + pos, tail_bytes, tail);
  pos += tail;
  FERRY_CHECK(pos <= out.size());
  return pos;
}

Status FloatDecoder::decode(std::span<const std::byte> payload, int element_width, std::span<std::byte> out,
                            int version) {
  if (version != kFloatPayloadV1 && version != kFloatPayloadV2)
    return Status::invalid_argument("float payload: version " + std::to_string(version) + " is not 1 or 2");
  if (!valid_width(element_width))
    return Status::invalid_argument("float payload: element width " + std::to_string(element_width) +
                                    " is not 1, 2 or 4");
  const auto w = static_cast<std::size_t>(element_width);
  const std::size_t n = out.size() / w;
  const std::size_t tail = out.size() % w;
  const auto* in = reinterpret_cast<const std::uint8_t*>(payload.data());
  const std::size_t size = payload.size();
  auto corrupt = [](std::string what) { return Status::corruption("float payload: " + what); };

  if (size < w) return corrupt("truncated mode bytes");
  std::size_t pos = w;
  const std::uint8_t* plane_at[4] = {};
  for (std::size_t p = 0; p < w; ++p) {
    const std::string where = "plane " + std::to_string(p);
    const std::uint8_t mode = in[p];
    if (mode == kModeRaw) {
      if (size - pos < n) return corrupt(where + ": raw plane truncated");
      plane_at[p] = in + pos;
      pos += n;
      continue;
    }
    const std::uint8_t want = version == kFloatPayloadV1 ? kModeCoded : kModeCodedV2;
    if (mode != want)
      return corrupt(where + ": unknown mode " + std::to_string(mode) + " in a version " +
                     std::to_string(version) + " payload");
    if (n == 0) return corrupt(where + ": coded plane with no symbols");
    if (planes_.size() < n * w) planes_.resize(n * w);
    if (version == kFloatPayloadV2) {
      Status s = v2_.decode(in, size, pos, n, planes_.data() + p * n);
      if (!s.is_ok()) return corrupt(where + ": " + s.message());
      plane_at[p] = planes_.data() + p * n;
      continue;
    }

    // Table: bitmap, then one u16 per present symbol, summing to exactly 4096.
    std::uint32_t freq[kAlphabet];
    if (Status st = rans::read_table(in, size, pos, freq); !st.is_ok())
      return corrupt(where + ": " + st.message());

    const std::size_t blocks = block_count(n);
    if ((size - pos) / 2 < blocks) return corrupt(where + ": truncated block sizes");
    const std::uint8_t* stored = in + pos;
    pos += 2 * blocks;
    // Check every block size against the remaining payload before decoding.
    std::size_t need = 0;
    for (std::size_t b = 0; b < blocks; ++b) {
      std::size_t m = std::min(kBlockSymbols, n - b * kBlockSymbols);
      std::size_t st = get_u16(stored + 2 * b);
      if (st != m && (st > m || st % 2 != 0 || st < kStateBytes))
        return corrupt(where + " block " + std::to_string(b) + ": stored size " + std::to_string(st) +
                       " invalid for " + std::to_string(m) + " symbols");
      need += st;
    }
    if (size - pos < need) return corrupt(where + ": blocks truncated");

    if (planes_.size() < n * w) planes_.resize(n * w);
    if (!table_) table_ = std::make_unique<rans::DecTable>();
    table_->build(freq);
    std::uint8_t* dst = planes_.data() + p * n;
    for (std::size_t b = 0; b < blocks; ++b) {
      std::size_t m = std::min(kBlockSymbols, n - b * kBlockSymbols);
      std::size_t st = get_u16(stored + 2 * b);
      std::uint8_t* o = dst + b * kBlockSymbols;
      if (st == m) {
        std::memcpy(o, in + pos, m);
      } else {
        Status s = rans::decode_block(*table_, in + pos, st, o, m);
        if (!s.is_ok()) return corrupt(where + " block " + std::to_string(b) + ": " + s.message());
      }
      pos += st;
    }
    plane_at[p] = dst;
  }
  if (size - pos != tail)
    return corrupt(std::to_string(size - pos) + " bytes after the planes, expected " + std::to_string(tail) +
                   " tail bytes");
  auto* o = reinterpret_cast<std::uint8_t*>(out.data());
  merge_planes(plane_at, n, element_width, o);
  if (tail) std::memcpy(o + n * w, in + pos, tail);  // never memcpy from a null span
  return Status::ok();
}

Status float_decode(std::span<const std::byte> payload, int element_width, std::span<std::byte> out,
                    int version) {
  FloatDecoder decoder;
  return decoder.decode(payload, element_width, out, version);
}

}  // namespace ferry
