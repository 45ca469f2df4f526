// restore_net_test.cc: restore from a real Receiver over real mTLS on
// 127.0.0.1: a snapshot pushed by hand comes back byte-identical (many
// files, empty files, nested directories, modes) over one or several
// streams, and across a receiver restart; listing shows job and step;
// another host's snapshot is not found; a damaged stored chunk fails the
// restore naming the chunk and leaves no partly written file.
#include "replication/restore.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>
#include <set>

#include "base/thread_pool.h"
#include "tests/replication/receiver_fixture.h"

namespace ferry::replication {
namespace {

using testing::ReceiverSite;
namespace fs = std::filesystem;

RemoteOptions remote_for(ReceiverSite& site, const std::string& host) {
  RemoteOptions r;
  r.address = site.receiver().address().to_string();
  r.tls.ca_file = site.certs.set.ca_cert;
  r.tls.cert_file = site.certs.set.host_cert(host);
  r.tls.key_file = site.certs.set.host_key(host);
  return r;
}

// Every file of the manifest under `out` equals the one under `src`; returns
// how many were compared.
std::size_t expect_same_files(const Manifest& m, const fs::path& src, const fs::path& out,
                              bool all_present = true) {
  std::size_t compared = 0;
  for (const ManifestFile& f : m.files) {
    if (!fs::exists(out / f.path)) {
      EXPECT_FALSE(all_present) << f.path << " missing";
      continue;
    }
    EXPECT_TRUE(ferry::testing::read_file(out / f.path) == ferry::testing::read_file(src / f.path)) << f.path;
    struct stat st {};
    EXPECT_EQ(::stat((out / f.path).c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, f.mode) << f.path;
    ++compared;
  }
  return compared;
}

class RestoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::make_tree(src_.path(), ferry::testing::test_seed());
    ::chmod((src_.path() / "one").c_str(), 0640);
    tree_ = testing::pack_tree(src_.path(), "gpt-pretrain", 4200);
    auto c = site_.connect("alpha");
    ASSERT_TRUE(c.is_ok()) << c.status().to_string();
    Status st = testing::push_by_hand(**c, *tree_, "step-4200");
    ASSERT_TRUE(st.is_ok()) << st.to_string();
    (void)(*c)->send(Bye{});
  }

  ReceiverSite site_;
  ferry::testing::TempDir src_;
  ferry::testing::TempDir out_;
  std::unique_ptr<testing::PackedTree> tree_;
};

TEST_F(RestoreTest, RoundTripIsByteIdenticalOverOneOrManyStreams) {
  ThreadPool pool(3);
  for (std::size_t streams : {1u, 4u}) {
    RestoreOptions o;
    o.streams = streams;
    o.batch_chunks = 2;  // many batches, so streams interleave
    o.pool = &pool;
    std::uint64_t last_done = 0;
    o.progress = [&](const UnpackProgress& p) { last_done = p.logical_done; };
    const fs::path out = out_.path() / ("s" + std::to_string(streams));
    auto report = restore_snapshot(remote_for(site_, "alpha"), "step-4200", out, o);
    ASSERT_TRUE(report.is_ok()) << report.status().to_string();
    EXPECT_EQ(report->files, tree_->manifest.files.size());
    EXPECT_EQ(report->logical_bytes, tree_->manifest.logical_bytes());
    EXPECT_EQ(last_done, tree_->manifest.logical_bytes());
    EXPECT_GT(report->wire_bytes_in, report->frame_bytes / 2);
    EXPECT_EQ(expect_same_files(tree_->manifest, src_.path(), out), tree_->manifest.files.size());
    EXPECT_EQ(fs::file_size(out / "optim/empty"), 0u);
  }
  // Every chunk was served by the receiver, twice.
  EXPECT_GE(site_.receiver().stats().chunks_served, 2 * tree_->frames.size());
}

TEST_F(RestoreTest, AReceiverRestartMidRestoreIsRidden) {
  ThreadPool pool(1);
  RestoreOptions o;
  o.streams = 2;
  o.batch_chunks = 1;  // a window of two chunks: most are fetched after the restart
  o.pool = &pool;
  bool restarted = false;
  o.progress = [&](const UnpackProgress&) {
    if (restarted) return;
    restarted = true;
    Status st = site_.restart();
    ASSERT_TRUE(st.is_ok()) << st.to_string();
  };
  auto report = restore_snapshot(remote_for(site_, "alpha"), "step-4200", out_.path() / "r", o);
  ASSERT_TRUE(report.is_ok()) << report.status().to_string();
  EXPECT_TRUE(restarted);
  EXPECT_GE(report->reconnects, 1u);
  EXPECT_EQ(expect_same_files(tree_->manifest, src_.path(), out_.path() / "r"), tree_->manifest.files.size());
}

TEST_F(RestoreTest, VerifyOnlyWritesNothing) {
  RestoreOptions o;
  o.verify_only = true;
  auto report = restore_snapshot(remote_for(site_, "alpha"), "step-4200", out_.path() / "none", o);
  ASSERT_TRUE(report.is_ok()) << report.status().to_string();
  EXPECT_FALSE(fs::exists(out_.path() / "none"));
}

TEST_F(RestoreTest, ListShowsTheSnapshotWithJobAndStep) {
  auto list = list_remote(remote_for(site_, "alpha"), true);
  ASSERT_TRUE(list.is_ok()) << list.status().to_string();
  ASSERT_EQ(list->size(), 1u);
  const RemoteSnapshot& s = (*list)[0];
  EXPECT_EQ(s.info.name, "step-4200");
  EXPECT_TRUE(s.have_manifest);
  EXPECT_EQ(s.job, "gpt-pretrain");
  EXPECT_EQ(s.step, 4200u);
  EXPECT_EQ(s.info.created_unix_seconds, 1'700'000'000);
  EXPECT_EQ(s.info.logical_bytes, tree_->manifest.logical_bytes());

  auto other = list_remote(remote_for(site_, "beta"), true);
  ASSERT_TRUE(other.is_ok());
  EXPECT_TRUE(other->empty());
}

TEST_F(RestoreTest, AnotherHostsOrAnUnknownSnapshotIsNotFound) {
  auto r = restore_snapshot(remote_for(site_, "beta"), "step-4200", out_.path() / "b");
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), Code::kNotFound) << r.status().to_string();
  r = restore_snapshot(remote_for(site_, "alpha"), "no-such", out_.path() / "c");
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), Code::kNotFound) << r.status().to_string();
  EXPECT_FALSE(fs::exists(out_.path() / "b" / "one"));
}

TEST_F(RestoreTest, ADamagedStoredChunkFailsNamingTheChunk) {
  // Flip one byte in the middle of the namespace's first pack.
  const fs::path packs = site_.store_dir() / "alpha" / "packs";
  ASSERT_TRUE(fs::exists(packs));
  fs::path pack;
  for (const auto& e : fs::directory_iterator(packs)) {
    if (e.is_regular_file() && (pack.empty() || e.path() < pack)) pack = e.path();
  }
  ASSERT_FALSE(pack.empty());
  auto bytes = ferry::testing::read_file(pack);
  ASSERT_GT(bytes.size(), 1000u);
  bytes[bytes.size() / 2] ^= std::byte{0x10};
  ferry::testing::write_file(pack, bytes);

  const fs::path out = out_.path() / "damaged";
  auto r = restore_snapshot(remote_for(site_, "alpha"), "step-4200", out);
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), Code::kCorruption) << r.status().to_string();
  bool named = false;
  for (const auto& [id, frame] : tree_->frames) {
    named = named || r.status().message().find("chunk " + to_hex(id)) != std::string::npos;
  }
  EXPECT_TRUE(named) << r.status().to_string();
  // What is there is whole: no partly written file under a real name.
  expect_same_files(tree_->manifest, src_.path(), out, /*all_present=*/false);
  if (fs::exists(out)) {
    for (const auto& e : fs::recursive_directory_iterator(out)) {
      EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << e.path();
    }
  }
}

}  // namespace
}  // namespace ferry::replication
