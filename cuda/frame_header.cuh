// frame_header.cuh: writes the 88-byte frame header (docs/FORMAT.md
// section 3) as a FERRY_HD function, so GPU-coded frames are complete in
// device memory without a host round trip. Mirrors codec/frame.cc.
#pragma once

#include "cuda/crc32c.cuh"
#include "cuda/gpu_limits.h"

namespace ferry::gpu {

FERRY_HD void put_le32(std::uint8_t* p, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<std::uint8_t>(v >> (8 * i));
}
FERRY_HD void put_le16(std::uint8_t* p, std::uint32_t v) {
  p[0] = static_cast<std::uint8_t>(v);
  p[1] = static_cast<std::uint8_t>(v >> 8);
}
FERRY_HD std::uint32_t get_le32(const std::uint8_t* p) {
  return static_cast<std::uint32_t>(p[0]) | (static_cast<std::uint32_t>(p[1]) << 8) |
         (static_cast<std::uint32_t>(p[2]) << 16) | (static_cast<std::uint32_t>(p[3]) << 24);
}
FERRY_HD std::uint32_t get_le16(const std::uint8_t* p) {
  return static_cast<std::uint32_t>(p[0]) | (static_cast<std::uint32_t>(p[1]) << 8);
}

// payload_crc is the unmasked CRC32C of the payload. base_id: nullptr for a
// version 1 frame (base id all zero), else a delta frame's base id (version 2).
FERRY_HD void write_frame_header(const std::uint32_t* crc_table, std::uint8_t codec, std::uint8_t dtype,
                                 std::uint32_t raw_bytes, std::uint32_t payload_bytes,
                                 const std::uint8_t* chunk_id, const std::uint8_t* base_id,
                                 std::uint32_t payload_crc, std::uint8_t* out) {
  out[0] = 0x46;
  out[1] = 0x52;
  out[2] = 0x59;
  out[3] = 0x46;             // "FRYF"
  out[4] = base_id ? 2 : 1;  // version
  out[5] = codec;
  out[6] = dtype;
  out[7] = 0;  // flags
  put_le32(out + 8, raw_bytes);
  put_le32(out + 12, payload_bytes);
  for (int i = 0; i < 32; ++i) out[16 + i] = chunk_id[i];
  for (int i = 0; i < 32; ++i) out[48 + i] = base_id ? base_id[i] : 0;
  put_le32(out + 80, mask_crc(payload_crc));
  put_le32(out + kHeaderCrcOffset, mask_crc(crc32c_update(crc_table, 0, out, kHeaderCrcOffset)));
}

}  // namespace ferry::gpu
