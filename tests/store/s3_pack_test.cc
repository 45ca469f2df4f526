// s3_pack_test.cc: the pack objects of the S3 backend (docs/FORMAT.md
// section 9.1): golden bytes, the trailer read back from a pack's tail, and
// damage refused with the place named.
#include "store/s3_pack.h"

#include <gtest/gtest.h>
#include <sys/resource.h>

#include "store/pack_file.h"
#include "tests/store/chunk_store_test_util.h"
#include "tests/testing/testing.h"

namespace ferry {
namespace {

// Two chunks of random bytes: stored raw by the codec, so that the pack's
// golden bytes change only when the pack or frame format does, not when the
// codec gets better.
std::vector<std::byte> two_chunk_pack(std::vector<testing::TestChunk>& cs) {
  cs = {testing::encode_chunk(testing::random_bytes(8192, 1), DType::kBytes),
        testing::encode_chunk(testing::random_bytes(4096, 2), DType::kBytes)};
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

long process_faults() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_minflt;
}

// A builder with room builds each pack in a buffer of that capacity, and a
// pack's buffer given back after its upload serves the next pack of the
// process: the second pack of 16 MiB writes into pages mapped already
// (4,096 pages), where the first faulted each of them in. Both packs are
// the same bytes as one built without room.
TEST(S3PackTest, APackBufferIsKeptForTheNextPack) {
  constexpr std::size_t kRoom = 24u << 20;
  const auto chunk = testing::encode_chunk(testing::random_bytes(1u << 20, 3), DType::kBytes);
  const FrameHeader header = *parse_frame_header(chunk.frame);
  S3PackBuilder plain;
  for (int i = 0; i < 16; ++i) plain.add(chunk.frame, header);
  const std::vector<std::byte> want = plain.seal();

  S3PackBuilder b(kRoom);
  std::vector<long> faults;
  for (int pack = 0; pack < 2; ++pack) {
    const long before = process_faults();
    for (int i = 0; i < 16; ++i) b.add(chunk.frame, header);
    std::vector<std::byte> sealed = b.seal();
    faults.push_back(process_faults() - before);
    EXPECT_EQ(sealed, want);
    EXPECT_GE(sealed.capacity(), kRoom);
    recycle_s3_pack_buffer(std::move(sealed));
  }
  EXPECT_GT(faults[0], 3000) << faults[1];
  EXPECT_LT(faults[1], faults[0] - 2000) << faults[0];
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

// A record whose framing and record CRC agree with a damaged frame (the
// damage was there before the record was written) is still refused: the
// frame's own CRCs are checked, and the record CRC is derived from them.
TEST(S3PackTest, ARecordOverADamagedFrameIsRefused) {
  std::vector<testing::TestChunk> cs;
  two_chunk_pack(cs);
  std::vector<std::byte> frame = cs[0].frame;
  frame[kFrameHeaderBytes + 100] ^= std::byte{0x04};
  const RecordFraming framing = frame_record(frame);  // a full pass over the damaged bytes
  std::vector<std::byte> record(framing.header.begin(), framing.header.end());
  record.insert(record.end(), frame.begin(), frame.end());
  record.insert(record.end(), framing.trailer.begin(), framing.trailer.end());
  auto got = s3_record_frame(record, cs[0].info.id, "pk at offset 8");
  ASSERT_EQ(got.status().code(), Code::kCorruption);
  EXPECT_NE(got.status().message().find("payload CRC mismatch"), std::string::npos)
      << got.status().to_string();
  EXPECT_NE(got.status().message().find("pk at offset 8"), std::string::npos) << got.status().to_string();
  // The undamaged frame in the same framing passes, and a wrong record CRC
  // over it is named as such.
  const RecordFraming good = frame_record(cs[0].frame);
  std::vector<std::byte> ok(good.header.begin(), good.header.end());
  ok.insert(ok.end(), cs[0].frame.begin(), cs[0].frame.end());
  ok.insert(ok.end(), good.trailer.begin(), good.trailer.end());
  ASSERT_TRUE(s3_record_frame(ok, cs[0].info.id, "pk").is_ok());
  ok.back() ^= std::byte{1};
  auto bad_crc = s3_record_frame(ok, cs[0].info.id, "pk");
  ASSERT_EQ(bad_crc.status().code(), Code::kCorruption);
  EXPECT_NE(bad_crc.status().message().find("record CRC mismatch"), std::string::npos);
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
