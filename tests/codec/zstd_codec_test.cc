// zstd_codec_test.cc: the zstd wrapper round-trips, reuses its contexts, and
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
