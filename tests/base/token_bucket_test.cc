// token_bucket_test.cc: the bandwidth cap of base/token_bucket.h: no cap
// never waits, a quarter second of bytes passes at once, more waits for
// the debt at the rate, time refills the bucket, and threads share it.
#include "base/token_bucket.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

namespace ferry {
namespace {

TEST(TokenBucketTest, NoCapNeverWaits) {
  TokenBucket b(0);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(b.take_ms(std::size_t{1} << 30), 0);
}

TEST(TokenBucketTest, ABurstPassesAndTheRestWaitsAtTheRate) {
  TokenBucket b(1'000'000);  // 1 MB/s: a burst of 250 KB
  EXPECT_EQ(b.take_ms(250'000), 0);
  // 500 KB more owe half a second (less what refilled meanwhile).
  const std::int64_t wait = b.take_ms(500'000);
  EXPECT_GE(wait, 450);
  EXPECT_LE(wait, 500);
}

TEST(TokenBucketTest, TimeRefillsTheBucketUpToTheBurst) {
  TokenBucket b(1'000'000);
  EXPECT_EQ(b.take_ms(250'000), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  // 400 ms refill 400 KB, but the bucket holds only 250 KB.
  EXPECT_EQ(b.take_ms(250'000), 0);
  EXPECT_GT(b.take_ms(100'000), 50);
}

TEST(TokenBucketTest, ThreadsShareOneRate) {
  TokenBucket b(1'000'000);
  std::atomic<std::int64_t> waited_ms{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10; ++i) waited_ms += b.take_ms(25'000);
    });
  }
  for (auto& t : threads) t.join();
  // 1 MB taken at once: the burst passes, and 750 KB are owed by someone.
  EXPECT_GE(waited_ms.load(), 700);
}

}  // namespace
}  // namespace ferry
