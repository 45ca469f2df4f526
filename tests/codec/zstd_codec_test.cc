// zstd_codec_test.cc: the zstd wrapper round-trips, reuses its contexts,
// compresses into a caller's buffer as into its own, and
// refuses frames whose size does not match the chunk, trailing bytes and
// garbage with Corruption.
#include "codec/zstd_codec.h"

#include <gtest/gtest.h>

#include <vector>

#include "tests/testing/testing.h"

namespace ferry {
namespace {

std::vector<std::byte> text_like(std::size_t n) {
  std::vector<std::byte> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = std::byte("ferry checkpoint "[i % 17]);
  return v;
}

TEST(ZstdCodec, RoundTripsAndReusesContexts) {
  ZstdCompressor c;
  ZstdDecompressor d;
  auto seed = testing::test_seed();
  for (std::size_t n : {0, 1, 4095, 4096, 100000}) {
    for (auto& in : {text_like(n), testing::random_bytes(n, seed + n)}) {
      std::vector<std::byte> z;
      ASSERT_TRUE(c.compress(in, 3, z).is_ok());
      std::vector<std::byte> out(n);
      Status st = d.decompress(z, out);
      ASSERT_TRUE(st.is_ok()) << st.to_string();
      EXPECT_EQ(out, in);
    }
  }
  std::vector<std::byte> z;
  ASSERT_TRUE(c.compress(text_like(100000), 3, z).is_ok());
  EXPECT_LT(z.size(), 1000u);
}

// compress_into writes, at the start of a caller's buffer of the bound, the
// bytes compress() makes.
TEST(ZstdCodec, CompressIntoGivesTheSameBytes) {
  ZstdCompressor c;
  auto seed = testing::test_seed();
  for (std::size_t n : {0, 1, 4096, 100000}) {
    for (auto& in : {text_like(n), testing::random_bytes(n, seed + n)}) {
      for (int level : {1, 3}) {
        std::vector<std::byte> want;
        ASSERT_TRUE(c.compress(in, level, want).is_ok());
        std::vector<std::byte> out(zstd_compress_bound(n) + 7, std::byte{0x5a});
        Result<std::size_t> got = c.compress_into(in, level, out);
        ASSERT_TRUE(got.is_ok()) << got.status().to_string();
        ASSERT_EQ(*got, want.size());
        out.resize(*got);
        EXPECT_EQ(out, want) << n << " bytes at level " << level;
      }
    }
  }
}

TEST(ZstdCodec, RejectsSizeMismatchTrailingBytesAndGarbage) {
  ZstdCompressor c;
  ZstdDecompressor d;
  auto in = text_like(5000);
  std::vector<std::byte> z;
  ASSERT_TRUE(c.compress(in, 3, z).is_ok());

  std::vector<std::byte> small(4999);
  Status st = d.decompress(z, small);
  EXPECT_EQ(st.code(), Code::kCorruption);
  EXPECT_NE(st.message().find("content size"), std::string::npos) << st.message();

  auto longer = z;
  longer.push_back(std::byte{0});
  std::vector<std::byte> out(5000);
  st = d.decompress(longer, out);
  EXPECT_EQ(st.code(), Code::kCorruption) << st.to_string();

  auto garbage = testing::random_bytes(300, testing::test_seed());
  st = d.decompress(garbage, out);
  EXPECT_EQ(st.code(), Code::kCorruption) << st.to_string();

  // Still usable after failures.
  ASSERT_TRUE(d.decompress(z, out).is_ok());
  EXPECT_EQ(out, in);
}

}  // namespace
}  // namespace ferry
