// rans_test.cc: the block rANS coder on its own: the cost table, frequency
// normalisation, exactness of the reciprocal division, block round trips and
// the decoder's end checks.
#include "codec/rans.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "tests/testing/testing.h"

namespace ferry::rans {
namespace {

TEST(RansCost, MatchesLog2) {
  EXPECT_EQ(cost_q16(4096), 0u);
  EXPECT_EQ(cost_q16(2048), 1u << 16);
  EXPECT_EQ(cost_q16(1), 12u << 16);
  for (std::uint32_t f = 1; f <= 4096; ++f) {
    double want = -std::log2(f / 4096.0) * 65536.0;
    EXPECT_NEAR(static_cast<double>(cost_q16(f)), want, 2.0) << "freq " << f;
    if (f > 1) {
      EXPECT_LE(cost_q16(f), cost_q16(f - 1));
    }
  }
}

std::uint32_t sum_of(const std::uint32_t* f) {
  std::uint32_t s = 0;
  for (int i = 0; i < kAlphabet; ++i) s += f[i];
  return s;
}

TEST(RansNormalize, ExactValues) {
  std::uint32_t counts[kAlphabet] = {};
  std::uint32_t freq[kAlphabet];
  counts[5] = 1;
  counts[6] = 2;  // 1365 + 2730 = 4095: the missing 1 goes to the most frequent
  normalize_freqs(counts, freq);
  EXPECT_EQ(freq[5], 1365u);
  EXPECT_EQ(freq[6], 2731u);
  EXPECT_EQ(freq[0], 0u);

  std::memset(counts, 0, sizeof counts);
  counts[200] = 7;  // a single symbol owns the whole range
  normalize_freqs(counts, freq);
  EXPECT_EQ(freq[200], 4096u);
  EXPECT_EQ(sum_of(freq), 4096u);
}

TEST(RansNormalize, RareSymbolsTakeFromTheLargest) {
  std::uint32_t counts[kAlphabet];
  std::uint32_t freq[kAlphabet];
  for (auto& c : counts) c = 1;
  counts[3] = 10'000'000;  // the 255 others floor to 0 and are raised to 1
  normalize_freqs(counts, freq);
  EXPECT_EQ(sum_of(freq), 4096u);
  for (int s = 0; s < kAlphabet; ++s) EXPECT_GE(freq[s], 1u);
  EXPECT_EQ(freq[3], 4096u - 255u);
}

// The format's rule written with integer division, as docs/FORMAT.md states
// it; the encoder computes the floor with a reciprocal and must agree.
void normalize_by_division(const std::uint32_t counts[kAlphabet], std::uint32_t freq[kAlphabet]) {
  std::uint64_t total = 0;
  for (int s = 0; s < kAlphabet; ++s) total += counts[s];
  std::int64_t sum = 0;
  int most = 0;
  for (int s = 0; s < kAlphabet; ++s) {
    std::uint64_t f =
        counts[s] == 0 ? 0 : std::max<std::uint64_t>(1, counts[s] * std::uint64_t{4096} / total);
    freq[s] = static_cast<std::uint32_t>(f);
    sum += static_cast<std::int64_t>(f);
    if (counts[s] > counts[most]) most = s;
  }
  std::int64_t d = 4096 - sum;
  if (d > 0) freq[most] += static_cast<std::uint32_t>(d);
  while (d < 0) {
    int big = 0;
    for (int s = 1; s < kAlphabet; ++s)
      if (freq[s] > freq[big]) big = s;
    std::int64_t take = std::min<std::int64_t>(-d, freq[big] - 1);
    freq[big] -= static_cast<std::uint32_t>(take);
    d += take;
  }
}

TEST(RansNormalize, MatchesIntegerDivisionIncludingExactQuotients) {
  std::mt19937_64 rng(testing::test_seed());
  for (int iter = 0; iter < 4000; ++iter) {
    std::uint32_t counts[kAlphabet] = {};
    std::uint32_t freq[kAlphabet], want[kAlphabet];
    if (iter % 2 == 0) {
      // Totals that are multiples of 4096 with counts that divide evenly:
      // count * 4096 / total is an exact integer, where a reciprocal that
      // rounds low would be one short.
      const std::uint32_t unit = 1 + static_cast<std::uint32_t>(rng() % 5000);
      std::uint32_t left = 4096;
      for (int s = 0; s < kAlphabet && left > 0; ++s) {
        const std::uint32_t take = s == kAlphabet - 1 ? left : static_cast<std::uint32_t>(rng() % (left + 1));
        counts[s] = take * unit;
        left -= take;
      }
    } else {
      for (int s = 0; s < kAlphabet; ++s)
        if (rng() % 3 != 0) counts[s] = static_cast<std::uint32_t>(rng() % (1u << (1 + rng() % 26)));
    }
    std::uint64_t total = 0;
    for (auto c : counts) total += c;
    if (total == 0) counts[7] = 1;
    normalize_freqs(counts, freq);
    normalize_by_division(counts, want);
    for (int s = 0; s < kAlphabet; ++s)
      ASSERT_EQ(freq[s], want[s]) << "iteration " << iter << " symbol " << s;
  }
}

TEST(RansNormalize, RandomHistogramsSumExactly) {
  std::mt19937_64 rng(testing::test_seed());
  for (int iter = 0; iter < 500; ++iter) {
    std::uint32_t counts[kAlphabet];
    std::uint32_t freq[kAlphabet];
    int live = 1 + static_cast<int>(rng() % kAlphabet);
    for (int s = 0; s < kAlphabet; ++s)
      counts[s] = s < live ? static_cast<std::uint32_t>(rng() % (1u << (rng() % 24))) : 0;
    counts[0] += 1;
    normalize_freqs(counts, freq);
    ASSERT_EQ(sum_of(freq), 4096u);
    for (int s = 0; s < kAlphabet; ++s) ASSERT_EQ(freq[s] == 0, counts[s] == 0) << s;
  }
}

// The encoder divides by freq with a 64-bit reciprocal. It must equal true
// division for every state the encoder can hold before the step,
// [16 f, 2^20 f): exhaustively for small f, and at the range edges and at
// random points for every f.
TEST(RansEncSymbol, ReciprocalIsExactDivision) {
  std::uint32_t freq[kAlphabet] = {};
  std::mt19937_64 rng(testing::test_seed());
  auto check = [](const EncSymbol& e, std::uint32_t x) {
    std::uint32_t f = e.freq;
    std::uint32_t got = x + e.bias + EncTable::quotient(x, e) * e.cmpl;
    std::uint32_t cum = f == 1 ? e.bias - (kProbScale - 1) : e.bias;
    std::uint64_t want = static_cast<std::uint64_t>(x / f) * kProbScale + x % f + cum;
    return got == want;
  };
  for (std::uint32_t f = 1; f <= kProbScale; ++f) {
    freq[0] = f;
    freq[1] = kProbScale - f;  // symbol 1 takes the rest (0 when f == 4096)
    EncTable t;
    t.build(freq);
    const EncSymbol& e = t[0];
    std::uint64_t lo = 16ull * f, hi = (static_cast<std::uint64_t>(f) << 20) - 1;
    ASSERT_EQ(e.renorm_above, hi);
    if (f <= 7) {
      for (std::uint64_t x = lo; x <= hi; ++x)
        ASSERT_TRUE(check(e, static_cast<std::uint32_t>(x))) << "f " << f << " x " << x;
      continue;
    }
    for (std::uint64_t x : {lo, lo + 1, hi - 1, hi, lo + f - 1, hi - f})
      ASSERT_TRUE(check(e, static_cast<std::uint32_t>(x))) << "f " << f << " x " << x;
    for (int i = 0; i < 64; ++i) {
      std::uint32_t x = static_cast<std::uint32_t>(lo + rng() % (hi - lo + 1));
      ASSERT_TRUE(check(e, x)) << "f " << f << " x " << x;
    }
  }
}

struct Coded {
  std::uint32_t freq[kAlphabet];
  std::vector<std::uint8_t> bytes;
  std::size_t size;
};

Coded encode(const std::vector<std::uint8_t>& sym) {
  Coded c{};
  std::uint32_t counts[kAlphabet] = {};
  for (auto s : sym) ++counts[s];
  normalize_freqs(counts, c.freq);
  EncTable t;
  t.build(c.freq);
  auto scratch = std::make_unique<EncScratch>();
  c.bytes.assign(sym.size(), 0);
  c.size = encode_block(t, sym.data(), sym.size(), *scratch, c.bytes.data());
  c.bytes.resize(c.size);
  return c;
}

std::vector<std::uint8_t> skewed_symbols(std::size_t m, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::geometric_distribution<int> g(0.35);
  std::vector<std::uint8_t> v(m);
  for (auto& s : v) s = static_cast<std::uint8_t>(120 + std::min(g(rng), 100));
  return v;
}

TEST(RansBlock, RoundTripsEverySize) {
  std::uint64_t seed = testing::test_seed();
  for (std::size_t m : {1u, 31u, 32u, 33u, 128u, 129u, 200u, 1000u, 4095u, 16383u, 16384u}) {
    auto sym = skewed_symbols(m, seed + m);
    Coded c = encode(sym);
    if (m <= kStateBytes) {
      EXPECT_EQ(c.size, m) << "a block this short is always raw";
      continue;
    }
    if (c.size == m) {
      EXPECT_LT(m, 300u) << "128 state bytes outweigh the gain only in short blocks";
      continue;
    }
    ASSERT_EQ(c.size % 2, 0u);
    DecTable d;
    d.build(c.freq);
    std::vector<std::uint8_t> out(m);
    ASSERT_TRUE(decode_block(d, c.bytes.data(), c.size, out.data(), m).is_ok()) << m;
    EXPECT_EQ(out, sym) << m;
  }
}

// Every encoder loop (scalar, AVX2, AVX-512) must write the same bytes: on
// symbol sets that use the whole alphabet (table halves above 127), a single
// symbol (freq 4096), freq-1 symbols, odd and even group counts, and blocks
// that stop early because they will not pay.
TEST(RansBlock, EveryEncodePathWritesTheSameBytes) {
  std::mt19937_64 rng(testing::test_seed());
  std::vector<std::vector<std::uint8_t>> cases;
  for (std::size_t m : {129u, 160u, 192u, 1000u, 4096u, 16383u, 16384u}) {
    cases.push_back(skewed_symbols(m, rng()));
    std::vector<std::uint8_t> wide(m), one(m, 200), rare(m), noise(m);
    std::geometric_distribution<int> g(0.02);
    for (auto& s : wide) s = static_cast<std::uint8_t>(std::min(g(rng), 255));
    for (auto& s : rare) s = rng() % 64 == 0 ? static_cast<std::uint8_t>(rng()) : 7;
    for (auto& s : noise) s = static_cast<std::uint8_t>(rng());
    for (auto* v : {&wide, &one, &rare, &noise}) cases.push_back(*v);
  }
  std::vector<std::vector<std::uint8_t>> want;
  ASSERT_EQ(set_encode_path(EncodePath::kScalar), EncodePath::kScalar);
  for (const auto& sym : cases) want.push_back(encode(sym).bytes);
  for (EncodePath path : {EncodePath::kAvx2, EncodePath::kAvx512}) {
    EncodePath got = set_encode_path(path);
    if (got != path) {
      std::printf("encode path %d not on this CPU; %d tested instead\n", static_cast<int>(path),
                  static_cast<int>(got));
    }
    for (std::size_t i = 0; i < cases.size(); ++i)
      ASSERT_EQ(encode(cases[i]).bytes, want[i])
          << "path " << static_cast<int>(got) << " case " << i << " m " << cases[i].size();
  }
  set_encode_path(EncodePath::kAuto);
}

// Every decoder loop (scalar, AVX2, AVX-512), alone and on two blocks at
// once, must decode the same symbols and refuse the same damage: blocks of
// odd and even group counts, a partial last group, and pairs of unequal
// blocks (the pair runs in step only while both have whole groups).
TEST(RansBlock, EveryDecodePathDecodesTheSame) {
  std::mt19937_64 rng(testing::test_seed());
  std::vector<std::vector<std::uint8_t>> cases;
  for (std::size_t m : {1000u, 4095u, 4100u, 16383u, 16384u}) {
    cases.push_back(skewed_symbols(m, rng()));
    std::vector<std::uint8_t> wide(m);
    std::geometric_distribution<int> g(0.02);
    for (auto& s : wide) s = static_cast<std::uint8_t>(std::min(g(rng), 255));
    cases.push_back(wide);
  }
  std::vector<Coded> coded;
  std::vector<DecTable> tables(cases.size());
  for (std::size_t i = 0; i < cases.size(); ++i) {
    coded.push_back(encode(cases[i]));
    ASSERT_LT(coded[i].size, cases[i].size()) << "case " << i << " m " << cases[i].size() << " stays raw";
    tables[i].build(coded[i].freq);
  }
  for (DecodePath path : {DecodePath::kScalar, DecodePath::kAvx2, DecodePath::kAvx512}) {
    DecodePath got = set_decode_path(path);
    if (got != path) {
      std::printf("decode path %d not on this CPU; %d tested instead\n", static_cast<int>(path),
                  static_cast<int>(got));
    }
    for (std::size_t i = 0; i < cases.size(); ++i) {
      std::vector<std::uint8_t> out(cases[i].size());
      ASSERT_TRUE(
          decode_block(tables[i], coded[i].bytes.data(), coded[i].size, out.data(), out.size()).is_ok());
      EXPECT_EQ(out, cases[i]) << "path " << static_cast<int>(got) << " case " << i;
      const std::size_t j = (i + 3) % cases.size();  // a partner of another size
      std::vector<std::uint8_t> a(cases[i].size()), b(cases[j].size());
      const DecSegment sa{&tables[i], a.data(), a.size()}, sb{&tables[j], b.data(), b.size()};
      const DecBlockRef ra{coded[i].bytes.data(), coded[i].size, std::span(&sa, 1)};
      const DecBlockRef rb{coded[j].bytes.data(), coded[j].size, std::span(&sb, 1)};
      ASSERT_TRUE(decode_segments_pair(ra, rb).is_ok()) << "path " << static_cast<int>(got) << " case " << i;
      EXPECT_EQ(a, cases[i]) << "pair, path " << static_cast<int>(got) << " case " << i;
      EXPECT_EQ(b, cases[j]) << "pair, path " << static_cast<int>(got) << " case " << j;
      // A block short of its last word fails, alone and as either half of a pair.
      EXPECT_EQ(
          decode_block(tables[i], coded[i].bytes.data(), coded[i].size - 2, out.data(), out.size()).code(),
          Code::kCorruption);
      const DecBlockRef short_b{coded[j].bytes.data(), coded[j].size - 2, std::span(&sb, 1)};
      EXPECT_EQ(decode_segments_pair(ra, short_b).code(), Code::kCorruption);
      const DecBlockRef short_a{coded[i].bytes.data(), coded[i].size - 2, std::span(&sa, 1)};
      EXPECT_EQ(decode_segments_pair(short_a, rb).code(), Code::kCorruption);
    }
  }
  set_decode_path(DecodePath::kAuto);
}

TEST(RansBlock, IncompressibleBlockIsRaw) {
  std::vector<std::uint8_t> sym(16384);
  std::mt19937_64 rng(testing::test_seed());
  for (auto& s : sym) s = static_cast<std::uint8_t>(rng());
  EXPECT_EQ(encode(sym).size, sym.size());
}

TEST(RansBlock, DecoderEndChecks) {
  auto sym = skewed_symbols(5000, testing::test_seed());
  Coded c = encode(sym);
  ASSERT_LT(c.size, sym.size());
  DecTable d;
  d.build(c.freq);
  std::vector<std::uint8_t> out(sym.size());
  // Missing words.
  Status s = decode_block(d, c.bytes.data(), c.size - 2, out.data(), out.size());
  EXPECT_EQ(s.code(), Code::kCorruption);
  // Extra words.
  auto longer = c.bytes;
  longer.push_back(0);
  longer.push_back(0);
  s = decode_block(d, longer.data(), longer.size(), out.data(), out.size());
  EXPECT_EQ(s.code(), Code::kCorruption);
  // A state below L.
  auto bad = c.bytes;
  std::uint32_t low = 5;
  std::memcpy(bad.data() + 4 * 7, &low, 4);
  s = decode_block(d, bad.data(), bad.size(), out.data(), out.size());
  EXPECT_EQ(s.code(), Code::kCorruption);
  EXPECT_NE(s.message().find("lane 7"), std::string::npos) << s.to_string();
  // A changed state decodes to lanes that do not end at L.
  bad = c.bytes;
  bad[3] ^= 0x40;
  s = decode_block(d, bad.data(), bad.size(), out.data(), out.size());
  EXPECT_EQ(s.code(), Code::kCorruption) << s.to_string();
}

}  // namespace
}  // namespace ferry::rans
