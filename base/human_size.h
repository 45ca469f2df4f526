// human_size.h: byte counts as people read them ("2.1 GB", decimal units),
// one rule for every message, report and status line ferry prints.
#pragma once

#include <cstdint>
#include <string>

namespace ferry {

// "999 B", "1.5 kB", "2.1 GB" (powers of 1000, one decimal).
std::string format_bytes(std::uint64_t bytes);

// format_bytes and the exact count, for messages where the last byte
// matters (memory that does not fit): "2.1 GB (2147483648 bytes)".
std::string format_bytes_exact(std::uint64_t bytes);

}  // namespace ferry
