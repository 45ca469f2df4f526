// crc32c.cuh: CRC-32C (Castagnoli) as FERRY_HD functions: a byte-table
// update (the table lives in shared memory on the GPU), the GF(2) "append
// len zero bytes" operator that joins per-segment CRCs computed in parallel
// (zlib's crc32_combine method), and leveldb's mask (docs/FORMAT.md 3).
#pragma once

#include "cuda/hd.cuh"

namespace ferry::gpu {

inline constexpr std::uint32_t kCrcPolyReflected = 0x82f63b78u;
inline constexpr std::uint32_t kCrcMaskDelta = 0xa282ead8u;
// Rows of a GF(2) operator on a 32-bit CRC register (one per bit).
inline constexpr int kCrcMatrixRows = 32;

FERRY_HD std::uint32_t crc_table_entry(std::uint32_t i) {
  std::uint32_t c = i;
  for (int k = 0; k < 8; ++k) c = (c >> 1) ^ ((c & 1u) ? kCrcPolyReflected : 0u);
  return c;
}

// Extends crc (of preceding bytes; 0 to start) over n bytes, as
// ferry::crc32c does.
FERRY_HD std::uint32_t crc32c_update(const std::uint32_t* table, std::uint32_t crc, const std::uint8_t* p,
                                     std::size_t n) {
  crc = ~crc;
  for (std::size_t i = 0; i < n; ++i) crc = (crc >> 8) ^ table[(crc ^ p[i]) & 0xffu];
  return ~crc;
}

FERRY_HD std::uint32_t gf2_times(const std::uint32_t* mat, std::uint32_t vec) {
  std::uint32_t sum = 0;
  for (int i = 0; vec != 0; ++i, vec >>= 1)
    if (vec & 1u) sum ^= mat[i];
  return sum;
}

FERRY_HD void gf2_square(std::uint32_t* square, const std::uint32_t* mat) {
  for (int n = 0; n < 32; ++n) square[n] = gf2_times(mat, mat[n]);
}

// mat := the operator that appends len zero bytes to a (pre/post-inverted)
// CRC's underlying register: crc(A || B) = gf2_times(mat, crc(A)) ^ crc(B)
// when |B| = len.
FERRY_HD void crc32c_shift_matrix(std::uint64_t len, std::uint32_t* mat) {
  std::uint32_t odd[32], even[32];
  odd[0] = kCrcPolyReflected;
  std::uint32_t row = 1;
  for (int n = 1; n < 32; ++n, row <<= 1) odd[n] = row;
  gf2_square(even, odd);                          // 2 zero bits
  gf2_square(odd, even);                          // 4 zero bits
  for (int n = 0; n < 32; ++n) mat[n] = 1u << n;  // identity
  bool use_even = true;
  while (len != 0) {
    std::uint32_t* next = use_even ? even : odd;
    gf2_square(next, use_even ? odd : even);  // 8, 16, 32 ... zero bits
    if (len & 1u) {
      std::uint32_t prod[32];
      for (int n = 0; n < 32; ++n) prod[n] = gf2_times(next, mat[n]);
      for (int n = 0; n < 32; ++n) mat[n] = prod[n];
    }
    len >>= 1;
    use_even = !use_even;
  }
}

// crc(A || B) from crc(A), crc(B) and |B|.
FERRY_HD std::uint32_t crc32c_combine(std::uint32_t crc_a, std::uint32_t crc_b, std::uint64_t len_b) {
  if (len_b == 0) return crc_a;
  std::uint32_t mat[32];
  crc32c_shift_matrix(len_b, mat);
  return gf2_times(mat, crc_a) ^ crc_b;
}

FERRY_HD std::uint32_t mask_crc(std::uint32_t crc) { return ((crc >> 15) | (crc << 17)) + kCrcMaskDelta; }

}  // namespace ferry::gpu
