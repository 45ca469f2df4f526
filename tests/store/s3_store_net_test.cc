// s3_store_net_test.cc: the S3 backend of the chunk store against a real
// Ceph cluster (scripts/ceph-dev.sh), through the ChunkStore contract:
// verified puts, chunks durable (and visible to other gateways) only after
// the pack holding them is in the bucket, packs of many chunks, an index
// rebuilt from the packs' trailers, snapshots written last and once,
// namespaces isolated, append-only refusals, two gateways writing at once,
// damage in the bucket found by reads and scrub, and gc.
#include <gtest/gtest.h>

#include <unistd.h>

#include <atomic>
#include <thread>

#include "base/clock.h"
#include "store/pack_file.h"
#include "store/s3_pack.h"
#include "store/s3_store.h"
#include "tests/store/chunk_store_test_util.h"
#include "tests/store/s3_test_bucket.h"
#include "tests/testing/ceph_dev.h"
#include "tests/testing/link_simulator.h"
#include "tests/testing/s3_fault_relay.h"
#include "tests/testing/testing.h"

namespace ferry {
namespace {

using testing::ceph_s3_config;
using testing::make_chunk;
using testing::manifest_for;
using testing::TestChunk;
using testing::unique_bucket;

using Bucket = testing::S3TestBucket;

std::vector<TestChunk> chunks(int n, std::uint64_t seed, std::size_t bytes = 64u << 10) {
  std::vector<TestChunk> out;
  for (int i = 0; i < n; ++i) out.push_back(make_chunk(seed * 1000 + static_cast<std::uint64_t>(i), bytes));
  return out;
}

std::vector<const TestChunk*> ptrs(const std::vector<TestChunk>& cs) {
  std::vector<const TestChunk*> out;
  for (const TestChunk& c : cs) out.push_back(&c);
  return out;
}

void put_all(ChunkStore& s, const std::string& ns, const std::vector<TestChunk>& cs) {
  for (const TestChunk& c : cs) {
    auto put = s.put(ns, c.frame);
    ASSERT_TRUE(put.is_ok()) << put.status().to_string();
  }
}

TEST(S3StoreNetTest, RoundTripThroughAFreshGateway) {
  FERRY_REQUIRE_CEPH(ceph);
  Bucket b(*ceph);
  auto store = b.open();
  ASSERT_NE(store, nullptr);
  const auto cs = chunks(6, 1);
  put_all(*store, "host-a", cs);
  ASSERT_TRUE(store->sync("host-a").is_ok());
  const auto manifest = manifest_for(ptrs(cs), wall_ns());
  ASSERT_TRUE(store->commit_snapshot("host-a", "step-1", manifest).is_ok());

  // A second gateway, started afterwards, sees everything from the bucket alone.
  auto other = b.open(2);
  ASSERT_NE(other, nullptr);
  std::vector<Digest> ids;
  for (const TestChunk& c : cs) ids.push_back(c.info.id);
  auto have = other->have("host-a", ids);
  ASSERT_TRUE(have.is_ok());
  EXPECT_EQ(*have, std::vector<bool>(cs.size(), true));
  for (const TestChunk& c : cs) {
    auto frame = other->get("host-a", c.info.id);
    ASSERT_TRUE(frame.is_ok()) << frame.status().to_string();
    EXPECT_EQ(*frame, c.frame);
  }
  auto list = other->list("host-a");
  ASSERT_TRUE(list.is_ok());
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].name, "step-1");
  EXPECT_EQ((*list)[0].chunks, cs.size());
  auto m = other->manifest("host-a", "step-1");
  ASSERT_TRUE(m.is_ok());
  EXPECT_EQ(*m, manifest);
  EXPECT_EQ(other->namespaces().value(), std::vector<std::string>{"host-a"});
}

TEST(S3StoreNetTest, ChunksTravelInPacksAndAreDurableOnlyAfterSync) {
  FERRY_REQUIRE_CEPH(ceph);
  Bucket b(*ceph);
  auto store = b.open();
  auto other = b.open(2);
  const auto cs = chunks(24, 2, 128u << 10);  // about 3 MiB stored: 1 MiB packs
  std::vector<Digest> ids;
  for (const TestChunk& c : cs) ids.push_back(c.info.id);
  auto put = store->put("h", cs[0].frame);
  ASSERT_TRUE(put.is_ok());
  EXPECT_TRUE(put->stored);
  EXPECT_FALSE(store->have("h", std::span(ids).first(1)).value()[0]) << "not durable before a sync";
  EXPECT_FALSE(store->put("h", cs[0].frame).value().stored) << "a second put of a held chunk is a no-op";
  auto early = store->get("h", cs[0].info.id);
  ASSERT_TRUE(early.is_ok()) << "a chunk waiting in the open pack can be read";
  EXPECT_EQ(*early, cs[0].frame);
  EXPECT_TRUE(b.objects("h/packs/").empty()) << "nothing reaches the bucket before a pack is full or synced";
  put_all(*store, "h", cs);
  ASSERT_TRUE(store->sync("h").is_ok());
  EXPECT_EQ(store->have("h", ids).value(), std::vector<bool>(cs.size(), true));
  const auto packs = b.objects("h/packs/");
  const auto index = b.objects("h/index/");
  EXPECT_GE(packs.size(), 2u);
  EXPECT_LE(packs.size(), 5u) << "chunks are grouped, never one object per chunk";
  EXPECT_EQ(index.size(), packs.size()) << "one index object per pack";
  for (const S3Object& o : packs) EXPECT_LE(o.size, (1u << 20) + (256u << 10)) << o.key;
  // The other gateway learns of them from the bucket once its view is older
  // than the refresh interval.
  std::this_thread::sleep_for(std::chrono::milliseconds(kS3IndexRefreshMs + 100));
  EXPECT_EQ(other->have("h", ids).value(), std::vector<bool>(cs.size(), true));
}

TEST(S3StoreNetTest, TheIndexIsRebuiltFromThePacks) {
  FERRY_REQUIRE_CEPH(ceph);
  Bucket b(*ceph);
  const auto cs = chunks(8, 3);
  {
    auto store = b.open();
    put_all(*store, "h", cs);
    ASSERT_TRUE(store->sync("h").is_ok());
  }
  auto index = b.objects("h/index/");
  ASSERT_FALSE(index.empty());
  for (const S3Object& o : index) ASSERT_TRUE(b.client->remove(b.name, o.key).is_ok());
  std::vector<std::string> logged;
  StoreOptions options;
  options.log = [&](std::string_view line) { logged.emplace_back(line); };
  auto store = b.open(1, options);
  std::vector<Digest> ids;
  for (const TestChunk& c : cs) ids.push_back(c.info.id);
  EXPECT_EQ(store->have("h", ids).value(), std::vector<bool>(cs.size(), true));
  EXPECT_EQ(b.objects("h/index/").size(), index.size()) << "the index objects were written back";
  ASSERT_FALSE(logged.empty());
  EXPECT_NE(logged[0].find("rebuilt the index object"), std::string::npos) << logged[0];
}

TEST(S3StoreNetTest, SnapshotsAreVisibleOnlyCompleteAndWrittenOnce) {
  FERRY_REQUIRE_CEPH(ceph);
  Bucket b(*ceph);
  auto store = b.open();
  const auto cs = chunks(3, 4);
  put_all(*store, "h", {cs[0], cs[1]});
  const auto manifest = manifest_for(ptrs(cs), wall_ns());
  Status st = store->commit_snapshot("h", "s1", manifest);
  EXPECT_EQ(st.code(), Code::kNotFound) << st.to_string();
  EXPECT_NE(st.message().find(to_hex(cs[2].info.id)), std::string::npos) << st.to_string();
  EXPECT_TRUE(b.objects("h/snapshots/").empty()) << "nothing published for an incomplete snapshot";
  put_all(*store, "h", {cs[2]});
  ASSERT_TRUE(store->commit_snapshot("h", "s1", manifest).is_ok());
  EXPECT_TRUE(store->commit_snapshot("h", "s1", manifest).is_ok()) << "a retried commit succeeds";
  const auto other_manifest = manifest_for(ptrs(cs), wall_ns() + 1, 2);
  st = store->commit_snapshot("h", "s1", other_manifest);
  EXPECT_EQ(st.code(), Code::kInvalidArgument) << st.to_string();
  EXPECT_EQ(store->manifest("h", "s1").value(), manifest);
  // Two gateways racing to publish one name with different bytes: one wins.
  auto other = b.open(2);
  Status r1, r2;
  const auto m1 = manifest_for(ptrs(cs), wall_ns(), 10), m2 = manifest_for(ptrs(cs), wall_ns(), 11);
  std::thread t([&] { r1 = store->commit_snapshot("h", "race", m1); });
  r2 = other->commit_snapshot("h", "race", m2);
  t.join();
  EXPECT_NE(r1.is_ok(), r2.is_ok()) << r1.to_string() << " / " << r2.to_string();
  EXPECT_EQ(store->manifest("h", "race").value(), r1.is_ok() ? m1 : m2);
}

// Writers racing to publish the same snapshot (a retried push, two
// gateways given the same commit): the conditional PUT lets one create the
// object, and every other, refused with 412, finds the same bytes there and
// succeeds; none fails.
TEST(S3StoreNetTest, RacingCommitsOfTheSameSnapshotAllSucceed) {
  FERRY_REQUIRE_CEPH(ceph);
  Bucket b(*ceph);
  auto one = b.open(1), two = b.open(2);
  const auto cs = chunks(3, 40);
  put_all(*one, "h", cs);
  ASSERT_TRUE(one->sync("h").is_ok());
  const auto manifest = manifest_for(ptrs(cs), wall_ns());
  constexpr int kWriters = 16;
  std::vector<Status> results(kWriters);
  std::vector<std::thread> threads;
  for (int i = 0; i < kWriters; ++i) {
    threads.emplace_back(
        [&, i] { results[i] = (i % 2 ? *two : *one).commit_snapshot("h", "same", manifest); });
  }
  for (auto& t : threads) t.join();
  for (const Status& st : results) EXPECT_TRUE(st.is_ok()) << st.to_string();
  EXPECT_EQ(b.objects("h/snapshots/").size(), 1u);
  EXPECT_EQ(two->manifest("h", "same").value(), manifest);
}

TEST(S3StoreNetTest, NamespacesAreIsolatedAndDeletionFollowsAppendOnly) {
  FERRY_REQUIRE_CEPH(ceph);
  Bucket b(*ceph);
  StoreOptions options;
  options.append_only = true;
  auto store = b.open(1, options);
  const auto cs = chunks(2, 5);
  put_all(*store, "a", cs);
  ASSERT_TRUE(store->commit_snapshot("a", "s", manifest_for(ptrs(cs), wall_ns())).is_ok());
  const Digest id = cs[0].info.id;
  EXPECT_FALSE(store->have("b", std::span(&id, 1)).value()[0]);
  EXPECT_EQ(store->get("b", id).status().code(), Code::kNotFound);
  EXPECT_EQ(store->manifest("b", "s").status().code(), Code::kNotFound);
  EXPECT_EQ(store->commit_snapshot("b", "s", manifest_for(ptrs(cs), wall_ns())).code(), Code::kNotFound);
  EXPECT_EQ(store->remove_snapshot("a", "s", Actor::kHost).code(), Code::kPermissionDenied);
  EXPECT_EQ(store->prune("a", {1, 0}, wall_ns(), Actor::kHost).status().code(), Code::kPermissionDenied);
  EXPECT_EQ(store->gc("a", Actor::kHost).status().code(), Code::kPermissionDenied);
  EXPECT_TRUE(store->remove_snapshot("a", "s", Actor::kOperator).is_ok());
  EXPECT_TRUE(store->list("a").value().empty());
  EXPECT_EQ(store->remove_snapshot("a", "s", Actor::kOperator).code(), Code::kNotFound);
  EXPECT_EQ(store->put("../x", cs[0].frame).status().code(), Code::kInvalidArgument);
}

TEST(S3StoreNetTest, DamagedFramesAreRefusedBeforeAnythingIsStored) {
  FERRY_REQUIRE_CEPH(ceph);
  Bucket b(*ceph);
  auto store = b.open();
  TestChunk c = make_chunk(6);
  c.frame[c.frame.size() / 2] ^= std::byte{1};
  EXPECT_EQ(store->put("h", c.frame).status().code(), Code::kCorruption);
  const TestChunk good = make_chunk(7);
  EXPECT_EQ(store->put("h", good.frame, &c.info.id).status().code(), Code::kCorruption);
  ASSERT_TRUE(store->sync("h").is_ok());
  EXPECT_TRUE(b.objects("h/packs/").empty());
}

TEST(S3StoreNetTest, TwoGatewaysTakePushesAtOnce) {
  FERRY_REQUIRE_CEPH(ceph);
  Bucket b(*ceph);
  auto g1 = b.open(1), g2 = b.open(2);
  const auto shared = chunks(10, 8);  // both hosts' checkpoints hold these
  const auto own1 = chunks(10, 9), own2 = chunks(10, 10);
  Status s1, s2;
  auto push = [&](ChunkStore& g, const std::vector<TestChunk>& own, const std::string& name, Status& out) {
    std::vector<const TestChunk*> all = ptrs(shared);
    for (const TestChunk& c : own) all.push_back(&c);
    for (const TestChunk* c : all) {
      auto put = g.put("h", c->frame);
      if (!put) {
        out = put.status();
        return;
      }
    }
    out = g.commit_snapshot("h", name, manifest_for(all, wall_ns()));
  };
  std::thread t([&] { push(*g1, own1, "from-1", s1); });
  push(*g2, own2, "from-2", s2);
  t.join();
  ASSERT_TRUE(s1.is_ok()) << s1.to_string();
  ASSERT_TRUE(s2.is_ok()) << s2.to_string();
  // Each gateway serves what the other stored a moment ago...
  for (const TestChunk& c : own2) {
    auto f = g1->get("h", c.info.id);
    ASSERT_TRUE(f.is_ok()) << f.status().to_string();
    EXPECT_EQ(*f, c.frame);
  }
  // ...and so does a gateway started afterwards, chunk for chunk.
  auto fresh = b.open(2);
  ASSERT_EQ(fresh->list("h").value().size(), 2u);
  for (const auto* group : {&shared, &own1, &own2}) {
    for (const TestChunk& c : *group) {
      auto f = fresh->get("h", c.info.id);
      ASSERT_TRUE(f.is_ok()) << f.status().to_string();
      EXPECT_EQ(*f, c.frame);
    }
  }
  auto report = fresh->scrub("h");
  ASSERT_TRUE(report.is_ok());
  EXPECT_TRUE(report->clean());
  EXPECT_EQ(report->snapshots_checked, 2u);
}

TEST(S3StoreNetTest, DamageInTheBucketIsFoundByReadsAndScrub) {
  FERRY_REQUIRE_CEPH(ceph);
  Bucket b(*ceph);
  const auto cs = chunks(4, 11);
  {
    auto store = b.open();
    put_all(*store, "h", cs);
    ASSERT_TRUE(store->commit_snapshot("h", "s", manifest_for(ptrs(cs), wall_ns())).is_ok());
  }
  const auto packs = b.objects("h/packs/");
  ASSERT_EQ(packs.size(), 1u);
  auto bytes = b.client->get(b.name, packs[0].key).value();
  // A byte in the middle of the second record's frame.
  auto check = check_s3_pack(bytes, "pack");
  ASSERT_TRUE(check.is_ok());
  const S3PackEntry victim = check->good[1];
  bytes[victim.offset + 200] ^= std::byte{0x40};
  ASSERT_TRUE(b.client->put(b.name, packs[0].key, bytes).is_ok());
  auto store = b.open();
  auto got = store->get("h", victim.id);
  EXPECT_EQ(got.status().code(), Code::kCorruption) << got.status().to_string();
  for (const TestChunk& c : cs) {
    if (c.info.id != victim.id) {
      EXPECT_TRUE(store->get("h", c.info.id).is_ok());
    }
  }
  auto report = store->scrub("h");
  ASSERT_TRUE(report.is_ok()) << report.status().to_string();
  ASSERT_EQ(report->bad_chunks.size(), 1u);
  EXPECT_EQ(report->bad_chunks[0].id, victim.id);
  EXPECT_EQ(report->bad_chunks[0].snapshots, std::vector<std::string>{"s"});
  EXPECT_NE(report->bad_chunks[0].where.find(packs[0].key), std::string::npos);
  // It left the index: the next push sends it again.
  EXPECT_FALSE(store->have("h", std::span(&victim.id, 1)).value()[0]);
}

TEST(S3StoreNetTest, GcDeletesOnlyPacksNoSnapshotNames) {
  FERRY_REQUIRE_CEPH(ceph);
  Bucket b(*ceph);
  StoreOptions options;
  options.gc_grace_seconds = 0;
  options.gc_settle_ms = kS3GcMinSettleMs;
  auto store = b.open(1, options);
  const auto old = chunks(4, 12), kept = chunks(4, 13);
  put_all(*store, "h", old);
  ASSERT_TRUE(store->commit_snapshot("h", "old", manifest_for(ptrs(old), wall_ns())).is_ok());
  put_all(*store, "h", kept);
  ASSERT_TRUE(store->commit_snapshot("h", "kept", manifest_for(ptrs(kept), wall_ns())).is_ok());
  ASSERT_EQ(b.objects("h/packs/").size(), 2u);
  ASSERT_TRUE(store->remove_snapshot("h", "old", Actor::kOperator).is_ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));  // S3 times have 1 s resolution
  auto report = store->gc("h", Actor::kOperator);
  ASSERT_TRUE(report.is_ok()) << report.status().to_string();
  EXPECT_EQ(report->packs_deleted, 1u);
  EXPECT_EQ(report->chunks_removed, old.size());
  EXPECT_EQ(b.objects("h/packs/").size(), 1u);
  EXPECT_EQ(b.objects("h/index/").size(), 1u);
  for (const TestChunk& c : kept) EXPECT_TRUE(store->get("h", c.info.id).is_ok());
  EXPECT_EQ(store->get("h", old[0].info.id).status().code(), Code::kNotFound);
  EXPECT_TRUE(store->scrub("h").value().clean());
}

// A radosgw killed -9 in the middle of a push: the uploads in flight fail
// over to the other gateway, nothing is committed partially, and the
// snapshot is whole.
TEST(S3StoreNetTest, AGatewayKilledMidPushTheStoreFinishesThroughTheOther) {
  FERRY_REQUIRE_CEPH(ceph);
  const testing::OwnGateway victim = testing::add_gateway(*ceph);
  ASSERT_FALSE(victim.url.empty()) << victim.error;
  Bucket b(*ceph);
  S3Config cfg = ceph_s3_config(*ceph);
  cfg.endpoints = {victim.url, ceph->endpoint2};
  StoreOptions options;
  options.object_pack_target_bytes = 1 << 20;
  options.log = [](std::string_view) {};
  auto store = open_s3_store(b.url(), cfg, options);
  ASSERT_TRUE(store.is_ok()) << store.status().to_string();
  const auto cs = chunks(48, 14, 128u << 10);  // about 6 MiB: six packs or so
  std::atomic<int> done{0};
  std::atomic<bool> killed{false};
  std::thread killer([&] {
    while (done.load() < 20) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    killed = testing::kill_gateway(*ceph, victim.n);
  });
  for (const TestChunk& c : cs) {
    auto put = (*store)->put("h", c.frame);
    ASSERT_TRUE(put.is_ok()) << put.status().to_string();
    ++done;
  }
  killer.join();
  ASSERT_TRUE(killed.load());
  Status st = (*store)->commit_snapshot("h", "s", manifest_for(ptrs(cs), wall_ns()));
  ASSERT_TRUE(st.is_ok()) << st.to_string();
  auto other = b.open(2);
  for (const TestChunk& c : cs) {
    auto f = other->get("h", c.info.id);
    ASSERT_TRUE(f.is_ok()) << f.status().to_string();
    EXPECT_EQ(*f, c.frame);
  }
  EXPECT_TRUE(other->scrub("h").value().clean());
}

// The bucket unreachable at a sync: the sync fails (nothing is acknowledged),
// the chunks stay in memory, and the next sync stores them.
TEST(S3StoreNetTest, AFailedUploadFailsItsSyncAndTheNextSyncStoresTheChunks) {
  FERRY_REQUIRE_CEPH(ceph);
  Bucket b(*ceph);
  // A relay on one port, restarted (which cuts every connection the client
  // keeps) with faults and then without.
  testing::LinkOptions link_options;
  link_options.target = ceph->endpoint1.substr(std::string("http://").size());
  auto link = std::make_unique<testing::LinkSimulator>(link_options);
  ASSERT_TRUE(link->start().is_ok());
  link_options.listen = link->address();
  auto restart = [&](const testing::LinkFaults& faults) {
    link.reset();
    link_options.faults = faults;
    link = std::make_unique<testing::LinkSimulator>(link_options);
    return link->start();
  };
  S3Config cfg = ceph_s3_config(*ceph);
  cfg.endpoints = {"http://" + link_options.listen};
  cfg.max_attempts = 2;
  cfg.stall_timeout_ms = 2000;  // a connection the restart left hanging is cut soon
  StoreOptions options;
  options.log = [](std::string_view) {};
  auto store = open_s3_store(b.url(), cfg, options);
  ASSERT_TRUE(store.is_ok()) << store.status().to_string();
  const auto cs = chunks(6, 15);
  std::vector<Digest> ids;
  for (const TestChunk& c : cs) ids.push_back(c.info.id);
  ASSERT_TRUE((*store)->have("h", ids).is_ok());  // the namespace is open
  put_all(**store, "h", cs);
  // Every connection is reset after its first bytes.
  testing::LinkFaults faults;
  faults.reset_probability = 1;
  faults.fault_after_max_bytes = 2048;
  ASSERT_TRUE(restart(faults).is_ok());
  Status st = (*store)->sync("h");
  ASSERT_FALSE(st.is_ok());
  EXPECT_TRUE(b.objects("h/packs/").empty());
  ASSERT_TRUE(restart({}).is_ok());
  EXPECT_FALSE((*store)->have("h", ids).value()[0]) << "not durable after a failed sync";
  ASSERT_TRUE((*store)->sync("h").is_ok());
  EXPECT_EQ((*store)->have("h", ids).value(), std::vector<bool>(cs.size(), true));
  ASSERT_TRUE((*store)->commit_snapshot("h", "s", manifest_for(ptrs(cs), wall_ns())).is_ok());
  auto fresh = b.open(2);
  for (const TestChunk& c : cs) EXPECT_EQ(fresh->get("h", c.info.id).value(), c.frame);
}

// Chunks read in the order they were pushed share ranged GETs: one GET of
// up to kS3ReadAheadBytes serves the chunks that follow in the pack. The
// pack's records fall into the same windows whoever asks first, so 48
// threads asking at once make no more GETs than one thread reading in
// order, round after round. Counted by a relay in front of the gateway.
TEST(S3StoreNetTest, ReadsInPushOrderShareRangedGets) {
  FERRY_REQUIRE_CEPH(ceph);
  Bucket b(*ceph);
  const auto cs = chunks(48, 16, 1u << 20);  // one pack
  {
    StoreOptions options;
    options.object_pack_target_bytes = 64u << 20;
    auto store = b.open(1, options);
    put_all(*store, "h", cs);
    ASSERT_TRUE(store->commit_snapshot("h", "s", manifest_for(ptrs(cs), wall_ns())).is_ok());
  }
  const auto packs = b.objects("h/packs/");
  ASSERT_EQ(packs.size(), 1u);
  // Windows start and end at records, so reading in order takes at most
  // one more than the pack's whole windows.
  const std::uint64_t in_order = packs[0].size / kS3ReadAheadBytes + 1;
  ASSERT_GE(in_order, 2u);
  testing::S3FaultRelay relay(ceph->endpoint1.substr(std::string("http://").size()), {});
  ASSERT_TRUE(relay.start().is_ok());
  S3Config cfg = ceph_s3_config(*ceph);
  cfg.endpoints = {relay.endpoint()};
  StoreOptions options;
  options.log = [](std::string_view) {};
  // Three parallel rounds, each from a fresh store: a start at a record
  // instead of a fixed window shows up as an extra GET in most of them.
  for (const bool parallel : {false, true, true, true}) {
    auto store = open_s3_store(b.url(), cfg, options);
    ASSERT_TRUE(store.is_ok()) << store.status().to_string();
    std::vector<Digest> ids;
    for (const TestChunk& c : cs) ids.push_back(c.info.id);
    ASSERT_TRUE((*store)->have("h", ids).is_ok());  // the namespace is open
    const std::uint64_t before = relay.counters().requests;
    std::vector<std::thread> threads;
    std::atomic<int> good{0};
    for (const TestChunk& c : cs) {
      auto get = [&] {
        auto f = (*store)->get("h", c.info.id);
        if (f.is_ok() && *f == c.frame) ++good;
      };
      if (parallel) {
        threads.emplace_back(get);
      } else {
        get();
      }
    }
    for (std::thread& t : threads) t.join();
    EXPECT_EQ(good.load(), static_cast<int>(cs.size()));
    const std::uint64_t gets = relay.counters().requests - before;
    EXPECT_LE(gets, in_order) << (parallel ? "parallel" : "in order");
    if (!parallel) {
      // get_into: the same frames, each into the caller's one buffer (a
      // restore's slot), not into fresh memory per chunk.
      std::vector<std::byte> buf;
      buf.reserve(2u << 20);
      const std::byte* const kept = buf.data();
      std::size_t same = 0;
      for (const TestChunk& c : cs) {
        ASSERT_TRUE((*store)->get_into("h", c.info.id, buf).is_ok());
        if (buf == c.frame && buf.data() == kept) ++same;
      }
      EXPECT_EQ(same, cs.size());
      // lend: two chunks pushed one after the other are lent where they lie
      // in one read window, a record's framing apart; no copy is made.
      LentBytes a, b;
      ASSERT_TRUE((*store)->lend("h", cs[0].info.id, a).is_ok());
      ASSERT_TRUE((*store)->lend("h", cs[1].info.id, b).is_ok());
      EXPECT_TRUE(std::equal(a.bytes.begin(), a.bytes.end(), cs[0].frame.begin(), cs[0].frame.end()));
      EXPECT_TRUE(std::equal(b.bytes.begin(), b.bytes.end(), cs[1].frame.begin(), cs[1].frame.end()));
      EXPECT_EQ(b.bytes.data(), a.bytes.data() + a.bytes.size() + kRecordTrailerBytes + kRecordHeaderBytes);
    }
  }
}

// StoreOptions::object_uploads (the agent's --streams) bounds the packs
// uploading at once while puts go on: one at a time, or several. The relay
// counts the PUTs it forwards at one moment; a link of 100 ms round trip
// behind it makes each upload outlast the puts that fill the next pack.
TEST(S3StoreNetTest, PacksUploadingAtOnceFollowTheOption) {
  FERRY_REQUIRE_CEPH(ceph);
  Bucket b(*ceph);
  const auto cs = chunks(64, 9, 128u << 10);  // about 7 MiB of frames: 1 MiB packs
  testing::LinkOptions far;
  far.target = ceph->endpoint1.substr(std::string("http://").size());
  far.delay_ms = 50;
  testing::LinkSimulator link(far);
  ASSERT_TRUE(link.start().is_ok());
  for (std::size_t uploads : {std::size_t{1}, std::size_t{4}}) {
    SCOPED_TRACE("object_uploads " + std::to_string(uploads));
    testing::S3FaultRelay relay(link.address(), {});
    ASSERT_TRUE(relay.start().is_ok());
    StoreOptions o;
    o.object_uploads = uploads;
    auto store = b.open(1, o, relay.endpoint());
    ASSERT_NE(store, nullptr);
    const std::string ns = "uploads-" + std::to_string(uploads);
    put_all(*store, ns, cs);
    ASSERT_TRUE(store->sync(ns).is_ok());
    const std::uint64_t most = relay.counters().max_puts_in_flight;
    // A sync uploads the open pack itself, beside the background uploads.
    EXPECT_LE(most, uploads + 1);
    if (uploads > 1) {
      EXPECT_GE(most, uploads) << "puts outran the uploads";
    }
  }
  StoreOptions bad;
  bad.object_uploads = 0;
  S3Config cfg = ceph_s3_config(*ceph);
  EXPECT_EQ(open_s3_store(b.url(), cfg, bad).status().code(), Code::kInvalidArgument);
  bad.object_uploads = 1;
  bad.object_upload_bytes_per_s = 1000;
  EXPECT_EQ(open_s3_store(b.url(), cfg, bad).status().code(), Code::kInvalidArgument);
}

TEST(S3StoreNetTest, AMissingBucketOrWrongKeysAreRefusedAtOpen) {
  FERRY_REQUIRE_CEPH(ceph);
  S3Config cfg = ceph_s3_config(*ceph);
  auto missing = open_s3_store("s3://" + unique_bucket() + "/x", cfg);
  EXPECT_EQ(missing.status().code(), Code::kNotFound) << missing.status().to_string();
  Bucket b(*ceph);
  cfg.credentials.secret_access_key = "wrong";
  auto wrong = open_s3_store(b.url(), cfg);
  EXPECT_EQ(wrong.status().code(), Code::kPermissionDenied) << wrong.status().to_string();
  EXPECT_EQ(open_s3_store("s3://Bad_Bucket/x", ceph_s3_config(*ceph)).status().code(),
            Code::kInvalidArgument);
  EXPECT_EQ(open_s3_store("s3://bucket/a/../b", ceph_s3_config(*ceph)).status().code(),
            Code::kInvalidArgument);
}

}  // namespace
}  // namespace ferry
