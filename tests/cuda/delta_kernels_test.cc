// delta_kernels_test.cc: the GPU's delta steps (cuda/delta_steps.cuh) and
// the encode and decode kernels that use them, run on the host over the
// engine's grid (kernel_emulator.h), compared byte for byte with the CPU's
// delta codec (codec/delta_codec.cc, both of its transform paths): the
// transform and its inverse on every width, tails that are not a multiple
// of the width, tiny chunks, the delta tests' drifted pairs and the real
// corpus; whole delta frames against DeltaEncoder's; delta frames decoded
// and rebuilt from their base, verified against the chunk's own id (a wrong
// base or a damaged payload is an error, never a wrong chunk); and the GPU
// engine's passes and decisions (cuda/delta_passes.h) over the emulated
// kernels, against the CPU engine's frames. No GPU needed.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "base/crc32c.h"
#include "codec/delta_codec.h"
#include "codec/tree_hash.h"
#include "cuda/delta_steps.cuh"
#include "tests/codec/delta_test_data.h"
#include "tests/cuda/kernel_emulator.h"
#include "tests/testing/testing.h"

namespace ferry {
namespace {

namespace emu = gpu::emulator;
using Bytes = std::vector<std::byte>;
using testing::drifted_pair;
using testing::dtype_of_width;
using testing::Pair;

const std::uint8_t* u8(const Bytes& b) { return reinterpret_cast<const std::uint8_t*>(b.data()); }

// The transformed chunk as the GPU's steps make it, byte by byte.
Bytes gpu_transform(const Bytes& chunk, const Bytes& base, int w) {
  Bytes out(chunk.size());
  for (std::size_t o = 0; o < chunk.size(); ++o)
    out[o] = std::byte(gpu::delta_forward_byte(u8(chunk), u8(base), static_cast<std::uint32_t>(chunk.size()),
                                               static_cast<std::uint32_t>(w), static_cast<std::uint32_t>(o)));
  return out;
}

// The chunk rebuilt by the GPU's inverse step, element by element, the
// tail as 1-byte elements (what TileBytes does per byte).
Bytes gpu_untransform(const Bytes& t, const Bytes& base, int w) {
  Bytes out(t.size());
  const auto uw = static_cast<std::uint32_t>(w);
  const std::size_t n = t.size() / uw;
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint32_t v =
        gpu::delta_inverse(gpu::load_elem(u8(t) + i * uw, uw), gpu::load_elem(u8(base) + i * uw, uw), uw);
    for (std::uint32_t k = 0; k < uw; ++k) out[i * uw + k] = std::byte(v >> (8 * k));
  }
  for (std::size_t o = n * uw; o < t.size(); ++o)
    out[o] = std::byte(gpu::delta_inverse(u8(t)[o], u8(base)[o], 1));
  return out;
}

// Expects the GPU steps to equal the CPU transform (every path the CPU
// has) and to invert it.
void expect_transform_equal_cpu(const Bytes& chunk, const Bytes& base, int w, const std::string& what) {
  const Bytes got = gpu_transform(chunk, base, w);
  for (DeltaTransformPath path : {DeltaTransformPath::kScalar, DeltaTransformPath::kAvx2}) {
    const DeltaTransformPath used = set_delta_transform_path(path);
    Bytes want(chunk.size());
    delta_transform(chunk, base, w, want);
    EXPECT_EQ(got, want) << what << ", width " << w << ", " << chunk.size() << " bytes, path "
                         << static_cast<int>(used);
    Bytes cpu_back = got;
    delta_untransform(cpu_back, base, w);
    EXPECT_EQ(cpu_back, chunk) << what << ": the CPU inverse of the GPU transform";
  }
  set_delta_transform_path(DeltaTransformPath::kAuto);
  EXPECT_EQ(gpu_untransform(got, base, w), chunk)
      << what << ", width " << w << ", " << chunk.size() << " bytes";
}

TEST(DeltaSteps, EveryByteAndPairOfWidthOneAndTwo) {
  // Width 1: all 65536 pairs; width 2: every top byte against a spread of
  // bottom bytes, so every carry and sign case is met.
  Bytes a, b;
  for (int x = 0; x < 256; ++x)
    for (int y = 0; y < 256; ++y) {
      a.push_back(std::byte(x));
      b.push_back(std::byte(y));
    }
  expect_transform_equal_cpu(a, b, 1, "all byte pairs");
  expect_transform_equal_cpu(a, b, 2, "byte pairs as 16-bit elements");
  expect_transform_equal_cpu(a, b, 4, "byte pairs as 32-bit elements");
  for (std::uint32_t d : {0u, 1u, 0x7fu, 0x80u, 0xffu, 0x7fffu, 0x8000u, 0xffffu, 0x7fffffffu, 0x80000000u}) {
    for (std::uint32_t w : {1u, 2u, 4u}) {
      const std::uint32_t mask = gpu::elem_mask(w);
      EXPECT_EQ(gpu::delta_fold(gpu::delta_fold(d & mask, w), w), d & mask) << "fold is its own inverse";
      EXPECT_EQ(
          gpu::delta_inverse(gpu::delta_forward(d & mask, 0x5a5a5a5au & mask, w), 0x5a5a5a5au & mask, w),
          d & mask);
    }
  }
}

TEST(DeltaSteps, EqualCpuOnDriftedPairsTailsAndTinyChunks) {
  for (int w : {1, 2, 4}) {
    for (std::size_t bytes :
         {1ul, 2ul, 3ul, 5ul, 7ul, 31ul, 63ul, 64ul, 65ul, 4095ul, 4097ul, 65539ul, 262147ul}) {
      const Pair p = drifted_pair(w, bytes, 11 + static_cast<std::uint32_t>(bytes), 30000);
      expect_transform_equal_cpu(p.chunk, p.base, w, "drifted pair");
      const Bytes r = testing::random_bytes(bytes, testing::test_seed() + bytes);
      expect_transform_equal_cpu(r, p.base, w, "random against drifted");
    }
  }
}

TEST(DeltaSteps, EqualCpuOnCorpus) {
  auto files = testing::corpus_files();
  if (files.empty()) GTEST_SKIP() << "no corpus (set FERRY_CORPUS_DIR; see scripts/test.sh)";
  int pairs = 0;
  for (const auto& f : files) {
    Bytes all = testing::read_file(f.path);
    if (all.size() < 2 * 65536 + 3) continue;
    // Two real stretches of one file as chunk and base, an odd length so
    // each width has a tail.
    const std::size_t len = 65536 + 3;
    const Bytes chunk(all.end() - static_cast<std::ptrdiff_t>(len), all.end());
    const Bytes base(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(len));
    for (int w : {1, 2, 4}) expect_transform_equal_cpu(chunk, base, w, f.name);
    ++pairs;
  }
  EXPECT_GT(pairs, 0);
}

struct DeltaCase {
  Bytes chunk, base;
  DType dtype;
  std::string what;
};

// A real chunk from the corpus as the base and the same chunk one small
// step later (each element moved by a few units in its last place), as
// training moves weights.
DeltaCase stepped_corpus_case(const testing::CorpusFile& f, std::size_t bytes, std::uint64_t seed) {
  Bytes all = testing::read_file(f.path);
  bytes = std::min(bytes, all.size());
  const DType t = f.dtype == "fp32" ? DType::kF32 : f.dtype == "fp16" ? DType::kF16 : DType::kBF16;
  const std::size_t w = element_bytes(t);
  DeltaCase c{Bytes(), Bytes(all.end() - static_cast<std::ptrdiff_t>(bytes), all.end()), t, f.name};
  c.chunk = c.base;
  const Bytes noise = testing::random_bytes(c.chunk.size() / w + 1, seed);
  for (std::size_t i = 0; i + w <= c.chunk.size(); i += w) {
    const int step = static_cast<int>(static_cast<std::uint8_t>(noise[i / w]) % 9) - 4;
    std::uint32_t v = gpu::load_elem(u8(c.chunk) + i, static_cast<std::uint32_t>(w));
    v += static_cast<std::uint32_t>(step);
    for (std::size_t k = 0; k < w; ++k) c.chunk[i + k] = std::byte(v >> (8 * k));
  }
  return c;
}

std::vector<DeltaCase> delta_cases() {
  std::vector<DeltaCase> cases;
  for (int w : {1, 2, 4}) {
    for (std::size_t bytes : {1ul, 3ul, 4097ul, 65536ul + 5, 1ul << 20, (1ul << 20) + 2}) {
      const Pair p = drifted_pair(w, bytes, 29 + static_cast<std::uint32_t>(bytes));
      cases.push_back({p.chunk, p.base, dtype_of_width(w), "drifted " + std::to_string(bytes)});
    }
    // The golden vectors' inputs (tests/codec/golden/delta_frames.txt).
    const Pair g =
        drifted_pair(w, static_cast<std::size_t>(3000 * w + 1), 2024u + static_cast<std::uint32_t>(w));
    cases.push_back({g.chunk, g.base, dtype_of_width(w), "golden input"});
  }
  const Pair unrelated = drifted_pair(2, 1u << 16, 3), other = drifted_pair(2, 1u << 16, 99);
  cases.push_back({unrelated.chunk, other.base, DType::kBF16, "unrelated base (the delta does not pay)"});
  for (const auto& f : testing::corpus_files())
    if (cases.size() < 24) cases.push_back(stepped_corpus_case(f, (4u << 20) + 1, testing::test_seed()));
  return cases;
}

// The emulated kernels' delta frames, at each case's width.
std::vector<Bytes> emulated_delta_frames(const std::vector<DeltaCase>& cases) {
  std::vector<emu::EncodeInput> inputs;
  for (const DeltaCase& c : cases) {
    const int w = static_cast<int>(element_bytes(c.dtype));
    inputs.push_back({c.chunk, delta_codec(w), c.dtype, c.base, chunk_id(c.base)});
  }
  return emu::encode_batch(inputs);
}

TEST(DeltaKernels, FramesEqualTheCpuDeltaEncoder) {
  const std::vector<DeltaCase> cases = delta_cases();
  const std::vector<Bytes> got = emulated_delta_frames(cases);
  ASSERT_EQ(got.size(), cases.size());
  int deltas = 0;
  for (std::size_t k = 0; k < cases.size(); ++k) {
    const DeltaCase& c = cases[k];
    const int w = static_cast<int>(element_bytes(c.dtype));
    const Digest id = chunk_id(c.chunk), base_id = chunk_id(c.base);
    auto h = parse_frame_header(got[k]);
    ASSERT_TRUE(h.is_ok()) << c.what << ": " << h.status().to_string();
    EXPECT_EQ(h->chunk_id, id) << c.what << ": the id is the chunk's own, not the delta's";
    DeltaEncoder enc;
    Bytes want;
    const EncodedChunk e = enc.encode(c.chunk, c.dtype, id, c.base, base_id, want);
    if (is_delta_codec(e.codec)) {
      ++deltas;
      EXPECT_EQ(got[k], want) << c.what << " (" << c.chunk.size() << " bytes, width " << w << ")";
      continue;
    }
    // The CPU kept the standalone frame: the kernels' delta is the same
    // payload (or raw, when it does not shrink the chunk).
    const std::span<const std::byte> payload = enc.delta_payload(c.chunk, c.base, w);
    if (h->codec == Codec::kRaw) {
      EXPECT_GE(payload.size(), c.chunk.size()) << c.what;
    } else {
      EXPECT_EQ(h->codec, delta_codec(w)) << c.what;
      EXPECT_EQ(h->base_id, base_id) << c.what;
      EXPECT_TRUE(
          std::equal(payload.begin(), payload.end(), got[k].begin() + kFrameHeaderBytes, got[k].end()))
          << c.what;
    }
  }
  EXPECT_GE(deltas, 9) << "cases where the CPU writes a delta frame";
}

TEST(DeltaKernels, DecodeRebuildsFromTheBaseAndVerifiesTheChunkId) {
  const std::vector<DeltaCase> cases = delta_cases();
  std::vector<Bytes> frames, bases, wrong_bases;
  std::vector<const DeltaCase*> used;
  for (const DeltaCase& c : cases) {
    DeltaEncoder enc;
    Bytes frame;
    const EncodedChunk e = enc.encode(c.chunk, c.dtype, chunk_id(c.chunk), c.base, chunk_id(c.base), frame);
    if (!is_delta_codec(e.codec)) continue;
    frames.push_back(std::move(frame));
    bases.push_back(c.base);
    Bytes wrong = c.base;
    wrong[wrong.size() / 2] ^= std::byte{1};  // one bit of the base
    wrong_bases.push_back(std::move(wrong));
    used.push_back(&c);
  }
  ASSERT_GE(frames.size(), 9u);
  const std::vector<emu::DecodeOutcome> ok = emu::decode_batch(frames, bases);
  const std::vector<emu::DecodeOutcome> wrong = emu::decode_batch(frames, wrong_bases);
  for (std::size_t k = 0; k < frames.size(); ++k) {
    ASSERT_TRUE(ok[k].on_gpu) << used[k]->what;
    EXPECT_EQ(ok[k].err, gpu::kDecOk) << used[k]->what;
    EXPECT_EQ(ok[k].out, used[k]->chunk) << used[k]->what;
    // A wrong base rebuilds a wrong chunk, which its id catches.
    EXPECT_EQ(wrong[k].err, gpu::kDecHash) << used[k]->what;
  }
  // Without a base the kernels do not take the frame (the engine refuses it).
  const std::vector<emu::DecodeOutcome> none = emu::decode_batch(frames);
  for (const emu::DecodeOutcome& o : none) EXPECT_FALSE(o.on_gpu);
}

TEST(DeltaKernels, DamagedDeltaFramesAreErrorsNeverWrongChunks) {
  const Pair p = drifted_pair(2, (1u << 18) + 1, 41);
  DeltaEncoder enc;
  Bytes frame;
  ASSERT_TRUE(is_delta_codec(
      enc.encode(p.chunk, DType::kBF16, chunk_id(p.chunk), p.base, chunk_id(p.base), frame).codec));
  std::vector<Bytes> frames, bases;
  for (std::size_t at = kFrameHeaderBytes; at < frame.size(); at += 997) {
    Bytes f = frame;
    f[at] ^= std::byte{0x10};
    // The payload CRC would catch the flip first; refresh it so the
    // kernels' structural checks and the chunk id are what must catch it.
    auto h = parse_frame_header_only(f);
    ASSERT_TRUE(h.is_ok());
    h->payload_crc = mask_crc(crc32c(std::span<const std::byte>(f).subspan(kFrameHeaderBytes)));
    write_frame_header(*h, std::span<std::byte, kFrameHeaderBytes>(f.data(), kFrameHeaderBytes));
    frames.push_back(std::move(f));
    bases.push_back(p.base);
  }
  const std::vector<emu::DecodeOutcome> out = emu::decode_batch(frames, bases);
  for (std::size_t k = 0; k < frames.size(); ++k) {
    ASSERT_TRUE(out[k].on_gpu);
    if (out[k].err == gpu::kDecOk) {
      // A flip the payload absorbs (an unused bit) still rebuilds exactly.
      EXPECT_EQ(out[k].out, p.chunk) << "flip " << k;
    }
  }
}

// The GPU engine's codings of chunks with a base (its passes over the
// emulated kernels) against the CPU engine's, frame for frame and result
// for result: clear deltas judged on the sample, chunks coded both ways,
// an unrelated base, a chunk of bytes (the width of its standalone codec),
// a base equal to the chunk, a zstd chunk, and the corpus; then decoded.
TEST(DeltaKernels, EmulatedEngineCodesAsTheCpuEngine) {
  std::vector<DeltaCase> cases = delta_cases();
  const Pair clear = drifted_pair(4, 4u << 20, 17, 10000);
  cases.push_back({clear.chunk, clear.base, DType::kF32, "clear delta on the sample"});
  const Pair bytes = drifted_pair(4, 1u << 18, 5);
  cases.push_back({bytes.chunk, bytes.base, DType::kBytes, "bytes"});
  cases.push_back({bytes.chunk, bytes.chunk, DType::kBF16, "base equal to the chunk"});
  Bytes text(1u << 17);
  for (std::size_t i = 0; i < text.size(); ++i) text[i] = std::byte("ferry delta "[i % 12]);
  Bytes text2 = text;
  text2[100] = std::byte{'!'};
  cases.push_back({text2, text, DType::kBytes, "text (zstd)"});
  std::vector<Digest> base_ids;
  for (const DeltaCase& c : cases) base_ids.push_back(chunk_id(c.base));
  auto run = [&](CodecEngine& e, std::vector<Bytes>& frames, std::vector<EncodedChunk>& res) {
    std::vector<EncodeJob> jobs;
    frames.assign(cases.size(), {});
    for (std::size_t i = 0; i < cases.size(); ++i) {
      frames[i].resize(max_frame_bytes(cases[i].chunk.size()));
      jobs.push_back(
          {cases[i].chunk, cases[i].dtype, false, frames[i], nullptr, cases[i].base, &base_ids[i]});
    }
    res.assign(cases.size(), {});
    ASSERT_TRUE(e.encode(jobs, res).is_ok());
    for (std::size_t i = 0; i < cases.size(); ++i) frames[i].resize(res[i].frame_bytes);
  };
  auto cpu = make_cpu_engine(gpu_reference_options());
  emu::EmulatedGpuEngine emulated;
  CodecEngine& gpu = emulated;  // the interface's default memory space
  std::vector<Bytes> fc, fg;
  std::vector<EncodedChunk> rc, rg;
  run(*cpu, fc, rc);
  run(gpu, fg, rg);
  int deltas = 0;
  for (std::size_t i = 0; i < cases.size(); ++i) {
    EXPECT_EQ(rg[i].codec, rc[i].codec) << cases[i].what;
    EXPECT_EQ(rg[i].id, rc[i].id) << cases[i].what;
    EXPECT_EQ(rg[i].base_id, rc[i].base_id) << cases[i].what;
    EXPECT_EQ(rg[i].frame_bytes, rc[i].frame_bytes) << cases[i].what;
    EXPECT_TRUE(fg[i] == fc[i]) << cases[i].what << " (" << codec_name(rc[i].codec) << ")";
    deltas += is_delta_codec(rc[i].codec);
  }
  EXPECT_GE(deltas, 10);
  EXPECT_FALSE(is_delta_codec(rc[cases.size() - 2].codec)) << "a base equal to the chunk";
  std::vector<Bytes> outs(cases.size());
  std::vector<DecodeJob> djobs;
  for (std::size_t i = 0; i < cases.size(); ++i) {
    outs[i].resize(cases[i].chunk.size());
    djobs.push_back({fg[i], outs[i], rg[i].id, {}, cases[i].base});
  }
  std::vector<Status> st(cases.size());
  ASSERT_TRUE(gpu.decode(djobs, st).is_ok());
  for (std::size_t i = 0; i < cases.size(); ++i) {
    EXPECT_TRUE(st[i].is_ok()) << cases[i].what << ": " << st[i].to_string();
    EXPECT_EQ(outs[i], cases[i].chunk) << cases[i].what;
  }
}

}  // namespace
}  // namespace ferry
