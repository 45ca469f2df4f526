// delta_chain_net_test.cc: delta snapshots chosen by the sender itself
// (PushOptions::source_dir and ::delta, codec/delta_chain.h) against a real
// receiver over TLS on loopback: the automatic base found from the target's
// snapshots of the job, key and previous modes, a key every N snapshots or
// below the minimum gain, a base directory gone from the host, the origin
// read back by `list_remote`, and every snapshot restored byte for byte by
// the real restore (which rebuilds each delta from its base). Chunks the
// receiver holds already are listed with the frames it holds (stored in
// full and offered as deltas, or the reverse), also after the snapshots
// that stored them are removed and gc ran; a base that a gc removes
// between QUERY and PUT makes the sender send that chunk in full.
#include <gtest/gtest.h>

#include "codec/limits.h"
#include "replication/delta_base_choice.h"
#include "replication/restore.h"
#include "replication/tls.h"
#include "tests/replication/sender_fixture.h"

namespace ferry::replication {
namespace {

using namespace testing_support;

// A checkpoint that drifts like training: step 0 draws bf16 weights, each
// later step nudges every element's low bits.
class DeltaChainNetTest : public SenderTest {
 protected:
  fs::path checkpoint(int step) {
    const fs::path d = dir_ / ("ckpt-" + std::to_string(step));
    if (weights_.empty()) weights_ = testing::normal_floats(4 * kElems, 2, true, 0.02, 7);
    for (int s = last_step_; s < step; ++s) testing::drift_bf16(weights_, static_cast<std::uint64_t>(s));
    last_step_ = step;
    fs::create_directories(d);
    testing::write_bf16_safetensors(d / "model.safetensors", weights_, 4);
    return d;
  }

  PushReport push_step(int step, const DeltaPolicy& policy, const fs::path& src) {
    PushOptions o = options("llama-" + std::to_string(step));
    o.job = "llama";
    o.step = static_cast<std::uint64_t>(step);
    o.created_ns = 1'000'000'000LL * (1000 + step);
    o.source_dir = src;
    o.delta = policy;
    auto r = push_dir(src, o);
    EXPECT_TRUE(r.is_ok()) << r.status().to_string();
    return r.is_ok() ? *r : PushReport{};
  }

  RemoteOptions remote() const {
    RemoteOptions r;
    r.address = site_->target();
    r.tls.ca_file = certs_.ca_cert;
    r.tls.cert_file = certs_.host_cert(kHost);
    r.tls.key_file = certs_.host_key(kHost);
    return r;
  }

  void expect_restores(const std::string& snapshot, const fs::path& src) {
    const fs::path out = dir_ / ("restored-" + snapshot);
    auto r = restore_snapshot(remote(), snapshot, out, RestoreOptions{});
    ASSERT_TRUE(r.is_ok()) << snapshot << ": " << r.status().to_string();
    EXPECT_EQ(testing::read_file(out / "model.safetensors"), testing::read_file(src / "model.safetensors"))
        << snapshot;
  }

  static constexpr std::size_t kElems = 128u << 10;  // 256 KiB a tensor, one chunk each
  std::vector<std::byte> weights_;
  int last_step_ = 0;
};

TEST_F(DeltaChainNetTest, KeyModeFindsTheKeyAndRestoreRebuildsEveryDelta) {
  DeltaPolicy p;  // key, every 10
  std::map<int, fs::path> dirs;
  std::map<int, PushReport> reps;
  for (int step : {1, 2, 3}) {
    dirs[step] = checkpoint(step);
    reps[step] = push_step(step, p, dirs[step]);
  }
  EXPECT_EQ(reps[1].origin.kind, SnapshotKind::kKey) << reps[1].delta_reason;
  EXPECT_EQ(reps[1].delta_chunks, 0u);
  for (int step : {2, 3}) {
    const PushReport& r = reps[step];
    EXPECT_EQ(r.origin.kind, SnapshotKind::kDelta) << r.delta_reason;
    EXPECT_EQ(r.origin.base_snapshot, "llama-1") << "key mode: always against the key";
    EXPECT_EQ(r.origin.chain_depth, 1);
    EXPECT_EQ(r.delta_chunks, 4u);
    EXPECT_LT(r.delta_frame_bytes, r.delta_logical_bytes / 2);
    EXPECT_LT(r.frame_bytes_sent, reps[1].frame_bytes_sent / 2);
  }
  // The origin is read back from the receiver's manifests.
  auto listed = list_remote(remote(), true);
  ASSERT_TRUE(listed.is_ok()) << listed.status().to_string();
  ASSERT_EQ(listed->size(), 3u);
  for (const RemoteSnapshot& s : *listed) {
    const int step = static_cast<int>(s.step);
    EXPECT_EQ(s.origin.source_dir, dirs[step].string());
    EXPECT_EQ(s.origin, reps[step].origin) << s.info.name;
  }
  for (int step : {1, 2, 3}) expect_restores("llama-" + std::to_string(step), dirs[step]);
}

TEST_F(DeltaChainNetTest, KeyEveryAndMinGainForceKeys) {
  DeltaPolicy p;
  p.key_every = 2;
  const fs::path d1 = checkpoint(1), d2 = checkpoint(2), d3 = checkpoint(3);
  EXPECT_EQ(push_step(1, p, d1).origin.kind, SnapshotKind::kKey);
  EXPECT_EQ(push_step(2, p, d2).origin.kind, SnapshotKind::kDelta);
  PushReport r3 = push_step(3, p, d3);
  EXPECT_EQ(r3.origin.kind, SnapshotKind::kKey) << r3.delta_reason;
  EXPECT_NE(r3.delta_reason.find("--key_every=2"), std::string::npos) << r3.delta_reason;
  // A delta that saves less than asked: the next push is a key.
  p.key_every = 100;
  p.min_gain = 0.99;
  const fs::path d4 = checkpoint(4), d5 = checkpoint(5);
  EXPECT_EQ(push_step(4, p, d4).origin.kind, SnapshotKind::kDelta);
  PushReport r5 = push_step(5, p, d5);
  EXPECT_EQ(r5.origin.kind, SnapshotKind::kKey) << r5.delta_reason;
  EXPECT_NE(r5.delta_reason.find("--delta_min_gain"), std::string::npos) << r5.delta_reason;
  for (auto& [step, d] : std::map<int, fs::path>{{1, d1}, {2, d2}, {3, d3}, {4, d4}, {5, d5}})
    expect_restores("llama-" + std::to_string(step), d);
}

// The base choice fetches each snapshot's manifest once per process: the
// next push's walk over the receiver's snapshots (the agent's, at every
// checkpoint) finds what each said already, fetching only new snapshots.
TEST_F(DeltaChainNetTest, TheBaseChoiceFetchesEachManifestOnce) {
  DeltaPolicy p;
  for (int step : {1, 2, 3}) push_step(step, p, checkpoint(step));
  TlsConfig tc;
  tc.ca_file = certs_.ca_cert;
  tc.cert_file = certs_.host_cert(kHost);
  tc.key_file = certs_.host_key(kHost);
  auto ctx = TlsContext::create(tc);
  ASSERT_TRUE(ctx.is_ok()) << ctx.status().to_string();
  auto conn = Connection::connect(site_->target(), *ctx);
  ASSERT_TRUE(conn.is_ok()) << conn.status().to_string();
  Connection& c = **conn;
  ASSERT_TRUE(c.hello("delta_chain_net_test").is_ok());
  int manifests_fetched = 0;
  std::uint64_t next_id = 0;
  Requester request = [&](Message m) -> Result<Message> {
    if (std::holds_alternative<GetManifest>(m)) ++manifests_fetched;
    const std::uint64_t id = ++next_id;
    std::visit(
        [id](auto& msg) {
          if constexpr (requires { msg.request_id; }) msg.request_id = id;
        },
        m);
    RETURN_IF_ERROR(c.send(m));
    ASSIGN_OR_RETURN(Message reply, c.recv());
    if (auto* e = std::get_if<Error>(&reply)) return status_from_peer_error(*e);
    return reply;
  };
  // A peer name of this test's own: the pushes above cached theirs under
  // the target's address.
  auto walk = [&] {
    std::vector<std::string> names;
    NextSnapshot next = receiver_snapshots_newest_first(c.version(), request, "walk-" + site_->target());
    while (true) {
      auto s = next();
      EXPECT_TRUE(s.is_ok()) << s.status().to_string();
      if (!s.is_ok() || !*s) break;
      names.push_back((*s)->name);
    }
    return names;
  };
  const std::vector<std::string> want = {"llama-3", "llama-2", "llama-1"};
  EXPECT_EQ(walk(), want);
  EXPECT_EQ(manifests_fetched, 3);
  EXPECT_EQ(walk(), want);
  EXPECT_EQ(manifests_fetched, 3) << "a manifest was fetched again";
  push_step(4, p, checkpoint(4));
  EXPECT_EQ(walk(), (std::vector<std::string>{"llama-4", "llama-3", "llama-2", "llama-1"}));
  EXPECT_EQ(manifests_fetched, 4) << "only the new snapshot's manifest";
}

TEST_F(DeltaChainNetTest, PreviousModeChainsAndRestores) {
  DeltaPolicy p;
  p.mode = DeltaMode::kPrevious;
  p.key_every = 100;
  std::map<int, fs::path> dirs;
  for (int step = 1; step <= kMaxDeltaChainSnapshots + 2; ++step) {
    dirs[step] = checkpoint(step);
    PushReport r = push_step(step, p, dirs[step]);
    if (step == 1 || step == kMaxDeltaChainSnapshots + 2) {
      EXPECT_EQ(r.origin.kind, SnapshotKind::kKey) << step << ": " << r.delta_reason;
    } else {
      EXPECT_EQ(r.origin.kind, SnapshotKind::kDelta) << step << ": " << r.delta_reason;
      EXPECT_EQ(r.origin.base_snapshot, "llama-" + std::to_string(step - 1));
      EXPECT_EQ(r.origin.chain_depth, step - 1);
    }
  }
  // The deepest snapshot reads kMaxDeltaChainSnapshots + 1 frames a chunk.
  for (auto& [step, d] : dirs) expect_restores("llama-" + std::to_string(step), d);
}

TEST_F(DeltaChainNetTest, BaseGoneFromTheHostOrDeltasOffMeansAKey) {
  DeltaPolicy p;
  const fs::path d1 = checkpoint(1), d2 = checkpoint(2), d3 = checkpoint(3);
  push_step(1, p, d1);
  fs::remove_all(d1);
  PushReport r2 = push_step(2, p, d2);
  EXPECT_EQ(r2.origin.kind, SnapshotKind::kKey) << r2.delta_reason;
  EXPECT_NE(r2.delta_reason.find("not on this host"), std::string::npos) << r2.delta_reason;
  EXPECT_EQ(r2.delta_chunks, 0u);
  p.mode = DeltaMode::kOff;
  PushReport r3 = push_step(3, p, d3);
  EXPECT_EQ(r3.origin.kind, SnapshotKind::kKey) << r3.delta_reason;
  EXPECT_EQ(r3.delta_chunks, 0u);
  // The base files changed after the base was pushed: full frames, still
  // correct (the sender hashes what it reads).
  p.mode = DeltaMode::kKey;
  const fs::path d4 = checkpoint(4);
  testing::write_file(d3 / "model.safetensors", testing::read_file(d4 / "model.safetensors"));
  const fs::path d5 = checkpoint(5);
  PushReport r5 = push_step(5, p, d5);
  EXPECT_EQ(r5.delta_chunks, 0u) << r5.delta_reason;
  EXPECT_EQ(r5.origin.kind, SnapshotKind::kKey)
      << "a delta push without any delta chunk is recorded as a key";
  expect_restores("llama-5", d5);
}

// A push of a delta snapshot that stored its frames but never committed
// (its process died), pushed again by a new push with the same base: every
// chunk is held, so none is sent, and the manifest must still list the
// delta frames the receiver holds (coded again against the same base to
// learn their facts), or the restore finds frame and manifest disagreeing.
TEST_F(DeltaChainNetTest, APushResumedAfterItsSenderDiedListsTheStoredDeltaFrames) {
  DeltaPolicy p;
  const fs::path d1 = checkpoint(1), d2 = checkpoint(2);
  push_step(1, p, d1);
  PushOptions o = options("llama-2");
  o.job = "llama";
  o.step = 2;
  o.created_ns = 1'000'000'000LL * 1002;
  o.source_dir = d2;
  o.delta = p;
  o.before_commit = [] { return Status::aborted("the sender died before COMMIT"); };
  auto first = push_dir(d2, o);
  ASSERT_FALSE(first.is_ok());
  o.before_commit = nullptr;
  auto again = push_dir(d2, o);
  ASSERT_TRUE(again.is_ok()) << again.status().to_string();
  EXPECT_EQ(again->chunks_sent, 0u) << "every frame was stored by the first push";
  EXPECT_EQ(again->origin.kind, SnapshotKind::kDelta) << again->delta_reason;
  expect_restores("llama-2", d2);
}

// A chunk the receiver already holds is listed with the frame it holds,
// whatever the push would have coded (docs/FORMAT.md 5): stored in full and
// then offered as a delta (s3), stored as a delta and then offered alone
// (s5). Each snapshot restores, and after the snapshots that stored the
// frames are removed and gc ran, the later ones still restore.
class HeldChunkFactsNetTest : public DeltaChainNetTest {
 protected:
  void SetUp() override {
    DeltaChainNetTest::SetUp();
    StoreOptions so;
    so.gc_grace_seconds = 0;
    site_->stop();
    site_ = std::make_unique<Site>(dir_ / "site-quick-gc", certs_, so);
    ASSERT_TRUE(site_->start().is_ok());
  }
  PushReport push_as(const std::string& snapshot, const fs::path& src, const fs::path& delta_from = {}) {
    PushOptions o = options(snapshot);
    o.created_ns = 1'000'000'000LL * (2000 + ++pushes_);
    o.delta_from = delta_from;
    auto r = push_dir(src, o);
    EXPECT_TRUE(r.is_ok()) << snapshot << ": " << r.status().to_string();
    return r.is_ok() ? *r : PushReport{};
  }
  fs::path copy_of(const fs::path& src, const std::string& name) {
    const fs::path d = dir_ / name;
    fs::create_directories(d);
    fs::copy_file(src / "model.safetensors", d / "model.safetensors");
    return d;
  }
  void remove_and_gc(const std::vector<std::string>& snapshots) {
    for (const auto& s : snapshots)
      ASSERT_TRUE(site_->store().remove_snapshot(kHost, s, Actor::kOperator).is_ok()) << s;
    auto gc = site_->store().gc(kHost, Actor::kOperator);
    ASSERT_TRUE(gc.is_ok()) << gc.status().to_string();
    EXPECT_GT(gc->chunks_removed, 0u) << "gc removed nothing: the test proves nothing";
  }
  int pushes_ = 0;
};

TEST_F(HeldChunkFactsNetTest, StoredInFullThenOfferedAsADelta) {
  const fs::path w0 = checkpoint(0), w1 = checkpoint(1), w1_again = copy_of(w1, "w1-again");
  push_as("s1", w1);
  push_as("s2", w0);  // the newest snapshot does not name s1's chunks
  PushReport r = push_as("s3", w1_again, w0);
  EXPECT_EQ(r.chunks_skipped, 5u) << "every chunk of s3 is held (the header chunk and 4 tensors)";
  expect_restores("s1", w1);
  expect_restores("s2", w0);
  expect_restores("s3", w1_again);
  remove_and_gc({"s1", "s2"});
  expect_restores("s3", w1_again);
}

TEST_F(HeldChunkFactsNetTest, StoredAsADeltaThenOfferedAlone) {
  const fs::path w0 = checkpoint(0), w1 = checkpoint(1), w1_again = copy_of(w1, "w1-again");
  push_as("s1", w0);
  PushReport r2 = push_as("s2", w1, w0);
  ASSERT_EQ(r2.delta_chunks, 4u) << "s2's chunks are stored as deltas against s1's";
  push_as("s3", checkpoint(2));  // the newest snapshot does not name s2's chunks
  EXPECT_EQ(push_as("s4", w1_again).chunks_skipped, 5u);
  expect_restores("s4", w1_again);
  remove_and_gc({"s1", "s2", "s3"});
  expect_restores("s4", w1_again);
}

// The bases of a push's deltas removed at the receiver after its QUERY
// said it held them and before the PUTs (a gc at that instant, run for
// real): the receiver refuses each delta naming its base, the sender sends
// those chunks again in full, and the snapshot commits and restores. The
// gc runs from the progress report of the last window, after every QUERY,
// while the bandwidth cap holds every PUT back: the first, a 256 KiB chunk
// of random bytes (a.bin, first in path order), waits 1.75 s (the
// bucket holds a quarter second of bytes), and the deltas wait behind it.
// sx keeps the header chunk w0 and w1 share.
TEST_F(HeldChunkFactsNetTest, BaseRemovedBetweenQueryAndPutGoesInFull) {
  const fs::path w0 = checkpoint(0), w1 = checkpoint(1);
  const fs::path wx = dir_ / "wx";
  fs::create_directories(wx);
  testing::write_bf16_safetensors(wx / "model.safetensors",
                                  testing::normal_floats(4 * kElems, 2, true, 0.02, 99), 4);
  testing::write_file(w1 / "a.bin", testing::random_bytes(256u << 10, 5));
  push_as("s1", w0);
  push_as("sx", wx);
  PushOptions o = options("s2");
  o.created_ns = 1'000'000'000LL * 3000;
  o.delta_from = w0;
  o.bandwidth_bytes_per_s = 128u << 10;
  bool removed = false;
  o.progress = [&](const PushProgress& p) {
    if (removed || p.logical_done != p.logical_total) return;
    removed = true;
    EXPECT_EQ(p.frame_bytes_acked, 0u) << "a frame went before the gc: the race did not happen";
    remove_and_gc({"s1"});
  };
  auto r = push_dir(w1, o);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_TRUE(removed);
  EXPECT_EQ(r->delta_chunks, 4u) << "coded as deltas: the receiver said it held the bases";
  EXPECT_EQ(r->deltas_sent_in_full, 4u) << "every delta went again in full";
  expect_restores("s2", w1);
  EXPECT_EQ(testing::read_file(dir_ / "restored-s2" / "a.bin"), testing::read_file(w1 / "a.bin"));
}

}  // namespace
}  // namespace ferry::replication
