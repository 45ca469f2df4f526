// packer_test.cc: files -> frames: source listing (sorted, nested, symlinks
// skipped), frames in file order with ids and file roots that match an
// independent hash of the files, identical output whatever the window and
// thread count, safetensors layouts carried into the manifest, a real
// corpus file, every window coded in one batch through the codec engine, and
// a file that grows while it is packed reported as a changed source. Reads
// around the page cache: packer_direct_test.cc.
#include "codec/packer.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/inotify.h>
#include <sys/mman.h>
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
#include "base/unique_fd.h"
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
  EXPECT_EQ(names,
            (std::vector<std::string>{"a/b/weights.bin", "a/one", "c/empty", "c/exact4m", "top.json"}));
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

// The tree of make_tree plus a file of zeros, packed in 1 MiB chunks on two
// threads with the default engine: what other packings of it must reproduce.
struct PackedTree {
  testing::TempDir dir;
  ThreadPool pool{2};
  std::vector<PackSource> sources;
  PackOptions opts;
  RecordingSink plain;
  Manifest want;
};

void pack_tree(PackedTree& t, std::size_t zeros_bytes) {
  make_tree(t.dir.path(), testing::test_seed());
  testing::write_file(t.dir / "zeros", std::vector<std::byte>(zeros_bytes));
  auto sources = list_pack_sources(t.dir.path());
  ASSERT_TRUE(sources.is_ok());
  t.sources = std::move(sources).value();
  t.opts.pool = &t.pool;
  t.opts.chunk_bytes = 1u << 20;
  t.opts.created_ns = 9;
  t.opts.host = "h";
  auto want = pack_files(t.sources, t.opts, t.plain);
  ASSERT_TRUE(want.is_ok()) << want.status().to_string();
  t.want = std::move(want).value();
}

// Lends its own buffers for the frames it will be sent (FrameSink::
// lend_frame) and records where each frame arrives.
class LendingSink : public RecordingSink {
 public:
  std::vector<std::byte> lend_frame(std::size_t bytes) override {
    std::vector<std::byte> v(bytes, std::byte{0xa5});  // stale bytes must not leak into a frame
    lent.insert(v.data());
    lent_sizes.push_back(bytes);
    return v;
  }
  Status put_lent_frame(const ManifestFile& file, const ManifestChunk& chunk,
                        std::vector<std::byte>&& frame) override {
    in_lent_buffer += lent.erase(frame.data());
    kept.push_back(std::move(frame));  // keeps the address from being lent again
    return put_frame(file, chunk, kept.back());
  }
  std::set<const std::byte*> lent;
  std::vector<std::size_t> lent_sizes;
  std::vector<std::vector<std::byte>> kept;
  std::size_t in_lent_buffer = 0;
};

TEST(PackerTest, FramesAreCodedIntoBuffersTheSinkLends) {
  PackedTree t;
  ASSERT_NO_FATAL_FAILURE(pack_tree(t, 2u << 20));
  PackOptions opts = t.opts;

  // Every frame is coded into a lent buffer, as the plain sink's copy has it.
  LendingSink lending;
  auto m = pack_files(t.sources, opts, lending);
  ASSERT_TRUE(m.is_ok()) << m.status().to_string();
  EXPECT_EQ(serialize_manifest(*m), serialize_manifest(t.want));
  EXPECT_EQ(lending.frames, t.plain.frames);
  EXPECT_EQ(lending.in_lent_buffer, t.plain.frames.size());
  EXPECT_TRUE(lending.lent.empty()) << "every lent buffer comes back with its frame";
  for (std::size_t i = 0; i < lending.chunks.size(); ++i) {
    EXPECT_EQ(lending.lent_sizes[i], frame_room_bytes(lending.chunks[i].length));
  }

  // With have/need, only the chunks to send get a buffer; a chunk coded only
  // to learn its frame size is coded into the packer's own memory.
  opts.need = [](std::span<const Digest> ids) -> Result<std::vector<bool>> {
    std::vector<bool> out;
    for (std::size_t i = 0; i < ids.size(); ++i) out.push_back(i % 2 == 0);
    return out;
  };
  LendingSink half;
  auto part = pack_files(t.sources, opts, half);
  ASSERT_TRUE(part.is_ok()) << part.status().to_string();
  EXPECT_EQ(serialize_manifest(*part), serialize_manifest(t.want));
  EXPECT_GT(half.frames.size(), 0u);
  EXPECT_LT(half.frames.size(), t.plain.frames.size());
  EXPECT_EQ(half.lent_sizes.size(), half.frames.size());
  EXPECT_EQ(half.in_lent_buffer, half.frames.size());
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

// Have/need: the manifest does not depend on what the destination holds;
// only the frames asked for are sent, a repeated id goes once, and with
// known frame facts a held chunk is never encoded.
class SkipCountingSink : public RecordingSink {
 public:
  Status skip_chunk(const ManifestFile& file, const ManifestChunk& chunk) override {
    skipped.push_back(chunk);
    (void)file;
    return Status::ok();
  }
  std::vector<ManifestChunk> skipped;
};

// Drifts each bf16 element of `v` by a small step: the next checkpoint.
std::vector<std::byte> drifted(std::vector<std::byte> v, std::uint64_t seed) {
  std::uint64_t s = seed;
  for (std::size_t i = 0; i + 1 < v.size(); i += 2) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    if ((s >> 60) < 4) v[i] = std::byte(static_cast<std::uint8_t>(v[i]) + ((s >> 59) & 1 ? 1 : 255));
  }
  return v;
}

// PackOptions::delta_from: chunks of a drifted checkpoint become delta
// frames against the same positions of the earlier one when the
// destination holds those bases (asked in the same question as the chunk
// ids), and rebuild from them; a base the destination lacks, or a base file
// that changed since, gives standalone frames.
TEST(PackerTest, DeltaFromPairsChunksWithTheEarlierCheckpoint) {
  testing::TempDir dir;
  fs::create_directories(dir / "old");
  fs::create_directories(dir / "new");
  const auto weights = testing::normal_floats(600'000, 2, true, 0.02, testing::test_seed());
  testing::write_file(dir / "old/w.bin", weights);
  testing::write_file(dir / "new/w.bin", drifted(weights, testing::test_seed()));
  testing::write_file(dir / "new/only-new.bin", testing::random_bytes(10'000, 3));
  auto old_sources = list_pack_sources(dir / "old");
  auto sources = list_pack_sources(dir / "new");
  ASSERT_TRUE(old_sources.is_ok() && sources.is_ok());
  PackOptions opts;
  opts.chunk_bytes = 256u << 10;
  opts.created_ns = 5;
  opts.host = "h";
  RecordingSink base_sink;
  auto base_m = pack_files(*old_sources, opts, base_sink);
  ASSERT_TRUE(base_m.is_ok());
  std::map<Digest, std::vector<std::byte>> held;  // the destination: id -> frame
  for (auto& f : base_sink.frames) held[parse_frame_header(f)->chunk_id] = f;

  opts.delta_from = dir / "old";
  std::set<Digest> asked;
  opts.need = [&](std::span<const Digest> ids) -> Result<std::vector<bool>> {
    std::vector<bool> need;
    for (const Digest& id : ids) {
      asked.insert(id);
      need.push_back(held.count(id) == 0);
    }
    return need;
  };
  RecordingSink sink;
  auto m = pack_files(*sources, opts, sink);
  ASSERT_TRUE(m.is_ok()) << m.status().to_string();
  std::size_t deltas = 0, delta_bytes = 0, alone_bytes = 0;
  for (std::size_t i = 0; i < sink.frames.size(); ++i) {
    const ManifestChunk& c = sink.chunks[i];
    auto h = parse_frame_header(sink.frames[i]);
    ASSERT_TRUE(h.is_ok());
    EXPECT_EQ(static_cast<std::uint8_t>(h->codec), c.codec);
    EXPECT_EQ(h->base_id, c.base_id);
    if (!is_delta_codec(h->codec)) continue;
    ++deltas;
    EXPECT_EQ(sink.paths[i], "w.bin");
    EXPECT_TRUE(asked.count(c.base_id)) << "the base was asked about";
    EXPECT_TRUE(held.count(c.base_id));
    std::vector<std::byte> out;
    Status st = rebuild_chunk(
        *h, sink.frames[i], [&](const Digest& id) -> Result<std::vector<std::byte>> { return held.at(id); },
        out);
    ASSERT_TRUE(st.is_ok()) << st.to_string();
    delta_bytes += sink.frames[i].size();
  }
  EXPECT_EQ(deltas, 5u);  // every chunk of w.bin (1.2 MB in 256 KiB chunks)

  // Without the bases at the destination: the same chunks, coded alone.
  held.clear();
  RecordingSink alone;
  m = pack_files(*sources, opts, alone);
  ASSERT_TRUE(m.is_ok());
  for (auto& f : alone.frames) {
    EXPECT_FALSE(is_delta_codec(parse_frame_header(f)->codec));
    if (alone.paths[&f - alone.frames.data()] == "w.bin") alone_bytes += f.size();
  }
  EXPECT_LT(delta_bytes, alone_bytes);

  // The earlier file changed since its snapshot: the bases hash to ids the
  // destination does not hold, so no deltas.
  for (auto& f : base_sink.frames) held[parse_frame_header(f)->chunk_id] = f;
  testing::write_file(dir / "old/w.bin", drifted(weights, testing::test_seed() + 1));
  RecordingSink changed;
  m = pack_files(*sources, opts, changed);
  ASSERT_TRUE(m.is_ok());
  for (auto& f : changed.frames) EXPECT_FALSE(is_delta_codec(parse_frame_header(f)->codec));
}

TEST(PackerTest, NeedFiltersFramesButNotTheManifest) {
  testing::TempDir dir;
  make_tree(dir.path(), testing::test_seed());
  // Four identical 1 MiB chunks: one id, sent once.
  testing::write_file(dir / "zeros", std::vector<std::byte>(4u << 20));
  auto sources = list_pack_sources(dir.path());
  ASSERT_TRUE(sources.is_ok());
  PackOptions opts;
  opts.chunk_bytes = 1u << 20;
  opts.created_ns = 5;
  opts.host = "h";
  RecordingSink plain;
  auto want = pack_files(*sources, opts, plain);
  ASSERT_TRUE(want.is_ok()) << want.status().to_string();
  std::map<Digest, FrameFacts> facts;
  for (const auto& f : want->files) {
    for (const auto& c : f.chunks) facts[c.id] = {c.codec, c.frame_bytes};
  }

  // Nothing held: every distinct id is sent once, repeats are skipped.
  int need_calls = 0;
  opts.need = [&](std::span<const Digest> ids) -> Result<std::vector<bool>> {
    ++need_calls;
    return std::vector<bool>(ids.size(), true);
  };
  SkipCountingSink all;
  auto m = pack_files(*sources, opts, all);
  ASSERT_TRUE(m.is_ok()) << m.status().to_string();
  EXPECT_EQ(serialize_manifest(*m), serialize_manifest(*want));
  EXPECT_GT(need_calls, 0);
  EXPECT_EQ(all.frames.size() + all.skipped.size(), want->chunk_count());
  EXPECT_EQ(all.frames.size(), facts.size());
  std::set<Digest> sent;
  for (const auto& c : all.chunks) EXPECT_TRUE(sent.insert(c.id).second);

  // Everything held, facts known or not: no frame sent, same manifest.
  for (bool with_facts : {true, false}) {
    opts.need = [](std::span<const Digest> ids) -> Result<std::vector<bool>> {
      return std::vector<bool>(ids.size(), false);
    };
    int lookups = 0;
    opts.known_frame = nullptr;
    if (with_facts) {
      opts.known_frame = [&](const Digest& id) -> std::optional<FrameFacts> {
        ++lookups;
        return facts.at(id);
      };
    }
    SkipCountingSink none;
    auto again = pack_files(*sources, opts, none);
    ASSERT_TRUE(again.is_ok()) << again.status().to_string();
    EXPECT_EQ(serialize_manifest(*again), serialize_manifest(*want));
    EXPECT_TRUE(none.frames.empty());
    EXPECT_EQ(none.skipped.size(), want->chunk_count());
    if (with_facts) {
      EXPECT_GT(lookups, 0);
    }
  }

  // Half held: exactly the others are sent.
  std::set<Digest> held;
  bool flip = false;
  for (const auto& [id, f] : facts) {
    if ((flip = !flip)) held.insert(id);
  }
  opts.known_frame = nullptr;
  opts.need = [&](std::span<const Digest> ids) -> Result<std::vector<bool>> {
    std::vector<bool> out;
    for (const auto& id : ids) out.push_back(!held.contains(id));
    return out;
  };
  SkipCountingSink half;
  auto part = pack_files(*sources, opts, half);
  ASSERT_TRUE(part.is_ok()) << part.status().to_string();
  EXPECT_EQ(serialize_manifest(*part), serialize_manifest(*want));
  EXPECT_EQ(half.frames.size(), facts.size() - held.size());
  for (const auto& c : half.chunks) EXPECT_FALSE(held.contains(c.id));

  // An error from need stops packing with that error.
  opts.need = [](std::span<const Digest>) -> Result<std::vector<bool>> {
    return Status::unavailable("receiver gone");
  };
  RecordingSink failed;
  EXPECT_EQ(pack_files(*sources, opts, failed).status().code(), Code::kUnavailable);
}

// Takes its time over every frame, as a sink that waits on a busy network
// does, and counts the frames it has been given.
class SlowSink : public RecordingSink {
 public:
  Status put_frame(const ManifestFile& file, const ManifestChunk& chunk,
                   std::span<const std::byte> frame) override {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    Status st = RecordingSink::put_frame(file, chunk, frame);
    ++frames_put;
    return st;
  }
  std::atomic<std::size_t> frames_put{0};
};

// The have/need question for a window is asked as soon as it is read, while
// the window before it is still being coded and handed over, so that on a
// long link the round trip does not hold coding up: with 8-chunk windows and
// a sink that takes 10 ms a frame, the second question comes before the
// first window's eighth frame, and every id is still asked once.
TEST(PackerTest, HaveNeedIsAskedWhileThePreviousWindowIsCoded) {
  PackedTree t;
  ASSERT_NO_FATAL_FAILURE(pack_tree(t, 0));
  PackOptions opts = t.opts;
  opts.chunk_bytes = 256u << 10;
  opts.window_chunks = 8;
  RecordingSink plain;
  auto want = pack_files(t.sources, opts, plain);
  ASSERT_TRUE(want.is_ok()) << want.status().to_string();
  ASSERT_GE(want->chunk_count(), 12u) << "at least a window and a half";
  SlowSink sink;
  std::vector<std::size_t> put_before_ask;
  std::set<Digest> asked;
  bool asked_twice = false;
  opts.need = [&](std::span<const Digest> ids) -> Result<std::vector<bool>> {
    put_before_ask.push_back(sink.frames_put.load());
    for (const Digest& id : ids) asked_twice |= !asked.insert(id).second;
    return std::vector<bool>(ids.size(), true);
  };
  auto m = pack_files(t.sources, opts, sink);
  ASSERT_TRUE(m.is_ok()) << m.status().to_string();
  EXPECT_EQ(serialize_manifest(*m), serialize_manifest(*want));
  EXPECT_EQ(sink.frames, plain.frames);
  ASSERT_GE(put_before_ask.size(), 2u);
  EXPECT_EQ(put_before_ask[0], 0u);
  EXPECT_LT(put_before_ask[1], 8u) << "the second window's question waited for the first window's frames";
  EXPECT_FALSE(asked_twice);
}

// A window's answer is awaited only when the window is to be coded: the
// next window is read while its question is out, so a long link's round
// trip holds up neither coding nor reading. Here the first window's
// question returns only once the second window's file has been read
// (inotify IN_ACCESS; a file not named .safetensors is not read to be
// planned); were the next read to wait for the answer, it would time out.
TEST(PackerTest, TheNextWindowIsReadWhileAQuestionIsOut) {
  testing::TempDir dir;
  testing::write_file(dir / "a", testing::random_bytes(256u << 10, testing::test_seed()));
  testing::write_file(dir / "b", testing::random_bytes(256u << 10, testing::test_seed() + 1));
  auto sources = list_pack_sources(dir.path());
  ASSERT_TRUE(sources.is_ok());
  UniqueFd watch(::inotify_init1(IN_CLOEXEC | IN_NONBLOCK));
  ASSERT_TRUE(watch.valid());
  ASSERT_GE(::inotify_add_watch(watch.get(), (dir / "b").c_str(), IN_ACCESS), 0);
  PackOptions opts;
  opts.chunk_bytes = 256u << 10;
  opts.window_chunks = 1;
  opts.created_ns = 9;
  int calls = 0;
  bool b_read_during_first_question = false;
  opts.need = [&](std::span<const Digest> ids) -> Result<std::vector<bool>> {
    if (++calls == 1) {
      pollfd p{watch.get(), POLLIN, 0};
      b_read_during_first_question = ::poll(&p, 1, 5'000) == 1;
    }
    return std::vector<bool>(ids.size(), true);
  };
  RecordingSink sink;
  auto m = pack_files(*sources, opts, sink);
  ASSERT_TRUE(m.is_ok()) << m.status().to_string();
  EXPECT_TRUE(b_read_during_first_question) << "the second window was read only after the first was answered";
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(sink.frames.size(), 2u);
}

// Checks frames as they come and keeps only their count and bytes (a sink
// that kept them would fault in fresh memory for every frame).
class TallySink : public FrameSink {
 public:
  Status put_frame(const ManifestFile&, const ManifestChunk&, std::span<const std::byte> frame) override {
    ++frames;
    bytes += frame.size();
    return Status::ok();
  }
  std::size_t frames = 0;
  std::size_t bytes = 0;
};

// The chunk buffers of a pack are kept for the next pack in the process
// (base/buffer_stash.h): the second pack of the same files reads into pages
// that are mapped already, where the first faulted in every page of its
// windows' buffers (8 MiB chunks, which no other test here uses).
TEST(PackerTest, TheNextPackReusesTheChunkBuffers) {
  testing::large_blocks_from_mmap();
  testing::TempDir dir;
  for (int i = 0; i < 4; ++i) {
    testing::write_file(dir / ("w" + std::to_string(i)),
                        testing::random_bytes(8u << 20, testing::test_seed() + i));
  }
  auto sources = list_pack_sources(dir.path());
  ASSERT_TRUE(sources.is_ok());
  ThreadPool pool(2);
  PackOptions opts;
  opts.pool = &pool;
  opts.chunk_bytes = 8u << 20;
  opts.created_ns = 9;
  std::vector<long> faults;
  std::vector<std::size_t> bytes;
  for (int pack = 0; pack < 2; ++pack) {
    TallySink sink;
    const long before = testing::minor_faults();
    auto m = pack_files(*sources, opts, sink);
    faults.push_back(testing::minor_faults() - before);
    ASSERT_TRUE(m.is_ok()) << m.status().to_string();
    EXPECT_EQ(sink.frames, 4u);
    bytes.push_back(sink.bytes);
  }
  EXPECT_EQ(bytes[0], bytes[1]);
  // Four chunk buffers of 8 MiB: 8192 pages.
  EXPECT_GT(faults[0], 8192) << faults[1];
  EXPECT_LT(faults[1], faults[0] - 6000) << faults[0];
}

// A have/need failure for a window read ahead (asked on the read-ahead
// thread) still stops packing with its error: the window before it is
// coded and handed over, nothing after it. So does an answer with the
// wrong number of flags.
TEST(PackerTest, HaveNeedFailureForAWindowReadAheadStopsPackingWithItsError) {
  PackedTree t;
  ASSERT_NO_FATAL_FAILURE(pack_tree(t, 0));
  PackOptions opts = t.opts;
  opts.chunk_bytes = 256u << 10;
  opts.window_chunks = 4;
  for (bool short_answer : {false, true}) {
    SCOPED_TRACE(short_answer ? "short answer" : "error");
    int calls = 0;
    opts.need = [&](std::span<const Digest> ids) -> Result<std::vector<bool>> {
      if (++calls < 2) return std::vector<bool>(ids.size(), true);
      if (short_answer) return std::vector<bool>(ids.size() - 1, true);
      return Status::unavailable("receiver at 10.0.0.9:7070 gone");
    };
    RecordingSink sink;
    auto m = pack_files(t.sources, opts, sink);
    ASSERT_FALSE(m.is_ok());
    if (short_answer) {
      EXPECT_EQ(m.status().code(), Code::kInternal) << m.status().to_string();
      EXPECT_NE(m.status().message().find("flags for"), std::string::npos) << m.status().to_string();
    } else {
      EXPECT_EQ(m.status().code(), Code::kUnavailable) << m.status().to_string();
      EXPECT_NE(m.status().message().find("10.0.0.9:7070"), std::string::npos) << m.status().to_string();
    }
    EXPECT_EQ(calls, 2) << "no question after the failed one";
    EXPECT_EQ(sink.frames.size(), 4u) << "the first window's frames, none of the second's";
  }
}

// A codec engine that hands every batch to the CPU engine and records the
// batch sizes and whether each job came with its id.
class CountingEngine final : public CodecEngine {
 public:
  explicit CountingEngine(ThreadPool* pool) : inner_(make_cpu_engine({.pool = pool})) {}
  std::string_view kind() const override { return "counting"; }
  std::string description() const override { return "counting over " + inner_->description(); }
  bool supports(MemorySpace space) const override { return inner_->supports(space); }
  Status encode(std::span<const EncodeJob> jobs, std::span<EncodedChunk> results,
                MemorySpace space) override {
    batches.push_back(jobs.size());
    for (const EncodeJob& j : jobs) {
      if (j.known_id == nullptr) ++jobs_without_id;
    }
    if (fail) return Status::unavailable("device lost");
    return inner_->encode(jobs, results, space);
  }
  Status decode(std::span<const DecodeJob> jobs, std::span<Status> statuses, MemorySpace space) override {
    return inner_->decode(jobs, statuses, space);
  }
  std::vector<std::size_t> batches;
  std::size_t jobs_without_id = 0;
  bool fail = false;

 private:
  std::unique_ptr<CodecEngine> inner_;
};

TEST(PackerTest, WindowsAreCodedInBatchesThroughTheEngine) {
  PackedTree t;
  ASSERT_NO_FATAL_FAILURE(pack_tree(t, 3u << 20));
  PackOptions opts = t.opts;

  for (bool with_need : {false, true}) {
    SCOPED_TRACE(with_need ? "with have/need" : "without have/need");
    CountingEngine engine(&t.pool);
    opts.engine = &engine;
    opts.need = nullptr;
    if (with_need) {
      opts.need = [](std::span<const Digest> ids) -> Result<std::vector<bool>> {
        return std::vector<bool>(ids.size(), true);
      };
    }
    RecordingSink sink;
    auto m = pack_files(t.sources, opts, sink);
    ASSERT_TRUE(m.is_ok()) << m.status().to_string();
    // The same frames and manifest as the packer's default engine.
    EXPECT_EQ(serialize_manifest(*m), serialize_manifest(t.want));
    if (!with_need) {
      EXPECT_EQ(sink.frames, t.plain.frames);
    }
    // Whole windows per call: fewer calls than chunks, some batch of several
    // chunks, every chunk coded exactly once (repeats of an id only once
    // with have/need), each with the id the packer computed.
    std::size_t coded = 0, largest = 0;
    for (std::size_t b : engine.batches) {
      coded += b;
      largest = std::max(largest, b);
    }
    EXPECT_EQ(coded, sink.frames.size());
    EXPECT_LT(engine.batches.size(), t.want.chunk_count());
    EXPECT_GT(largest, 1u);
    EXPECT_EQ(engine.jobs_without_id, 0u);
  }

  // An engine failure stops packing with the engine's error and context.
  CountingEngine broken(&t.pool);
  broken.fail = true;
  opts.engine = &broken;
  opts.need = nullptr;
  RecordingSink failed;
  auto m = pack_files(t.sources, opts, failed);
  ASSERT_EQ(m.status().code(), Code::kUnavailable);
  EXPECT_NE(m.status().message().find("counting codec engine"), std::string::npos) << m.status().to_string();
  EXPECT_TRUE(failed.frames.empty());
}

TEST(PackerTest, AFileThatGrowsWhilePackedIsASourceChange) {
  testing::TempDir dir;
  constexpr std::size_t kChunk = 64u << 10;
  const fs::path grows = dir / "grows.bin";
  testing::write_file(grows, testing::random_bytes(6 * kChunk, 3));
  auto sources = list_pack_sources(dir.path());
  ASSERT_TRUE(sources.is_ok()) << sources.status().to_string();

  // Appends to the file when the first frame arrives. One chunk per window,
  // and the packer reads at most one window ahead, so the third chunk is
  // read after the append.
  class GrowingSink : public RecordingSink {
   public:
    explicit GrowingSink(fs::path path) : path_(std::move(path)) {}
    Status put_frame(const ManifestFile& file, const ManifestChunk& chunk,
                     std::span<const std::byte> frame) override {
      if (frames.empty()) std::ofstream(path_, std::ios::app) << "more";
      return RecordingSink::put_frame(file, chunk, frame);
    }

   private:
    fs::path path_;
  } sink(grows);
  ThreadPool pool(2);
  PackOptions opts;
  opts.chunk_bytes = kChunk;
  opts.window_chunks = 1;
  opts.pool = &pool;
  auto m = pack_files(*sources, opts, sink);
  ASSERT_FALSE(m.is_ok());
  EXPECT_EQ(m.status().code(), Code::kAborted) << m.status().to_string();
  EXPECT_EQ(m.status().detail(), Detail::kSourceChanged) << m.status().to_string();
  EXPECT_NE(m.status().message().find(grows.string()), std::string::npos) << m.status().to_string();
  EXPECT_LT(sink.frames.size(), 6u);
}

}  // namespace
}  // namespace ferry
