// lent_bytes.h: bytes lent in place by their owner (a frame in an S3 read
// window) rather than copied out for the caller: `bytes` stays valid while
// `keep` (the owner's buffer, or a share of it) lives.
#pragma once

#include <cstddef>
#include <memory>
#include <span>

namespace ferry {

struct LentBytes {
  std::span<const std::byte> bytes;
  std::shared_ptr<const void> keep;
};

}  // namespace ferry
