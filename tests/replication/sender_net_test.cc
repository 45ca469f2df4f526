// sender_net_test.cc: push() against an in-process Receiver over real mTLS on
// 127.0.0.1 and a real local store in a temporary directory: round trips
// that are byte-identical (many files, empty files), a second push of the
// same checkpoint that sends no chunk data, a safetensors checkpoint with a
// tenth of its tensors changed that sends about a tenth of the bytes, a
// receiver stopped and restarted mid-push (the push resumes and resends only
// what was not acknowledged), frame memory that covers only frames not yet
// sent however many are in flight, the control connection coming up
// alongside the streams (fewer round trips on a long link), buffers kept
// for the next push in the process, failover past a
// dead target, fan-out, and a frame the receiver refuses as damaged, which
// ends the push unretried.
// The file over 4 GiB is in sender_slow_test.cc.
#include "replication/sender.h"

#include <gtest/gtest.h>
#include <malloc.h>
#include <sys/resource.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <set>
#include <thread>

#include "base/thread_pool.h"
#include "codec/engine.h"
#include "tests/replication/sender_fixture.h"
#include "tests/testing/link_simulator.h"
#include "tests/testing/testing.h"

namespace ferry::replication {
namespace {

namespace fs = std::filesystem;
using testing_support::expect_snapshot_equals;
using testing_support::kHost;
using testing_support::SenderTest;
using testing_support::Site;
using testing_support::write_safetensors;

void make_tree(const fs::path& root, std::uint64_t seed) {
  fs::create_directories(root / "model");
  fs::create_directories(root / "optim/deep/er");
  for (int i = 0; i < 6; ++i) {
    testing::write_file(root / "model" / ("w" + std::to_string(i) + ".bin"),
                        testing::normal_floats(100'000 + 37'000 * i, 2, true, 0.02, seed + i));
  }
  testing::write_file(root / "optim/deep/er/adam.bin",
                      testing::normal_floats(300'000, 4, false, 1e-3, seed + 9));
  testing::write_file(root / "optim/empty", {});
  testing::write_file(root / "empty2", {});
  testing::write_file(root / "one", {std::byte{7}});
  testing::write_file(root / "state.json", testing::random_bytes(3000, seed + 11));
}

TEST_F(SenderTest, RoundTripManyFilesAndEmptyFiles) {
  make_tree(dir_ / "ckpt", testing::test_seed());
  auto o = options("roundtrip-1");
  auto r = push_dir(dir_ / "ckpt", o);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->snapshot, "roundtrip-1");
  EXPECT_EQ(r->files, 11u);
  EXPECT_EQ(r->chunks_skipped, 0u);
  EXPECT_EQ(r->chunks_sent, r->chunks_total);
  EXPECT_GT(r->frame_bytes_sent, 0u);
  EXPECT_LT(r->frame_bytes_sent, r->logical_bytes);    // floats shrink
  EXPECT_GT(r->wire_bytes_sent, r->frame_bytes_sent);  // TLS and framing on top
  EXPECT_EQ(r->frame_bytes_resent, 0u);
  expect_snapshot_equals(site_->store(), "roundtrip-1", dir_ / "ckpt");
}

TEST_F(SenderTest, PushingAgainSendsNoChunkData) {
  make_tree(dir_ / "ckpt", testing::test_seed());
  auto first = push_dir(dir_ / "ckpt", options("again-1"));
  ASSERT_TRUE(first.is_ok()) << first.status().to_string();
  auto second = push_dir(dir_ / "ckpt", options("again-2"));
  ASSERT_TRUE(second.is_ok()) << second.status().to_string();
  EXPECT_EQ(second->chunks_total, first->chunks_total);
  EXPECT_EQ(second->chunks_skipped, second->chunks_total);
  EXPECT_EQ(second->chunks_sent, 0u);
  EXPECT_EQ(second->frame_bytes_sent, 0u);
  // The wire carries queries and a manifest, far less than the data.
  EXPECT_LT(second->wire_bytes_sent, first->frame_bytes_sent / 4);
  expect_snapshot_equals(site_->store(), "again-2", dir_ / "ckpt");
  // Identical manifests: the second was listed from frame facts, not coded.
  EXPECT_EQ(*site_->store().manifest(kHost, "again-1"), *site_->store().manifest(kHost, "again-2"));
}

TEST_F(SenderTest, TenPercentOfTensorsChangedSendsAboutTenPercent) {
  const std::uint64_t seed = testing::test_seed();
  constexpr int kTensors = 40;
  constexpr std::size_t kElems = 128u << 10;  // 256 KiB per tensor
  fs::create_directories(dir_ / "v1");
  fs::create_directories(dir_ / "v2");
  write_safetensors(dir_ / "v1/model.safetensors", kTensors, kElems, {}, seed);
  std::set<int> changed;
  for (int i = 3; i < kTensors; i += 10) changed.insert(i);  // 4 of 40
  write_safetensors(dir_ / "v2/model.safetensors", kTensors, kElems, changed, seed);

  auto first = push_dir(dir_ / "v1", options("st-1"));
  ASSERT_TRUE(first.is_ok()) << first.status().to_string();
  auto second = push_dir(dir_ / "v2", options("st-2"));
  ASSERT_TRUE(second.is_ok()) << second.status().to_string();
  const double fraction = static_cast<double>(second->frame_bytes_sent) / first->frame_bytes_sent;
  std::cerr << "10% of tensors changed: sent " << second->frame_bytes_sent << " of "
            << first->frame_bytes_sent << " frame bytes (" << fraction << "), skipped "
            << second->chunks_skipped << " of " << second->chunks_total << " chunks\n";
  EXPECT_GT(fraction, 0.07);
  EXPECT_LT(fraction, 0.15);
  EXPECT_EQ(second->chunks_sent, changed.size());  // one 256 KiB chunk per tensor
  expect_snapshot_equals(site_->store(), "st-2", dir_ / "v2");
}

// `n` files part0.. of `bytes` random bytes each in `dir`.
void write_random_parts(const fs::path& dir, int n, std::size_t bytes) {
  const std::uint64_t seed = testing::test_seed();
  fs::create_directories(dir);
  for (int i = 0; i < n; ++i) {
    testing::write_file(dir / ("part" + std::to_string(i)), testing::random_bytes(bytes, seed + i));
  }
}

TEST_F(SenderTest, ReceiverRestartMidPushResumesWithoutResendingDurableChunks) {
  write_random_parts(dir_ / "big", 4, 8u << 20);
  auto o = options("resume-1");
  o.streams = 2;
  o.stream_window_bytes = 1u << 20;
  o.bandwidth_bytes_per_s = 12u << 20;  // ~3 s for 32 MiB: time to break it
  o.queue_bytes = 2u << 20;             // packing keeps pace with acks (progress)
  std::atomic<std::uint64_t> acked{0};
  o.progress = [&](const PushProgress& p) { acked = p.frame_bytes_acked; };
  const std::uint16_t port = site_->port();
  std::atomic<bool> restarted{false};
  std::thread breaker([&] {
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (acked.load() < (8u << 20) && std::chrono::steady_clock::now() < give_up) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    site_->stop();
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    restarted = site_->start(port).is_ok();
  });
  auto r = push_dir(dir_ / "big", o);
  breaker.join();
  ASSERT_TRUE(restarted.load());
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  std::cerr << "resume: retries " << r->retries << ", frame bytes sent " << r->frame_bytes_sent << ", resent "
            << r->frame_bytes_resent << "\n";
  EXPECT_GT(r->retries, 0u);
  // Only frames in flight at the break can be sent again: at most a window
  // per stream (plus one frame each, as a window may overshoot by one).
  EXPECT_LE(r->frame_bytes_resent, 2 * (o.stream_window_bytes + (o.chunk_bytes + 88)));
  EXPECT_EQ(r->chunks_sent, r->chunks_total);
  expect_snapshot_equals(site_->store(), "resume-1", dir_ / "big");
}

// Frames are released once sent (a resend rebuilds them from the source),
// so frame memory covers only what is not yet sent: the packer's window, the
// queue and a frame per stream. Here nearly every frame is in flight at once
// (a link that carries each stream's frames at 8 MiB/s while the packer's
// small have/need queries pass quickly, and windows larger than the
// checkpoint), and memory must still stay at that bound, far below the 96
// frames pushed.
TEST_F(SenderTest, FrameMemoryCoversOnlyFramesNotYetSent) {
  write_random_parts(dir_ / "src", 3, 2u << 20);
  testing::LinkOptions lo;
  lo.target = site_->target();
  lo.delay_ms = 5;
  lo.bandwidth_bytes_per_s = 8u << 20;
  testing::LinkSimulator link(lo);
  ASSERT_TRUE(link.start().is_ok());
  ThreadPool pool(2);
  auto o = options("memory-1");
  o.targets = {link.address()};
  o.chunk_bytes = 64u << 10;
  o.streams = 2;
  o.queue_bytes = 256u << 10;  // three frames
  o.pool = &pool;
  auto r = push_dir(dir_ / "src", o);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->chunks_sent, 96u);
  const std::uint64_t frame_room = frame_room_bytes(o.chunk_bytes);
  // The packer's window (8 chunks with have/need), 3 queued, 1 per stream.
  const std::uint64_t bound = (8 + 3 + 1 + 2) * frame_room;
  EXPECT_GT(r->frame_memory_bytes, 0u);
  EXPECT_LE(r->frame_memory_bytes, bound) << r->frame_memory_bytes / frame_room << " frame buffers";
  expect_snapshot_equals(site_->store(), "memory-1", dir_ / "src");
}

// The control connection (TCP, TLS, HELLO) comes up while the streams
// connect and the packer reads its first window, instead of before them,
// and the target's snapshots are not listed until a held chunk needs their
// frame facts: a one-chunk push to a new target over a long link takes
// about 5 round trips (TLS, HELLO, the have/need question, the PUT, the
// commit; 6 with the LIST, 7.1 when the streams waited for the control
// connection).
TEST_F(SenderTest, ControlConnectionComesUpAlongsideTheStreams) {
  fs::create_directories(dir_ / "one");
  testing::write_file(dir_ / "one" / "w.bin", testing::random_bytes(1000, testing::test_seed()));
  constexpr int kOneWayMs = 250;
  testing::LinkOptions lo;
  lo.target = site_->target();
  lo.delay_ms = kOneWayMs;
  testing::LinkSimulator link(lo);
  ASSERT_TRUE(link.start().is_ok());
  auto o = options("alongside-1");
  o.targets = {link.address()};
  o.streams = 1;
  auto r = push_dir(dir_ / "one", o);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->chunks_sent, 1u);
  const double rtt_s = 2 * kOneWayMs / 1000.0;
  EXPECT_LT(r->seconds, 5.5 * rtt_s) << r->seconds / rtt_s << " round trips";
  std::cerr << "one-chunk push: " << r->seconds / rtt_s << " round trips\n";
  expect_snapshot_equals(site_->store(), "alongside-1", dir_ / "one");
}

long process_faults() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_minflt;
}

// Chunk and frame buffers are kept for the next push in the process
// (base/buffer_stash.h), so a push after another of the same chunk size
// writes into pages that are mapped already. Minor faults of this whole
// process (sender and in-process receiver) over two pushes of new data at a
// chunk size no other test here uses: the second takes thousands fewer (8
// chunk buffers and 8 or more frame buffers of 2 MiB are 8,000 pages).
TEST_F(SenderTest, TheNextPushReusesChunkAndFrameBuffers) {
  // Large blocks always come fresh from mmap and go back with munmap, so
  // that memory an earlier test freed cannot stand in for the kept buffers
  // (glibc would otherwise raise its threshold and reuse its heap).
  mallopt(M_MMAP_THRESHOLD, 256 << 10);
  auto o = options("reuse");
  o.chunk_bytes = 2u << 20;
  o.streams = 2;
  std::vector<long> faults;
  for (int k = 0; k < 2; ++k) {
    const fs::path src = dir_ / ("reuse" + std::to_string(k));
    fs::create_directories(src);
    for (int i = 0; i < 8; ++i) {
      testing::write_file(src / ("part" + std::to_string(i)),
                          testing::random_bytes(2u << 20, testing::test_seed() + 100 * k + i));
    }
    o.snapshot = "reuse-" + std::to_string(k + 1);
    const long before = process_faults();
    auto r = push_dir(src, o);
    faults.push_back(process_faults() - before);
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();
    EXPECT_EQ(r->chunks_sent, 8u);
  }
  EXPECT_LT(faults[1], faults[0] - 4000) << faults[0] << " faults, then " << faults[1];
}

TEST_F(SenderTest, FailsOverPastADeadTargetAndFansOut) {
  make_tree(dir_ / "ckpt", testing::test_seed());
  auto o = options("failover-1");
  o.retry.max_attempts = 2;
  o.targets = {"127.0.0.1:1", site_->target()};
  auto r = push_dir(dir_ / "ckpt", o);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->failovers, 1u);
  EXPECT_EQ(r->target, site_->target());
  expect_snapshot_equals(site_->store(), "failover-1", dir_ / "ckpt");

  // Fan-out: a second site gets the snapshot too; the first already holds
  // every chunk.
  Site second(dir_ / "site2", certs_);
  ASSERT_TRUE(second.start().is_ok());
  o.targets = {site_->target(), second.target()};
  o.fan_out = true;
  o.snapshot = "fanout-1";
  auto sources = list_pack_sources(dir_ / "ckpt");
  ASSERT_TRUE(sources.is_ok());
  auto reports = push(*sources, o);
  ASSERT_TRUE(reports.is_ok()) << reports.status().to_string();
  ASSERT_EQ(reports->size(), 2u);
  EXPECT_EQ((*reports)[0].chunks_sent, 0u);
  EXPECT_EQ((*reports)[1].chunks_sent, (*reports)[1].chunks_total);
  expect_snapshot_equals(site_->store(), "fanout-1", dir_ / "ckpt");
  expect_snapshot_equals(second.store(), "fanout-1", dir_ / "ckpt");

  // Every target dead: the push fails and names the last one.
  o.targets = {"127.0.0.1:1"};
  o.fan_out = false;
  auto dead = push(*sources, o);
  ASSERT_FALSE(dead.is_ok());
  EXPECT_NE(dead.status().message().find("127.0.0.1:1"), std::string::npos) << dead.status().to_string();
}

// The CPU engine, except that the first frame it codes gets one payload
// byte flipped after coding: a frame this host made damaged (bad memory, a
// bug), which the receiver verifies and refuses.
class DamagingEngine final : public CodecEngine {
 public:
  std::string_view kind() const override { return "cpu"; }
  std::string description() const override { return "cpu, damaging its first frame"; }
  bool supports(MemorySpace space) const override { return inner_->supports(space); }
  Status encode(std::span<const EncodeJob> jobs, std::span<EncodedChunk> results,
                MemorySpace space) override {
    RETURN_IF_ERROR(inner_->encode(jobs, results, space));
    if (!damaged_ && !jobs.empty() && results[0].frame_bytes > kFrameHeaderBytes) {
      jobs[0].frame[(kFrameHeaderBytes + results[0].frame_bytes) / 2] ^= std::byte{0x10};
      damaged_ = true;
    }
    return Status::ok();
  }
  Status decode(std::span<const DecodeJob> jobs, std::span<Status> statuses, MemorySpace space) override {
    return inner_->decode(jobs, statuses, space);
  }

 private:
  std::unique_ptr<CodecEngine> inner_ = make_cpu_engine();
  bool damaged_ = false;
};

TEST_F(SenderTest, AFrameTheReceiverRefusesAsDamagedEndsThePushWithoutResending) {
  make_tree(dir_ / "ckpt", testing::test_seed());
  DamagingEngine engine;
  auto o = options("refused-1");
  o.engine = &engine;
  o.streams = 1;
  o.retry.max_attempts = 3;
  auto r = push_dir(dir_ / "ckpt", o);
  ASSERT_FALSE(r.is_ok());
  // The receiver's verdict keeps its code, marked as a refusal, and
  // base/retry.h does not retry it.
  EXPECT_EQ(r.status().code(), Code::kCorruption) << r.status().to_string();
  EXPECT_EQ(r.status().detail(), Detail::kRefusedByPeer) << r.status().to_string();
  EXPECT_NE(r.status().message().find("receiver: "), std::string::npos) << r.status().to_string();
  // No reconnect to resend it: the control link and the one stream are the
  // only connections that got past HELLO.
  EXPECT_EQ(site_->receiver().stats().connections_served, 2u);
  auto listed = site_->store().list(kHost);
  ASSERT_TRUE(listed.is_ok());
  EXPECT_TRUE(listed->empty());
}

TEST(SenderNameTest, DefaultSnapshotNames) {
  PushOptions o;
  o.source_name = "my ckpt/ü";
  EXPECT_EQ(default_snapshot_name(o, 0), "my_ckpt___-19700101T000000Z");
  o.job = "llama";
  o.step = 1200;
  // The directory is part of the name (replication/snapshot_name.h).
  EXPECT_EQ(default_snapshot_name(o, 0), "llama-my_ckpt___-step1200");
  o.source_name.clear();
  EXPECT_EQ(default_snapshot_name(o, 0), "llama-step1200");
  EXPECT_TRUE(validate_snapshot_name(default_snapshot_name(o, 0)).is_ok());
}

}  // namespace
}  // namespace ferry::replication
