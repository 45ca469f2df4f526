// device_restore_test.cc: restore into memory (replication/device_restore.h)
// with real parts: checkpoints written to disk (safetensors shards, other
// files, the real-weights corpus), packed by the real packer into a .ferry
// archive and into a real local store, restored with device=cpu and
// compared tensor by tensor with the files. A damaged frame, or one that
// disagrees with its manifest entry, is a Corruption naming the chunk; a
// snapshot of delta frames restores from its bases; cuda:N without a GPU
// is a clear error;
// devices and source locations are parsed strictly.
#include "replication/device_restore.h"

#include <gtest/gtest.h>

#include <set>

#include "base/thread_pool.h"
#include "codec/archive.h"
#include "codec/packer.h"
#include "replication/frame_sources.h"
#include "store/local_store.h"
#include "tests/replication/device_restore_fixture.h"

namespace ferry::replication {
namespace {

namespace fs = std::filesystem;
using testing_restore::damage_second_chunk;
using testing_restore::expect_restored_equals;
using testing_restore::make_checkpoint;

constexpr std::size_t kTestChunkBytes = 64u << 10;

PackOptions pack_options() {
  PackOptions o;
  o.chunk_bytes = kTestChunkBytes;
  o.job = "restore-test";
  o.step = 7;
  o.created_ns = 1'700'000'000'000'000'000;
  return o;
}

Status pack_archive(const fs::path& src, const fs::path& archive) {
  ASSIGN_OR_RETURN(std::vector<PackSource> sources, list_pack_sources(src));
  ASSIGN_OR_RETURN(ArchiveWriter writer, ArchiveWriter::create(archive));
  ASSIGN_OR_RETURN(Manifest m, pack_files(sources, pack_options(), writer));
  return writer.finish(m);
}

Status pack_into_store(const fs::path& src, const fs::path& store_dir, const std::string& ns,
                       const std::string& snapshot, const fs::path& delta_from = {}) {
  return testing_restore::pack_into_store(src, store_dir, ns, snapshot, pack_options(), delta_from);
}

DeviceRestoreOptions cpu_options(ThreadPool& pool) {
  DeviceRestoreOptions o;
  o.pool = &pool;
  // Small staging: many windows, chunks of one file spread over several.
  o.pinned_memory_bytes = 256u << 10;
  return o;
}

class DeviceRestoreTest : public ::testing::Test {
 protected:
  void SetUp() override { make_checkpoint(src_.path(), ferry::testing::test_seed()); }
  ferry::testing::TempDir src_;
  ferry::testing::TempDir work_;
  ThreadPool pool_{3};
};

TEST_F(DeviceRestoreTest, AnArchiveRestoresToHostTensorByTensor) {
  const fs::path archive = work_ / "ckpt.ferry";
  ASSERT_TRUE(pack_archive(src_.path(), archive).is_ok());
  auto source = open_frame_source(archive.string());
  ASSERT_TRUE(source.is_ok()) << source.status().to_string();
  std::uint64_t last_done = 0;
  DeviceRestoreOptions o = cpu_options(pool_);
  o.progress = [&](const UnpackProgress& p) {
    EXPECT_GT(p.logical_done, last_done);
    last_done = p.logical_done;
  };
  auto r = restore_to_device(**source, o);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(expect_restored_equals(*r, src_.path()), 8u);
  EXPECT_EQ(r->tensors.size(), 8u);
  EXPECT_EQ(r->files.size(), 3u);  // config.json, optimizer.pt, sub/empty
  EXPECT_EQ(last_done, (*source)->manifest().logical_bytes());
  EXPECT_EQ(r->report.logical_bytes, (*source)->manifest().logical_bytes());
  EXPECT_GT(r->report.frame_bytes, 0u);
  EXPECT_EQ(r->report.engine.rfind("cpu", 0), 0u) << r->report.engine;
}

TEST_F(DeviceRestoreTest, ATensorOutlivesTheResultAndTheSource) {
  const fs::path archive = work_ / "ckpt.ferry";
  ASSERT_TRUE(pack_archive(src_.path(), archive).is_ok());
  RestoredTensor kept;
  {
    auto source = open_frame_source(archive.string());
    ASSERT_TRUE(source.is_ok());
    auto r = restore_to_device(**source, cpu_options(pool_));
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();
    for (const RestoredTensor& t : r->tensors) {
      if (t.name == "lm_head.weight") kept = t;
    }
  }
  ASSERT_EQ(kept.name, "lm_head.weight");
  auto layout = read_safetensors_layout(src_.path() / "sub/model-00002-of-00002.safetensors");
  ASSERT_TRUE(layout.is_ok());
  const auto bytes = ferry::testing::read_file(src_.path() / "sub/model-00002-of-00002.safetensors");
  for (const TensorInfo& ti : layout->tensors) {
    if (ti.name != "lm_head.weight") continue;
    ASSERT_EQ(kept.bytes, ti.bytes());
    EXPECT_EQ(std::memcmp(kept.data, bytes.data() + ti.begin, ti.bytes()), 0);
  }
  EXPECT_EQ(kept.owner.use_count(), 1);
}

TEST_F(DeviceRestoreTest, ALocalStoreRestoresToHost) {
  const fs::path store = work_ / "store";
  Status st = pack_into_store(src_.path(), store, "host-a", "step-7");
  ASSERT_TRUE(st.is_ok()) << st.to_string();
  auto source = open_frame_source("store:" + store.string() + "/host-a/step-7");
  ASSERT_TRUE(source.is_ok()) << source.status().to_string();
  EXPECT_NE((*source)->describe().find("step-7"), std::string::npos);
  auto r = restore_to_device(**source, cpu_options(pool_));
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(expect_restored_equals(*r, src_.path()), 8u);
  // The source holds the store's lock until it goes.
  auto again = open_frame_source("store:" + store.string() + "/host-a/step-7");
  ASSERT_FALSE(again.is_ok());
  EXPECT_EQ(again.status().code(), Code::kUnavailable) << again.status().to_string();
  source->reset();

  auto missing = open_frame_source("store:" + store.string() + "/host-a/no-such");
  ASSERT_FALSE(missing.is_ok());
  EXPECT_EQ(missing.status().code(), Code::kNotFound) << missing.status().to_string();
  auto no_store = open_frame_source("store:" + (work_ / "nothing").string() + "/host-a/step-7");
  ASSERT_FALSE(no_store.is_ok());
  EXPECT_EQ(no_store.status().code(), Code::kNotFound) << no_store.status().to_string();
  EXPECT_FALSE(fs::exists(work_ / "nothing"));
}

// A snapshot of delta frames (a later checkpoint against the one before,
// whose chunks the store holds): each delta is restored from its base,
// fetched by id from the store, and verified against its own id.
TEST_F(DeviceRestoreTest, ADeltaSnapshotRestoresFromItsBases) {
  const std::uint64_t seed = ferry::testing::test_seed();
  ferry::testing::TempDir key, next;
  make_checkpoint(key.path(), seed);
  make_checkpoint(next.path(), seed, /*step=*/1);
  const fs::path store = work_ / "store";
  Status st = pack_into_store(key.path(), store, "host-a", "step-7");
  ASSERT_TRUE(st.is_ok()) << st.to_string();
  st = pack_into_store(next.path(), store, "host-a", "step-8", key.path());
  ASSERT_TRUE(st.is_ok()) << st.to_string();
  auto source = open_frame_source("store:" + store.string() + "/host-a/step-8");
  ASSERT_TRUE(source.is_ok()) << source.status().to_string();
  EXPECT_GE(testing_restore::delta_chunks((*source)->manifest()), 8u);
  auto r = restore_to_device(**source, cpu_options(pool_));
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(expect_restored_equals(*r, next.path()), 8u);
}

TEST_F(DeviceRestoreTest, CorpusFilesRestoreExactly) {
  const auto corpus = ferry::testing::corpus_files();
  if (corpus.empty()) GTEST_SKIP() << "no corpus (set FERRY_CORPUS_DIR; shared/corpus/fetch-corpus.sh)";
  const fs::path dir = work_ / "corpus";
  fs::create_directories(dir);
  std::size_t n = 0;
  for (const auto& c : corpus) {
    if (n++ == 4) break;  // a few files keep the test quick
    fs::copy_file(c.path, dir / c.name);
  }
  const fs::path archive = work_ / "corpus.ferry";
  ASSERT_TRUE(pack_archive(dir, archive).is_ok());
  auto source = open_frame_source(archive.string());
  ASSERT_TRUE(source.is_ok()) << source.status().to_string();
  DeviceRestoreOptions o;
  o.pool = &pool_;
  auto r = restore_to_device(**source, o);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  expect_restored_equals(*r, dir);
}

TEST_F(DeviceRestoreTest, ADamagedFrameIsCorruptionNamingTheChunk) {
  const fs::path archive = work_ / "ckpt.ferry";
  ASSERT_TRUE(pack_archive(src_.path(), archive).is_ok());
  const std::string chunk_hex = damage_second_chunk(archive, /*safetensors_only=*/false);
  ASSERT_FALSE(chunk_hex.empty());
  auto source = open_frame_source(archive.string());
  ASSERT_TRUE(source.is_ok()) << source.status().to_string();
  auto r = restore_to_device(**source, cpu_options(pool_));
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), Code::kCorruption) << r.status().to_string();
  EXPECT_NE(r.status().message().find("chunk " + chunk_hex), std::string::npos) << r.status().to_string();
  EXPECT_NE(r.status().message().find(archive.string()), std::string::npos) << r.status().to_string();
}

TEST_F(DeviceRestoreTest, AFrameThatDisagreesWithItsManifestIsCorruption) {
  // A snapshot whose manifest gives optimizer.pt's last chunk one byte more
  // than its stored frame holds: the frame is sound, the pair is not.
  const fs::path store_dir = work_ / "store";
  ASSERT_TRUE(pack_into_store(src_.path(), store_dir, "host-a", "step-7").is_ok());
  std::string chunk_hex;
  {
    auto store = open_local_store(store_dir, {.log = [](std::string_view) {}});
    ASSERT_TRUE(store.is_ok()) << store.status().to_string();
    auto bytes = (*store)->manifest("host-a", "step-7");
    ASSERT_TRUE(bytes.is_ok()) << bytes.status().to_string();
    auto m = parse_manifest(*bytes);
    ASSERT_TRUE(m.is_ok()) << m.status().to_string();
    for (ManifestFile& f : m->files) {
      if (f.path != "optimizer.pt") continue;
      ASSERT_GE(f.chunks.size(), 2u);
      ManifestChunk& last = f.chunks.back();
      ++last.length;
      ++f.size;
      chunk_hex = to_hex(last.id);
    }
    ASSERT_FALSE(chunk_hex.empty());
    Status committed = (*store)->commit_snapshot("host-a", "bad-7", serialize_manifest(*m));
    ASSERT_TRUE(committed.is_ok()) << committed.to_string();
  }
  auto source = open_frame_source("store:" + store_dir.string() + "/host-a/bad-7");
  ASSERT_TRUE(source.is_ok()) << source.status().to_string();
  auto r = restore_to_device(**source, cpu_options(pool_));
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), Code::kCorruption) << r.status().to_string();
  EXPECT_NE(r.status().message().find("chunk " + chunk_hex), std::string::npos) << r.status().to_string();
  EXPECT_NE(r.status().message().find("manifest says"), std::string::npos) << r.status().to_string();
}

TEST_F(DeviceRestoreTest, ACudaDeviceWithoutAGpuIsAClearError) {
  const std::string why = gpu_unavailable_reason(0);
  if (why.empty()) GTEST_SKIP() << "a GPU is usable here: device_restore_gpu_test covers cuda:0";
  const fs::path archive = work_ / "ckpt.ferry";
  ASSERT_TRUE(pack_archive(src_.path(), archive).is_ok());
  auto source = open_frame_source(archive.string());
  ASSERT_TRUE(source.is_ok());
  DeviceRestoreOptions o = cpu_options(pool_);
  o.device = {Device::Kind::kCuda, 0};
  auto r = restore_to_device(**source, o);
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), Code::kUnavailable) << r.status().to_string();
  EXPECT_NE(r.status().message().find("cuda:0: no usable GPU: " + why), std::string::npos)
      << r.status().to_string();
}

TEST(DeviceParse, DevicesAreParsedStrictly) {
  auto d = parse_device("cpu");
  ASSERT_TRUE(d.is_ok());
  EXPECT_EQ(d->kind, Device::Kind::kCpu);
  d = parse_device("cuda");
  ASSERT_TRUE(d.is_ok());
  EXPECT_EQ(d->kind, Device::Kind::kCuda);
  EXPECT_EQ(d->index, 0);
  d = parse_device("cuda:3");
  ASSERT_TRUE(d.is_ok());
  EXPECT_EQ(d->index, 3);
  EXPECT_EQ(device_name(*d), "cuda:3");
  EXPECT_EQ(device_name(Device{}), "cpu");
  for (const char* bad :
       {"", "gpu", "cuda:", "cuda:x", "cuda:-1", "cuda:1x", "CUDA:0", "cuda:123456", "cpu:0"}) {
    auto r = parse_device(bad);
    ASSERT_FALSE(r.is_ok()) << bad;
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument) << bad;
    EXPECT_NE(r.status().message().find(std::string("\"") + bad + "\""), std::string::npos)
        << r.status().to_string();
  }
}

TEST(SourceLocations, AreParsedStrictly) {
  auto a = parse_source_location("/data/ckpt.ferry");
  ASSERT_TRUE(a.is_ok());
  EXPECT_EQ(a->kind, SourceLocation::Kind::kArchive);
  EXPECT_EQ(a->path, "/data/ckpt.ferry");
  auto s = parse_source_location("store:/srv/ferry/store/host-a/step-100/");
  ASSERT_TRUE(s.is_ok()) << s.status().to_string();
  EXPECT_EQ(s->kind, SourceLocation::Kind::kStore);
  EXPECT_EQ(s->path, "/srv/ferry/store");
  EXPECT_EQ(s->ns, "host-a");
  EXPECT_EQ(s->snapshot, "step-100");
  auto r = parse_source_location("ferry://dr.example.com:7443/step-100");
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->kind, SourceLocation::Kind::kRemote);
  EXPECT_EQ(r->address, "dr.example.com:7443");
  EXPECT_EQ(r->snapshot, "step-100");
  // A bucket read straight (ferry.load("s3://...")): the store is the URL
  // less its last two segments.
  auto b = parse_source_location("s3://ferry-dr/site-a/dc1/trainer-01/step-100");
  ASSERT_TRUE(b.is_ok()) << b.status().to_string();
  EXPECT_EQ(b->kind, SourceLocation::Kind::kStore);
  EXPECT_EQ(b->path, "s3://ferry-dr/site-a/dc1");
  EXPECT_EQ(b->ns, "trainer-01");
  EXPECT_EQ(b->snapshot, "step-100");
  auto root = parse_source_location("s3://ferry-dr/trainer-01/step-100/");
  ASSERT_TRUE(root.is_ok()) << root.status().to_string();
  EXPECT_EQ(root->path, "s3://ferry-dr");
  EXPECT_EQ(root->ns, "trainer-01");
  for (const char* bad :
       {"", "ferry://host:1/", "ferry://host/step", "ferry:///step", "store:step", "store:/a/b",
        "store:/srv/store/../step", "store:/srv/store/ns/..", "s3://bucket/x", "ferry://h:1/a/b",
        "s3://Bad_Bucket/ns/step", "s3://b/ns/step", "s3://bucket/ns/.."}) {
    auto p = parse_source_location(bad);
    ASSERT_FALSE(p.is_ok()) << bad;
    EXPECT_EQ(p.status().code(), Code::kInvalidArgument) << bad;
  }
  auto missing = open_frame_source("/nonexistent/x.ferry");
  ASSERT_FALSE(missing.is_ok());
  EXPECT_NE(missing.status().message().find("/nonexistent/x.ferry"), std::string::npos);
}

}  // namespace
}  // namespace ferry::replication
