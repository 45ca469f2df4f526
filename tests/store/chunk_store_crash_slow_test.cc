// chunk_store_crash_slow_test.cc: kill -9 at random points. A child process
// puts, syncs and commits in a loop, reporting through a pipe what it was
// told is durable; the parent kills it at a seeded random time, reopens the
// store and checks: every acknowledged chunk reads back and verifies, every
// committed snapshot is listed with all its chunks, no snapshot file names a
// missing chunk, and scrub is clean. The same for a kill in the middle of gc.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "codec/chunk_codec.h"
#include "codec/manifest.h"
#include "store/local_store.h"
#include "tests/store/chunk_store_test_util.h"
#include "tests/testing/testing.h"

namespace ferry {
namespace {

namespace fs = std::filesystem;
using testing::TestChunk;

constexpr int kPutTrials = 20;
constexpr int kGcTrials = 10;
constexpr std::size_t kPoolChunks = 160;
constexpr std::size_t kBatch = 4;
constexpr std::int64_t kT0 = 1'700'000'000LL * 1'000'000'000;

StoreOptions quiet_options() {
  StoreOptions o;
  o.pack_target_bytes = 1u << 20;  // rotations happen often
  o.gc_grace_seconds = 0;
  o.log = [](std::string_view l) {
    if (std::getenv("FERRY_STORE_LOG")) std::fprintf(stderr, "log: %.*s\n", (int)l.size(), l.data());
  };
  return o;
}

std::vector<TestChunk> chunk_pool(std::size_t n, std::uint64_t seed) {
  std::vector<TestChunk> pool;
  for (std::size_t i = 0; i < n; ++i) pool.push_back(testing::make_chunk(seed + i, 32u << 10));
  return pool;
}

void say(int fd, const std::string& line) {
  const std::string l = line + "\n";
  (void)!::write(fd, l.data(), l.size());
}

// The child: puts batches (new and already stored chunks), syncs, reports
// the acknowledged chunks, commits a snapshot of the batch and reports it.
[[noreturn]] void writer_child(const fs::path& root, const std::vector<TestChunk>& pool, int trial, int fd) {
  auto store = open_local_store(root, quiet_options());
  if (!store) _exit(3);
  std::mt19937_64 rng(static_cast<std::uint64_t>(trial) * 7919);
  for (int i = 0; i < 100000; ++i) {
    std::vector<std::size_t> batch;
    for (std::size_t k = 0; k < kBatch; ++k) batch.push_back(rng() % pool.size());
    for (std::size_t idx : batch) {
      if (!(*store)->put("host-a", pool[idx].frame).is_ok()) _exit(4);
    }
    if (!(*store)->sync("host-a").is_ok()) _exit(5);
    for (std::size_t idx : batch) say(fd, "A " + std::to_string(idx));
    std::vector<const TestChunk*> refs;
    for (std::size_t idx : batch) refs.push_back(&pool[idx]);
    const std::string name = "t" + std::to_string(trial) + "-" + std::to_string(i);
    if (!(*store)->commit_snapshot("host-a", name, testing::manifest_for(refs, kT0 + i)).is_ok()) _exit(6);
    say(fd, "S " + name);
  }
  _exit(0);
}

std::string drain(int fd) {
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(n));
  return out;
}

// Every snapshot file names only present chunks; scrub is clean.
void check_store(ChunkStore& s, const std::set<std::size_t>& acked, const std::set<std::string>& committed,
                 const std::vector<TestChunk>& pool) {
  ChunkDecoder dec;
  std::vector<std::byte> raw;
  for (std::size_t idx : acked) {
    const Digest& id = pool[idx].info.id;
    auto h = s.have("host-a", std::span(&id, 1));
    ASSERT_TRUE(h.is_ok());
    ASSERT_TRUE((*h)[0]) << "acknowledged chunk " << idx << " lost";
    auto f = s.get("host-a", id);
    ASSERT_TRUE(f.is_ok()) << f.status().to_string();
    ASSERT_TRUE(dec.decode(*f, raw, &id).is_ok());
    ASSERT_EQ(raw, pool[idx].raw);
  }
  auto list = s.list("host-a");
  ASSERT_TRUE(list.is_ok());
  std::set<std::string> listed;
  for (const auto& info : *list) {
    listed.insert(info.name);
    auto bytes = s.manifest("host-a", info.name);
    ASSERT_TRUE(bytes.is_ok());
    auto m = parse_manifest(*bytes);
    ASSERT_TRUE(m.is_ok());
    for (const auto& f : m->files) {
      for (const auto& c : f.chunks) {
        auto h = s.have("host-a", std::span(&c.id, 1));
        ASSERT_TRUE(h.is_ok() && (*h)[0]) << "snapshot " << info.name << " visible with a chunk missing";
      }
    }
  }
  for (const std::string& name : committed)
    EXPECT_TRUE(listed.count(name)) << "committed snapshot " << name << " lost";
  auto scrub = s.scrub("host-a");
  ASSERT_TRUE(scrub.is_ok());
  EXPECT_TRUE(scrub->clean()) << scrub->bad_chunks.size() << " bad chunks, " << scrub->broken_snapshots.size()
                              << " broken snapshots";
}

TEST(ChunkStoreCrash, KillDuringPutsAndCommits) {
  const std::uint64_t seed = testing::test_seed();
  std::mt19937_64 rng(seed);
  testing::TempDir dir;
  const auto pool = chunk_pool(kPoolChunks, seed);
  std::set<std::size_t> acked;
  std::set<std::string> committed;
  for (int trial = 0; trial < kPutTrials; ++trial) {
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::close(fds[0]);
      writer_child(dir.path(), pool, trial, fds[1]);
    }
    ::close(fds[1]);
    const int delay_ms = 5 + static_cast<int>(rng() % 120);
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFSIGNALED(status)) << "trial " << trial << ": the writer exited early with "
                                     << WEXITSTATUS(status);
    std::istringstream lines(drain(fds[0]));
    ::close(fds[0]);
    std::string kind, value;
    while (lines >> kind >> value) {
      if (kind == "A") acked.insert(std::stoul(value));
      if (kind == "S") committed.insert(value);
    }
    auto store = open_local_store(dir.path(), quiet_options());
    ASSERT_TRUE(store.is_ok()) << store.status().to_string();
    SCOPED_TRACE("trial " + std::to_string(trial) + ", killed after " + std::to_string(delay_ms) +
                 " ms, seed " + std::to_string(seed));
    check_store(**store, acked, committed, pool);
    if (::testing::Test::HasFatalFailure()) return;
  }
  EXPECT_FALSE(acked.empty()) << "the writer never got far enough to acknowledge anything";
  std::fprintf(stderr, "[ferry] %d kills: %zu distinct chunks acknowledged, %zu snapshots committed\n",
               kPutTrials, acked.size(), committed.size());
}

TEST(ChunkStoreCrash, KillDuringGc) {
  const std::uint64_t seed = testing::test_seed();
  std::mt19937_64 rng(seed);
  testing::TempDir dir;
  const auto pool = chunk_pool(kPoolChunks, seed);
  const fs::path prepared = dir / "prepared";
  std::set<std::size_t> keep;
  {
    auto s = open_local_store(prepared, quiet_options());
    ASSERT_TRUE(s.is_ok());
    std::vector<const TestChunk*> keep_refs, all_refs;
    for (std::size_t i = 0; i < pool.size(); ++i) {
      ASSERT_TRUE((*s)->put("host-a", pool[i].frame).is_ok());
      all_refs.push_back(&pool[i]);
      if (i % 3 == 0) {
        keep.insert(i);
        keep_refs.push_back(&pool[i]);
      }
    }
    ASSERT_TRUE((*s)->commit_snapshot("host-a", "keep", testing::manifest_for(keep_refs, kT0 + 1)).is_ok());
    ASSERT_TRUE((*s)->commit_snapshot("host-a", "all", testing::manifest_for(all_refs, kT0)).is_ok());
    ASSERT_TRUE((*s)->remove_snapshot("host-a", "all", Actor::kOperator).is_ok());
  }
  // How long an uninterrupted gc takes, to spread the kills over it.
  const fs::path timed = dir / "timed";
  fs::copy(prepared, timed, fs::copy_options::recursive);
  double gc_ms = 0;
  {
    auto s = open_local_store(timed, quiet_options());
    ASSERT_TRUE(s.is_ok());
    const auto start = std::chrono::steady_clock::now();
    auto g = (*s)->gc("host-a", Actor::kOperator);
    gc_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    ASSERT_TRUE(g.is_ok()) << g.status().to_string();
    ASSERT_GT(g->packs_rewritten + g->packs_deleted, 0u);
  }
  int interrupted = 0;
  for (int trial = 0; trial < kGcTrials; ++trial) {
    const fs::path root = dir / ("trial" + std::to_string(trial));
    fs::copy(prepared, root, fs::copy_options::recursive);
    // Open (and recover) in the child only, so the kill lands inside gc.
    const int delay_us = static_cast<int>(rng() % static_cast<std::uint64_t>(gc_ms * 1000 * 1.5 + 1000));
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      auto s = open_local_store(root, quiet_options());
      if (!s) _exit(3);
      auto h = (*s)->have("host-a", {});  // recovery before the clock matters
      auto g = (*s)->gc("host-a", Actor::kOperator);
      _exit(h.is_ok() && g.is_ok() ? 0 : 4);
    }
    std::this_thread::sleep_for(std::chrono::microseconds(delay_us));
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    ASSERT_FALSE(WIFEXITED(status) && WEXITSTATUS(status) != 0) << "gc failed on its own";
    if (WIFSIGNALED(status)) ++interrupted;
    auto store = open_local_store(root, quiet_options());
    ASSERT_TRUE(store.is_ok()) << store.status().to_string();
    SCOPED_TRACE("gc trial " + std::to_string(trial) + ", killed after " + std::to_string(delay_us) +
                 " us, seed " + std::to_string(seed));
    check_store(**store, keep, {"keep"}, pool);
    // A later gc finishes the job.
    auto g = (*store)->gc("host-a", Actor::kOperator);
    ASSERT_TRUE(g.is_ok()) << g.status().to_string();
    check_store(**store, keep, {"keep"}, pool);
    auto u = (*store)->usage("host-a");
    EXPECT_EQ(u->chunks, keep.size());
    if (::testing::Test::HasFatalFailure()) return;
  }
  std::fprintf(stderr, "[ferry] gc of %.1f ms: %d of %d runs killed before they finished\n", gc_ms,
               interrupted, kGcTrials);
}

}  // namespace
}  // namespace ferry
