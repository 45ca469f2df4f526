// float_codec_test.cc: the float payload (FORMAT.md section 4) end to end:
// round trips at every awkward size and value, golden vectors that pin the
// byte format, and hostile payloads (flipped, truncated, extended).
#include "codec/float_codec.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <bit>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "tests/testing/testing.h"

namespace ferry {
namespace {

using Bytes = std::vector<std::byte>;

constexpr int kVersions[] = {kFloatPayloadV1, kFloatPayloadV2};

Bytes encode(const Bytes& in, int w, int version = kFloatPayloadV2) {
  FloatEncoder enc;
  Bytes out;
  enc.encode(in, w, out, version);
  return out;
}

// Round trip in both payload versions (or only `version` when given).
void expect_round_trip(const Bytes& in, int w, const std::string& what, int version = 0) {
  for (int v : kVersions) {
    if (version != 0 && v != version) continue;
    Bytes payload = encode(in, w, v);
    ASSERT_LE(payload.size(), float_encode_bound(in.size(), w)) << what << " v" << v;
    Bytes out(in.size());
    Status s = float_decode(payload, w, out, v);
    ASSERT_TRUE(s.is_ok()) << what << " v" << v << ": " << s.to_string();
    ASSERT_TRUE(out == in) << what << " v" << v;
  }
}

std::string hex(const std::uint8_t* p, std::size_t n) {
  static const char* d = "0123456789abcdef";
  std::string s;
  for (std::size_t i = 0; i < n; ++i) {
    s += d[p[i] >> 4];
    s += d[p[i] & 15];
  }
  return s;
}
std::string hex(const Bytes& b) { return hex(reinterpret_cast<const std::uint8_t*>(b.data()), b.size()); }

std::string sha256_hex(const Bytes& b) {
  std::uint8_t md[32];
  unsigned len = 0;
  EVP_Digest(b.data(), b.size(), md, &len, EVP_sha256(), nullptr);
  return hex(md, len);
}

// Platform-independent test floats for golden vectors (std::normal_distribution
// differs between standard libraries): an Irwin-Hall approximation of a normal
// built from splitmix64 integers, scaled by a power of two (exact in IEEE).
std::uint64_t splitmix(std::uint64_t& s) {
  std::uint64_t z = (s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
Bytes golden_floats(std::size_t count, int w, bool bf16, std::uint64_t seed) {
  Bytes out(count * static_cast<std::size_t>(w));
  for (std::size_t i = 0; i < count; ++i) {
    std::uint64_t r = splitmix(seed);
    std::int32_t sum = static_cast<std::int32_t>(r & 0xffff) + static_cast<std::int32_t>((r >> 16) & 0xffff) +
                       static_cast<std::int32_t>((r >> 32) & 0xffff) + static_cast<std::int32_t>(r >> 48) -
                       2 * 65535;
    float f = static_cast<float>(sum) * (1.0f / (1 << 22));  // sigma ~ 0.009
    std::uint32_t x;
    std::memcpy(&x, &f, 4);
    if (w == 4) {
      std::memcpy(out.data() + 4 * i, &x, 4);
    } else if (bf16) {
      auto h = static_cast<std::uint16_t>((x + 0x7fff + ((x >> 16) & 1)) >> 16);
      std::memcpy(out.data() + 2 * i, &h, 2);
    } else {
      // F16 by truncation: the values are normal halves or flush to signed zero.
      std::int32_t e = static_cast<std::int32_t>((x >> 23) & 0xff) - 127 + 15;
      std::uint16_t h = static_cast<std::uint16_t>((x >> 16) & 0x8000);
      if (e > 0) h = static_cast<std::uint16_t>(h | (e << 10) | ((x >> 13) & 0x3ff));
      std::memcpy(out.data() + 2 * i, &h, 2);
    }
  }
  return out;
}

TEST(FloatCodec, RoundTripsEverySize) {
  std::uint64_t seed = testing::test_seed();
  for (int w : {1, 2, 4}) {
    std::vector<std::size_t> sizes = {0, 1, 2, 3, 5, 4095, 4096, 4097};
    std::size_t block = 16384 * static_cast<std::size_t>(w);
    for (std::size_t s : {block - 1, block, block + 1, std::size_t{(4u << 20) - 1}, std::size_t{4u << 20},
                          std::size_t{(4u << 20) + 1}})
      sizes.push_back(s);
    for (std::size_t size : sizes) {
      std::string what = "width " + std::to_string(w) + " size " + std::to_string(size);
      Bytes in = w == 1 ? testing::random_bytes(size, seed)
                        : testing::normal_floats(size / w + 1, w, true, 0.02, seed);
      if (w == 4) in = testing::normal_floats(size / 4 + 1, 4, false, 0.02, seed);
      in.resize(size);
      expect_round_trip(in, w, what + " floats");
      expect_round_trip(testing::random_bytes(size, seed + 1), w, what + " random");
    }
  }
}

TEST(FloatCodec, ShrinksTrainedLikeWeights) {
  std::uint64_t seed = testing::test_seed();
  struct Case {
    int w;
    bool bf16;
    double max_ratio;
  } cases[] = {{2, true, 0.70}, {2, false, 0.85}, {4, false, 0.90}};
  for (auto c : cases) {
    Bytes in = testing::normal_floats((1u << 20) / c.w, c.w, c.bf16, 0.02, seed);
    for (int v : kVersions) {
      Bytes payload = encode(in, c.w, v);
      EXPECT_LT(static_cast<double>(payload.size()) / in.size(), c.max_ratio) << c.w << c.bf16 << " v" << v;
      EXPECT_EQ(static_cast<std::uint8_t>(payload[0]), v) << "exponent plane is coded";
    }
  }
}

TEST(FloatCodec, SpecialValuesAreBitExact) {
  std::uint64_t seed = testing::test_seed();
  // F32: NaNs with several payloads, infinities, signed zeros, subnormals.
  std::vector<std::uint32_t> f32 = {0x7fc00000, 0xffc00000, 0x7f800001, 0x7fbfffff, 0xffffffff,
                                    0x7f800000, 0xff800000, 0x00000000, 0x80000000, 0x00000001,
                                    0x807fffff, 0x00400000, 0x3f800000};
  std::vector<std::uint16_t> f16 = {0x7e00, 0xfe00, 0x7c01, 0x7dff, 0xffff, 0x7c00, 0xfc00, 0x0000, 0x8000,
                                    0x0001, 0x83ff, 0x7fc0, 0xff81, 0x7f80, 0xff80, 0x0040, 0x807f};
  for (int w : {2, 4}) {
    Bytes in = testing::normal_floats(50000, w, true, 0.02, seed);
    std::mt19937_64 rng(seed);
    for (int i = 0; i < 3000; ++i) {
      std::size_t at = rng() % 50000;
      if (w == 4)
        std::memcpy(in.data() + 4 * at, &f32[rng() % f32.size()], 4);
      else
        std::memcpy(in.data() + 2 * at, &f16[rng() % f16.size()], 2);
    }
    expect_round_trip(in, w, "special values width " + std::to_string(w));
    // A buffer of nothing but special values.
    Bytes only(w == 4 ? f32.size() * 4 * 1000 : f16.size() * 2 * 1000);
    for (std::size_t i = 0; i < only.size() / w; ++i) {
      if (w == 4)
        std::memcpy(only.data() + 4 * i, &f32[i % f32.size()], 4);
      else
        std::memcpy(only.data() + 2 * i, &f16[i % f16.size()], 2);
    }
    expect_round_trip(only, w, "only special values width " + std::to_string(w));
  }
}

TEST(FloatCodec, SingleSymbolPlane) {
  Bytes zeros(100000 * 2);
  for (int v : kVersions) {
    Bytes payload = encode(zeros, 2, v);
    // Both planes are one symbol: each coded block is just its 128 state bytes.
    EXPECT_EQ(static_cast<std::uint8_t>(payload[0]), v);
    EXPECT_EQ(static_cast<std::uint8_t>(payload[1]), v);
    EXPECT_LT(payload.size(), 2000u);
  }
  expect_round_trip(zeros, 2, "zeros");
}

TEST(FloatCodec, AllSymbolsPresent) {
  std::mt19937_64 rng(testing::test_seed());
  Bytes in(300000);
  for (std::size_t i = 0; i < in.size(); ++i) in[i] = static_cast<std::byte>(rng() % 10 == 0 ? rng() : 7);
  for (std::size_t s = 0; s < 256; ++s) in[s * 1000] = static_cast<std::byte>(s);
  Bytes payload = encode(in, 1, kFloatPayloadV1);
  EXPECT_EQ(static_cast<std::uint8_t>(payload[0]), 1);
  for (int i = 0; i < 32; ++i) EXPECT_EQ(static_cast<std::uint8_t>(payload[1 + i]), 0xff) << i;
  payload = encode(in, 1, kFloatPayloadV2);  // mode, table count, then the first bitmap
  EXPECT_EQ(static_cast<std::uint8_t>(payload[0]), 2);
  for (int i = 0; i < 32; ++i) EXPECT_EQ(static_cast<std::uint8_t>(payload[2 + i]), 0xff) << i;
  expect_round_trip(in, 1, "all 256 symbols");
}

TEST(FloatCodec, RandomBytesStayWithinBound) {
  std::uint64_t seed = testing::test_seed();
  for (int w : {1, 2, 4}) {
    Bytes in = testing::random_bytes(1 << 20, seed + w);
    for (int v : kVersions) {
      Bytes payload = encode(in, w, v);
      EXPECT_LE(payload.size(), float_encode_bound(in.size(), w));
      EXPECT_LE(payload.size(), in.size() + static_cast<std::size_t>(w)) << "planes stay raw";
    }
    expect_round_trip(in, w, "random width " + std::to_string(w));
  }
}

// The planes are split inside the output buffer and coded towards its start
// (float_codec.cc, encode_into), so the output overlaps input still to be
// read; with the least slack the bound allows, and with more, the payload
// must be the same and decode. The input mixes coded and raw blocks (weights
// with stretches of random bytes) and coded and raw planes, with a tail.
TEST(FloatCodec, EncodeIntoTheBoundAloneGivesTheSamePayload) {
  std::uint64_t seed = testing::test_seed();
  for (int w : {1, 2, 4}) {
    Bytes in;
    if (w == 1) {  // the top bytes of BF16 weights
      Bytes bf16 = testing::normal_floats(600000, 2, true, 0.02, seed);
      for (std::size_t i = 1; i < bf16.size(); i += 2) in.push_back(bf16[i]);
    } else {
      in = testing::normal_floats(600000 / static_cast<std::size_t>(w), w, w == 2, 0.02, seed);
    }
    Bytes noise = testing::random_bytes(in.size(), seed + 1);
    for (std::size_t i = 0; i < in.size(); i += 3 * 16384 * static_cast<std::size_t>(w)) {
      std::copy_n(noise.begin() + i, std::min<std::size_t>(16384 * w, in.size() - i), in.begin() + i);
    }
    in.resize(in.size() + 3 % w);
    FloatEncoder enc;
    for (int v : kVersions) {
      Bytes want;
      for (std::size_t slack : {0u, 1u, 4096u, 1u << 20}) {
        const std::size_t bound = float_encode_bound(in.size(), w);
        Bytes out(bound + slack, std::byte{0x3c});
        out.resize(enc.encode_into(in, w, out, v));
        if (want.empty()) {
          want = out;
          expect_round_trip(in, w, "width " + std::to_string(w), v);
          EXPECT_LT(want.size(), in.size()) << "width " << w << " codes at least one plane";
        }
        EXPECT_EQ(out, want) << "width " << w << " v" << v << ", " << slack << " bytes of slack";
      }
      EXPECT_EQ(want, encode(in, w, v));
    }
  }
}

// The input made a stretch at a time (how a delta is coded) gives the
// payload of the whole input, and the fill is asked for each byte once, in
// order, kFillStretchBytes at a time.
TEST(FloatCodec, EncodeIntoFromStretchesGivesTheSamePayload) {
  std::uint64_t seed = testing::test_seed();
  FloatEncoder enc;
  for (int w : {1, 2, 4}) {
    const auto uw = static_cast<std::size_t>(w);
    for (std::size_t size : {std::size_t{5}, kFillStretchBytes - 1, kFillStretchBytes,
                             3 * kFillStretchBytes + 7, std::size_t{300000} * uw + 3 % uw}) {
      Bytes in = testing::normal_floats(size / uw + 1, w == 1 ? 2 : w, w <= 2, 0.02, seed++);
      in.resize(size);
      for (int v : kVersions) {
        Bytes want(float_encode_bound(size, w));
        want.resize(enc.encode_into(in, w, want, v));
        std::vector<std::pair<std::size_t, std::size_t>> asked;
        const FloatEncoder::StretchFill fill = [&](std::size_t offset, std::span<std::byte> dst) {
          asked.emplace_back(offset, dst.size());
          std::memcpy(dst.data(), in.data() + offset, dst.size());
        };
        Bytes out(float_encode_bound(size, w) + 100, std::byte{0x3c});
        out.resize(enc.encode_into(size, fill, w, out, v));
        const std::string what =
            "width " + std::to_string(w) + ", " + std::to_string(size) + " bytes, v" + std::to_string(v);
        EXPECT_EQ(out, want) << what;
        std::size_t next = 0;
        for (const auto& [offset, bytes] : asked) {
          EXPECT_EQ(offset, next) << what;
          EXPECT_EQ(bytes, std::min(kFillStretchBytes, size - offset)) << what;
          next = offset + bytes;
        }
        EXPECT_EQ(next, size) << what;
      }
    }
  }
}

TEST(FloatCodec, Deterministic) {
  Bytes in = testing::normal_floats(300000, 2, true, 0.02, testing::test_seed());
  FloatEncoder enc;
  Bytes a, b;
  enc.encode(in, 2, a);
  enc.encode(testing::random_bytes(5000, 1), 4, b);  // scratch reused in between
  enc.encode(in, 2, b);
  EXPECT_EQ(a, b);
  EXPECT_EQ(a, encode(in, 2));
}

// Golden vectors: any change to the byte format changes these. Update them
// only with a deliberate format change (and FORMAT.md).
TEST(FloatCodecGolden, TinyRawPayload) {
  // Three BF16 elements and one tail byte: too short to code, so both planes
  // are raw. 0x3f80 (1.0) rotates to 0x7f00, 0xbf80 (-1.0) to 0x7f01,
  // 0x0001 to 0x0002.
  Bytes in = {std::byte{0x80}, std::byte{0x3f}, std::byte{0x80}, std::byte{0xbf},
              std::byte{0x01}, std::byte{0x00}, std::byte{0xaa}};
  Bytes payload = encode(in, 2, kFloatPayloadV1);
  EXPECT_EQ(encode(in, 2, kFloatPayloadV2), payload) << "raw planes are the same in both versions";
  EXPECT_EQ(hex(payload),
            "0000"
            "7f7f00"
            "000102"
            "aa");
  expect_round_trip(in, 2, "tiny");
}

TEST(FloatCodecGolden, TinyCodedPayload) {
  // 256 equal bytes, width 1: one coded plane whose only symbol has freq
  // 4096, so every lane stays at L = 0x00010000 and no word is emitted.
  Bytes in(256, std::byte{0x81});  // rotates to 0x03
  Bytes payload = encode(in, 1, kFloatPayloadV1);
  std::string want = "01";                          // mode: coded
  want += "08" + std::string(62, '0');              // present: symbol 3
  want += "0010";                                   // freq[3] = 4096
  want += "8000";                                   // stored[0] = 128
  for (int l = 0; l < 32; ++l) want += "00000100";  // 32 final states = L
  EXPECT_EQ(hex(payload), want);
  expect_round_trip(in, 1, "tiny coded");
}

TEST(FloatCodecGolden, TinyCodedPayloadV2) {
  // As above in version 2: one table, no table choices (one table), u32
  // block sizes.
  Bytes in(256, std::byte{0x81});
  Bytes payload = encode(in, 1, kFloatPayloadV2);
  std::string want = "02";                          // mode: coded, version 2
  want += "01";                                     // one table
  want += "08" + std::string(62, '0');              // present: symbol 3
  want += "0010";                                   // freq[3] = 4096
  want += "80000000";                               // stored[0] = 128
  for (int l = 0; l < 32; ++l) want += "00000100";  // 32 final states = L
  EXPECT_EQ(hex(payload), want);
}

TEST(FloatCodecGolden, SeededPayloadHashes) {
  struct Case {
    const char* name;
    int w;
    bool bf16;
    std::size_t count;
    int version;
    const char* sha;
  } cases[] = {
      {"bf16", 2, true, 100000, 1, "b3327990229007e40f07d68839e9b379939bce55a39e3156f1d33f58e657c71d"},
      {"f16", 2, false, 100000, 1, "c8374b028f56b2db86c6a3d51abba7cba3d42c0a6aada201d2cb06bda1c6e204"},
      {"f32", 4, false, 50000, 1, "8c8d09343905ad4d75c6da2cc6c4139fac1186d5d34adc103c14eeea79cdcee8"},
      {"f8", 1, false, 70001, 1, "f5a5cc0388fc27677f3279f469a417e14ae30f5d29448ed38b239dc99aabaed8"},
      {"bf16", 2, true, 100000, 2, "33b7ef41bf4fc722619f4a9e0c93ce0971f5f2fa4d3635436763f6485bc5ab95"},
      {"f16", 2, false, 100000, 2, "7d2aaa702c3ac14541eca29089a22f50a4f59d3997ff17427b526f5a67037a59"},
      {"f32", 4, false, 50000, 2, "154cc28a4162d90642a05a7191bee5fc835c4e8b2c3655d12603968a92b886f6"},
      {"f8", 1, false, 70001, 2, "43e3b77dbf614a12bebd86d43bfce9f8cdd5a4e8c275ab5d476171498fb7e5fe"},
  };
  for (const auto& c : cases) {
    Bytes in = c.w == 1 ? golden_floats(c.count / 2, 2, true, 42) : golden_floats(c.count, c.w, c.bf16, 42);
    in.resize(c.w == 1 ? c.count : in.size());
    Bytes payload = encode(in, c.w, c.version);
    EXPECT_EQ(sha256_hex(payload), c.sha) << c.name << " (" << payload.size() << " bytes)";
    expect_round_trip(in, c.w, c.name, c.version);
  }
}

// Hostile payloads: every single-byte change, every truncation and any
// appended bytes must return an error or (a changed raw byte) other output,
// never crash, hang or touch memory outside the buffers (run under ASan).
class FloatCodecHostile : public ::testing::TestWithParam<int> {};

TEST_P(FloatCodecHostile, FlipTruncateAppend) {
  const int v = GetParam();
  // Coded plane 0 in one block; in version 2 a second table for the last
  // segment (other values there).
  Bytes in = testing::normal_floats(v == 1 ? 700 : 20000, 2, true, 0.02, 7);
  if (v == 2) {
    Bytes other = testing::normal_floats(4000, 2, true, 30.0, 8);
    std::copy(other.begin(), other.end(), in.end() - static_cast<std::ptrdiff_t>(other.size()));
  }
  Bytes payload = encode(in, 2, v);
  ASSERT_EQ(static_cast<std::uint8_t>(payload[0]), v);
  if (v == 2) {
    ASSERT_EQ(static_cast<std::uint8_t>(payload[2]), 2) << "two tables";
  }
  Bytes out(in.size());
  FloatDecoder dec;
  auto decode = [&](const Bytes& p) { return dec.decode(p, 2, out, v); };
  for (std::size_t i = 0; i < payload.size(); ++i) {
    for (std::uint8_t mask : {0x01, 0x80, 0xff}) {
      Bytes bad = payload;
      bad[i] ^= std::byte{mask};
      Status s = decode(bad);
      if (!s.is_ok()) {
        EXPECT_EQ(s.code(), Code::kCorruption) << i;
      }
    }
  }
  for (std::size_t len = 0; len < payload.size(); ++len) {
    Bytes cut(payload.begin(), payload.begin() + static_cast<std::ptrdiff_t>(len));
    EXPECT_EQ(decode(cut).code(), Code::kCorruption) << "truncated to " << len;
  }
  for (std::size_t extra : {1u, 2u, 128u}) {
    Bytes longer = payload;
    longer.resize(payload.size() + extra);
    EXPECT_EQ(decode(longer).code(), Code::kCorruption) << extra;
  }
  EXPECT_TRUE(decode(payload).is_ok());
  EXPECT_EQ(out, in);
}

INSTANTIATE_TEST_SUITE_P(Versions, FloatCodecHostile, ::testing::Values(1, 2));

TEST(FloatCodecHostileV1, ErrorsNamePlaneAndBlock) {
  Bytes in = testing::normal_floats(40000, 2, true, 0.02, 9);  // 3 blocks
  Bytes payload = encode(in, 2, kFloatPayloadV1);
  ASSERT_EQ(static_cast<std::uint8_t>(payload[0]), 1);
  // Find block 1's first state: after modes, bitmap, freqs, sizes, block 0.
  std::size_t pos = 2 + 32;
  for (int b = 0; b < 32; ++b) pos += 2 * std::popcount(static_cast<unsigned>(payload[2 + b]));
  std::uint16_t stored0;
  std::memcpy(&stored0, payload.data() + pos, 2);
  pos += 2 * 3 + stored0;
  payload[pos + 3] = std::byte{0};  // lane 0 state of block 1 now below 2^16
  payload[pos + 2] = std::byte{0};
  Bytes out(in.size());
  Status s = float_decode(payload, 2, out, kFloatPayloadV1);
  ASSERT_EQ(s.code(), Code::kCorruption);
  EXPECT_NE(s.message().find("plane 0 block 1"), std::string::npos) << s.to_string();

  Bytes bad_mode = encode(in, 2, kFloatPayloadV1);
  bad_mode[1] = std::byte{2};
  s = float_decode(bad_mode, 2, out, kFloatPayloadV1);
  EXPECT_NE(s.message().find("plane 1"), std::string::npos) << s.to_string();
  EXPECT_EQ(float_decode(bad_mode, 3, out, kFloatPayloadV1).code(), Code::kInvalidArgument);
}

TEST(FloatCodecHostileV2, ErrorsNamePlaneAndBlock) {
  Bytes in = testing::normal_floats(150000, 2, true, 0.02, 9);  // 3 blocks of 65536
  Bytes payload = encode(in, 2, kFloatPayloadV2);
  ASSERT_EQ(static_cast<std::uint8_t>(payload[0]), 2);
  // Block 1's first state: after modes, table count, tables, choices (when
  // more than one table), sizes and block 0.
  std::size_t pos = 2;
  const std::size_t tables = static_cast<std::uint8_t>(payload[pos++]);
  for (std::size_t k = 0; k < tables; ++k) {
    std::size_t present = 0;
    for (int b = 0; b < 32; ++b) present += std::popcount(static_cast<unsigned>(payload[pos + b]));
    pos += 32 + 2 * present;
  }
  if (tables > 1) pos += (150000 + planes::kSegmentSymbols - 1) / planes::kSegmentSymbols;
  std::uint32_t stored0;
  std::memcpy(&stored0, payload.data() + pos, 4);
  ASSERT_LT(stored0, 65536u) << "block 0 is coded";
  pos += 4 * 3 + stored0;
  payload[pos + 3] = std::byte{0};  // lane 0 state of block 1 now below 2^16
  payload[pos + 2] = std::byte{0};
  Bytes out(in.size());
  Status s = float_decode(payload, 2, out, kFloatPayloadV2);
  ASSERT_EQ(s.code(), Code::kCorruption);
  EXPECT_NE(s.message().find("plane 0: block 1"), std::string::npos) << s.to_string();

  Bytes bad_mode = encode(in, 2, kFloatPayloadV2);
  bad_mode[0] = std::byte{1};  // a version 1 mode in a version 2 payload
  s = float_decode(bad_mode, 2, out, kFloatPayloadV2);
  EXPECT_NE(s.message().find("plane 0: unknown mode 1"), std::string::npos) << s.to_string();
  EXPECT_EQ(float_decode(payload, 2, out, 3).code(), Code::kInvalidArgument);
}

// Version 2's reason to exist: a chunk whose tensors differ in scale gets a
// table per kind of segment, and codes smaller than with one table.
TEST(FloatCodec, V2TablesPerSegmentPay) {
  std::uint64_t seed = testing::test_seed();
  Bytes in;
  for (double scale : {0.02, 4.0, 0.0005, 1.0, 0.02, 60.0}) {
    Bytes part = testing::normal_floats(40000, 2, true, scale, seed++);
    in.insert(in.end(), part.begin(), part.end());
  }
  Bytes v1 = encode(in, 2, kFloatPayloadV1), v2 = encode(in, 2, kFloatPayloadV2);
  EXPECT_GT(static_cast<std::uint8_t>(v2[2]), 1) << "more than one table";
  EXPECT_LT(v2.size() * 100, v1.size() * 97) << "v2 " << v2.size() << " v1 " << v1.size();
  expect_round_trip(in, 2, "mixed scales");
}

TEST(FloatCodec, RealWeightsRoundTrip) {
  auto files = testing::corpus_files();
  if (files.empty()) GTEST_SKIP() << "no corpus: set FERRY_CORPUS_DIR (shared/corpus/fetch-corpus.sh)";
  int done = 0;
  for (const auto& f : files) {
    int w = f.dtype == "fp32" ? 4 : (f.dtype == "bf16" || f.dtype == "fp16") ? 2 : 0;
    if (w == 0) continue;
    Bytes data = testing::read_file(f.path);
    std::size_t take = std::min<std::size_t>(data.size(), 16u << 20);
    for (std::size_t off = 0; off < take; off += 4u << 20) {
      Bytes chunk(data.begin() + static_cast<std::ptrdiff_t>(off),
                  data.begin() + static_cast<std::ptrdiff_t>(std::min(take, off + (4u << 20))));
      expect_round_trip(chunk, w, f.name + " at " + std::to_string(off));
    }
    ++done;
  }
  if (done == 0) GTEST_SKIP() << "corpus has no bf16/fp16/fp32 files";
}

}  // namespace
}  // namespace ferry
