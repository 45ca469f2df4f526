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

#include "replication/cert_gen.h"
#include "replication/restore.h"
#include "replication/sender.h"
#include "store/local_store.h"
#include "tests/replication/ferry_child.h"
#include "tests/testing/testing.h"

namespace ferry::replication {
namespace {

namespace fs = std::filesystem;
using ferry::testing::ChildProcess;

constexpr const char* kHost = "host-a";
constexpr int kDefaultTrials = 20;
constexpr int kServeStartMs = 20'000;
constexpr std::uint64_t kPushBytesPerSecond = 3u << 20;
constexpr int kMaxKillDelayMs = 350;

int trials() {
  const char* env = std::getenv("FERRY_KILL_TRIALS");
  return env != nullptr && std::atoi(env) > 0 ? std::atoi(env) : kDefaultTrials;
}

class ReceiverKillTest : public ::testing::Test {
 protected:
  void SetUp() override {
    CertSetOptions co;
    co.hosts = {kHost};
    auto certs = create_cert_set(dir_ / "certs", co);
    ASSERT_TRUE(certs.is_ok()) << certs.status().to_string();
    certs_ = *certs;
    fs::create_directories(dir_ / "store");
  }

  // Starts `ferry serve` on `port` (0: any) and returns its port.
  std::uint16_t start_serve(std::uint16_t port) {
    auto child = ChildProcess::spawn(
        {FERRY_BIN, "serve", "--store=" + (dir_ / "store").string(), "--ca=" + certs_.ca_cert.string(),
         "--cert=" + certs_.receiver_cert.string(), "--key=" + certs_.receiver_key.string(),
         "--listen=127.0.0.1:" + std::to_string(port)},
        dir_ / "serve.log");
    EXPECT_TRUE(child.is_ok()) << child.status().to_string();
    if (!child.is_ok()) return 0;
    auto line = child->wait_for_line("listening on", kServeStartMs);
    EXPECT_TRUE(line.is_ok()) << line.status().to_string() << "\n" << serve_log();
    if (!line.is_ok()) return 0;
    serve_.emplace(std::move(child).value());
    return ferry::testing::port_of_listening_line(*line);
  }

  void kill_serve() {
    if (serve_) serve_->kill_and_wait(SIGKILL);
    serve_.reset();
  }

  std::string serve_log() const {
    auto bytes = ferry::testing::read_file(dir_ / "serve.log");
    std::string s(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    return s.size() > 4000 ? s.substr(s.size() - 4000) : s;
  }

  // Opens the store as a restarted receiver would (recovery included) and
  // scrubs it: every listed snapshot has all of its chunks, all intact.
  void expect_store_consistent(const std::string& when) {
    auto store = open_local_store(dir_ / "store", {.log = [](std::string_view) {}});
    ASSERT_TRUE(store.is_ok()) << when << ": " << store.status().to_string();
    auto scrub = (*store)->scrub(kHost);
    ASSERT_TRUE(scrub.is_ok()) << when << ": " << scrub.status().to_string();
    for (const auto& b : scrub->broken_snapshots)
      ADD_FAILURE() << when << ": snapshot " << b.name << ": " << b.error;
    for (const auto& b : scrub->bad_chunks)
      ADD_FAILURE() << when << ": bad chunk at " << b.where << ": " << b.error;
  }

  bool listed(const std::string& name) {
    auto store = open_local_store(dir_ / "store", {.log = [](std::string_view) {}});
    EXPECT_TRUE(store.is_ok());
    if (!store.is_ok()) return false;
    auto list = (*store)->list(kHost);
    if (!list.is_ok()) return false;
    for (const auto& s : *list) {
      if (s.name == name) return true;
    }
    return false;
  }

  PushOptions push_options(std::uint16_t port, const std::string& snapshot) const {
    PushOptions o;
    o.targets = {"127.0.0.1:" + std::to_string(port)};
    o.tls.ca_file = certs_.ca_cert;
    o.tls.cert_file = certs_.host_cert(kHost);
    o.tls.key_file = certs_.host_key(kHost);
    o.snapshot = snapshot;
    o.chunk_bytes = 128u << 10;
    o.streams = 3;
    o.created_ns = 1'000'000'000;
    // Enough attempts to outlive a receiver that is down for a while.
    o.retry.max_attempts = 40;
    o.retry.initial_backoff_ms = 20;
    o.retry.max_backoff_ms = 150;
    o.connect_timeout_ms = 3'000;
    o.io_timeout_ms = 10'000;
    // A cap stretches a push of a few MiB over about half a second, so that
    // kills land at every stage of it (HELLO, QUERY, PUTs, COMMIT).
    o.bandwidth_bytes_per_s = kPushBytesPerSecond;
    return o;
  }

  ferry::testing::TempDir dir_;
  CertSet certs_;
  std::optional<ChildProcess> serve_;
};

void make_checkpoint(const fs::path& root, std::uint64_t seed) {
  fs::create_directories(root);
  for (int i = 0; i < 3; ++i) {
    ferry::testing::write_file(root / ("shard" + std::to_string(i) + ".bin"),
                               ferry::testing::normal_floats(400'000 + 10'000 * i, 2, true, 0.02, seed + i));
  }
  ferry::testing::write_file(root / "meta.json", ferry::testing::random_bytes(2000, seed + 9));
}

void expect_same_tree(const fs::path& src, const fs::path& out) {
  for (const auto& e : fs::recursive_directory_iterator(src)) {
    if (!e.is_regular_file()) continue;
    fs::path rel = fs::relative(e.path(), src);
    ASSERT_TRUE(fs::exists(out / rel)) << rel;
    EXPECT_TRUE(ferry::testing::read_file(e.path()) == ferry::testing::read_file(out / rel)) << rel;
  }
}

TEST_F(ReceiverKillTest, PushResumesAfterKillNineAndStoreStaysConsistent) {
  const std::uint64_t seed = ferry::testing::test_seed();
  std::mt19937_64 rng(seed);
  const int n = trials();
  std::printf("[kill] %d trials, FERRY_TEST_SEED=%llu\n", n, static_cast<unsigned long long>(seed));
  std::uint16_t port = start_serve(0);
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
