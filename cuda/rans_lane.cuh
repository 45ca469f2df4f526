// rans_lane.cuh: the float codec's per-lane integer logic as FERRY_HD
// functions (docs/FORMAT.md section 4): the encoder constants and step, the
// decoder step, the warp word layout, and the plane split of one element.
// Each mirrors codec/rans.cc or codec/float_codec.cc exactly;
// tests/cuda/device_logic_test.cc checks them against those on the CPU.
// What a plane is coded with (the plan) is not here: the host makes it with
// the CPU encoder's own planes::Planner (cuda/batch_plan.h: plan_chunk).
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
// Version 2 float payloads (FORMAT.md 4.2): blocks of 65536 symbols, each
// 16384-symbol segment coded with one of up to 16 tables. Version 1 blocks
// (kBlockSymbols) are also the decoder's tile of elements.
inline constexpr std::uint32_t kV2BlockSymbols = 65536;
inline constexpr std::uint32_t kSegmentSymbols = 16384;
inline constexpr std::uint32_t kMaxTables = 16;
inline constexpr std::uint32_t kSampleStride = 16;
// Float payload mode bytes (FORMAT.md 4.1, 4.2).
inline constexpr std::uint8_t kModeRaw = 0;
inline constexpr std::uint8_t kModeCodedV1 = 1;
inline constexpr std::uint8_t kModeCodedV2 = 2;

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
