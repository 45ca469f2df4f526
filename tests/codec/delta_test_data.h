// delta_test_data.h: the fixed chunk and base pairs the delta tests share
// (tests/codec/delta_codec_test.cc and its golden vectors, the GPU delta
// steps' tests in tests/cuda/): a base shaped like weights and a chunk one
// small integer step away in most elements, what an optimizer step does to
// the bits.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "codec/dtype.h"

namespace ferry::testing {

// A fixed generator (not the test helpers), so golden inputs never change.
inline std::uint32_t lcg(std::uint32_t& s) {
  s = s * 1664525u + 1013904223u;
  return s >> 16;
}

// A base of `n` elements of width w shaped like weights (small exponents
// spread, random mantissas), and a chunk that differs from it by a small
// integer step in most elements (what one optimizer step does to the bits).
struct Pair {
  std::vector<std::byte> base, chunk;
};
inline Pair drifted_pair(int w, std::size_t bytes, std::uint32_t seed, int step_max = 40) {
  std::uint32_t s = seed;
  Pair p;
  p.base.resize(bytes);
  p.chunk.resize(bytes);
  const std::size_t n = bytes / static_cast<std::size_t>(w);
  for (std::size_t i = 0; i < n; ++i) {
    std::uint32_t x = 0;
    if (w == 4) x = ((lcg(s) & 1) << 31) | ((118u + (lcg(s) & 7)) << 23) | (lcg(s) << 7);
    if (w == 2) x = ((lcg(s) & 1) << 15) | ((118u + (lcg(s) & 7)) << 7) | (lcg(s) & 0x7f);
    if (w == 1) x = 0x30 + (lcg(s) & 15);
    const int step = static_cast<int>(lcg(s) % (2 * step_max + 1)) - step_max;
    const std::uint32_t y = x + static_cast<std::uint32_t>(w == 4   ? step * 1000
                                                           : w == 2 ? step / 8
                                                                    : step / 16);
    for (int k = 0; k < w; ++k) {
      p.base[i * w + k] = std::byte(x >> (8 * k));
      p.chunk[i * w + k] = std::byte(y >> (8 * k));
    }
  }
  for (std::size_t i = n * w; i < bytes; ++i) {  // the tail
    p.base[i] = std::byte(lcg(s));
    p.chunk[i] = std::byte(static_cast<std::uint8_t>(p.base[i]) + 1);
  }
  return p;
}

inline DType dtype_of_width(int w) { return w == 4 ? DType::kF32 : w == 2 ? DType::kBF16 : DType::kF8E4M3; }

}  // namespace ferry::testing
