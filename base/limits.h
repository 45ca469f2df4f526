// limits.h: the limits of the base layer, in one place.
#pragma once

#include <cstddef>

namespace ferry {

// O_DIRECT needs file offset, length and buffer address aligned to the
// device's logical block; 4 KiB covers every device ferry meets (512 B and
// 4 KiB sectors), and equals the Merkle leaf, so every chunk starts aligned.
inline constexpr std::size_t kDirectAlignBytes = 4096;

}  // namespace ferry
