// device_logic_test.cc: the GPU engine's per-lane integer logic (cuda/*.cuh,
// compiled here for the host) against the CPU codec, bit for bit: the
// encoder step, SHA-256 leaves and nodes, CRC32C
// with the parallel combine, and the frame header. The kernels' steps over
// whole batches (warp encoder and decoder included) are checked by
// encode_kernels_test.cc and decode_kernels_test.cc. Runs without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <vector>

#include "base/crc32c.h"
#include "codec/frame.h"
#include "codec/rans.h"
#include "codec/tree_hash.h"
#include "cuda/crc32c.cuh"
#include "cuda/frame_header.cuh"
#include "cuda/rans_lane.cuh"
#include "cuda/sha256.cuh"
#include "tests/testing/testing.h"

namespace ferry {
namespace {

using Bytes = std::vector<std::byte>;
const std::uint8_t* u8(const Bytes& b) { return reinterpret_cast<const std::uint8_t*>(b.data()); }

TEST(DeviceLogic, EncoderStepEqualsTrueDivision) {
  std::mt19937_64 rng(testing::test_seed());
  for (std::uint32_t f : {1u, 2u, 3u, 7u, 100u, 2047u, 4095u}) {
    std::uint32_t cum = f == 4095 ? 1 : 0;
    gpu::EncSym e = gpu::make_enc_sym(f, cum);
    for (int i = 0; i < 100000; ++i) {
      std::uint32_t x = static_cast<std::uint32_t>(rng() % (1ull << 32));
      if (x < gpu::kStateLow) x += gpu::kStateLow;
      bool emit;
      std::uint16_t word;
      std::uint32_t got = gpu::enc_step(x, e, &emit, &word);
      std::uint32_t v = x >= (f << 20) ? x >> 16 : x;
      ASSERT_EQ(emit, x >= (f << 20));
      ASSERT_EQ(got, (v / f) * 4096 + v % f + cum) << "f " << f << " x " << x;
    }
  }
}

TEST(DeviceLogic, LeafAndNodeHashesEqualCpu) {
  const std::uint64_t seed = testing::test_seed();
  Bytes d = testing::random_bytes(4096, seed);
  for (std::size_t len : {0ul, 1ul, 3ul, 4ul, 54ul, 55ul, 56ul, 63ul, 64ul, 65ul, 119ul, 120ul, 1000ul,
                          4093ul, 4095ul, 4096ul}) {
    Digest want = hash_leaf(std::span(d).first(len));
    Digest got;
    gpu::sha256_leaf_bytes(u8(d), static_cast<std::uint32_t>(len), got.data());
    EXPECT_EQ(to_hex(got), to_hex(want)) << "len " << len;
  }
  Digest l = hash_leaf(std::span(d).first(10)), r = hash_leaf(std::span(d).first(20)), got;
  gpu::sha256_node(l.data(), r.data(), got.data());
  EXPECT_EQ(got, hash_node(l, r));
}

TEST(DeviceLogic, Crc32cAndCombineEqualCpu) {
  const std::uint64_t seed = testing::test_seed();
  std::uint32_t table[256];
  for (std::uint32_t i = 0; i < 256; ++i) table[i] = gpu::crc_table_entry(i);
  Bytes d = testing::random_bytes(3 * 4096 + 1234, seed);
  EXPECT_EQ(gpu::crc32c_update(table, 0, u8(d), d.size()), crc32c(d));
  // Per-segment CRCs joined as the GPU does: a fixed 4096-byte operator
  // for whole segments and a general one for the short last segment.
  std::uint32_t shift4k[32];
  gpu::crc32c_shift_matrix(4096, shift4k);
  std::uint32_t crc = 0;
  for (std::size_t off = 0; off < d.size(); off += 4096) {
    std::size_t len = std::min<std::size_t>(4096, d.size() - off);
    std::uint32_t seg = gpu::crc32c_update(table, 0, u8(d) + off, len);
    crc = off == 0      ? seg
          : len == 4096 ? gpu::gf2_times(shift4k, crc) ^ seg
                        : gpu::crc32c_combine(crc, seg, len);
  }
  EXPECT_EQ(crc, crc32c(d));
  EXPECT_EQ(gpu::mask_crc(crc), mask_crc(crc));
}

TEST(DeviceLogic, FrameHeaderEqualsCpu) {
  std::uint32_t table[256];
  for (std::uint32_t i = 0; i < 256; ++i) table[i] = gpu::crc_table_entry(i);
  FrameHeader h;
  h.codec = Codec::kPlanes16;
  h.dtype = DType::kBF16;
  h.raw_bytes = 4u << 20;
  h.payload_bytes = 2900000;
  for (int i = 0; i < 32; ++i) h.chunk_id[i] = static_cast<std::uint8_t>(i * 7);
  h.payload_crc = mask_crc(0x12345678u);
  std::array<std::byte, kFrameHeaderBytes> want;
  write_frame_header(h, want);
  std::uint8_t got[88];
  gpu::write_frame_header(table, 3, 1, h.raw_bytes, h.payload_bytes, h.chunk_id.data(), nullptr, 0x12345678u,
                          got);
  EXPECT_EQ(std::memcmp(got, want.data(), 88), 0);

  // A delta frame: version 2, the base id in its field.
  h.version = kFrameVersionDelta;
  h.codec = Codec::kDeltaPlanes16;
  for (int i = 0; i < 32; ++i) h.base_id[i] = static_cast<std::uint8_t>(255 - i * 3);
  write_frame_header(h, want);
  gpu::write_frame_header(table, static_cast<std::uint8_t>(Codec::kDeltaPlanes16), 1, h.raw_bytes,
                          h.payload_bytes, h.chunk_id.data(), h.base_id.data(), 0x12345678u, got);
  EXPECT_EQ(std::memcmp(got, want.data(), 88), 0);
  EXPECT_TRUE(parse_frame_header_only(std::span(reinterpret_cast<const std::byte*>(got), 88)).is_ok());
}

}  // namespace
}  // namespace ferry
