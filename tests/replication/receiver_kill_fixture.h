// receiver_kill_fixture.h: what the kill -9 tests of `ferry serve` share
// (receiver_kill_slow_test.cc, receiver_kill_delta_slow_test.cc): the real
// binary started on a store and port and killed with SIGKILL, the store
// reopened as a restarted receiver would and scrubbed, push options that
// stretch a push over the kill window, and the trial count
// (FERRY_KILL_TRIALS, 20 by default).
#pragma once

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>

#include "replication/cert_gen.h"
#include "replication/restore.h"
#include "replication/sender.h"
#include "store/local_store.h"
#include "tests/replication/ferry_child.h"
#include "tests/testing/testing.h"

namespace ferry::replication::kill_testing {

namespace fs = std::filesystem;
using ferry::testing::ChildProcess;

inline constexpr const char* kHost = "host-a";
inline constexpr int kDefaultTrials = 20;
inline constexpr int kServeStartMs = 20'000;
inline constexpr std::uint64_t kPushBytesPerSecond = 3u << 20;
inline constexpr int kMaxKillDelayMs = 350;

inline int trials() {
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

  // Says how the run can be replayed and starts `ferry serve` on any port;
  // returns the port (0 on failure).
  std::uint16_t start_trials(int n, std::uint64_t seed) {
    std::printf("[kill] %d trials, FERRY_TEST_SEED=%llu\n", n, static_cast<unsigned long long>(seed));
    return start_serve(0);
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

inline void make_checkpoint(const fs::path& root, std::uint64_t seed) {
  fs::create_directories(root);
  for (int i = 0; i < 3; ++i) {
    ferry::testing::write_file(root / ("shard" + std::to_string(i) + ".bin"),
                               ferry::testing::normal_floats(400'000 + 10'000 * i, 2, true, 0.02, seed + i));
  }
  ferry::testing::write_file(root / "meta.json", ferry::testing::random_bytes(2000, seed + 9));
}

inline void expect_same_tree(const fs::path& src, const fs::path& out) {
  for (const auto& e : fs::recursive_directory_iterator(src)) {
    if (!e.is_regular_file()) continue;
    fs::path rel = fs::relative(e.path(), src);
    ASSERT_TRUE(fs::exists(out / rel)) << rel;
    EXPECT_TRUE(ferry::testing::read_file(e.path()) == ferry::testing::read_file(out / rel)) << rel;
  }
}

}  // namespace ferry::replication::kill_testing
