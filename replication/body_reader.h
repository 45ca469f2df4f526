// body_reader.h: bounds-checked reading of one replication message body
// (protocol.cc's decoders). Every read checks the remaining length first and
// the reader remembers the first failure, with the byte offset and the
// message type, so a decoder is a straight sequence of field reads followed
// by one finish(). Internal to the replication layer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/status.h"
#include "codec/tree_hash.h"
#include "replication/protocol.h"

namespace ferry::replication {

class BodyReader {
 public:
  BodyReader(std::span<const std::byte> b, MessageType type) : b_(b), type_(type) {}
  // A body whose bulk field (`apart_bytes` long) was received into a buffer
  // of its own: `b` holds only the fields before it.
  BodyReader(std::span<const std::byte> b, MessageType type, std::size_t apart_bytes)
      : b_(b), type_(type), apart_(apart_bytes) {}

  bool ok() const { return error_.empty(); }
  std::uint8_t u8(const char* field) { return static_cast<std::uint8_t>(le(1, field)); }
  std::uint16_t u16(const char* field) { return static_cast<std::uint16_t>(le(2, field)); }
  std::uint32_t u32(const char* field) { return static_cast<std::uint32_t>(le(4, field)); }
  std::uint64_t u64(const char* field) { return le(8, field); }
  std::int64_t i64(const char* field) { return static_cast<std::int64_t>(le(8, field)); }
  Digest digest(const char* field);
  // A u16 length and that many bytes, at most `max_bytes`.
  std::string str(const char* field, std::size_t max_bytes);
  // A u32 count that must be <= max_count and, at `min_bytes_each`, fit in
  // what remains (so a hostile count cannot make us allocate).
  std::size_t count(const char* field, std::size_t max_count, std::size_t min_bytes_each);
  // Everything left (the bulk field, always last). After
  // keep_bulk_in_place() it returns nothing and records where the field
  // starts, for the caller that owns the buffer to hand it over without a
  // copy.
  std::vector<std::byte> rest();

  static constexpr std::size_t kNoBulk = ~std::size_t{0};
  void keep_bulk_in_place() { in_place_ = true; }
  std::size_t bulk_offset() const { return bulk_at_; }
  std::size_t remaining() const { return b_.size() - pos_ + apart_; }
  std::size_t pos() const { return pos_; }
  // Records a defect at byte `at` (only the first one counts).
  void fail(std::size_t at, std::string what);
  // OK, or the first defect (or unexpected trailing bytes) as Corruption.
  Status finish();

 private:
  bool need(std::size_t n, const char* field);
  std::uint64_t le(int n, const char* field);

  std::span<const std::byte> b_;
  MessageType type_;
  std::size_t pos_ = 0;
  std::string error_;
  bool in_place_ = false;
  std::size_t bulk_at_ = kNoBulk;
  std::size_t apart_ = 0;  // bulk bytes held outside b_
};

}  // namespace ferry::replication
