// delta_codec_test.cc: delta frames end to end: the transform on known
// values and its inverse, round trips against a drifted base for every
// width (with odd tails), the smaller-of rule (an unrelated base gives the
// standalone frame), a wrong base or damaged frame reported as Corruption
// naming chunk and base, every truncation and byte flip refused, the header
// rules of frame version 2, and golden delta frames for codecs 16-18.
#include "codec/delta_codec.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "base/crc32c.h"
#include "tests/codec/delta_test_data.h"
#include "tests/testing/testing.h"

namespace ferry {
namespace {

using testing::drifted_pair;
using testing::dtype_of_width;
using testing::lcg;
using testing::Pair;

TEST(DeltaCodec, TransformOfKnownValues) {
  // bf16 1.0 (0x3f80) against 0x3f7f: difference +1; the other way -1,
  // folded to 0x8000 (sign and magnitude), which the plane rotation turns
  // into zigzag 1.
  auto u16 = [](std::uint16_t v) { return std::vector<std::byte>{std::byte(v), std::byte(v >> 8)}; };
  std::vector<std::byte> out(2);
  delta_transform(u16(0x3f80), u16(0x3f7f), 2, out);
  EXPECT_EQ(out, u16(0x0001));
  delta_transform(u16(0x3f7f), u16(0x3f80), 2, out);
  EXPECT_EQ(out, u16(0x8000));
  delta_transform(u16(0x0000), u16(0x8000), 2, out);  // +0 against -0: difference 0x8000
  EXPECT_EQ(out, u16(0xffff));
  std::vector<std::byte> same = u16(0x1234);
  delta_transform(same, same, 2, out);
  EXPECT_EQ(out, u16(0));
}

TEST(DeltaCodec, TransformInvertsForEveryWidthAndTail) {
  for (int w : {1, 2, 4}) {
    for (std::size_t bytes :
         {std::size_t{0}, std::size_t{1}, std::size_t{3}, std::size_t{4097}, std::size_t{70001}}) {
      Pair p = drifted_pair(w, bytes, 7, 30000);
      std::vector<std::byte> t(bytes);
      delta_transform(p.chunk, p.base, w, t);
      delta_untransform(t, p.base, w);
      EXPECT_EQ(t, p.chunk) << "width " << w << " bytes " << bytes;
    }
  }
}

TEST(DeltaCodec, EveryTransformPathGivesTheSameBytes) {
  // Random bytes (every sign and carry case) at sizes around the vector
  // steps, so the vector loops and the scalar tails both run.
  std::uint32_t s = 99;
  for (int w : {1, 2, 4}) {
    for (std::size_t bytes : {std::size_t{0}, std::size_t{1}, std::size_t{31}, std::size_t{63},
                              std::size_t{64}, std::size_t{65}, std::size_t{1000}, std::size_t{4099}}) {
      std::vector<std::byte> chunk(bytes), base(bytes);
      for (std::size_t i = 0; i < bytes; ++i) {
        chunk[i] = std::byte(lcg(s));
        base[i] = std::byte(lcg(s));
      }
      ASSERT_EQ(set_delta_transform_path(DeltaTransformPath::kScalar), DeltaTransformPath::kScalar);
      std::vector<std::byte> want(bytes);
      delta_transform(chunk, base, w, want);
      for (DeltaTransformPath path : {DeltaTransformPath::kAvx2}) {
        if (set_delta_transform_path(path) != path) {
          std::printf("transform path %d not on this CPU: only the scalar path ran\n",
                      static_cast<int>(path));
          continue;
        }
        std::vector<std::byte> got(bytes);
        delta_transform(chunk, base, w, got);
        EXPECT_EQ(got, want) << "width " << w << " bytes " << bytes;
        delta_untransform(got, base, w);
        EXPECT_EQ(got, chunk) << "width " << w << " bytes " << bytes;
      }
    }
  }
  set_delta_transform_path(DeltaTransformPath::kAuto);
}

TEST(DeltaCodec, RoundTripsAndShrinksAgainstDriftedBase) {
  for (int w : {1, 2, 4}) {
    for (std::size_t bytes : {std::size_t{4096 + 3}, std::size_t{1u << 20}}) {
      Pair p = drifted_pair(w, bytes, 11);
      const Digest id = chunk_id(p.chunk), base_id = chunk_id(p.base);
      DeltaEncoder enc;
      std::vector<std::byte> frame;
      EncodedChunk e = enc.encode(p.chunk, dtype_of_width(w), id, p.base, base_id, frame);
      ASSERT_EQ(e.codec, delta_codec(w)) << "width " << w << " bytes " << bytes;
      EXPECT_EQ(e.base_id, base_id);
      EXPECT_EQ(e.frame_bytes, frame.size());
      // Smaller than the chunk coded alone.
      ChunkEncoder alone;
      std::vector<std::byte> alone_frame;
      alone.encode(p.chunk, dtype_of_width(w), alone_frame);
      EXPECT_LT(frame.size(), alone_frame.size());

      auto h = parse_frame_header(frame);
      ASSERT_TRUE(h.is_ok()) << h.status().to_string();
      EXPECT_EQ(h->version, kFrameVersionDelta);
      EXPECT_EQ(h->base_id, base_id);
      DeltaDecoder dec;
      std::vector<std::byte> out(bytes);
      Status st = dec.decode(frame, p.base, out, &id);
      ASSERT_TRUE(st.is_ok()) << st.to_string();
      EXPECT_EQ(out, p.chunk);
      // The plain decoder needs the base and says so.
      ChunkDecoder plain;
      std::vector<std::byte> out2;
      st = plain.decode(frame, out2);
      EXPECT_EQ(st.code(), Code::kInvalidArgument);
      EXPECT_NE(st.message().find(to_hex(base_id)), std::string::npos) << st.message();
    }
  }
}

// The sample's delta-to-alone ratio of a pair (FORMAT.md 3.1's sample, both
// coded as version 2 float payloads).
double sample_delta_ratio(const Pair& p, int w) {
  std::vector<std::byte> a, b, d, out;
  gather_codec_choice_sample(p.chunk, a);
  gather_codec_choice_sample(p.base, b);
  FloatEncoder f;
  f.encode(a, w, out, kFloatPayloadV2);
  const double alone = out.size();
  d.resize(a.size());
  delta_transform(a, b, w, d);
  f.encode(d, w, out, kFloatPayloadV2);
  return out.size() / alone;
}

// A float chunk whose delta is ahead by more than 1/16 on the sample is
// coded as a delta only: the standalone frame is not made too. Here the
// delta is about 10% smaller, a margin that used to code both.
TEST(DeltaCodec, ADeltaClearlyAheadOnTheSampleIsTheOnlyCoding) {
  const Pair p = drifted_pair(4, 4u << 20, 17, 10000);
  const double ratio = sample_delta_ratio(p, 4);
  ASSERT_GT(ratio, 0.875) << "the pair no longer falls between the margins";
  ASSERT_LT(ratio, 0.9375);
  DeltaEncoder enc;
  std::vector<std::byte> frame;
  const Digest id = chunk_id(p.chunk);
  EncodedChunk e = enc.encode(p.chunk, DType::kF32, id, p.base, chunk_id(p.base), frame);
  EXPECT_EQ(e.codec, Codec::kDeltaPlanes32);
  EXPECT_EQ(enc.standalone_codings(), 0u);
  std::vector<std::byte> out(p.chunk.size());
  DeltaDecoder dec;
  ASSERT_TRUE(dec.decode(frame, p.base, out, &id).is_ok());
  EXPECT_EQ(out, p.chunk);
}

// encode_into writes the frame encode writes, coded in place (a buffer of
// frame_room_bytes, as the CPU engine lends) or not (max_frame_bytes), for
// each plan: the delta alone, both codings, an unrelated base whose
// standalone frame wins, an unusable base, and a chunk of unknown layout.
TEST(DeltaCodec, EncodeIntoWritesTheFrameEncodeWrites) {
  const Pair clear = drifted_pair(2, 1u << 20, 21);
  const Pair small = drifted_pair(4, 6000, 22);
  const Pair other = drifted_pair(2, 1u << 20, 23);
  const std::vector<std::byte> shorter(clear.base.begin(), clear.base.end() - 2);
  struct Case {
    const char* name;
    std::span<const std::byte> chunk, base;
    DType dtype;
    bool trial;
  };
  const Case cases[] = {
      {"delta alone", clear.chunk, clear.base, DType::kBF16, false},
      {"both, small chunk", small.chunk, small.base, DType::kF32, false},
      {"unrelated base", clear.chunk, other.chunk, DType::kBF16, false},
      {"base of another size", clear.chunk, shorter, DType::kBF16, false},
      {"unknown layout", small.chunk, small.base, DType::kBytes, true},
  };
  for (const Case& c : cases) {
    const Digest id = chunk_id(c.chunk), base_id = chunk_id(c.base);
    const EncodeOptions opts{.trial = c.trial};
    DeltaEncoder enc;
    std::vector<std::byte> want;
    const EncodedChunk e = enc.encode(c.chunk, c.dtype, id, c.base, base_id, want, opts);
    for (std::size_t size : {max_frame_bytes(c.chunk.size()), frame_room_bytes(c.chunk.size())}) {
      std::vector<std::byte> frame(size, std::byte{0xaa});
      const EncodedChunk got = enc.encode_into(c.chunk, c.dtype, id, c.base, base_id, frame, opts);
      EXPECT_EQ(got.codec, e.codec) << c.name << ", buffer " << size;
      EXPECT_EQ(got.base_id, e.base_id) << c.name;
      ASSERT_EQ(got.frame_bytes, want.size()) << c.name << ", buffer " << size;
      EXPECT_TRUE(std::equal(want.begin(), want.end(), frame.begin())) << c.name << ", buffer " << size;
    }
  }
  // The plans above did make a delta frame and a standalone one.
  DeltaEncoder enc;
  std::vector<std::byte> frame(frame_room_bytes(clear.chunk.size()));
  EXPECT_TRUE(is_delta_codec(enc.encode_into(clear.chunk, DType::kBF16, chunk_id(clear.chunk), clear.base,
                                             chunk_id(clear.base), frame)
                                 .codec));
  EXPECT_FALSE(is_delta_codec(enc.encode_into(clear.chunk, DType::kBF16, chunk_id(clear.chunk), other.chunk,
                                              chunk_id(other.chunk), frame)
                                  .codec));
}

TEST(DeltaCodec, BytesChunkTakesTheWidthOfItsStandaloneCodec) {
  Pair p = drifted_pair(4, 1u << 18, 5);
  DeltaEncoder enc;
  std::vector<std::byte> frame;
  EncodedChunk e =
      enc.encode(p.chunk, DType::kBytes, chunk_id(p.chunk), p.base, chunk_id(p.base), frame, {.trial = true});
  EXPECT_EQ(e.codec, Codec::kDeltaPlanes32);
  EXPECT_EQ(e.dtype, DType::kBytes);
  std::vector<std::byte> out(p.chunk.size());
  DeltaDecoder dec;
  ASSERT_TRUE(dec.decode(frame, p.base, out).is_ok());
  EXPECT_EQ(out, p.chunk);
}

TEST(DeltaCodec, KeepsTheStandaloneFrameWhenTheDeltaDoesNotPay) {
  Pair p = drifted_pair(2, 1u << 16, 3);
  Pair other = drifted_pair(2, 1u << 16, 99);  // an unrelated base
  DeltaEncoder enc;
  ChunkEncoder alone;
  std::vector<std::byte> frame, alone_frame;
  const Digest id = chunk_id(p.chunk);
  EncodedChunk e = enc.encode(p.chunk, DType::kBF16, id, other.chunk, chunk_id(other.chunk), frame);
  alone.encode(p.chunk, DType::kBF16, alone_frame);
  EXPECT_FALSE(is_delta_codec(e.codec));
  EXPECT_EQ(e.base_id, Digest{});
  EXPECT_EQ(frame, alone_frame);
  // A base of another size, or the chunk itself as base, also gives it.
  std::vector<std::byte> shorter(p.base.begin(), p.base.end() - 2);
  e = enc.encode(p.chunk, DType::kBF16, id, shorter, chunk_id(shorter), frame);
  EXPECT_EQ(frame, alone_frame);
  e = enc.encode(p.chunk, DType::kBF16, id, p.chunk, id, frame);
  EXPECT_EQ(frame, alone_frame);
  // And a standalone frame decodes through the delta decoder, base ignored.
  std::vector<std::byte> out(p.chunk.size());
  DeltaDecoder dec;
  ASSERT_TRUE(dec.decode(frame, {}, out).is_ok());
  EXPECT_EQ(out, p.chunk);
}

TEST(DeltaCodec, WrongBaseIsCorruptionNamingChunkAndBase) {
  Pair p = drifted_pair(4, 1u << 16, 13);
  const Digest id = chunk_id(p.chunk), base_id = chunk_id(p.base);
  DeltaEncoder enc;
  std::vector<std::byte> frame;
  ASSERT_TRUE(is_delta_codec(enc.encode(p.chunk, DType::kF32, id, p.base, base_id, frame).codec));
  std::vector<std::byte> wrong = p.base;
  wrong[100] ^= std::byte{1};
  std::vector<std::byte> out(p.chunk.size());
  DeltaDecoder dec;
  Status st = dec.decode(frame, wrong, out);
  ASSERT_EQ(st.code(), Code::kCorruption);
  EXPECT_NE(st.message().find(to_hex(id)), std::string::npos) << st.message();
  EXPECT_NE(st.message().find(to_hex(base_id)), std::string::npos) << st.message();
  // A base or output of the wrong size is refused before any decoding.
  std::vector<std::byte> short_base(p.base.begin(), p.base.end() - 4);
  EXPECT_EQ(dec.decode(frame, short_base, out).code(), Code::kInvalidArgument);
}

TEST(DeltaCodec, HostileFramesAreRefusedNeverCrash) {
  Pair p = drifted_pair(2, 6000, 17);
  const Digest id = chunk_id(p.chunk);
  DeltaEncoder enc;
  std::vector<std::byte> frame;
  ASSERT_TRUE(is_delta_codec(enc.encode(p.chunk, DType::kBF16, id, p.base, chunk_id(p.base), frame).codec));
  DeltaDecoder dec;
  std::vector<std::byte> out(p.chunk.size());
  for (std::size_t len = 0; len < frame.size(); ++len) {
    EXPECT_FALSE(dec.decode(std::span<const std::byte>(frame).first(len), p.base, out).is_ok()) << len;
  }
  // Every byte flipped, with the CRCs resealed so the payload decoder sees it.
  for (std::size_t i = 0; i < frame.size(); ++i) {
    std::vector<std::byte> bad = frame;
    bad[i] ^= std::byte{0x5a};
    if (i >= kFrameHeaderBytes) {
      std::uint32_t c = mask_crc(crc32c(std::span<const std::byte>(bad).subspan(kFrameHeaderBytes)));
      for (int k = 0; k < 4; ++k) bad[80 + k] = std::byte(c >> (8 * k));
      c = mask_crc(crc32c(std::span<const std::byte>(bad).first(84)));
      for (int k = 0; k < 4; ++k) bad[84 + k] = std::byte(c >> (8 * k));
    }
    auto h = parse_frame_header_only(bad);
    std::vector<std::byte> o(h.is_ok() && h->raw_bytes <= (1u << 20) ? h->raw_bytes : 0);
    std::vector<std::byte> b(o.size());
    Status st = dec.decode(bad, b, o);
    EXPECT_FALSE(st.is_ok()) << "byte " << i;
  }
}

// Frame version 2 carries exactly the delta codecs with a base id; version 1
// none of them.
TEST(DeltaCodec, HeaderRulesOfFrameVersionTwo) {
  auto header = [](std::uint8_t version, Codec codec, bool base, bool self) {
    FrameHeader h;
    h.version = version;
    h.codec = codec;
    h.dtype = DType::kBF16;
    h.raw_bytes = 100;
    h.payload_bytes = 50;
    h.chunk_id[0] = 7;
    if (base) h.base_id[0] = 9;
    if (self) h.base_id = h.chunk_id;
    std::vector<std::byte> f(kFrameHeaderBytes);
    write_frame_header(h, std::span<std::byte, kFrameHeaderBytes>(f.data(), kFrameHeaderBytes));
    return parse_frame_header_only(f);
  };
  EXPECT_TRUE(header(2, Codec::kDeltaPlanes16, true, false).is_ok());
  EXPECT_FALSE(header(1, Codec::kDeltaPlanes16, true, false).is_ok());
  EXPECT_FALSE(header(2, Codec::kPlanes16V2, true, false).is_ok());
  EXPECT_FALSE(header(2, Codec::kPlanes16V2, false, false).is_ok());
  EXPECT_FALSE(header(2, Codec::kDeltaPlanes16, false, false).is_ok());
  EXPECT_FALSE(header(2, Codec::kDeltaPlanes16, false, true).is_ok());
  EXPECT_FALSE(header(1, Codec::kPlanes16V2, true, false).is_ok());
  EXPECT_FALSE(header(3, Codec::kDeltaPlanes16, true, false).is_ok());
  EXPECT_TRUE(header(1, Codec::kPlanes16V2, false, false).is_ok());
}

// Golden delta frames: one per delta codec, fixed base and chunk.
TEST(DeltaCodec, GoldenVectors) {
  std::ostringstream now;
  for (int w : {1, 2, 4}) {
    Pair p = drifted_pair(w, static_cast<std::size_t>(3000 * w + 1), 2024u + static_cast<std::uint32_t>(w));
    const Digest id = chunk_id(p.chunk), base_id = chunk_id(p.base);
    DeltaEncoder enc;
    std::vector<std::byte> frame;
    EncodedChunk e = enc.encode(p.chunk, dtype_of_width(w), id, p.base, base_id, frame);
    EXPECT_EQ(e.codec, delta_codec(w));
    now << codec_name(e.codec) << ' ' << to_hex(id) << ' ' << to_hex(base_id) << ' ' << testing::hex_of(frame)
        << '\n';
    std::vector<std::byte> out(p.chunk.size());
    DeltaDecoder dec;
    ASSERT_TRUE(dec.decode(frame, p.base, out, &id).is_ok());
    EXPECT_EQ(out, p.chunk);
  }
  testing::expect_golden_file("tests/codec/golden/delta_frames.txt", now.str(), "delta frame bytes");
}

}  // namespace
}  // namespace ferry
