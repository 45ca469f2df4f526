// packer_direct_test.cc: the packer's reads around the page cache
// (O_DIRECT): the same bytes as buffered reads for files with unaligned
// sizes and tails, and no page of a packed file left in the cache.
#include "codec/packer.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <malloc.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include "base/direct_file.h"
#include "base/thread_pool.h"
#include "codec/chunk_codec.h"
#include "codec/delta_codec.h"
#include "codec/engine.h"
#include "codec/frame.h"
#include "codec/tree_hash.h"
#include "tests/codec/packer_test_util.h"
#include "tests/testing/testing.h"

namespace ferry {
namespace {

namespace fs = std::filesystem;
using packer_test::file_root_of;
using packer_test::RecordingSink;

// A safetensors file of `tensors` F32 tensors of `elements` each, with long
// names so that the header spans more than one 4 KiB block.
std::vector<std::byte> wide_safetensors(int tensors, std::size_t elements, std::uint64_t seed) {
  std::string header = "{";
  for (int t = 0; t < tensors; ++t) {
    std::size_t begin = t * elements * 4;
    header += (t ? "," : "") + std::string("\"model.layers.") + std::to_string(t) +
              ".self_attn.q_proj.weight\":{\"dtype\":\"F32\",\"shape\":[" + std::to_string(elements) +
              "],\"data_offsets\":[" + std::to_string(begin) + "," + std::to_string(begin + elements * 4) +
              "]}";
  }
  header += "}";
  std::vector<std::byte> out(8);
  for (int i = 0; i < 8; ++i) out[i] = std::byte(static_cast<std::uint8_t>(header.size() >> (8 * i)));
  for (char ch : header) out.push_back(std::byte(static_cast<std::uint8_t>(ch)));
  auto data = testing::normal_floats(tensors * elements, 4, false, 0.02, seed);
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

// Files whose sizes end at every kind of tail (none, one byte, one short of
// a block, a block, one past it, MiBs and an odd tail) and a safetensors file
// whose header is longer than a block. Returns their contents by name.
std::map<std::string, std::vector<std::byte>> make_tail_tree(const fs::path& root, std::uint64_t seed) {
  std::map<std::string, std::vector<std::byte>> files;
  for (std::size_t size : {0u, 1u, 4095u, 4096u, 4097u, (3u << 20) + 4097u}) {
    files["raw" + std::to_string(size)] = testing::random_bytes(size, seed + size);
  }
  files["model.safetensors"] = wide_safetensors(60, 20'001, seed);
  for (const auto& [name, data] : files) testing::write_file(root / name, data);
  return files;
}

// Pages of `path` in the page cache: mincore over a mapping, which reads
// nothing in.
std::size_t resident_pages(const fs::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  struct stat st {};
  ::fstat(fd, &st);
  std::size_t size = static_cast<std::size_t>(st.st_size);
  std::size_t resident = 0;
  if (size > 0) {
    void* map = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
    const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    std::vector<unsigned char> in_core((size + page - 1) / page);
    if (map != MAP_FAILED && ::mincore(map, size, in_core.data()) == 0) {
      for (unsigned char c : in_core) resident += c & 1;
    }
    if (map != MAP_FAILED) ::munmap(map, size);
  }
  ::close(fd);
  return resident;
}

// Drops just this file's pages from the cache (written back first, so that
// none is dirty and all can go).
void drop_cached_pages(const fs::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0) << path;
  ::fdatasync(fd);
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  ::close(fd);
}

// The tail tree in a scratch directory whose file system takes O_DIRECT
// (the test skips, saying so, where it does not).
class PackerDirectTest : public ::testing::Test {
 protected:
  void SetUp() override {
    contents_ = make_tail_tree(dir_.path(), testing::test_seed());
    auto sources = list_pack_sources(dir_.path());
    ASSERT_TRUE(sources.is_ok());
    sources_ = std::move(sources).value();
    auto probe = DirectReadFile::open(dir_ / "raw4097");
    ASSERT_TRUE(probe.is_ok());
    if (!probe->direct())
      GTEST_SKIP() << "the file system of " << dir_.path() << " does not support O_DIRECT";
  }

  testing::TempDir dir_;
  std::map<std::string, std::vector<std::byte>> contents_;
  std::vector<PackSource> sources_;
};

TEST_F(PackerDirectTest, DirectAndBufferedReadsPackTheSameBytes) {
  for (std::size_t chunk_bytes : {std::size_t{4096}, std::size_t{1} << 20}) {
    SCOPED_TRACE("chunk " + std::to_string(chunk_bytes));
    std::vector<std::vector<std::byte>> runs[2];
    for (bool direct : {true, false}) {
      PackOptions opts;
      opts.chunk_bytes = chunk_bytes;
      opts.created_ns = 1;
      opts.host = "h";
      opts.direct_io = direct;
      RecordingSink sink;
      auto m = pack_files(sources_, opts, sink);
      ASSERT_TRUE(m.is_ok()) << m.status().to_string();
      for (const auto& f : m->files) EXPECT_EQ(f.root, file_root_of(contents_.at(f.path))) << f.path;
      EXPECT_EQ(m->files[0].layout, LayoutKind::kSafetensors);
      sink.frames.push_back(serialize_manifest(*m));
      runs[direct] = std::move(sink.frames);
    }
    EXPECT_EQ(runs[true], runs[false]);
  }
}

TEST_F(PackerDirectTest, DirectReadsLeaveNoPageOfAPackedFileInTheCache) {
  for (const auto& [name, data] : contents_) {
    drop_cached_pages(dir_ / name);
    if (resident_pages(dir_ / name) > 0) {
      GTEST_SKIP() << "the file system of " << dir_.path() << " keeps files in memory (tmpfs?): "
                   << "their pages cannot be dropped";
    }
  }
  RecordingSink sink;
  auto m = pack_files(sources_, {}, sink);
  ASSERT_TRUE(m.is_ok()) << m.status().to_string();
  for (const auto& [name, data] : contents_) EXPECT_EQ(resident_pages(dir_ / name), 0u) << name;

  // Read through the cache instead, the same files do stay there: the check
  // above sees pages when they are left.
  for (const auto& [name, data] : contents_) drop_cached_pages(dir_ / name);
  RecordingSink buffered_sink;
  auto again = pack_files(sources_, {.direct_io = false}, buffered_sink);
  ASSERT_TRUE(again.is_ok()) << again.status().to_string();
  for (const auto& [name, data] : contents_) {
    if (!data.empty()) {
      EXPECT_GT(resident_pages(dir_ / name), 0u) << name;
    }
  }
}

}  // namespace
}  // namespace ferry
