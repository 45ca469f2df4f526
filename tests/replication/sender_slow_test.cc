// sender_slow_test.cc: a push of a sparse file over 4 GiB through real mTLS
// to an in-process Receiver: chunk offsets above 2^32 travel and come back
// right. Slow (reading 4 GiB twice), hence its own binary.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include "tests/replication/sender_fixture.h"

namespace ferry::replication {
namespace {

namespace fs = std::filesystem;
using testing_support::expect_snapshot_equals;
using testing_support::SenderTest;

// A sparse file over 4 GiB: chunk offsets above 2^32 travel and come back
// right. Mostly zeros, so one zero chunk is sent once and repeated.
TEST_F(SenderTest, FileOverFourGiBRoundTrips) {
  const std::uint64_t seed = testing::test_seed();
  fs::create_directories(dir_ / "sparse");
  const fs::path p = dir_ / "sparse/huge.bin";
  constexpr std::uint64_t kSize = (4ull << 30) + (8u << 20) + 12345;
  {
    auto fd = open_fd(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ASSERT_TRUE(fd.is_ok());
    ASSERT_EQ(::ftruncate(fd->get(), static_cast<off_t>(kSize)), 0);
    auto a = testing::random_bytes(1u << 20, seed);
    auto b = testing::random_bytes(20000, seed + 1);
    ASSERT_TRUE(pwrite_all(fd->get(), a, (4ull << 30) - (512u << 10), p).is_ok());  // straddles 2^32
    ASSERT_TRUE(pwrite_all(fd->get(), b, kSize - b.size(), p).is_ok());
  }
  auto o = options("sparse-1");
  o.chunk_bytes = 4u << 20;
  auto r = push_dir(dir_ / "sparse", o);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->logical_bytes, kSize);
  EXPECT_EQ(r->chunks_total, (kSize + o.chunk_bytes - 1) / o.chunk_bytes);
  EXPECT_LE(r->chunks_sent, 5u);  // zeros, the two straddling chunks, the tail
  expect_snapshot_equals(site_->store(), "sparse-1", dir_ / "sparse");
}

}  // namespace
}  // namespace ferry::replication
