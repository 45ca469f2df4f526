// encode_kernels_test.cc: the encode kernels' own steps (cuda/encode_steps.cuh)
// run on the host over the grid the engine launches (kernel_emulator.h) and
// build whole frames, compared byte for byte with the CPU encoder on edge
// sizes (chunks smaller than one element, odd tails, block boundaries),
// normal and random data, mixed batches and the corpus; and the ranges the
// steps cover: every leaf, element and raw byte exactly once, and the tree
// reduction's schedule against the CPU Merkle root. Runs without a GPU.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "codec/chunk_codec.h"
#include "codec/tree_hash.h"
#include "tests/cuda/kernel_emulator.h"
#include "tests/testing/testing.h"

namespace ferry {
namespace {

namespace emu = gpu::emulator;
using Bytes = std::vector<std::byte>;

struct Chunk {
  Bytes data;
  DType dtype;
  std::string what;
};

// Emulates one GPU batch of the chunks the GPU codes (a planes codec) and
// expects each frame to equal the CPU encoder's. Returns how many it ran.
int expect_frames_equal_cpu(const std::vector<Chunk>& chunks) {
  CodecChoiceScratch scratch;
  std::vector<emu::EncodeInput> inputs;
  std::vector<Bytes> want;
  std::vector<std::string> what;
  for (const Chunk& c : chunks) {
    const Codec codec = gpu::gpu_chunk_codec(c.data, c.dtype, false, scratch);
    if (codec == Codec::kRaw) continue;  // zstd, empty or a close call: the CPU engine codes it
    inputs.push_back({c.data, codec, c.dtype});
    ChunkEncoder enc;
    Bytes frame;
    enc.encode(c.data, c.dtype, frame, {.float_version = kGpuFloatPayloadVersion});
    want.push_back(std::move(frame));
    what.push_back(c.what + " (" + std::string(dtype_name(c.dtype)) + ", " + std::to_string(c.data.size()) +
                   " bytes, " + std::string(codec_name(codec)) + ")");
  }
  const std::vector<Bytes> got = emu::encode_batch(inputs);
  EXPECT_EQ(got.size(), want.size());
  for (std::size_t k = 0; k < got.size() && k < want.size(); ++k) {
    EXPECT_EQ(got[k].size(), want[k].size()) << what[k];
    if (got[k] == want[k]) continue;
    std::size_t at = 0;
    while (at < got[k].size() && at < want[k].size() && got[k][at] == want[k][at]) ++at;
    ADD_FAILURE() << what[k] << ": frames differ from byte " << at;
  }
  return static_cast<int>(got.size());
}

TEST(EncodeKernels, ChunksSmallerThanOneElementAreCopiedRaw) {
  const std::uint64_t seed = testing::test_seed();
  std::vector<Chunk> chunks;
  for (DType t : {DType::kBF16, DType::kF16, DType::kF32}) {
    for (std::size_t bytes = 1; bytes < element_bytes(t); ++bytes)
      chunks.push_back({testing::random_bytes(bytes, seed + bytes), t, "smaller than one element"});
  }
  // The float codec is chosen for all of them and stores each raw.
  CodecChoiceScratch scratch;
  for (const Chunk& c : chunks) ASSERT_NE(gpu::gpu_chunk_codec(c.data, c.dtype, false, scratch), Codec::kRaw);
  EXPECT_EQ(expect_frames_equal_cpu(chunks), 5);
  // Each also alone (the grid of a batch of only such chunks).
  for (const Chunk& c : chunks) expect_frames_equal_cpu({c});
}

TEST(EncodeKernels, FramesEqualCpuOnEdgeSizes) {
  const std::uint64_t seed = testing::test_seed();
  std::vector<Chunk> chunks;
  for (std::size_t elems : {0ul,     1ul,     31ul,    32ul,    33ul,     64ul,     65ul,    127ul,
                            128ul,   129ul,   257ul,   4095ul,  4096ul,   16383ul,  16384ul, 16385ul,
                            32768ul, 65535ul, 65536ul, 65537ul, 131071ul, 131105ul, 262145ul}) {
    for (DType t : {DType::kF8E4M3, DType::kBF16, DType::kF32}) {
      const std::size_t w = element_bytes(t);
      Bytes d = testing::normal_floats(elems + 1, w == 1 ? 2 : static_cast<int>(w), true, 0.02, seed + elems);
      d.resize(elems * w + (elems % 3 == 0 ? 0 : w - 1));  // odd tails too
      chunks.push_back({std::move(d), t, "edge " + std::to_string(elems) + " elements"});
    }
  }
  // Some (the shortest, and close calls between planes and zstd) are the
  // CPU engine's to code.
  EXPECT_GT(expect_frames_equal_cpu(chunks), 25);
}

TEST(EncodeKernels, FramesEqualCpuOnNormalRandomAndSkewedData) {
  const std::uint64_t seed = testing::test_seed();
  Bytes skewed = testing::random_bytes(1 << 18, seed + 5);
  for (std::size_t i = 0; i < skewed.size(); ++i)
    if (i % 7) skewed[i] = std::byte{0x3c};
  std::vector<Chunk> chunks = {
      {testing::normal_floats(1 << 20, 2, true, 0.02, seed), DType::kBF16, "normal"},
      {testing::normal_floats(300001, 2, false, 0.02, seed + 1), DType::kF16, "normal"},
      {testing::normal_floats(70001, 4, false, 0.02, seed + 2), DType::kF32, "normal"},
      {testing::random_bytes(200003, seed + 3), DType::kF8E4M3, "random"},
      {testing::random_bytes(100000, seed + 4), DType::kBF16, "random (stored raw)"},
      {std::move(skewed), DType::kF8E5M2, "skewed"},
  };
  // Random bytes are a close call (neither shrinks them) and skewed ones
  // may go to zstd: the CPU engine codes those.
  EXPECT_GE(expect_frames_equal_cpu(chunks), 3);
}

// Tensors of different scales in one chunk: planes with several tables,
// segments choosing among them, blocks that span several segments.
TEST(EncodeKernels, FramesEqualCpuWithSeveralTablesPerPlane) {
  const std::uint64_t seed = testing::test_seed();
  std::vector<Chunk> chunks;
  for (DType t : {DType::kBF16, DType::kF16, DType::kF32}) {
    const std::size_t w = element_bytes(t);
    Bytes d;
    for (double sigma : {0.02, 3.0, 0.0004, 0.5}) {
      const Bytes part =
          testing::normal_floats(70001, static_cast<int>(w), t == DType::kBF16, sigma, seed + d.size());
      d.insert(d.end(), part.begin(), part.end());
    }
    chunks.push_back({std::move(d), t, "four scales"});
  }
  EXPECT_EQ(expect_frames_equal_cpu(chunks), 3);
  // The exponent plane of each frame takes more than one table.
  CodecChoiceScratch scratch;
  std::vector<emu::EncodeInput> inputs;
  for (const Chunk& c : chunks)
    inputs.push_back({c.data, gpu::gpu_chunk_codec(c.data, c.dtype, false, scratch), c.dtype});
  for (const Bytes& f : emu::encode_batch(inputs)) {
    const std::size_t w = static_cast<std::size_t>(codec_element_width(parse_frame_header_only(f)->codec));
    ASSERT_EQ(static_cast<int>(f[kFrameHeaderBytes]), 2) << "plane 0 coded";
    EXPECT_GT(static_cast<int>(f[kFrameHeaderBytes + w]), 1) << "tables of plane 0, width " << w;
  }
}

TEST(EncodeKernels, FramesEqualCpuOnCorpus) {
  auto files = testing::corpus_files();
  if (files.empty()) GTEST_SKIP() << "no corpus (set FERRY_CORPUS_DIR; see scripts/test.sh)";
  // The last 4 MiB of files until four of them are chunks the GPU codes
  // (the CPU engine codes zstd chunks and close calls, so a file whose
  // sample is one is passed over).
  std::vector<Chunk> chunks;
  CodecChoiceScratch scratch;
  for (const auto& f : files) {
    Bytes all = testing::read_file(f.path);
    const std::size_t len = std::min<std::size_t>(all.size(), 4u << 20);
    const DType t = f.dtype == "fp32" ? DType::kF32 : f.dtype == "fp16" ? DType::kF16 : DType::kBF16;
    Chunk c{Bytes(all.end() - static_cast<std::ptrdiff_t>(len), all.end()), t, f.name};
    if (gpu::gpu_chunk_codec(c.data, c.dtype, false, scratch) == Codec::kRaw) continue;
    chunks.push_back(std::move(c));
    if (chunks.size() == 4) break;
  }
  EXPECT_EQ(expect_frames_equal_cpu(chunks), static_cast<int>(chunks.size()));
  EXPECT_EQ(chunks.size(), 4u) << "corpus files whose chunk the GPU codes";
}

TEST(EncodeKernels, LeavesAndElementsAreEachCoveredOnce) {
  for (std::uint32_t raw : {1u, 2u, 3u, 4095u, 4096u, 4097u, 8191u, 65536u, 65539u, 1000003u}) {
    for (std::uint32_t w : {1u, 2u, 4u}) {
      const std::uint32_t n = raw / w, leaves = gpu::leaves_of(raw);
      std::uint32_t next_byte = 0, next_elem = 0;
      for (std::uint32_t leaf = 0; leaf < leaves + 3; ++leaf) {  // threads past the last leaf too
        const gpu::ByteRange b = gpu::leaf_bytes(leaf, raw);
        const gpu::ByteRange e = gpu::leaf_elements(leaf, raw, w, n);
        if (leaf >= leaves) {
          EXPECT_EQ(b.begin, b.end) << raw << " leaf " << leaf;
          EXPECT_EQ(e.begin, e.end) << raw << " leaf " << leaf;
          continue;
        }
        ASSERT_EQ(b.begin, next_byte) << raw << " leaf " << leaf;
        ASSERT_EQ(e.begin, next_elem) << raw << " w " << w << " leaf " << leaf;
        EXPECT_LE(b.end - b.begin, gpu::kLeafBytes);
        EXPECT_LE(e.end * w, b.end) << "an element past its leaf";
        next_byte = b.end;
        next_elem = e.end;
      }
      EXPECT_EQ(next_byte, raw);
      EXPECT_EQ(next_elem, n) << raw << " w " << w;
    }
  }
}

TEST(EncodeKernels, RawCopyCoversEveryByteOnceWhateverTheWidth) {
  for (std::uint32_t raw : {1u, 2u, 3u, 16383u, 16384u, 16385u, 65537u, 4u << 20}) {
    for (std::uint32_t w : {1u, 2u, 4u}) {
      const gpu::EncChunk c = gpu::make_enc_chunk(raw, w, 0, 0);
      // The assemble grid reaches every raw-copy unit, also when the chunk
      // has no plane block at all (raw < w).
      ASSERT_GE(gpu::assemble_units(c), gpu::raw_copy_units(raw)) << raw << " w " << w;
      std::uint32_t next = 0;
      for (std::uint32_t u = 0; u < gpu::assemble_units(c) + 2; ++u) {
        const gpu::ByteRange r = gpu::raw_copy_range(u, raw);
        if (r.begin == r.end) continue;
        ASSERT_EQ(r.begin, next) << raw << " unit " << u;
        next = r.end;
      }
      EXPECT_EQ(next, raw) << raw << " w " << w;
    }
  }
}

TEST(EncodeKernels, TreeReduceScheduleGivesTheMerkleRoot) {
  std::mt19937_64 rng(testing::test_seed());
  for (std::uint32_t threads : {1u, 3u, 32u, 256u}) {
    for (std::uint32_t count : {1u, 2u, 3u, 4u, 5u, 7u, 8u, 9u, 255u, 256u, 257u, 511u, 513u, 1000u}) {
      std::vector<Digest> leaves(count);
      for (Digest& d : leaves)
        for (auto& b : d) b = static_cast<std::uint8_t>(rng());
      std::vector<std::uint8_t> flat(gpu::kDigestBytes * count);
      for (std::uint32_t i = 0; i < count; ++i) std::copy(leaves[i].begin(), leaves[i].end(), &flat[32 * i]);
      gpu::tree_reduce(emu::HostBlock{threads}, flat.data(), count);
      Digest got;
      std::copy(flat.begin(), flat.begin() + 32, got.begin());
      EXPECT_EQ(to_hex(got), to_hex(merkle_root(leaves))) << count << " leaves, " << threads << " threads";
    }
  }
}

}  // namespace
}  // namespace ferry
