// sha256.cuh: SHA-256 as FERRY_HD functions for the chunk-id tree
// (docs/FORMAT.md section 2): the compression function, a leaf hash that
// pulls its bytes through a caller's word fetcher (global memory, shared
// memory, or planes being merged on chip), and the node hash. The round
// constants are immediates so the same code runs on the GPU without a table.
#pragma once

#include "cuda/hd.cuh"

namespace ferry::gpu {

struct Sha256State {
  std::uint32_t h[8];
};

FERRY_HD void sha256_init(Sha256State& s) {
  s.h[0] = 0x6a09e667u;
  s.h[1] = 0xbb67ae85u;
  s.h[2] = 0x3c6ef372u;
  s.h[3] = 0xa54ff53au;
  s.h[4] = 0x510e527fu;
  s.h[5] = 0x9b05688cu;
  s.h[6] = 0x1f83d9abu;
  s.h[7] = 0x5be0cd19u;
}

FERRY_HD std::uint32_t sha_rotr(std::uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

// Compresses one 64-byte block given as 16 big-endian words (clobbered).
FERRY_HD void sha256_compress(Sha256State& s, std::uint32_t w[16]) {
  std::uint32_t a = s.h[0], b = s.h[1], c = s.h[2], d = s.h[3];
  std::uint32_t e = s.h[4], f = s.h[5], g = s.h[6], h = s.h[7];
#define FERRY_SHA_ROUND(t, k)                                                                                \
  {                                                                                                          \
    if ((t) >= 16) {                                                                                         \
      std::uint32_t w15 = w[((t)-15) & 15], w2 = w[((t)-2) & 15];                                            \
      w[(t)&15] += (sha_rotr(w15, 7) ^ sha_rotr(w15, 18) ^ (w15 >> 3)) + w[((t)-7) & 15] +                   \
                   (sha_rotr(w2, 17) ^ sha_rotr(w2, 19) ^ (w2 >> 10));                                       \
    }                                                                                                        \
    std::uint32_t t1 =                                                                                       \
        h + (sha_rotr(e, 6) ^ sha_rotr(e, 11) ^ sha_rotr(e, 25)) + ((e & f) ^ (~e & g)) + (k) + w[(t)&15];   \
    std::uint32_t t2 = (sha_rotr(a, 2) ^ sha_rotr(a, 13) ^ sha_rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c)); \
    h = g;                                                                                                   \
    g = f;                                                                                                   \
    f = e;                                                                                                   \
    e = d + t1;                                                                                              \
    d = c;                                                                                                   \
    c = b;                                                                                                   \
    b = a;                                                                                                   \
    a = t1 + t2;                                                                                             \
  }
  FERRY_SHA_ROUND(0, 0x428a2f98u);
  FERRY_SHA_ROUND(1, 0x71374491u);
  FERRY_SHA_ROUND(2, 0xb5c0fbcfu);
  FERRY_SHA_ROUND(3, 0xe9b5dba5u);
  FERRY_SHA_ROUND(4, 0x3956c25bu);
  FERRY_SHA_ROUND(5, 0x59f111f1u);
  FERRY_SHA_ROUND(6, 0x923f82a4u);
  FERRY_SHA_ROUND(7, 0xab1c5ed5u);
  FERRY_SHA_ROUND(8, 0xd807aa98u);
  FERRY_SHA_ROUND(9, 0x12835b01u);
  FERRY_SHA_ROUND(10, 0x243185beu);
  FERRY_SHA_ROUND(11, 0x550c7dc3u);
  FERRY_SHA_ROUND(12, 0x72be5d74u);
  FERRY_SHA_ROUND(13, 0x80deb1feu);
  FERRY_SHA_ROUND(14, 0x9bdc06a7u);
  FERRY_SHA_ROUND(15, 0xc19bf174u);
  FERRY_SHA_ROUND(16, 0xe49b69c1u);
  FERRY_SHA_ROUND(17, 0xefbe4786u);
  FERRY_SHA_ROUND(18, 0x0fc19dc6u);
  FERRY_SHA_ROUND(19, 0x240ca1ccu);
  FERRY_SHA_ROUND(20, 0x2de92c6fu);
  FERRY_SHA_ROUND(21, 0x4a7484aau);
  FERRY_SHA_ROUND(22, 0x5cb0a9dcu);
  FERRY_SHA_ROUND(23, 0x76f988dau);
  FERRY_SHA_ROUND(24, 0x983e5152u);
  FERRY_SHA_ROUND(25, 0xa831c66du);
  FERRY_SHA_ROUND(26, 0xb00327c8u);
  FERRY_SHA_ROUND(27, 0xbf597fc7u);
  FERRY_SHA_ROUND(28, 0xc6e00bf3u);
  FERRY_SHA_ROUND(29, 0xd5a79147u);
  FERRY_SHA_ROUND(30, 0x06ca6351u);
  FERRY_SHA_ROUND(31, 0x14292967u);
  FERRY_SHA_ROUND(32, 0x27b70a85u);
  FERRY_SHA_ROUND(33, 0x2e1b2138u);
  FERRY_SHA_ROUND(34, 0x4d2c6dfcu);
  FERRY_SHA_ROUND(35, 0x53380d13u);
  FERRY_SHA_ROUND(36, 0x650a7354u);
  FERRY_SHA_ROUND(37, 0x766a0abbu);
  FERRY_SHA_ROUND(38, 0x81c2c92eu);
  FERRY_SHA_ROUND(39, 0x92722c85u);
  FERRY_SHA_ROUND(40, 0xa2bfe8a1u);
  FERRY_SHA_ROUND(41, 0xa81a664bu);
  FERRY_SHA_ROUND(42, 0xc24b8b70u);
  FERRY_SHA_ROUND(43, 0xc76c51a3u);
  FERRY_SHA_ROUND(44, 0xd192e819u);
  FERRY_SHA_ROUND(45, 0xd6990624u);
  FERRY_SHA_ROUND(46, 0xf40e3585u);
  FERRY_SHA_ROUND(47, 0x106aa070u);
  FERRY_SHA_ROUND(48, 0x19a4c116u);
  FERRY_SHA_ROUND(49, 0x1e376c08u);
  FERRY_SHA_ROUND(50, 0x2748774cu);
  FERRY_SHA_ROUND(51, 0x34b0bcb5u);
  FERRY_SHA_ROUND(52, 0x391c0cb3u);
  FERRY_SHA_ROUND(53, 0x4ed8aa4au);
  FERRY_SHA_ROUND(54, 0x5b9cca4fu);
  FERRY_SHA_ROUND(55, 0x682e6ff3u);
  FERRY_SHA_ROUND(56, 0x748f82eeu);
  FERRY_SHA_ROUND(57, 0x78a5636fu);
  FERRY_SHA_ROUND(58, 0x84c87814u);
  FERRY_SHA_ROUND(59, 0x8cc70208u);
  FERRY_SHA_ROUND(60, 0x90befffau);
  FERRY_SHA_ROUND(61, 0xa4506cebu);
  FERRY_SHA_ROUND(62, 0xbef9a3f7u);
  FERRY_SHA_ROUND(63, 0xc67178f2u);
#undef FERRY_SHA_ROUND
  s.h[0] += a;
  s.h[1] += b;
  s.h[2] += c;
  s.h[3] += d;
  s.h[4] += e;
  s.h[5] += f;
  s.h[6] += g;
  s.h[7] += h;
}

// Message word j (big-endian, bytes 4j..4j+3) of `prefix || data` where the
// data's big-endian words are cur = data word j, prev = data word j - 1,
// masked past the message end (total bytes) and with the 0x80 pad byte.
FERRY_HD std::uint32_t sha_pad_word(std::uint32_t word, std::uint64_t j, std::uint64_t total) {
  std::int64_t keep = static_cast<std::int64_t>(total) - static_cast<std::int64_t>(4 * j);
  if (keep >= 4) return word;
  if (keep <= 0)
    word = 0;
  else
    word &= ~0u << (32 - 8 * keep);
  if (keep >= 0 && keep < 4) word |= 0x80u << (24 - 8 * keep);
  return word;
}

// SHA-256(prefix || data[0..len)), where fetch(i) returns the big-endian
// word of data bytes [4i, 4i + 4) and is called only for 4i < len (bytes at
// or past len may hold anything; they are masked).
template <typename Fetch>
FERRY_HD void sha256_prefixed(std::uint8_t prefix, std::uint32_t len, Fetch&& fetch,
                              std::uint8_t digest[32]) {
  Sha256State s;
  sha256_init(s);
  const std::uint64_t total = static_cast<std::uint64_t>(len) + 1;
  const std::uint64_t blocks = (total + 9 + 63) / 64;  // room for 0x80 and the length
  std::uint32_t prev = prefix;                         // its low byte is the byte before data word 0
  const std::uint32_t data_words = (len + 3) / 4;
  std::uint32_t next_word = 0;  // index of the data word to fetch next
  for (std::uint64_t bl = 0; bl < blocks; ++bl) {
    std::uint32_t w[16];
    for (int t = 0; t < 16; ++t) {
      std::uint64_t j = bl * 16 + static_cast<std::uint64_t>(t);
      std::uint32_t cur = next_word < data_words ? fetch(next_word) : 0u;
      ++next_word;
      std::uint32_t word = (prev << 24) | (cur >> 8);
      prev = cur;
      w[t] = sha_pad_word(word, j, total);
    }
    if (bl + 1 == blocks) {
      std::uint64_t bits = total * 8;
      w[14] = static_cast<std::uint32_t>(bits >> 32);
      w[15] = static_cast<std::uint32_t>(bits);
    }
    sha256_compress(s, w);
  }
  for (int i = 0; i < 8; ++i) {
    digest[4 * i] = static_cast<std::uint8_t>(s.h[i] >> 24);
    digest[4 * i + 1] = static_cast<std::uint8_t>(s.h[i] >> 16);
    digest[4 * i + 2] = static_cast<std::uint8_t>(s.h[i] >> 8);
    digest[4 * i + 3] = static_cast<std::uint8_t>(s.h[i]);
  }
}

// Big-endian word of bytes [4i, 4i + 4) of p, any alignment, reading only
// below len.
FERRY_HD std::uint32_t load_be_word(const std::uint8_t* p, std::uint32_t i, std::uint32_t len) {
  std::uint32_t v = 0;
  for (std::uint32_t k = 0; k < 4; ++k) {
    std::uint32_t at = 4 * i + k;
    v |= (at < len ? static_cast<std::uint32_t>(p[at]) : 0u) << (24 - 8 * k);
  }
  return v;
}

// Leaf hash: SHA-256(0x00 || leaf), byte loads.
FERRY_HD void sha256_leaf_bytes(const std::uint8_t* leaf, std::uint32_t len, std::uint8_t digest[32]) {
  sha256_prefixed(
      0x00, len, [&](std::uint32_t i) { return load_be_word(leaf, i, len); }, digest);
}

// Node hash: SHA-256(0x01 || left || right).
FERRY_HD void sha256_node(const std::uint8_t* left, const std::uint8_t* right, std::uint8_t digest[32]) {
  sha256_prefixed(
      0x01, 64,
      [&](std::uint32_t i) {
        const std::uint8_t* p = i < 8 ? left + 4 * i : right + 4 * (i - 8);
        return (static_cast<std::uint32_t>(p[0]) << 24) | (static_cast<std::uint32_t>(p[1]) << 16) |
               (static_cast<std::uint32_t>(p[2]) << 8) | p[3];
      },
      digest);
}

}  // namespace ferry::gpu
