// body_reader.cc: see body_reader.h.
#include "replication/body_reader.h"

#include <cstring>

namespace ferry::replication {

Digest BodyReader::digest(const char* field) {
  Digest d{};
  if (need(d.size(), field)) {
    std::memcpy(d.data(), b_.data() + pos_, d.size());
    pos_ += d.size();
  }
  return d;
}

std::string BodyReader::str(const char* field, std::size_t max_bytes) {
  std::size_t at = pos_;
  std::uint16_t n = u16(field);
  if (!ok()) return {};
  if (n > max_bytes) {
    fail(at, std::string(field) + " is " + std::to_string(n) + " bytes, more than the limit of " +
                 std::to_string(max_bytes));
    return {};
  }
  if (!need(n, field)) return {};
  std::string s(reinterpret_cast<const char*>(b_.data() + pos_), n);
  pos_ += n;
  return s;
}

std::size_t BodyReader::count(const char* field, std::size_t max_count, std::size_t min_bytes_each) {
  std::size_t at = pos_;
  std::uint32_t n = u32(field);
  if (!ok()) return 0;
  if (n > max_count) {
    fail(at,
         std::string(field) + " " + std::to_string(n) + " is over the limit of " + std::to_string(max_count));
    return 0;
  }
  if (min_bytes_each > 0 && n > remaining() / min_bytes_each) {
    fail(at, std::string(field) + " " + std::to_string(n) + " does not fit in the " +
                 std::to_string(remaining()) + " bytes that follow");
    return 0;
  }
  return n;
}

std::vector<std::byte> BodyReader::rest() {
  if (apart_ > 0 && pos_ != b_.size()) {
    fail(pos_, "bulk field does not start where it was received apart");
    return {};
  }
  if (in_place_) {
    bulk_at_ = pos_;
    pos_ = b_.size();
    return {};
  }
  std::vector<std::byte> v(b_.begin() + pos_, b_.end());
  pos_ = b_.size();
  return v;
}

void BodyReader::fail(std::size_t at, std::string what) {
  if (ok()) error_ = std::string(message_type_name(type_)) + " at byte " + std::to_string(at) + ": " + what;
}

Status BodyReader::finish() {
  const std::size_t left = b_.size() - pos_ + (bulk_at_ == kNoBulk ? apart_ : 0);
  if (ok() && left != 0) fail(pos_, std::to_string(left) + " unexpected trailing bytes");
  if (ok()) return Status::ok();
  return Status::corruption("malformed message: " + error_);
}

bool BodyReader::need(std::size_t n, const char* field) {
  if (!ok()) return false;
  if (b_.size() - pos_ < n) {
    fail(pos_, std::string("truncated in ") + field + " (needs " + std::to_string(n) + " bytes, " +
                   std::to_string(remaining()) + " left)");
    return false;
  }
  return true;
}

std::uint64_t BodyReader::le(int n, const char* field) {
  if (!need(static_cast<std::size_t>(n), field)) return 0;
  std::uint64_t v = 0;
  for (int i = 0; i < n; ++i) v |= std::uint64_t(std::to_integer<std::uint8_t>(b_[pos_ + i])) << (8 * i);
  pos_ += static_cast<std::size_t>(n);
  return v;
}

}  // namespace ferry::replication
