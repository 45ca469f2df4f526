// fuzz_manifest.cc: libFuzzer target for parse_manifest. Byte 0 of the input
// chooses the mode: odd = parse the rest as is (the CRC checks guard the
// parser); even = first rewrite the header's body length and both CRCs so
// the fuzzer reaches every check behind them. A manifest that parses must
// pass validate_manifest and serialise back to the same bytes.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <vector>

#include "base/crc32c.h"
#include "codec/manifest.h"

namespace {

void put_le(std::vector<std::byte>& b, std::size_t at, std::uint64_t v, int n) {
  for (int i = 0; i < n; ++i) b[at + i] = std::byte(static_cast<std::uint8_t>(v >> (8 * i)));
}

void reseal(std::vector<std::byte>& b) {
  using ferry::kManifestHeaderBytes;
  if (b.size() < kManifestHeaderBytes) return;
  put_le(b, 8, b.size() - kManifestHeaderBytes, 8);
  put_le(b, 16, ferry::mask_crc(ferry::crc32c(std::span<const std::byte>(b).subspan(kManifestHeaderBytes))),
         4);
  put_le(b, 20, ferry::mask_crc(ferry::crc32c(std::span<const std::byte>(b).first(20))), 4);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const bool raw = data[0] & 1;
  std::vector<std::byte> bytes(reinterpret_cast<const std::byte*>(data + 1),
                               reinterpret_cast<const std::byte*>(data + size));
  if (!raw) reseal(bytes);
  auto parsed = ferry::parse_manifest(bytes);
  if (!parsed.is_ok()) return 0;
  if (!ferry::validate_manifest(*parsed).is_ok()) std::abort();
  if (ferry::serialize_manifest(*parsed) != bytes) std::abort();
  return 0;
}
