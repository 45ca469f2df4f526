// device_restore_gpu_test.cc: restore into GPU memory on a real GPU: bf16,
// fp16 and fp32 safetensors shards packed by the real packer come back in
// cuda:0 memory equal, byte for byte, to the tensors of the files (what
// safetensors.torch.load_file(device="cuda:0") gives), through the GPU
// engine and through the CPU fallback; a damaged frame is a Corruption naming
// the chunk; a GPU without the memory fails before copying, saying how much
// is needed; a pinned budget smaller than one chunk's decode tables still
// decodes on the GPU; the caller's current device is left as it was (on a
// machine with two GPUs); a snapshot of delta frames is rebuilt on the GPU
// from bases staged with the frames. Skipped, with the reason, where no GPU
// is usable.
// (It lives in
// tests/replication because it links the restore library; the _gpu_test
// suffix gives it the gpu label.)
#include <gtest/gtest.h>

#include <cstdint>

#include "base/thread_pool.h"
#include "codec/archive.h"
#include "codec/packer.h"
#include "cuda/gpu_engine.h"
#include "cuda/gpu_memory.h"
#include "replication/device_restore.h"
#include "replication/frame_sources.h"
#include "tests/replication/device_restore_fixture.h"

namespace ferry::replication {
namespace {

namespace fs = std::filesystem;
using testing_restore::damage_second_chunk;
using testing_restore::expect_restored_equals;

Status pack_archive(const fs::path& src, const fs::path& archive, std::size_t chunk_bytes = 64u << 10) {
  ASSIGN_OR_RETURN(std::vector<PackSource> sources, list_pack_sources(src));
  ASSIGN_OR_RETURN(ArchiveWriter writer, ArchiveWriter::create(archive));
  PackOptions o;
  o.chunk_bytes = chunk_bytes;
  o.created_ns = 1'700'000'000'000'000'000;
  ASSIGN_OR_RETURN(Manifest m, pack_files(sources, o, writer));
  return writer.finish(m);
}

// A host copy of a device result, each tensor at the same address modulo
// the data alignment as on the device, so the host checks apply unchanged.
struct HostCopy {
  DeviceRestoreResult result;
  std::vector<std::vector<std::byte>> buffers;
};

HostCopy download(const DeviceRestoreResult& r) {
  HostCopy h;
  h.result.files = r.files;
  h.result.report = r.report;
  for (const RestoredTensor& t : r.tensors) {
    EXPECT_EQ(t.device.kind, Device::Kind::kCuda) << t.name;
    std::vector<std::byte>& buf = h.buffers.emplace_back(t.bytes + 2 * kRestoreDataAlignment);
    const std::uintptr_t want = reinterpret_cast<std::uintptr_t>(t.data) % kRestoreDataAlignment;
    std::byte* p = buf.data();
    while (reinterpret_cast<std::uintptr_t>(p) % kRestoreDataAlignment != want) ++p;
    Status st = gpu_copy_to_host(p, t.data, t.bytes);
    EXPECT_TRUE(st.is_ok()) << t.name << ": " << st.to_string();
    RestoredTensor c = t;
    c.data = p;
    c.device = Device{};
    h.result.tensors.push_back(std::move(c));
  }
  return h;
}

class DeviceRestoreGpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string why = gpu_unavailable_reason(0);
    if (!why.empty()) GTEST_SKIP() << "no usable GPU: " << why;
    testing_restore::make_checkpoint(src_.path(), ferry::testing::test_seed());
    archive_ = work_ / "ckpt.ferry";
    ASSERT_TRUE(pack_archive(src_.path(), archive_).is_ok());
  }
  DeviceRestoreOptions options(EngineChoice engine) {
    DeviceRestoreOptions o;
    o.device = {Device::Kind::kCuda, 0};
    o.pool = &pool_;
    o.engine = engine;
    o.pinned_memory_bytes = 1u << 20;  // many windows over both lanes
    return o;
  }
  ferry::testing::TempDir src_, work_;
  fs::path archive_;
  ThreadPool pool_{4};
};

TEST_F(DeviceRestoreGpuTest, TensorsInGpuMemoryEqualTheFiles) {
  for (EngineChoice engine : {EngineChoice::kGpu, EngineChoice::kCpu}) {
    auto source = open_frame_source(archive_.string());
    ASSERT_TRUE(source.is_ok()) << source.status().to_string();
    auto r = restore_to_device(**source, options(engine));
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();
    EXPECT_EQ(r->report.engine.rfind(engine == EngineChoice::kGpu ? "gpu" : "cpu", 0), 0u)
        << r->report.engine;
    HostCopy h = download(*r);
    EXPECT_EQ(expect_restored_equals(h.result, src_.path()), 8u) << r->report.engine;
  }
}

// A snapshot of delta frames in a local store: each delta frame crosses to
// the device with its base chunk (rebuilt on the host from the base's frame)
// and is rebuilt there by the GPU engine, verified against its own id; the
// CPU fallback rebuilds on the host and copies. Both equal the files.
TEST_F(DeviceRestoreGpuTest, ADeltaSnapshotIsRebuiltOnTheGpu) {
  const std::uint64_t seed = ferry::testing::test_seed();
  ferry::testing::TempDir key, next;
  testing_restore::make_checkpoint(key.path(), seed);
  testing_restore::make_checkpoint(next.path(), seed, /*step=*/1);
  const fs::path store = work_ / "store";
  PackOptions o;
  o.chunk_bytes = 64u << 10;
  o.created_ns = 1'700'000'000'000'000'000;
  Status st = testing_restore::pack_into_store(key.path(), store, "host-a", "step-7", o);
  ASSERT_TRUE(st.is_ok()) << st.to_string();
  st = testing_restore::pack_into_store(next.path(), store, "host-a", "step-8", o, key.path());
  ASSERT_TRUE(st.is_ok()) << st.to_string();
  for (EngineChoice engine : {EngineChoice::kGpu, EngineChoice::kCpu}) {
    auto source = open_frame_source("store:" + store.string() + "/host-a/step-8");
    ASSERT_TRUE(source.is_ok()) << source.status().to_string();
    EXPECT_GE(testing_restore::delta_chunks((*source)->manifest()), 8u);
    auto r = restore_to_device(**source, options(engine));
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();
    EXPECT_EQ(r->report.engine.rfind(engine == EngineChoice::kGpu ? "gpu" : "cpu", 0), 0u)
        << r->report.engine;
    HostCopy h = download(*r);
    EXPECT_EQ(expect_restored_equals(h.result, next.path()), 8u) << r->report.engine;
  }
}

// 4 KiB chunks and 16 KiB of pinned staging: slots of one chunk, far less
// than one frame's decode tables (64 KiB at fp32) on the device.
TEST_F(DeviceRestoreGpuTest, ASmallPinnedBudgetStillDecodesOnTheGpu) {
  const fs::path small = work_ / "small-chunks.ferry";
  ASSERT_TRUE(pack_archive(src_.path(), small, 4096).is_ok());
  auto source = open_frame_source(small.string());
  ASSERT_TRUE(source.is_ok());
  DeviceRestoreOptions o = options(EngineChoice::kGpu);
  o.pinned_memory_bytes = 16u << 10;
  auto r = restore_to_device(**source, o);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->report.engine.rfind("gpu", 0), 0u) << r->report.engine;
  HostCopy h = download(*r);
  EXPECT_EQ(expect_restored_equals(h.result, src_.path()), 8u);
}

TEST_F(DeviceRestoreGpuTest, TheCallersCurrentDeviceIsLeftAlone) {
  const std::string second = gpu_unavailable_reason(1);
  if (!second.empty()) GTEST_SKIP() << "needs two GPUs: cuda:1: " << second;
  for (int current : {0, 1}) {
    ASSERT_TRUE(gpu_set_device(current).is_ok());
    for (int to : {0, 1}) {
      auto source = open_frame_source(archive_.string());
      ASSERT_TRUE(source.is_ok());
      DeviceRestoreOptions o = options(EngineChoice::kGpu);
      o.device = {Device::Kind::kCuda, to};
      auto r = restore_to_device(**source, o);
      ASSERT_TRUE(r.is_ok()) << r.status().to_string();
      auto now = gpu_current_device();
      ASSERT_TRUE(now.is_ok());
      EXPECT_EQ(*now, current) << "restore to cuda:" << to << " from a thread on cuda:" << current;
    }
  }
  ASSERT_TRUE(gpu_set_device(0).is_ok());
}

TEST_F(DeviceRestoreGpuTest, ADamagedFrameIsCorruptionNamingTheChunk) {
  const std::string chunk_hex = damage_second_chunk(archive_, /*safetensors_only=*/true);
  ASSERT_FALSE(chunk_hex.empty());
  auto source = open_frame_source(archive_.string());
  ASSERT_TRUE(source.is_ok());
  auto r = restore_to_device(**source, options(EngineChoice::kGpu));
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), Code::kCorruption) << r.status().to_string();
  EXPECT_NE(r.status().message().find("chunk " + chunk_hex), std::string::npos) << r.status().to_string();
}

TEST_F(DeviceRestoreGpuTest, TooLittleGpuMemoryFailsBeforeCopyingSayingHowMuch) {
  auto info = gpu_memory_info(0);
  ASSERT_TRUE(info.is_ok()) << info.status().to_string();
  // Leave less free than the restore needs (its staging alone is larger).
  constexpr std::uint64_t kLeaveFree = 8u << 20;
  ASSERT_GT(info->free_bytes, kLeaveFree);
  auto hog = gpu_allocate_shared(info->free_bytes - kLeaveFree - (64u << 20), 0);
  ASSERT_TRUE(hog.is_ok()) << hog.status().to_string();
  auto now = gpu_memory_info(0);
  ASSERT_TRUE(now.is_ok());
  auto source = open_frame_source(archive_.string());
  ASSERT_TRUE(source.is_ok());
  DeviceRestoreOptions o = options(EngineChoice::kGpu);
  o.pinned_memory_bytes = 256u << 20;
  auto r = restore_to_device(**source, o);
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), Code::kResourceExhausted) << r.status().to_string();
  EXPECT_NE(r.status().message().find("cuda:0 has "), std::string::npos) << r.status().to_string();
  EXPECT_NE(r.status().message().find("the snapshot needs"), std::string::npos) << r.status().to_string();
  // Nothing was allocated for the restore.
  auto after = gpu_memory_info(0);
  ASSERT_TRUE(after.is_ok());
  EXPECT_EQ(after->free_bytes, now->free_bytes);
}

}  // namespace
}  // namespace ferry::replication
