// restore_plan_test.cc: the plan of a restore into memory
// (replication/restore_plan.h) over manifests of many shapes: windows cover
// every chunk once, in order, within a slot and the window count; data
// sections land aligned; and on a GPU every lane's engine arena decodes its
// largest window in one sub-batch, also with a pinned budget far smaller
// than one chunk's fixed decode cost (the arena is sized from what the GPU
// engine needs per frame, gpu_decode_arena_bytes, not per raw byte).
#include "replication/restore_plan.h"

#include <gtest/gtest.h>

#include <random>

#include "cuda/gpu_engine.h"
#include "replication/limits.h"
#include "tests/testing/testing.h"

namespace ferry::replication {
namespace {

// A manifest of `files` files of random sizes cut into chunks of at most
// chunk_bytes, the first of each a safetensors file with one tensor.
Manifest make_manifest(std::mt19937_64& rng, std::size_t files, std::uint32_t chunk_bytes) {
  Manifest m;
  for (std::size_t f = 0; f < files; ++f) {
    ManifestFile mf;
    mf.path = "f" + std::to_string(f);
    mf.size = rng() % (3 * std::uint64_t{chunk_bytes} + 7);
    for (std::uint64_t at = 0; at < mf.size; at += chunk_bytes) {
      ManifestChunk c;
      c.offset = at;
      c.length = static_cast<std::uint32_t>(std::min<std::uint64_t>(chunk_bytes, mf.size - at));
      c.frame_bytes = static_cast<std::uint32_t>(kFrameHeaderBytes + rng() % (c.length + 1));
      mf.chunks.push_back(c);
    }
    if (f % 2 == 0 && mf.size > 8) {
      mf.layout = LayoutKind::kSafetensors;
      mf.tensors.push_back({"t", "BF16", {(mf.size - 8) / 2}, 8 + rng() % 5, mf.size});
    }
    m.files.push_back(std::move(mf));
  }
  return m;
}

const ManifestChunk& chunk_of(const Manifest& m, const ChunkRef& r) {
  return m.files[r.file].chunks[r.chunk];
}

TEST(RestorePlan, WindowsCoverEveryChunkOnceInOrder) {
  std::mt19937_64 rng(testing::test_seed());
  for (int trial = 0; trial < 100; ++trial) {
    const Manifest m = make_manifest(rng, 1 + rng() % 12, 4096u << (rng() % 6));
    const std::uint64_t slot = 4096 + rng() % (1u << 20);
    const std::size_t count = 1 + rng() % 70;
    const WindowPlan p = plan_windows(m, slot, count);
    ASSERT_EQ(p.chunks.size(), m.chunk_count());
    std::size_t next = 0;
    for (const Window& w : p.windows) {
      ASSERT_EQ(w.first, next);
      ASSERT_GE(w.count, 1u);
      EXPECT_LE(w.count, count);
      std::uint64_t raw = 0, frames = 0;
      for (std::size_t i = w.first; i < w.first + w.count; ++i) {
        EXPECT_EQ(p.raw_at[i], raw);
        EXPECT_EQ(p.frame_at[i], frames);
        raw += chunk_of(m, p.chunks[i]).length;
        frames += chunk_of(m, p.chunks[i]).frame_bytes;
      }
      EXPECT_EQ(w.raw_bytes, raw);
      EXPECT_EQ(w.frame_bytes, frames);
      EXPECT_TRUE(w.count == 1 || raw <= slot) << "only a lone chunk may exceed the slot";
      EXPECT_LE(frames, p.slot_frame_bytes);
      next = w.first + w.count;
    }
    EXPECT_EQ(next, p.chunks.size());
  }
}

TEST(RestorePlan, DataSectionsLandAligned) {
  std::mt19937_64 rng(testing::test_seed());
  const Manifest m = make_manifest(rng, 9, 65536);
  std::uint64_t device = 0;
  const std::vector<FilePlan> files = plan_files(m, true, device);
  std::uint64_t want = 0;
  for (std::size_t i = 0; i < files.size(); ++i) {
    EXPECT_EQ(files[i].on_device, files[i].tensors);
    if (!files[i].tensors) continue;
    EXPECT_EQ((files[i].pad + m.files[i].tensors[0].begin) % kRestoreDataAlignment, 0u) << i;
    want +=
        (files[i].alloc_bytes + kRestoreDataAlignment - 1) / kRestoreDataAlignment * kRestoreDataAlignment;
  }
  EXPECT_EQ(device, want);
}

TEST(RestorePlan, EachLanesArenaDecodesItsLargestWindowEvenOnASmallBudget) {
  std::mt19937_64 rng(testing::test_seed());
  for (std::uint32_t chunk_bytes : {4096u, 65536u, 4u << 20}) {
    for (std::size_t pinned : {std::size_t{16} << 10, std::size_t{1} << 20, std::size_t{256} << 20}) {
      const Manifest m = make_manifest(rng, 6, chunk_bytes);
      DeviceRestoreOptions o;
      o.pinned_memory_bytes = pinned;
      const RestorePlan p = plan_restore(m, Device{Device::Kind::kCuda, 0}, o);
      EXPECT_EQ(p.lanes, kRestoreGpuLanes);
      EXPECT_GE(p.engine_arena_bytes, kGpuMinArenaBytes);
      for (const Window& w : p.windows.windows) {
        std::vector<std::uint32_t> raw;
        for (std::size_t i = w.first; i < w.first + w.count; ++i)
          raw.push_back(chunk_of(m, p.windows.chunks[i]).length);
        EXPECT_GE(p.engine_arena_bytes, gpu_decode_arena_bytes(raw))
            << w.count << " chunks of " << chunk_bytes << " bytes, pinned " << pinned;
      }
      EXPECT_EQ(p.device_frame_bytes, p.windows.slot_frame_bytes);
      EXPECT_EQ(gpu_staging_bytes(p),
                p.lanes * (p.engine_arena_bytes + std::max<std::uint64_t>(p.device_frame_bytes, 1)));
    }
  }
}

TEST(RestorePlan, AHostRestoreHasNoGpuStaging) {
  std::mt19937_64 rng(testing::test_seed());
  const Manifest m = make_manifest(rng, 4, 65536);
  const RestorePlan p = plan_restore(m, Device{}, DeviceRestoreOptions{});
  EXPECT_EQ(p.lanes, 1u);
  EXPECT_EQ(p.device_tensor_bytes, 0u);
  EXPECT_EQ(p.engine_arena_bytes, 0u);
  for (const FilePlan& f : p.files) EXPECT_FALSE(f.on_device);
}

}  // namespace
}  // namespace ferry::replication
