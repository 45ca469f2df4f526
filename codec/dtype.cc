// dtype.cc: names of element types.
#include "codec/dtype.h"

namespace ferry {

std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::kBytes:
      return "bytes";
    case DType::kBF16:
      return "BF16";
    case DType::kF16:
      return "F16";
    case DType::kF32:
      return "F32";
    case DType::kF8E4M3:
      return "F8_E4M3";
    case DType::kF8E5M2:
      return "F8_E5M2";
  }
  return "?";
}

std::optional<DType> dtype_from_byte(std::uint8_t v) {
  if (v >= kDTypeCount) return std::nullopt;
  return static_cast<DType>(v);
}

}  // namespace ferry
