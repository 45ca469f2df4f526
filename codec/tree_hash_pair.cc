// tree_hash_pair.cc: two SHA-256 tree hashes interleaved on SHA-NI; see
// tree_hash_pair.h. The round structure is FIPS 180-4 section 6.2 as the SHA
// extensions implement it (Intel, "Intel SHA Extensions", 2013): the state
// lives in two registers, ABEF and CDGH; sha256rnds2 does two rounds;
// sha256msg1/msg2 extend the message schedule four words at a time.
#include "codec/tree_hash_pair.h"

#include <cstdint>
#include <cstring>

#include "base/status.h"
#include "codec/limits.h"

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif

namespace ferry {

#if defined(__x86_64__)
namespace {

#define FERRY_SHA_TARGET __attribute__((target("sha,sse4.1,ssse3")))

constexpr int kLanes = 2;
constexpr std::size_t kBlockBytes = 64;
constexpr std::uint8_t kLeafPrefix = 0x00;
constexpr std::uint8_t kNodePrefix = 0x01;
static_assert(kLeafBytes % kBlockBytes == 0 && 2 * kDigestBytes == kBlockBytes);

alignas(16) constexpr std::uint32_t kRoundConstants[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};
constexpr std::uint32_t kInitialState[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                            0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};

// The state of one lane: ABEF and CDGH.
struct State {
  __m128i abef;
  __m128i cdgh;
};

FERRY_SHA_TARGET inline __m128i byte_swap_words(__m128i v) {
  const __m128i mask = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
  return _mm_shuffle_epi8(v, mask);
}

FERRY_SHA_TARGET inline State initial_state() {
  __m128i abcd = _mm_loadu_si128(reinterpret_cast<const __m128i*>(kInitialState));
  __m128i efgh = _mm_loadu_si128(reinterpret_cast<const __m128i*>(kInitialState + 4));
  abcd = _mm_shuffle_epi32(abcd, 0xB1);  // CDAB
  efgh = _mm_shuffle_epi32(efgh, 0x1B);  // HGFE
  return {_mm_alignr_epi8(abcd, efgh, 8), _mm_blend_epi16(efgh, abcd, 0xF0)};
}

FERRY_SHA_TARGET inline void store_digest(const State& s, Digest& out) {
  __m128i feba = _mm_shuffle_epi32(s.abef, 0x1B);
  __m128i dchg = _mm_shuffle_epi32(s.cdgh, 0xB1);
  __m128i abcd = _mm_blend_epi16(feba, dchg, 0xF0);
  __m128i efgh = _mm_alignr_epi8(dchg, feba, 8);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out.data()), byte_swap_words(abcd));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out.data() + 16), byte_swap_words(efgh));
}

// One 64-byte block into each lane's state. Both lanes' rounds sit in one
// loop body so their independent chains interleave; always_inline and the
// full unroll keep every schedule word in a register.
FERRY_SHA_TARGET __attribute__((always_inline)) inline void compress(
    State (&s)[kLanes], const std::uint8_t* const (&block)[kLanes]) {
  State saved[kLanes];
  __m128i w[kLanes][4];
  for (int l = 0; l < kLanes; ++l) {
    saved[l] = s[l];
    for (int j = 0; j < 4; ++j)
      w[l][j] = byte_swap_words(_mm_loadu_si128(reinterpret_cast<const __m128i*>(block[l] + 16 * j)));
  }
  _Pragma("GCC unroll 16") for (int r = 0; r < 16; ++r) {
    const __m128i k = _mm_load_si128(reinterpret_cast<const __m128i*>(kRoundConstants + 4 * r));
    _Pragma("GCC unroll 2") for (int l = 0; l < kLanes; ++l) {
      __m128i m = _mm_add_epi32(w[l][r & 3], k);
      s[l].cdgh = _mm_sha256rnds2_epu32(s[l].cdgh, s[l].abef, m);
      m = _mm_shuffle_epi32(m, 0x0E);
      s[l].abef = _mm_sha256rnds2_epu32(s[l].abef, s[l].cdgh, m);
      if (r < 12) {
        // W[t..t+3] for t = 4r + 16, from W[t-16..t-1] (the four groups in w).
        __m128i t = _mm_sha256msg1_epu32(w[l][r & 3], w[l][(r + 1) & 3]);
        t = _mm_add_epi32(t, _mm_alignr_epi8(w[l][(r + 3) & 3], w[l][(r + 2) & 3], 4));
        w[l][r & 3] = _mm_sha256msg2_epu32(t, w[l][(r + 3) & 3]);
      }
    }
  }
  for (int l = 0; l < kLanes; ++l) {
    s[l].abef = _mm_add_epi32(s[l].abef, saved[l].abef);
    s[l].cdgh = _mm_add_epi32(s[l].cdgh, saved[l].cdgh);
  }
}

// Hashes prefix || message[l] for both lanes, each message `bytes` long, a
// non-zero multiple of the block size: a tree hash is always one prefix byte
// and then whole blocks (a leaf, or two digests). The prefix shifts the
// message by one, so block 0 is the prefix and the first 63 bytes, block b
// is message[64b - 1, 64b + 63), and the last block holds the final byte,
// the 0x80 pad and the bit length (FIPS 180-4 section 5.1.1).
FERRY_SHA_TARGET void hash_prefixed_pair(std::uint8_t prefix, const std::uint8_t* const (&message)[kLanes],
                                         std::size_t bytes, Digest* const (&out)[kLanes]) {
  alignas(16) std::uint8_t first[kLanes][kBlockBytes];
  alignas(16) std::uint8_t last[kLanes][kBlockBytes];
  State s[kLanes];
  const std::uint8_t* block[kLanes];
  const std::uint64_t bits = (std::uint64_t{bytes} + 1) * 8;
  for (int l = 0; l < kLanes; ++l) {
    s[l] = initial_state();
    first[l][0] = prefix;
    std::memcpy(first[l] + 1, message[l], kBlockBytes - 1);
    std::memset(last[l], 0, kBlockBytes);
    last[l][0] = message[l][bytes - 1];
    last[l][1] = 0x80;
    for (int i = 0; i < 8; ++i) last[l][kBlockBytes - 1 - i] = static_cast<std::uint8_t>(bits >> (8 * i));
    block[l] = first[l];
  }
  compress(s, block);
  for (std::size_t b = 1; b < bytes / kBlockBytes; ++b) {
    for (int l = 0; l < kLanes; ++l) block[l] = message[l] + kBlockBytes * b - 1;
    compress(s, block);
  }
  for (int l = 0; l < kLanes; ++l) block[l] = last[l];
  compress(s, block);
  for (int l = 0; l < kLanes; ++l) store_digest(s[l], *out[l]);
}

bool cpu_has_sha_ni() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
  const bool ssse3 = (c & bit_SSSE3) != 0;
  const bool sse41 = (c & bit_SSE4_1) != 0;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  const bool sha = (b & bit_SHA) != 0;
  return ssse3 && sse41 && sha;
}

}  // namespace

bool tree_hash_pair_available() {
  static const bool available = cpu_has_sha_ni();
  return available;
}

void hash_leaf_pair(const std::byte* a, const std::byte* b, Digest& out_a, Digest& out_b) {
  FERRY_CHECK(tree_hash_pair_available());
  const std::uint8_t* message[kLanes] = {reinterpret_cast<const std::uint8_t*>(a),
                                         reinterpret_cast<const std::uint8_t*>(b)};
  Digest* out[kLanes] = {&out_a, &out_b};
  hash_prefixed_pair(kLeafPrefix, message, kLeafBytes, out);
}

void hash_node_pair(const Digest& left0, const Digest& right0, const Digest& left1, const Digest& right1,
                    Digest& out0, Digest& out1) {
  FERRY_CHECK(tree_hash_pair_available());
  // Copied first: the outputs may be the inputs (a tree level reduced in place).
  std::uint8_t pairs[kLanes][2 * kDigestBytes];
  std::memcpy(pairs[0], left0.data(), kDigestBytes);
  std::memcpy(pairs[0] + kDigestBytes, right0.data(), kDigestBytes);
  std::memcpy(pairs[1], left1.data(), kDigestBytes);
  std::memcpy(pairs[1] + kDigestBytes, right1.data(), kDigestBytes);
  const std::uint8_t* message[kLanes] = {pairs[0], pairs[1]};
  Digest* out[kLanes] = {&out0, &out1};
  hash_prefixed_pair(kNodePrefix, message, 2 * kDigestBytes, out);
}

#else  // no SHA extensions to use: tree_hash.cc hashes every leaf on OpenSSL

bool tree_hash_pair_available() { return false; }

void hash_leaf_pair(const std::byte*, const std::byte*, Digest&, Digest&) {
  FERRY_CHECK(false && "hash_leaf_pair without SHA extensions");
}

void hash_node_pair(const Digest&, const Digest&, const Digest&, const Digest&, Digest&, Digest&) {
  FERRY_CHECK(false && "hash_node_pair without SHA extensions");
}

#endif

}  // namespace ferry
