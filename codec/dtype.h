// dtype.h: the element type a chunk is tagged with. It is informational in
// the frame (what the bytes are), while the codec id says how they were
// coded; the float codec only cares about the element width.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace ferry {

enum class DType : std::uint8_t {
  kBytes = 0,  // unknown or non-float data
  kBF16 = 1,
  kF16 = 2,
  kF32 = 3,
  kF8E4M3 = 4,
  kF8E5M2 = 5,
};
inline constexpr int kDTypeCount = 6;

// Bytes per element: 1 for kBytes and the F8 types, 2 for 16-bit, 4 for F32.
constexpr std::size_t element_bytes(DType t) {
  switch (t) {
    case DType::kBF16:
    case DType::kF16:
      return 2;
    case DType::kF32:
      return 4;
    default:
      return 1;
  }
}
constexpr bool is_float(DType t) { return t != DType::kBytes; }

std::string_view dtype_name(DType t);                  // "BF16", "F16", "F32", "F8_E4M3", "F8_E5M2", "bytes"
std::optional<DType> dtype_from_byte(std::uint8_t v);  // nullopt for values no version defines

}  // namespace ferry
