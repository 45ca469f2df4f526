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
  bool plan(const std::uint8_t* plane, std::size_t n, bool sample_first);
  std::uint64_t cluster(int k_want);

  std::size_t n_ = 0, segments_ = 0;
  std::vector<std::array<std::uint32_t, rans::kAlphabet>> seg_counts_;
  std::vector<std::uint32_t> seg_total_;
  std::vector<std::vector<std::uint8_t>> seg_symbols_;                     // symbols present in each segment
  std::vector<std::array<std::uint64_t, rans::kAlphabet / 64>> seg_bits_;  // the same as a bitmap
  std::vector<std::uint8_t> assign_, best_assign_;
  std::vector<std::array<std::uint32_t, rans::kAlphabet>> freq_, best_freq_;
  int best_k_ = 0;
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
