// s3_spool_net_test.cc: a gateway's spool (store/s3_spool.h, docs/FORMAT.md
// 9.3) against a real Ceph cluster (scripts/ceph-dev.sh): syncs as frequent
// as a receiver's group commits make the chunks durable on the gateway's
// disk and leave the bucket with packs of the target size, not one small
// pack per sync; a commit sends the rest; chunks a killed gateway spooled
// reach the bucket when the namespace opens again (a torn tail dropped);
// two gateways cannot share one spool directory.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>

#include "base/clock.h"
#include "base/posix_file.h"
#include "store/s3_store.h"
#include "tests/store/chunk_store_test_util.h"
#include "tests/store/s3_test_bucket.h"
#include "tests/testing/ceph_dev.h"
#include "tests/testing/testing.h"

namespace ferry {
namespace {

using testing::make_chunk;
using testing::manifest_for;
using testing::TestChunk;

using Bucket = testing::S3TestBucket;

constexpr std::uint64_t kPackTargetBytes = 1u << 20;

std::vector<TestChunk> chunks(int n, std::uint64_t seed) {
  std::vector<TestChunk> out;
  for (int i = 0; i < n; ++i)
    out.push_back(make_chunk(seed * 1000 + static_cast<std::uint64_t>(i), 128u << 10));
  return out;
}

std::vector<const TestChunk*> ptrs(const std::vector<TestChunk>& cs) {
  std::vector<const TestChunk*> out;
  for (const TestChunk& c : cs) out.push_back(&c);
  return out;
}

std::vector<Digest> ids_of(const std::vector<TestChunk>& cs) {
  std::vector<Digest> out;
  for (const TestChunk& c : cs) out.push_back(c.info.id);
  return out;
}

StoreOptions spooled(const std::filesystem::path& dir) {
  StoreOptions o;
  o.object_pack_target_bytes = kPackTargetBytes;
  o.object_spool_dir = dir;
  return o;
}

// Puts `cs` and syncs after every `per_sync` of them, as a receiver's group
// commits do.
void put_with_group_commits(ChunkStore& s, const std::string& ns, const std::vector<TestChunk>& cs,
                            std::size_t per_sync) {
  for (std::size_t i = 0; i < cs.size(); ++i) {
    auto put = s.put(ns, cs[i].frame);
    ASSERT_TRUE(put.is_ok()) << put.status().to_string();
    if ((i + 1) % per_sync == 0 || i + 1 == cs.size()) {
      Status st = s.sync(ns);
      ASSERT_TRUE(st.is_ok()) << st.to_string();
    }
  }
}

std::filesystem::path spool_dir_of(const Bucket& b, const std::filesystem::path& spool,
                                   const std::string& ns) {
  return spool / (b.name + "+dr+" + ns);
}

TEST(S3SpoolNetTest, FrequentSyncsLeaveFullPacksInTheBucket) {
  FERRY_REQUIRE_CEPH(ceph);
  Bucket b(*ceph);
  testing::TempDir tmp;
  const auto cs = chunks(48, 1);  // 48 frames of about 100 KiB: 4-5 packs of 1 MiB
  std::uint64_t frame_bytes = 0;
  for (const TestChunk& c : cs) frame_bytes += c.frame.size();

  // Without a spool, each sync seals a pack: one per group commit.
  {
    auto plain = b.open(1, StoreOptions{});
    ASSERT_NE(plain, nullptr);
    put_with_group_commits(*plain, "plain", cs, 4);
    EXPECT_EQ(b.objects("plain/packs/").size(), cs.size() / 4);
  }

  auto store = b.open(1, spooled(tmp.path()));
  ASSERT_NE(store, nullptr);
  put_with_group_commits(*store, "h", cs, 4);
  // Every sync returned: what is in the bucket is full packs only, and the
  // rest is durable in the spool.
  const auto packs = b.objects("h/packs/");
  EXPECT_EQ(packs.size(), frame_bytes / kPackTargetBytes);
  for (const S3Object& o : packs) EXPECT_GE(o.size, kPackTargetBytes) << o.key;
  std::uint64_t spool_bytes = 0;
  for (const auto& e : std::filesystem::directory_iterator(spool_dir_of(b, tmp.path(), "h"))) {
    if (e.path().extension() == ".spool") spool_bytes += e.file_size();
  }
  EXPECT_GT(spool_bytes, 0u) << "the open pack's chunks are in the spool";
  // have() answers for the bucket: spooled chunks are not there yet.
  auto have = store->have("h", ids_of(cs));
  ASSERT_TRUE(have.is_ok());
  EXPECT_FALSE(have->back());

  // A commit sends the rest, so a snapshot names only chunks in the bucket.
  Status st = store->commit_snapshot("h", "step-1", manifest_for(ptrs(cs), wall_ns()));
  ASSERT_TRUE(st.is_ok()) << st.to_string();
  const auto after = b.objects("h/packs/");
  EXPECT_EQ(after.size(), packs.size() + 1) << "one partial pack at the commit";
  EXPECT_EQ(b.objects("h/index/").size(), after.size());
  for (const auto& e : std::filesystem::directory_iterator(spool_dir_of(b, tmp.path(), "h"))) {
    EXPECT_NE(e.path().extension(), ".spool") << e.path() << " outlived the upload of its chunks";
  }
  auto other = b.open(2);
  ASSERT_NE(other, nullptr);
  for (const TestChunk& c : cs) {
    auto frame = other->get("h", c.info.id);
    ASSERT_TRUE(frame.is_ok()) << frame.status().to_string();
    EXPECT_EQ(*frame, c.frame);
  }
}

TEST(S3SpoolNetTest, ChunksAKilledGatewaySpooledReachTheBucketAtTheNextOpen) {
  FERRY_REQUIRE_CEPH(ceph);
  Bucket b(*ceph);
  testing::TempDir tmp;
  const auto cs = chunks(6, 2);  // less than a pack: all of it stays in the spool
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // The gateway: acknowledges (syncs) and dies without closing anything.
    auto store = b.open(1, spooled(tmp.path()));
    if (store == nullptr) ::_exit(2);
    for (const TestChunk& c : cs) {
      if (!store->put("h", c.frame)) ::_exit(3);
    }
    if (!store->sync("h")) ::_exit(4);
    ::kill(::getpid(), SIGKILL);
    ::_exit(5);
  }
  int wstatus = 0;
  ASSERT_EQ(::waitpid(child, &wstatus, 0), child);
  ASSERT_TRUE(WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGKILL) << "gateway exit status " << wstatus;
  EXPECT_TRUE(b.objects("h/packs/").empty()) << "the synced chunks waited in the spool";

  // A torn tail (a sync cut short by the kill) is dropped, not uploaded.
  const auto dir = spool_dir_of(b, tmp.path(), "h");
  const auto file = dir / "1.spool";
  ASSERT_TRUE(std::filesystem::exists(file));
  {
    auto fd = open_fd(file, O_WRONLY | O_APPEND);
    ASSERT_TRUE(fd.is_ok());
    const std::vector<std::byte> torn(100, std::byte{0x46});
    ASSERT_EQ(::write(fd->get(), torn.data(), torn.size()), 100);
  }
  std::vector<std::string> log;
  StoreOptions o = spooled(tmp.path());
  o.log = [&](std::string_view line) { log.emplace_back(line); };
  auto store = b.open(1, o);
  ASSERT_NE(store, nullptr);
  auto have = store->have("h", ids_of(cs));  // opens the namespace, which uploads the spool
  ASSERT_TRUE(have.is_ok()) << have.status().to_string();
  EXPECT_EQ(*have, std::vector<bool>(cs.size(), true));
  EXPECT_EQ(b.objects("h/packs/").size(), 1u);
  EXPECT_FALSE(std::filesystem::exists(file));
  std::string all;
  for (const std::string& l : log) all += l + "\n";
  EXPECT_NE(all.find("torn tail"), std::string::npos) << all;
  EXPECT_NE(all.find("uploaded 6 chunks"), std::string::npos) << all;
  Status st = store->commit_snapshot("h", "step-1", manifest_for(ptrs(cs), wall_ns()));
  EXPECT_TRUE(st.is_ok()) << st.to_string();
}

TEST(S3SpoolNetTest, TwoGatewaysCannotShareASpool) {
  FERRY_REQUIRE_CEPH(ceph);
  Bucket b(*ceph);
  testing::TempDir tmp;
  const auto cs = chunks(1, 3);
  auto first = b.open(1, spooled(tmp.path()));
  auto second = b.open(2, spooled(tmp.path()));
  ASSERT_NE(first, nullptr);
  ASSERT_NE(second, nullptr);
  ASSERT_TRUE(first->put("h", cs[0].frame).is_ok());
  auto put = second->put("h", cs[0].frame);
  ASSERT_FALSE(put.is_ok());
  EXPECT_EQ(put.status().code(), Code::kUnavailable);
  EXPECT_NE(put.status().message().find(spool_dir_of(b, tmp.path(), "h").string()), std::string::npos)
      << put.status().to_string();
  // Another namespace has a spool directory of its own.
  EXPECT_TRUE(second->put("other", cs[0].frame).is_ok());
}

}  // namespace
}  // namespace ferry
