// crc32c.cc: CRC-32C with the SSE4.2 crc32 instruction and a portable
// slice-by-4 table fallback. Written by hand rather than taken from ISA-L
// because ISA-L is not available as a static library for the GPU-machine
// build, and the whole of it is this one file.
//
// Speed: the crc32 instruction has a latency of 3 cycles but a throughput of
// one per cycle, so large inputs are cut into three equal stretches whose
// CRCs run interleaved and are then joined with a precomputed "shift by one
// stretch" operator (multiplication by x^(8*len) mod P, as four 256-entry
// tables built once).
#include "base/crc32c.h"

#include <array>
#include <cstring>

#if defined(__x86_64__) && defined(__SSE4_2__)
#include <nmmintrin.h>
#define FERRY_CRC32C_HW 1
#endif

namespace ferry {
namespace {

constexpr std::uint32_t kPolyReflected = 0x82f63b78u;  // Castagnoli, bit-reversed
// Bytes per stretch in the three-way interleave; a multiple of 8.
constexpr std::size_t kStretchBytes = 4096;

using Table = std::array<std::array<std::uint32_t, 256>, 4>;

constexpr Table make_tables() {
  Table t{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ ((c & 1u) ? kPolyReflected : 0u);
    t[0][i] = c;
  }
  for (std::uint32_t i = 0; i < 256; ++i) {
    for (int s = 1; s < 4; ++s) t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xffu];
  }
  return t;
}
constexpr Table kTables = make_tables();

// Advances the raw (uninverted) CRC register over `n` bytes.
std::uint32_t update_portable(std::uint32_t reg, const std::uint8_t* p, std::size_t n) {
  while (n >= 4) {
    std::uint32_t w;
    std::memcpy(&w, p, 4);  // little-endian host assumed, as everywhere in ferry
    reg ^= w;
    reg = kTables[3][reg & 0xff] ^ kTables[2][(reg >> 8) & 0xff] ^ kTables[1][(reg >> 16) & 0xff] ^
          kTables[0][reg >> 24];
    p += 4;
    n -= 4;
  }
  while (n--) reg = (reg >> 8) ^ kTables[0][(reg ^ *p++) & 0xff];
  return reg;
}

#ifdef FERRY_CRC32C_HW
// shift(reg) = the register after feeding kStretchBytes zero bytes, which is
// linear in reg: process(s, data) == shift(s) ^ process(0, data).
struct ShiftTables {
  Table t{};
  ShiftTables() {
    static const std::array<std::uint8_t, kStretchBytes> zeros{};
    for (int bit = 0; bit < 32; ++bit) {
      std::uint32_t image = update_portable(1u << bit, zeros.data(), zeros.size());
      for (int byte = 0; byte < 4; ++byte) {
        if (bit / 8 != byte) continue;
        for (std::uint32_t v = 0; v < 256; ++v) {
          if (v & (1u << (bit % 8))) t[byte][v] ^= image;
        }
      }
    }
  }
  std::uint32_t shift(std::uint32_t reg) const {
    return t[0][reg & 0xff] ^ t[1][(reg >> 8) & 0xff] ^ t[2][(reg >> 16) & 0xff] ^ t[3][reg >> 24];
  }
};

const ShiftTables& shift_tables() {
  static const ShiftTables s;
  return s;
}

std::uint64_t load64(const std::uint8_t* p) {
  std::uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

std::uint32_t update_hw(std::uint32_t reg, const std::uint8_t* p, std::size_t n) {
  std::uint64_t r0 = reg;
  // Align to 8 bytes so the 64-bit loads below do not split cache lines.
  while (n > 0 && (reinterpret_cast<std::uintptr_t>(p) & 7u) != 0) {
    r0 = _mm_crc32_u8(static_cast<std::uint32_t>(r0), *p++);
    --n;
  }
  if (n >= 3 * kStretchBytes) {
    const ShiftTables& st = shift_tables();
    while (n >= 3 * kStretchBytes) {
      std::uint64_t r1 = 0, r2 = 0;
      const std::uint8_t* a = p;
      const std::uint8_t* b = p + kStretchBytes;
      const std::uint8_t* c = p + 2 * kStretchBytes;
      for (std::size_t i = 0; i < kStretchBytes; i += 8) {
        r0 = _mm_crc32_u64(r0, load64(a + i));
        r1 = _mm_crc32_u64(r1, load64(b + i));
        r2 = _mm_crc32_u64(r2, load64(c + i));
      }
      std::uint32_t joined = st.shift(static_cast<std::uint32_t>(r0)) ^ static_cast<std::uint32_t>(r1);
      r0 = st.shift(joined) ^ static_cast<std::uint32_t>(r2);
      p += 3 * kStretchBytes;
      n -= 3 * kStretchBytes;
    }
  }
  while (n >= 8) {
    r0 = _mm_crc32_u64(r0, load64(p));
    p += 8;
    n -= 8;
  }
  std::uint32_t r = static_cast<std::uint32_t>(r0);
  while (n--) r = _mm_crc32_u8(r, *p++);
  return r;
}

bool cpu_has_sse42() {
  static const bool has = __builtin_cpu_supports("sse4.2");
  return has;
}
#endif

// Multiplication of two polynomials modulo the CRC polynomial, in the
// reflected bit order (bit 31 is x^0), as zlib's multmodp.
std::uint32_t multiply_mod_poly(std::uint32_t a, std::uint32_t b) {
  std::uint32_t product = 0;
  for (std::uint32_t m = 1u << 31; m != 0; m >>= 1) {
    if (a & m) product ^= b;
    b = (b & 1u) ? (b >> 1) ^ kPolyReflected : b >> 1;
  }
  return product;
}

// x^(2^k) modulo the polynomial, for k = 0..66: powers[k] moves a CRC
// register past 2^k bits (a 64-bit byte count is at most 2^67 bits).
struct PowerTable {
  std::array<std::uint32_t, 67> powers{};
  PowerTable() {
    std::uint32_t p = 1u << 30;  // x^1
    for (auto& power : powers) {
      power = p;
      p = multiply_mod_poly(p, p);
    }
  }
};

// x^(8 * len) modulo the polynomial: the operator that moves a CRC register
// past `len` zero bytes.
std::uint32_t shift_operator(std::uint64_t len) {
  static const PowerTable table;
  std::uint32_t op = 1u << 31;  // x^0
  for (int k = 3; len != 0; len >>= 1, ++k) {
    if (len & 1u) op = multiply_mod_poly(table.powers[static_cast<std::size_t>(k)], op);
  }
  return op;
}

}  // namespace

std::uint32_t crc32c_combine(std::uint32_t crc_a, std::uint32_t crc_b, std::uint64_t len_b) {
  // crc(A || B) = crc(A) * x^(8 * |B|) + crc(B): the pre- and post-inversion
  // of crc32c() cancel out of the sum (linearity of the CRC register).
  return multiply_mod_poly(shift_operator(len_b), crc_a) ^ crc_b;
}

std::uint32_t crc32c_portable(std::span<const std::byte> data, std::uint32_t crc) {
  auto* p = reinterpret_cast<const std::uint8_t*>(data.data());
  return ~update_portable(~crc, p, data.size());
}

std::uint32_t crc32c(std::span<const std::byte> data, std::uint32_t crc) {
#ifdef FERRY_CRC32C_HW
  if (cpu_has_sse42()) {
    auto* p = reinterpret_cast<const std::uint8_t*>(data.data());
    return ~update_hw(~crc, p, data.size());
  }
#endif
  return crc32c_portable(data, crc);
}

}  // namespace ferry
