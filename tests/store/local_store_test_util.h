// local_store_test_util.h: what the local chunk store's tests share: a
// store opened with a log the test can read, chunks put and synced, reads
// that decode them back, and times in nanoseconds.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "store/local_store.h"
#include "tests/store/chunk_store_test_util.h"

namespace ferry::store_test {

namespace fs = std::filesystem;
using testing::make_chunk;
using testing::TestChunk;

inline constexpr std::int64_t kSecondNs = 1'000'000'000;
inline constexpr std::int64_t kHourNs = 3600 * kSecondNs;
inline constexpr std::int64_t kT0 = 1'700'000'000LL * 1'000'000'000;

struct Logged {
  std::vector<std::string> lines;
  StoreOptions options() {
    StoreOptions o;
    o.log = [this](std::string_view l) { lines.emplace_back(l); };
    o.gc_grace_seconds = 0;
    return o;
  }
  bool saw(std::string_view needle) const {
    return std::any_of(lines.begin(), lines.end(),
                       [&](const std::string& l) { return l.find(needle) != std::string::npos; });
  }
};

inline std::unique_ptr<ChunkStore> open_store(const fs::path& root, const StoreOptions& o) {
  auto s = open_local_store(root, o);
  EXPECT_TRUE(s.is_ok()) << s.status().to_string();
  return s.is_ok() ? std::move(*s) : nullptr;
}

inline std::vector<TestChunk> make_chunks(std::size_t n, std::uint64_t seed) {
  std::vector<TestChunk> out;
  for (std::size_t i = 0; i < n; ++i) out.push_back(make_chunk(seed * 1000 + i));
  return out;
}

inline void put_all(ChunkStore& s, std::string_view ns, const std::vector<TestChunk>& chunks) {
  for (const TestChunk& c : chunks) {
    auto r = s.put(ns, c.frame);
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  }
  ASSERT_TRUE(s.sync(ns).is_ok());
}

// Reads each chunk back and decodes it to the original bytes.
inline void expect_readable(ChunkStore& s, std::string_view ns, const std::vector<TestChunk>& chunks) {
  ChunkDecoder dec;
  std::vector<std::byte> raw;
  for (const TestChunk& c : chunks) {
    auto f = s.get(ns, c.info.id);
    ASSERT_TRUE(f.is_ok()) << f.status().to_string();
    ASSERT_TRUE(dec.decode(*f, raw, &c.info.id).is_ok());
    EXPECT_EQ(raw, c.raw);
  }
}

inline bool has(ChunkStore& s, std::string_view ns, const Digest& id) {
  auto h = s.have(ns, std::span(&id, 1));
  EXPECT_TRUE(h.is_ok());
  return h.is_ok() && (*h)[0];
}

inline fs::path last_pack(const fs::path& root, const std::string& ns) {
  std::vector<fs::path> packs;
  for (const auto& e : fs::directory_iterator(root / ns / "packs")) packs.push_back(e.path());
  std::sort(packs.begin(), packs.end());
  return packs.empty() ? fs::path() : packs.back();
}

}  // namespace ferry::store_test
