// float_codec.h: the byte-plane + rANS codec for floating-point chunks
// (frame codecs planes8/16/32 carry payload version 1, planes8v2/16v2/32v2
// version 2; byte layouts in docs/FORMAT.md section 4). Version 2 codes
// each plane with plane_coder.h (several tables per plane, larger blocks);
// version 1 stays for the frames already written and the GPU encoder.
// The encoder is deterministic and integer-only, so the GPU encoder in cuda/
// produces the same bytes. The decoder treats its input as hostile: every
// length, table and state is checked before use.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "base/status.h"
#include "codec/plane_coder.h"
#include "codec/rans.h"

namespace ferry {

// Float payload versions (docs/FORMAT.md 4.1 and 4.2).
inline constexpr int kFloatPayloadV1 = 1;
inline constexpr int kFloatPayloadV2 = 2;

// Largest payload float_encode can write for raw_bytes of input, in either
// version (the coded form may transiently exceed the input; callers fall
// back to raw then).
std::size_t float_encode_bound(std::size_t raw_bytes, int element_width);

// Reusable scratch for one thread; the hot path allocates nothing once warm
// (the planes are split inside the output buffer, so there is no scratch the
// size of a chunk).
class FloatEncoder {
 public:
  // Encodes `in` as elements of element_width (1, 2 or 4) bytes into `out`
  // (resized to the payload). Always succeeds for valid widths; the caller
  // compares out.size() with in.size() to choose raw.
  // `version` is kFloatPayloadV1 or kFloatPayloadV2.
  void encode(std::span<const std::byte> in, int element_width, std::vector<std::byte>& out,
              int version = kFloatPayloadV2);
  // The same bytes, written at the start of `out`, which holds at least
  // float_encode_bound(in.size(), element_width) bytes (FERRY_CHECKed), so a
  // frame's payload is coded where it is sent from. Returns the payload size.
  std::size_t encode_into(std::span<const std::byte> in, int element_width, std::span<std::byte> out,
                          int version = kFloatPayloadV2);
  // encode_into of `size` bytes that `fill` makes: fill(offset, dst) writes
  // input bytes [offset, offset + dst.size()) into dst, for consecutive
  // stretches of kFillStretchBytes (the last one shorter). An input that is
  // itself computed (a delta's transform of the chunk and its base) is then
  // split into planes while each stretch is in the cache, and never stored
  // whole. The same bytes as encode_into of the whole input.
  using StretchFill = std::function<void(std::size_t offset, std::span<std::byte> dst)>;
  std::size_t encode_into(std::size_t size, const StretchFill& fill, int element_width,
                          std::span<std::byte> out, int version = kFloatPayloadV2);

 private:
  std::size_t encode_into(std::size_t size, const StretchFill* fill, const std::byte* in, int element_width,
                          std::span<std::byte> out, int version);

  // Writes plane `p` (n symbols at `plane`) at out[pos..]; returns the new pos.
  std::size_t encode_plane(const std::uint8_t* plane, std::size_t n, int p, std::uint8_t* out,
                           std::size_t pos);

  std::unique_ptr<rans::EncScratch> words_;
  std::unique_ptr<rans::EncTable> table_;
  planes::PlaneEncoder v2_;
  std::unique_ptr<std::array<std::byte, kFillStretchBytes>> stretch_;
};

// Reusable decoder scratch for one thread (plane buffer and decode table),
// so a hot loop of decodes allocates nothing once warm.
class FloatDecoder {
 public:
  // Same contract as float_decode below.
  Status decode(std::span<const std::byte> payload, int element_width, std::span<std::byte> out,
                int version = kFloatPayloadV2);

 private:
  std::vector<std::uint8_t> planes_;
  std::unique_ptr<rans::DecTable> table_;
  planes::PlaneDecoder v2_;
};

// Decodes a float payload into `out`, whose size must be the chunk's raw
// size. Returns Corruption, naming the plane and block, on any inconsistency.
Status float_decode(std::span<const std::byte> payload, int element_width, std::span<std::byte> out,
                    int version = kFloatPayloadV2);

}  // namespace ferry
