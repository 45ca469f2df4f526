// plane_coder.cc: see plane_coder.h. The table choice is a small integer
// k-means over the plane's 16384-symbol segments: segments start in K
// groups by their mean symbol, then each moves to the table that codes it
// in the fewest (Q16) bits, a few rounds; the number of tables (1, 2, 4, 8
// or 16, doubled while the estimate shrinks) that gives the smallest
// estimate wins.
// Integer-only and in a fixed order, so the same plane always gives the
// same bytes.
#include "codec/plane_coder.h"

#include "codec/rans_table.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>
#include <string>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

namespace ferry::planes {
namespace {

using rans::kAlphabet;
using rans::kPresentBytes;
using rans::kStateBytes;

// A plane is coded only when the estimate is below 255/256 of its raw size
// (on the sample first, for mantissa planes).
constexpr std::uint64_t kPaysNum = 255;
constexpr std::uint64_t kPaysDen = 256;
constexpr std::uint64_t kSamplePaysNum = 255;
constexpr std::uint64_t kSamplePaysDen = 256;
// Rounds of moving segments between tables (measured on the corpus: more
// rounds change the size by under 0.01%).
constexpr int kClusterRounds = 4;
constexpr std::size_t kMaxTableBytes = kPresentBytes + 2 * kAlphabet;
constexpr std::uint64_t kNoFit = std::numeric_limits<std::uint64_t>::max();

std::size_t ceil_div(std::size_t a, std::size_t b) { return (a + b - 1) / b; }

void put_u32(std::uint8_t* p, std::uint32_t v) { std::memcpy(p, &v, 4); }
std::uint32_t get_u32(const std::uint8_t* p) {
  std::uint32_t x;
  std::memcpy(&x, p, 4);
  return x;
}

}  // namespace

namespace {

// Adds the counts of p[0..n) to `counts`. One sub-table per byte of two
// words breaks the store-to-load dependency when neighbouring symbols
// repeat (exponents cluster on a few values): with 16 tables a repeated
// symbol waits on one store-forward per 16 symbols, not per 8 (measured:
// 29% faster on such planes, the same on others). The sub-tables hold 16
// bits, so they are added into `counts` before any can pass 65535.
void add_counts(const std::uint8_t* p, std::size_t n, std::uint32_t counts[kAlphabet]) {
  constexpr int kSub = 16;
  // Each table gets at most kFlushSymbols / kSub symbols per flush, sub[0]
  // 15 more from the tail: 65535 in all.
  constexpr std::size_t kFlushSymbols = kSub * (65535 - 15);
  std::uint16_t sub[kSub][kAlphabet];
  for (std::size_t start = 0; start < n; start += kFlushSymbols) {
    std::memset(sub, 0, sizeof sub);
    const std::size_t end = std::min(n, start + kFlushSymbols);
    std::size_t i = start;
    for (; i + 16 <= end; i += 16) {
      std::uint64_t v, u;
      std::memcpy(&v, p + i, 8);
      std::memcpy(&u, p + i + 8, 8);
      // Written out: as a loop, GCC does not unroll it and it runs at half speed.
      ++sub[0][v & 0xff];
      ++sub[1][(v >> 8) & 0xff];
      ++sub[2][(v >> 16) & 0xff];
      ++sub[3][(v >> 24) & 0xff];
      ++sub[4][(v >> 32) & 0xff];
      ++sub[5][(v >> 40) & 0xff];
      ++sub[6][(v >> 48) & 0xff];
      ++sub[7][v >> 56];
      ++sub[8][u & 0xff];
      ++sub[9][(u >> 8) & 0xff];
      ++sub[10][(u >> 16) & 0xff];
      ++sub[11][(u >> 24) & 0xff];
      ++sub[12][(u >> 32) & 0xff];
      ++sub[13][(u >> 40) & 0xff];
      ++sub[14][(u >> 48) & 0xff];
      ++sub[15][u >> 56];
    }
    for (; i < end; ++i) ++sub[0][p[i]];
    for (int s = 0; s < kAlphabet; ++s) {
      std::uint32_t total = 0;
      for (int k = 0; k < kSub; ++k) total += sub[k][s];
      counts[s] += total;
    }
  }
}

#if defined(__x86_64__) && defined(__GNUC__)
// Planes where one or two symbols are nearly every symbol (a delta's high
// plane: 99.9% zeros; sparse tensors) are counted 64 symbols a step: a
// compare per dominant symbol and a popcount, and the few other symbols
// packed together (vpcompressb, into a register: its memory form is slow on
// AMD Zen 4) and counted by add_counts. Measured in 16384-symbol segments:
// a plane of 99.95% one symbol counted 3.6-3.9x faster than by add_counts
// alone, one of two symbols at 98% 2.8-3.1x; planes without dominant
// symbols (most weights' planes) at the same speed.
constexpr std::size_t kProbeSymbols = 256;  // a multiple of 64
constexpr std::size_t kDominantMinSymbols = 4096;
// The probe must find the dominant symbols at least this share of it...
constexpr std::size_t kDominantNum = 15;
constexpr std::size_t kDominantDen = 16;
// ...and the count stops taking this path (add_counts does the rest) once
// more than a quarter of a stretch of kRecheckSymbols is other symbols.
constexpr std::size_t kRecheckSymbols = 4096;
constexpr std::size_t kRestBytes = 4096;

bool cpu_has_avx512_compress() {
  static const bool has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512vbmi2");
  return has;
}

// Counts p[0..n) stretch by stretch while symbols `dom[0..K)` keep their
// share; returns how many symbols it counted (a multiple of 64).
template <int K>
__attribute__((target("avx512f,avx512bw,avx512vbmi2,popcnt"))) std::size_t count_dominant(
    const std::uint8_t* p, std::size_t n, const std::uint8_t (&dom)[2], std::uint32_t counts[kAlphabet]) {
  __m512i sym[K];
  for (int k = 0; k < K; ++k) sym[k] = _mm512_set1_epi8(static_cast<char>(dom[k]));
  std::uint8_t rest[kRestBytes + 64];
  std::uint64_t dominant[K] = {};
  std::size_t fill = 0, i = 0;
  while (i + kRecheckSymbols <= n) {
    std::uint64_t others = 0;
    for (const std::size_t end = i + kRecheckSymbols; i < end; i += 64) {
      const __m512i v = _mm512_loadu_si512(p + i);
      __mmask64 matched = 0;
      for (int k = 0; k < K; ++k) {
        const __mmask64 m = _mm512_cmpeq_epi8_mask(v, sym[k]);
        dominant[k] += static_cast<std::uint64_t>(std::popcount(m));
        matched |= m;
      }
      const __mmask64 other = ~matched;
      if (other == 0) continue;
      _mm512_storeu_si512(rest + fill, _mm512_maskz_compress_epi8(other, v));
      const auto c = static_cast<std::size_t>(std::popcount(other));
      fill += c;
      others += c;
      if (fill > kRestBytes) {
        add_counts(rest, fill, counts);
        fill = 0;
      }
    }
    if (others * 4 > kRecheckSymbols) break;
  }
  add_counts(rest, fill, counts);
  for (int k = 0; k < K; ++k) counts[dom[k]] += static_cast<std::uint32_t>(dominant[k]);
  return i;
}

// Whether symbols a and b are at least kDominantNum / kDominantDen of
// p[0..kProbeSymbols).
__attribute__((target("avx512f,avx512bw,popcnt"))) bool dominant_in_probe(const std::uint8_t* p,
                                                                          std::uint8_t a, std::uint8_t b) {
  const __m512i va = _mm512_set1_epi8(static_cast<char>(a));
  const __m512i vb = _mm512_set1_epi8(static_cast<char>(b));
  std::size_t hits = 0;
  for (std::size_t i = 0; i < kProbeSymbols; i += 64) {
    const __m512i v = _mm512_loadu_si512(p + i);
    hits += static_cast<std::size_t>(
        std::popcount(_mm512_cmpeq_epi8_mask(v, va) | _mm512_cmpeq_epi8_mask(v, vb)));
  }
  return hits * kDominantDen >= kProbeSymbols * kDominantNum;
}

// Counts a leading part of p[0..n) when one or two symbols are nearly all
// of its first kProbeSymbols, adding to `counts`; returns how many symbols
// it counted. The candidates are the first symbol and the first other one;
// the probe is a few vector compares, so planes without such symbols (most
// weights' planes) lose little to it.
std::size_t count_if_dominant(const std::uint8_t* p, std::size_t n, std::uint32_t counts[kAlphabet]) {
  if (n < kDominantMinSymbols || !cpu_has_avx512_compress()) return 0;
  std::uint8_t dom[2] = {p[0], p[0]};
  if (dominant_in_probe(p, dom[0], dom[0])) return count_dominant<1>(p, n, dom, counts);
  for (std::size_t i = 1; i < kProbeSymbols; ++i) {
    if (p[i] != dom[0]) {
      dom[1] = p[i];
      return dominant_in_probe(p, dom[0], dom[1]) ? count_dominant<2>(p, n, dom, counts) : 0;
    }
  }
  return 0;
}
#else
std::size_t count_if_dominant(const std::uint8_t*, std::size_t, std::uint32_t*) { return 0; }
#endif

}  // namespace

void histogram(const std::uint8_t* p, std::size_t n, std::size_t stride, std::uint32_t counts[kAlphabet]) {
  std::memset(counts, 0, kAlphabet * sizeof(std::uint32_t));
  if (stride != 1) {
    // The sample: four tables in turn, for the same reason as add_counts'
    // sub-tables (measured: a skewed plane's sample counted in a third of
    // the time).
    std::uint32_t four[4][kAlphabet] = {};
    std::size_t i = 0;
    for (; i + 3 * stride < n; i += 4 * stride) {
      ++four[0][p[i]];
      ++four[1][p[i + stride]];
      ++four[2][p[i + 2 * stride]];
      ++four[3][p[i + 3 * stride]];
    }
    for (; i < n; i += stride) ++four[0][p[i]];
    for (int s = 0; s < kAlphabet; ++s) counts[s] = four[0][s] + four[1][s] + four[2][s] + four[3][s];
    return;
  }
  const std::size_t done = count_if_dominant(p, n, counts);
  add_counts(p + done, n - done, counts);
}

std::uint64_t estimate_bytes(const std::uint32_t counts[kAlphabet], std::uint32_t freq[kAlphabet]) {
  rans::normalize_freqs(counts, freq);
  return (rans::estimate_bits_q16(counts, freq) + (1u << 19) - 1) >> 19;
}

std::size_t header_bound(std::size_t n) {
  return 1 + kMaxTables * kMaxTableBytes + ceil_div(n, kSegmentSymbols) + 4 * ceil_div(n, kBlockSymbols);
}

namespace {

void set_unit_costs(const std::uint32_t* freq, UnitCosts& u) {
  const std::uint32_t* cost = rans::cost_table_q16();
  static_assert((12u << 16) >> 15 < 32768);  // the largest cost's high half fits
  for (int c = 0; c < kAlphabet; ++c) {
    const std::uint32_t q = cost[freq[c]];  // 0 where absent
    u.q16[c] = q;
    u.lo[c] = static_cast<std::int16_t>(q & 0x7fff);
    u.hi[c] = static_cast<std::int16_t>(q >> 15);
  }
}

// Q16 bits of a segment's counts under a table, summed over all 256
// symbols (counts of absent symbols are zero). For segments that hold most
// symbols (mantissa planes), where a walk over the present symbols is slower
// than the whole dense sum.
std::uint64_t dense_cost_scalar(const std::uint32_t* counts, const UnitCosts& u) {
  std::uint64_t bits = 0;
  for (int x = 0; x < kAlphabet; ++x) bits += static_cast<std::uint64_t>(counts[x]) * u.q16[x];
  return bits;
}

#if defined(__x86_64__) && defined(__GNUC__)
// GCC 12's AVX-512 headers pass _mm512_undefined_epi32() as the unused
// merge source of unmasked intrinsics, which -Wuninitialized flags.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// The same sum in 16-bit multiply-adds, 32 symbols an instruction, from the
// segment's counts as int16 (a segment holds at most 16384 symbols). Exact:
// each half's sum is at most 16384 * 32767 < 2^31, so its 32-bit lanes never
// overflow. The clustering costs every segment under every table in every
// round, so this is its inner loop: under half the instructions of 32x32-bit
// multiplies into 64-bit sums.
__attribute__((target("avx512f,avx512bw"))) std::uint64_t dense_cost_avx512(const std::int16_t* counts,
                                                                            const UnitCosts& u) {
  __m512i lo = _mm512_setzero_si512(), hi = _mm512_setzero_si512();
  for (int x = 0; x < kAlphabet; x += 32) {
    const __m512i c = _mm512_loadu_si512(counts + x);
    lo = _mm512_add_epi32(lo, _mm512_madd_epi16(c, _mm512_load_si512(u.lo.data() + x)));
    hi = _mm512_add_epi32(hi, _mm512_madd_epi16(c, _mm512_load_si512(u.hi.data() + x)));
  }
  return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(_mm512_reduce_add_epi32(hi))) << 15) +
         static_cast<std::uint32_t>(_mm512_reduce_add_epi32(lo));
}
#pragma GCC diagnostic pop
bool cpu_has_avx512f() {
  static const bool has = __builtin_cpu_supports("avx512f");
  return has;
}
bool cpu_has_avx512bw() {
  static const bool has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
  return has;
}
#endif

// counts16: the same counts as int16, read only on the vector path.
std::uint64_t dense_cost(const std::uint32_t* counts, const std::int16_t* counts16, const UnitCosts& u) {
#if defined(__x86_64__) && defined(__GNUC__)
  if (cpu_has_avx512bw()) return dense_cost_avx512(counts16, u);
#endif
  return dense_cost_scalar(counts, u);
}

// Segments with more present symbols than this are costed densely.
constexpr std::size_t kDenseSymbols = 64;

using SymbolBits = std::array<std::uint64_t, kAlphabet / 64>;

SymbolBits present_bits_scalar(const std::uint32_t* counts) {
  SymbolBits bits{};
  for (int x = 0; x < kAlphabet; ++x) bits[x / 64] |= static_cast<std::uint64_t>(counts[x] != 0) << (x % 64);
  return bits;
}

#if defined(__x86_64__) && defined(__GNUC__)
// 16 counts a compare (a branch per symbol mispredicts on planes where
// about half the symbols are present).
__attribute__((target("avx512f"))) SymbolBits present_bits_avx512(const std::uint32_t* counts) {
  SymbolBits bits{};
  for (int x = 0; x < kAlphabet; x += 16) {
    const __m512i c = _mm512_loadu_si512(counts + x);
    bits[x / 64] |= static_cast<std::uint64_t>(_mm512_test_epi32_mask(c, c)) << (x % 64);
  }
  return bits;
}
#endif

SymbolBits present_bits(const std::uint32_t* counts) {
#if defined(__x86_64__) && defined(__GNUC__)
  if (cpu_has_avx512f()) return present_bits_avx512(counts);
#endif
  return present_bits_scalar(counts);
}

// Whether every symbol of `segment` is present in `table`.
bool covers(const SymbolBits& table, const SymbolBits& segment) {
  std::uint64_t missing = 0;
  for (std::size_t i = 0; i < table.size(); ++i) missing |= segment[i] & ~table[i];
  return missing == 0;
}

// g[c] += counts[c] for every symbol, in vector adds: written inline in the
// clustering, the compiler could not rule out that the two overlap and
// added one count a store at a time (5% of a 4 MiB fp16 chunk's encode).
void add_all_counts(std::uint32_t* __restrict g, const std::uint32_t* __restrict counts) {
  for (int c = 0; c < kAlphabet; ++c) g[c] += counts[c];
}
void sub_all_counts(std::uint32_t* __restrict g, const std::uint32_t* __restrict counts) {
  for (int c = 0; c < kAlphabet; ++c) g[c] -= counts[c];
}

}  // namespace

// The segments sorted by (mean symbol, index): where cluster() starts its
// groups, the same for every table count, so counted once per plane.
void Planner::order_by_mean() {
  const std::size_t S = segments_;
  std::vector<std::pair<std::uint32_t, std::uint32_t>> order(S);
  for (std::size_t s = 0; s < S; ++s) {
    std::uint64_t sum = 0;
    for (std::uint8_t c : seg_symbols_[s])
      sum += static_cast<std::uint64_t>(c) * seg_counts_[s * kAlphabet + c];
    order[s] = {static_cast<std::uint32_t>(sum / seg_total_[s]), static_cast<std::uint32_t>(s)};
  }
  std::sort(order.begin(), order.end());
  by_mean_.resize(S);
  for (std::size_t i = 0; i < S; ++i) by_mean_[i] = order[i].second;
}

// Q16 bits of segment s under a table: densely where the segment holds
// most symbols, else over its present symbols (a table lacking one of them
// is the caller's to rule out).
std::uint64_t Planner::segment_bits(std::size_t s, const UnitCosts& u) const {
  const std::uint32_t* counts = seg_counts_ + s * kAlphabet;
  if (seg_symbols_[s].size() > kDenseSymbols) return dense_cost(counts, counts16(s), u);
  std::uint64_t bits = 0;
  for (std::uint8_t x : seg_symbols_[s]) bits += static_cast<std::uint64_t>(counts[x]) * u.q16[x];
  return bits;
}

// Clusters the segments into at most k_want tables (FORMAT.md 4.2) and
// returns the estimated coded size in bytes; assign_ and freq_ hold the
// result, with the tables that ended empty removed. A round in which no
// segment moves leaves the tables as they are, so the rounds stop there:
// the result is that of all kClusterRounds rounds.
std::uint64_t Planner::cluster(int k_want) {
  const std::size_t S = segments_;
  const auto K = static_cast<std::size_t>(k_want);
  assign_.assign(S, 0);
  if (K > 1) {
    // Start: K groups of consecutive segments in order of mean symbol.
    for (std::size_t i = 0; i < S; ++i) assign_[by_mean_[i]] = static_cast<std::uint8_t>(i * K / S);
  }
  freq_.resize(K);
  std::vector<std::array<std::uint32_t, kAlphabet>> group_counts(K);
  std::vector<std::uint32_t> group_total(K);
  // Segment s into (add) or out of group k's counts. A segment that moves
  // changes two groups, so a round renormalises only the groups that
  // gained or lost a segment: the tables are those a rebuild from all
  // segments would give (integer sums), at the cost of the moves alone.
  auto move_counts = [&](std::size_t s, std::size_t k, bool add) {
    std::uint32_t* g = group_counts[k].data();
    const std::uint32_t* counts = seg_counts_ + s * kAlphabet;
    if (seg_symbols_[s].size() > kDenseSymbols) {
      // Every count (absent ones are zero): vector adds, where a walk over
      // the present symbols waits on a store per symbol.
      add ? add_all_counts(g, counts) : sub_all_counts(g, counts);
    } else if (add) {
      for (std::uint8_t c : seg_symbols_[s]) g[c] += counts[c];
    } else {
      for (std::uint8_t c : seg_symbols_[s]) g[c] -= counts[c];
    }
    add ? group_total[k] += seg_total_[s] : group_total[k] -= seg_total_[s];
  };
  if (unit_.size() < K) unit_.resize(K);  // kept across calls: a resize up zero-fills
  std::vector<SymbolBits> table_bits(K);
  std::vector<std::uint8_t> changed(K, 1);
  auto renormalise = [&] {
    for (std::size_t k = 0; k < K; ++k) {
      if (!changed[k]) continue;
      changed[k] = 0;
      if (group_total[k] == 0) {
        freq_[k].fill(0);
      } else {
        rans::normalize_freqs(group_counts[k].data(), freq_[k].data());
      }
      set_unit_costs(freq_[k].data(), unit_[k]);
      table_bits[k] = present_bits(freq_[k].data());
    }
  };
  for (auto& g : group_counts) g.fill(0);
  for (std::size_t s = 0; s < S; ++s) move_counts(s, assign_[s], true);
  renormalise();
  std::vector<std::pair<std::uint32_t, std::uint8_t>> moves;  // (segment, the group it left)
  for (int round = 0; K > 1 && round < kClusterRounds; ++round) {
    moves.clear();
    for (std::size_t s = 0; s < S; ++s) {
      std::uint64_t best = kNoFit;
      std::uint8_t choice = assign_[s];
      for (std::size_t k = 0; k < K; ++k) {
        if (group_total[k] == 0 || !covers(table_bits[k], seg_bits_[s])) continue;
        const std::uint64_t c = segment_bits(s, unit_[k]);
        if (c < best) {  // ties keep the lower table
          best = c;
          choice = static_cast<std::uint8_t>(k);
        }
      }
      if (choice != assign_[s]) moves.emplace_back(static_cast<std::uint32_t>(s), assign_[s]);
      assign_[s] = choice;
    }
    if (moves.empty()) break;
    for (const auto& [seg, from] : moves) {
      move_counts(seg, from, false);
      move_counts(seg, assign_[seg], true);
      changed[from] = changed[assign_[seg]] = 1;
    }
    renormalise();
  }
  // Drop empty tables, keeping the others in order.
  std::uint8_t remap[kMaxTables] = {};
  std::size_t used = 0;
  for (std::size_t k = 0; k < K; ++k) {
    if (group_total[k] == 0) continue;
    remap[k] = static_cast<std::uint8_t>(used);
    if (used != k) {
      freq_[used] = freq_[k];
      unit_[used] = unit_[k];
    }
    ++used;
  }
  freq_.resize(used);
  for (auto& a : assign_) a = remap[a];

  // Every segment's symbols are in its own table now (the tables were built
  // from the groups' counts), so no segment is kNoFit.
  std::uint64_t bits = 0;
  for (std::size_t s = 0; s < S; ++s) bits += segment_bits(s, unit_[assign_[s]]);
  std::uint64_t bytes = 1 + (used > 1 ? S : 0) + (4 + kStateBytes) * ceil_div(n_, kBlockSymbols);
  for (const auto& f : freq_) {
    bytes += kPresentBytes;
    for (std::uint32_t v : f) bytes += v ? 2 : 0;
  }
  return bytes + ((bits + (1u << 19) - 1) >> 19);
}

bool sample_pays(const std::uint32_t sampled[kAlphabet], std::size_t n) {
  std::uint32_t freq[kAlphabet];
  const std::uint64_t samples = ceil_div(n, kSampleStride);
  return estimate_bytes(sampled, freq) * kSamplePaysDen < samples * kSamplePaysNum;
}

const Plan& Planner::plan(const SegmentCounts& counts, bool sample_first) {
  best_.coded = false;
  const std::size_t n = counts.n;
  if (n == 0) return best_;
  if (uses_sample(n, sample_first) && !sample_pays(counts.sampled, n)) return best_;
  n_ = n;
  segments_ = ceil_div(n, kSegmentSymbols);
  seg_counts_ = counts.segments;
  seg_total_.resize(segments_);
  seg_symbols_.resize(segments_);
  seg_bits_.resize(segments_);
  for (std::size_t s = 0; s < segments_; ++s) {
    seg_total_[s] = static_cast<std::uint32_t>(std::min(kSegmentSymbols, n - s * kSegmentSymbols));
    seg_bits_[s] = present_bits(seg_counts_ + s * kAlphabet);
    seg_symbols_[s].clear();  // in ascending order, from the bitmap
    for (std::size_t w = 0; w < seg_bits_[s].size(); ++w) {
      for (std::uint64_t m = seg_bits_[s][w]; m != 0; m &= m - 1)
        seg_symbols_[s].push_back(
            static_cast<std::uint8_t>(64 * w + static_cast<std::size_t>(std::countr_zero(m))));
    }
    if (seg_symbols_[s].size() > kDenseSymbols) {
      seg_counts16_.resize(segments_ * kAlphabet);
      const std::uint32_t* from = seg_counts_ + s * kAlphabet;
      std::int16_t* to = seg_counts16_.data() + s * kAlphabet;
      for (int c = 0; c < kAlphabet; ++c) to[c] = static_cast<std::int16_t>(from[c]);  // <= 16384
    }
  }
  order_by_mean();
  // Tables double while the estimate shrinks; the first count that does not
  // beat the best so far ends the search. A mantissa plane clusters at 256
  // symbols per segment and table, so trying every count up to 16 cost 10-17%
  // of its encode; stopping early keeps most of that (measured on the corpus:
  // 913 bytes of 195 MB more than trying every count) while planes that gain
  // from many tables, such as a fine-tuned bf16 delta's mantissa differences,
  // still get them.
  std::uint64_t best = kNoFit;
  for (int k = 1; k <= kMaxTables && static_cast<std::size_t>(k) <= segments_; k *= 2) {
    std::uint64_t est = cluster(k);
    if (est >= best) break;  // ties keep fewer tables
    best = est;
    best_.assign.swap(assign_);
    best_.freq.swap(freq_);
  }
  seg_counts_ = nullptr;  // the caller's; not kept past this call
  best_.coded = best * kPaysDen < n * kPaysNum;
  return best_;
}

Plan plan_plane(const SegmentCounts& counts, bool sample_first) {
  Planner planner;
  return planner.plan(counts, sample_first);
}

const Plan* PlaneEncoder::plan(const std::uint8_t* plane, std::size_t n, bool sample_first) {
  if (n == 0) return nullptr;
  SegmentCounts counts;
  counts.n = n;
  std::uint32_t sampled[kAlphabet];
  if (uses_sample(n, sample_first)) {
    // Judged on the sample before any segment is counted: most mantissa
    // planes stop here.
    histogram(plane, n, kSampleStride, sampled);
    if (!sample_pays(sampled, n)) return nullptr;
    counts.sampled = sampled;
  }
  const std::size_t segments = ceil_div(n, kSegmentSymbols);
  seg_counts_.resize(segments * kAlphabet);
  for (std::size_t s = 0; s < segments; ++s) {
    const std::size_t begin = s * kSegmentSymbols;
    histogram(plane + begin, std::min(kSegmentSymbols, n - begin), 1, seg_counts_.data() + s * kAlphabet);
  }
  counts.segments = seg_counts_.data();
  const Plan& p = planner_.plan(counts, sample_first);
  return p.coded ? &p : nullptr;
}

std::size_t PlaneEncoder::encode(const std::uint8_t* plane, std::size_t n, bool sample_first,
                                 std::uint8_t* out, std::size_t pos, bool* coded) {
  const Plan* plan = this->plan(plane, n, sample_first);
  *coded = plan != nullptr;
  if (!plan) return pos;
  if (!tables_) tables_ = std::make_unique<std::array<rans::EncTable, kMaxTables>>();
  if (!words_) words_ = std::make_unique<rans::EncScratch>();
  const std::size_t K = plan->freq.size();
  const std::size_t segments = plan->assign.size();
  out[pos++] = static_cast<std::uint8_t>(K);
  for (std::size_t k = 0; k < K; ++k) {
    const std::uint32_t* freq = plan->freq[k].data();
    (*tables_)[k].build(freq);
    pos += rans::write_table(freq, out + pos);
  }
  if (K > 1) {
    std::memcpy(out + pos, plan->assign.data(), segments);
    pos += segments;
  }
  const std::size_t blocks = ceil_div(n, kBlockSymbols);
  std::uint8_t* stored = out + pos;
  pos += 4 * blocks;
  constexpr std::size_t kPerBlock = kBlockSymbols / kSegmentSymbols;
  for (std::size_t b = 0; b < blocks; ++b) {
    const std::uint8_t* sym = plane + b * kBlockSymbols;
    const std::size_t m = std::min(kBlockSymbols, n - b * kBlockSymbols);
    rans::EncSegment segs[kPerBlock];
    std::size_t count = 0;
    for (std::size_t off = 0; off < m; off += kSegmentSymbols) {
      const std::size_t s = (b * kBlockSymbols + off) / kSegmentSymbols;
      segs[count++] = {&(*tables_)[plan->assign[s]], sym + off, std::min(kSegmentSymbols, m - off)};
    }
    std::size_t size = rans::encode_segments(std::span(segs, count), *words_, out + pos);
    if (size == m) std::memmove(out + pos, sym, m);  // may overlap the plane: see header_bound
    put_u32(stored + 4 * b, static_cast<std::uint32_t>(size));
    pos += size;
  }
  return pos;
}

Status PlaneDecoder::decode(const std::uint8_t* in, std::size_t size, std::size_t& pos, std::size_t n,
                            std::uint8_t* out) {
  auto corrupt = [](const std::string& what) { return Status::corruption(what); };
  if (n == 0) return corrupt("coded plane with no symbols");
  if (size - pos < 1) return corrupt("truncated table count");
  const std::size_t K = in[pos++];
  if (K < 1 || K > static_cast<std::size_t>(kMaxTables))
    return corrupt("table count " + std::to_string(K) + " not in 1.." + std::to_string(kMaxTables));
  if (!tables_) tables_ = std::make_unique<std::array<rans::DecTable, kMaxTables>>();
  for (std::size_t k = 0; k < K; ++k) {
    std::uint32_t freq[kAlphabet];
    if (Status st = rans::read_table(in, size, pos, freq); !st.is_ok())
      return corrupt("table " + std::to_string(k) + ": " + st.message());
    (*tables_)[k].build(freq);
  }
  const std::size_t S = ceil_div(n, kSegmentSymbols);
  const std::uint8_t* sel = nullptr;
  if (K > 1) {
    if (size - pos < S) return corrupt("truncated table choices");
    sel = in + pos;
    for (std::size_t s = 0; s < S; ++s)
      if (sel[s] >= K)
        return corrupt("segment " + std::to_string(s) + " chooses table " + std::to_string(sel[s]) + " of " +
                       std::to_string(K));
    pos += S;
  }
  const std::size_t blocks = ceil_div(n, kBlockSymbols);
  if ((size - pos) / 4 < blocks) return corrupt("truncated block sizes");
  const std::uint8_t* stored = in + pos;
  pos += 4 * blocks;
  std::size_t need = 0;
  for (std::size_t b = 0; b < blocks; ++b) {
    const std::size_t m = std::min(kBlockSymbols, n - b * kBlockSymbols);
    const std::size_t st = get_u32(stored + 4 * b);
    if (st != m && (st > m || st % 2 != 0 || st < kStateBytes))
      return corrupt("block " + std::to_string(b) + ": stored size " + std::to_string(st) + " invalid for " +
                     std::to_string(m) + " symbols");
    need += st;
  }
  if (size - pos < need) return corrupt("blocks truncated");
  constexpr std::size_t kPerBlock = kBlockSymbols / kSegmentSymbols;
  struct Block {
    rans::DecSegment segs[kPerBlock];
    std::size_t count = 0;
    std::size_t at = 0;  // offset of its stored bytes in `in`
    std::size_t stored = 0;
  };
  auto segments_of = [&](std::size_t b, Block& blk) {
    const std::size_t m = std::min(kBlockSymbols, n - b * kBlockSymbols);
    std::uint8_t* o = out + b * kBlockSymbols;
    blk.count = 0;
    for (std::size_t off = 0; off < m; off += kSegmentSymbols) {
      const std::size_t s = (b * kBlockSymbols + off) / kSegmentSymbols;
      blk.segs[blk.count++] = {&(*tables_)[sel ? sel[s] : 0], o + off, std::min(kSegmentSymbols, m - off)};
    }
  };
  auto decode_one = [&](std::size_t b, const Block& blk) -> Status {
    Status s = rans::decode_segments(in + blk.at, blk.stored, std::span(blk.segs, blk.count));
    if (!s.is_ok()) return corrupt("block " + std::to_string(b) + ": " + s.message());
    return Status::ok();
  };
  // Coded blocks are decoded two at a time (independent states, decoded
  // interleaved); a pair that fails is decoded again one by one so the
  // error names the first bad block.
  Block pending;
  std::size_t pending_b = 0;
  bool have_pending = false;
  for (std::size_t b = 0; b < blocks; ++b) {
    const std::size_t m = std::min(kBlockSymbols, n - b * kBlockSymbols);
    const std::size_t st = get_u32(stored + 4 * b);
    if (st == m) {
      std::memcpy(out + b * kBlockSymbols, in + pos, m);
      pos += st;
      continue;
    }
    Block blk;
    segments_of(b, blk);
    blk.at = pos;
    blk.stored = st;
    pos += st;
    if (!have_pending) {
      pending = blk;
      pending_b = b;
      have_pending = true;
      continue;
    }
    have_pending = false;
    const rans::DecBlockRef first{in + pending.at, pending.stored, std::span(pending.segs, pending.count)};
    const rans::DecBlockRef second{in + blk.at, blk.stored, std::span(blk.segs, blk.count)};
    if (!rans::decode_segments_pair(first, second).is_ok()) {
      RETURN_IF_ERROR(decode_one(pending_b, pending));
      RETURN_IF_ERROR(decode_one(b, blk));
      return Status::internal("block " + std::to_string(pending_b) + " or " + std::to_string(b) +
                              ": failed in a pair but not alone");
    }
  }
  if (have_pending) RETURN_IF_ERROR(decode_one(pending_b, pending));
  return Status::ok();
}

}  // namespace ferry::planes
