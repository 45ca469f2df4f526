// crc32c.h: CRC-32C (Castagnoli), the checksum of frame headers and
// payloads, and leveldb's masking for CRCs stored in data that may itself be
// checksummed again (docs/FORMAT.md section 3).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace ferry {

// Extends `crc` (the CRC of preceding bytes, 0 to start) over `data`.
// Uses the SSE4.2 crc32 instruction when the CPU has it, a table otherwise;
// both give the same value.
std::uint32_t crc32c(std::span<const std::byte> data, std::uint32_t crc = 0);

// The portable table implementation, exposed so tests can compare it with
// the hardware path.
std::uint32_t crc32c_portable(std::span<const std::byte> data, std::uint32_t crc = 0);

// The CRC of A followed by B, from crc_a = crc32c(A), crc_b = crc32c(B) and
// B's length, without reading either: crc32c(B, crc32c(A)) in O(log len_b)
// steps. It lets a writer that already holds the CRCs of a record's parts
// derive the record's CRC instead of passing over its bytes again.
std::uint32_t crc32c_combine(std::uint32_t crc_a, std::uint32_t crc_b, std::uint64_t len_b);

inline constexpr std::uint32_t kCrcMaskDelta = 0xa282ead8u;

// ((crc >> 15) | (crc << 17)) + 0xa282ead8, in 32-bit arithmetic.
constexpr std::uint32_t mask_crc(std::uint32_t crc) { return ((crc >> 15) | (crc << 17)) + kCrcMaskDelta; }
constexpr std::uint32_t unmask_crc(std::uint32_t masked) {
  std::uint32_t rot = masked - kCrcMaskDelta;
  return (rot >> 17) | (rot << 15);
}

}  // namespace ferry
