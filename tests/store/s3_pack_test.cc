// s3_pack_test.cc: the pack objects of the S3 backend (docs/FORMAT.md
// section 9.1): golden bytes, the trailer read back from a pack's tail, and
// damage refused with the place named.
#include "store/s3_pack.h"

#include <gtest/gtest.h>

#include "store/pack_file.h"
#include "tests/store/chunk_store_test_util.h"
#include "tests/testing/testing.h"

namespace ferry {
namespace {

using testing::make_chunk;

std::vector<std::byte> two_chunk_pack(std::vector<testing::TestChunk>& cs) {
  cs = {make_chunk(1, 8192), make_chunk(2, 4096)};
  S3PackBuilder b;
  for (const auto& c : cs) b.add(c.frame, *parse_frame_header(c.frame));
  return b.seal();
}

TEST(S3PackTest, TheTrailerListsEveryRecord) {
  std::vector<testing::TestChunk> cs;
  const auto pack = two_chunk_pack(cs);
  auto check = check_s3_pack(pack, "p");
  ASSERT_TRUE(check.is_ok()) << check.status().to_string();
  ASSERT_EQ(check->good.size(), 2u);
  EXPECT_TRUE(check->bad.empty());
  EXPECT_EQ(check->good[0].id, cs[0].info.id);
  EXPECT_EQ(check->good[0].offset, kPackHeaderBytes);
  EXPECT_EQ(check->good[1].offset, kPackHeaderBytes + record_bytes(cs[0].frame.size()));
  const auto trailer = s3_pack_trailer(pack);
  EXPECT_EQ(trailer.size(), kS3FooterBytes + 2 * kS3TrailerEntryBytes);
  auto index = parse_s3_trailer(trailer, "idx");
  ASSERT_TRUE(index.is_ok());
  EXPECT_EQ(index->pack_bytes, pack.size());
  // The trailer's size is known from its last 24 bytes.
  EXPECT_EQ(s3_trailer_bytes(std::span(pack).last(kS3FooterBytes), pack.size(), "p").value(), trailer.size());
  // Each record reads back as its frame.
  const auto e = check->good[1];
  auto frame = s3_record_frame(std::span(pack).subspan(e.offset, record_bytes(e.frame_bytes)), e.id, "p");
  ASSERT_TRUE(frame.is_ok());
  EXPECT_TRUE(std::equal(frame->begin(), frame->end(), cs[1].frame.begin(), cs[1].frame.end()));
}

TEST(S3PackTest, DamageIsRefusedAndNamed) {
  std::vector<testing::TestChunk> cs;
  const auto pack = two_chunk_pack(cs);
  auto flipped = [&](std::size_t at) {
    auto p = pack;
    p[at] ^= std::byte{0x10};
    return p;
  };
  // A record's byte: that chunk is bad, the other good.
  auto rec = check_s3_pack(flipped(kPackHeaderBytes + 100), "pk");
  ASSERT_TRUE(rec.is_ok());
  ASSERT_EQ(rec->bad.size(), 1u);
  EXPECT_EQ(rec->bad[0].first.id, cs[0].info.id);
  EXPECT_NE(rec->bad[0].second.find("pk at offset 8"), std::string::npos) << rec->bad[0].second;
  EXPECT_EQ(rec->good.size(), 1u);
  // The trailer's bytes, the footer's magic, the header: the pack is refused.
  for (std::size_t at : {pack.size() - kS3FooterBytes - 5, pack.size() - 6, std::size_t{4}}) {
    auto bad = check_s3_pack(flipped(at), "pk");
    EXPECT_EQ(bad.status().code(), Code::kCorruption) << at;
  }
  // Cut short.
  EXPECT_FALSE(check_s3_pack(std::span(pack).first(pack.size() - 1), "pk").is_ok());
  // A record read with the wrong id.
  const auto e = rec->good[0];
  EXPECT_EQ(
      s3_record_frame(std::span(pack).subspan(e.offset, record_bytes(e.frame_bytes)), cs[0].info.id, "pk")
          .status()
          .code(),
      Code::kCorruption);
}

TEST(S3PackTest, GoldenBytes) {
  std::vector<testing::TestChunk> cs;
  const auto pack = two_chunk_pack(cs);
  // The frames are the codec's golden business; these are the pack's own bytes.
  std::string now = "header " + testing::hex_of(std::span(pack).first(kPackHeaderBytes)) + "\n";
  now += "trailer " + testing::hex_of(s3_pack_trailer(pack)) + "\n";
  testing::expect_golden_file("tests/store/golden/s3_pack_v2.txt", now, "S3 pack header and trailer bytes");
}

}  // namespace
}  // namespace ferry
