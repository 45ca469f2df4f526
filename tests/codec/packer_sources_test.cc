// packer_sources_test.cc: the packer reads only the files it listed. A file
// swapped for a symlink (to a file the packer was never pointed at) or for
// another file of the same size, after the listing or while the file is
// being packed, is refused as a changed source, and no byte of the other
// file reaches a frame.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "base/thread_pool.h"
#include "codec/packer.h"
#include "tests/testing/testing.h"

namespace ferry {
namespace {

namespace fs = std::filesystem;
constexpr std::size_t kChunk = 64u << 10;

// Keeps the frames; before the first, runs `swap` (once).
class SwappingSink : public FrameSink {
 public:
  explicit SwappingSink(std::function<void()> swap) : swap_(std::move(swap)) {}
  Status put_frame(const ManifestFile&, const ManifestChunk&, std::span<const std::byte> frame) override {
    if (swap_) std::exchange(swap_, nullptr)();
    frames.emplace_back(frame.begin(), frame.end());
    return Status::ok();
  }
  std::vector<std::vector<std::byte>> frames;

 private:
  std::function<void()> swap_;
};

// A checkpoint directory with one file of six chunks, and a secret of the
// same size outside it that the packer must never read.
struct Site {
  testing::TempDir dir;
  fs::path ckpt = dir / "ckpt";
  fs::path file = ckpt / "weights.bin";
  fs::path secret = dir / "secret";
  Site() {
    fs::create_directories(ckpt);
    testing::write_file(file, testing::random_bytes(6 * kChunk, 1));
    testing::write_file(secret, testing::random_bytes(6 * kChunk, 2));
  }
  Result<Manifest> pack(SwappingSink& sink) {
    auto sources = list_pack_sources(ckpt);
    EXPECT_TRUE(sources.is_ok()) << sources.status().to_string();
    if (!sources) return sources.status();
    if (before_) before_();
    ThreadPool pool(2);
    PackOptions o;
    o.chunk_bytes = kChunk;
    o.window_chunks = 1;  // the packer reads at most a window ahead
    o.pool = &pool;
    return pack_files(*sources, o, sink);
  }
  // Runs after the listing, before packing starts.
  std::function<void()> before_;
};

void expect_source_changed(const Result<Manifest>& m, const std::string& why) {
  ASSERT_FALSE(m.is_ok());
  EXPECT_EQ(m.status().detail(), Detail::kSourceChanged) << m.status().to_string();
  EXPECT_NE(m.status().message().find(why), std::string::npos) << m.status().to_string();
}

TEST(PackerSourcesTest, AFileSwappedForASymlinkAfterTheListingIsNotFollowed) {
  Site s;
  s.before_ = [&] {
    fs::remove(s.file);
    fs::create_symlink(s.secret, s.file);
  };
  SwappingSink sink(nullptr);
  expect_source_changed(s.pack(sink), "symlink");
  EXPECT_TRUE(sink.frames.empty());
}

TEST(PackerSourcesTest, AFileSwappedForASymlinkWhilePackedIsNotFollowed) {
  Site s;
  SwappingSink sink([&] {
    // Renamed into place: the name is never missing while chunks are read.
    const fs::path link = s.ckpt / "link";
    fs::create_symlink(s.secret, link);
    fs::rename(link, s.file);
  });
  expect_source_changed(s.pack(sink), "symlink");
  EXPECT_LT(sink.frames.size(), 3u);  // the chunks read before the swap at most
}

TEST(PackerSourcesTest, AFileReplacedByAnotherOfTheSameSizeIsRefused) {
  Site s;
  SwappingSink sink([&] {
    const fs::path next = s.ckpt / "next";
    fs::copy_file(s.secret, next);
    fs::rename(next, s.file);  // same size, same name: only the inode differs
  });
  expect_source_changed(s.pack(sink), "replaced");
  EXPECT_LT(sink.frames.size(), 3u);
}

TEST(PackerSourcesTest, TheListingRecordsEachFilesIdentity) {
  Site s;
  auto sources = list_pack_sources(s.ckpt);
  ASSERT_TRUE(sources.is_ok());
  ASSERT_EQ(sources->size(), 1u);
  struct stat st {};
  ASSERT_EQ(::lstat(s.file.c_str(), &st), 0);
  EXPECT_EQ((*sources)[0].dev, static_cast<std::uint64_t>(st.st_dev));
  EXPECT_EQ((*sources)[0].ino, static_cast<std::uint64_t>(st.st_ino));
  // Unchanged, it packs.
  SwappingSink sink(nullptr);
  auto m = s.pack(sink);
  ASSERT_TRUE(m.is_ok()) << m.status().to_string();
  EXPECT_EQ(sink.frames.size(), 6u);
}

}  // namespace
}  // namespace ferry
