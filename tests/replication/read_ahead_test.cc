// read_ahead_test.cc: frames fetched ahead of the reader (read_ahead.h):
// every chunk comes back as its fetch lent it, each fetched once; the
// fetchers run ahead of a slow reader but never further than the bound; a
// chunk's error reaches the take of that chunk only; a chunk asked for out
// of order or twice is fetched by the reader; a source dropped half-read
// stops its fetchers.
#include "replication/read_ahead.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace ferry::replication {
namespace {

// Lends chunk i as bytes {i mod 256} x (i + 1), counting fetches, the
// highest chunk fetched, and failing the chunks in `bad`.
struct Fetches {
  std::vector<std::atomic<int>> count;
  std::atomic<std::size_t> highest{0};
  std::vector<std::size_t> bad;
  explicit Fetches(std::size_t n) : count(n) {}
  Status operator()(std::size_t i, LentBytes& lent) {
    ++count[i];
    std::size_t h = highest.load();
    while (i > h && !highest.compare_exchange_weak(h, i)) {
    }
    if (std::find(bad.begin(), bad.end(), i) != bad.end())
      return Status::corruption("chunk " + std::to_string(i));
    auto bytes = std::make_shared<std::vector<std::byte>>(i + 1, std::byte(i % 256));
    lent.bytes = *bytes;
    lent.keep = std::move(bytes);
    return Status::ok();
  }
};

void expect_chunk(const LentBytes& lent, std::size_t i) {
  ASSERT_EQ(lent.bytes.size(), i + 1);
  EXPECT_EQ(lent.bytes.front(), std::byte(i % 256));
}

TEST(ReadAheadTest, EveryChunkComesBackOnceInOrder) {
  constexpr std::size_t kChunks = 200;
  Fetches f(kChunks);
  ReadAhead ra(kChunks, 4, 8, [&](std::size_t i, LentBytes& l) { return f(i, l); });
  for (std::size_t i = 0; i < kChunks; ++i) {
    LentBytes lent;
    ASSERT_TRUE(ra.take(i, lent).is_ok());
    expect_chunk(lent, i);
  }
  for (std::size_t i = 0; i < kChunks; ++i) EXPECT_EQ(f.count[i].load(), 1) << "chunk " << i;
}

TEST(ReadAheadTest, FetchersRunAheadOfASlowReaderWithinTheBound) {
  constexpr std::size_t kChunks = 40, kAhead = 6;
  Fetches f(kChunks);
  ReadAhead ra(kChunks, 3, kAhead, [&](std::size_t i, LentBytes& l) { return f(i, l); });
  LentBytes lent;
  ASSERT_TRUE(ra.take(0, lent).is_ok());
  // The reader dwells on chunk 0: the fetchers bring what follows, up to
  // the bound past the first chunk not taken (1), and no further.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(f.highest.load(), kAhead) << "fetched ahead up to chunk " << f.highest.load();
  for (std::size_t i = 1; i < kChunks; ++i) {
    ASSERT_TRUE(ra.take(i, lent).is_ok());
    expect_chunk(lent, i);
    EXPECT_LE(f.highest.load(), i + kAhead);
  }
}

TEST(ReadAheadTest, AChunksErrorReachesItsOwnTakeOnly) {
  constexpr std::size_t kChunks = 30;
  Fetches f(kChunks);
  f.bad = {7};
  ReadAhead ra(kChunks, 4, 8, [&](std::size_t i, LentBytes& l) { return f(i, l); });
  for (std::size_t i = 0; i < kChunks; ++i) {
    LentBytes lent;
    Status st = ra.take(i, lent);
    if (i == 7) {
      EXPECT_EQ(st.code(), Code::kCorruption) << st.to_string();
      EXPECT_NE(st.message().find("chunk 7"), std::string::npos) << st.to_string();
    } else {
      ASSERT_TRUE(st.is_ok()) << i << ": " << st.to_string();
      expect_chunk(lent, i);
    }
  }
}

TEST(ReadAheadTest, OutOfOrderAndRepeatedTakesAreFetchedByTheReader) {
  constexpr std::size_t kChunks = 50;
  Fetches f(kChunks);
  ReadAhead ra(kChunks, 2, 4, [&](std::size_t i, LentBytes& l) { return f(i, l); });
  LentBytes lent;
  ASSERT_TRUE(ra.take(40, lent).is_ok());  // far past the bound: the reader fetches it
  expect_chunk(lent, 40);
  ASSERT_TRUE(ra.take(0, lent).is_ok());
  expect_chunk(lent, 0);
  ASSERT_TRUE(ra.take(0, lent).is_ok());  // again: fetched again
  expect_chunk(lent, 0);
  EXPECT_EQ(f.count[0].load(), 2);
  EXPECT_EQ(f.count[40].load(), 1);
  // Many readers at once, each chunk once.
  std::vector<std::thread> readers;
  std::atomic<int> failures{0};
  for (int r = 0; r < 4; ++r) {
    readers.emplace_back([&, r] {
      for (std::size_t i = 1 + r; i < kChunks; i += 4) {
        if (i == 40) continue;
        LentBytes l;
        if (!ra.take(i, l).is_ok() || l.bytes.size() != i + 1) ++failures;
      }
    });
  }
  for (auto& t : readers) t.join();
  EXPECT_EQ(failures.load(), 0);
  for (std::size_t i = 1; i < kChunks; ++i) EXPECT_EQ(f.count[i].load(), 1) << "chunk " << i;
}

TEST(ReadAheadTest, DroppedHalfReadItStopsItsFetchers) {
  constexpr std::size_t kChunks = 1000;
  Fetches f(kChunks);
  {
    ReadAhead ra(kChunks, 4, 16, [&](std::size_t i, LentBytes& l) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      return f(i, l);
    });
    LentBytes lent;
    for (std::size_t i = 0; i < 10; ++i) ASSERT_TRUE(ra.take(i, lent).is_ok());
  }  // joins here
  EXPECT_LE(f.highest.load(), 10u + 16u);
}

}  // namespace
}  // namespace ferry::replication
