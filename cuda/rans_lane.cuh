// rans_lane.cuh: the float codec's integer logic as FERRY_HD functions, one
// lane's view (docs/FORMAT.md section 4): the Q16 cost, frequency
// normalisation, the "plane pays" rule, the encoder constants and step, the
// decoder step, the warp word layout, and the plane split of one element.
// Each mirrors codec/rans.cc or codec/float_codec.cc exactly;
// tests/cuda/device_logic_test.cc checks them against those on the CPU.
#pragma once

#include "cuda/hd.cuh"

namespace ferry::gpu {

inline constexpr int kAlphabet = 256;
inline constexpr int kLanes = 32;
inline constexpr std::uint32_t kProbBits = 12;
inline constexpr std::uint32_t kProbScale = 1u << kProbBits;
inline constexpr std::uint32_t kStateLow = 1u << 16;
inline constexpr std::uint32_t kBlockSymbols = 16384;
inline constexpr std::uint32_t kStateBytes = kLanes * 4;
inline constexpr std::uint32_t kPresentBytes = kAlphabet / 8;
// float_codec.cc: sampled pre-check of mantissa planes and the 63/64 rule.
inline constexpr std::uint32_t kSampleStride = 16;
inline constexpr std::uint32_t kSampleMinSymbols = 65536;
inline constexpr std::uint64_t kPaysNum = 63;
inline constexpr std::uint64_t kPaysDen = 64;

// log2(v) in Q16, truncated, bit by bit (rans.cc: log2_q16).
FERRY_HD std::uint32_t log2_q16(std::uint32_t v) {
  int ip = 31 - hd_clz(v);
  std::uint64_t y = (static_cast<std::uint64_t>(v) << 30) >> ip;
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

// -log2(f / 4096) in Q16; f in 1..4096.
FERRY_HD std::uint32_t cost_q16(std::uint32_t f) { return (kProbBits << 16) - log2_q16(f); }

// FORMAT.md "Frequency normalisation". REQUIRES: some count is non-zero.
FERRY_HD void normalize_freqs(const std::uint32_t* counts, std::uint32_t* freq) {
  std::uint64_t total = 0;
  for (int s = 0; s < kAlphabet; ++s) total += counts[s];
  std::int64_t sum = 0;
  int most = 0;
  for (int s = 0; s < kAlphabet; ++s) {
    if (counts[s] == 0) {
      freq[s] = 0;
      continue;
    }
    std::uint64_t f = static_cast<std::uint64_t>(counts[s]) * kProbScale / total;
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
    std::int64_t room = static_cast<std::int64_t>(freq[big]) - 1;
    std::int64_t take = -d < room ? -d : room;
    if (take <= 0) break;  // cannot happen with <= 256 symbols; never loop forever
    freq[big] -= static_cast<std::uint32_t>(take);
    d += take;
  }
}

// Estimated coded bytes: ceil(sum count * cost / 2^19) (float_codec.cc).
FERRY_HD std::uint64_t estimate_bytes(const std::uint32_t* counts, std::uint32_t* freq) {
  normalize_freqs(counts, freq);
  std::uint64_t bits = 0;
  for (int s = 0; s < kAlphabet; ++s)
    if (counts[s]) bits += static_cast<std::uint64_t>(counts[s]) * cost_q16(freq[s]);
  return (bits + (1u << 19) - 1) >> 19;
}

// FORMAT.md "When a plane is coded", given the plane's full histogram and,
// for a mantissa plane of >= 65536 symbols, the histogram of every 16th
// symbol. Fills freq when the answer is yes.
FERRY_HD bool plane_pays(const std::uint32_t* counts, const std::uint32_t* sampled, std::uint64_t n,
                         bool mantissa, std::uint32_t* freq) {
  if (n == 0) return false;
  if (mantissa && n >= kSampleMinSymbols) {
    std::uint64_t samples = (n + kSampleStride - 1) / kSampleStride;
    if (estimate_bytes(sampled, freq) * kPaysDen >= samples * kPaysNum) return false;
  }
  std::uint64_t k = 0;
  for (int s = 0; s < kAlphabet; ++s) k += counts[s] != 0;
  std::uint64_t blocks = (n + kBlockSymbols - 1) / kBlockSymbols;
  std::uint64_t est =
      estimate_bytes(counts, freq) + kPresentBytes + 2 * k + 2 * blocks + kStateBytes * blocks;
  return est * kPaysDen < n * kPaysNum;
}

// Encoder constants of one symbol (rans.h EncSymbol).
struct EncSym {
  std::uint64_t rcp;
  std::uint32_t bias;
  std::uint32_t cmpl;
  std::uint32_t renorm_above;
  std::uint32_t freq;
};

FERRY_HD EncSym make_enc_sym(std::uint32_t f, std::uint32_t cum) {
  EncSym e;
  e.freq = f;
  e.cmpl = kProbScale - f;
  e.renorm_above = static_cast<std::uint32_t>((static_cast<std::uint64_t>(f) << 20) - 1);
  if (f <= 1) {
    e.rcp = ~0ull;
    e.bias = cum + kProbScale - 1;
  } else {
    e.rcp = ~0ull / f + 1;
    e.bias = cum;
  }
  return e;
}

// One encoder step: returns the new state; *emit says whether `*word` (the
// state's low 16 bits before the step) goes to the output.
FERRY_HD std::uint32_t enc_step(std::uint32_t x, const EncSym& e, bool* emit, std::uint16_t* word) {
  *emit = x > e.renorm_above;
  *word = static_cast<std::uint16_t>(x);
  if (*emit) x >>= 16;
  std::uint32_t q = static_cast<std::uint32_t>(hd_mulhi64(x, e.rcp));
  return x + e.bias + q * e.cmpl;
}

// Decoder table entry (rans.h DecTable): bits 0-7 symbol, 8-19 freq - 1,
// 20-31 slot - cum.
FERRY_HD std::uint32_t dec_entry(std::uint32_t sym, std::uint32_t f, std::uint32_t i) {
  return sym | ((f - 1) << 8) | (i << 20);
}

// One decoder step before renormalisation: the new state from an entry.
FERRY_HD std::uint32_t dec_step(std::uint32_t x, std::uint32_t entry) {
  return (((entry >> 8) & 0xfff) + 1) * (x >> kProbBits) + (entry >> 20);
}

// Encoder word layout within a warp: in one group, the lanes that emit
// (bitmask `emits`) write below `end` (exclusive, in words) so that lane 31
// lands highest, as the CPU's lanes 31..0 with a descending pointer do.
FERRY_HD std::uint32_t enc_word_index(std::uint32_t emits, int lane, std::uint32_t end) {
  return end - static_cast<std::uint32_t>(hd_popc(emits & (~0u << lane)));
}

// Decoder word layout within a warp: lanes that need a word (bitmask) read
// them in lane order starting at `pos`.
FERRY_HD std::uint32_t dec_word_index(std::uint32_t needs, int lane, std::uint32_t pos) {
  return pos + static_cast<std::uint32_t>(hd_popc(needs & ((1u << lane) - 1u)));
}

// Element rotated left by one bit (sign to the bottom), width w bytes.
FERRY_HD std::uint32_t rotate_element(std::uint32_t e, int w) {
  if (w == 1) return ((e << 1) | (e >> 7)) & 0xffu;
  if (w == 2) return ((e << 1) | (e >> 15)) & 0xffffu;
  return (e << 1) | (e >> 31);
}
FERRY_HD std::uint32_t unrotate_element(std::uint32_t r, int w) {
  if (w == 1) return ((r >> 1) | (r << 7)) & 0xffu;
  if (w == 2) return ((r >> 1) | (r << 15)) & 0xffffu;
  return (r >> 1) | (r << 31);
}
// Plane p's byte of a rotated element: byte (w - 1 - p).
FERRY_HD std::uint8_t plane_byte(std::uint32_t rotated, int w, int p) {
  return static_cast<std::uint8_t>(rotated >> (8 * (w - 1 - p)));
}

}  // namespace ferry::gpu
