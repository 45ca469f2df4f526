// frame_test.cc: the 88-byte frame header (docs/FORMAT.md section 3): byte
// layout, round trip, and a clear Corruption for every field a decoder must
// check (magic, header CRC, version, flags, codec, dtype, base id, sizes,
// frame length, payload CRC).
#include "codec/frame.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "base/crc32c.h"
#include "tests/testing/testing.h"

namespace ferry {
namespace {

struct Built {
  FrameHeader h;
  std::vector<std::byte> frame;
};

// A valid frame: `payload_bytes` payload bytes, codec as given.
Built make_frame(Codec codec, std::uint32_t raw_bytes, std::uint32_t payload_bytes) {
  Built b;
  b.h.codec = codec;
  b.h.dtype = DType::kBF16;
  b.h.raw_bytes = raw_bytes;
  b.h.payload_bytes = payload_bytes;
  for (std::size_t i = 0; i < b.h.chunk_id.size(); ++i) b.h.chunk_id[i] = static_cast<std::uint8_t>(0xa0 + i);
  b.frame.resize(kFrameHeaderBytes + payload_bytes);
  for (std::size_t i = 0; i < payload_bytes; ++i) b.frame[kFrameHeaderBytes + i] = std::byte(i * 7);
  b.h.payload_crc = mask_crc(crc32c(std::span(b.frame).subspan(kFrameHeaderBytes)));
  write_frame_header(b.h, std::span<std::byte, kFrameHeaderBytes>(b.frame.data(), kFrameHeaderBytes));
  return b;
}

// Rewrites the header CRC after a deliberate edit, so the field check (not
// the CRC) is what must catch it.
void reseal(std::vector<std::byte>& f) {
  std::uint32_t crc = mask_crc(crc32c(std::span(f).first(84)));
  for (int i = 0; i < 4; ++i) f[84 + i] = std::byte(crc >> (8 * i));
}

void put_u32(std::vector<std::byte>& f, std::size_t off, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) f[off + i] = std::byte(v >> (8 * i));
}

void expect_corrupt(const std::vector<std::byte>& f, const std::string& needle) {
  auto r = parse_frame_header(f);
  ASSERT_FALSE(r.is_ok()) << "accepted a frame that should fail with: " << needle;
  EXPECT_EQ(r.status().code(), Code::kCorruption);
  EXPECT_NE(r.status().message().find(needle), std::string::npos) << r.status().message();
}

const std::string kIdHex = [] {
  Digest d;
  for (std::size_t i = 0; i < d.size(); ++i) d[i] = static_cast<std::uint8_t>(0xa0 + i);
  return to_hex(d);
}();

TEST(Frame, CodecNames) {
  EXPECT_EQ(codec_name(Codec::kRaw), "raw");
  EXPECT_EQ(codec_name(Codec::kZstd), "zstd");
  EXPECT_EQ(codec_name(Codec::kPlanes8), "planes8");
  EXPECT_EQ(codec_name(Codec::kPlanes16), "planes16");
  EXPECT_EQ(codec_name(Codec::kPlanes32), "planes32");
  EXPECT_EQ(codec_name(Codec::kPlanes8V2), "planes8v2");
  EXPECT_EQ(codec_name(Codec::kPlanes16V2), "planes16v2");
  EXPECT_EQ(codec_name(Codec::kPlanes32V2), "planes32v2");
  EXPECT_EQ(codec_element_width(Codec::kPlanes16), 2);
  EXPECT_EQ(codec_element_width(Codec::kPlanes32V2), 4);
  EXPECT_EQ(codec_payload_version(Codec::kPlanes8), 1);
  EXPECT_EQ(codec_payload_version(Codec::kPlanes8V2), 2);
  EXPECT_EQ(codec_payload_version(Codec::kZstd), 0);
  EXPECT_EQ(planes_codec(2, 2), Codec::kPlanes16V2);
  EXPECT_EQ(planes_codec(4, 1), Codec::kPlanes32);
  EXPECT_TRUE(codec_known(4));
  EXPECT_TRUE(codec_known(7));
  EXPECT_FALSE(codec_known(8));
  EXPECT_TRUE(codec_known(16));
  EXPECT_TRUE(codec_known(18));
  EXPECT_FALSE(codec_known(19));
  EXPECT_FALSE(codec_known(15));
  EXPECT_EQ(codec_name(Codec::kDeltaPlanes16), "delta16");
  EXPECT_EQ(delta_codec_width(Codec::kDeltaPlanes32), 4);
  EXPECT_EQ(delta_codec_width(Codec::kPlanes32V2), 0);
  EXPECT_EQ(codec_element_width(Codec::kDeltaPlanes32), 0);
  EXPECT_EQ(delta_codec(1), Codec::kDeltaPlanes8);
  EXPECT_TRUE(is_delta_codec(Codec::kDeltaPlanes8));
  EXPECT_FALSE(is_delta_codec(Codec::kPlanes8V2));
}

TEST(Frame, ByteLayoutAndRoundTrip) {
  Built b = make_frame(Codec::kZstd, 0x01020304, 300);
  const auto& f = b.frame;
  EXPECT_EQ(std::memcmp(f.data(), "FRYF", 4), 0);
  EXPECT_EQ(f[4], std::byte{1});
  EXPECT_EQ(f[5], std::byte{1});  // zstd
  EXPECT_EQ(f[6], std::byte{1});  // BF16
  EXPECT_EQ(f[7], std::byte{0});
  EXPECT_EQ(f[8], std::byte{0x04});  // little-endian raw_bytes
  EXPECT_EQ(f[11], std::byte{0x01});
  EXPECT_EQ(f[12], std::byte{44});  // 300 = 0x12c
  EXPECT_EQ(f[13], std::byte{1});
  EXPECT_EQ(f[16], std::byte{0xa0});
  EXPECT_EQ(f[48], std::byte{0});

  auto r = parse_frame_header(f);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->version, 1);
  EXPECT_EQ(r->codec, Codec::kZstd);
  EXPECT_EQ(r->dtype, DType::kBF16);
  EXPECT_EQ(r->raw_bytes, 0x01020304u);
  EXPECT_EQ(r->payload_bytes, 300u);
  EXPECT_EQ(r->chunk_id, b.h.chunk_id);
  EXPECT_EQ(r->base_id, Digest{});
  EXPECT_EQ(r->payload_crc, b.h.payload_crc);
}

TEST(Frame, EmptyRawFrameIsValid) {
  Built b = make_frame(Codec::kRaw, 0, 0);
  EXPECT_TRUE(parse_frame_header(b.frame).is_ok());
}

TEST(Frame, Truncated) {
  Built b = make_frame(Codec::kRaw, 10, 10);
  expect_corrupt(std::vector<std::byte>(b.frame.begin(), b.frame.begin() + 87), "frame header: truncated");
  expect_corrupt({}, "frame header: truncated");
}

TEST(Frame, BadMagic) {
  Built b = make_frame(Codec::kRaw, 10, 10);
  b.frame[0] = std::byte{'G'};
  expect_corrupt(b.frame, "frame header: bad magic");
}

TEST(Frame, HeaderCrc) {
  Built b = make_frame(Codec::kRaw, 10, 10);
  b.frame[20] ^= std::byte{1};
  expect_corrupt(b.frame, "frame header: header CRC mismatch");
}

TEST(Frame, EveryFieldIsChecked) {
  struct Case {
    const char* what;
    std::size_t off;
    std::uint8_t value;
    const char* needle;
  };
  const Case cases[] = {
      {"version 0", 4, 0, "unsupported version 0"},
      {"version 3", 4, 3, "unsupported version 3"},
      {"version 2 without a delta codec", 4, 2, "codec zstd is not allowed in frame version 2"},
      {"codec 8", 5, 8, "unknown codec id 8"},
      {"codec 19", 5, 19, "unknown codec id 19"},
      {"delta codec in version 1", 5, 16, "codec delta8 is not allowed in frame version 1"},
      {"dtype 6", 6, 6, "unknown dtype tag 6"},
      {"flags", 7, 1, "flags 1 set"},
      {"base id", 48, 1, "base chunk id set"},
  };
  for (const Case& c : cases) {
    Built b = make_frame(Codec::kZstd, 1000, 300);
    b.frame[c.off] = std::byte{c.value};
    reseal(b.frame);
    SCOPED_TRACE(c.what);
    expect_corrupt(b.frame, c.needle);
    expect_corrupt(b.frame, kIdHex);
  }
}

TEST(Frame, Sizes) {
  {  // raw_bytes over 64 MiB
    Built b = make_frame(Codec::kZstd, 1000, 300);
    put_u32(b.frame, 8, (64u << 20) + 1);
    reseal(b.frame);
    expect_corrupt(b.frame, "raw_bytes 67108865 over the limit");
  }
  {  // payload larger than raw
    Built b = make_frame(Codec::kZstd, 1000, 300);
    put_u32(b.frame, 8, 299);
    reseal(b.frame);
    expect_corrupt(b.frame, "payload_bytes 300 with raw_bytes 299");
  }
  {  // coded payload not smaller than raw: an encoder would have stored raw
    Built b = make_frame(Codec::kPlanes16, 300, 300);
    expect_corrupt(b.frame, "impossible for codec planes16");
  }
  {  // raw codec with a different payload size
    Built b = make_frame(Codec::kRaw, 301, 300);
    expect_corrupt(b.frame, "impossible for codec raw");
  }
  {  // the largest chunk is fine in the header
    Built b = make_frame(Codec::kZstd, 64u << 20, 10);
    EXPECT_TRUE(parse_frame_header(b.frame).is_ok());
  }
}

TEST(Frame, LengthMismatch) {
  Built b = make_frame(Codec::kZstd, 1000, 300);
  auto shorter = b.frame;
  shorter.pop_back();
  expect_corrupt(shorter, "frame is 387 bytes, header says 388");
  auto longer = b.frame;
  longer.push_back(std::byte{0});
  expect_corrupt(longer, "frame is 389 bytes, header says 388");
  expect_corrupt(longer, kIdHex);
  // The header alone still parses: that is how a reader sizes its buffer.
  EXPECT_TRUE(parse_frame_header_only(std::span(b.frame).first(kFrameHeaderBytes)).is_ok());
}

TEST(Frame, PayloadCrc) {
  Built b = make_frame(Codec::kZstd, 1000, 300);
  b.frame[kFrameHeaderBytes + 150] ^= std::byte{0x40};
  expect_corrupt(b.frame, "payload CRC mismatch");
  expect_corrupt(b.frame, kIdHex);
}

TEST(Frame, CrcOfTheWholeFrameComesFromItsTwoCrcs) {
  for (std::uint32_t payload : {0u, 1u, 300u, 12289u, 70000u}) {
    Built b = make_frame(payload == 0 ? Codec::kRaw : Codec::kZstd, payload == 0 ? 0 : payload + 1, payload);
    auto h = parse_frame_header(b.frame);
    ASSERT_TRUE(h.is_ok()) << h.status().to_string();
    EXPECT_EQ(frame_crc32c(*h, b.frame), crc32c(b.frame)) << payload;
    // Extending a running CRC, as a pack record does over its own header.
    EXPECT_EQ(frame_crc32c(*h, b.frame, 0xfeedf00du), crc32c(b.frame, 0xfeedf00du)) << payload;
  }
  // A header that does not belong to the frame yields another CRC, so a
  // record sealed with it fails its own check instead of hiding damage.
  Built b = make_frame(Codec::kZstd, 1000, 300);
  FrameHeader wrong = *parse_frame_header(b.frame);
  wrong.payload_crc ^= 1;
  EXPECT_NE(frame_crc32c(wrong, b.frame), crc32c(b.frame));
}

TEST(Frame, ClaimedChunkIdIsReadWithoutChecks) {
  Built b = make_frame(Codec::kZstd, 1000, 300);
  b.frame[0] ^= std::byte{1};  // bad magic: nothing is verified, the field is still there
  Digest id{};
  ASSERT_TRUE(claimed_chunk_id(b.frame, id));
  EXPECT_EQ(to_hex(id), kIdHex);
  EXPECT_FALSE(claimed_chunk_id(std::span(b.frame).first(47), id));
}

}  // namespace
}  // namespace ferry
