// token_bucket.cc: see token_bucket.h.
#include "base/token_bucket.h"

#include <algorithm>

namespace ferry {

TokenBucket::TokenBucket(std::uint64_t bytes_per_s) : rate_(static_cast<double>(bytes_per_s)) {
  burst_ = std::max(rate_ / 4, 1.0);
  tokens_ = burst_;
  last_ = Clock::now();
}

std::int64_t TokenBucket::take_ms(std::size_t bytes) {
  if (rate_ <= 0) return 0;
  double debt = 0;
  {
    std::lock_guard lock(mu_);
    const auto now = Clock::now();
    tokens_ = std::min(burst_, tokens_ + rate_ * std::chrono::duration<double>(now - last_).count());
    last_ = now;
    tokens_ -= static_cast<double>(bytes);
    debt = -tokens_;
  }
  return debt > 0 ? static_cast<std::int64_t>(debt / rate_ * 1000.0) : 0;
}

}  // namespace ferry
