// reseal_frame.h: for the frame fuzz targets, a copy of an input frame with
// both CRCs recomputed, so that mutated payloads get past the CRC checks and
// reach the payload decoders.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "base/crc32c.h"
#include "codec/limits.h"

namespace ferry::fuzz {

// REQUIRES: frame.size() >= kFrameHeaderBytes.
inline std::vector<std::byte> resealed(std::span<const std::byte> frame) {
  auto put_u32 = [](std::byte* p, std::uint32_t v) {
    for (int i = 0; i < 4; ++i) p[i] = static_cast<std::byte>(v >> (8 * i));
  };
  std::vector<std::byte> sealed(frame.begin(), frame.end());
  auto payload = std::span<const std::byte>(sealed).subspan(kFrameHeaderBytes);
  put_u32(&sealed[80], mask_crc(crc32c(payload)));
  put_u32(&sealed[84], mask_crc(crc32c(std::span<const std::byte>(sealed).first(84))));
  return sealed;
}

}  // namespace ferry::fuzz
