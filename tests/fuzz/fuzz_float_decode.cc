// fuzz_float_decode.cc: libFuzzer target for float_decode. Input: byte 0
// picks the element width (1, 2 or 4: byte 0 mod 3) and the payload version
// (1 or 2: byte 0 / 3 mod 2, plus 1), bytes 1-3 the output size (capped at
// 1 MiB), the rest is the payload. The decoder must return an error or
// decode; it must never read or write out of bounds or hang.
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "codec/float_codec.h"

namespace {
constexpr std::size_t kMaxOutBytes = 1u << 20;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 4) return 0;
  static const int kWidths[3] = {1, 2, 4};
  int width = kWidths[data[0] % 3];
  int version = data[0] / 3 % 2 + 1;
  std::size_t out_bytes = (static_cast<std::size_t>(data[1]) | (static_cast<std::size_t>(data[2]) << 8) |
                           (static_cast<std::size_t>(data[3]) << 16)) %
                          (kMaxOutBytes + 1);
  std::vector<std::byte> out(out_bytes);
  auto payload = std::span(reinterpret_cast<const std::byte*>(data + 4), size - 4);
  (void)ferry::float_decode(payload, width, out, version);
  return 0;
}
