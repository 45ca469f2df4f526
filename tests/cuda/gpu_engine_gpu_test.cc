// gpu_engine_gpu_test.cc: the GPU engine against the CPU engine on a real
// device: byte-identical frames on random, normal, edge-size and corpus
// data, from host and device memory; cross-decoding both ways; corrupted
// and truncated frames rejected with the chunk named. Skips, with the
// reason, where no usable GPU exists.
#include <gtest/gtest.h>

#include <vector>

#include "codec/engine.h"
#include "cuda/gpu_engine.h"
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
    cpu_ = make_cpu_engine();
  }

  // Encodes with both engines and expects the same frames; returns them.
  std::vector<Bytes> encode_both(const std::vector<Bytes>& data, const std::vector<DType>& types) {
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
    return fc;
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

TEST_F(GpuEngineTest, SameFramesAsCpuAndCrossDecodes) {
  const std::uint64_t seed = testing::test_seed();
  std::vector<Bytes> data = {
      testing::normal_floats(2u << 20, 2, true, 0.02, seed),
      testing::normal_floats(1u << 20, 2, false, 0.02, seed + 1),
      testing::normal_floats(1u << 20, 4, false, 0.02, seed + 2),
      testing::random_bytes(4u << 20, seed + 3),
  };
  std::vector<DType> types = {DType::kBF16, DType::kF16, DType::kF32, DType::kBF16};
  auto frames = encode_both(data, types);
  decode_with(*gpu_, frames, data);
  decode_with(*cpu_, frames, data);
}

TEST_F(GpuEngineTest, EdgeSizes) {
  const std::uint64_t seed = testing::test_seed();
  std::vector<Bytes> data;
  std::vector<DType> types;
  for (std::size_t bytes : {1ul, 2ul, 3ul, 255ul, 256ul, 257ul, 4095ul, 4096ul, 4097ul, 32767ul, 32768ul,
                            32769ul, 65536ul, 131071ul, 262144ul, 1000001ul}) {
    for (DType t : {DType::kBF16, DType::kF32, DType::kF8E4M3}) {
      Bytes d = testing::normal_floats(bytes / 2 + 1, 2, true, 0.02, seed + bytes);
      d.resize(bytes);
      data.push_back(std::move(d));
      types.push_back(t);
    }
  }
  auto frames = encode_both(data, types);
  decode_with(*gpu_, frames, data);
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

}  // namespace
}  // namespace ferry
