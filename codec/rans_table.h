// rans_table.h: the stored form of one rANS frequency table, shared by both
// float payload versions (docs/FORMAT.md 4.1 and 4.2): a 32-byte bitmap of
// the symbols present, then one u16 frequency per present symbol in
// ascending order, each >= 1, summing to exactly 4096.
#pragma once

#include <cstddef>
#include <cstdint>

#include "base/status.h"
#include "codec/rans.h"

namespace ferry::rans {

// Writes the table of `freq` (summing to 4096) at `out`; returns its size,
// 32 + 2 * (symbols present).
std::size_t write_table(const std::uint32_t freq[kAlphabet], std::uint8_t* out);

// Reads a table from in[pos, size), checks it and advances pos past it.
// Corruption says what is wrong; the caller adds where (plane, table).
Status read_table(const std::uint8_t* in, std::size_t size, std::size_t& pos, std::uint32_t freq[kAlphabet]);

}  // namespace ferry::rans
