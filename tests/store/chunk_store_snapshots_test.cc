// chunk_store_snapshots_test.cc: the local chunk store's snapshots against
// hostile or careless hosts: quotas that count manifests, the snapshot
// limit, reserved names, created times far ahead, retention by the
// receiver's commit time, and commit records old, new and damaged.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <thread>

#include "base/clock.h"
#include "codec/chunk_codec.h"
#include "codec/delta_codec.h"
#include "codec/limits.h"
#include "store/local_store.h"
#include "store/pack_file.h"
#include "store/store_index.h"
#include "store/store_limits.h"
#include "tests/store/chunk_store_test_util.h"
#include "tests/store/local_store_test_util.h"
#include "tests/testing/testing.h"

namespace ferry {
namespace {

using namespace store_test;
using testing::manifest_for;
using testing::TempDir;

TEST(ChunkStore, QuotaRefusesBeforeWriting) {
  TempDir dir;
  Logged logged;
  StoreOptions o = logged.options();
  auto chunks = make_chunks(8, testing::test_seed());
  o.quota_bytes = kPackHeaderBytes + 3 * record_bytes(chunks[0].frame.size()) + 100;
  auto s = open_store(dir.path(), o);
  std::size_t stored = 0;
  Status refused;
  for (const auto& c : chunks) {
    auto r = s->put("host-a", c.frame);
    if (!r.is_ok()) {
      refused = r.status();
      break;
    }
    ++stored;
  }
  ASSERT_FALSE(refused.is_ok());
  EXPECT_EQ(refused.code(), Code::kResourceExhausted);
  EXPECT_NE(refused.message().find("host-a"), std::string::npos) << refused.message();
  EXPECT_NE(refused.message().find("quota"), std::string::npos);
  EXPECT_GE(stored, 2u);
  EXPECT_LE(s->usage("host-a")->stored_bytes, o.quota_bytes);
  EXPECT_TRUE(s->put("host-a", chunks[0].frame).is_ok()) << "a chunk already held costs nothing";
  EXPECT_TRUE(s->put("host-b", chunks[7].frame).is_ok()) << "quotas are per namespace";
}

// The bytes of every regular file under `dir` but the advisory index: what a
// namespace really takes on disk.
std::uint64_t bytes_on_disk(const fs::path& dir) {
  std::uint64_t total = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (e.is_regular_file() && e.path().filename() != "index") total += e.file_size();
  }
  return total;
}

TEST(ChunkStore, QuotaCountsSnapshotFiles) {
  TempDir dir;
  Logged logged;
  StoreOptions o = logged.options();
  auto chunks = make_chunks(2, testing::test_seed());
  o.quota_bytes = kPackHeaderBytes + 2 * record_bytes(chunks[0].frame.size()) + (200u << 10);
  auto s = open_store(dir.path(), o);
  put_all(*s, "host-a", chunks);
  ASSERT_TRUE(s->commit_snapshot("host-a", "real", manifest_for({&chunks[0], &chunks[1]}, kT0)).is_ok());
  // Manifests naming no chunks, 64 KiB each: only what fits the quota.
  std::size_t committed = 0;
  Status refused;
  for (int i = 0; i < 12 && refused.is_ok(); ++i) {
    refused = s->commit_snapshot("host-a", "junk-" + std::to_string(i),
                                 testing::chunkless_manifest(16, 4096, kT0 + i));
    if (refused.is_ok()) ++committed;
  }
  EXPECT_EQ(refused.code(), Code::kResourceExhausted) << refused.to_string();
  EXPECT_NE(refused.message().find("quota"), std::string::npos) << refused.message();
  EXPECT_NE(refused.message().find("junk-"), std::string::npos) << refused.message();
  EXPECT_GE(committed, 2u);
  EXPECT_LE(committed, 3u);
  auto usage = s->usage("host-a");
  ASSERT_TRUE(usage.is_ok());
  EXPECT_LE(usage->stored_bytes, o.quota_bytes);
  EXPECT_EQ(usage->snapshots, committed + 1);
  EXPECT_GT(usage->snapshot_bytes, committed * (64u << 10));
  EXPECT_EQ(usage->stored_bytes, bytes_on_disk(dir.path() / "host-a"));
  EXPECT_LE(bytes_on_disk(dir.path() / "host-a"), o.quota_bytes);
  // Manifests count against chunks too, and a retried commit costs nothing.
  EXPECT_TRUE(s->commit_snapshot("host-a", "real", manifest_for({&chunks[0], &chunks[1]}, kT0)).is_ok());
  // Removing a snapshot gives its bytes back, and a reopened store counts the
  // same.
  ASSERT_TRUE(s->remove_snapshot("host-a", "junk-0", Actor::kOperator).is_ok());
  EXPECT_TRUE(s->commit_snapshot("host-a", "junk-again", testing::chunkless_manifest(16, 4096, kT0)).is_ok());
  const auto before = *s->usage("host-a");
  s.reset();
  s = open_store(dir.path(), o);
  const auto after = *s->usage("host-a");
  EXPECT_EQ(after.stored_bytes, before.stored_bytes);
  EXPECT_EQ(after.snapshot_bytes, before.snapshot_bytes);
  EXPECT_EQ(after.snapshots, before.snapshots);
  EXPECT_EQ(s->commit_snapshot("host-a", "junk-more", testing::chunkless_manifest(16, 4096, kT0)).code(),
            Code::kResourceExhausted);
}

TEST(ChunkStore, SnapshotCountIsLimited) {
  TempDir dir;
  Logged logged;
  StoreOptions o = logged.options();
  o.max_snapshots = 3;
  auto s = open_store(dir.path(), o);
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(
        s->commit_snapshot("host-a", "s" + std::to_string(i), testing::chunkless_manifest(1, 20, kT0 + i))
            .is_ok());
  }
  Status st = s->commit_snapshot("host-a", "s3", testing::chunkless_manifest(1, 20, kT0));
  EXPECT_EQ(st.code(), Code::kResourceExhausted) << st.to_string();
  EXPECT_NE(st.message().find("limit"), std::string::npos) << st.message();
  EXPECT_TRUE(s->commit_snapshot("host-a", "s2", testing::chunkless_manifest(1, 20, kT0 + 2)).is_ok())
      << "a retried commit is not a new snapshot";
  EXPECT_TRUE(s->commit_snapshot("host-b", "s3", testing::chunkless_manifest(1, 20, kT0)).is_ok())
      << "the limit is per namespace";
  s.reset();
  s = open_store(dir.path(), o);
  EXPECT_EQ(s->commit_snapshot("host-a", "s3", testing::chunkless_manifest(1, 20, kT0)).code(),
            Code::kResourceExhausted);
  ASSERT_TRUE(s->remove_snapshot("host-a", "s0", Actor::kOperator).is_ok());
  EXPECT_TRUE(s->commit_snapshot("host-a", "s3", testing::chunkless_manifest(1, 20, kT0)).is_ok());
  EXPECT_EQ(s->list("host-a")->size(), 3u);
}

TEST(ChunkStore, TheTemporaryMarkerIsNoSnapshotName) {
  TempDir dir;
  Logged logged;
  StoreOptions o = logged.options();
  o.append_only = true;
  {
    auto s = open_store(dir.path(), o);
    for (const char* name : {"x.ferry-tmp-1", ".ferry-tmp-", "a.manifest.ferry-tmp-99-0"}) {
      Status st = s->commit_snapshot("host-a", name, testing::chunkless_manifest(1, 20, kT0));
      EXPECT_EQ(st.code(), Code::kInvalidArgument) << name << ": " << st.to_string();
      EXPECT_NE(st.message().find("reserved"), std::string::npos) << st.message();
    }
    // Names close to it are ordinary names, and stay.
    ASSERT_TRUE(s->commit_snapshot("host-a", "x.ferry-tmp", testing::chunkless_manifest(1, 20, kT0)).is_ok());
    ASSERT_TRUE(s->commit_snapshot("host-a", "ferry-tmp-1", testing::chunkless_manifest(1, 20, kT0)).is_ok());
  }
  auto s = open_store(dir.path(), o);  // opening removes interrupted temporaries
  auto list = s->list("host-a");
  ASSERT_TRUE(list.is_ok());
  ASSERT_EQ(list->size(), 2u);
  EXPECT_FALSE(logged.saw("removed interrupted temporary file"));
}

TEST(ChunkStore, CreatedTimesFarAheadAreRefused) {
  TempDir dir;
  Logged logged;
  auto s = open_store(dir.path(), logged.options());
  const std::int64_t now = wall_ns();
  constexpr std::int64_t k2096Ns = 3'976'300'800LL * kSecondNs;  // 2096-01-01
  for (std::int64_t created : {k2096Ns, now + (kMaxCreatedAheadSeconds + 600) * kSecondNs,
                               std::numeric_limits<std::int64_t>::max()}) {
    Status st = s->commit_snapshot("host-a", "future", testing::chunkless_manifest(1, 20, created));
    EXPECT_EQ(st.code(), Code::kInvalidArgument) << created << ": " << st.to_string();
    EXPECT_NE(st.message().find("ahead of the receiver's clock"), std::string::npos) << st.message();
  }
  EXPECT_TRUE(s->list("host-a")->empty());
  // Clock skew within the tolerance, and any time in the past, are accepted.
  EXPECT_TRUE(
      s->commit_snapshot("host-a", "skewed", testing::chunkless_manifest(1, 20, now + kHourNs)).is_ok());
  EXPECT_TRUE(s->commit_snapshot("host-a", "old", testing::chunkless_manifest(1, 20, 0)).is_ok());
}

TEST(ChunkStore, RetentionOrdersByCommitTimeNotTheHostsClock) {
  TempDir dir;
  Logged logged;
  auto s = open_store(dir.path(), logged.options());
  auto chunks = make_chunks(3, testing::test_seed());
  put_all(*s, "host-a", chunks);
  // Snapshots of the same job (retention counts each job on its own), dated
  // 12 hours ahead (within the tolerance) but committed first...
  const std::int64_t ahead = wall_ns() + 12 * kHourNs;
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(s->commit_snapshot("host-a", "fake-" + std::to_string(i),
                                   testing::chunkless_manifest(1, 20, ahead, "job"))
                    .is_ok());
  }
  // ...then the real ones, dated in the past.
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(s->commit_snapshot("host-a", "real-" + std::to_string(i), manifest_for({&chunks[i]}, kT0 + i))
                    .is_ok());
  }
  auto list = s->list("host-a");
  ASSERT_TRUE(list.is_ok());
  for (const SnapshotInfo& info : *list) {
    EXPECT_LE(info.committed_ns, wall_ns()) << info.name;
    EXPECT_GT(info.committed_ns, wall_ns() - kHourNs) << info.name;
  }
  auto r = s->prune("host-a", {.keep_last = 3}, wall_ns(), Actor::kOperator);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->removed, (std::vector<std::string>{"fake-0", "fake-1", "fake-2"}));
  EXPECT_EQ(r->kept, (std::vector<std::string>{"real-0", "real-1", "real-2"}));
  expect_readable(*s, "host-a", chunks);
}

TEST(ChunkStore, KeepWithinOfAnyLengthNeverOverflows) {
  TempDir dir;
  Logged logged;
  auto s = open_store(dir.path(), logged.options());
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(s->commit_snapshot("host-a", "s" + std::to_string(i), testing::chunkless_manifest(1, 20, kT0))
                    .is_ok());
  }
  // 30500 weeks in seconds is fine; in nanoseconds it passes int64.
  for (std::int64_t within : {std::int64_t{30500} * 7 * 86400, std::numeric_limits<std::int64_t>::max()}) {
    auto r = s->prune("host-a", {.keep_last = 1, .keep_within_seconds = within}, wall_ns(), Actor::kOperator);
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();
    EXPECT_TRUE(r->removed.empty()) << within << " s removed " << r->removed.size();
    EXPECT_EQ(r->kept.size(), 3u);
  }
}

TEST(ChunkStore, SnapshotFilesWrittenBeforeCommitRecordsStillRead) {
  TempDir dir;
  Logged logged;
  auto chunks = make_chunks(2, testing::test_seed());
  const auto old_manifest = manifest_for({&chunks[0]}, kT0);
  {
    auto s = open_store(dir.path(), logged.options());
    put_all(*s, "host-a", chunks);
    ASSERT_TRUE(s->commit_snapshot("host-a", "new", manifest_for({&chunks[1]}, kT0)).is_ok());
  }
  // A bare manifest, as stores held before commit records: its mtime stands
  // for its commit time (an hour before "new" was committed).
  const fs::path old_path = dir.path() / "host-a" / "snapshots" / "old.manifest";
  testing::write_file(old_path, old_manifest);
  const auto new_mtime = fs::last_write_time(dir.path() / "host-a" / "snapshots" / "new.manifest");
  fs::last_write_time(old_path, new_mtime - std::chrono::hours(1));
  auto s = open_store(dir.path(), logged.options());
  auto list = s->list("host-a");
  ASSERT_TRUE(list.is_ok());
  ASSERT_EQ(list->size(), 2u);
  const SnapshotInfo& old_info = (*list)[0].name == "old" ? (*list)[0] : (*list)[1];
  const SnapshotInfo& new_info = (*list)[0].name == "old" ? (*list)[1] : (*list)[0];
  EXPECT_EQ(old_info.created_ns, kT0);
  EXPECT_NEAR(static_cast<double>(new_info.committed_ns - old_info.committed_ns), 3600.0 * kSecondNs,
              2.0 * kSecondNs);
  auto back = s->manifest("host-a", "old");
  ASSERT_TRUE(back.is_ok());
  EXPECT_EQ(*back, old_manifest);
  EXPECT_TRUE(s->commit_snapshot("host-a", "old", old_manifest).is_ok()) << "a retried commit is OK";
  auto scrub = s->scrub("host-a");
  ASSERT_TRUE(scrub.is_ok());
  EXPECT_TRUE(scrub->clean());
  auto r = s->prune("host-a", {.keep_last = 1}, wall_ns(), Actor::kOperator);
  ASSERT_TRUE(r.is_ok());
  EXPECT_EQ(r->removed, std::vector<std::string>{"old"});
  ASSERT_TRUE(s->gc("host-a", Actor::kOperator).is_ok());
  EXPECT_FALSE(has(*s, "host-a", chunks[0].info.id));
  EXPECT_TRUE(has(*s, "host-a", chunks[1].info.id));
}

TEST(ChunkStore, ADamagedCommitRecordIsReportedNotTrusted) {
  TempDir dir;
  Logged logged;
  auto s = open_store(dir.path(), logged.options());
  auto chunks = make_chunks(1, testing::test_seed());
  put_all(*s, "host-a", chunks);
  ASSERT_TRUE(s->commit_snapshot("host-a", "s", manifest_for({&chunks[0]}, kT0)).is_ok());
  const fs::path path = dir.path() / "host-a" / "snapshots" / "s.manifest";
  auto bytes = testing::read_file(path);
  bytes[9] ^= std::byte{0x10};  // the commit time
  testing::write_file(path, bytes);
  EXPECT_EQ(s->manifest("host-a", "s").status().code(), Code::kCorruption);
  EXPECT_FALSE(s->gc("host-a", Actor::kOperator).is_ok()) << "gc must not guess what s names";
  auto scrub = s->scrub("host-a");
  ASSERT_TRUE(scrub.is_ok());
  ASSERT_EQ(scrub->broken_snapshots.size(), 1u);
  EXPECT_NE(scrub->broken_snapshots[0].error.find("commit record"), std::string::npos);
}

}  // namespace
}  // namespace ferry
