// buffer_stash_test.cc: buffers kept from one use to the next. take() gives
// the smallest kept buffer within its bounds, keep() holds at most its
// limit (dropping the smallest), a moved-from AlignedBytes is empty, and a
// kept buffer is written again without page faults (its pages lazily
// freed, not unmapped), where a fresh one faults on every page.
#include "base/buffer_stash.h"

#include <gtest/gtest.h>
#include <sys/resource.h>

#include <cstring>
#include <vector>

#include "base/aligned_bytes.h"

namespace ferry {
namespace {

using Bytes = std::vector<std::byte>;

Bytes with_capacity(std::size_t n) {
  Bytes v;
  v.reserve(n);
  return v;
}

// Minor page faults of the calling thread so far.
long thread_faults() {
  rusage u{};
  getrusage(RUSAGE_THREAD, &u);
  return u.ru_minflt;
}

TEST(BufferStashTest, TakesTheSmallestWithinBoundsAndKeepsAtMostItsLimit) {
  BufferStash<Bytes> stash(3);
  EXPECT_EQ(stash.take(1, 100).capacity(), 0u) << "nothing kept yet";
  stash.keep(with_capacity(0));  // nothing to keep
  EXPECT_EQ(stash.size(), 0u);
  for (std::size_t n : {4000, 1000, 2000}) stash.keep(with_capacity(n));
  EXPECT_EQ(stash.take(1500, 1900).capacity(), 0u) << "none within the bounds";
  EXPECT_EQ(stash.take(900, 5000).capacity(), 1000u);
  EXPECT_EQ(stash.take(900, 5000).capacity(), 2000u);
  EXPECT_EQ(stash.size(), 1u);
  for (std::size_t n : {3000, 500, 6000}) stash.keep(with_capacity(n));
  EXPECT_EQ(stash.size(), 3u) << "the smallest (500) dropped";
  EXPECT_EQ(stash.take(1, 1000).capacity(), 0u);
  EXPECT_EQ(stash.take(1, 10000).capacity(), 3000u);
}

TEST(BufferStashTest, AMovedFromAlignedBufferIsEmpty) {
  AlignedBytes a;
  a.take(10000);
  ASSERT_GE(a.capacity(), 10000u);
  AlignedBytes b = std::move(a);
  EXPECT_EQ(a.capacity(), 0u);
  EXPECT_EQ(a.data(), nullptr);
  EXPECT_GE(b.capacity(), 10000u);
  a.take(100);  // grows again
  EXPECT_NE(a.data(), nullptr);
  std::memset(a.view().data(), 1, 100);
  BufferStash<AlignedBytes> stash(2);
  stash.keep(std::move(b));
  EXPECT_EQ(b.capacity(), 0u);
  EXPECT_GE(stash.take(10000, 20000).capacity(), 10000u);
}

TEST(BufferStashTest, AKeptBufferIsWrittenAgainWithoutPageFaults) {
  constexpr std::size_t kBytes = 16u << 20;  // 4096 pages
  BufferStash<AlignedBytes> stash(1);
  AlignedBytes fresh;
  fresh.take(kBytes);
  long before = thread_faults();
  std::memset(fresh.data(), 7, kBytes);
  const long fresh_faults = thread_faults() - before;
  EXPECT_GT(fresh_faults, 1000) << "a fresh buffer faults its pages in";
  stash.keep(std::move(fresh));
  AlignedBytes again = stash.take(kBytes, kBytes);
  ASSERT_EQ(again.capacity(), kBytes);
  before = thread_faults();
  std::memset(again.data(), 9, kBytes);
  const long again_faults = thread_faults() - before;
  EXPECT_LT(again_faults, fresh_faults / 10) << "kept pages should still be mapped";
}

}  // namespace
}  // namespace ferry
