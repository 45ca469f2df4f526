// crc32c_test.cc: CRC-32C against the RFC 3720 (iSCSI) test patterns, the
// hardware path against the table path on every length and alignment that
// matters for the three-way interleave, and the leveldb-style masking.
#include "base/crc32c.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string_view>
#include <vector>

#include "tests/testing/testing.h"

namespace ferry {
namespace {

std::span<const std::byte> bytes_of(std::string_view s) {
  return std::as_bytes(std::span<const char>(s.data(), s.size()));
}

TEST(Crc32c, KnownVectors) {
  std::vector<std::byte> zeros(32, std::byte{0});
  std::vector<std::byte> ones(32, std::byte{0xff});
  std::vector<std::byte> ascending(32), descending(32);
  for (int i = 0; i < 32; ++i) {
    ascending[i] = std::byte(i);
    descending[i] = std::byte(31 - i);
  }
  EXPECT_EQ(crc32c(zeros), 0x8A9136AAu);
  EXPECT_EQ(crc32c(ones), 0x62A8AB43u);
  EXPECT_EQ(crc32c(ascending), 0x46DD794Eu);
  EXPECT_EQ(crc32c(descending), 0x113FDB5Cu);
  EXPECT_EQ(crc32c(bytes_of("123456789")), 0xE3069283u);
  EXPECT_EQ(crc32c({}), 0u);
  EXPECT_EQ(crc32c_portable(zeros), 0x8A9136AAu);
  EXPECT_EQ(crc32c_portable(bytes_of("123456789")), 0xE3069283u);
}

TEST(Crc32c, HardwareMatchesPortableAtEveryShape) {
  auto data = testing::random_bytes(64 * 1024 + 37, testing::test_seed());
  // Lengths around the interleave's 12 KiB round, at odd alignments.
  for (std::size_t len : {0, 1, 7, 8, 9, 63, 4096, 12287, 12288, 12289, 24576 + 5, 65536}) {
    for (std::size_t align : {0, 1, 3, 7}) {
      auto s = std::span<const std::byte>(data).subspan(align, len);
      ASSERT_EQ(crc32c(s), crc32c_portable(s)) << "len " << len << " align " << align;
    }
  }
}

TEST(Crc32c, ExtendsAcrossSplits) {
  auto data = testing::random_bytes(40000, testing::test_seed());
  std::uint32_t whole = crc32c(data);
  for (std::size_t cut : {0, 1, 100, 12288, 20000, 39999, 40000}) {
    auto s = std::span<const std::byte>(data);
    EXPECT_EQ(crc32c(s.subspan(cut), crc32c(s.first(cut))), whole) << "cut " << cut;
  }
}

TEST(Crc32c, CombineEqualsTheCrcOfTheJoinedBytes) {
  auto data = testing::random_bytes(5 * 4096 + 123, testing::test_seed());
  const auto s = std::span<const std::byte>(data);
  for (std::size_t cut :
       {std::size_t{0}, std::size_t{1}, std::size_t{4}, std::size_t{88}, std::size_t{4096},
        std::size_t{12288}, std::size_t{12289}, std::size_t{20000}, data.size() - 1, data.size()}) {
    const std::uint32_t a = crc32c(s.first(cut));
    const std::uint32_t b = crc32c(s.subspan(cut));
    EXPECT_EQ(crc32c_combine(a, b, data.size() - cut), crc32c(s)) << "cut " << cut;
  }
  // Three parts, as a pack record joins its header and a frame's two CRCs.
  const std::uint32_t ab = crc32c_combine(crc32c(s.first(8)), crc32c(s.subspan(8, 84)), 84);
  EXPECT_EQ(crc32c_combine(ab, crc32c(s.subspan(92)), data.size() - 92), crc32c(s));
  // An empty B changes nothing; an empty A is B's CRC.
  EXPECT_EQ(crc32c_combine(0x12345678u, 0, 0), 0x12345678u);
  EXPECT_EQ(crc32c_combine(0, crc32c(s), data.size()), crc32c(s));
  // Lengths past 4 GiB, where no buffer can check them: (A B) C == A (B C)
  // needs a shift by l1 then l2 to equal one by l1 + l2, which a wrong power
  // of x in the table breaks.
  const std::uint64_t l1 = (3ull << 30) + 5, l2 = (5ull << 32) + 7;
  const std::uint32_t a = 0x0badf00du, b = 0xdeadbeefu, c = 0x01234567u;
  EXPECT_EQ(crc32c_combine(crc32c_combine(a, b, l1), c, l2),
            crc32c_combine(a, crc32c_combine(b, c, l2), l1 + l2));
}

TEST(Crc32c, MaskRoundTripsAndDiffers) {
  for (std::uint32_t crc : {0u, 1u, 0xE3069283u, 0xffffffffu, 0x80000000u}) {
    EXPECT_EQ(unmask_crc(mask_crc(crc)), crc);
    EXPECT_NE(mask_crc(crc), crc);
  }
  // The formula of docs/FORMAT.md, by hand.
  std::uint32_t crc = 0xE3069283u;
  EXPECT_EQ(mask_crc(crc), ((crc >> 15) | (crc << 17)) + 0xa282ead8u);
}

}  // namespace
}  // namespace ferry
