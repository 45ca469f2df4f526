// byte_writer.h: appends little-endian integers, bytes, digests and
// length-prefixed strings to a byte vector. Every binary format of ferry
// (manifest, wire protocol) is written with it, so byte order and string
// prefixes are spelled once. Readers stay with their formats: each one
// reports truncation in its own terms.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "codec/tree_hash.h"

namespace ferry {

class ByteWriter {
 public:
  explicit ByteWriter(std::vector<std::byte>& out) : out_(out) {}

  void u8(std::uint8_t v) { out_.push_back(std::byte{v}); }
  void u16(std::uint16_t v) { le(v, 2); }
  void u32(std::uint32_t v) { le(v, 4); }
  void u64(std::uint64_t v) { le(v, 8); }
  void i64(std::int64_t v) { le(static_cast<std::uint64_t>(v), 8); }
  void raw(std::span<const std::byte> b) { out_.insert(out_.end(), b.begin(), b.end()); }
  void bytes(const void* p, std::size_t n) { raw({static_cast<const std::byte*>(p), n}); }
  void digest(const Digest& d) { bytes(d.data(), d.size()); }
  // A u8 or u16 length, then the bytes. REQUIRES: s fits the prefix.
  void str8(std::string_view s) {
    u8(static_cast<std::uint8_t>(s.size()));
    bytes(s.data(), s.size());
  }
  void str16(std::string_view s) {
    u16(static_cast<std::uint16_t>(s.size()));
    bytes(s.data(), s.size());
  }

 private:
  void le(std::uint64_t v, int n) {
    for (int i = 0; i < n; ++i) out_.push_back(std::byte(static_cast<std::uint8_t>(v >> (8 * i))));
  }
  std::vector<std::byte>& out_;
};

}  // namespace ferry
