// rans.cc: see rans.h. The byte layout of a coded block is FORMAT.md
// section 4: u32 state[32] (final encoder states), then u16 words in the
// order the decoder reads them.
#include "codec/rans.h"

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstring>
#include <string>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define FERRY_RANS_AVX2 1
#endif

namespace ferry::rans {

static_assert(std::endian::native == std::endian::little,
              "the block layout is little-endian and is copied as-is");

namespace {

// log2(v) in Q16, truncated, by the bit-by-bit squaring method: integer only,
// so the cost table is the same everywhere (and on a GPU).
constexpr std::uint32_t log2_q16(std::uint32_t v) {
  int ip = 31 - std::countl_zero(v);
  std::uint64_t y = (static_cast<std::uint64_t>(v) << 30) >> ip;  // v / 2^ip in Q30, [1, 2)
  std::uint32_t r = static_cast<std::uint32_t>(ip) << 16;
  for (int b = 15; b >= 0; --b) {
    y = (y * y) >> 30;
    if (y >= (2ull << 30)) {
      y >>= 1;
      r |= 1u << b;
    }
  }
  return r;
}

constexpr std::array<std::uint32_t, kProbScale + 1> make_cost_table() {
  std::array<std::uint32_t, kProbScale + 1> t{};
  t[0] = 0;  // never used: every present symbol has freq >= 1
  for (std::uint32_t f = 1; f <= kProbScale; ++f) t[f] = (kProbBits << 16) - log2_q16(f);
  return t;
}

constexpr auto kCostQ16 = make_cost_table();
static_assert(kCostQ16[kProbScale] == 0);
static_assert(kCostQ16[1] == (12u << 16));
static_assert(kCostQ16[2048] == (1u << 16));

inline std::uint32_t load_u32(const std::uint8_t* p) {
  std::uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
inline std::uint16_t load_u16(const std::uint8_t* p) {
  std::uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

// The decoder's per-block state: the 32 lane states and the read position
// in the block's words.
struct DecState {
  std::uint32_t x[kLanes];
  const std::uint8_t* words;
  std::size_t nwords;
  std::size_t pos;
  std::size_t done;  // symbols of the block before the current segment
};

#if FERRY_RANS_AVX2
// For a mask of the 8 lanes that need a word, lane i takes word
// popcount(mask & ((1 << i) - 1)) of the 8 words loaded at the read position:
// words are consumed in lane order, exactly as the scalar decoder does.
constexpr std::array<std::array<std::uint32_t, 8>, 256> make_word_perm() {
  std::array<std::array<std::uint32_t, 8>, 256> t{};
  for (std::uint32_t mask = 0; mask < 256; ++mask) {
    std::uint32_t k = 0;
    for (int i = 0; i < 8; ++i) t[mask][i] = (mask >> i) & 1 ? k++ : 0;
  }
  return t;
}
alignas(32) constexpr auto kWordPerm = make_word_perm();

bool cpu_has_avx2() {
  static const bool has = __builtin_cpu_supports("avx2");
  return has;
}

// Decodes whole 32-symbol groups while at least 32 words remain (so the
// 8-word loads stay inside the block), 8 lanes per vector. Returns the
// number of groups done; x and pos are updated for the scalar tail.
__attribute__((target("avx2"))) std::size_t decode_groups_avx2(const std::uint32_t* table, std::uint32_t* x,
                                                               const std::uint8_t* words, std::size_t nwords,
                                                               std::size_t& pos, std::uint8_t* out,
                                                               std::size_t groups) {
  const __m256i m4095 = _mm256_set1_epi32(kProbScale - 1);
  const __m256i one = _mm256_set1_epi32(1);
  const __m256i zero = _mm256_setzero_si256();
  // Low byte of each dword to bytes 0-3 of its 128-bit half, then both
  // halves' 4 bytes to the low 8 bytes.
  const __m256i low_bytes = _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 0,
                                             4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
  const __m256i join = _mm256_setr_epi32(0, 4, 0, 0, 0, 0, 0, 0);
  __m256i X[4];
  for (int v = 0; v < 4; ++v) X[v] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + 8 * v));
  std::size_t gi = 0;
  for (; gi < groups && nwords - pos >= static_cast<std::size_t>(kLanes); ++gi) {
#pragma GCC unroll 4
    for (int v = 0; v < 4; ++v) {
      __m256i slot = _mm256_and_si256(X[v], m4095);
      __m256i e = _mm256_i32gather_epi32(reinterpret_cast<const int*>(table), slot, 4);
      __m256i f = _mm256_add_epi32(_mm256_and_si256(_mm256_srli_epi32(e, 8), m4095), one);
      __m256i xn = _mm256_add_epi32(_mm256_mullo_epi32(f, _mm256_srli_epi32(X[v], kProbBits)),
                                    _mm256_srli_epi32(e, 20));
      __m256i need = _mm256_cmpeq_epi32(_mm256_srli_epi32(xn, 16), zero);
      unsigned mask = static_cast<unsigned>(_mm256_movemask_ps(_mm256_castsi256_ps(need)));
      __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(words + 2 * pos)));
      w = _mm256_permutevar8x32_epi32(
          w, _mm256_load_si256(reinterpret_cast<const __m256i*>(kWordPerm[mask].data())));
      X[v] = _mm256_blendv_epi8(xn, _mm256_or_si256(_mm256_slli_epi32(xn, 16), w), need);
      pos += static_cast<std::size_t>(std::popcount(mask));
      __m256i b = _mm256_permutevar8x32_epi32(_mm256_shuffle_epi8(e, low_bytes), join);
      _mm_storel_epi64(reinterpret_cast<__m128i*>(out + gi * kLanes + 8 * v), _mm256_castsi256_si128(b));
    }
  }
  for (int v = 0; v < 4; ++v) _mm256_storeu_si256(reinterpret_cast<__m256i*>(x + 8 * v), X[v]);
  return gi;
}

// Inverse of kWordPerm for the encoder: the words of the lanes in `mask`,
// in ascending lane order, placed at the top of 8 slots (slots 8 - popcount
// and up), so one 8-word store ending at the stack pointer pushes them.
constexpr std::array<std::array<std::uint32_t, 8>, 256> make_push_perm() {
  std::array<std::array<std::uint32_t, 8>, 256> t{};
  for (std::uint32_t mask = 0; mask < 256; ++mask) {
    std::uint32_t k = 8 - static_cast<std::uint32_t>(std::popcount(mask));
    for (std::uint32_t i = 0; i < 8; ++i)
      if ((mask >> i) & 1) t[mask][k++] = i;
  }
  return t;
}
alignas(32) constexpr auto kPushPerm = make_push_perm();

// Encodes whole groups g = groups-1 .. 0, lanes 31..0 (FORMAT.md's order),
// 8 lanes per vector; bytes identical to the scalar step. The quotient
// x / freq is floor(x * floor(2^32 / freq) / 2^32), which is exact or one
// low, plus a remainder check. Stops early (returning false) once more than
// max_words words exist.
__attribute__((target("avx2"))) bool encode_groups_avx2(const EncTable& table, const std::uint8_t* symbols,
                                                        std::size_t groups, std::uint32_t* x,
                                                        std::uint16_t*& ptr_io, const std::uint16_t* end,
                                                        std::size_t max_words) {
  // A local copy: through the reference every word store could alias the
  // pointer, and the compiler would reload it from memory each step.
  std::uint16_t* ptr = ptr_io;
  const __m256i low13 = _mm256_set1_epi32(0x1fff);
  const __m256i low16 = _mm256_set1_epi32(0xffff);
  const __m256i one = _mm256_set1_epi32(1);
  const int* packed = reinterpret_cast<const int*>(table.packed());
  const int* rcp = reinterpret_cast<const int*>(table.rcp32());
  __m256i X[4];
  for (int v = 0; v < 4; ++v) X[v] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + 8 * v));
  bool fits = true;
  for (std::size_t gi = groups; gi-- > 0;) {
    const std::uint8_t* g = symbols + gi * kLanes;
    for (int v = 3; v >= 0; --v) {
      __m256i s = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(g + 8 * v)));
      __m256i e = _mm256_i32gather_epi32(packed, s, 4);
      __m256i m = _mm256_i32gather_epi32(rcp, s, 4);
      __m256i f = _mm256_and_si256(e, low13);
      __m256i fm1 = _mm256_sub_epi32(f, one);
      __m256i cum = _mm256_srli_epi32(e, 13);
      __m256i xv = X[v];
      // x >= freq << 20  <=>  x >> 20 > freq - 1 (both below 2^12: signed compare is safe)
      __m256i emit = _mm256_cmpgt_epi32(_mm256_srli_epi32(xv, 20), fm1);
      unsigned mask = static_cast<unsigned>(_mm256_movemask_ps(_mm256_castsi256_ps(emit)));
      __m256i w = _mm256_permutevar8x32_epi32(
          _mm256_and_si256(xv, low16),
          _mm256_load_si256(reinterpret_cast<const __m256i*>(kPushPerm[mask].data())));
      __m128i w16 = _mm_packus_epi32(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(ptr - 8), w16);
      ptr -= std::popcount(mask);
      xv = _mm256_blendv_epi8(xv, _mm256_srli_epi32(xv, 16), emit);
      // q = floor(x / f): estimate, then add one where the remainder >= f.
      __m256i lo = _mm256_srli_epi64(_mm256_mul_epu32(xv, m), 32);
      __m256i hi = _mm256_mul_epu32(_mm256_srli_epi64(xv, 32), _mm256_srli_epi64(m, 32));
      __m256i q = _mm256_blend_epi32(lo, hi, 0xaa);
      __m256i r = _mm256_sub_epi32(xv, _mm256_mullo_epi32(q, f));
      __m256i fix = _mm256_cmpgt_epi32(r, fm1);  // r < 2 f <= 8192
      q = _mm256_sub_epi32(q, fix);
      r = _mm256_sub_epi32(r, _mm256_and_si256(fix, f));
      X[v] = _mm256_add_epi32(_mm256_add_epi32(_mm256_slli_epi32(q, kProbBits), r), cum);
    }
    if (static_cast<std::size_t>(end - ptr) > max_words) {
      fits = false;
      break;
    }
  }
  for (int v = 0; v < 4; ++v) _mm256_storeu_si256(reinterpret_cast<__m256i*>(x + 8 * v), X[v]);
  ptr_io = ptr;
  return fits;
}

bool cpu_has_avx512_encoder() {
  static const bool has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vbmi") &&
                          __builtin_cpu_supports("avx512vbmi2");
  return has;
}

// GCC 12 reports its own intrinsics' _mm512_undefined_* pass-through
// operands as maybe-uninitialized; the values are never read.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#define FERRY_AVX512_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512vbmi,avx512vbmi2")))

// The per-symbol constants of 64 symbols, as four vectors of 16 dword lanes
// each (symbols 0-15, 16-31, 32-47, 48-63): e = (freq - 1) | cum << 12 and
// m = rcp32. Gathers are slow on many AVX-512 CPUs; a 256-entry byte table
// is two 128-byte permutes and a blend on the symbol's top bit, and the
// bytes of each field are interleaved into dwords with unpacks.
struct Lookup64 {
  __m512i e[4];
  __m512i m[4];
};

FERRY_AVX512_TARGET inline __m512i lookup_bytes(const std::uint8_t* t, __m512i s, __mmask64 high) {
  const __m512i* v = reinterpret_cast<const __m512i*>(t);
  __m512i lo = _mm512_permutex2var_epi8(_mm512_load_si512(v), s, _mm512_load_si512(v + 1));
  __m512i hi = _mm512_permutex2var_epi8(_mm512_load_si512(v + 2), s, _mm512_load_si512(v + 3));
  return _mm512_mask_blend_epi8(high, lo, hi);
}

// Byte vectors b0..b3 (in the transposed symbol order below) to dwords:
// out[k] lane j holds bytes of symbol 16k + j.
FERRY_AVX512_TARGET inline void bytes_to_dwords(__m512i b0, __m512i b1, __m512i b2, __m512i b3,
                                                __m512i out[4]) {
  __m512i a = _mm512_unpacklo_epi8(b0, b1), b = _mm512_unpackhi_epi8(b0, b1);
  __m512i c = _mm512_unpacklo_epi8(b2, b3), d = _mm512_unpackhi_epi8(b2, b3);
  out[0] = _mm512_unpacklo_epi16(a, c);
  out[1] = _mm512_unpackhi_epi16(a, c);
  out[2] = _mm512_unpacklo_epi16(b, d);
  out[3] = _mm512_unpackhi_epi16(b, d);
}

FERRY_AVX512_TARGET inline void lookup64(const std::uint8_t* tables, __m512i symbols, Lookup64& o) {
  // The unpacks work within 128-bit lanes: dword d of lane L of out[k]
  // comes from byte 16L + 4k + d, so that byte must hold symbol 16k + 4L + d.
  const __m512i transpose =
      _mm512_set_epi8(63, 62, 61, 60, 47, 46, 45, 44, 31, 30, 29, 28, 15, 14, 13, 12, 59, 58, 57, 56, 43, 42,
                      41, 40, 27, 26, 25, 24, 11, 10, 9, 8, 55, 54, 53, 52, 39, 38, 37, 36, 23, 22, 21, 20, 7,
                      6, 5, 4, 51, 50, 49, 48, 35, 34, 33, 32, 19, 18, 17, 16, 3, 2, 1, 0);
  __m512i s = _mm512_permutexvar_epi8(transpose, symbols);
  __mmask64 high = _mm512_movepi8_mask(s);
  const std::size_t n = kAlphabet;
  __m512i e0 = lookup_bytes(tables, s, high);
  __m512i e1 = lookup_bytes(tables + n, s, high);
  __m512i e2 = lookup_bytes(tables + 2 * n, s, high);
  bytes_to_dwords(e0, e1, e2, _mm512_setzero_si512(), o.e);
  __m512i m0 = lookup_bytes(tables + 3 * n, s, high);
  __m512i m1 = lookup_bytes(tables + 4 * n, s, high);
  __m512i m2 = lookup_bytes(tables + 5 * n, s, high);
  __m512i m3 = lookup_bytes(tables + 6 * n, s, high);
  bytes_to_dwords(m0, m1, m2, m3, o.m);
}

// One encoder step on 16 lanes; pushes the words of the emitting lanes in
// ascending lane order just below ptr, as the AVX2 and scalar paths do.
FERRY_AVX512_TARGET inline void step16(__m512i& X, __m512i e, __m512i m, std::uint16_t*& ptr) {
  const __m512i low12 = _mm512_set1_epi32(0xfff);
  const __m512i one = _mm512_set1_epi32(1);
  __m512i fm1 = _mm512_and_si512(e, low12);
  __m512i f = _mm512_add_epi32(fm1, one);
  __m512i cum = _mm512_srli_epi32(e, 12);
  __m512i xv = X;
  // x >= freq << 20  <=>  x >> 20 > freq - 1
  __mmask16 emit = _mm512_cmpgt_epu32_mask(_mm512_srli_epi32(xv, 20), fm1);
  const unsigned count = static_cast<unsigned>(std::popcount(static_cast<unsigned>(emit)));
  __m256i w = _mm256_maskz_compress_epi16(emit, _mm512_cvtepi32_epi16(xv));
  ptr -= count;
  _mm256_mask_storeu_epi16(ptr, static_cast<__mmask16>((1u << count) - 1), w);
  xv = _mm512_mask_srli_epi32(xv, emit, xv, 16);
  // q = floor(x / f): estimate, then add one where the remainder >= f.
  __m512i lo = _mm512_srli_epi64(_mm512_mul_epu32(xv, m), 32);
  __m512i hi = _mm512_mul_epu32(_mm512_srli_epi64(xv, 32), _mm512_srli_epi64(m, 32));
  __m512i q = _mm512_mask_blend_epi32(0xaaaa, lo, hi);
  __m512i r = _mm512_sub_epi32(xv, _mm512_mullo_epi32(q, f));
  __mmask16 fix = _mm512_cmpgt_epu32_mask(r, fm1);  // r < 2 f <= 8192
  q = _mm512_mask_add_epi32(q, fix, q, one);
  r = _mm512_mask_sub_epi32(r, fix, r, f);
  X = _mm512_add_epi32(_mm512_add_epi32(_mm512_slli_epi32(q, kProbBits), r), cum);
}

// Same contract and bytes as encode_groups_avx2, 16 lanes per vector and
// the table looked up 64 symbols (two groups) at a time.
FERRY_AVX512_TARGET bool encode_groups_avx512(const EncTable& table, const std::uint8_t* symbols,
                                              std::size_t groups, std::uint32_t* x, std::uint16_t*& ptr_io,
                                              const std::uint16_t* end, std::size_t max_words) {
  const std::uint8_t* tables = table.byte_tables();
  std::uint16_t* ptr = ptr_io;
  __m512i lanes_lo = _mm512_loadu_si512(x);
  __m512i lanes_hi = _mm512_loadu_si512(x + 16);
  bool fits = true;
  std::size_t gi = groups;
  Lookup64 t;
  if (gi % 2 == 1) {  // the top group alone, so the rest go in pairs
    --gi;
    lookup64(
        tables,
        _mm512_zextsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(symbols + gi * kLanes))),
        t);
    step16(lanes_hi, t.e[1], t.m[1], ptr);
    step16(lanes_lo, t.e[0], t.m[0], ptr);
    fits = static_cast<std::size_t>(end - ptr) <= max_words;
  }
  while (fits && gi >= 2) {
    gi -= 2;
    lookup64(tables, _mm512_loadu_si512(symbols + gi * kLanes), t);
    step16(lanes_hi, t.e[3], t.m[3], ptr);
    step16(lanes_lo, t.e[2], t.m[2], ptr);
    if (static_cast<std::size_t>(end - ptr) > max_words) {
      fits = false;
      break;
    }
    step16(lanes_hi, t.e[1], t.m[1], ptr);
    step16(lanes_lo, t.e[0], t.m[0], ptr);
    fits = static_cast<std::size_t>(end - ptr) <= max_words;
  }
  _mm512_storeu_si512(x, lanes_lo);
  _mm512_storeu_si512(x + 16, lanes_hi);
  ptr_io = ptr;
  return fits;
}

// decode_groups_avx2 on 16 lanes per vector, for B blocks at once: the
// blocks' states are independent, so B of them interleaved keep more
// gathers in flight (one block's 32 lanes alone leave the decoder waiting
// on gather latency; measured on AMD Zen 4, two blocks decode 18% faster
// than one after the other, and one block alone no faster than with AVX2). A lane that needs a word takes the
// next unread one in lane order (vpexpandw), as the scalar decoder does. Decodes whole groups g0, g0 + 1, ...
// while every block has at least 32 words left; returns the number of groups done (the same for all B
// blocks).
template <int B>
FERRY_AVX512_TARGET std::size_t decode_groups_interleaved_avx512(const std::uint32_t* const (&tables)[B],
                                                                 DecState* const (&st)[B],
                                                                 std::uint8_t* const (&out)[B],
                                                                 std::size_t groups) {
  const __m512i m4095 = _mm512_set1_epi32(kProbScale - 1);
  const __m512i one = _mm512_set1_epi32(1);
  const __m512i low = _mm512_set1_epi32(static_cast<int>(kStateLow));
  __m512i X[B][2];
  std::size_t pos[B];
  for (int b = 0; b < B; ++b) {
    X[b][0] = _mm512_loadu_si512(st[b]->x);
    X[b][1] = _mm512_loadu_si512(st[b]->x + 16);
    pos[b] = st[b]->pos;
  }
  auto room = [&] {
    bool ok = true;
    for (int b = 0; b < B; ++b) ok = ok && st[b]->nwords - pos[b] >= static_cast<std::size_t>(kLanes);
    return ok;
  };
  std::size_t gi = 0;
  for (; gi < groups && room(); ++gi) {
#pragma GCC unroll 2
    for (int b = 0; b < B; ++b) {
      const std::uint8_t* words = st[b]->words;
#pragma GCC unroll 2
      for (int h = 0; h < 2; ++h) {
        const __m512i slot = _mm512_and_si512(X[b][h], m4095);
        const __m512i e = _mm512_i32gather_epi32(slot, tables[b], 4);
        const __m512i f = _mm512_add_epi32(_mm512_and_si512(_mm512_srli_epi32(e, 8), m4095), one);
        const __m512i xn = _mm512_add_epi32(_mm512_mullo_epi32(f, _mm512_srli_epi32(X[b][h], kProbBits)),
                                            _mm512_srli_epi32(e, 20));
        const __mmask16 need = _mm512_cmplt_epu32_mask(xn, low);
        const __m256i w16 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(words + 2 * pos[b]));
        const __m512i w = _mm512_cvtepu16_epi32(_mm256_maskz_expand_epi16(need, w16));
        X[b][h] = _mm512_mask_or_epi32(xn, need, _mm512_slli_epi32(xn, 16), w);
        pos[b] += static_cast<std::size_t>(std::popcount(static_cast<unsigned>(need)));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out[b] + gi * kLanes + 16 * h), _mm512_cvtepi32_epi8(e));
      }
    }
  }
  for (int b = 0; b < B; ++b) {
    _mm512_storeu_si512(st[b]->x, X[b][0]);
    _mm512_storeu_si512(st[b]->x + 16, X[b][1]);
    st[b]->pos = pos[b];
  }
  return gi;
}

bool cpu_has_avx512_decoder() {
  static const bool has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vbmi2");
  return has;
}
#undef FERRY_AVX512_TARGET
#pragma GCC diagnostic pop
#endif

// The widest of the CPU's loops at or below `want` (EncodePath and
// DecodePath name the same four).
template <typename Path>
Path resolve_widest(Path want, bool has_avx512) {
#if FERRY_RANS_AVX2
  if ((want == Path::kAuto || want == Path::kAvx512) && has_avx512) return Path::kAvx512;
  if (want != Path::kScalar && cpu_has_avx2()) return Path::kAvx2;
#else
  (void)want;
  (void)has_avx512;
#endif
  return Path::kScalar;
}

#if FERRY_RANS_AVX2
bool avx512_encoder_ok() { return cpu_has_avx512_encoder(); }
bool avx512_decoder_ok() { return cpu_has_avx512_decoder(); }
#else
bool avx512_encoder_ok() { return false; }
bool avx512_decoder_ok() { return false; }
#endif

EncodePath resolve_path(EncodePath want) { return resolve_widest(want, avx512_encoder_ok()); }

std::atomic<EncodePath>& encode_path() {
  static std::atomic<EncodePath> path{resolve_path(EncodePath::kAuto)};
  return path;
}

DecodePath resolve_decode_path(DecodePath want) { return resolve_widest(want, avx512_decoder_ok()); }

std::atomic<DecodePath>& decode_path() {
  static std::atomic<DecodePath> path{resolve_decode_path(DecodePath::kAuto)};
  return path;
}

}  // namespace

DecodePath set_decode_path(DecodePath path) {
  DecodePath got = resolve_decode_path(path);
  decode_path().store(got, std::memory_order_relaxed);
  return got;
}

EncodePath set_encode_path(EncodePath path) {
  EncodePath got = resolve_path(path);
  encode_path().store(got, std::memory_order_relaxed);
  return got;
}

std::uint32_t cost_q16(std::uint32_t freq) {
  FERRY_CHECK(freq >= 1 && freq <= kProbScale);
  return kCostQ16[freq];
}

const std::uint32_t* cost_table_q16() { return kCostQ16.data(); }

void normalize_freqs(const std::uint32_t counts[kAlphabet], std::uint32_t freq[kAlphabet]) {
  std::uint64_t total = 0;
  for (int s = 0; s < kAlphabet; ++s) total += counts[s];
  FERRY_CHECK(total > 0);
  std::int64_t sum = 0;
  int most = 0;  // symbol with the largest count, lowest on ties
  // floor(count * 4096 / total) by a multiply with 1 / total in double
  // precision (the encoder's table builds run this hundreds of times per
  // plane, and a 64-bit division per symbol dominated them): the product is
  // within 2^-40 of the exact quotient (< 4096, from integers < 2^53), so its
  // truncation is the floor or, when the quotient is an exact integer, one
  // below it, which the integer check corrects.
  const double inverse = 1.0 / static_cast<double>(total);
  for (int s = 0; s < kAlphabet; ++s) {
    if (counts[s] == 0) {
      freq[s] = 0;
      continue;
    }
    const std::uint64_t scaled = static_cast<std::uint64_t>(counts[s]) * kProbScale;
    auto f = static_cast<std::uint64_t>(static_cast<double>(scaled) * inverse);
    if ((f + 1) * total <= scaled) ++f;
    freq[s] = f == 0 ? 1 : static_cast<std::uint32_t>(f);
    sum += freq[s];
    if (counts[s] > counts[most]) most = s;
  }
  std::int64_t d = static_cast<std::int64_t>(kProbScale) - sum;
  if (d > 0) freq[most] += static_cast<std::uint32_t>(d);
  while (d < 0) {
    int big = 0;
    for (int s = 1; s < kAlphabet; ++s)
      if (freq[s] > freq[big]) big = s;
    std::int64_t take = std::min<std::int64_t>(-d, freq[big] - 1);
    FERRY_CHECK(take > 0);  // at most 256 symbols, so some freq exceeds 1
    freq[big] -= static_cast<std::uint32_t>(take);
    d += take;
  }
}

std::uint64_t estimate_bits_q16(const std::uint32_t counts[kAlphabet], const std::uint32_t freq[kAlphabet]) {
  std::uint64_t bits = 0;
  for (int s = 0; s < kAlphabet; ++s)
    if (counts[s]) bits += static_cast<std::uint64_t>(counts[s]) * kCostQ16[freq[s]];
  return bits;
}

void EncTable::build(const std::uint32_t freq[kAlphabet]) {
  std::uint32_t cum = 0;
  for (int s = 0; s < kAlphabet; ++s) {
    std::uint32_t f = freq[s];
    EncSymbol& e = sym_[s];
    e.freq = f;
    e.cmpl = kProbScale - f;
    e.renorm_above = static_cast<std::uint32_t>((static_cast<std::uint64_t>(f) << 20) - 1);
    if (f <= 1) {
      e.rcp = ~0ull;
      e.bias = cum + kProbScale - 1;
    } else {
      e.rcp = ~0ull / f + 1;  // ceil(2^64 / f) for every f >= 2 (exact when f is a power of two)
      e.bias = cum;
    }
    packed_[s] = f | (cum << 13);
    rcp32_[s] = f <= 1 ? ~0u : static_cast<std::uint32_t>((1ull << 32) / f);
    // Absent symbols (f == 0) never reach the encoder; their entry is unused.
    const std::uint32_t fc = ((f - 1) & 0xfff) | (cum << 12);
    for (int b = 0; b < 3; ++b) bytes_[b * kAlphabet + s] = static_cast<std::uint8_t>(fc >> (8 * b));
    for (int b = 0; b < 4; ++b)
      bytes_[(3 + b) * kAlphabet + s] = static_cast<std::uint8_t>(rcp32_[s] >> (8 * b));
    cum += f;
  }
  FERRY_CHECK(cum == kProbScale);
}

void DecTable::build(const std::uint32_t freq[kAlphabet]) {
  std::uint32_t cum = 0;
  for (std::uint32_t s = 0; s < kAlphabet; ++s) {
    std::uint32_t f = freq[s];
    for (std::uint32_t i = 0; i < f; ++i) slot_[cum + i] = s | ((f - 1) << 8) | (i << 20);
    cum += f;
  }
  FERRY_CHECK(cum == kProbScale);
}

std::size_t encode_block(const EncTable& table, const std::uint8_t* symbols, std::size_t m,
                         EncScratch& scratch, std::uint8_t* out) {
  const EncSegment seg{&table, symbols, m};
  return encode_segments(std::span(&seg, 1), scratch, out);
}

std::size_t encode_segments(std::span<const EncSegment> segments, EncScratch& scratch, std::uint8_t* out) {
  std::size_t m = 0;
  for (const EncSegment& s : segments) m += s.m;
  FERRY_CHECK(m <= kMaxBlockSymbols);
  // A coded block needs 128 + 2 * words < m bytes, so a block of 128
  // symbols or fewer is always raw.
  if (m <= kStateBytes) return m;
  const std::size_t max_words = (m - kStateBytes - 1) / 2;
  std::uint32_t x[kLanes];
  for (auto& v : x) v = kStateLow;
  std::uint16_t* const end = scratch.words.data() + scratch.words.size();
  std::uint16_t* ptr = end;

  // Branch-free renormalisation: the word is always written below ptr and
  // kept only when the state is too large (at most one word per symbol,
  // since x < 2^32 and the bound is at least 2^20).
  auto step = [&](const EncTable& table, int l, std::uint8_t s) {
    const EncSymbol& e = table[s];
    std::uint32_t v = x[l];
    bool emit = v > e.renorm_above;
    ptr[-1] = static_cast<std::uint16_t>(v);
    ptr -= emit;
    v = emit ? v >> 16 : v;
    std::uint32_t q = EncTable::quotient(v, e);
    x[l] = v + e.bias + q * e.cmpl;
  };

#if FERRY_RANS_AVX2
  const EncodePath path = encode_path().load(std::memory_order_relaxed);
#endif
  // Segments from last to first: the decoder reads them forward.
  for (std::size_t si = segments.size(); si-- > 0;) {
    const EncSegment& seg = segments[si];
    const EncTable& table = *seg.table;
    std::size_t full = seg.m / kLanes;
    const std::size_t rem = seg.m % kLanes;
    FERRY_CHECK(rem == 0 || si + 1 == segments.size());
    if (rem) {
      const std::uint8_t* g = seg.symbols + full * kLanes;
      for (int l = static_cast<int>(rem) - 1; l >= 0; --l) step(table, l, g[l]);
    }
#if FERRY_RANS_AVX2
    if (path == EncodePath::kAvx512) {
      if (!encode_groups_avx512(table, seg.symbols, full, x, ptr, end, max_words)) return m;
      full = 0;
    } else if (path == EncodePath::kAvx2) {
      if (!encode_groups_avx2(table, seg.symbols, full, x, ptr, end, max_words)) return m;
      full = 0;
    }
#endif
    for (std::size_t gi = full; gi-- > 0;) {
      const std::uint8_t* g = seg.symbols + gi * kLanes;
      for (int l = kLanes - 1; l >= 0; --l) step(table, l, g[l]);
      if (static_cast<std::size_t>(end - ptr) > max_words) return m;  // will not pay
    }
  }
  const std::size_t words = static_cast<std::size_t>(end - ptr);
  if (words > max_words) return m;
  std::memcpy(out, x, kStateBytes);
  std::memcpy(out + kStateBytes, ptr, words * 2);
  return kStateBytes + words * 2;
}

Status decode_block(const DecTable& table, const std::uint8_t* in, std::size_t stored, std::uint8_t* out,
                    std::size_t m) {
  const DecSegment seg{&table, out, m};
  return decode_segments(in, stored, std::span(&seg, 1));
}

namespace {

// Reads and checks a block's final encoder states.
Status start_block(const std::uint8_t* in, std::size_t stored, DecState& s) {
  if (stored < kStateBytes || (stored - kStateBytes) % 2 != 0)
    return Status::corruption("coded block of " + std::to_string(stored) + " bytes");
  for (int l = 0; l < kLanes; ++l) {
    s.x[l] = load_u32(in + 4 * l);
    if (s.x[l] < kStateLow)
      return Status::corruption("lane " + std::to_string(l) + " state " + std::to_string(s.x[l]) +
                                " below 2^16");
  }
  s.words = in + kStateBytes;
  s.nwords = (stored - kStateBytes) / 2;
  s.pos = 0;
  s.done = 0;
  return Status::ok();
}

// Decodes one segment of a block from group gi on (the groups before it
// are already done); `last` says whether it is the block's last segment.
Status decode_segment(DecState& s, const DecSegment& seg, bool last, std::size_t gi, DecodePath path) {
  const std::uint32_t* t = seg.table->data();
  std::uint8_t* out = seg.out;
  const std::size_t m = seg.m;
  if (m % kLanes != 0 && !last)
    return Status::internal("decode segment of " + std::to_string(m) + " symbols before the last");
  std::uint32_t* x = s.x;
  const std::uint8_t* words = s.words;
  const std::size_t nwords = s.nwords;
  std::size_t pos = s.pos;
  auto decode_one = [&](int l) -> std::uint32_t {
    std::uint32_t e = t[x[l] & (kProbScale - 1)];
    x[l] = (((e >> 8) & 0xfff) + 1) * (x[l] >> kProbBits) + (e >> 20);
    return e;
  };

  const std::size_t full = m / kLanes;
#if FERRY_RANS_AVX2
  // One block alone runs the AVX2 loop on either vector path: measured,
  // AVX-512 pays only with two blocks interleaved.
  if (path != DecodePath::kScalar && gi < full) {
    gi += decode_groups_avx2(t, x, words, nwords, pos, out + gi * kLanes, full - gi);
  }
#else
  (void)path;
#endif
  // Fast groups: with at least 32 words left no lane can run out, so the
  // word is read unconditionally and kept only when needed.
  for (; gi < full && nwords - pos >= kLanes; ++gi) {
    std::uint8_t* o = out + gi * kLanes;
    for (int l = 0; l < kLanes; ++l) {
      o[l] = static_cast<std::uint8_t>(decode_one(l));
      std::uint32_t w = load_u16(words + 2 * pos);
      bool need = x[l] < kStateLow;
      x[l] = need ? (x[l] << 16) | w : x[l];
      pos += need;
    }
  }
  // Checked tail: the last groups of the segment and any partial group.
  for (std::size_t i = gi * kLanes; i < m; ++i) {
    int l = static_cast<int>(i % kLanes);
    out[i] = static_cast<std::uint8_t>(decode_one(l));
    if (x[l] < kStateLow) {
      if (pos == nwords) return Status::corruption("words exhausted at symbol " + std::to_string(s.done + i));
      x[l] = (x[l] << 16) | load_u16(words + 2 * pos);
      ++pos;
    }
  }
  s.pos = pos;
  s.done += m;
  return Status::ok();
}

// Every word consumed and every lane back at L.
Status finish_block(const DecState& s) {
  if (s.pos != s.nwords) return Status::corruption(std::to_string(s.nwords - s.pos) + " words left unread");
  for (int l = 0; l < kLanes; ++l)
    if (s.x[l] != kStateLow)
      return Status::corruption("lane " + std::to_string(l) + " ends in state " + std::to_string(s.x[l]) +
                                ", not 2^16");
  return Status::ok();
}

}  // namespace

Status decode_segments(const std::uint8_t* in, std::size_t stored, std::span<const DecSegment> segments) {
  DecState s;
  RETURN_IF_ERROR(start_block(in, stored, s));
  const DecodePath path = decode_path().load(std::memory_order_relaxed);
  for (std::size_t si = 0; si < segments.size(); ++si)
    RETURN_IF_ERROR(decode_segment(s, segments[si], si + 1 == segments.size(), 0, path));
  return finish_block(s);
}

Status decode_segments_pair(const DecBlockRef& first, const DecBlockRef& second) {
  const DecodePath path = decode_path().load(std::memory_order_relaxed);
  const DecBlockRef* blocks[2] = {&first, &second};
  DecState s[2];
  for (int b = 0; b < 2; ++b) {
    RETURN_IF_ERROR(start_block(blocks[b]->in, blocks[b]->stored, s[b]));
  }
  const std::size_t segments = std::max(first.segments.size(), second.segments.size());
  for (std::size_t si = 0; si < segments; ++si) {
    std::size_t gi = 0;
#if FERRY_RANS_AVX2
    if (path == DecodePath::kAvx512 && si < first.segments.size() && si < second.segments.size()) {
      const DecSegment& a = first.segments[si];
      const DecSegment& b = second.segments[si];
      DecState* const st[2] = {&s[0], &s[1]};
      std::uint8_t* const o[2] = {a.out, b.out};
      const std::uint32_t* const tables[2] = {a.table->data(), b.table->data()};
      gi = decode_groups_interleaved_avx512<2>(tables, st, o, std::min(a.m, b.m) / kLanes);
    }
#endif
    for (int b = 0; b < 2; ++b) {
      const auto& segs = blocks[b]->segments;
      if (si >= segs.size()) continue;
      RETURN_IF_ERROR(decode_segment(s[b], segs[si], si + 1 == segs.size(), gi, path));
    }
  }
  RETURN_IF_ERROR(finish_block(s[0]));
  return finish_block(s[1]);
}

}  // namespace ferry::rans
