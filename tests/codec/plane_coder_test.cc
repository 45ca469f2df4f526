// plane_coder_test.cc: the version 2 plane planner (codec/plane_coder.h)
// as a pure function of histograms: the plan made from counts alone (what
// a GPU engine computes in a kernel) is exactly the table count, tables and
// segment choices the CPU encoder writes; the sampled pre-check is part of
// that function; mantissa planes take as many tables as pay; a reused
// Planner plans as a fresh one does.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "codec/plane_coder.h"
#include "codec/rans_table.h"
#include "tests/testing/testing.h"

namespace ferry {
namespace {

using Plane = std::vector<std::uint8_t>;
using planes::kSegmentSymbols;

// Histograms counted the plain way, independent of the encoder's own.
struct Counts {
  std::vector<std::uint32_t> segments;
  std::vector<std::uint32_t> sampled = std::vector<std::uint32_t>(rans::kAlphabet);
  planes::SegmentCounts view() const { return {sampled_n, segments.data(), sampled.data()}; }
  std::size_t sampled_n = 0;
};

Counts count(const Plane& p) {
  Counts c;
  c.sampled_n = p.size();
  c.segments.assign((p.size() + kSegmentSymbols - 1) / kSegmentSymbols * rans::kAlphabet, 0);
  for (std::size_t i = 0; i < p.size(); ++i) {
    ++c.segments[i / kSegmentSymbols * rans::kAlphabet + p[i]];
    if (i % planes::kSampleStride == 0) ++c.sampled[p[i]];
  }
  return c;
}

// Planes of mixed scales (several tables pay), one scale, noise, and sizes
// around the segment and block edges.
std::vector<std::pair<std::string, Plane>> sample_planes(std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::pair<std::string, Plane>> out;
  for (std::size_t n : {1ul, 31ul, 32ul, 16383ul, 16384ul, 16385ul, 65536ul, 65537ul, 300001ul}) {
    Plane mixed(n), one(n), noise(n);
    for (std::size_t i = 0; i < n; ++i) {
      const std::size_t region = i / 40000 % 3;  // three tensors of different scales
      mixed[i] = static_cast<std::uint8_t>(100 + 20 * region + rng() % (region + 2));
      one[i] = static_cast<std::uint8_t>(120 + rng() % 3 + (rng() % 50 == 0 ? rng() % 40 : 0));
      noise[i] = static_cast<std::uint8_t>(rng());
    }
    out.emplace_back("mixed " + std::to_string(n), std::move(mixed));
    out.emplace_back("one scale " + std::to_string(n), std::move(one));
    out.emplace_back("noise " + std::to_string(n), std::move(noise));
  }
  return out;
}

// What PlaneEncoder wrote for a plane: coded or not, its tables and choices.
planes::Plan written_plan(const Plane& p, bool sample_first) {
  planes::PlaneEncoder enc;
  std::vector<std::uint8_t> out(p.size() + planes::header_bound(p.size()));
  bool coded = false;
  const std::size_t end = enc.encode(p.data(), p.size(), sample_first, out.data(), 0, &coded);
  planes::Plan plan;
  plan.coded = coded;
  if (!coded) return plan;
  std::size_t pos = 0;
  const std::size_t K = out[pos++];
  plan.freq.resize(K);
  for (auto& f : plan.freq) EXPECT_TRUE(rans::read_table(out.data(), end, pos, f.data()).is_ok());
  const std::size_t S = (p.size() + kSegmentSymbols - 1) / kSegmentSymbols;
  plan.assign.assign(S, 0);
  if (K > 1) std::memcpy(plan.assign.data(), out.data() + pos, S);
  return plan;
}

void expect_same(const planes::Plan& got, const planes::Plan& want, const std::string& what) {
  ASSERT_EQ(got.coded, want.coded) << what;
  if (!want.coded) return;
  ASSERT_EQ(got.freq.size(), want.freq.size()) << what;
  for (std::size_t k = 0; k < want.freq.size(); ++k)
    EXPECT_TRUE(got.freq[k] == want.freq[k]) << what << " table " << k;
  EXPECT_TRUE(got.assign == want.assign) << what;
}

TEST(PlanePlan, PlanFromCountsIsWhatTheEncoderWrites) {
  int coded = 0, several = 0;
  for (const auto& [what, plane] : sample_planes(testing::test_seed())) {
    for (bool sample_first : {false, true}) {
      const Counts c = count(plane);
      const planes::Plan got = planes::plan_plane(c.view(), sample_first);
      expect_same(got, written_plan(plane, sample_first), what + (sample_first ? " (mantissa)" : ""));
      coded += got.coded;
      several += got.coded && got.freq.size() > 1;
    }
  }
  // The cases above reach both outcomes and several tables.
  EXPECT_GT(coded, 10);
  EXPECT_GT(several, 2);
}

TEST(PlanePlan, AMantissaPlaneOfManyScalesGetsATablePerScale) {
  // Eight tensors of two segments each, every one on 16 symbols of its own:
  // one table spends 7 bits a symbol, eight spend 4, sixteen gain nothing
  // more. A mantissa plane (sample first) may take as many tables as an
  // exponent plane, and the search stops at the first count that gains
  // nothing (16 is then never clustered, and ties keep 8).
  const std::size_t n = 16 * kSegmentSymbols;
  std::mt19937_64 rng(testing::test_seed());
  Plane p(n);
  for (std::size_t i = 0; i < n; ++i)
    p[i] = static_cast<std::uint8_t>(32 * (i / (2 * kSegmentSymbols)) + rng() % 16);
  const Counts c = count(p);
  for (bool sample_first : {false, true}) {
    const planes::Plan got = planes::plan_plane(c.view(), sample_first);
    ASSERT_TRUE(got.coded);
    EXPECT_EQ(got.freq.size(), 8u) << "sample_first " << sample_first;
    expect_same(got, written_plan(p, sample_first), sample_first ? "mantissa" : "exponent");
  }
}

TEST(PlanePlan, TheSampleRuleIsPartOfThePlan) {
  // Every 16th symbol is noise, the others one value: the segments say
  // "code it", the sample says "raw".
  const std::size_t n = 4 * planes::kSampleMinSymbols;
  std::mt19937_64 rng(testing::test_seed());
  Plane p(n, 7);
  for (std::size_t i = 0; i < n; i += planes::kSampleStride) p[i] = static_cast<std::uint8_t>(rng());
  const Counts c = count(p);
  EXPECT_FALSE(planes::sample_pays(c.sampled.data(), n));
  EXPECT_FALSE(planes::plan_plane(c.view(), /*sample_first=*/true).coded);
  EXPECT_TRUE(planes::plan_plane(c.view(), /*sample_first=*/false).coded);
  // Below kSampleMinSymbols the sample is not used (and not read).
  EXPECT_FALSE(planes::uses_sample(planes::kSampleMinSymbols - 1, true));
  EXPECT_TRUE(planes::uses_sample(planes::kSampleMinSymbols, true));
  EXPECT_FALSE(planes::uses_sample(planes::kSampleMinSymbols, false));
  Plane small(p.begin(), p.begin() + planes::kSampleMinSymbols - 1);
  Counts cs = count(small);
  planes::SegmentCounts v = cs.view();
  v.sampled = nullptr;
  EXPECT_TRUE(planes::plan_plane(v, true).coded);
  expect_same(planes::plan_plane(v, true), written_plan(small, true), "short mantissa plane");
}

TEST(PlanePlan, AReusedPlannerPlansAsAFreshOne) {
  planes::Planner reused;
  const auto all = sample_planes(testing::test_seed() + 1);
  // Large planes first, then small ones: stale scratch would show.
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    const Counts c = count(it->second);
    const planes::Plan got = reused.plan(c.view(), false);
    expect_same(got, planes::plan_plane(c.view(), false), it->first);
  }
}

// The histogram counts exactly, whatever its sub-tables hold: one symbol
// repeated across and just short of the sub-tables' flush (16-bit
// counters), tails that are not a whole step, strided samples; and on the
// path for planes that one or two symbols dominate (a delta's high plane):
// the other symbols rare, a fifth of them (the buffer they are packed into
// fills many times), dominance lost halfway (the rest counted the plain
// way), two symbols, and sizes around the path's minimum and steps.
TEST(PlaneCoder, HistogramCountsExactly) {
  std::mt19937_64 rng(testing::test_seed());
  std::vector<Plane> planes_;
  for (std::size_t n : {std::size_t{0}, std::size_t{15}, std::size_t{16}, std::size_t{4095},
                        std::size_t{4096}, std::size_t{4096 + 63}, std::size_t{16385},
                        std::size_t{16 * 65520 - 1}, std::size_t{16 * 65520 + 7}, std::size_t{3'000'001}}) {
    planes_.emplace_back(n, std::uint8_t{0});
    auto fill = [&](auto symbol) {
      Plane p(n);
      for (std::size_t i = 0; i < n; ++i) p[i] = symbol(i);
      planes_.push_back(std::move(p));
    };
    auto any = [&] { return static_cast<std::uint8_t>(rng()); };
    fill([&](std::size_t) { return rng() % 8 == 0 ? any() : std::uint8_t{5}; });
    fill([&](std::size_t i) { return i % 997 == 3 || rng() % 64 == 0 ? any() : std::uint8_t{0}; });
    fill([&](std::size_t i) { return i >= 256 && rng() % 5 == 0 ? any() : std::uint8_t{9}; });
    fill([&](std::size_t i) { return i < n / 2 && rng() % 100 != 0 ? std::uint8_t{0} : any(); });
    fill([&](std::size_t) {
      return rng() % 50 == 0 ? any() : static_cast<std::uint8_t>(rng() % 2 ? 0 : 255);
    });
  }
  for (const Plane& p : planes_) {
    for (std::size_t stride : {std::size_t{1}, planes::kSampleStride}) {
      std::uint32_t want[rans::kAlphabet] = {}, got[rans::kAlphabet];
      for (std::size_t i = 0; i < p.size(); i += stride) ++want[p[i]];
      planes::histogram(p.data(), p.size(), stride, got);
      for (int s = 0; s < rans::kAlphabet; ++s)
        ASSERT_EQ(got[s], want[s]) << "n " << p.size() << " stride " << stride << " symbol " << s;
    }
  }
}

// A plane of many coded blocks decodes the same under every decoder loop
// (blocks go two at a time, an odd one alone), and a damaged block is
// named by its own index whichever half of a pair it is.
TEST(PlaneCoder, EveryDecodePathDecodesAPlaneAndNamesTheBadBlock) {
  std::mt19937_64 rng(testing::test_seed());
  for (std::size_t n :
       {3 * planes::kBlockSymbols + 1000, 4 * planes::kBlockSymbols, 5 * planes::kBlockSymbols}) {
    Plane p(n);
    for (std::size_t i = 0; i < n; ++i) {
      const std::size_t region = i / 40000 % 3;
      p[i] = static_cast<std::uint8_t>(100 + 20 * region + rng() % (region + 2));
      // The last size: a delta's high plane, mostly zero (well under a bit a symbol).
      if (n == 5 * planes::kBlockSymbols) p[i] = rng() % 50 == 0 ? static_cast<std::uint8_t>(rng() % 8) : 0;
    }
    planes::PlaneEncoder enc;
    std::vector<std::uint8_t> coded(n + planes::header_bound(n));
    bool is_coded = false;
    const std::size_t size = enc.encode(p.data(), n, false, coded.data(), 0, &is_coded);
    ASSERT_TRUE(is_coded);
    // The block sizes follow the table count, the tables and the choices.
    std::size_t at = 0;
    const std::size_t K = coded[at++];
    for (std::size_t k = 0; k < K; ++k) {
      std::uint32_t f[rans::kAlphabet];
      ASSERT_TRUE(rans::read_table(coded.data(), size, at, f).is_ok());
    }
    if (K > 1) at += (n + kSegmentSymbols - 1) / kSegmentSymbols;
    const std::size_t blocks = (n + planes::kBlockSymbols - 1) / planes::kBlockSymbols;
    std::vector<std::size_t> block_at(blocks);
    std::size_t data = at + 4 * blocks;
    for (std::size_t b = 0; b < blocks; ++b) {
      std::uint32_t st;
      std::memcpy(&st, coded.data() + at + 4 * b, 4);
      block_at[b] = data;
      data += st;
    }
    ASSERT_EQ(data, size);
    for (rans::DecodePath path :
         {rans::DecodePath::kScalar, rans::DecodePath::kAvx2, rans::DecodePath::kAvx512}) {
      const rans::DecodePath got = rans::set_decode_path(path);
      planes::PlaneDecoder dec;
      Plane out(n);
      std::size_t pos = 0;
      Status st = dec.decode(coded.data(), size, pos, n, out.data());
      ASSERT_TRUE(st.is_ok()) << st.to_string();
      EXPECT_EQ(pos, size);
      EXPECT_TRUE(out == p) << "path " << static_cast<int>(got) << " n " << n;
      for (std::size_t bad : {std::size_t{0}, std::size_t{1}, blocks - 1}) {
        auto damaged = coded;
        damaged[block_at[bad] + 3] ^= 0x40;  // a lane's final state
        pos = 0;
        st = dec.decode(damaged.data(), size, pos, n, out.data());
        EXPECT_EQ(st.code(), Code::kCorruption) << "path " << static_cast<int>(got) << " block " << bad;
        EXPECT_NE(st.message().find("block " + std::to_string(bad) + ":"), std::string::npos) << st.message();
      }
    }
    rans::set_decode_path(rans::DecodePath::kAuto);
  }
}

}  // namespace
}  // namespace ferry
