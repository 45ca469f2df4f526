// rans.cc: see rans.h. The byte layout of a coded block is FORMAT.md
// section 4: u32 state[32] (final encoder states), then u16 words in the
// order the decoder reads them.
#include "codec/rans.h"

#include <bit>
#include <cstring>
#include <string>

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

}  // namespace

std::uint32_t cost_q16(std::uint32_t freq) {
  FERRY_CHECK(freq >= 1 && freq <= kProbScale);
  return kCostQ16[freq];
}

void normalize_freqs(const std::uint32_t counts[kAlphabet], std::uint32_t freq[kAlphabet]) {
  std::uint64_t total = 0;
  for (int s = 0; s < kAlphabet; ++s) total += counts[s];
  FERRY_CHECK(total > 0);
  std::int64_t sum = 0;
  int most = 0;  // symbol with the largest count, lowest on ties
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
    std::int64_t take = std::min<std::int64_t>(-d, freq[big] - 1);
    FERRY_CHECK(take > 0);  // at most 256 symbols, so some freq exceeds 1
    freq[big] -= static_cast<std::uint32_t>(take);
    d += take;
  }
}

std::uint64_t estimate_bits_q16(const std::uint32_t counts[kAlphabet],
                                const std::uint32_t freq[kAlphabet]) {
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
    cum += f;
  }
  FERRY_CHECK(cum == kProbScale);
}

void DecTable::build(const std::uint32_t freq[kAlphabet]) {
  std::uint32_t cum = 0;
  for (std::uint32_t s = 0; s < kAlphabet; ++s) {
    std::uint32_t f = freq[s];
    for (std::uint32_t i = 0; i < f; ++i)
      slot_[cum + i] = s | ((f - 1) << 8) | (i << 20);
    cum += f;
  }
  FERRY_CHECK(cum == kProbScale);
}

std::size_t encode_block(const EncTable& table, const std::uint8_t* symbols, std::size_t m,
                         EncScratch& scratch, std::uint8_t* out) {
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
  auto step = [&](int l, std::uint8_t s) {
    const EncSymbol& e = table[s];
    std::uint32_t v = x[l];
    bool emit = v > e.renorm_above;
    ptr[-1] = static_cast<std::uint16_t>(v);
    ptr -= emit;
    v = emit ? v >> 16 : v;
    std::uint32_t q = EncTable::quotient(v, e);
    x[l] = v + e.bias + q * e.cmpl;
  };

  const std::size_t full = m / kLanes;
  const std::size_t rem = m % kLanes;
  if (rem) {
    const std::uint8_t* g = symbols + full * kLanes;
    for (int l = static_cast<int>(rem) - 1; l >= 0; --l) step(l, g[l]);
  }
  for (std::size_t gi = full; gi-- > 0;) {
    const std::uint8_t* g = symbols + gi * kLanes;
    for (int l = kLanes - 1; l >= 0; --l) step(l, g[l]);
    if (static_cast<std::size_t>(end - ptr) > max_words) return m;  // will not pay
  }
  const std::size_t words = static_cast<std::size_t>(end - ptr);
  if (words > max_words) return m;
  std::memcpy(out, x, kStateBytes);
  std::memcpy(out + kStateBytes, ptr, words * 2);
  return kStateBytes + words * 2;
}

Status decode_block(const DecTable& table, const std::uint8_t* in, std::size_t stored,
                    std::uint8_t* out, std::size_t m) {
  if (stored < kStateBytes || (stored - kStateBytes) % 2 != 0)
    return Status::corruption("coded block of " + std::to_string(stored) + " bytes");
  std::uint32_t x[kLanes];
  for (int l = 0; l < kLanes; ++l) {
    x[l] = load_u32(in + 4 * l);
    if (x[l] < kStateLow)
      return Status::corruption("lane " + std::to_string(l) + " state " + std::to_string(x[l]) +
                                " below 2^16");
  }
  const std::uint8_t* words = in + kStateBytes;
  const std::size_t nwords = (stored - kStateBytes) / 2;
  const std::uint32_t* t = table.data();
  std::size_t pos = 0;

  auto decode_one = [&](int l) -> std::uint32_t {
    std::uint32_t e = t[x[l] & (kProbScale - 1)];
    x[l] = (((e >> 8) & 0xfff) + 1) * (x[l] >> kProbBits) + (e >> 20);
    return e;
  };

  const std::size_t full = m / kLanes;
  std::size_t gi = 0;
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
  // Checked tail: the last groups of the block and any partial group.
  for (std::size_t i = gi * kLanes; i < m; ++i) {
    int l = static_cast<int>(i % kLanes);
    out[i] = static_cast<std::uint8_t>(decode_one(l));
    if (x[l] < kStateLow) {
      if (pos == nwords)
        return Status::corruption("words exhausted at symbol " + std::to_string(i));
      x[l] = (x[l] << 16) | load_u16(words + 2 * pos);
      ++pos;
    }
  }
  if (pos != nwords)
    return Status::corruption(std::to_string(nwords - pos) + " words left unread");
  for (int l = 0; l < kLanes; ++l)
    if (x[l] != kStateLow)
      return Status::corruption("lane " + std::to_string(l) + " ends in state " +
                                std::to_string(x[l]) + ", not 2^16");
  return Status::ok();
}

}  // namespace ferry::rans
