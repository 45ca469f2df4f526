// engine_test.cc: the CPU codec engine produces exactly ChunkEncoder's
// frames for a batch (with or without the ids given), decodes and verifies
// them, names the chunk of a bad frame, decodes delta frames against the
// base a job carries, and the shared codec choice agrees with ChunkEncoder's.
#include "codec/engine.h"

#include <gtest/gtest.h>

#include <vector>

#include "base/thread_pool.h"
#include "codec/chunk_codec.h"
#include "codec/delta_codec.h"
#include "tests/codec/delta_test_data.h"
#include "tests/testing/testing.h"

namespace ferry {
namespace {

struct Batch {
  std::vector<std::vector<std::byte>> data;
  std::vector<DType> dtypes;
};

Batch mixed_batch(std::uint64_t seed) {
  Batch b;
  auto add = [&](std::vector<std::byte> d, DType t) {
    b.data.push_back(std::move(d));
    b.dtypes.push_back(t);
  };
  add(testing::normal_floats(1 << 20, 2, true, 0.02, seed), DType::kBF16);
  add(testing::normal_floats(300001, 2, false, 0.02, seed + 1), DType::kF16);
  add(testing::normal_floats(65537, 4, false, 0.02, seed + 2), DType::kF32);
  add(testing::random_bytes(4096, seed + 3), DType::kBytes);
  add({}, DType::kBF16);
  add(std::vector<std::byte>(100000, std::byte{0}), DType::kF32);
  add(testing::random_bytes(12345, seed + 4), DType::kBF16);
  return b;
}

TEST(CpuEngine, BatchEqualsChunkEncoderAndRoundTrips) {
  const std::uint64_t seed = testing::test_seed();
  Batch b = mixed_batch(seed);
  auto engine = make_cpu_engine();
  EXPECT_EQ(engine->kind(), "cpu");
  EXPECT_FALSE(engine->supports(MemorySpace::kDevice));

  std::vector<std::vector<std::byte>> frames(b.data.size());
  std::vector<EncodeJob> jobs;
  for (std::size_t i = 0; i < b.data.size(); ++i) {
    frames[i].resize(max_frame_bytes(b.data[i].size()));
    jobs.push_back({b.data[i], b.dtypes[i], false, frames[i]});
  }
  std::vector<EncodedChunk> results(jobs.size());
  ASSERT_TRUE(engine->encode(jobs, results).is_ok());

  ChunkEncoder ref;
  std::vector<std::byte> want;
  std::vector<std::vector<std::byte>> outs(jobs.size());
  std::vector<DecodeJob> djobs;
  for (std::size_t i = 0; i < jobs.size(); ++i) {
    EncodedChunk e = ref.encode(b.data[i], b.dtypes[i], want);
    ASSERT_EQ(results[i].frame_bytes, want.size()) << "chunk " << i;
    EXPECT_EQ(results[i].id, e.id);
    EXPECT_EQ(results[i].codec, e.codec);
    EXPECT_TRUE(std::equal(want.begin(), want.end(), frames[i].begin())) << "chunk " << i;
    outs[i].resize(b.data[i].size());
    djobs.push_back({std::span(frames[i]).first(results[i].frame_bytes), outs[i], e.id});
  }
  std::vector<Status> st(djobs.size());
  ASSERT_TRUE(engine->decode(djobs, st).is_ok());
  for (std::size_t i = 0; i < djobs.size(); ++i) {
    EXPECT_TRUE(st[i].is_ok()) << st[i].to_string();
    EXPECT_EQ(outs[i], b.data[i]);
  }
}

TEST(CpuEngine, KnownIdIsTrustedAndGivesTheSameFrame) {
  Batch b = mixed_batch(testing::test_seed());
  auto engine = make_cpu_engine();
  const std::size_t n = b.data.size();
  std::vector<Digest> ids(n);
  for (std::size_t i = 0; i < n; ++i) ids[i] = chunk_id(b.data[i]);
  std::vector<std::vector<std::byte>> plain(n), known(n), wrong(n);
  std::vector<EncodeJob> pj, kj, wj;
  const Digest bogus{};
  for (std::size_t i = 0; i < n; ++i) {
    for (auto* f : {&plain[i], &known[i], &wrong[i]}) f->resize(max_frame_bytes(b.data[i].size()));
    pj.push_back({b.data[i], b.dtypes[i], false, plain[i]});
    kj.push_back({b.data[i], b.dtypes[i], false, known[i], &ids[i]});
    wj.push_back({b.data[i], b.dtypes[i], false, wrong[i], &bogus});
  }
  std::vector<EncodedChunk> pr(n), kr(n), wr(n);
  ASSERT_TRUE(engine->encode(pj, pr).is_ok());
  ASSERT_TRUE(engine->encode(kj, kr).is_ok());
  ASSERT_TRUE(engine->encode(wj, wr).is_ok());
  ChunkDecoder dec;
  std::vector<std::byte> out;
  for (std::size_t i = 0; i < n; ++i) {
    EXPECT_EQ(kr[i].id, ids[i]);
    ASSERT_EQ(kr[i].frame_bytes, pr[i].frame_bytes);
    EXPECT_TRUE(std::equal(plain[i].begin(), plain[i].begin() + pr[i].frame_bytes, known[i].begin()))
        << "chunk " << i;
    // The engine did not hash again: a wrong id goes into the frame, and
    // verification catches it on decode.
    EXPECT_EQ(wr[i].id, bogus);
    Status st = dec.decode(std::span(wrong[i]).first(wr[i].frame_bytes), out);
    EXPECT_EQ(st.code(), Code::kCorruption) << "chunk " << i;
  }
}

TEST(CpuEngine, BadFrameIsThatChunksErrorOnly) {
  const std::uint64_t seed = testing::test_seed();
  auto a = testing::normal_floats(1 << 18, 2, true, 0.02, seed);
  auto c = testing::normal_floats(1 << 18, 4, false, 0.02, seed + 1);
  ChunkEncoder enc;
  std::vector<std::byte> fa, fc;
  EncodedChunk ea = enc.encode(a, DType::kBF16, fa);
  enc.encode(c, DType::kF32, fc);
  fa[kFrameHeaderBytes + fa.size() / 2] ^= std::byte{0x40};  // payload CRC now fails
  std::vector<std::byte> oa(a.size()), oc(c.size());
  std::vector<DecodeJob> jobs = {{fa, oa, std::nullopt}, {fc, oc, std::nullopt}};
  std::vector<Status> st(2);
  auto engine = make_cpu_engine();
  ASSERT_TRUE(engine->decode(jobs, st).is_ok());
  EXPECT_EQ(st[0].code(), Code::kCorruption);
  EXPECT_NE(st[0].message().find(to_hex(ea.id)), std::string::npos) << st[0].message();
  EXPECT_TRUE(st[1].is_ok()) << st[1].to_string();
  EXPECT_EQ(oc, c);
}

// A delta frame decodes with the base its job carries, verified against
// the chunk's id; a wrong base is Corruption naming both ids, no base
// InvalidArgument naming the base.
TEST(CpuEngine, DecodesDeltaFramesAgainstTheJobsBase) {
  const testing::Pair p = testing::drifted_pair(2, (1u << 18) + 1, 9);
  const Digest id = chunk_id(p.chunk), base_id = chunk_id(p.base);
  std::vector<std::byte> frame(max_frame_bytes(p.chunk.size()));
  std::vector<EncodeJob> ejobs = {{p.chunk, DType::kBF16, false, frame, nullptr, p.base, &base_id}};
  std::vector<EncodedChunk> r(1);
  auto engine = make_cpu_engine();
  ASSERT_TRUE(engine->encode(ejobs, r).is_ok());
  ASSERT_EQ(r[0].codec, Codec::kDeltaPlanes16);
  frame.resize(r[0].frame_bytes);
  std::vector<std::byte> wrong = p.base;
  wrong[100] ^= std::byte{1};
  std::vector<std::byte> o1(p.chunk.size()), o2(p.chunk.size()), o3(p.chunk.size());
  std::vector<DecodeJob> jobs = {{frame, o1, id, {}, p.base}, {frame, o2, id, {}, wrong}, {frame, o3, id}};
  std::vector<Status> st(jobs.size());
  ASSERT_TRUE(engine->decode(jobs, st).is_ok());
  EXPECT_TRUE(st[0].is_ok()) << st[0].to_string();
  EXPECT_EQ(o1, p.chunk);
  EXPECT_EQ(st[1].code(), Code::kCorruption) << st[1].to_string();
  EXPECT_NE(st[1].message().find(to_hex(id)), std::string::npos) << st[1].message();
  EXPECT_NE(st[1].message().find(to_hex(base_id)), std::string::npos) << st[1].message();
  EXPECT_EQ(st[2].code(), Code::kInvalidArgument) << st[2].to_string();
  EXPECT_NE(st[2].message().find(to_hex(base_id)), std::string::npos) << st[2].message();
}

TEST(CpuEngine, RejectsDeviceMemoryAndShortFrameBuffers) {
  auto engine = make_cpu_engine();
  std::vector<std::byte> d(8192), f(100);
  std::vector<EncodeJob> jobs = {{d, DType::kBF16, false, f}};
  std::vector<EncodedChunk> r(1);
  EXPECT_EQ(engine->encode(jobs, r).code(), Code::kInvalidArgument);
  EXPECT_EQ(engine->encode(jobs, r, MemorySpace::kDevice).code(), Code::kInvalidArgument);
}

// Coders outlive their engine: a second engine (the next push's) codes with
// the warm coders the first one left, writing into pages that are mapped
// already, where fresh coders would fault in and zero their buffers, plane
// scratch and zstd contexts again (thousands of pages for 4 MiB chunks).
TEST(CpuEngine, TheNextEngineCodesWithTheWarmCodersTheLastOneLeft) {
  testing::large_blocks_from_mmap();
  const std::uint64_t seed = testing::test_seed();
  std::vector<std::vector<std::byte>> data, frames;
  std::vector<EncodeJob> jobs;
  for (int i = 0; i < 4; ++i) {
    data.push_back(testing::normal_floats(2u << 20, 2, true, 0.02, seed + i));
    frames.emplace_back(max_frame_bytes(data.back().size()));
  }
  for (int i = 0; i < 4; ++i) jobs.push_back({data[i], DType::kBF16, false, frames[i]});
  std::vector<EncodedChunk> results(jobs.size());
  ThreadPool pool(1);
  std::vector<long> faults;
  for (int k = 0; k < 2; ++k) {
    auto engine = make_cpu_engine({&pool});
    const long before = testing::minor_faults();
    ASSERT_TRUE(engine->encode(jobs, results).is_ok());
    faults.push_back(testing::minor_faults() - before);
  }
  // One pass over 2 MiB planes in fresh memory is 512 faults per buffer.
  EXPECT_LT(faults[1], 300) << faults[0] << " faults, then " << faults[1];
}

TEST(CodecChoice, AgreesWithChunkEncoder) {
  const std::uint64_t seed = testing::test_seed();
  Batch b = mixed_batch(seed);
  CodecChoiceScratch scratch;
  ChunkEncoder enc;
  std::vector<std::byte> frame;
  for (std::size_t i = 0; i < b.data.size(); ++i) {
    for (bool trial : {false, true}) {
      EncodeOptions o;
      o.trial = trial;
      EncodedChunk e = enc.encode(b.data[i], b.dtypes[i], frame, o);
      Codec c = choose_chunk_codec(b.data[i], b.dtypes[i], trial, scratch);
      // The encoder may still fall back to raw when the payload does not shrink.
      if (e.codec != Codec::kRaw) {
        EXPECT_EQ(c, e.codec) << "chunk " << i << " trial " << trial;
      }
    }
  }
}

}  // namespace
}  // namespace ferry
