// gpu_engine_gpu_test.cc: the GPU engine against the CPU engine on a real
// device: byte-identical frames (float payload version 2) on random,
// normal, mixed-scale, edge-size and corpus data of every dtype, from host
// and device memory; cross-decoding both ways; the CPU engine's version 1
// frames decoded on the GPU; corrupted
// and truncated frames rejected with the chunk named; more chunks in one
// call than a launch's gridDim.y holds; the reference check passing with
// the smallest arena; the CUDA context's growth within the reserve the
// restore counts; delta frames (a chunk with a base) the same bytes as the
// CPU engine's from host and device memory, decoded on the device against
// their base and verified against the chunk's own id (a wrong base is
// Corruption naming chunk and base). Skips, with the reason, where no
// usable GPU exists.
#include <gtest/gtest.h>

#include <vector>

#include "base/crc32c.h"
#include "codec/engine.h"
#include "cuda/batch_plan.h"
#include "cuda/gpu_engine.h"
#include "cuda/gpu_memory.h"
#include "tests/codec/delta_test_data.h"
#include "tests/testing/testing.h"

namespace ferry {
namespace {

using Bytes = std::vector<std::byte>;

class GpuEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why = gpu_unavailable_reason(0);
    if (!why.empty()) GTEST_SKIP() << "no usable GPU: " << why;
    auto g = make_gpu_engine();
    ASSERT_TRUE(g.is_ok()) << g.status().to_string();
    gpu_ = std::move(g).value();
    cpu_ = make_cpu_engine(gpu_reference_options());
  }

  // Encodes with both engines and expects the same frames; returns the CPU
  // engine's (and the GPU engine's in *gpu_frames).
  std::vector<Bytes> encode_both(const std::vector<Bytes>& data, const std::vector<DType>& types,
                                 std::vector<Bytes>* gpu_frames = nullptr) {
    std::vector<Bytes> fc(data.size()), fg(data.size());
    std::vector<EncodeJob> jc, jg;
    for (std::size_t i = 0; i < data.size(); ++i) {
      fc[i].resize(max_frame_bytes(data[i].size()));
      fg[i].resize(max_frame_bytes(data[i].size()));
      jc.push_back({data[i], types[i], false, fc[i]});
      jg.push_back({data[i], types[i], false, fg[i]});
    }
    std::vector<EncodedChunk> rc(data.size()), rg(data.size());
    EXPECT_TRUE(cpu_->encode(jc, rc).is_ok());
    Status st = gpu_->encode(jg, rg);
    EXPECT_TRUE(st.is_ok()) << st.to_string();
    for (std::size_t i = 0; i < data.size(); ++i) {
      EXPECT_EQ(rg[i].frame_bytes, rc[i].frame_bytes) << "chunk " << i;
      EXPECT_EQ(rg[i].id, rc[i].id) << "chunk " << i;
      fc[i].resize(rc[i].frame_bytes);
      fg[i].resize(rg[i].frame_bytes);
      EXPECT_TRUE(fc[i] == fg[i]) << "chunk " << i << " bytes " << data[i].size();
    }
    if (gpu_frames) *gpu_frames = fg;
    return fc;
  }

  // Both engines' frames decoded by both engines.
  void cross_decode(const std::vector<Bytes>& data, const std::vector<DType>& types) {
    std::vector<Bytes> fg;
    const std::vector<Bytes> fc = encode_both(data, types, &fg);
    decode_with(*gpu_, fc, data);
    decode_with(*cpu_, fg, data);
    decode_with(*gpu_, fg, data);
  }

  void decode_with(CodecEngine& e, const std::vector<Bytes>& frames, const std::vector<Bytes>& want) {
    std::vector<Bytes> outs(frames.size());
    std::vector<DecodeJob> jobs;
    for (std::size_t i = 0; i < frames.size(); ++i) {
      outs[i].resize(want[i].size());
      jobs.push_back({frames[i], outs[i], std::nullopt});
    }
    std::vector<Status> st(frames.size());
    ASSERT_TRUE(e.decode(jobs, st).is_ok());
    for (std::size_t i = 0; i < frames.size(); ++i) {
      EXPECT_TRUE(st[i].is_ok()) << e.kind() << " chunk " << i << ": " << st[i].to_string();
      EXPECT_TRUE(outs[i] == want[i]) << e.kind() << " chunk " << i;
    }
  }

  std::unique_ptr<CodecEngine> gpu_, cpu_;
};

// First, while the context has not yet run the engine's kernels: the device
// memory the first launches take stays within gpu_context_reserve_bytes
// (what a restore adds to its check before it allocates).
TEST_F(GpuEngineTest, FirstLaunchesStayWithinTheContextReserve) {
  auto before = gpu_memory_info(0);
  ASSERT_TRUE(before.is_ok());
  GpuOptions o;
  o.device_memory_bytes = kGpuMinArenaBytes;
  o.pinned_memory_bytes = 1u << 20;
  auto e = make_gpu_engine(o);
  ASSERT_TRUE(e.is_ok()) << e.status().to_string();
  auto cpu = make_cpu_engine(gpu_reference_options());
  Status st = check_engine_matches_cpu(**e, *cpu);  // every kernel runs
  ASSERT_TRUE(st.is_ok()) << st.to_string();
  auto after = gpu_memory_info(0);
  auto reserve = gpu_context_reserve_bytes(0);
  ASSERT_TRUE(after.is_ok() && reserve.is_ok());
  const std::uint64_t taken = before->free_bytes - after->free_bytes;
  EXPECT_LE(taken, *reserve + kGpuMinArenaBytes + (2u << 20))
      << "the context took " << taken << " bytes, the reserve is " << *reserve;
}

TEST_F(GpuEngineTest, ReferenceCheckPassesWithTheSmallestArena) {
  GpuOptions o;
  o.device_memory_bytes = 1;  // raised to kGpuMinArenaBytes
  EngineSelection sel;
  auto e = choose_engine(EngineChoice::kGpu, o, {}, &sel);
  ASSERT_TRUE(e.is_ok()) << e.status().to_string();
  EXPECT_EQ(sel.engine, "gpu");
  EXPECT_EQ(sel.reason, "GPU reference check passed");
}

// Small on purpose, for compute-sanitizer (scripts/gpu-run.sh runs
// racecheck, synccheck and initcheck over it): every kernel and every path
// once (the reference batch: coded and raw planes, two blocks, tails, a
// chunk stored raw, chunks smaller than one element), then frames whose
// CRCs were made right again after damage, so the structure checks, a
// block that does not decode and a wrong root all run on the device.
TEST_F(GpuEngineTest, SmallBatchForSanitizers) {
  Status st = check_engine_matches_cpu(*gpu_, *cpu_);
  ASSERT_TRUE(st.is_ok()) << st.to_string();
  const std::uint64_t seed = testing::test_seed();
  const Bytes d = testing::normal_floats(2 * 16384 + 100, 2, true, 0.02, seed);
  const Bytes good = encode_both({d}, {DType::kBF16})[0];
  std::vector<Bytes> bad;
  for (std::size_t at : {std::size_t{0}, std::size_t{40}, good.size() / 2 - kFrameHeaderBytes,
                         good.size() - kFrameHeaderBytes - 1}) {
    Bytes f = good;
    f[kFrameHeaderBytes + at] ^= std::byte{0x24};
    FrameHeader h = *parse_frame_header_only(good);
    h.payload_crc = mask_crc(crc32c(std::span(f).subspan(kFrameHeaderBytes)));
    write_frame_header(h, std::span(f).first<kFrameHeaderBytes>());
    bad.push_back(std::move(f));
  }
  std::vector<Bytes> outs(bad.size(), Bytes(d.size()));
  std::vector<DecodeJob> jobs;
  for (std::size_t i = 0; i < bad.size(); ++i) jobs.push_back({bad[i], outs[i], std::nullopt});
  std::vector<Status> res(bad.size());
  ASSERT_TRUE(gpu_->decode(jobs, res).is_ok());
  for (const Status& r : res) EXPECT_EQ(r.code(), Code::kCorruption) << r.to_string();
}

// Small delta frames of every width, for the sanitizers: the delta pass of
// split_hash, layout and finish, a delta that loses (coded alone after), and
// the rebuilding decode with the right base and a wrong one.
TEST_F(GpuEngineTest, SmallDeltaBatchForSanitizers) {
  std::vector<Bytes> chunks, bases;
  std::vector<DType> types;
  std::vector<Digest> base_ids;
  for (int w : {1, 2, 4}) {
    const testing::Pair p = testing::drifted_pair(w, static_cast<std::size_t>(70000 * w + 3), 31);
    chunks.push_back(p.chunk);
    bases.push_back(p.base);
    types.push_back(testing::dtype_of_width(w));
  }
  chunks.push_back(testing::random_bytes(20000, 5));  // random against a drifted base: coded alone
  bases.push_back(bases[1].size() >= 20000 ? Bytes(bases[1].begin(), bases[1].begin() + 20000) : Bytes());
  types.push_back(DType::kBF16);
  for (const Bytes& b : bases) base_ids.push_back(chunk_id(b));
  std::vector<Bytes> fc(chunks.size()), fg(chunks.size());
  std::vector<EncodeJob> jc, jg;
  for (std::size_t i = 0; i < chunks.size(); ++i) {
    fc[i].resize(max_frame_bytes(chunks[i].size()));
    fg[i].resize(max_frame_bytes(chunks[i].size()));
    jc.push_back({chunks[i], types[i], false, fc[i], nullptr, bases[i], &base_ids[i]});
    jg.push_back({chunks[i], types[i], false, fg[i], nullptr, bases[i], &base_ids[i]});
  }
  std::vector<EncodedChunk> rc(chunks.size()), rg(chunks.size());
  ASSERT_TRUE(cpu_->encode(jc, rc).is_ok());
  Status st = gpu_->encode(jg, rg);
  ASSERT_TRUE(st.is_ok()) << st.to_string();
  for (std::size_t i = 0; i < chunks.size(); ++i) {
    fc[i].resize(rc[i].frame_bytes);
    fg[i].resize(rg[i].frame_bytes);
    EXPECT_TRUE(fg[i] == fc[i]) << "chunk " << i << " (" << codec_name(rc[i].codec) << ")";
    EXPECT_EQ(is_delta_codec(rc[i].codec), i < 3) << "chunk " << i;
  }
  std::vector<Bytes> outs(chunks.size());
  Bytes wrong = bases[0];
  wrong[7] ^= std::byte{1};
  std::vector<DecodeJob> jobs;
  for (std::size_t i = 0; i < chunks.size(); ++i) {
    outs[i].resize(chunks[i].size());
    jobs.push_back({fg[i], outs[i], rg[i].id, {}, i == 0 ? std::span<const std::byte>(wrong) : bases[i]});
  }
  std::vector<Status> ds(jobs.size());
  ASSERT_TRUE(gpu_->decode(jobs, ds).is_ok());
  EXPECT_EQ(ds[0].code(), Code::kCorruption) << ds[0].to_string();
  for (std::size_t i = 1; i < chunks.size(); ++i) {
    EXPECT_TRUE(ds[i].is_ok()) << "chunk " << i << ": " << ds[i].to_string();
    EXPECT_TRUE(outs[i] == chunks[i]) << "chunk " << i;
  }
}

TEST_F(GpuEngineTest, SameFramesAsCpuAndCrossDecodes) {
  const std::uint64_t seed = testing::test_seed();
  std::vector<Bytes> data = {
      testing::normal_floats(2u << 20, 2, true, 0.02, seed),
      testing::normal_floats(1u << 20, 2, false, 0.02, seed + 1),
      testing::normal_floats(1u << 20, 4, false, 0.02, seed + 2),
      testing::random_bytes(4u << 20, seed + 3),
  };
  std::vector<DType> types = {DType::kBF16, DType::kF16, DType::kF32, DType::kBF16};
  cross_decode(data, types);
}

// Tensors of different scales in one chunk: exponent planes with several
// tables (FORMAT.md 4.2), segments choosing among them.
TEST_F(GpuEngineTest, SeveralTablesPerPlane) {
  const std::uint64_t seed = testing::test_seed();
  std::vector<Bytes> data;
  std::vector<DType> types;
  for (DType t : {DType::kBF16, DType::kF16, DType::kF32}) {
    const int w = static_cast<int>(element_bytes(t));
    Bytes d;
    for (double sigma : {0.02, 3.0, 0.0004, 0.5}) {
      const Bytes part = testing::normal_floats(300001, w, t == DType::kBF16, sigma, seed + d.size());
      d.insert(d.end(), part.begin(), part.end());
    }
    data.push_back(std::move(d));
    types.push_back(t);
  }
  std::vector<Bytes> fg;
  encode_both(data, types, &fg);
  for (std::size_t i = 0; i < fg.size(); ++i) {
    const FrameHeader h = *parse_frame_header_only(fg[i]);
    ASSERT_EQ(codec_payload_version(h.codec), 2) << "chunk " << i;
    EXPECT_GT(static_cast<int>(fg[i][kFrameHeaderBytes + element_bytes(types[i])]), 1) << "chunk " << i;
  }
  cross_decode(data, types);
}

// Frames the CPU engine wrote in payload version 1 (earlier ferry, or
// CpuEngineOptions::float_version = 1) decode on the GPU.
TEST_F(GpuEngineTest, Version1FramesDecode) {
  const std::uint64_t seed = testing::test_seed();
  CpuEngineOptions o;
  o.float_version = kFloatPayloadV1;
  auto v1 = make_cpu_engine(o);
  std::vector<Bytes> data, frames;
  std::vector<DType> types;
  for (std::size_t bytes : {1ul, 3ul, 4097ul, 32769ul, 65536ul, 1000001ul, 4ul << 20}) {
    for (DType t : {DType::kBF16, DType::kF16, DType::kF32, DType::kF8E4M3, DType::kF8E5M2}) {
      Bytes d = testing::normal_floats(bytes / 2 + 1, 2, true, 0.02, seed + bytes);
      d.resize(bytes);
      data.push_back(std::move(d));
      types.push_back(t);
    }
  }
  std::vector<EncodeJob> jobs;
  frames.resize(data.size());
  for (std::size_t i = 0; i < data.size(); ++i) {
    frames[i].resize(max_frame_bytes(data[i].size()));
    jobs.push_back({data[i], types[i], false, frames[i]});
  }
  std::vector<EncodedChunk> res(data.size());
  ASSERT_TRUE(v1->encode(jobs, res).is_ok());
  int planes = 0;
  for (std::size_t i = 0; i < data.size(); ++i) {
    frames[i].resize(res[i].frame_bytes);
    planes += codec_payload_version(res[i].codec) == 1;
  }
  EXPECT_GT(planes, 10);
  decode_with(*gpu_, frames, data);
}

TEST_F(GpuEngineTest, EdgeSizes) {
  const std::uint64_t seed = testing::test_seed();
  std::vector<Bytes> data;
  std::vector<DType> types;
  for (std::size_t bytes : {1ul,      2ul,      3ul,      255ul,    256ul,     257ul,          4095ul,
                            4096ul,   4097ul,   32767ul,  32768ul,  32769ul,   65536ul,        131071ul,
                            131073ul, 262144ul, 262147ul, 524288ul, 1000001ul, (4ul << 20) + 3}) {
    for (DType t : {DType::kBF16, DType::kF16, DType::kF32, DType::kF8E4M3, DType::kF8E5M2, DType::kBytes}) {
      Bytes d = testing::normal_floats(bytes / 2 + 1, 2, true, 0.02, seed + bytes);
      d.resize(bytes);
      data.push_back(std::move(d));
      types.push_back(t);
    }
  }
  cross_decode(data, types);
}

TEST_F(GpuEngineTest, Corpus) {
  auto files = testing::corpus_files();
  if (files.empty()) GTEST_SKIP() << "no corpus (set FERRY_CORPUS_DIR; see scripts/test.sh)";
  std::vector<Bytes> data;
  std::vector<DType> types;
  for (const auto& f : files) {
    Bytes all = testing::read_file(f.path);
    for (std::size_t off = 0; off < all.size() && data.size() < 64; off += 4u << 20) {
      data.emplace_back(all.begin() + off, all.begin() + std::min(all.size(), off + (4u << 20)));
      types.push_back(f.dtype == "fp32" ? DType::kF32 : f.dtype == "fp16" ? DType::kF16 : DType::kBF16);
    }
  }
  cross_decode(data, types);
}

// Chunks, frames and outputs in device memory (tensors already on the GPU):
// the same frames as the CPU engine's, and the frames decode in place, with
// the headers read from a host copy of the frames or copied back.
TEST_F(GpuEngineTest, DeviceMemoryEncodeAndDecode) {
  const std::uint64_t seed = testing::test_seed();
  std::vector<Bytes> data = {testing::normal_floats(1u << 20, 2, true, 0.02, seed),
                             testing::normal_floats(70001, 4, false, 0.02, seed + 1),
                             testing::random_bytes(3, seed + 2), testing::random_bytes(1, seed + 3),
                             testing::random_bytes(100000, seed + 4)};
  std::vector<DType> types = {DType::kBF16, DType::kF32, DType::kF32, DType::kBF16, DType::kBytes};
  const std::vector<Bytes> want = encode_both(data, types);
  std::vector<GpuBuffer> in, fr, out;
  std::vector<EncodeJob> jobs;
  for (std::size_t i = 0; i < data.size(); ++i) {
    in.push_back(std::move(GpuBuffer::allocate(data[i].size())).value());
    fr.push_back(std::move(GpuBuffer::allocate(max_frame_bytes(data[i].size()))).value());
    ASSERT_TRUE(in[i].upload(data[i]).is_ok());
    jobs.push_back({in[i].span(), types[i], false, fr[i].span()});
  }
  std::vector<EncodedChunk> res(data.size());
  Status st = gpu_->encode(jobs, res, MemorySpace::kDevice);
  ASSERT_TRUE(st.is_ok()) << st.to_string();
  std::vector<DecodeJob> djobs;
  for (std::size_t i = 0; i < data.size(); ++i) {
    Bytes got(res[i].frame_bytes);
    ASSERT_TRUE(fr[i].download(got).is_ok());
    EXPECT_TRUE(got == want[i]) << "chunk " << i << " bytes " << data[i].size();
    out.push_back(std::move(GpuBuffer::allocate(data[i].size())).value());
    const std::span<const std::byte> host =
        i % 2 ? std::span<const std::byte>(want[i]) : std::span<const std::byte>();
    djobs.push_back({fr[i].span().first(res[i].frame_bytes), out[i].span(), res[i].id, host});
  }
  std::vector<Status> dst(data.size());
  ASSERT_TRUE(gpu_->decode(djobs, dst, MemorySpace::kDevice).is_ok());
  for (std::size_t i = 0; i < data.size(); ++i) {
    EXPECT_TRUE(dst[i].is_ok()) << "chunk " << i << ": " << dst[i].to_string();
    Bytes back(data[i].size());
    ASSERT_TRUE(out[i].download(back).is_ok());
    EXPECT_TRUE(back == data[i]) << "chunk " << i;
  }
}

// More small chunks in one call than gridDim.y (65535) can index, with an
// arena that holds them all: the engine splits the launches.
TEST_F(GpuEngineTest, MoreChunksThanOneLaunchHolds) {
  const std::uint64_t seed = testing::test_seed();
  constexpr std::size_t kChunks = gpu::kMaxChunksPerLaunch + 1000, kBytes = 512;
  const Bytes one = testing::normal_floats(kBytes / 2, 2, true, 0.02, seed);
  std::vector<Bytes> data(kChunks, one);
  std::vector<DType> types(kChunks, DType::kBF16);
  GpuOptions o;
  o.device_memory_bytes =
      gpu::kBatchFixedBytes + kChunks * gpu::enc_chunk_device_bytes(kBytes, 2, /*stage_io=*/true);
  o.pinned_memory_bytes = kChunks * gpu::enc_chunk_pinned_bytes(kBytes);
  auto big = make_gpu_engine(o);
  ASSERT_TRUE(big.is_ok()) << big.status().to_string();
  gpu_ = std::move(big).value();
  auto frames = encode_both(data, types);
  decode_with(*gpu_, frames, data);
}

TEST_F(GpuEngineTest, DamagedFramesNameTheirChunk) {
  const std::uint64_t seed = testing::test_seed();
  Bytes d = testing::normal_floats(1u << 20, 2, true, 0.02, seed);
  auto frames = encode_both({d}, {DType::kBF16});
  std::vector<Bytes> bad;
  Bytes flip = frames[0];
  flip[kFrameHeaderBytes + 200] ^= std::byte{1};  // payload CRC
  bad.push_back(flip);
  Bytes trunc(frames[0].begin(), frames[0].end() - 10);
  bad.push_back(trunc);
  std::vector<Bytes> outs(bad.size(), Bytes(d.size()));
  std::vector<DecodeJob> jobs;
  for (std::size_t i = 0; i < bad.size(); ++i) jobs.push_back({bad[i], outs[i], std::nullopt});
  std::vector<Status> st(bad.size());
  ASSERT_TRUE(gpu_->decode(jobs, st).is_ok());
  FrameHeader h = *parse_frame_header_only(frames[0]);
  for (auto& s : st) {
    EXPECT_EQ(s.code(), Code::kCorruption) << s.to_string();
    EXPECT_NE(s.message().find(to_hex(h.chunk_id)), std::string::npos) << s.message();
  }
}

// Chunks with a base: drifted pairs of every width (tiny, with tails, one
// judged on the sample as a clear delta), an unrelated base (the chunk alone
// wins), a chunk of bytes (the width of its standalone codec), a base equal
// to the chunk (no delta), a zstd-coded chunk, and corpus chunks one small
// step from their base.
struct DeltaInputs {
  std::vector<Bytes> chunks, bases;
  std::vector<DType> types;
  std::vector<Digest> base_ids;
  void add(Bytes chunk, Bytes base, DType t) {
    base_ids.push_back(chunk_id(base));
    chunks.push_back(std::move(chunk));
    bases.push_back(std::move(base));
    types.push_back(t);
  }
};

DeltaInputs delta_inputs() {
  DeltaInputs in;
  for (int w : {1, 2, 4}) {
    for (std::size_t bytes : {3ul, 4097ul, (1ul << 20) + 3}) {
      testing::Pair p = testing::drifted_pair(w, bytes, 7 + static_cast<std::uint32_t>(bytes));
      in.add(p.chunk, p.base, testing::dtype_of_width(w));
    }
  }
  testing::Pair clear = testing::drifted_pair(4, 4u << 20, 17, 10000);  // a clear delta on the sample
  in.add(clear.chunk, clear.base, DType::kF32);
  testing::Pair a = testing::drifted_pair(2, 1u << 16, 3), b = testing::drifted_pair(2, 1u << 16, 99);
  in.add(a.chunk, b.base, DType::kBF16);  // unrelated: the chunk alone
  testing::Pair bytes = testing::drifted_pair(4, 1u << 18, 5);
  in.add(bytes.chunk, bytes.base, DType::kBytes);
  in.add(a.chunk, a.chunk, DType::kBF16);  // the base is the chunk itself
  Bytes text(1u << 17), text2;
  for (std::size_t i = 0; i < text.size(); ++i) text[i] = std::byte("ferry delta "[i % 12]);
  text2 = text;
  text2[100] = std::byte{'!'};
  in.add(text2, text, DType::kBytes);  // zstd alone
  for (const auto& f : testing::corpus_files()) {
    Bytes all = testing::read_file(f.path);
    if (all.size() < (2u << 20) || in.chunks.size() > 20) continue;
    Bytes base(all.end() - (2 << 20) - 1, all.end()), chunk = base;
    for (std::size_t i = 0; i + 2 <= chunk.size(); i += 2 * 7)
      chunk[i] = std::byte(static_cast<int>(chunk[i]) + 1);
    in.add(chunk, base, f.dtype == "fp32" ? DType::kF32 : f.dtype == "fp16" ? DType::kF16 : DType::kBF16);
  }
  return in;
}

// The CPU engine's frames for `in`, and their results.
std::vector<Bytes> cpu_delta_frames(CodecEngine& cpu, const DeltaInputs& in, std::vector<EncodedChunk>& rc) {
  std::vector<Bytes> fc(in.chunks.size());
  std::vector<EncodeJob> jobs;
  for (std::size_t i = 0; i < in.chunks.size(); ++i) {
    fc[i].resize(max_frame_bytes(in.chunks[i].size()));
    jobs.push_back({in.chunks[i], in.types[i], false, fc[i], nullptr, in.bases[i], &in.base_ids[i]});
  }
  rc.resize(jobs.size());
  EXPECT_TRUE(cpu.encode(jobs, rc).is_ok());
  for (std::size_t i = 0; i < fc.size(); ++i) fc[i].resize(rc[i].frame_bytes);
  return fc;
}

void expect_same_results(const std::vector<EncodedChunk>& rg, const std::vector<EncodedChunk>& rc,
                         const std::vector<Bytes>& fg, const std::vector<Bytes>& fc) {
  ASSERT_EQ(rg.size(), rc.size());
  for (std::size_t i = 0; i < rc.size(); ++i) {
    EXPECT_EQ(rg[i].codec, rc[i].codec) << "chunk " << i;
    EXPECT_EQ(rg[i].id, rc[i].id) << "chunk " << i;
    EXPECT_EQ(rg[i].base_id, rc[i].base_id) << "chunk " << i;
    EXPECT_EQ(rg[i].frame_bytes, rc[i].frame_bytes) << "chunk " << i;
    EXPECT_TRUE(fg[i] == fc[i]) << "chunk " << i << " (" << codec_name(rc[i].codec) << ")";
  }
}

TEST_F(GpuEngineTest, DeltaFramesSameAsCpuAndDecodeAgainstTheirBase) {
  const DeltaInputs in = delta_inputs();
  std::vector<EncodedChunk> rc, rg(in.chunks.size());
  const std::vector<Bytes> fc = cpu_delta_frames(*cpu_, in, rc);
  std::vector<Bytes> fg(in.chunks.size());
  std::vector<EncodeJob> jobs;
  for (std::size_t i = 0; i < in.chunks.size(); ++i) {
    fg[i].resize(max_frame_bytes(in.chunks[i].size()));
    jobs.push_back({in.chunks[i], in.types[i], false, fg[i], nullptr, in.bases[i], &in.base_ids[i]});
  }
  Status st = gpu_->encode(jobs, rg);
  ASSERT_TRUE(st.is_ok()) << st.to_string();
  for (std::size_t i = 0; i < fg.size(); ++i) fg[i].resize(rg[i].frame_bytes);
  expect_same_results(rg, rc, fg, fc);
  int deltas = 0;
  for (const EncodedChunk& e : rc) deltas += is_delta_codec(e.codec);
  EXPECT_GE(deltas, 6);
  EXPECT_LT(deltas, static_cast<int>(rc.size()));

  // Decoded on the GPU with the right base, a wrong one, and none.
  std::vector<Bytes> outs(fg.size()), wrong(fg.size());
  std::vector<DecodeJob> good, bad, none;
  for (std::size_t i = 0; i < fg.size(); ++i) {
    outs[i].resize(in.chunks[i].size());
    wrong[i] = in.bases[i];
    wrong[i][wrong[i].size() / 2] ^= std::byte{4};
    good.push_back({fg[i], outs[i], rc[i].id, {}, in.bases[i]});
    bad.push_back({fg[i], outs[i], rc[i].id, {}, wrong[i]});
    none.push_back({fg[i], outs[i], rc[i].id});
  }
  std::vector<Status> sg(fg.size()), sb(fg.size()), sn(fg.size());
  ASSERT_TRUE(gpu_->decode(good, sg).is_ok());
  for (std::size_t i = 0; i < fg.size(); ++i) {
    EXPECT_TRUE(sg[i].is_ok()) << "chunk " << i << ": " << sg[i].to_string();
    EXPECT_TRUE(outs[i] == in.chunks[i]) << "chunk " << i;
  }
  ASSERT_TRUE(gpu_->decode(bad, sb).is_ok());
  ASSERT_TRUE(gpu_->decode(none, sn).is_ok());
  for (std::size_t i = 0; i < fg.size(); ++i) {
    if (!is_delta_codec(rc[i].codec)) continue;
    EXPECT_EQ(sb[i].code(), Code::kCorruption) << "chunk " << i << ": " << sb[i].to_string();
    EXPECT_NE(sb[i].message().find(to_hex(rc[i].id)), std::string::npos) << sb[i].message();
    EXPECT_NE(sb[i].message().find(to_hex(rc[i].base_id)), std::string::npos) << sb[i].message();
    EXPECT_EQ(sn[i].code(), Code::kInvalidArgument) << "chunk " << i << ": " << sn[i].to_string();
  }
}

// Chunk, base and frame in device memory: the same frames as the CPU
// engine's; decoded in place against the base on the device.
TEST_F(GpuEngineTest, DeltaFramesFromAndToDeviceMemory) {
  const DeltaInputs in = delta_inputs();
  std::vector<EncodedChunk> rc, rg(in.chunks.size());
  const std::vector<Bytes> fc = cpu_delta_frames(*cpu_, in, rc);
  std::vector<GpuBuffer> chunk, base, frame, out;
  std::vector<EncodeJob> jobs;
  for (std::size_t i = 0; i < in.chunks.size(); ++i) {
    chunk.push_back(std::move(GpuBuffer::allocate(in.chunks[i].size())).value());
    base.push_back(std::move(GpuBuffer::allocate(in.bases[i].size())).value());
    frame.push_back(std::move(GpuBuffer::allocate(max_frame_bytes(in.chunks[i].size()))).value());
    ASSERT_TRUE(chunk[i].upload(in.chunks[i]).is_ok());
    ASSERT_TRUE(base[i].upload(in.bases[i]).is_ok());
    jobs.push_back(
        {chunk[i].span(), in.types[i], false, frame[i].span(), nullptr, base[i].span(), &in.base_ids[i]});
  }
  Status st = gpu_->encode(jobs, rg, MemorySpace::kDevice);
  ASSERT_TRUE(st.is_ok()) << st.to_string();
  std::vector<Bytes> fg(in.chunks.size());
  std::vector<DecodeJob> djobs;
  for (std::size_t i = 0; i < in.chunks.size(); ++i) {
    fg[i].resize(rg[i].frame_bytes);
    ASSERT_TRUE(frame[i].download(fg[i]).is_ok());
    out.push_back(std::move(GpuBuffer::allocate(in.chunks[i].size())).value());
    djobs.push_back({frame[i].span().first(rg[i].frame_bytes), out[i].span(), rc[i].id, {}, base[i].span()});
  }
  expect_same_results(rg, rc, fg, fc);
  std::vector<Status> ds(djobs.size());
  ASSERT_TRUE(gpu_->decode(djobs, ds, MemorySpace::kDevice).is_ok());
  for (std::size_t i = 0; i < djobs.size(); ++i) {
    EXPECT_TRUE(ds[i].is_ok()) << "chunk " << i << ": " << ds[i].to_string();
    Bytes back(in.chunks[i].size());
    ASSERT_TRUE(out[i].download(back).is_ok());
    EXPECT_TRUE(back == in.chunks[i]) << "chunk " << i;
  }
}

}  // namespace
}  // namespace ferry
