// token_bucket.h: a bandwidth cap shared by threads: a token bucket over
// bytes. Each sender takes the bytes it is about to send and sleeps for the
// time returned; tokens may go negative, so large sends pass at the average
// rate without starving. Used by the sender's streams (replication/sender.cc)
// and by the S3 client's uploads (store/s3_client.cc).
//
// Thread-safe.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>

namespace ferry {

class TokenBucket {
 public:
  // `bytes_per_s` == 0: no cap (take() always returns 0). The bucket holds
  // a quarter second of bytes, so a burst after a pause stays short.
  explicit TokenBucket(std::uint64_t bytes_per_s);

  // Takes `bytes` from the bucket; returns how many milliseconds the caller
  // must wait before sending them to keep to the rate.
  std::int64_t take_ms(std::size_t bytes);

  std::uint64_t bytes_per_s() const { return static_cast<std::uint64_t>(rate_); }

 private:
  using Clock = std::chrono::steady_clock;
  std::mutex mu_;
  const double rate_;
  double burst_ = 0;
  double tokens_ = 0;
  Clock::time_point last_;
};

}  // namespace ferry
