// s3_gc_net_test.cc: gc and prune of the S3 backend against a real Ceph
// cluster (scripts/ceph-dev.sh; store/s3_namespace_maintenance.cc,
// docs/FORMAT.md 9.5-9.6): gc racing pushes from another host, many times
// with seeds, never loses a chunk that a committed snapshot names (every
// committed snapshot is restored and compared after each round); a held
// lock refuses a second gc or prune naming its holder; an expired one is
// taken over and the log says so; the refresh keeps a long gc's lock.
#include <gtest/gtest.h>

#include <atomic>
#include <cctype>
#include <cstdlib>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "base/clock.h"
#include "codec/chunk_codec.h"
#include "codec/manifest.h"
#include "store/s3_lock.h"
#include "store/s3_pack.h"
#include "store/s3_store.h"
#include "store/store_push.h"
#include "tests/store/chunk_store_test_util.h"
#include "tests/store/s3_test_bucket.h"
#include "tests/testing/ceph_dev.h"
#include "tests/testing/link_simulator.h"
#include "tests/testing/testing.h"

namespace ferry {
namespace {

using testing::ceph_s3_config;
using testing::normal_floats;

using Bucket = testing::S3TestBucket;

// Options for a quick gc: no grace period, the shortest settle window.
StoreOptions quick_gc(std::vector<std::string>* log = nullptr, std::mutex* log_mu = nullptr) {
  StoreOptions o;
  o.gc_grace_seconds = 0;
  o.gc_settle_ms = kS3GcMinSettleMs;
  o.lock_expiry_ms = 20'000;
  if (log != nullptr) {
    o.log = [log, log_mu](std::string_view line) {
      std::lock_guard lock(*log_mu);
      log->emplace_back(line);
    };
  }
  return o;
}

Result<StorePushReport> push(ChunkStore& store, const std::string& ns, std::vector<PackSource> sources,
                             const std::string& snapshot) {
  PackOptions pack;
  pack.chunk_bytes = 64u << 10;
  pack.created_ns = wall_ns();
  pack.direct_io = false;
  return push_to_store(store, ns, sources, pack, snapshot);
}

// Restores every committed snapshot of `ns` chunk by chunk, decoding and
// verifying each, and compares each file with `files` (by relative path).
void expect_every_snapshot_restores(ChunkStore& store, const std::string& ns,
                                    const std::map<std::string, std::vector<std::byte>>& files) {
  auto snaps = store.list(ns);
  ASSERT_TRUE(snaps.is_ok()) << snaps.status().to_string();
  ChunkDecoder decoder;
  for (const SnapshotInfo& s : *snaps) {
    auto bytes = store.manifest(ns, s.name);
    ASSERT_TRUE(bytes.is_ok()) << bytes.status().to_string();
    auto m = parse_manifest(*bytes);
    ASSERT_TRUE(m.is_ok());
    for (const ManifestFile& f : m->files) {
      const std::vector<std::byte>& want = files.at(f.path);
      ASSERT_EQ(f.size, want.size()) << s.name << " " << f.path;
      std::vector<std::byte> raw;
      for (const ManifestChunk& c : f.chunks) {
        auto frame = store.get(ns, c.id);
        ASSERT_TRUE(frame.is_ok()) << "snapshot " << s.name << " lost chunk " << to_hex(c.id) << " of "
                                   << f.path << ": " << frame.status().to_string();
        ASSERT_TRUE(decoder.decode(*frame, raw, &c.id).is_ok()) << s.name << " " << f.path;
        ASSERT_TRUE(std::equal(raw.begin(), raw.end(), want.begin() + static_cast<std::ptrdiff_t>(c.offset)))
            << s.name << " " << f.path << " at " << c.offset;
      }
    }
  }
}

// gc racing a push from another host (through the other gateway), many
// times with seeds: the push relies on chunks (have/need) in packs that gc
// finds dead and deletes. Every push and every gc must succeed, and every
// snapshot committed must restore whole. The operator's gc runs over a
// link of 200 ms round trip, so that its reads and deletes spread over
// seconds, as they do for a big namespace. FERRY_S3_GC_RACE_SEEDS sets the
// number of rounds (default 5).
TEST(S3GcNetTest, GcRacingAPushNeverLosesAChunkACommittedSnapshotNames) {
  FERRY_REQUIRE_CEPH(ceph);
  Bucket b(*ceph);
  int rounds = 5;
  if (const char* e = std::getenv("FERRY_S3_GC_RACE_SEEDS"); e != nullptr) rounds = std::atoi(e);
  testing::TempDir dir;
  constexpr int kFiles = 8;
  std::map<std::string, std::vector<std::byte>> files;
  std::vector<PackSource> sources;
  for (int i = 0; i < kFiles; ++i) {
    const std::string rel = "shard-" + std::to_string(i) + ".bin";
    files[rel] = normal_floats(128u << 10, 2, true, 0.02, 500 + static_cast<std::uint64_t>(i));
    testing::write_file(dir.path() / rel, files[rel]);
    sources.push_back(PackSource{dir.path() / rel, rel, 0, 0});
  }
  testing::LinkOptions far;
  far.target = ceph->endpoint1.substr(std::string("http://").size());
  far.delay_ms = 100;
  testing::LinkSimulator link(far);
  ASSERT_TRUE(link.start().is_ok());
  const std::string far_endpoint = "http://" + link.address();
  int waited = 0, spared = 0, deleted = 0;
  for (int seed = 1; seed <= rounds; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed) + " (FERRY_S3_GC_RACE_SEEDS)");
    std::mt19937_64 rng(static_cast<std::uint64_t>(seed));
    const std::string ns = "race-" + std::to_string(seed);
    std::vector<std::string> log;
    std::mutex log_mu;
    auto operator_store = b.open(1, quick_gc(), far_endpoint);
    auto host_store = b.open(2, quick_gc(&log, &log_mu));
    ASSERT_NE(operator_store, nullptr);
    ASSERT_NE(host_store, nullptr);
    // One snapshot per file, each in packs of its own; half are removed.
    for (int i = 0; i < kFiles; ++i) {
      auto r = push(*host_store, ns, {sources[static_cast<std::size_t>(i)]}, "f" + std::to_string(i));
      ASSERT_TRUE(r.is_ok()) << r.status().to_string();
    }
    for (int i = 0; i < kFiles; ++i) {
      if (rng() % 2 == 0) {
        ASSERT_TRUE(operator_store->remove_snapshot(ns, "f" + std::to_string(i), Actor::kOperator).is_ok());
      }
    }
    // The host's view now says it holds every chunk.
    std::this_thread::sleep_for(std::chrono::milliseconds(1100));  // S3 times have 1 s resolution
    std::vector<PackSource> picked;
    for (int i = 0; i < kFiles; ++i) {
      if (rng() % 3 != 0) picked.push_back(sources[static_cast<std::size_t>(i)]);
    }
    const int delay_ms = static_cast<int>(rng() % 5000);
    Result<GcReport> gc_result = Status::internal("not run");
    std::thread gc([&] { gc_result = operator_store->gc(ns, Actor::kOperator); });
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    auto pushed = push(*host_store, ns, picked, "during-gc");
    gc.join();
    ASSERT_TRUE(gc_result.is_ok()) << gc_result.status().to_string();
    ASSERT_TRUE(pushed.is_ok()) << "push " << delay_ms << " ms into gc: " << pushed.status().to_string();
    spared += static_cast<int>(gc_result->packs_spared);
    deleted += static_cast<int>(gc_result->packs_deleted);
    {
      std::lock_guard lock(log_mu);
      for (const std::string& line : log) waited += line.find("waiting for it") != std::string::npos;
    }
    // A fresh gateway restores everything from the bucket alone.
    auto fresh = b.open(1, quick_gc());
    ASSERT_NE(fresh, nullptr);
    expect_every_snapshot_restores(*fresh, ns, files);
    auto scrub = fresh->scrub(ns);
    ASSERT_TRUE(scrub.is_ok());
    EXPECT_TRUE(scrub->clean());
    EXPECT_TRUE(b.objects(ns + "/lock").empty()) << "gc released its lock";
  }
  std::printf(
      "gc race: %d rounds, %d packs deleted, %d spared by a snapshot committed during gc, %d commits "
      "waited for gc\n",
      rounds, deleted, spared, waited);
  EXPECT_GT(deleted, 0) << "gc never had anything to delete: the race was not exercised";
}

// `n` files of 128 KiB of BF16 weights under `dir`, as push sources, with
// their bytes by relative path in `files`.
std::vector<PackSource> weight_files(const testing::TempDir& dir, int n, std::uint64_t seed,
                                     std::map<std::string, std::vector<std::byte>>& files) {
  std::vector<PackSource> sources;
  for (int i = 0; i < n; ++i) {
    const std::string rel = std::string(i < 10 ? "shard-0" : "shard-") + std::to_string(i) + ".bin";
    files[rel] = normal_floats(64u << 10, 2, true, 0.02, seed + static_cast<std::uint64_t>(i));
    testing::write_file(dir.path() / rel, files[rel]);
    sources.push_back(PackSource{dir.path() / rel, rel, 0, 0});
  }
  return sources;
}

std::uint64_t pack_bytes(const std::vector<S3Object>& packs) {
  std::uint64_t n = 0;
  for (const S3Object& o : packs) n += o.size;
  return n;
}

// One snapshot of every file fills packs with all of them; a second names
// two files (no new chunks), one in each pack; removing the first leaves
// the packs mostly dead. gc rewrites their live chunks into a new pack and deletes them: the
// bucket shrinks, the kept snapshot restores through a fresh gateway and
// through the long-lived one, and scrub is clean. With rewriting off, gc
// leaves them whole.
TEST(S3GcNetTest, GcRewritesMostlyDeadPacksAndKeptSnapshotsRestore) {
  FERRY_REQUIRE_CEPH(ceph);
  Bucket b(*ceph);
  testing::TempDir dir;
  std::map<std::string, std::vector<std::byte>> files;
  const auto sources = weight_files(dir, 16, 900, files);
  for (int repack_percent : {0, kS3GcRepackLivePercent}) {
    SCOPED_TRACE("gc_repack_live_percent " + std::to_string(repack_percent));
    const std::string ns = "repack-" + std::to_string(repack_percent);
    StoreOptions o = quick_gc();
    o.gc_repack_live_percent = repack_percent;
    auto store = b.open(1, o);
    ASSERT_NE(store, nullptr);
    auto all = push(*store, ns, sources, "all");
    ASSERT_TRUE(all.is_ok()) << all.status().to_string();
    auto keep = push(*store, ns, {sources[3], sources[14]}, "keep");
    ASSERT_TRUE(keep.is_ok()) << keep.status().to_string();
    ASSERT_TRUE(store->remove_snapshot(ns, "all", Actor::kOperator).is_ok());
    const auto before = b.objects(ns + "/packs/");
    ASSERT_GE(before.size(), 2u) << "the chunks fill more than one pack";
    std::this_thread::sleep_for(std::chrono::milliseconds(1100));  // S3 times have 1 s resolution
    auto gc = store->gc(ns, Actor::kOperator);
    ASSERT_TRUE(gc.is_ok()) << gc.status().to_string();
    const auto after = b.objects(ns + "/packs/");
    if (repack_percent == 0) {
      EXPECT_EQ(gc->packs_rewritten, 0u);
      EXPECT_EQ(gc->packs_deleted, 0u);
      EXPECT_EQ(pack_bytes(after), pack_bytes(before)) << "with rewriting off, live packs stay whole";
      continue;
    }
    EXPECT_GE(gc->packs_rewritten, 1u);
    EXPECT_EQ(gc->packs_rewritten + gc->packs_deleted, before.size());
    EXPECT_EQ(gc->packs_spared, 0u);
    EXPECT_EQ(after.size(), 1u) << "the live chunks of every old pack went into one new pack";
    EXPECT_LT(pack_bytes(after) * 4, pack_bytes(before)) << "2 of 16 files are live";
    // What the old packs held less the live records copied; the new pack adds
    // its header and trailer to those.
    EXPECT_GE(gc->bytes_removed, pack_bytes(before) - pack_bytes(after));
    EXPECT_LE(gc->bytes_removed, pack_bytes(before) - pack_bytes(after) + (16u << 10));
    for (const S3Object& old : before) {
      for (const S3Object& now : after) EXPECT_NE(old.key, now.key);
    }
    EXPECT_EQ(b.objects(ns + "/index/").size(), 1u);
    expect_every_snapshot_restores(*store, ns, files);
    auto fresh = b.open(2, quick_gc());
    ASSERT_NE(fresh, nullptr);
    expect_every_snapshot_restores(*fresh, ns, files);
    auto scrub = fresh->scrub(ns);
    ASSERT_TRUE(scrub.is_ok());
    EXPECT_TRUE(scrub->clean());
  }
}

// gc rewriting mostly dead packs while another host pushes (through the
// other gateway) a snapshot whose chunks are partly the live chunks gc
// copies and partly dead ones in the same packs, many times with seeds:
// every gc and push succeeds, and every committed snapshot restores through
// a fresh gateway and through the pushing host's long-lived one.
// FERRY_S3_GC_RACE_SEEDS sets the number of rounds (default 4).
TEST(S3GcNetTest, GcRewritingRacingAPushNeverLosesAChunk) {
  FERRY_REQUIRE_CEPH(ceph);
  Bucket b(*ceph);
  int rounds = 4;
  if (const char* e = std::getenv("FERRY_S3_GC_RACE_SEEDS"); e != nullptr) rounds = std::atoi(e);
  testing::TempDir dir;
  constexpr int kFiles = 16;
  std::map<std::string, std::vector<std::byte>> files;
  const auto sources = weight_files(dir, kFiles, 700, files);
  testing::LinkOptions far;
  far.target = ceph->endpoint1.substr(std::string("http://").size());
  far.delay_ms = 100;
  testing::LinkSimulator link(far);
  ASSERT_TRUE(link.start().is_ok());
  const std::string far_endpoint = "http://" + link.address();
  int rewritten = 0, spared = 0;
  for (int seed = 1; seed <= rounds; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed) + " (FERRY_S3_GC_RACE_SEEDS)");
    std::mt19937_64 rng(static_cast<std::uint64_t>(seed) + 100);
    const std::string ns = "rewrite-race-" + std::to_string(seed);
    auto operator_store = b.open(1, quick_gc(), far_endpoint);
    auto host_store = b.open(2, quick_gc());
    ASSERT_NE(operator_store, nullptr);
    ASSERT_NE(host_store, nullptr);
    auto all = push(*host_store, ns, sources, "all");
    ASSERT_TRUE(all.is_ok()) << all.status().to_string();
    // A few files stay named: the packs are mostly dead once "all" goes.
    std::vector<PackSource> kept;
    std::vector<bool> is_kept(kFiles);
    for (int i = 0; i < kFiles; ++i) is_kept[static_cast<std::size_t>(i)] = rng() % 5 == 0 || i == 0;
    for (int i = 0; i < kFiles; ++i) {
      if (is_kept[static_cast<std::size_t>(i)]) kept.push_back(sources[static_cast<std::size_t>(i)]);
    }
    auto pushed_kept = push(*host_store, ns, kept, "kept");
    ASSERT_TRUE(pushed_kept.is_ok()) << pushed_kept.status().to_string();
    ASSERT_TRUE(operator_store->remove_snapshot(ns, "all", Actor::kOperator).is_ok());
    std::this_thread::sleep_for(std::chrono::milliseconds(1100));  // S3 times have 1 s resolution
    // The push during gc names live chunks (kept files) and dead ones.
    std::vector<PackSource> picked;
    for (int i = 0; i < kFiles; ++i) {
      if (rng() % 3 == 0 || i == 0) picked.push_back(sources[static_cast<std::size_t>(i)]);
    }
    const int delay_ms = static_cast<int>(rng() % 4000);
    Result<GcReport> gc_result = Status::internal("not run");
    std::thread gc([&] { gc_result = operator_store->gc(ns, Actor::kOperator); });
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    auto pushed = push(*host_store, ns, picked, "during-gc");
    gc.join();
    ASSERT_TRUE(gc_result.is_ok()) << gc_result.status().to_string();
    ASSERT_TRUE(pushed.is_ok()) << "push " << delay_ms << " ms into gc: " << pushed.status().to_string();
    rewritten += static_cast<int>(gc_result->packs_rewritten);
    spared += static_cast<int>(gc_result->packs_spared);
    expect_every_snapshot_restores(*host_store, ns, files);
    auto fresh = b.open(1, quick_gc());
    ASSERT_NE(fresh, nullptr);
    expect_every_snapshot_restores(*fresh, ns, files);
    auto scrub = fresh->scrub(ns);
    ASSERT_TRUE(scrub.is_ok());
    EXPECT_TRUE(scrub->clean());
    EXPECT_TRUE(b.objects(ns + "/lock").empty()) << "gc released its lock";
  }
  std::printf("gc rewrite race: %d rounds, %d packs rewritten, %d spared by a snapshot committed during gc\n",
              rounds, rewritten, spared);
  EXPECT_GT(rewritten, 0) << "gc never rewrote a pack: the race was not exercised";
}

TEST(S3GcNetTest, AHeldLockRefusesGcAndPruneNamingItsHolder) {
  FERRY_REQUIRE_CEPH(ceph);
  Bucket b(*ceph);
  auto store = b.open(1, quick_gc());
  ASSERT_NE(store, nullptr);
  const auto c = testing::make_chunk(77), kept = testing::make_chunk(78);
  ASSERT_TRUE(store->put("h", c.frame).is_ok());
  ASSERT_TRUE(store->commit_snapshot("h", "s1", testing::manifest_for({&c}, wall_ns())).is_ok());
  ASSERT_TRUE(store->remove_snapshot("h", "s1", Actor::kOperator).is_ok());
  ASSERT_TRUE(store->put("h", kept.frame).is_ok());
  ASSERT_TRUE(store->commit_snapshot("h", "p1", testing::manifest_for({&kept}, wall_ns())).is_ok());
  ASSERT_TRUE(store->commit_snapshot("h", "p2", testing::manifest_for({&kept}, wall_ns(), 2)).is_ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));

  S3Lock::Options lo;
  lo.operation = "gc";
  lo.expiry_ms = 60'000;
  auto held = S3Lock::acquire(*b.client, b.name, "dr/h/lock", lo);
  ASSERT_TRUE(held.is_ok()) << held.status().to_string();
  auto gc = store->gc("h", Actor::kOperator);
  ASSERT_EQ(gc.status().code(), Code::kUnavailable) << gc.status().to_string();
  const std::string msg = gc.status().message();
  EXPECT_NE(msg.find("locked by"), std::string::npos) << msg;
  EXPECT_NE(msg.find(":" + std::to_string(::getpid()) + " gc"), std::string::npos) << msg;
  EXPECT_NE(msg.find("expires 20"), std::string::npos) << msg;
  RetentionPolicy keep;
  keep.keep_last = 1;
  auto prune = store->prune("h", keep, wall_ns(), Actor::kOperator);
  EXPECT_EQ(prune.status().code(), Code::kUnavailable) << prune.status().to_string();
  EXPECT_NE(prune.status().message().find("prune runs once"), std::string::npos)
      << prune.status().to_string();
  EXPECT_EQ(store->remove_snapshot("h", "p1", Actor::kOperator).code(), Code::kUnavailable);
  EXPECT_EQ(b.objects("h/packs/").size(), 2u) << "nothing deleted under another's lock";
  EXPECT_EQ(b.objects("h/snapshots/").size(), 2u);
  // Released, the next gc runs.
  ASSERT_TRUE((*held)->release().is_ok());
  EXPECT_TRUE(b.objects("h/lock").empty());
  gc = store->gc("h", Actor::kOperator);
  ASSERT_TRUE(gc.is_ok()) << gc.status().to_string();
  EXPECT_EQ(gc->packs_deleted, 1u);
  EXPECT_EQ(b.objects("h/packs/").size(), 1u);
  prune = store->prune("h", keep, wall_ns(), Actor::kOperator);
  ASSERT_TRUE(prune.is_ok()) << prune.status().to_string();
  EXPECT_EQ(prune->removed.size(), 1u);
}

TEST(S3GcNetTest, AnExpiredLockIsTakenOverAndTheLogSaysSo) {
  FERRY_REQUIRE_CEPH(ceph);
  Bucket b(*ceph);
  std::vector<std::string> log;
  std::mutex log_mu;
  auto store = b.open(1, quick_gc(&log, &log_mu));
  ASSERT_NE(store, nullptr);
  // A gc that died: its lock expired a minute ago.
  S3LockRecord dead;
  dead.holder = "dead-host:4242 gc";
  dead.token = std::string(32, 'a');
  dead.acquired_ns = wall_ns() - 180 * kNanosPerSecond;
  dead.expires_ns = wall_ns() - 60 * kNanosPerSecond;
  ASSERT_TRUE(b.client->put(b.name, "dr/h/lock", serialize_s3_lock(dead)).is_ok());
  auto gc = store->gc("h", Actor::kOperator);
  ASSERT_TRUE(gc.is_ok()) << gc.status().to_string();
  bool said = false;
  for (const std::string& line : log) {
    said |= line.find("took over the expired lock") != std::string::npos &&
            line.find("dead-host:4242 gc") != std::string::npos;
  }
  EXPECT_TRUE(said) << "the log names the expired holder";
  EXPECT_TRUE(b.objects("h/lock").empty()) << "released after gc";

  // One that has not expired yet is not taken over.
  dead.expires_ns = wall_ns() + 60 * kNanosPerSecond;
  ASSERT_TRUE(b.client->put(b.name, "dr/h/lock", serialize_s3_lock(dead)).is_ok());
  gc = store->gc("h", Actor::kOperator);
  EXPECT_EQ(gc.status().code(), Code::kUnavailable);
  EXPECT_NE(gc.status().message().find("dead-host:4242 gc"), std::string::npos) << gc.status().to_string();
}

// A lock held longer than its expiry stays held while its holder refreshes
// it; racing takers of an expired lock: exactly one wins.
TEST(S3GcNetTest, TheRefreshKeepsTheLockAndOneOfRacingTakersWins) {
  FERRY_REQUIRE_CEPH(ceph);
  Bucket b(*ceph);
  S3Lock::Options lo;
  lo.operation = "gc";
  lo.expiry_ms = 2'000;
  auto held = S3Lock::acquire(*b.client, b.name, "dr/h/lock", lo);
  ASSERT_TRUE(held.is_ok()) << held.status().to_string();
  std::this_thread::sleep_for(std::chrono::milliseconds(5'000));
  EXPECT_TRUE((*held)->check_held().is_ok()) << (*held)->check_held().to_string();
  lo.operation = "prune";
  auto second = S3Lock::acquire(*b.client, b.name, "dr/h/lock", lo);
  EXPECT_EQ(second.status().code(), Code::kUnavailable) << "refreshed, not expired";
  ASSERT_TRUE((*held)->release().is_ok());

  S3LockRecord dead;
  dead.holder = "dead-host:1 gc";
  dead.token = std::string(32, 'b');
  dead.acquired_ns = dead.expires_ns = wall_ns() - kNanosPerSecond;
  ASSERT_TRUE(b.client->put(b.name, "dr/h2/lock", serialize_s3_lock(dead)).is_ok());
  constexpr int kTakers = 8;
  std::atomic<int> won{0}, refused{0};
  std::vector<std::unique_ptr<S3Lock>> locks(kTakers);
  std::vector<std::thread> threads;
  for (int i = 0; i < kTakers; ++i) {
    threads.emplace_back([&, i] {
      S3Lock::Options o;
      o.operation = "gc";
      o.expiry_ms = 60'000;
      auto l = S3Lock::acquire(*b.client, b.name, "dr/h2/lock", o);
      if (l.is_ok()) {
        ++won;
        locks[static_cast<std::size_t>(i)] = std::move(*l);
      } else if (l.status().code() == Code::kUnavailable) {
        ++refused;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(won.load(), 1);
  EXPECT_EQ(refused.load(), kTakers - 1);
}

// Credentials that cannot delete (a radosgw user whom the bucket policy
// allows only PutObject, GetObject and ListBucket): push and restore work;
// gc and prune fail at once with a clear error, locking and deleting
// nothing; the operator's keys then collect.
TEST(S3GcNetTest, AppendOnlyCredentialsPushAndRestoreButCannotCollect) {
  FERRY_REQUIRE_CEPH(ceph);
  Bucket b(*ceph);
  const std::string uid = "append-" + b.name.substr(b.name.size() - 8);
  std::string access = "AO" + b.name.substr(b.name.size() - 12);
  for (char& ch : access) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  const std::string secret = "append-only-secret-" + b.name;
  const std::string admin = "radosgw-admin -c " + testing::shell_quote(ceph->dir + "/ceph.conf") +
                            " user create --uid=" + uid + " --display-name=" + uid +
                            " --access-key=" + access + " --secret-key=" + secret + " >/dev/null 2>&1";
  ASSERT_EQ(std::system(admin.c_str()), 0) << admin;
  const std::string policy =
      R"({"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":["arn:aws:iam:::user/)" +
      uid + R"("]},"Action":["s3:PutObject","s3:GetObject","s3:ListBucket"],"Resource":["arn:aws:s3:::)" +
      b.name + R"(","arn:aws:s3:::)" + b.name + R"(/*"]}]})";
  S3Request put_policy;
  put_policy.method = S3Request::Method::kPut;
  put_policy.bucket = b.name;
  put_policy.query = {{"policy", ""}};
  const auto* pb = reinterpret_cast<const std::byte*>(policy.data());
  const std::vector<std::byte> policy_bytes(pb, pb + policy.size());
  put_policy.body = policy_bytes;
  S3Request* pp = &put_policy;
  b.client->run(std::span(&pp, 1));
  ASSERT_TRUE(put_policy.status.is_ok()) << put_policy.status.to_string();

  StoreOptions options = quick_gc();
  S3Config host_cfg = ceph_s3_config(*ceph);
  host_cfg.endpoints = {ceph->endpoint1};
  host_cfg.credentials = {access, secret, ""};
  options.object_pack_target_bytes = 1 << 20;
  options.log = [](std::string_view) {};
  auto host = open_s3_store(b.url(), host_cfg, options);
  ASSERT_TRUE(host.is_ok()) << host.status().to_string();
  const auto old = testing::make_chunk(90), kept = testing::make_chunk(91);
  ASSERT_TRUE((*host)->put("h", old.frame).is_ok());
  ASSERT_TRUE((*host)->commit_snapshot("h", "old", testing::manifest_for({&old}, wall_ns())).is_ok());
  ASSERT_TRUE((*host)->put("h", kept.frame).is_ok());
  ASSERT_TRUE((*host)->commit_snapshot("h", "kept", testing::manifest_for({&kept}, wall_ns(), 2)).is_ok());
  EXPECT_EQ((*host)->get("h", old.info.id).value(), old.frame);
  // The policy does refuse this user's deletes.
  EXPECT_EQ(S3Client::create(host_cfg).value()->remove(b.name, "dr/h/snapshots/old.manifest").code(),
            Code::kPermissionDenied);

  const auto before = b.objects("");
  RetentionPolicy keep;
  keep.keep_last = 1;
  auto prune = (*host)->prune("h", keep, wall_ns(), Actor::kOperator);
  ASSERT_EQ(prune.status().code(), Code::kPermissionDenied) << prune.status().to_string();
  EXPECT_NE(prune.status().message().find("s3:DeleteObject"), std::string::npos)
      << prune.status().to_string();
  EXPECT_NE(prune.status().message().find("prune"), std::string::npos) << prune.status().to_string();
  auto gc = (*host)->gc("h", Actor::kOperator);
  ASSERT_EQ(gc.status().code(), Code::kPermissionDenied) << gc.status().to_string();
  EXPECT_NE(gc.status().message().find("gc needs credentials that may delete"), std::string::npos)
      << gc.status().to_string();
  const auto after = b.objects("");
  ASSERT_EQ(after.size(), before.size()) << "nothing deleted, no lock left behind";
  for (std::size_t i = 0; i < after.size(); ++i) EXPECT_EQ(after[i].key, before[i].key);

  // The operator's keys collect: prune removes "old", gc its pack.
  auto operator_store = b.open(1, quick_gc());
  prune = operator_store->prune("h", keep, wall_ns(), Actor::kOperator);
  ASSERT_TRUE(prune.is_ok()) << prune.status().to_string();
  EXPECT_EQ(prune->removed, std::vector<std::string>{"old"});
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  gc = operator_store->gc("h", Actor::kOperator);
  ASSERT_TRUE(gc.is_ok()) << gc.status().to_string();
  EXPECT_EQ(gc->packs_deleted, 1u);
  EXPECT_EQ((*host)->get("h", kept.info.id).value(), kept.frame);
}

// S3 Object Lock: with StoreOptions::object_lock_days, every object ferry
// writes is retained (COMPLIANCE) in a bucket made with Object Lock: the
// locked version of a pack cannot be deleted, by any key, and holds its
// bytes; gc and prune refuse such (versioned) buckets.
TEST(S3GcNetTest, ObjectLockedPacksCannotBeDeleted) {
  FERRY_REQUIRE_CEPH(ceph);
  auto client = S3Client::create(ceph_s3_config(*ceph));
  ASSERT_TRUE(client.is_ok());
  const std::string bucket = testing::unique_bucket();
  S3Request make;
  make.method = S3Request::Method::kPut;
  make.bucket = bucket;
  make.headers = {{"x-amz-bucket-object-lock-enabled", "true"}};
  S3Request* mp = &make;
  (*client)->run(std::span(&mp, 1));
  ASSERT_TRUE(make.status.is_ok()) << make.status.to_string();

  StoreOptions options = quick_gc();
  options.object_lock_days = 1;
  options.object_pack_target_bytes = 1 << 20;
  options.log = [](std::string_view) {};
  S3Config cfg = ceph_s3_config(*ceph);
  auto store = open_s3_store("s3://" + bucket + "/dr", cfg, options);
  ASSERT_TRUE(store.is_ok()) << store.status().to_string();
  const auto c = testing::make_chunk(95);
  ASSERT_TRUE((*store)->put("h", c.frame).is_ok());
  const auto m1 = testing::manifest_for({&c}, wall_ns());
  ASSERT_TRUE((*store)->commit_snapshot("h", "s1", m1).is_ok());
  auto packs = (*client)->list(bucket, "dr/h/packs/");
  ASSERT_TRUE(packs.is_ok());
  ASSERT_EQ(packs->size(), 1u);
  const std::string pack = (*packs)[0].key;
  S3Request head;
  head.method = S3Request::Method::kHead;
  head.bucket = bucket;
  head.key = pack;
  S3Request* hp = &head;
  (*client)->run(std::span(&hp, 1));
  ASSERT_TRUE(head.status.is_ok()) << head.status.to_string();
  ASSERT_FALSE(head.version_id.empty()) << "Object Lock buckets are versioned";

  // Not even the bucket owner deletes the locked version.
  S3Request del;
  del.method = S3Request::Method::kDelete;
  del.bucket = bucket;
  del.key = pack;
  del.query = {{"versionId", head.version_id}};
  S3Request* dp = &del;
  (*client)->run(std::span(&dp, 1));
  EXPECT_EQ(del.status.code(), Code::kPermissionDenied) << del.status.to_string();

  // The locked version holds the pack's bytes.
  S3Request get;
  get.bucket = bucket;
  get.key = pack;
  get.query = {{"versionId", head.version_id}};
  S3Request* gp = &get;
  (*client)->run(std::span(&gp, 1));
  ASSERT_TRUE(get.status.is_ok()) << get.status.to_string();
  auto trailer = parse_s3_trailer(s3_pack_trailer(get.reply), pack);
  ASSERT_TRUE(trailer.is_ok()) << trailer.status().to_string();
  ASSERT_EQ(trailer->entries.size(), 1u);
  EXPECT_EQ(trailer->entries[0].id, c.info.id);
  // A versioned bucket does not honour conditional writes on radosgw, so
  // gc and prune refuse to run there, saying why, and leave no lock.
  for (Status st : {(*store)->gc("h", Actor::kOperator).status(),
                    (*store)->remove_snapshot("h", "s1", Actor::kOperator)}) {
    EXPECT_EQ(st.code(), Code::kUnsupported) << st.to_string();
    EXPECT_NE(st.message().find("versioned (Object Lock)"), std::string::npos) << st.to_string();
  }
  EXPECT_TRUE((*client)->list(bucket, "dr/h/lock").value().empty());
  // Snapshots stay write-once there: a retried commit succeeds, other
  // bytes under the same name are refused (never a second version).
  EXPECT_TRUE((*store)->commit_snapshot("h", "s1", m1).is_ok());
  EXPECT_EQ((*store)->commit_snapshot("h", "s1", testing::manifest_for({&c}, wall_ns(), 7)).code(),
            Code::kInvalidArgument);
  EXPECT_EQ((*store)->manifest("h", "s1").value(), m1);

  EXPECT_EQ(open_s3_store("s3://" + bucket + "/dr", cfg,
                          [] {
                            StoreOptions o;
                            o.object_lock_days = kS3MaxObjectLockDays + 1;
                            return o;
                          }())
                .status()
                .code(),
            Code::kInvalidArgument);
}

}  // namespace
}  // namespace ferry
