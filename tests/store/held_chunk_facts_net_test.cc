// held_chunk_facts_net_test.cc: a push straight into a store (`ferry push
// --to=s3://...`, store/store_push.h) that finds a chunk already held lists
// it with the frame the store holds, not the frame the push would have
// coded (docs/FORMAT.md 5, "frame facts"): a chunk stored in full and then
// offered as a delta, a chunk stored as a delta and then offered alone or
// against another base. Every snapshot then restores, and removing the
// snapshot that stored the frame (then gc) keeps the base that frame needs;
// gc keeps every base of a chain of deltas too. A base removed between the
// have/need question and the put (a real gc at that instant) makes the push
// store the chunk in full. Runs on the local store and on S3 against the
// test Ceph cluster (tests/testing/ceph_dev.h); the local store's gc also
// keeps the bases of deltas that a manifest of an earlier ferry misstates.
#include <gtest/gtest.h>

#include <map>

#include "base/clock.h"
#include "codec/delta_codec.h"
#include "codec/frame.h"
#include "codec/unpacker.h"
#include "store/local_store.h"
#include "store/snapshot_file.h"
#include "store/store_push.h"
#include "tests/store/s3_test_bucket.h"
#include "tests/testing/ceph_dev.h"
#include "tests/testing/testing.h"

namespace ferry {
namespace {

namespace fs = std::filesystem;

constexpr const char* kNs = "host-a";

// Frames of one snapshot read from a store by id, as a restore does.
class StoreSource final : public FrameSource {
 public:
  StoreSource(ChunkStore& store, Manifest m) : store_(store), m_(std::move(m)) {}
  const Manifest& manifest() const override { return m_; }
  std::string describe() const override { return "store"; }
  Status read_frame(std::size_t file, std::size_t chunk, std::vector<std::byte>& out) const override {
    return read_chunk_frame(m_.files[file].chunks[chunk].id, out);
  }
  Status read_chunk_frame(const Digest& id, std::vector<std::byte>& out) const override {
    ASSIGN_OR_RETURN(out, store_.get(kNs, id));
    return Status::ok();
  }

 private:
  ChunkStore& store_;
  Manifest m_;
};

class HeldChunkFacts {
 public:
  HeldChunkFacts(ChunkStore& store, const fs::path& dir) : store_(store), dir_(dir) {}

  // A checkpoint directory holding weights `w`.
  fs::path write(const std::string& name, const std::vector<std::byte>& w) {
    const fs::path d = dir_ / name;
    fs::create_directories(d);
    testing::write_bf16_safetensors(d / "model.safetensors", w, 3);
    return d;
  }

  StorePushReport push(const fs::path& src, const std::string& snapshot, const fs::path& delta_from = {},
                       const StorePushHooks& hooks = {}) {
    PackOptions pack;
    pack.chunk_bytes = 256u << 10;
    pack.job = "llama";
    pack.created_ns = 1'000'000'000LL * (1000 + ++pushes_);
    pack.delta_from = delta_from;
    pack.direct_io = false;
    auto sources = list_pack_sources(src);
    EXPECT_TRUE(sources.is_ok());
    pack.window_chunks = 16;  // one window: one have/need question before any put
    auto r = push_to_store(store_, kNs, *sources, pack, snapshot, hooks);
    EXPECT_TRUE(r.is_ok()) << snapshot << ": " << r.status().to_string();
    return r.is_ok() ? *r : StorePushReport{};
  }

  // Every chunk of `snapshot` is listed with the facts of the stored frame,
  // and the snapshot restores (each chunk and file root verified).
  void expect_restores(const std::string& snapshot) {
    auto bytes = store_.manifest(kNs, snapshot);
    ASSERT_TRUE(bytes.is_ok()) << bytes.status().to_string();
    auto m = parse_manifest(*bytes);
    ASSERT_TRUE(m.is_ok()) << m.status().to_string();
    for (const ManifestChunk& c : m->files[0].chunks) {
      auto frame = store_.get(kNs, c.id);
      ASSERT_TRUE(frame.is_ok()) << snapshot << " chunk " << to_hex(c.id) << ": "
                                 << frame.status().to_string();
      auto h = parse_frame_header(*frame);
      ASSERT_TRUE(h.is_ok());
      EXPECT_EQ(static_cast<std::uint8_t>(h->codec), c.codec) << snapshot << " chunk " << to_hex(c.id);
      EXPECT_EQ(h->base_id, c.base_id) << snapshot << " chunk " << to_hex(c.id);
      EXPECT_EQ(frame->size(), c.frame_bytes) << snapshot << " chunk " << to_hex(c.id);
    }
    StoreSource source(store_, *m);
    Status verified = verify_frames(source);
    EXPECT_TRUE(verified.is_ok()) << snapshot << ": " << verified.to_string();
  }

  // `some_unneeded`: the removed snapshots held chunks no kept one needs
  // (gc must remove something, or the test proves nothing); otherwise every
  // chunk is still needed and gc must remove none.
  void remove_and_gc(const std::vector<std::string>& snapshots, bool some_unneeded = true) {
    for (const auto& s : snapshots)
      ASSERT_TRUE(store_.remove_snapshot(kNs, s, Actor::kOperator).is_ok()) << s;
    auto gc = store_.gc(kNs, Actor::kOperator);
    ASSERT_TRUE(gc.is_ok()) << gc.status().to_string();
    if (some_unneeded) {
      EXPECT_GT(gc->chunks_removed, 0u) << "gc removed nothing: the test proves nothing";
    } else {
      EXPECT_EQ(gc->chunks_removed, 0u) << "every chunk is still needed";
    }
  }

 private:
  ChunkStore& store_;
  fs::path dir_;
  int pushes_ = 0;
};

// Weights of steps 0..2 of a run: each step nudges the low bits.
std::vector<std::vector<std::byte>> steps() {
  std::vector<std::vector<std::byte>> out;
  std::vector<std::byte> w = testing::normal_floats(3u << 17, 2, true, 0.02, 5);
  for (std::uint64_t s = 0; s < 3; ++s) {
    out.push_back(w);
    testing::drift_bf16(w, s + 1);
  }
  return out;
}

// Stored in full (s1), then offered as a delta against chunks held from s2.
void full_then_delta(ChunkStore& store, const fs::path& dir) {
  HeldChunkFacts t(store, dir);
  const auto w = steps();
  const fs::path d1 = t.write("w1", w[1]), d0 = t.write("w0", w[0]), again = t.write("w1-again", w[1]);
  t.push(d1, "s1");
  t.push(d0, "s2");
  StorePushReport r = t.push(again, "s3", d0);
  EXPECT_EQ(r.frame_bytes_stored, 0u) << "every chunk of s3 is held";
  for (const char* s : {"s1", "s2", "s3"}) t.expect_restores(s);
  t.remove_and_gc({"s1", "s2"});
  t.expect_restores("s3");
}

// Stored as a delta against s1's chunks (s2), then offered alone (s3) and
// against another base (s4, against s0's chunks).
void delta_then_other(ChunkStore& store, const fs::path& dir) {
  HeldChunkFacts t(store, dir);
  const auto w = steps();
  const fs::path d0 = t.write("w0", w[0]), d1 = t.write("w1", w[1]), d2 = t.write("w2", w[2]);
  const fs::path again = t.write("w2-again", w[2]);
  t.push(d0, "s0");
  t.push(d1, "s1");
  StorePushReport r2 = t.push(d2, "s2", d1);
  ASSERT_EQ(r2.delta_chunks, 3u) << "s2's chunks are stored as deltas against s1's";
  for (auto [name, base] : {std::pair{"s3", fs::path()}, std::pair{"s4", d0}}) {
    StorePushReport r = t.push(again, name, base);
    EXPECT_EQ(r.frame_bytes_stored, 0u) << name << ": every chunk is held";
  }
  for (const char* s : {"s0", "s1", "s2", "s3", "s4"}) t.expect_restores(s);
  // s1 held the bases; gc must keep them for s3 and s4.
  t.remove_and_gc({"s0", "s1", "s2"});
  t.expect_restores("s3");
  t.expect_restores("s4");
}

// A chain (--delta=previous): s2 against s1 against s0. With s0 and s1
// removed, gc keeps s1's delta (s2's base, which no snapshot names as a
// chunk) and s0's chunk beneath it.
void chain_of_deltas(ChunkStore& store, const fs::path& dir) {
  HeldChunkFacts t(store, dir);
  const auto w = steps();
  const fs::path d0 = t.write("w0", w[0]), d1 = t.write("w1", w[1]), d2 = t.write("w2", w[2]);
  t.push(d0, "s0");
  ASSERT_EQ(t.push(d1, "s1", d0).delta_chunks, 3u);
  ASSERT_EQ(t.push(d2, "s2", d1).delta_chunks, 3u);
  t.remove_and_gc({"s0", "s1"}, /*some_unneeded=*/false);
  t.expect_restores("s2");
}

// The base of a delta removed between the have/need question and the put
// (a gc at that instant, run for real just before the first put): the push
// stores those chunks in full instead of failing, and the snapshot
// restores. sx keeps the header chunk that w0 and w1 share.
void base_removed_before_put(ChunkStore& store, const fs::path& dir) {
  HeldChunkFacts t(store, dir);
  const auto w = steps();
  const fs::path d0 = t.write("w0", w[0]), d1 = t.write("w1", w[1]);
  const fs::path dx = t.write("wx", testing::normal_floats(3u << 17, 2, true, 0.02, 99));
  t.push(d0, "s1");
  t.push(dx, "sx");
  bool removed = false;
  StorePushHooks hooks;
  hooks.should_stop = [&] {  // called before each put
    if (!removed) {
      removed = true;
      EXPECT_TRUE(store.remove_snapshot(kNs, "s1", Actor::kOperator).is_ok());
      auto gc = store.gc(kNs, Actor::kOperator);
      EXPECT_TRUE(gc.is_ok()) << gc.status().to_string();
      EXPECT_GT(gc->chunks_removed, 0u) << "the bases were not removed";
    }
    return false;
  };
  StorePushReport r = t.push(d1, "s2", d0, hooks);
  EXPECT_TRUE(removed);
  EXPECT_EQ(r.delta_chunks, 3u) << "coded as deltas: the store said it held the bases";
  EXPECT_EQ(r.deltas_sent_in_full, 3u) << "every delta went again in full";
  t.expect_restores("s2");
}

StoreOptions quick_gc() {
  StoreOptions o;
  o.gc_grace_seconds = 0;
  o.gc_settle_ms = kS3GcMinSettleMs;
  o.log = [](std::string_view) {};
  return o;
}

// A snapshot committed by a ferry from before manifests stated the stored
// frames lists a chunk stored as a delta as if it were stored in full. The
// local store's gc reads the stored frame of every chunk a snapshot names,
// so it keeps the base that frame needs all the same.
TEST(HeldChunkFactsLocalTest, GcKeepsTheBaseOfADeltaAnOlderManifestMisstates) {
  testing::TempDir dir;
  const auto w = steps();
  Manifest old;
  {
    auto store = open_local_store(dir / "store", quick_gc());
    ASSERT_TRUE(store.is_ok()) << store.status().to_string();
    HeldChunkFacts t(**store, dir.path());
    const fs::path d0 = t.write("w0", w[0]), d1 = t.write("w1", w[1]);
    t.push(d0, "s1");
    ASSERT_EQ(t.push(d1, "s2", d0).delta_chunks, 3u);
    auto bytes = (*store)->manifest(kNs, "s2");
    ASSERT_TRUE(bytes.is_ok());
    old = *parse_manifest(*bytes);
    for (const char* s : {"s1", "s2"})
      ASSERT_TRUE((*store)->remove_snapshot(kNs, s, Actor::kOperator).is_ok());
  }
  int misstated = 0;
  for (ManifestChunk& c : old.files[0].chunks) {
    if (c.base_id == Digest{}) continue;
    c.codec = static_cast<std::uint8_t>(Codec::kRaw);
    c.base_id = Digest{};
    c.frame_bytes = static_cast<std::uint32_t>(kFrameHeaderBytes + c.length);
    ++misstated;
  }
  ASSERT_EQ(misstated, 3);
  testing::write_file(dir / "store" / kNs / "snapshots" / "old.manifest",
                      serialize_snapshot_file(wall_ns(), serialize_manifest(old)));
  auto store = open_local_store(dir / "store", quick_gc());
  ASSERT_TRUE(store.is_ok()) << store.status().to_string();
  auto gc = (*store)->gc(kNs, Actor::kOperator);
  ASSERT_TRUE(gc.is_ok()) << gc.status().to_string();
  EXPECT_EQ(gc->chunks_removed, 0u) << "s1's chunks are the bases of the stored deltas";
  for (const ManifestChunk& c : old.files[0].chunks) {
    auto frame = (*store)->get(kNs, c.id);
    ASSERT_TRUE(frame.is_ok()) << frame.status().to_string();
    auto h = parse_frame_header(*frame);
    ASSERT_TRUE(h.is_ok());
    std::vector<std::byte> out;
    Status rebuilt = is_delta_codec(h->codec)
                         ? rebuild_chunk(
                               *h, *frame, [&](const Digest& id) { return (*store)->get(kNs, id); }, out)
                         : Status::ok();
    EXPECT_TRUE(rebuilt.is_ok()) << to_hex(c.id) << ": " << rebuilt.to_string();
  }
}

enum class Backend { kLocal, kS3 };

// Each scenario on a local store and on a bucket of the test Ceph cluster.
class HeldChunkFactsTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    if (GetParam() == Backend::kLocal) {
      auto store = open_local_store(dir_ / "store", quick_gc());
      ASSERT_TRUE(store.is_ok()) << store.status().to_string();
      store_ = std::move(store).value();
      return;
    }
    std::string skip;
    const testing::CephCluster* ceph = testing::ceph_cluster(skip);
    if (ceph == nullptr) GTEST_SKIP() << skip;
    bucket_ = std::make_unique<testing::S3TestBucket>(*ceph);
    store_ = bucket_->open(1, quick_gc());
    ASSERT_NE(store_, nullptr);
  }

  testing::TempDir dir_;
  std::unique_ptr<testing::S3TestBucket> bucket_;  // outlives the store
  std::unique_ptr<ChunkStore> store_;
};

TEST_P(HeldChunkFactsTest, FullThenDelta) { full_then_delta(*store_, dir_.path()); }
TEST_P(HeldChunkFactsTest, DeltaThenAloneOrAnotherBase) { delta_then_other(*store_, dir_.path()); }
TEST_P(HeldChunkFactsTest, ChainOfDeltasKeepsEveryBase) { chain_of_deltas(*store_, dir_.path()); }
TEST_P(HeldChunkFactsTest, BaseRemovedBeforePutGoesInFull) { base_removed_before_put(*store_, dir_.path()); }

INSTANTIATE_TEST_SUITE_P(Backends, HeldChunkFactsTest, ::testing::Values(Backend::kLocal, Backend::kS3),
                         [](const ::testing::TestParamInfo<Backend>& i) {
                           return std::string(i.param == Backend::kLocal ? "Local" : "S3");
                         });

}  // namespace
}  // namespace ferry
