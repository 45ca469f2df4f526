// delta_chain_test.cc: the choice of a push's delta base (codec/delta_chain.h)
// over a target's snapshots, with real directories standing for the
// checkpoints still on this host.
#include "codec/delta_chain.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <vector>

#include "codec/limits.h"
#include "tests/testing/testing.h"

namespace ferry {
namespace {

namespace fs = std::filesystem;

class DeltaChainTest : public ::testing::Test {
 protected:
  void SetUp() override { root_ = tmp_.path(); }

  // A snapshot of job "llama" from "gpu-1" whose directory exists when
  // `on_disk`; kind key at depth 0 or delta at `depth` against `base`.
  ChainSnapshot snap(const std::string& name, bool on_disk, int depth = 0, const std::string& base = "",
                     std::uint64_t frame_bytes = 1000) {
    ChainSnapshot s;
    s.name = name;
    s.host = "gpu-1";
    s.job = "llama";
    s.origin.source_dir = (root_ / name).string();
    if (on_disk) fs::create_directories(root_ / name);
    s.origin.kind = depth == 0 ? SnapshotKind::kKey : SnapshotKind::kDelta;
    s.origin.base_snapshot = base;
    s.origin.chain_depth = static_cast<std::uint8_t>(depth);
    s.frame_bytes = frame_bytes;
    return s;
  }

  // Chooses for a push of root_/"new" over `newest_first`; counts reads.
  DeltaChoice choose(const DeltaPolicy& p, std::vector<ChainSnapshot> newest_first,
                     const fs::path& delta_from = {}) {
    ChainQuery q;
    q.host = "gpu-1";
    q.job = "llama";
    q.source_dir = root_ / "new";
    q.delta_from = delta_from;
    std::size_t i = 0;
    reads_ = 0;
    NextSnapshot next = [&]() -> Result<std::optional<ChainSnapshot>> {
      ++reads_;
      if (i == newest_first.size()) return std::optional<ChainSnapshot>();
      return std::optional<ChainSnapshot>(newest_first[i++]);
    };
    return choose_delta_base(p, q, next);
  }

  testing::TempDir tmp_;
  fs::path root_;
  int reads_ = 0;
};

TEST_F(DeltaChainTest, KeyModeCodesAgainstTheNewestKey) {
  DeltaPolicy p;
  auto c = choose(p, {snap("s3", true, 1, "s1", 300), snap("s2", true, 1, "s1", 300), snap("s1", true)});
  ASSERT_TRUE(c.delta()) << c.reason;
  EXPECT_EQ(c.base_dir, root_ / "s1");
  EXPECT_EQ(c.origin.base_snapshot, "s1");
  EXPECT_EQ(c.origin.chain_depth, 1);
  EXPECT_EQ(c.origin.kind, SnapshotKind::kDelta);
  EXPECT_EQ(c.origin.source_dir, (root_ / "new").string());
  EXPECT_EQ(reads_, 3) << "the walk stops at the key";
}

TEST_F(DeltaChainTest, NoSnapshotOrKeyDirectoryGoneMeansKey) {
  DeltaPolicy p;
  auto c = choose(p, {});
  EXPECT_FALSE(c.delta());
  EXPECT_EQ(c.origin.kind, SnapshotKind::kKey);
  EXPECT_NE(c.reason.find("none at the target"), std::string::npos) << c.reason;
  c = choose(p, {snap("s2", true, 1, "s1", 300), snap("s1", false)});
  EXPECT_FALSE(c.delta());
  EXPECT_NE(c.reason.find("not on this host"), std::string::npos) << c.reason;
  // Another job's or another host's snapshots never serve.
  ChainSnapshot other = snap("o1", true);
  other.job = "other";
  ChainSnapshot elsewhere = snap("e1", true);
  elsewhere.host = "gpu-2";
  c = choose(p, {other, elsewhere});
  EXPECT_FALSE(c.delta()) << c.reason;
  // Nor the directory being pushed now (its earlier bytes are gone).
  ChainSnapshot same = snap("s1", true);
  same.origin.source_dir = (root_ / "new").string();
  EXPECT_FALSE(choose(p, {same}).delta());
  // Nor a manifest without an origin (version 1).
  ChainSnapshot old = snap("v1", true);
  old.origin = {};
  EXPECT_FALSE(choose(p, {old}).delta());
}

TEST_F(DeltaChainTest, KeyEveryForcesAKey) {
  DeltaPolicy p;
  p.key_every = 3;
  // key, delta: the third is a delta still.
  EXPECT_TRUE(choose(p, {snap("s2", true, 1, "s1", 300), snap("s1", true)}).delta());
  // key, delta, delta: the fourth would be the third after the key.
  auto c = choose(p, {snap("s3", true, 1, "s1", 300), snap("s2", true, 1, "s1", 300), snap("s1", true)});
  EXPECT_FALSE(c.delta());
  EXPECT_NE(c.reason.find("--key_every=3"), std::string::npos) << c.reason;
  p.key_every = 1;
  EXPECT_FALSE(choose(p, {snap("s1", true)}).delta());
}

TEST_F(DeltaChainTest, LowGainForcesAKey) {
  DeltaPolicy p;
  p.min_gain = 0.10;
  // The newest delta took 950 of the key's 1000 bytes: 5% saved.
  auto c = choose(p, {snap("s2", true, 1, "s1", 950), snap("s1", true, 0, "", 1000)});
  EXPECT_FALSE(c.delta());
  EXPECT_NE(c.reason.find("saved 5.0%"), std::string::npos) << c.reason;
  EXPECT_TRUE(choose(p, {snap("s2", true, 1, "s1", 850), snap("s1", true, 0, "", 1000)}).delta());
}

TEST_F(DeltaChainTest, PreviousModeChainsUpToTheLimit) {
  DeltaPolicy p;
  p.mode = DeltaMode::kPrevious;
  p.key_every = 100;
  auto c = choose(p, {snap("s2", true, 1, "s1", 300), snap("s1", true)});
  ASSERT_TRUE(c.delta()) << c.reason;
  EXPECT_EQ(c.origin.base_snapshot, "s2");
  EXPECT_EQ(c.origin.chain_depth, 2);
  // The newest's directory is gone: the newest one still here.
  c = choose(p, {snap("s3", false, 2, "s2", 300), snap("s2", true, 1, "s1", 300), snap("s1", true)});
  ASSERT_TRUE(c.delta()) << c.reason;
  EXPECT_EQ(c.origin.base_snapshot, "s2");
  // A chain at the limit: the next is a key.
  std::vector<ChainSnapshot> chain;
  for (int d = kMaxDeltaChainSnapshots; d >= 1; --d) {
    chain.push_back(snap("d" + std::to_string(d), true, d, "", 300));
  }
  chain.push_back(snap("d0", true));
  c = choose(p, chain);
  EXPECT_FALSE(c.delta());
  EXPECT_NE(c.reason.find("at most " + std::to_string(kMaxDeltaChainSnapshots)), std::string::npos)
      << c.reason;
  chain.erase(chain.begin());
  c = choose(p, chain);
  ASSERT_TRUE(c.delta()) << c.reason;
  EXPECT_EQ(c.origin.chain_depth, kMaxDeltaChainSnapshots);
}

TEST_F(DeltaChainTest, OffAndExplicitBase) {
  DeltaPolicy p;
  p.mode = DeltaMode::kOff;
  auto c = choose(p, {snap("s1", true)});
  EXPECT_FALSE(c.delta());
  EXPECT_EQ(reads_, 0) << "off reads nothing";
  // --delta_from names the directory: its snapshot gives the name and depth.
  c = choose(DeltaPolicy{}, {snap("s2", true, 1, "s1"), snap("s1", true)}, root_ / "s2");
  ASSERT_TRUE(c.delta());
  EXPECT_EQ(c.origin.base_snapshot, "s2");
  EXPECT_EQ(c.origin.chain_depth, 2);
  c = choose(DeltaPolicy{}, {snap("s1", true)}, root_ / "elsewhere");
  ASSERT_TRUE(c.delta());
  EXPECT_EQ(c.origin.base_snapshot, "");
  EXPECT_EQ(c.origin.chain_depth, 1);
}

TEST_F(DeltaChainTest, ListingErrorMeansKeyAndTheWalkIsBounded) {
  ChainQuery q;
  q.host = "gpu-1";
  q.job = "llama";
  q.source_dir = root_ / "new";
  NextSnapshot failing = []() -> Result<std::optional<ChainSnapshot>> {
    return Status::unavailable("receiver 127.0.0.1:1 refused");
  };
  auto c = choose_delta_base(DeltaPolicy{}, q, failing);
  EXPECT_FALSE(c.delta());
  EXPECT_NE(c.reason.find("refused"), std::string::npos) << c.reason;
  int reads = 0;
  NextSnapshot endless = [&]() -> Result<std::optional<ChainSnapshot>> {
    ++reads;
    ChainSnapshot s = snap("d", true, 1, "", 10);
    return std::optional<ChainSnapshot>(s);
  };
  c = choose_delta_base(DeltaPolicy{}, q, endless);
  EXPECT_FALSE(c.delta());
  EXPECT_EQ(reads, kMaxDeltaBaseLookups);
}

TEST(DeltaPolicyTest, ParseAndValidate) {
  EXPECT_EQ(*parse_delta_mode("previous"), DeltaMode::kPrevious);
  EXPECT_EQ(parse_delta_mode("chain").status().code(), Code::kInvalidArgument);
  DeltaPolicy p;
  EXPECT_TRUE(validate_delta_policy(p).is_ok());
  p.key_every = 0;
  EXPECT_FALSE(validate_delta_policy(p).is_ok());
  p.key_every = 1;
  p.min_gain = 1.5;
  EXPECT_FALSE(validate_delta_policy(p).is_ok());
}

}  // namespace
}  // namespace ferry
