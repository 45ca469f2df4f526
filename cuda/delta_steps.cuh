// delta_steps.cuh: the delta transform of docs/FORMAT.md 3.1 and its
// inverse as FERRY_HD steps, for the encode kernels (split_hash codes the
// transformed chunk: cuda/encode_steps.cuh) and the decode kernels (the
// fused decode rebuilds each byte from the base before it is stored and
// hashed: cuda/decode_steps.cuh). They mirror codec/delta_codec.cc byte for
// byte; tests/cuda/delta_steps_test.cc compares them with it.
#pragma once

#include "cuda/hd.cuh"

namespace ferry::gpu {

// A w-byte little-endian element at p (w = 1, 2 or 4).
FERRY_HD std::uint32_t load_elem(const std::uint8_t* p, std::uint32_t w) {
  std::uint32_t e = 0;
  for (std::uint32_t k = 0; k < w; ++k) e |= static_cast<std::uint32_t>(p[k]) << (8 * k);
  return e;
}

// All-ones in the low 8w bits.
FERRY_HD std::uint32_t elem_mask(std::uint32_t w) { return w >= 4 ? 0xffffffffu : (1u << (8 * w)) - 1u; }

// The fold of a w-byte difference: its other bits flipped when its top bit
// is set (sign and magnitude); its own inverse.
FERRY_HD std::uint32_t delta_fold(std::uint32_t d, std::uint32_t w) {
  const std::uint32_t top = 1u << (8 * w - 1);
  return (d & top) ? d ^ (top - 1u) : d;
}

// Element of the transformed chunk from the chunk's and the base's element.
FERRY_HD std::uint32_t delta_forward(std::uint32_t chunk, std::uint32_t base, std::uint32_t w) {
  return delta_fold((chunk - base) & elem_mask(w), w);
}

// The chunk's element from the transformed one and the base's.
FERRY_HD std::uint32_t delta_inverse(std::uint32_t t, std::uint32_t base, std::uint32_t w) {
  return (base + delta_fold(t, w)) & elem_mask(w);
}

// Byte o of the transformed chunk of raw_bytes bytes (n = raw_bytes / w
// elements, the rest 1-byte elements), read from chunk and base.
FERRY_HD std::uint8_t delta_forward_byte(const std::uint8_t* chunk, const std::uint8_t* base,
                                         std::uint32_t raw_bytes, std::uint32_t w, std::uint32_t o) {
  const std::uint32_t n = raw_bytes / w;
  if (o / w >= n) return static_cast<std::uint8_t>(delta_forward(chunk[o], base[o], 1));
  const std::uint32_t at = o / w * w;
  const std::uint32_t t = delta_forward(load_elem(chunk + at, w), load_elem(base + at, w), w);
  return static_cast<std::uint8_t>(t >> (8 * (o % w)));
}

}  // namespace ferry::gpu
