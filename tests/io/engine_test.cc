// engine_test.cc: file operations through io::Engine, against both backends:
// O_DIRECT with unaligned heads, tails and buffers, short reads at end of
// file, a full filesystem, cancellation, timers, back-pressure and many
// concurrent operations.
#include "io/engine.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/resource.h>

#include <cstring>
#include <map>
#include <random>

#include "tests/io/engine_fixture.h"
#include "tests/testing/buffer_pool.h"
#include "tests/testing/io_file.h"
#include "tests/testing/testing.h"

namespace ferry::io {
namespace {

using ferry::testing::random_bytes;
using ferry::testing::TempDir;
using ferry::testing::test_seed;
using testing::EngineTest;

std::vector<std::byte> slice(const std::vector<std::byte>& v, std::size_t off, std::size_t len) {
  if (off >= v.size()) return {};
  len = std::min(len, v.size() - off);
  return {v.begin() + off, v.begin() + off + len};
}

TEST_P(EngineTest, DirectWriteFsyncReadRoundTripWithRegisteredBuffersAndFiles) {
  TempDir dir;
  std::string path = dir / "data";
  auto file = File::open(path, {.create = true, .truncate = true, .direct = true});
  ASSERT_TRUE(file.is_ok()) << file.status().to_string();
  EXPECT_TRUE(file->direct()) << "the test directory refused O_DIRECT";
  auto pool = BufferPool::create(256 << 10, 4);
  ASSERT_TRUE(pool.is_ok()) << pool.status().to_string();
  iovec region = pool->region();
  ASSERT_TRUE(engine_->register_buffers({&region, 1}).is_ok());
  ASSERT_TRUE(engine_->register_file(file->fd()).is_ok());

  auto data = random_bytes(1 << 20, test_seed());
  auto buf = pool->buffer(0);
  for (std::size_t off = 0; off < data.size(); off += buf.size()) {
    std::memcpy(buf.data(), data.data() + off, buf.size());
    Completion c = run(Op::write(file->ref(), buf, off, off));
    ASSERT_TRUE(c.status.is_ok()) << c.status.to_string();
    EXPECT_EQ(c.bytes, buf.size());
  }
  Completion s = run(Op::fsync(file->ref(), 7));
  ASSERT_TRUE(s.status.is_ok()) << s.status.to_string();
  EXPECT_TRUE(run(Op::fdatasync(file->ref(), 8)).status.is_ok());
  EXPECT_EQ(ferry::testing::read_file(path), data);

  auto rbuf = pool->buffer(1);
  for (std::size_t off = 0; off < data.size(); off += rbuf.size()) {
    Completion c = run(Op::read(file->ref(), rbuf, off, off));
    ASSERT_TRUE(c.status.is_ok()) << c.status.to_string();
    ASSERT_EQ(c.bytes, rbuf.size());
    ASSERT_EQ(0, std::memcmp(rbuf.data(), data.data() + off, rbuf.size())) << "offset " << off;
  }
  EXPECT_TRUE(engine_->unregister_file(file->fd()).is_ok());
}

TEST_P(EngineTest, DirectReadsWithUnalignedHeadsTailsAndBuffers) {
  TempDir dir;
  std::string path = dir / "odd";
  auto data = random_bytes((1 << 20) + 1234, test_seed());  // ends mid-block
  ferry::testing::write_file(path, data);
  auto file = File::open(path, {.direct = true});
  ASSERT_TRUE(file.is_ok()) << file.status().to_string();
  auto pool = BufferPool::create(1 << 20, 1);
  ASSERT_TRUE(pool.is_ok());
  auto whole = pool->buffer(0);

  struct Case {
    std::size_t offset, len, buf_shift;
  };
  const Case cases[] = {
      {0, 4096, 0},                 // aligned
      {0, 1 << 20, 0},              // aligned, large
      {100, 4096, 0},               // unaligned head
      {4096, 5000, 0},              // unaligned tail
      {4096, 8192, 1},              // unaligned buffer
      {(1 << 20) - 4096, 8192, 0},  // aligned, crosses end of file: short
      {(1 << 20) + 1000, 4096, 0},  // unaligned, crosses end of file
      {(1 << 20) + 1234, 4096, 0},  // starts exactly at end of file
      {(1 << 20) + 8192, 4096, 0},  // past end of file
      {12345, 3, 7},                // tiny
  };
  for (const Case& k : cases) {
    std::span<std::byte> buf = whole.subspan(k.buf_shift, k.len);
    std::memset(buf.data(), 0xee, buf.size());
    Completion c = run(Op::read(file->ref(), buf, k.offset, k.offset));
    ASSERT_TRUE(c.status.is_ok()) << c.status.to_string();
    auto want = slice(data, k.offset, k.len);
    ASSERT_EQ(c.bytes, want.size()) << "offset " << k.offset << " len " << k.len;
    if (!want.empty()) {  // past the end there is nothing (and no pointer) to compare
      EXPECT_EQ(0, std::memcmp(buf.data(), want.data(), want.size())) << "offset " << k.offset;
    }
  }
}

TEST_P(EngineTest, DirectWritesWithUnalignedHeadsAndTails) {
  TempDir dir;
  std::string path = dir / "w";
  auto file = File::open(path, {.create = true, .direct = true});
  ASSERT_TRUE(file.is_ok()) << file.status().to_string();
  auto pool = BufferPool::create(64 << 10, 1);
  ASSERT_TRUE(pool.is_ok());
  auto src = random_bytes(64 << 10, test_seed());
  std::memcpy(pool->buffer(0).data(), src.data(), src.size());
  std::vector<std::byte> expect(200000, std::byte{0});
  // Aligned, then an unaligned head, an unaligned tail, and an unaligned
  // buffer; the file ends mid-block.
  const std::size_t offsets[] = {0, 70000, 135168, 4096 * 20 + 1};
  const std::size_t lens[] = {65536, 30000, 64832, 1000};
  const std::size_t shifts[] = {0, 0, 0, 3};
  for (int i = 0; i < 4; ++i) {
    auto buf = pool->buffer(0).subspan(shifts[i], lens[i]);
    Completion c = run(Op::write(file->ref(), buf, offsets[i], i));
    ASSERT_TRUE(c.status.is_ok()) << c.status.to_string();
    EXPECT_EQ(c.bytes, lens[i]);
    std::memcpy(expect.data() + offsets[i], buf.data(), lens[i]);
  }
  ASSERT_TRUE(run(Op::fsync(file->ref(), 9)).status.is_ok());
  auto got = ferry::testing::read_file(path);
  ASSERT_EQ(got.size(), 200000u);
  EXPECT_EQ(got, expect);
}

TEST_P(EngineTest, ShortReadsStopAtEndOfFile) {
  TempDir dir;
  std::string path = dir / "short";
  auto data = random_bytes(10000, test_seed());
  ferry::testing::write_file(path, data);
  auto file = File::open(path, {});
  ASSERT_TRUE(file.is_ok());
  std::vector<std::byte> buf(20000);
  Completion c = run(Op::read(file->ref(), buf, 0, 1));
  ASSERT_TRUE(c.status.is_ok());
  EXPECT_EQ(c.bytes, 10000u);
  EXPECT_EQ(0, std::memcmp(buf.data(), data.data(), 10000));
  c = run(Op::read(file->ref(), buf, 10000, 2));
  ASSERT_TRUE(c.status.is_ok());
  EXPECT_EQ(c.bytes, 0u);
  c = run(Op::read(file->ref(), {buf.data(), 0}, 0, 3));
  ASSERT_TRUE(c.status.is_ok());
  EXPECT_EQ(c.bytes, 0u);
}

TEST_P(EngineTest, ErrorsNameOperationPathOffsetAndErrno) {
  TempDir dir;
  std::string path = dir / "ro";
  ferry::testing::write_file(path, random_bytes(100, 1));
  auto file = File::open(path, {});  // read-only
  ASSERT_TRUE(file.is_ok());
  std::vector<std::byte> buf(4096);
  Completion c = run(Op::write(file->ref(), buf, 8192, 5));
  ASSERT_FALSE(c.status.is_ok());
  const std::string& m = c.status.message();
  EXPECT_NE(m.find("write"), std::string::npos) << m;
  EXPECT_NE(m.find(path), std::string::npos) << m;
  EXPECT_NE(m.find("offset 8192"), std::string::npos) << m;
  EXPECT_NE(m.find(std::strerror(EBADF)), std::string::npos) << m;

  auto missing = File::open((dir / "missing").string(), {});
  ASSERT_FALSE(missing.is_ok());
  EXPECT_EQ(missing.status().code(), Code::kNotFound);
  EXPECT_NE(missing.status().message().find("missing"), std::string::npos);
}

// A small filesystem that fills up: a 1 MiB tmpfs when we may mount (root),
// else RLIMIT_FSIZE on a plain directory.
class SmallFilesystem {
 public:
  static constexpr std::size_t kBytes = 1 << 20;
  SmallFilesystem() {
    mounted_ = ::mount("tmpfs", dir_.path().c_str(), "tmpfs", 0, "size=1m") == 0;
    if (!mounted_) {
      ::getrlimit(RLIMIT_FSIZE, &saved_);
      rlimit small = saved_;
      small.rlim_cur = kBytes;
      limited_ = ::setrlimit(RLIMIT_FSIZE, &small) == 0;
      old_handler_ = ::signal(SIGXFSZ, SIG_IGN);
    }
  }
  ~SmallFilesystem() {
    if (mounted_) ::umount2(dir_.path().c_str(), MNT_DETACH);
    if (limited_) ::setrlimit(RLIMIT_FSIZE, &saved_);
    if (!mounted_) ::signal(SIGXFSZ, old_handler_);
  }
  bool usable() const { return mounted_ || limited_; }
  const char* how() const { return mounted_ ? "tmpfs size=1m" : "RLIMIT_FSIZE 1 MiB"; }
  std::string path(const char* name) const { return dir_ / name; }

 private:
  TempDir dir_;
  bool mounted_ = false;
  bool limited_ = false;
  rlimit saved_{};
  sighandler_t old_handler_ = SIG_DFL;
};

TEST_P(EngineTest, FullFilesystemIsResourceExhaustedAndNothingFailedIsAcknowledged) {
  SmallFilesystem fs;
  if (!fs.usable()) GTEST_SKIP() << "can neither mount tmpfs nor set RLIMIT_FSIZE";
  RecordProperty("small_fs", fs.how());
  std::string path = fs.path("fill");
  auto file = File::open(path, {.create = true, .truncate = true});
  ASSERT_TRUE(file.is_ok()) << file.status().to_string();

  constexpr std::size_t kBlock = 64 << 10;
  constexpr std::size_t kBlocks = 3 * SmallFilesystem::kBytes / kBlock;  // 3x the space
  auto data = random_bytes(kBlocks * kBlock, test_seed());
  std::map<std::uint64_t, Completion> done;
  std::size_t next = 0;
  std::vector<Completion> out(kDepth);
  while (done.size() < kBlocks) {
    while (next < kBlocks && engine_->outstanding() < engine_->queue_depth()) {
      std::span<const std::byte> b(data.data() + next * kBlock, kBlock);
      ASSERT_TRUE(engine_->submit(Op::write(file->ref(), b, next * kBlock, next)).is_ok());
      ++next;
    }
    auto n = engine_->wait(out, 1, 10'000);
    ASSERT_TRUE(n.is_ok() && *n > 0);
    for (std::size_t i = 0; i < *n; ++i) done[out[i].tag] = std::move(out[i]);
  }
  Completion fs_sync = run(Op::fsync(file->ref(), 999));

  std::size_t failed = 0;
  std::size_t acked_bytes = 0;
  auto on_disk = ferry::testing::read_file(path);
  for (auto& [tag, c] : done) {
    if (c.status.is_ok()) {
      ASSERT_EQ(c.bytes, kBlock);
      acked_bytes += kBlock;
      // Every acknowledged block really is there.
      ASSERT_GE(on_disk.size(), (tag + 1) * kBlock) << "block " << tag;
      ASSERT_EQ(0, std::memcmp(on_disk.data() + tag * kBlock, data.data() + tag * kBlock, kBlock))
          << "block " << tag;
      continue;
    }
    ++failed;
    EXPECT_EQ(c.status.code(), Code::kResourceExhausted) << c.status.to_string();
    EXPECT_NE(c.status.message().find(path), std::string::npos) << c.status.message();
    EXPECT_NE(c.status.message().find("offset"), std::string::npos) << c.status.message();
  }
  EXPECT_GT(failed, 0u) << "the small filesystem never filled";
  EXPECT_LE(acked_bytes, SmallFilesystem::kBytes);
  (void)fs_sync;
}

TEST_P(EngineTest, ManyConcurrentReadsWithBackPressure) {
  TempDir dir;
  std::string path = dir / "many";
  auto data = random_bytes(4 << 20, test_seed());
  ferry::testing::write_file(path, data);
  auto file = File::open(path, {.direct = true});
  ASSERT_TRUE(file.is_ok());
  constexpr std::size_t kOps = 512;
  constexpr std::size_t kLen = 16 << 10;
  auto pool = BufferPool::create(kLen, kDepth);
  ASSERT_TRUE(pool.is_ok());
  std::mt19937_64 rng(test_seed());
  std::vector<std::uint64_t> offsets(kOps);
  for (auto& o : offsets) o = rng() % (data.size() - kLen) / 512 * 512;  // some unaligned to 4 KiB

  std::vector<std::size_t> buf_of(kOps);
  std::size_t next = 0, completed = 0;
  std::vector<Completion> out(kDepth);
  bool saw_full = false;
  while (completed < kOps) {
    while (next < kOps) {
      auto b = pool->acquire();
      if (!b) {
        // All buffers out means the queue is full too: the engine refuses more.
        Status st = engine_->submit(Op::timer(1, 1u << 30));
        EXPECT_EQ(st.code(), Code::kResourceExhausted) << st.to_string();
        saw_full = true;
        break;
      }
      buf_of[next] = *b;
      ASSERT_TRUE(engine_->submit(Op::read(file->ref(), pool->buffer(*b), offsets[next], next)).is_ok());
      ++next;
    }
    auto n = engine_->wait(out, 1);
    ASSERT_TRUE(n.is_ok());
    for (std::size_t i = 0; i < *n; ++i) {
      const Completion& c = out[i];
      ASSERT_TRUE(c.status.is_ok()) << c.status.to_string();
      ASSERT_EQ(c.bytes, kLen);
      ASSERT_EQ(0, std::memcmp(pool->buffer(buf_of[c.tag]).data(), data.data() + offsets[c.tag], kLen))
          << "op " << c.tag;
      pool->release(buf_of[c.tag]);
      ++completed;
    }
  }
  EXPECT_TRUE(saw_full);
  EXPECT_EQ(engine_->outstanding(), 0u);
}

TEST_P(EngineTest, TimersFireAndCancelledTimersAbort) {
  auto t0 = std::chrono::steady_clock::now();
  Completion c = run(Op::timer(30, 1));
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
  EXPECT_TRUE(c.status.is_ok()) << c.status.to_string();
  EXPECT_GE(ms.count(), 25);

  ASSERT_TRUE(engine_->submit(Op::timer(60'000, 2)).is_ok());
  ASSERT_TRUE(engine_->submit(Op::timer(60'000, 3)).is_ok());
  auto none = engine_->wait_one(20);
  EXPECT_EQ(none.status().code(), Code::kTimeout);
  ASSERT_TRUE(engine_->cancel(2).is_ok());
  auto got = engine_->wait_one(5'000);
  ASSERT_TRUE(got.is_ok());
  EXPECT_EQ(got->tag, 2u);
  EXPECT_EQ(got->status.code(), Code::kAborted) << got->status.to_string();
  EXPECT_EQ(engine_->cancel(12345).code(), Code::kNotFound);
  // Tag 3 is still outstanding; the engine's destructor cancels and drains it.
  EXPECT_EQ(engine_->outstanding(), 1u);
}

TEST_P(EngineTest, InvalidOperationsAreRefusedAtSubmit) {
  Op op;
  op.kind = OpKind::kRead;
  EXPECT_EQ(engine_->submit(op).code(), Code::kInvalidArgument);
  EXPECT_EQ(engine_->submit(Op::timer(-1, 0)).code(), Code::kInvalidArgument);
  EXPECT_EQ(engine_->outstanding(), 0u);
}

FERRY_ENGINE_SUITE(EngineTest);

TEST(EngineFactory, ChoosesABackendAndRejectsBadOptions) {
  EngineOptions o;
  o.log_choice = false;
  o.queue_depth = 0;
  EXPECT_EQ(make_engine(o).status().code(), Code::kInvalidArgument);
  o.queue_depth = 8;
  auto e = make_engine(o);
  ASSERT_TRUE(e.is_ok()) << e.status().to_string();
  EXPECT_NE((*e)->backend(), Backend::kAuto);
  EXPECT_EQ((*e)->queue_depth(), 8u);

  EXPECT_EQ(*parse_backend("io_uring"), Backend::kUring);
  EXPECT_EQ(*parse_backend("threads"), Backend::kThreads);
  EXPECT_EQ(*parse_backend("auto"), Backend::kAuto);
  EXPECT_EQ(parse_backend("spdk").status().code(), Code::kInvalidArgument);
}

TEST(UringOptions, SqpollAndSingleThreadModesMoveData) {
  TempDir dir;
  std::string path = dir / "modes";
  auto data = random_bytes(256 << 10, test_seed());
  for (int mode = 0; mode < 2; ++mode) {
    EngineOptions o;
    o.backend = Backend::kUring;
    o.log_choice = false;
    o.sqpoll = mode == 0;
    o.single_thread = mode == 1;
    auto e = make_engine(o);
    if (!e.is_ok()) GTEST_SKIP() << "io_uring unavailable: " << e.status().to_string();
    auto file = File::open(path, {.create = true, .truncate = true, .direct = true});
    ASSERT_TRUE(file.is_ok());
    ASSERT_TRUE((*e)->register_file(file->fd()).is_ok());
    ASSERT_TRUE((*e)->submit(Op::write(file->ref(), data, 0, 1)).is_ok());
    auto c = (*e)->wait_one(10'000);
    ASSERT_TRUE(c.is_ok() && c->status.is_ok()) << "mode " << mode;
    std::vector<std::byte> back(data.size());
    ASSERT_TRUE((*e)->submit(Op::read(file->ref(), back, 0, 2)).is_ok());
    c = (*e)->wait_one(10'000);
    ASSERT_TRUE(c.is_ok() && c->status.is_ok()) << "mode " << mode;
    EXPECT_EQ(c->bytes, data.size());
    EXPECT_EQ(back, data) << "mode " << mode;
  }
}

}  // namespace
}  // namespace ferry::io
