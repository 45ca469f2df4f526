// packer_test.cc: files -> frames: source listing (sorted, nested, symlinks
// skipped), frames in file order with ids and file roots that match an
// independent hash of the files, identical output whatever the window and
// thread count, safetensors layouts carried into the manifest, and a real
// corpus file.
#include "codec/packer.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <map>

#include "codec/chunk_codec.h"
#include "codec/frame.h"
#include "codec/thread_pool.h"
#include "codec/tree_hash.h"
#include "tests/testing/testing.h"

namespace ferry {
namespace {

namespace fs = std::filesystem;

// Keeps every frame it is given, with the path it came with.
class RecordingSink : public FrameSink {
 public:
  Status put_frame(const ManifestFile& file, const ManifestChunk& chunk,
                   std::span<const std::byte> frame) override {
    paths.push_back(file.path);
    chunks.push_back(chunk);
    frames.emplace_back(frame.begin(), frame.end());
    return Status::ok();
  }
  std::vector<std::string> paths;
  std::vector<ManifestChunk> chunks;
  std::vector<std::vector<std::byte>> frames;
};

Digest file_root_of(const std::vector<std::byte>& data) {
  std::vector<Digest> leaves(leaf_count(data.size()));
  hash_leaves(data, leaves);
  return merkle_root(leaves);
}

void make_tree(const fs::path& root, std::uint64_t seed) {
  fs::create_directories(root / "a/b");
  fs::create_directories(root / "c");
  testing::write_file(root / "a/b/weights.bin", testing::normal_floats(300'000, 2, true, 0.02, seed));
  testing::write_file(root / "a/one", {std::byte{42}});
  testing::write_file(root / "c/empty", {});
  testing::write_file(root / "top.json", testing::random_bytes(5000, seed + 1));
  testing::write_file(root / "c/exact4m", testing::random_bytes(4u << 20, seed + 2));
}

TEST(PackerTest, ListsRegularFilesSortedAndSkipsSymlinks) {
  testing::TempDir dir;
  make_tree(dir.path(), 1);
  fs::create_symlink(dir / "top.json", dir / "link.json");
  std::vector<std::string> notices;
  auto sources = list_pack_sources(dir.path(), &notices);
  ASSERT_TRUE(sources.is_ok()) << sources.status().to_string();
  std::vector<std::string> names;
  for (const auto& s : *sources) names.push_back(s.rel_path);
  EXPECT_EQ(names, (std::vector<std::string>{"a/b/weights.bin", "a/one", "c/empty", "c/exact4m", "top.json"}));
  ASSERT_EQ(notices.size(), 1u);
  EXPECT_NE(notices[0].find("link.json"), std::string::npos);

  auto single = list_pack_sources(dir / "top.json");
  ASSERT_TRUE(single.is_ok());
  ASSERT_EQ(single->size(), 1u);
  EXPECT_EQ((*single)[0].rel_path, "top.json");

  EXPECT_EQ(list_pack_sources(dir / "missing").status().code(), Code::kNotFound);
}

TEST(PackerTest, FramesInOrderWithCorrectIdsAndRoots) {
  testing::TempDir dir;
  make_tree(dir.path(), testing::test_seed());
  auto sources = list_pack_sources(dir.path());
  ASSERT_TRUE(sources.is_ok());
  ThreadPool pool(3);
  PackOptions opts;
  opts.pool = &pool;
  opts.chunk_bytes = 1u << 20;
  opts.job = "unit";
  opts.step = 7;
  opts.created_ns = 123;
  int progress_calls = 0;
  opts.progress = [&](const PackProgress& p) {
    ++progress_calls;
    EXPECT_LE(p.logical_done, p.logical_total);
  };
  RecordingSink sink;
  auto m = pack_files(*sources, opts, sink);
  ASSERT_TRUE(m.is_ok()) << m.status().to_string();
  EXPECT_EQ(m->job, "unit");
  EXPECT_EQ(m->step, 7u);
  EXPECT_EQ(m->created_ns, 123);
  EXPECT_FALSE(m->host.empty());
  EXPECT_GT(progress_calls, 0);
  ASSERT_EQ(m->files.size(), 5u);
  ASSERT_EQ(sink.frames.size(), m->chunk_count());

  std::size_t k = 0;
  ChunkDecoder decoder;
  for (const auto& f : m->files) {
    auto data = testing::read_file(dir / f.path);
    EXPECT_EQ(f.size, data.size()) << f.path;
    EXPECT_EQ(f.root, file_root_of(data)) << f.path;
    for (const auto& c : f.chunks) {
      ASSERT_LT(k, sink.frames.size());
      EXPECT_EQ(sink.paths[k], f.path);
      EXPECT_EQ(sink.chunks[k].offset, c.offset);
      EXPECT_LE(c.length, opts.chunk_bytes);
      std::span<const std::byte> piece(data.data() + c.offset, c.length);
      EXPECT_EQ(c.id, chunk_id(piece)) << f.path << " @" << c.offset;
      EXPECT_EQ(c.frame_bytes, sink.frames[k].size());
      std::vector<std::byte> out;
      ASSERT_TRUE(decoder.decode(sink.frames[k], out, &c.id).is_ok());
      EXPECT_TRUE(std::equal(out.begin(), out.end(), piece.begin()));
      ++k;
    }
  }
  // 4 MiB at 1 MiB chunks: four chunks; the empty file: none.
  EXPECT_EQ(m->files[3].chunks.size(), 4u);
  EXPECT_EQ(m->files[2].chunks.size(), 0u);
  EXPECT_EQ(m->files[2].root, merkle_root({}));
}

TEST(PackerTest, OutputDoesNotDependOnParallelism) {
  testing::TempDir dir;
  make_tree(dir.path(), 5);
  auto sources = list_pack_sources(dir.path());
  ASSERT_TRUE(sources.is_ok());
  std::vector<std::vector<std::vector<std::byte>>> runs;
  for (auto [threads, window] : {std::pair<int, int>{1, 1}, {2, 3}, {4, 0}}) {
    ThreadPool pool(threads);
    PackOptions opts;
    opts.pool = &pool;
    opts.window_chunks = window;
    opts.created_ns = 1;
    opts.host = "h";
    RecordingSink sink;
    auto m = pack_files(*sources, opts, sink);
    ASSERT_TRUE(m.is_ok()) << m.status().to_string();
    auto bytes = serialize_manifest(*m);
    sink.frames.push_back(bytes);
    runs.push_back(std::move(sink.frames));
  }
  EXPECT_EQ(runs[0], runs[1]);
  EXPECT_EQ(runs[0], runs[2]);
}

TEST(PackerTest, RejectsBadOptionsAndUnsortedSources) {
  testing::TempDir dir;
  testing::write_file(dir / "x", {std::byte{1}});
  RecordingSink sink;
  std::vector<PackSource> src = {{dir / "x", "x"}};
  EXPECT_EQ(pack_files(src, {.chunk_bytes = 5000}, sink).status().code(), Code::kInvalidArgument);
  std::vector<PackSource> unsorted = {{dir / "x", "b"}, {dir / "x", "a"}};
  EXPECT_EQ(pack_files(unsorted, {}, sink).status().code(), Code::kInvalidArgument);
  std::vector<PackSource> evil = {{dir / "x", "../x"}};
  EXPECT_EQ(pack_files(evil, {}, sink).status().code(), Code::kInvalidArgument);
  std::vector<PackSource> missing = {{dir / "nope", "nope"}};
  EXPECT_FALSE(pack_files(missing, {}, sink).is_ok());
}

TEST(PackerTest, CorpusSafetensorsLayoutReachesTheManifest) {
  auto files = testing::corpus_files();
  if (files.empty()) GTEST_SKIP() << "corpus not laid (set FERRY_CORPUS_DIR; see scripts/test.sh)";
  std::vector<PackSource> src;
  for (const auto& f : files) {
    if (f.path.extension() == ".safetensors") src.push_back({f.path, f.name});
  }
  if (src.empty()) GTEST_SKIP() << "no safetensors file in the corpus";
  std::sort(src.begin(), src.end(), [](auto& a, auto& b) { return a.rel_path < b.rel_path; });
  RecordingSink sink;
  auto m = pack_files(src, {}, sink);
  ASSERT_TRUE(m.is_ok()) << m.status().to_string();
  std::uint64_t frames = 0;
  for (const auto& f : m->files) {
    EXPECT_EQ(f.layout, LayoutKind::kSafetensors) << f.path;
    EXPECT_FALSE(f.tensors.empty()) << f.path;
    EXPECT_EQ(f.root, file_root_of(testing::read_file(src[&f - &m->files[0]].path))) << f.path;
    for (const auto& c : f.chunks) frames += c.frame_bytes;
  }
  // Real weights shrink.
  EXPECT_LT(frames, m->logical_bytes());
}

}  // namespace
}  // namespace ferry
