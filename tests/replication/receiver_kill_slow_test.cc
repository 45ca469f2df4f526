// receiver_kill_slow_test.cc: kill -9 of the real `ferry serve` binary at
// random points of a push, then a restart on the same store and port. The
// in-process sender (with retries) must resume and commit; at every crash
// point the store, reopened (which recovers torn pack tails and the index),
// must scrub clean: no listed snapshot may name a chunk that is not durable.
// Each finished snapshot must restore byte for byte. FERRY_KILL_TRIALS sets
// the number of trials (20 by default; scripts/soak-receiver-kill.sh runs
// many more); FERRY_TEST_SEED replays a run.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <random>
#include <string>
#include <thread>

#include "tests/replication/receiver_kill_fixture.h"

namespace ferry::replication {
namespace {

using namespace kill_testing;

TEST_F(ReceiverKillTest, PushResumesAfterKillNineAndStoreStaysConsistent) {
  const std::uint64_t seed = ferry::testing::test_seed();
  std::mt19937_64 rng(seed);
  const int n = trials();
  const std::uint16_t port = start_trials(n, seed);
  ASSERT_NE(port, 0);
  int killed_mid_push = 0;
  for (int t = 0; t < n; ++t) {
    fs::path src = dir_ / ("ckpt-" + std::to_string(t));
    make_checkpoint(src, seed * 1000 + static_cast<std::uint64_t>(t) * 10);
    std::string name = "kill-" + std::to_string(t);
    auto sources = list_pack_sources(src);
    ASSERT_TRUE(sources.is_ok());
    std::atomic<bool> done{false};
    Result<std::vector<PushReport>> result = Status::internal("not run");
    std::thread pusher([&] {
      result = push(*sources, push_options(port, name));
      done.store(true);
    });
    int delay_ms = std::uniform_int_distribution<int>(0, kMaxKillDelayMs)(rng);
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    bool mid = !done.load();
    kill_serve();
    killed_mid_push += mid ? 1 : 0;
    // The crash point as a restarted receiver finds it: consistent, and the
    // snapshot listed only if the push had already committed it.
    expect_store_consistent("trial " + std::to_string(t) + " after kill at " + std::to_string(delay_ms) +
                            " ms");
    if (mid && !done.load()) {
      // The push may still have committed just before the kill; only a
      // snapshot listed while the push had not even started COMMIT would be
      // wrong, which scrub above rules out (all its chunks durable).
      std::printf("[kill] trial %d: killed at %d ms mid-push, listed before restart: %s\n", t, delay_ms,
                  listed(name) ? "yes" : "no");
    }
    int down_ms = std::uniform_int_distribution<int>(0, 300)(rng);
    std::this_thread::sleep_for(std::chrono::milliseconds(down_ms));
    ASSERT_EQ(start_serve(port), port) << serve_log();
    pusher.join();
    ASSERT_TRUE(result.is_ok()) << "trial " << t << ": " << result.status().to_string() << "\n"
                                << serve_log();
    ASSERT_EQ(result->size(), 1u);
    std::printf(
        "[kill] trial %d: killed at %d ms%s, committed in %.2f s, %llu retries, %llu chunks sent, %llu frame "
        "bytes resent\n",
        t, delay_ms, mid ? " mid-push" : " after the push", (*result)[0].seconds,
        static_cast<unsigned long long>((*result)[0].retries),
        static_cast<unsigned long long>((*result)[0].chunks_sent),
        static_cast<unsigned long long>((*result)[0].frame_bytes_resent));

    RemoteOptions remote;
    remote.address = "127.0.0.1:" + std::to_string(port);
    remote.tls.ca_file = certs_.ca_cert;
    remote.tls.cert_file = certs_.host_cert(kHost);
    remote.tls.key_file = certs_.host_key(kHost);
    fs::path out = dir_ / ("out-" + std::to_string(t));
    auto restored = restore_snapshot(remote, name, out);
    ASSERT_TRUE(restored.is_ok()) << "trial " << t << ": " << restored.status().to_string();
    expect_same_tree(src, out);
    fs::remove_all(out);
    fs::remove_all(src);
  }
  std::printf("[kill] %d of %d kills landed mid-push\n", killed_mid_push, n);
  EXPECT_GT(killed_mid_push, 0);
  kill_serve();
  expect_store_consistent("after all trials");
}

}  // namespace
}  // namespace ferry::replication
