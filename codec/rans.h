// rans.h: the block-level rANS coder under the float codec (docs/FORMAT.md
// section 4): integer frequency normalisation, the Q16 cost table that decides
// whether a plane is worth coding, and encode/decode of one block of at most
// 16384 byte symbols with 32 interleaved 32-bit states and 16-bit words.
// Everything is integer-only and independent of thread count, so a GPU
// encoder can produce the same bytes.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

#include "base/status.h"
#include "codec/limits.h"

namespace ferry::rans {

inline constexpr int kAlphabet = 256;
inline constexpr int kLanes = kRansLanes;
inline constexpr std::uint32_t kProbBits = kRansProbBits;
inline constexpr std::uint32_t kProbScale = kRansProbScale;  // M
inline constexpr std::uint32_t kStateLow = kRansStateLow;    // L
inline constexpr std::size_t kBlockSymbols = kRansBlockSymbols;
// A coded block starts with the 32 final encoder states.
inline constexpr std::size_t kStateBytes = kLanes * sizeof(std::uint32_t);
// The symbol-presence bitmap in front of a coded plane's table.
inline constexpr std::size_t kPresentBytes = kAlphabet / 8;

// cost_q16(f) = -log2(f / 4096) in Q16 fixed point (truncated), f in 1..4096:
// the bits a symbol of frequency f costs. Computed at compile time by integer
// bit-by-bit log2, so every platform gets the same table.
std::uint32_t cost_q16(std::uint32_t freq);
// The same costs as a table of 4097 entries, for loops; entry 0 is 0 (an
// absent symbol costs nothing), so a loop may index it by any freq.
const std::uint32_t* cost_table_q16();

// Normalises counts of the 256 symbols to frequencies that sum to exactly
// 4096, each present symbol >= 1, absent ones 0 (FORMAT.md's rule).
// REQUIRES: at least one count is non-zero.
void normalize_freqs(const std::uint32_t counts[kAlphabet], std::uint32_t freq[kAlphabet]);

// Sum over symbols of count[s] * cost_q16(freq[s]): the estimated size of
// the coded symbols in Q16 bits.
std::uint64_t estimate_bits_q16(const std::uint32_t counts[kAlphabet], const std::uint32_t freq[kAlphabet]);

// Per-symbol encoder constants. Division by freq is a multiply by a 64-bit
// reciprocal ceil(2^64 / freq): with x < 2^32 the rounding error x*e/2^64
// (e < freq <= 2^12) stays below 2^-20, so the quotient is exact for every
// state. freq == 1 uses rcp = 2^64 - 1 (quotient x - 1) and folds the
// difference into bias.
struct EncSymbol {
  std::uint64_t rcp;
  std::uint32_t bias;          // cum, or cum + M - 1 when freq == 1
  std::uint32_t cmpl;          // M - freq
  std::uint32_t renorm_above;  // emit a word while x > this ((freq << 20) - 1)
  std::uint32_t freq;
};

class EncTable {
 public:
  // REQUIRES: freq sums to 4096.
  void build(const std::uint32_t freq[kAlphabet]);
  const EncSymbol& operator[](std::uint8_t s) const { return sym_[s]; }
  // For the vector encoder: freq | cum << 13, and floor(2^32 / freq)
  // (2^32 - 1 for freq 1), a quotient estimate that is exact or one low and
  // is corrected with an integer remainder check.
  const std::uint32_t* packed() const { return packed_.data(); }
  const std::uint32_t* rcp32() const { return rcp32_.data(); }
  // For the AVX-512 encoder, which looks symbols up with byte permutes
  // instead of gathers: kByteTables tables of 256 bytes each, bytes 0-2 of
  // (freq - 1) | cum << 12, then bytes 0-3 of rcp32.
  static constexpr int kByteTables = 7;
  const std::uint8_t* byte_tables() const { return bytes_.data(); }

  // One encoder step on a state, exactly as FORMAT.md specifies (used by
  // tests to check the reciprocal against true division).
  static std::uint32_t quotient(std::uint32_t x, const EncSymbol& e) {
    return static_cast<std::uint32_t>((static_cast<unsigned __int128>(x) * e.rcp) >> 64);
  }

 private:
  std::array<EncSymbol, kAlphabet> sym_{};
  alignas(32) std::array<std::uint32_t, kAlphabet> packed_{};
  alignas(32) std::array<std::uint32_t, kAlphabet> rcp32_{};
  alignas(64) std::array<std::uint8_t, kByteTables * kAlphabet> bytes_{};
};

// Decoder table: one packed u32 per slot (x mod 4096):
// bits 0-7 symbol, 8-19 freq - 1, 20-31 slot - cum[symbol].
class DecTable {
 public:
  // REQUIRES: freq sums to 4096 (the caller has validated a hostile table).
  void build(const std::uint32_t freq[kAlphabet]);
  const std::uint32_t* data() const { return slot_.data(); }

 private:
  alignas(64) std::array<std::uint32_t, kProbScale> slot_{};
};

// The largest block encode_segments codes (a version 2 float payload block).
inline constexpr std::size_t kMaxBlockSymbols = kRansV2BlockSymbols;

// Reusable word buffer for encode_block: one word per symbol at most, plus
// room below for the vector encoder's 8-word stores.
struct EncScratch {
  std::array<std::uint16_t, kMaxBlockSymbols + 16> words;
};

// Which encoder loop encode_block runs. kAuto picks the widest the CPU
// has; every path writes identical bytes (tests force each in turn).
enum class EncodePath { kAuto, kScalar, kAvx2, kAvx512 };
// Sets the path for the whole process; a path the CPU lacks falls back to
// the next narrower one. Returns the path now in effect.
EncodePath set_encode_path(EncodePath path);

// Encodes m (1..16384) symbols. When the coded form (128 state bytes plus
// the words) is strictly smaller than m, writes it to out and returns its
// size; otherwise returns m and writes nothing (the block is stored raw).
// REQUIRES: out has room for m bytes; every symbol has freq >= 1.
std::size_t encode_block(const EncTable& table, const std::uint8_t* symbols, std::size_t m,
                         EncScratch& scratch, std::uint8_t* out);

// A run of a block's symbols coded with one table (version 2 float
// payloads switch tables inside a block). The segments of a block are its
// symbols in order; every segment but the last holds a multiple of 32
// symbols, so symbol i of the block is always in lane i mod 32.
struct EncSegment {
  const EncTable* table;
  const std::uint8_t* symbols;
  std::size_t m;
};
struct DecSegment {
  const DecTable* table;
  std::uint8_t* out;
  std::size_t m;
};

// encode_block over segments whose symbols total m (1..kMaxBlockSymbols):
// the states run on from one segment's table to the next. Same contract as
// encode_block; encode_block is this with one segment.
std::size_t encode_segments(std::span<const EncSegment> segments, EncScratch& scratch, std::uint8_t* out);

// decode_block over segments (the mirror of encode_segments), with the
// same checks.
Status decode_segments(const std::uint8_t* in, std::size_t stored, std::span<const DecSegment> segments);

// One coded block for decode_segments_pair: its `stored` bytes and segments.
struct DecBlockRef {
  const std::uint8_t* in;
  std::size_t stored;
  std::span<const DecSegment> segments;
};
// decode_segments on two independent blocks at once (their states
// interleave, which hides the decoder's table-lookup latency): the same
// output as two calls when both succeed. On failure it only says that one
// failed; a caller that names the block decodes them one by one then.
Status decode_segments_pair(const DecBlockRef& first, const DecBlockRef& second);

// Which decoder loops run: scalar, AVX2, or AVX2 for one block and AVX-512
// for two interleaved (decode_segments_pair). kAuto picks the widest the
// CPU has; every path decodes the same symbols and finds the same faults
// (tests force each in turn).
enum class DecodePath { kAuto, kScalar, kAvx2, kAvx512 };
// Sets the path for the whole process; a path the CPU lacks falls back to
// the next narrower one. Returns the path now in effect.
DecodePath set_decode_path(DecodePath path);

// Decodes a coded block of `stored` bytes into m symbols. Checks the state
// range, that no word is read past the block, that every word is consumed
// and that every lane ends at L. The message names what failed; the caller
// adds plane and block.
Status decode_block(const DecTable& table, const std::uint8_t* in, std::size_t stored, std::uint8_t* out,
                    std::size_t m);

}  // namespace ferry::rans
