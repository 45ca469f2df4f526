// device_logic_test.cc: the GPU engine's per-lane integer logic (cuda/*.cuh,
// compiled here for the host) against the CPU codec, bit for bit: cost
// table, normalisation, the plane rule, a host emulation of the warp encoder
// (groups last to first, lanes 31..0 through enc_word_index) and decoder
// (dec_word_index), SHA-256 leaves and nodes, CRC32C with the parallel
// combine, and the frame header. Runs without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <vector>

#include "base/crc32c.h"
#include "codec/float_codec.h"
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

TEST(DeviceLogic, CostTableEqualsCpu) {
  for (std::uint32_t f = 1; f <= 4096; ++f) ASSERT_EQ(gpu::cost_q16(f), rans::cost_q16(f)) << f;
}

TEST(DeviceLogic, NormalisationEqualsCpu) {
  std::mt19937_64 rng(testing::test_seed());
  for (int trial = 0; trial < 2000; ++trial) {
    std::uint32_t counts[256] = {};
    int kind = trial % 4;
    int symbols = 1 + static_cast<int>(rng() % 256);
    for (int i = 0; i < symbols; ++i) {
      std::uint32_t c = kind == 0   ? 1 + rng() % 3        // many tiny: d < 0
                        : kind == 1 ? 1 + rng() % 1000000  // wide spread
                        : kind == 2 ? static_cast<std::uint32_t>(rng() % 2) * 500000 + 1
                                    : 1u << (rng() % 20);
      counts[rng() % 256] += c;
    }
    std::uint32_t want[256], got[256];
    rans::normalize_freqs(counts, want);
    gpu::normalize_freqs(counts, got);
    ASSERT_TRUE(std::equal(want, want + 256, got)) << "trial " << trial;
  }
}

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

// Host emulation of the GPU float encoder, structured as the kernels are:
// per-plane histograms (full and every 16th symbol), plane_pays, then one
// "warp" per block writing words through enc_word_index below the block's
// end. Returns the float payload.
Bytes emulate_gpu_float_encode(const Bytes& in, int w) {
  const std::size_t n = in.size() / w, tail = in.size() % w;
  std::vector<std::vector<std::uint8_t>> planes(w, std::vector<std::uint8_t>(n));
  std::vector<std::array<std::uint32_t, 256>> full(w), sampled(w);
  for (auto& h : full) h.fill(0);
  for (auto& h : sampled) h.fill(0);
  for (std::size_t i = 0; i < n; ++i) {
    std::uint32_t e = 0;
    for (int k = 0; k < w; ++k) e |= static_cast<std::uint32_t>(u8(in)[i * w + k]) << (8 * k);
    std::uint32_t r = gpu::rotate_element(e, w);
    for (int p = 0; p < w; ++p) {
      std::uint8_t s = gpu::plane_byte(r, w, p);
      planes[p][i] = s;
      ++full[p][s];
      if (i % gpu::kSampleStride == 0) ++sampled[p][s];
    }
  }
  std::vector<std::uint8_t> out(w);
  for (int p = 0; p < w; ++p) {
    std::uint32_t freq[256];
    if (!gpu::plane_pays(full[p].data(), sampled[p].data(), n, p != 0, freq)) {
      out[p] = 0;
      out.insert(out.end(), planes[p].begin(), planes[p].end());
      continue;
    }
    out[p] = 1;
    gpu::EncSym table[256];
    std::uint8_t present[32] = {};
    std::vector<std::uint8_t> freqs;
    std::uint32_t cum = 0;
    for (int s = 0; s < 256; ++s) {
      table[s] = gpu::make_enc_sym(freq[s], cum);
      cum += freq[s];
      if (!freq[s]) continue;
      present[s >> 3] |= 1u << (s & 7);
      freqs.push_back(static_cast<std::uint8_t>(freq[s]));
      freqs.push_back(static_cast<std::uint8_t>(freq[s] >> 8));
    }
    out.insert(out.end(), present, present + 32);
    out.insert(out.end(), freqs.begin(), freqs.end());
    const std::size_t blocks = (n + gpu::kBlockSymbols - 1) / gpu::kBlockSymbols;
    std::vector<std::uint8_t> stored(2 * blocks), body;
    for (std::size_t b = 0; b < blocks; ++b) {
      const std::uint8_t* sym = planes[p].data() + b * gpu::kBlockSymbols;
      const std::uint32_t m =
          static_cast<std::uint32_t>(std::min<std::size_t>(gpu::kBlockSymbols, n - b * gpu::kBlockSymbols));
      std::uint32_t size = m;
      if (m > gpu::kStateBytes) {
        const std::uint32_t max_words = (m - gpu::kStateBytes - 1) / 2;
        std::vector<std::uint16_t> region(m / 2);
        std::uint32_t x[32];
        std::fill(x, x + 32, gpu::kStateLow);
        std::uint32_t end = m / 2;  // words fill [end - words, m / 2)
        bool pays = true;
        for (std::uint32_t g = (m + 31) / 32; g-- > 0;) {
          std::uint32_t emits = 0;
          std::uint16_t words[32];
          for (int l = 0; l < 32; ++l) {  // the warp's lanes, in parallel
            if (g * 32 + l >= m) continue;
            bool emit;
            x[l] = gpu::enc_step(x[l], table[sym[g * 32 + l]], &emit, &words[l]);
            emits |= static_cast<std::uint32_t>(emit) << l;
          }
          for (int l = 0; l < 32; ++l)
            if (emits >> l & 1) region[gpu::enc_word_index(emits, l, end)] = words[l];
          end -= gpu::hd_popc(emits);
          if (m / 2 - end > max_words) {
            pays = false;
            break;
          }
        }
        if (pays) {
          std::uint32_t nw = m / 2 - end;
          size = gpu::kStateBytes + 2 * nw;
          const auto* xs = reinterpret_cast<const std::uint8_t*>(x);
          body.insert(body.end(), xs, xs + gpu::kStateBytes);
          const auto* ws = reinterpret_cast<const std::uint8_t*>(region.data() + end);
          body.insert(body.end(), ws, ws + 2 * nw);
        }
      }
      if (size == m) body.insert(body.end(), sym, sym + m);
      stored[2 * b] = static_cast<std::uint8_t>(size);
      stored[2 * b + 1] = static_cast<std::uint8_t>(size >> 8);
    }
    out.insert(out.end(), stored.begin(), stored.end());
    out.insert(out.end(), body.begin(), body.end());
  }
  out.insert(out.end(), u8(in) + n * w, u8(in) + n * w + tail);
  Bytes r(out.size());
  std::memcpy(r.data(), out.data(), out.size());
  return r;
}

// Host emulation of the warp decoder of one coded block.
bool emulate_gpu_decode_block(const std::uint32_t freq[256], const std::uint8_t* in, std::uint32_t stored,
                              std::uint32_t m, std::uint8_t* out) {
  std::uint32_t slots[4096], cum = 0;
  for (std::uint32_t s = 0; s < 256; ++s) {
    for (std::uint32_t i = 0; i < freq[s]; ++i) slots[cum + i] = gpu::dec_entry(s, freq[s], i);
    cum += freq[s];
  }
  std::uint32_t x[32];
  std::memcpy(x, in, 128);
  const std::uint32_t nwords = (stored - 128) / 2;
  std::uint32_t pos = 0;
  for (std::uint32_t g = 0; g * 32 < m; ++g) {
    std::uint32_t needs = 0;
    for (int l = 0; l < 32; ++l) {
      if (g * 32 + l >= m) continue;
      std::uint32_t e = slots[x[l] & 4095];
      out[g * 32 + l] = static_cast<std::uint8_t>(e);
      x[l] = gpu::dec_step(x[l], e);
      needs |= static_cast<std::uint32_t>(x[l] < gpu::kStateLow) << l;
    }
    if (pos + gpu::hd_popc(needs) > nwords) return false;
    for (int l = 0; l < 32; ++l) {
      if (!(needs >> l & 1)) continue;
      std::uint32_t at = gpu::dec_word_index(needs, l, pos);
      x[l] = (x[l] << 16) | gpu::get_le16(in + 128 + 2 * at);
    }
    pos += gpu::hd_popc(needs);
  }
  if (pos != nwords) return false;
  for (auto v : x)
    if (v != gpu::kStateLow) return false;
  return true;
}

void expect_same_payload(const Bytes& data, int w, const char* what) {
  FloatEncoder enc;
  Bytes want;
  enc.encode(data, w, want);
  Bytes got = emulate_gpu_float_encode(data, w);
  ASSERT_EQ(got.size(), want.size()) << what << " w=" << w << " bytes=" << data.size();
  ASSERT_TRUE(got == want) << what << " w=" << w << " bytes=" << data.size();
}

TEST(DeviceLogic, WarpEncoderEqualsCpuOnRandomAndNormalData) {
  const std::uint64_t seed = testing::test_seed();
  expect_same_payload(testing::normal_floats(1 << 20, 2, true, 0.02, seed), 2, "bf16");
  expect_same_payload(testing::normal_floats(300001, 2, false, 0.02, seed + 1), 2, "f16");
  expect_same_payload(testing::normal_floats(70001, 4, false, 0.02, seed + 2), 4, "f32");
  expect_same_payload(testing::random_bytes(200003, seed + 3), 1, "random w1");
  expect_same_payload(testing::random_bytes(100000, seed + 4), 2, "random w2");
  Bytes skewed = testing::random_bytes(1 << 18, seed + 5);
  for (std::size_t i = 0; i < skewed.size(); ++i)
    if (i % 7) skewed[i] = std::byte{0x3c};
  expect_same_payload(skewed, 1, "skewed w1");
}

TEST(DeviceLogic, WarpEncoderEqualsCpuOnEdgeSizes) {
  const std::uint64_t seed = testing::test_seed();
  for (std::size_t elems :
       {0ul,   1ul,    31ul,   32ul,    33ul,    64ul,    65ul,    127ul,   128ul,   129ul,
        257ul, 4095ul, 4096ul, 16383ul, 16384ul, 16385ul, 32768ul, 65535ul, 65536ul, 65537ul}) {
    for (int w : {1, 2, 4}) {
      Bytes d = testing::normal_floats(elems, w == 1 ? 2 : w, true, 0.02, seed + elems);
      d.resize(elems * w + (elems % 3 == 0 ? 0 : w - 1));  // odd tails too
      expect_same_payload(d, w, "edge");
    }
  }
}

TEST(DeviceLogic, WarpEncoderEqualsCpuOnCorpus) {
  auto files = testing::corpus_files();
  if (files.empty()) GTEST_SKIP() << "no corpus (set FERRY_CORPUS_DIR; see scripts/test.sh)";
  int checked = 0;
  for (const auto& f : files) {
    Bytes all = testing::read_file(f.path);
    std::size_t len = std::min<std::size_t>(all.size(), 4u << 20);
    Bytes chunk(all.begin() + (all.size() - len), all.end());
    int w = f.dtype == "fp32" ? 4 : f.dtype == "fp16" || f.dtype == "bf16" ? 2 : 1;
    expect_same_payload(chunk, w, f.name.c_str());
    if (++checked == 4) break;
  }
}

TEST(DeviceLogic, WarpDecoderReadsCpuBlocks) {
  const std::uint64_t seed = testing::test_seed();
  Bytes d = testing::normal_floats(3 * 16384 + 77, 2, true, 0.02, seed);
  FloatEncoder enc;
  Bytes payload;
  enc.encode(d, 2, payload);
  const std::uint8_t* p = u8(payload);
  ASSERT_EQ(p[0], 1) << "exponent plane should be coded";
  // Walk plane 0: bitmap, freqs, stored sizes, blocks.
  std::size_t pos = 2;
  std::uint32_t freq[256] = {};
  const std::uint8_t* present = p + pos;
  pos += 32;
  for (int s = 0; s < 256; ++s)
    if (present[s >> 3] >> (s & 7) & 1) {
      freq[s] = gpu::get_le16(p + pos);
      pos += 2;
    }
  const std::size_t n = d.size() / 2, blocks = (n + 16383) / 16384;
  const std::uint8_t* stored = p + pos;
  pos += 2 * blocks;
  int coded = 0;
  for (std::size_t b = 0; b < blocks; ++b) {
    std::uint32_t m = static_cast<std::uint32_t>(std::min<std::size_t>(16384, n - b * 16384));
    std::uint32_t st = gpu::get_le16(stored + 2 * b);
    if (st != m) {
      std::vector<std::uint8_t> got(m);
      ASSERT_TRUE(emulate_gpu_decode_block(freq, p + pos, st, m, got.data())) << "block " << b;
      for (std::uint32_t i = 0; i < m; ++i) {
        std::uint16_t e;
        std::memcpy(&e, d.data() + 2 * (b * 16384 + i), 2);
        ASSERT_EQ(got[i], gpu::plane_byte(gpu::rotate_element(e, 2), 2, 0)) << b << ":" << i;
      }
      ++coded;
      // A flipped word must fail the end-state check, never read out of range.
      std::vector<std::uint8_t> bad(p + pos, p + pos + st);
      bad[st - 2] ^= 0x5a;
      EXPECT_FALSE(emulate_gpu_decode_block(freq, bad.data(), st, m, got.data()));
    }
    pos += st;
  }
  EXPECT_GT(coded, 0);
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
  gpu::write_frame_header(table, 3, 1, h.raw_bytes, h.payload_bytes, h.chunk_id.data(), 0x12345678u, got);
  EXPECT_EQ(std::memcmp(got, want.data(), 88), 0);
}

}  // namespace
}  // namespace ferry
