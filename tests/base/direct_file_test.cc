// direct_file_test.cc: reads around the page cache. O_DIRECT reads of files
// whose sizes are not block multiples (the tail read whole into the padding)
// return exactly the bytes a buffered read returns; a file that ends early is
// Corruption naming the path and offset; a file system that refuses O_DIRECT
// is read through the cache instead, and that is said once per process.
#include "base/direct_file.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "base/aligned_bytes.h"
#include "base/limits.h"
#include "tests/testing/testing.h"

namespace ferry {
namespace {

namespace fs = std::filesystem;

// The edge sizes of a tail: none, one byte, one short of a block, a block,
// one past it, and several MiB plus an odd tail.
const std::vector<std::size_t> kSizes = {0, 1, 4095, 4096, 4097, (3u << 20) + 4097};

// Reads [offset, offset + length) through a buffered descriptor.
std::vector<std::byte> buffered_read(const fs::path& path, std::size_t length, std::uint64_t offset) {
  auto f = DirectReadFile::open(path, /*direct=*/false);
  EXPECT_TRUE(f.is_ok()) << f.status().to_string();
  EXPECT_FALSE(f->direct());
  std::vector<std::byte> out(length);
  Status st = f->read(out, length, offset);
  EXPECT_TRUE(st.is_ok()) << st.to_string();
  return out;
}

// Reads the whole file through `f` in pieces of `piece` bytes (a multiple of
// kDirectAlignBytes), the last one short, as the packer reads chunks.
std::vector<std::byte> read_in_pieces(const DirectReadFile& f, std::size_t size, std::size_t piece) {
  std::vector<std::byte> out;
  AlignedBytes buf;
  for (std::size_t at = 0; at < size; at += piece) {
    std::size_t n = std::min(piece, size - at);
    buf.take(n);
    Status st = f.read(buf.padded(), n, at);
    EXPECT_TRUE(st.is_ok()) << st.to_string() << " at " << at;
    out.insert(out.end(), buf.view().begin(), buf.view().end());
  }
  return out;
}

bool refuses_direct(const fs::path& dir) {
  fs::path probe = dir / ".ferry-direct-probe";
  testing::write_file(probe, {std::byte{1}});
  int fd = ::open(probe.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC);
  int err = errno;
  if (fd >= 0) ::close(fd);
  fs::remove(probe);
  return fd < 0 && err == EINVAL;
}

// A scratch directory on a file system that refuses O_DIRECT: /dev/shm where
// its tmpfs does (Linux before 6.6), else a ramfs mounted for the test (root
// only). why_not() says why there is none.
class NoDirectDir {
 public:
  NoDirectDir() {
    if (fs::is_directory("/dev/shm") && ::access("/dev/shm", W_OK) == 0 && refuses_direct("/dev/shm")) {
      shm_ = fs::path("/dev/shm") / ("ferry-test-" + std::to_string(::getpid()));
      fs::create_directories(shm_);
      path_ = shm_;
      return;
    }
    if (::mount("ferry-test", scratch_.path().c_str(), "ramfs", 0, nullptr) != 0) {
      why_not_ = std::string("/dev/shm accepts O_DIRECT and a ramfs cannot be mounted here (") +
                 std::strerror(errno) + ")";
      return;
    }
    mounted_ = true;
    if (!refuses_direct(scratch_.path())) {
      why_not_ = "neither /dev/shm nor ramfs refuses O_DIRECT on this kernel";
      return;
    }
    path_ = scratch_.path();
  }
  ~NoDirectDir() {
    if (mounted_) ::umount2(scratch_.path().c_str(), MNT_DETACH);
    if (!shm_.empty()) fs::remove_all(shm_);
  }
  const fs::path& path() const { return path_; }
  const std::string& why_not() const { return why_not_; }

 private:
  testing::TempDir scratch_;
  fs::path shm_;
  fs::path path_;
  bool mounted_ = false;
  std::string why_not_;
};

std::size_t count_of(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

TEST(DirectReadFile, TailsAndUnalignedSizesReadTheSameBytesAsTheCache) {
  testing::TempDir dir;
  const std::uint64_t seed = testing::test_seed();
  for (std::size_t size : kSizes) {
    SCOPED_TRACE("size " + std::to_string(size));
    fs::path path = dir / ("f" + std::to_string(size));
    auto data = testing::random_bytes(size, seed + size);
    testing::write_file(path, data);
    auto f = DirectReadFile::open(path);
    ASSERT_TRUE(f.is_ok()) << f.status().to_string();
    if (!f->direct()) GTEST_SKIP() << "the file system of " << dir.path() << " does not support O_DIRECT";
    ASSERT_EQ(buffered_read(path, size, 0), data);
    // Whole file in one read, in 1 MiB pieces, in single blocks.
    for (std::size_t piece :
         {round_up_to_direct_align(size) + kDirectAlignBytes, std::size_t{1} << 20, kDirectAlignBytes}) {
      EXPECT_EQ(read_in_pieces(*f, size, piece), data) << "pieces of " << piece;
    }
  }
}

TEST(DirectReadFile, AFileEndingBeforeTheReadIsCorruptionAtThatOffset) {
  testing::TempDir dir;
  fs::path path = dir / "short";
  testing::write_file(path, testing::random_bytes(5000, testing::test_seed()));
  for (bool direct : {true, false}) {
    SCOPED_TRACE(direct ? "O_DIRECT" : "buffered");
    auto f = DirectReadFile::open(path, direct);
    ASSERT_TRUE(f.is_ok()) << f.status().to_string();
    AlignedBytes buf;
    // Ends inside the tail block, inside the second block read, and past it.
    for (auto [length, offset, end] : {std::tuple<std::size_t, std::uint64_t, std::uint64_t>{6000, 0, 5000},
                                       {8192, 4096, 5000},
                                       {4096, 8192, 8192}}) {
      buf.take(length);
      Status st = f->read(buf.padded(), length, offset);
      EXPECT_EQ(st.code(), Code::kCorruption) << st.to_string();
      EXPECT_NE(st.message().find(path.string()), std::string::npos) << st.message();
      EXPECT_NE(st.message().find("unexpected end of file at offset " + std::to_string(end)),
                std::string::npos)
          << st.message();
    }
  }
  EXPECT_EQ(DirectReadFile::open(dir / "missing").status().code(), Code::kNotFound);
}

TEST(DirectReadFile, AFileSystemWithoutODirectIsReadThroughTheCacheAndSaidOnce) {
  NoDirectDir dir;
  if (dir.path().empty()) GTEST_SKIP() << dir.why_not();
  const std::uint64_t seed = testing::test_seed();
  const std::uint64_t refusals_before = direct_refusal_count();
  ::testing::internal::CaptureStderr();
  for (std::size_t size : kSizes) {
    SCOPED_TRACE("size " + std::to_string(size));
    fs::path path = dir.path() / ("f" + std::to_string(size));
    auto data = testing::random_bytes(size, seed + size);
    testing::write_file(path, data);
    auto f = DirectReadFile::open(path);
    ASSERT_TRUE(f.is_ok()) << f.status().to_string();
    EXPECT_FALSE(f->direct());
    EXPECT_EQ(read_in_pieces(*f, size, std::size_t{1} << 20), data);
  }
  std::string said = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(direct_refusal_count(), refusals_before + kSizes.size());
  // Once per process: the first refusal is named, later ones are not.
  EXPECT_EQ(count_of(said, "O_DIRECT refused"), refusals_before == 0 ? 1u : 0u) << said;
  if (refusals_before == 0) {
    EXPECT_NE(said.find((dir.path() / "f0").string()), std::string::npos) << said;
  }
}

}  // namespace
}  // namespace ferry
