// receiver_kill_delta_slow_test.cc: kill -9 of the real `ferry serve` while
// the in-process sender pushes a delta snapshot whose base it chose itself
// (PushOptions::source_dir, --delta=previous with a key every 4), then a
// restart on the same store and port. At every crash point the reopened
// store scrubs clean (scrub rebuilds each delta from its base) and lists no
// snapshot the push had not committed; the push resumes and commits a delta
// snapshot; every committed snapshot, the chains included, restores byte
// for byte. FERRY_KILL_TRIALS sets the number of trials (20 by default);
// FERRY_TEST_SEED replays a run.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <random>
#include <thread>

#include "tests/replication/receiver_kill_fixture.h"

namespace ferry::replication {
namespace {

using namespace kill_testing;

constexpr std::size_t kElems = 3u << 19;  // 3 MiB of bf16 a checkpoint
constexpr std::uint64_t kDeltaPushBytesPerSecond = 1u << 20;

TEST_F(ReceiverKillTest, DeltaPushResumesAfterKillNineAndEverySnapshotRestores) {
  const std::uint64_t seed = ferry::testing::test_seed();
  std::mt19937_64 rng(seed);
  const int n = trials();
  const std::uint16_t port = start_trials(n, seed);
  ASSERT_NE(port, 0);
  DeltaPolicy policy;
  policy.mode = DeltaMode::kPrevious;
  policy.key_every = 4;
  std::vector<std::byte> weights = ferry::testing::normal_floats(kElems, 2, true, 0.02, seed);
  std::vector<std::pair<std::string, fs::path>> committed;
  int killed_mid_push = 0, deltas = 0;
  for (int t = 0; t <= n; ++t) {
    const fs::path src = dir_ / ("ckpt-" + std::to_string(t));
    ferry::testing::drift_bf16(weights, seed + static_cast<std::uint64_t>(t));
    fs::create_directories(src);
    ferry::testing::write_bf16_safetensors(src / "model.safetensors", weights, 3);
    const std::string name = "delta-" + std::to_string(t);
    PushOptions o = push_options(port, name);
    o.job = "delta";
    o.created_ns = 1'000'000'000LL * (1000 + t);
    o.source_dir = src;
    o.delta = policy;
    o.bandwidth_bytes_per_s = kDeltaPushBytesPerSecond;
    auto sources = list_pack_sources(src);
    ASSERT_TRUE(sources.is_ok());
    std::atomic<bool> done{false};
    Result<std::vector<PushReport>> result = Status::internal("not run");
    std::thread pusher([&] {
      result = push(*sources, o);
      done.store(true);
    });
    // Trial 0 pushes the first key snapshot undisturbed.
    if (t > 0) {
      const int delay_ms = std::uniform_int_distribution<int>(0, 2 * kMaxKillDelayMs)(rng);
      std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
      const bool mid = !done.load();
      kill_serve();
      killed_mid_push += mid ? 1 : 0;
      const std::string when =
          "trial " + std::to_string(t) + " after kill at " + std::to_string(delay_ms) + " ms";
      expect_store_consistent(when);
      // Nothing partial is visible: the snapshot is listed only once its push
      // reached COMMIT, and then (scrub above) whole.
      if (mid && !done.load())
        std::printf("[kill] %s mid-push, listed: %s\n", when.c_str(), listed(name) ? "yes" : "no");
      std::this_thread::sleep_for(std::chrono::milliseconds(std::uniform_int_distribution<int>(0, 300)(rng)));
      ASSERT_EQ(start_serve(port), port) << serve_log();
    }
    pusher.join();
    ASSERT_TRUE(result.is_ok()) << "trial " << t << ": " << result.status().to_string() << "\n"
                                << serve_log();
    const PushReport& r = (*result)[0];
    std::printf("[kill] trial %d: %s (%s), %llu delta chunks, %llu retries, %llu frame bytes resent\n", t,
                std::string(snapshot_kind_name(r.origin.kind)).c_str(), r.delta_reason.c_str(),
                static_cast<unsigned long long>(r.delta_chunks), static_cast<unsigned long long>(r.retries),
                static_cast<unsigned long long>(r.frame_bytes_resent));
    // The chain: a key every 4 snapshots, deltas against the previous one.
    EXPECT_EQ(r.origin.kind, t % 4 == 0 ? SnapshotKind::kKey : SnapshotKind::kDelta) << r.delta_reason;
    if (r.origin.kind == SnapshotKind::kDelta) {
      ++deltas;
      EXPECT_EQ(r.origin.base_snapshot, "delta-" + std::to_string(t - 1));
      EXPECT_GT(r.delta_chunks, 0u);
    }
    committed.emplace_back(name, src);
  }
  std::printf("[kill] %d of %d kills landed mid-push; %d delta snapshots\n", killed_mid_push, n, deltas);
  EXPECT_GT(killed_mid_push, 0);
  EXPECT_GT(deltas, 0);
  // Every committed snapshot restores byte for byte (each delta rebuilt
  // through its chain), and nothing else is listed.
  RemoteOptions remote;
  remote.address = "127.0.0.1:" + std::to_string(port);
  remote.tls.ca_file = certs_.ca_cert;
  remote.tls.cert_file = certs_.host_cert(kHost);
  remote.tls.key_file = certs_.host_key(kHost);
  auto all = list_remote(remote, true);
  ASSERT_TRUE(all.is_ok()) << all.status().to_string();
  EXPECT_EQ(all->size(), committed.size());
  for (const auto& [name, src] : committed) {
    const fs::path out = dir_ / ("out-" + name);
    auto restored = restore_snapshot(remote, name, out);
    ASSERT_TRUE(restored.is_ok()) << name << ": " << restored.status().to_string();
    expect_same_tree(src, out);
  }
  kill_serve();
  expect_store_consistent("after all trials");
}

}  // namespace
}  // namespace ferry::replication
