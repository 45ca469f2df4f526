// rans_table.cc: see rans_table.h.
#include "codec/rans_table.h"

#include <cstring>
#include <string>

namespace ferry::rans {

std::size_t write_table(const std::uint32_t freq[kAlphabet], std::uint8_t* out) {
  std::uint8_t* present = out;
  std::memset(present, 0, kPresentBytes);
  std::size_t pos = kPresentBytes;
  for (int s = 0; s < kAlphabet; ++s) {
    if (freq[s] == 0) continue;
    present[s >> 3] |= static_cast<std::uint8_t>(1u << (s & 7));
    const auto f = static_cast<std::uint16_t>(freq[s]);
    std::memcpy(out + pos, &f, 2);
    pos += 2;
  }
  return pos;
}

Status read_table(const std::uint8_t* in, std::size_t size, std::size_t& pos, std::uint32_t freq[kAlphabet]) {
  if (size - pos < kPresentBytes) return Status::corruption("truncated symbol bitmap");
  const std::uint8_t* present = in + pos;
  pos += kPresentBytes;
  std::uint32_t sum = 0;
  for (int s = 0; s < kAlphabet; ++s) {
    freq[s] = 0;
    if (!(present[s >> 3] & (1u << (s & 7)))) continue;
    if (size - pos < 2) return Status::corruption("truncated frequency table");
    std::uint16_t f;
    std::memcpy(&f, in + pos, 2);
    pos += 2;
    if (f == 0) return Status::corruption("zero frequency for symbol " + std::to_string(s));
    freq[s] = f;
    sum += f;
  }
  if (sum != kProbScale)
    return Status::corruption("frequencies sum to " + std::to_string(sum) + ", not 4096");
  return Status::ok();
}

}  // namespace ferry::rans
