// s3_lock_test.cc: the lock object's bytes (store/s3_lock.h, docs/FORMAT.md
// 9.6): a golden record, a round trip, and refusals of damaged or hostile
// objects. The lock's behaviour against a real gateway is in
// s3_gc_net_test.cc.
#include "store/s3_lock.h"

#include <gtest/gtest.h>

#include <string>

#include "store/store_limits.h"

namespace ferry {
namespace {

std::vector<std::byte> bytes(std::string_view s) {
  const auto* p = reinterpret_cast<const std::byte*>(s.data());
  return {p, p + s.size()};
}

TEST(S3LockTest, GoldenBytesAndRoundTrip) {
  S3LockRecord r;
  r.holder = "gpu-07:4242 gc";
  r.token = "0123456789abcdef0123456789abcdef";
  r.acquired_ns = 1'765'000'000'000'000'000;
  r.expires_ns = 1'765'000'120'000'000'000;
  r.condemned = {std::string(64, 'a'), std::string(64, '0')};
  const std::string golden =
      "ferry-lock 1\n"
      "holder gpu-07:4242 gc\n"
      "token 0123456789abcdef0123456789abcdef\n"
      "acquired_ns 1765000000000000000\n"
      "expires_ns 1765000120000000000\n"
      "condemned " +
      std::string(64, 'a') + "\ncondemned " + std::string(64, '0') + "\n";
  EXPECT_EQ(serialize_s3_lock(r), bytes(golden));
  auto back = parse_s3_lock(bytes(golden), "b/ns/lock");
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  EXPECT_EQ(back->holder, r.holder);
  EXPECT_EQ(back->token, r.token);
  EXPECT_EQ(back->acquired_ns, r.acquired_ns);
  EXPECT_EQ(back->expires_ns, r.expires_ns);
  EXPECT_EQ(back->condemned, r.condemned);
  EXPECT_EQ(describe_s3_lock(r), "gpu-07:4242 gc, since 2025-12-06 05:46:40Z, expires 2025-12-06 05:48:40Z");
}

TEST(S3LockTest, LaterFieldsAreIgnored) {
  auto r = parse_s3_lock(bytes("ferry-lock 1\nholder h:1 gc\ntoken 0123456789abcdef0123456789abcdef\n"
                               "acquired_ns 1\nexpires_ns 2\nfuture something\n"),
                         "k");
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_TRUE(r->condemned.empty());
}

TEST(S3LockTest, DamagedObjectsAreRefusedNamingTheKey) {
  const std::string good_tail =
      "holder h:1 gc\ntoken 0123456789abcdef0123456789abcdef\nacquired_ns 1\nexpires_ns 2\n";
  const std::vector<std::string> bad = {
      "",
      "ferry-lock 2\n" + good_tail,
      "ferry-lock 1\n" + good_tail.substr(0, good_tail.size() - 1),  // no final newline
      "ferry-lock 1\nholder h:1 gc\nacquired_ns 1\nexpires_ns 2\n",  // no token
      "ferry-lock 1\n" + good_tail + "condemned abc\n",
      "ferry-lock 1\n" + good_tail + "condemned " + std::string(64, 'G') + "\n",
      "ferry-lock 1\nholder h:1 gc\ntoken 0123\nacquired_ns 1\nexpires_ns 2\n",
      "ferry-lock 1\nholder h:1 gc\ntoken 0123456789abcdef0123456789abcdef\nacquired_ns x\nexpires_ns 2\n",
      "ferry-lock 1\nholder h:1 gc\ntoken 0123456789abcdef0123456789abcdef\nacquired_ns 1\nexpires_ns 2x\n",
      "ferry-lock 1\nholder \ntoken 0123456789abcdef0123456789abcdef\nacquired_ns 1\nexpires_ns 2\n",
      "ferry-lock 1\nholder " + std::string(kS3MaxLockHolderBytes + 1, 'h') +
          "\ntoken 0123456789abcdef0123456789abcdef\nacquired_ns 1\nexpires_ns 2\n",
  };
  for (const std::string& b : bad) {
    auto r = parse_s3_lock(bytes(b), "bucket/ns/lock");
    ASSERT_FALSE(r.is_ok()) << b;
    EXPECT_EQ(r.status().code(), Code::kCorruption) << b;
    EXPECT_NE(r.status().message().find("bucket/ns/lock"), std::string::npos) << r.status().to_string();
  }
  std::vector<std::byte> huge(kS3MaxLockObjectBytes + 1, std::byte{'a'});
  EXPECT_EQ(parse_s3_lock(huge, "k").status().code(), Code::kCorruption);
}

}  // namespace
}  // namespace ferry
