// batch_plan_test.cc: the GPU engine's host-side planning (cuda/batch_plan.h):
// sub-batches never hold more chunks than CUDA allows in gridDim.y, fit the
// arena and the pinned pool, keep the chunks' order, and a chunk larger
// than the pinned pool runs alone; the bytes planned for a chunk are the
// bytes its slices take from a real arena; gpu_decode_arena_bytes sizes an
// arena that decodes a window in one sub-batch; the grids reach every unit.
#include "cuda/batch_plan.h"

#include <gtest/gtest.h>

#include <random>

#include "cuda/gpu_engine.h"
#include "tests/cuda/kernel_emulator.h"
#include "tests/testing/testing.h"

namespace ferry::gpu {
namespace {

// Checks the contract of plan_sub_batches for these needs and caps.
void expect_valid_parts(std::span<const ChunkNeed> needs, const BatchCaps& caps,
                        const std::vector<SubBatch>& parts) {
  std::size_t next = 0;
  for (const SubBatch& p : parts) {
    ASSERT_EQ(p.first, next);
    ASSERT_GT(p.count, 0u);
    ASSERT_LE(p.count, caps.max_chunks);
    std::size_t device = kBatchFixedBytes, pinned = 0;
    for (std::size_t i = p.first; i < p.first + p.count; ++i) {
      device += needs[i].device_bytes;
      pinned += needs[i].pinned_bytes;
    }
    EXPECT_LE(device, caps.device_bytes) << "sub-batch at " << p.first;
    if (p.pinned) {
      EXPECT_LE(pinned, caps.pinned_bytes) << "sub-batch at " << p.first;
    } else if (pinned > 0) {
      EXPECT_EQ(p.count, 1u) << "an unpinned host chunk runs alone";
    }
    next = p.first + p.count;
  }
  EXPECT_EQ(next, needs.size());
}

TEST(BatchPlan, SubBatchesStayWithinCudasGridLimit) {
  // Small chunks and a large arena: more chunks would fit than a launch's
  // gridDim.y (65535) can index.
  const std::vector<ChunkNeed> needs(200'000, ChunkNeed{enc_chunk_device_bytes(4096, 2, false), 0});
  BatchCaps caps;
  caps.device_bytes = std::size_t{1} << 40;
  auto parts = plan_sub_batches(needs, caps);
  ASSERT_TRUE(parts.is_ok()) << parts.status().to_string();
  ASSERT_EQ(parts->size(), 4u);
  for (const SubBatch& p : *parts) EXPECT_LE(p.count, kMaxChunksPerLaunch);
  expect_valid_parts(needs, caps, *parts);
}

TEST(BatchPlan, SubBatchesFitTheArenaAndThePinnedPool) {
  std::mt19937_64 rng(testing::test_seed());
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<ChunkNeed> needs(1 + rng() % 300);
    BatchCaps caps;
    caps.device_bytes = kBatchFixedBytes + (1u << 20) + rng() % (64u << 20);
    caps.pinned_bytes = (1u << 16) + rng() % (16u << 20);
    caps.max_chunks = 1 + static_cast<std::uint32_t>(rng() % 100);
    const bool host = trial % 2;
    for (ChunkNeed& n : needs) {
      n.device_bytes = 1 + rng() % (caps.device_bytes - kBatchFixedBytes);
      n.pinned_bytes = host ? 1 + rng() % (caps.pinned_bytes + caps.pinned_bytes / 4) : 0;
    }
    auto parts = plan_sub_batches(needs, caps);
    ASSERT_TRUE(parts.is_ok()) << parts.status().to_string();
    expect_valid_parts(needs, caps, *parts);
  }
}

TEST(BatchPlan, AChunkLargerThanThePinnedPoolRunsAloneUnpinned) {
  BatchCaps caps;
  caps.device_bytes = 1u << 30;
  caps.pinned_bytes = 1u << 20;
  const std::vector<ChunkNeed> needs = {{1000, 1000}, {1000, 2u << 20}, {1000, 1000}, {1000, 1000}};
  auto parts = plan_sub_batches(needs, caps);
  ASSERT_TRUE(parts.is_ok());
  ASSERT_EQ(parts->size(), 3u);
  EXPECT_TRUE((*parts)[0].pinned);
  EXPECT_FALSE((*parts)[1].pinned);
  EXPECT_EQ((*parts)[1].count, 1u);
  EXPECT_TRUE((*parts)[2].pinned);
  EXPECT_EQ((*parts)[2].count, 2u);
}

TEST(BatchPlan, AChunkLargerThanTheArenaIsExhaustedNamingIt) {
  BatchCaps caps;
  caps.device_bytes = 1u << 20;
  const std::vector<ChunkNeed> needs = {{1000, 0}, {2u << 20, 0}};
  auto parts = plan_sub_batches(needs, caps);
  ASSERT_FALSE(parts.is_ok());
  EXPECT_EQ(parts.status().code(), Code::kResourceExhausted);
  EXPECT_NE(parts.status().message().find("chunk 1 "), std::string::npos) << parts.status().to_string();
}

// A sub-batch planned to fit takes every slice from an arena of exactly the
// cap, records included: the engine never meets "gpu arena plan".
TEST(BatchPlan, PlannedBytesAreTheBytesTheSlicesTake) {
  std::mt19937_64 rng(testing::test_seed());
  for (int trial = 0; trial < 50; ++trial) {
    const bool stage = trial % 2;
    std::vector<EncChunk> enc;
    std::vector<DecChunk> dec;
    std::size_t enc_need = kBatchFixedBytes, dec_need = kBatchFixedBytes;
    for (int k = 0; k < 1 + static_cast<int>(rng() % 20); ++k) {
      const auto raw = static_cast<std::uint32_t>(1 + rng() % (3u << 20));
      const std::uint32_t w = 1u << (rng() % 3);
      enc.push_back(make_enc_chunk(raw, w, 0, 0));
      enc_need += enc_chunk_device_bytes(raw, w, stage);
      FrameHeader h;
      h.codec = planes_codec(static_cast<int>(w), k % 2 ? kFloatPayloadV1 : kFloatPayloadV2);
      if (k % 3 == 0) h.codec = Codec::kRaw;
      h.raw_bytes = raw;
      h.payload_bytes = static_cast<std::uint32_t>(rng() % (raw + 1));
      dec.push_back(make_dec_chunk(h));
      dec_need += dec_chunk_device_bytes(h, stage);
      EXPECT_LE(dec_chunk_device_bytes(h, stage), dec_chunk_worst_device_bytes(raw, stage));
    }
    StackArena a = StackArena::sizing();
    for (EncChunk& c : enc) ASSERT_TRUE(take_enc_slices(a, c, stage));
    EncPlanRegions regions;
    ASSERT_TRUE(take_enc_plan_slices(a, enc, regions));
    a.take<EncChunk>(enc.size());
    a.take<EncResult>(enc.size());
    EXPECT_LE(a.used(), enc_need);
    StackArena d = StackArena::sizing();
    for (DecChunk& c : dec) ASSERT_TRUE(take_dec_slices(d, c, stage));
    d.take<DecChunk>(dec.size());
    EXPECT_LE(d.used(), dec_need);
  }
}

TEST(BatchPlan, DecodeArenaBytesHoldAWindowInOneSubBatch) {
  for (std::vector<std::uint32_t> window :
       {std::vector<std::uint32_t>{4096}, std::vector<std::uint32_t>(64, 4096),
        std::vector<std::uint32_t>{1, 2, 3, 4095, 4097, 65536, 4u << 20},
        std::vector<std::uint32_t>(64, 64u << 10)}) {
    BatchCaps caps;
    caps.device_bytes = gpu_decode_arena_bytes(window);
    for (Codec codec : {Codec::kRaw, Codec::kPlanes8, Codec::kPlanes16, Codec::kPlanes32, Codec::kPlanes8V2,
                        Codec::kPlanes16V2, Codec::kPlanes32V2}) {
      std::vector<ChunkNeed> needs;
      for (std::uint32_t raw : window) {
        FrameHeader h;
        h.codec = codec;
        h.raw_bytes = raw;
        h.payload_bytes = codec == Codec::kRaw ? raw : raw - 1;
        needs.push_back({dec_chunk_device_bytes(h, false), 0});
      }
      auto parts = plan_sub_batches(needs, caps);
      ASSERT_TRUE(parts.is_ok()) << parts.status().to_string();
      EXPECT_EQ(parts->size(), 1u) << codec_name(codec) << ", " << window.size() << " chunks";
    }
  }
}

// The smallest arena decodes any one frame already in device memory (a
// version 2 frame of 64 MiB, its decoded planes included).
TEST(BatchPlan, TheSmallestArenaDecodesAnyOneFrame) {
  const std::uint32_t raw = 64u << 20;
  EXPECT_LE(gpu_decode_arena_bytes(std::vector<std::uint32_t>{raw}), kGpuMinArenaBytes);
  FrameHeader h;
  h.codec = Codec::kPlanes32V2;
  h.raw_bytes = raw;
  h.payload_bytes = raw - 1;
  EXPECT_GT(dec_chunk_device_bytes(h, false), std::size_t{raw}) << "the decoded planes are counted";
}

// The plan regions point each chunk at its own share, one after another.
TEST(BatchPlan, PlanRegionsGiveEachChunkItsShare) {
  std::vector<EncChunk> enc = {make_enc_chunk(1, 2, 0, 0), make_enc_chunk(3u << 20, 4, 0, 0),
                               make_enc_chunk(100001, 1, 0, 0)};
  StackArena a = StackArena::sizing();
  EncPlanRegions r;
  ASSERT_TRUE(take_enc_plan_slices(a, enc, r));
  std::size_t hist = 0, tables = 0, assign = 0;
  for (const EncChunk& c : enc) {
    EXPECT_EQ(c.hist, r.hist + hist);
    EXPECT_EQ(c.tables, r.tables + tables);
    EXPECT_EQ(c.assign, r.assign + assign);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(c.tables) % alignof(EncSym), 0u);
    hist += hist_words(c);
    tables += std::size_t{c.width} * c.table_slots * kAlphabet;
    assign += (std::size_t{c.width} * c.segments + 7) / 8 * 8;
    EXPECT_LE(c.table_slots, std::min<std::uint32_t>(kMaxTables, std::max(c.segments, 1u)));
  }
  EXPECT_EQ(hist, r.hist_words);
  EXPECT_EQ(tables, r.table_entries);
  EXPECT_EQ(assign, r.assign_bytes);
}

// plan_chunk hands each plane's histograms to the CPU encoder's planner and
// lays its plan out for the kernels: mode, table count, table bytes, the
// encoder tables (frequencies and cumulative starts) and each segment's table.
TEST(BatchPlan, PlanChunkLaysOutThePlannersPlan) {
  std::mt19937_64 rng(testing::test_seed());
  for (std::uint32_t w : {1u, 2u, 4u}) {
    EncChunk c = make_enc_chunk((5 * 16384 + 77) * w + w - 1, w, 0, 0);  // a tail of w - 1 bytes
    const std::uint32_t n = c.n;
    ASSERT_EQ(n, 5u * 16384 + 77);
    std::vector<std::uint32_t> hist(hist_words(c), 0);
    std::vector<std::uint8_t> plane(n);
    std::vector<EncSym> tables(std::size_t{w} * c.table_slots * kAlphabet);
    std::vector<std::uint8_t> assign(std::size_t{w} * c.segments, 0xee);
    std::vector<planes::Plan> want;
    for (std::uint32_t p = 0; p < w; ++p) {
      for (std::uint32_t i = 0; i < n; ++i) {
        // Plane 0: two scales (several tables); the others: noise.
        plane[i] = p == 0 ? static_cast<std::uint8_t>((i / 40000 % 2 ? 60 : 120) + rng() % 3)
                          : static_cast<std::uint8_t>(rng());
        ++hist[hist_segment(c, p, i / 16384) + plane[i]];
        if (i % 16 == 0) ++hist[hist_sampled(c, p) + plane[i]];
      }
      planes::SegmentCounts counts{n, hist.data() + hist_segment(c, p, 0), hist.data() + hist_sampled(c, p)};
      want.push_back(planes::plan_plane(counts, p != 0));
    }
    planes::Planner planner;
    plan_chunk(c, hist.data(), tables.data(), assign.data(), planner);
    ASSERT_TRUE(want[0].coded && want[0].freq.size() > 1) << "width " << w;
    for (std::uint32_t p = 0; p < w; ++p) {
      const planes::Plan& pl = want[p];
      ASSERT_EQ(c.mode[p], pl.coded ? kModeCodedV2 : kModeRaw) << "width " << w << " plane " << p;
      if (!pl.coded) continue;
      ASSERT_EQ(c.table_k[p], pl.freq.size());
      std::uint32_t bytes = 0;
      for (std::size_t k = 0; k < pl.freq.size(); ++k) {
        const EncSym* t = tables.data() + (std::size_t{p} * c.table_slots + k) * kAlphabet;
        std::uint32_t cum = 0, present = 0;
        for (int s = 0; s < kAlphabet; ++s) {
          const EncSym e = make_enc_sym(pl.freq[k][s], cum);
          EXPECT_EQ(t[s].freq, e.freq);
          EXPECT_EQ(t[s].bias, e.bias);
          EXPECT_EQ(t[s].rcp, e.rcp);
          cum += pl.freq[k][s];
          present += pl.freq[k][s] != 0;
        }
        bytes += kPresentBytes + 2 * present;
      }
      EXPECT_EQ(c.table_bytes[p], bytes);
      EXPECT_TRUE(
          std::equal(pl.assign.begin(), pl.assign.end(), assign.begin() + std::size_t{p} * c.segments));
    }
  }
}

TEST(BatchPlan, GridsReachEveryUnitOfEveryChunk) {
  std::vector<EncChunk> enc = {make_enc_chunk(1, 2, 0, 0), make_enc_chunk(3, 4, 0, 0),
                               make_enc_chunk(4u << 20, 1, 0, 0), make_enc_chunk(100001, 4, 0, 0)};
  const EncGrids g = enc_grids(enc);
  for (const EncChunk& c : enc) {
    EXPECT_GE(std::uint64_t{g.leaf_blocks} * kThreads, c.leaves);
    EXPECT_GE(std::uint64_t{g.block_blocks} * kWarpsPerBlock, c.width * c.blocks);
    EXPECT_GE(std::uint64_t{g.assemble_blocks} * kWarpsPerBlock, assemble_units(c));
    EXPECT_GE(std::uint64_t{g.crc_blocks} * kThreads, c.leaves);
  }
  std::vector<DecChunk> dec;
  for (Codec codec : {Codec::kRaw, Codec::kPlanes16, Codec::kPlanes32V2, Codec::kPlanes8V2}) {
    FrameHeader h;
    h.codec = codec;
    h.raw_bytes = codec == Codec::kPlanes8V2 ? (4u << 20) + 3 : 1000001;
    h.payload_bytes = h.raw_bytes;
    dec.push_back(make_dec_chunk(h));
  }
  const DecGrids d = dec_grids(dec);
  for (const DecChunk& c : dec) {
    EXPECT_GE(std::uint64_t{d.fused_blocks}, fused_blocks(c));
    EXPECT_GE(std::uint64_t{d.leaf_blocks} * kThreads, c.leaves);
    if (c.version == 2) {
      EXPECT_GE(std::uint64_t{d.block_blocks} * kWarpsPerBlock, c.width * c.blocks);
    }
  }
}

TEST(BatchPlan, ContextReserveCoversLocalMemoryOfEveryResidentThread) {
  // An H100 SXM: 132 multiprocessors of 2048 threads.
  EXPECT_EQ(context_reserve_bytes(132, 2048), 132ull * 2048 * kLocalBytesPerThread + kModuleReserveBytes);
  EXPECT_GE(kLocalBytesPerThread, 1024u) << "the default stack limit is 1 KiB a thread";
}

}  // namespace
}  // namespace ferry::gpu
