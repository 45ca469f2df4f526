// plane_coder.h: the byte-plane coder of version 2 float payloads
// (docs/FORMAT.md section 4.2): one plane of byte symbols coded with up to
// sixteen rANS tables, each 16384-symbol segment choosing its table, in
// blocks of 65536 symbols. It knows nothing of floats, so any byte plane
// (float planes, the XOR of two chunks) can be coded with it. The encoder
// is integer-only and deterministic (a GPU encoder can make the same bytes);
// the decoder checks every length and table before trusting it.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "base/status.h"
#include "codec/limits.h"
#include "codec/rans.h"

namespace ferry::planes {

inline constexpr std::size_t kBlockSymbols = kRansV2BlockSymbols;
inline constexpr std::size_t kSegmentSymbols = kRansV2SegmentSymbols;
inline constexpr int kMaxTables = kRansV2MaxTables;
static_assert(kBlockSymbols % kSegmentSymbols == 0 && kSegmentSymbols % kRansLanes == 0);

// Counts the symbols at indices 0, stride, 2*stride, ... of p[0..n).
void histogram(const std::uint8_t* p, std::size_t n, std::size_t stride,
               std::uint32_t counts[rans::kAlphabet]);

// Estimated bytes of coded symbols: ceil(sum count * cost[freq] / 2^19).
std::uint64_t estimate_bytes(const std::uint32_t counts[rans::kAlphabet],
                             std::uint32_t freq[rans::kAlphabet]);

// The most bytes encode() writes for a plane of n symbols (header and
// blocks; a coded plane is never larger than its n symbols plus this).
std::size_t header_bound(std::size_t n);

// Mantissa planes are first judged on every kSampleStride-th symbol (cheap,
// and nearly always "raw"); planes shorter than kSampleMinSymbols skip it.
inline constexpr std::size_t kSampleStride = 16;
inline constexpr std::size_t kSampleMinSymbols = 65536;

// The histograms a plane's plan is made from (FORMAT.md 4.2, "Encoder
// rule"): the counts of each 16384-symbol segment and, for a plane judged
// on its sample first, the counts of every kSampleStride-th symbol. Any
// engine that can count (the CPU encoder, a GPU kernel) gets the same plan
// from plan_plane.
struct SegmentCounts {
  std::size_t n = 0;                        // symbols in the plane
  const std::uint32_t* segments = nullptr;  // kAlphabet counts per segment, ceil(n / kSegmentSymbols) of them
  const std::uint32_t* sampled = nullptr;   // kAlphabet counts; read only when uses_sample(n, sample_first)
};

// Whether a plane of n symbols is first judged on its sample.
inline bool uses_sample(std::size_t n, bool sample_first) { return sample_first && n >= kSampleMinSymbols; }

// The sample rule alone: false when the sampled counts of a plane of n
// symbols already say "raw" (the encoder then need not count segments).
bool sample_pays(const std::uint32_t sampled[rans::kAlphabet], std::size_t n);

// The encoder's decision for one plane: whether it is coded and, when it
// is, its tables (1..kMaxTables, each normalised to 4096) and each
// segment's table.
struct Plan {
  bool coded = false;
  std::vector<std::array<std::uint32_t, rans::kAlphabet>> freq;  // one per table
  std::vector<std::uint8_t> assign;                              // one per segment, < freq.size()
};

// Reusable planning scratch. plan() is a pure function of its counts
// (integer-only, fixed order): the same counts give the same plan on any
// host, which is what lets a GPU encoder write the CPU encoder's bytes.
// A table's Q16 cost of each symbol (0 where absent), and the same costs
// split as hi << 15 | lo into 16-bit halves for the clustering's 16-bit
// multiply-adds (Planner's scratch).
struct UnitCosts {
  std::array<std::uint32_t, rans::kAlphabet> q16;
  alignas(64) std::array<std::int16_t, rans::kAlphabet> lo;
  alignas(64) std::array<std::int16_t, rans::kAlphabet> hi;
};

class Planner {
 public:
  // sample_first: a mantissa plane (the cheap sampled pre-check applies).
  // The plan stays valid until the next call.
  const Plan& plan(const SegmentCounts& counts, bool sample_first);

 private:
  std::uint64_t cluster(int k_want);
  void order_by_mean();
  std::uint64_t segment_bits(std::size_t s, const UnitCosts& u) const;

  std::size_t n_ = 0, segments_ = 0;
  const std::uint32_t* seg_counts_ = nullptr;  // segments_ * kAlphabet, the caller's, during plan()
  std::vector<std::uint32_t> seg_total_;
  std::vector<std::vector<std::uint8_t>> seg_symbols_;                     // symbols present in each segment
  std::vector<std::array<std::uint64_t, rans::kAlphabet / 64>> seg_bits_;  // the same as a bitmap
  // Segment s's counts as int16 (a segment holds at most 16384 symbols),
  // filled for the segments costed densely.
  const std::int16_t* counts16(std::size_t s) const { return seg_counts16_.data() + s * rans::kAlphabet; }

  std::vector<std::int16_t> seg_counts16_;
  std::vector<UnitCosts> unit_;         // per table, during cluster()
  std::vector<std::uint32_t> by_mean_;  // segments in order of mean symbol, set by plan()
  std::vector<std::uint8_t> assign_;
  std::vector<std::array<std::uint32_t, rans::kAlphabet>> freq_;
  Plan best_;
};

// Planner::plan with its own scratch (tests, one-off callers).
Plan plan_plane(const SegmentCounts& counts, bool sample_first);

// Reusable encoder scratch for one thread.
class PlaneEncoder {
 public:
  // Decides whether the plane of n symbols at `plane` is coded (FORMAT.md
  // 4.2, "When a plane is coded"); `sample_first` applies the cheap sampled
  // pre-check used for mantissa planes. When coded, writes the coded plane
  // at out[pos..] and returns the new pos with *coded = true; otherwise
  // writes nothing and returns pos. The output may overlap `plane` as long
  // as out + pos + header_bound(n) <= plane (blocks are written no further
  // than the input they have already read).
  std::size_t encode(const std::uint8_t* plane, std::size_t n, bool sample_first, std::uint8_t* out,
                     std::size_t pos, bool* coded);

 private:
  // Counts the plane and plans it; nullptr when it stays raw.
  const Plan* plan(const std::uint8_t* plane, std::size_t n, bool sample_first);

  std::vector<std::uint32_t> seg_counts_;  // kAlphabet per segment
  Planner planner_;
  std::unique_ptr<std::array<rans::EncTable, kMaxTables>> tables_;
  std::unique_ptr<rans::EncScratch> words_;
};

// Reusable decoder scratch for one thread.
class PlaneDecoder {
 public:
  // Decodes a coded plane of n symbols starting at in[pos] (the payload is
  // in[0..size)) into out[0..n); advances pos past it. Corruption names
  // what is wrong; the caller adds which plane.
  Status decode(const std::uint8_t* in, std::size_t size, std::size_t& pos, std::size_t n, std::uint8_t* out);

 private:
  std::unique_ptr<std::array<rans::DecTable, kMaxTables>> tables_;
};

}  // namespace ferry::planes
