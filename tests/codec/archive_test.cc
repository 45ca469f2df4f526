// archive_test.cc: the `.ferry` container with the packer and unpacker:
// round trips of a directory with edge-size files and of the real corpus,
// dedup of identical chunks, a flipped frame byte reported with the right
// chunk, file and offset, truncated and damaged archives, deterministic
// output, and unpack leaving no partial files behind.
#include "codec/archive.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <thread>

#include "base/thread_pool.h"
#include "codec/packer.h"
#include "codec/unpacker.h"
#include "tests/testing/testing.h"

namespace ferry {
namespace {

namespace fs = std::filesystem;

constexpr std::size_t k4MiB = 4u << 20;

void make_tree(const fs::path& root, std::uint64_t seed) {
  fs::create_directories(root / "deep/er/still");
  fs::create_directories(root / "w");
  testing::write_file(root / "empty", {});
  testing::write_file(root / "one", {std::byte{0x7f}});
  testing::write_file(root / "w/exact4m.bf16", testing::normal_floats(k4MiB / 2, 2, true, 0.02, seed));
  auto plus1 = testing::normal_floats(k4MiB / 4, 4, false, 0.1, seed + 1);
  plus1.push_back(std::byte{1});
  testing::write_file(root / "w/plus1.f32", plus1);
  testing::write_file(root / "deep/er/still/notes.txt", testing::random_bytes(10000, seed + 2));
  // Two identical files: their chunks are stored once.
  auto dup = testing::random_bytes(300000, seed + 3);
  testing::write_file(root / "deep/dup1", dup);
  testing::write_file(root / "deep/dup2", dup);
  fs::permissions(root / "one", fs::perms::owner_read | fs::perms::owner_exec);
}

struct Packed {
  Manifest manifest;
  std::uint64_t deduplicated = 0;
};

Packed pack(const fs::path& in, const fs::path& out, std::int64_t created_ns = 42) {
  auto sources = list_pack_sources(in);
  EXPECT_TRUE(sources.is_ok()) << sources.status().to_string();
  auto writer = ArchiveWriter::create(out);
  EXPECT_TRUE(writer.is_ok()) << writer.status().to_string();
  PackOptions opts;
  opts.created_ns = created_ns;
  opts.host = "test-host";
  auto m = pack_files(*sources, opts, *writer);
  EXPECT_TRUE(m.is_ok()) << m.status().to_string();
  Status st = writer->finish(*m);
  EXPECT_TRUE(st.is_ok()) << st.to_string();
  return {*m, writer->frames_deduplicated()};
}

void expect_same_tree(const fs::path& a, const fs::path& b) {
  auto sa = list_pack_sources(a);
  auto sb = list_pack_sources(b);
  ASSERT_TRUE(sa.is_ok() && sb.is_ok());
  ASSERT_EQ(sa->size(), sb->size());
  for (std::size_t i = 0; i < sa->size(); ++i) {
    const auto& x = (*sa)[i];
    const auto& y = (*sb)[i];
    EXPECT_EQ(x.rel_path, y.rel_path);
    EXPECT_EQ(testing::read_file(x.path), testing::read_file(y.path)) << x.rel_path;
    EXPECT_EQ(fs::status(x.path).permissions(), fs::status(y.path).permissions()) << x.rel_path;
    struct stat s1 {
    }, s2{};
    ASSERT_EQ(::stat(x.path.c_str(), &s1), 0);
    ASSERT_EQ(::stat(y.path.c_str(), &s2), 0);
    EXPECT_EQ(s1.st_mtim.tv_sec, s2.st_mtim.tv_sec) << x.rel_path;
    EXPECT_EQ(s1.st_mtim.tv_nsec, s2.st_mtim.tv_nsec) << x.rel_path;
  }
}

std::vector<fs::path> all_entries(const fs::path& dir) {
  std::vector<fs::path> out;
  for (auto& e : fs::recursive_directory_iterator(dir)) out.push_back(e.path());
  return out;
}

TEST(ArchiveTest, DirectoryRoundTripWithEdgeSizes) {
  testing::TempDir dir;
  make_tree(dir / "in", testing::test_seed());
  Packed p = pack(dir / "in", dir / "a.ferry");
  EXPECT_GT(p.deduplicated, 0u);

  auto reader = ArchiveReader::open(dir / "a.ferry");
  ASSERT_TRUE(reader.is_ok()) << reader.status().to_string();
  EXPECT_EQ(reader->manifest().files.size(), 7u);
  EXPECT_EQ(reader->manifest().host, "test-host");
  EXPECT_EQ(reader->archive_bytes(), fs::file_size(dir / "a.ferry"));
  const auto& files = reader->manifest().files;
  auto find = [&](const std::string& path) -> const ManifestFile& {
    for (const auto& f : files) {
      if (f.path == path) return f;
    }
    ADD_FAILURE() << path;
    return files[0];
  };
  EXPECT_EQ(find("w/exact4m.bf16").chunks.size(), 1u);
  EXPECT_EQ(find("w/plus1.f32").chunks.size(), 2u);
  EXPECT_EQ(find("w/plus1.f32").chunks[1].length, 1u);
  EXPECT_EQ(find("empty").chunks.size(), 0u);
  EXPECT_EQ(find("one").mode, 0500u);
  // Duplicate chunks share one frame.
  EXPECT_EQ(reader->frame_offset(&find("deep/dup1") - files.data(), 0),
            reader->frame_offset(&find("deep/dup2") - files.data(), 0));
  EXPECT_LT(reader->stored_frame_bytes(), [&] {
    std::uint64_t t = 0;
    for (const auto& f : files)
      for (const auto& c : f.chunks) t += c.frame_bytes;
    return t;
  }());

  ThreadPool pool(3);
  EXPECT_TRUE(verify_archive(*reader, {.pool = &pool}).is_ok());
  Status st = unpack_archive(*reader, dir / "out", {.pool = &pool, .window_chunks = 2});
  ASSERT_TRUE(st.is_ok()) << st.to_string();
  expect_same_tree(dir / "in", dir / "out");
  for (const auto& e : all_entries(dir / "out")) {
    EXPECT_EQ(e.string().find(".ferry-tmp"), std::string::npos) << e;
  }
  // No temporary archive left beside the output either.
  EXPECT_EQ(all_entries(dir.path()).size(),
            all_entries(dir / "in").size() + all_entries(dir / "out").size() + 3);
}

TEST(ArchiveTest, CorpusRoundTrip) {
  auto corpus = testing::corpus_files();
  if (corpus.empty()) GTEST_SKIP() << "corpus not laid (set FERRY_CORPUS_DIR; see scripts/test.sh)";
  testing::TempDir dir;
  fs::create_directories(dir / "in");
  for (const auto& f : corpus) fs::copy_file(f.path, dir / "in" / f.name);
  Packed p = pack(dir / "in", dir / "c.ferry");
  EXPECT_LT(fs::file_size(dir / "c.ferry"), p.manifest.logical_bytes()) << "real weights must shrink";
  auto reader = ArchiveReader::open(dir / "c.ferry");
  ASSERT_TRUE(reader.is_ok()) << reader.status().to_string();
  ASSERT_TRUE(verify_archive(*reader).is_ok());
  ASSERT_TRUE(unpack_archive(*reader, dir / "out").is_ok());
  expect_same_tree(dir / "in", dir / "out");
}

TEST(ArchiveTest, FlippedFrameByteNamesChunkFileAndOffset) {
  testing::TempDir dir;
  make_tree(dir / "in", 11);
  pack(dir / "in", dir / "a.ferry");
  std::size_t fi = 0;
  std::uint64_t frame_at = 0;
  ManifestChunk bad;
  {
    auto reader = ArchiveReader::open(dir / "a.ferry");
    ASSERT_TRUE(reader.is_ok());
    const auto& files = reader->manifest().files;
    for (fi = 0; fi < files.size() && files[fi].path != "w/plus1.f32"; ++fi) {
    }
    ASSERT_LT(fi, files.size());
    bad = files[fi].chunks[0];
    frame_at = reader->frame_offset(fi, 0);
  }
  for (std::uint64_t within : {std::uint64_t{5}, std::uint64_t{kFrameHeaderBytes + 1000}}) {
    fs::copy_file(dir / "a.ferry", dir / "b.ferry", fs::copy_options::overwrite_existing);
    {
      std::fstream f(dir / "b.ferry", std::ios::in | std::ios::out | std::ios::binary);
      f.seekg(static_cast<std::streamoff>(frame_at + within));
      char c;
      f.get(c);
      f.seekp(static_cast<std::streamoff>(frame_at + within));
      f.put(static_cast<char>(c ^ 0x10));
    }
    auto reader = ArchiveReader::open(dir / "b.ferry");
    ASSERT_TRUE(reader.is_ok()) << "frames are not read at open";
    Status st = verify_archive(*reader);
    EXPECT_EQ(st.code(), Code::kCorruption) << within;
    EXPECT_NE(st.message().find(to_hex(bad.id)), std::string::npos) << st.to_string();
    EXPECT_NE(st.message().find("\"w/plus1.f32\" offset 0"), std::string::npos) << st.to_string();
    EXPECT_NE(st.message().find("b.ferry"), std::string::npos) << st.to_string();
    // Unpack refuses too and leaves the damaged file out entirely.
    fs::remove_all(dir / "out");
    EXPECT_EQ(unpack_archive(*reader, dir / "out").code(), Code::kCorruption);
    EXPECT_FALSE(fs::exists(dir / "out/w/plus1.f32"));
    for (const auto& e : all_entries(dir / "out")) {
      EXPECT_EQ(e.string().find(".ferry-tmp"), std::string::npos) << e;
    }
  }
}

// A source that lends its frames (as an S3 store lends them from its read
// windows): never asked to copy one, and optionally with one byte of one
// frame flipped where it lies.
class LendingSource final : public FrameSource {
 public:
  LendingSource(const ArchiveReader& archive, std::optional<std::size_t> damaged_file)
      : archive_(archive), damaged_file_(damaged_file) {}
  const Manifest& manifest() const override { return archive_.manifest(); }
  std::string describe() const override { return "lending source"; }
  Status read_frame(std::size_t, std::size_t, std::vector<std::byte>&) const override {
    return Status::internal("read_frame on a source that lends its frames");
  }
  Result<bool> lend_frame(std::size_t file, std::size_t chunk, LentBytes& lent) const override {
    auto frame = std::make_shared<std::vector<std::byte>>();
    RETURN_IF_ERROR(archive_.read_frame(file, chunk, *frame));
    if (damaged_file_ == file && chunk == 0) (*frame)[kFrameHeaderBytes + 1000] ^= std::byte{0x10};
    lent.bytes = *frame;
    lent.keep = std::move(frame);
    lends_++;
    return true;
  }
  std::size_t lends() const { return lends_.load(); }

 private:
  const ArchiveReader& archive_;
  std::optional<std::size_t> damaged_file_;
  mutable std::atomic<std::size_t> lends_{0};
};

TEST(ArchiveTest, LentFramesAreDecodedInPlaceAndStillVerified) {
  testing::TempDir dir;
  make_tree(dir / "in", 12);
  pack(dir / "in", dir / "a.ferry");
  auto reader = ArchiveReader::open(dir / "a.ferry");
  ASSERT_TRUE(reader.is_ok()) << reader.status().to_string();
  ThreadPool pool(3);
  LendingSource lending(*reader, std::nullopt);
  Status st = unpack_frames(lending, dir / "out", {.pool = &pool, .window_chunks = 2});
  ASSERT_TRUE(st.is_ok()) << st.to_string();
  expect_same_tree(dir / "in", dir / "out");
  EXPECT_EQ(lending.lends(), reader->manifest().chunk_count());
  // A damaged lent frame is refused like a damaged copy, naming the file.
  std::size_t fi = 0;
  const auto& files = reader->manifest().files;
  for (fi = 0; fi < files.size() && files[fi].path != "w/plus1.f32"; ++fi) {
  }
  ASSERT_LT(fi, files.size());
  LendingSource damaged(*reader, fi);
  st = verify_frames(damaged, {.pool = &pool});
  EXPECT_EQ(st.code(), Code::kCorruption) << st.to_string();
  EXPECT_NE(st.message().find("\"w/plus1.f32\" offset 0"), std::string::npos) << st.to_string();
}

// A source that lends frames it read once into memory, so that lending them
// touches no new page.
class HeldFramesSource final : public FrameSource {
 public:
  explicit HeldFramesSource(const ArchiveReader& archive) : archive_(archive) {
    for (std::size_t f = 0; f < manifest().files.size(); ++f) {
      frames_.emplace_back();
      for (std::size_t c = 0; c < manifest().files[f].chunks.size(); ++c) {
        auto frame = std::make_shared<std::vector<std::byte>>();
        EXPECT_TRUE(archive_.read_frame(f, c, *frame).is_ok());
        frames_.back().push_back(std::move(frame));
      }
    }
  }
  const Manifest& manifest() const override { return archive_.manifest(); }
  std::string describe() const override { return "held frames"; }
  Status read_frame(std::size_t, std::size_t, std::vector<std::byte>&) const override {
    return Status::internal("read_frame on a source that lends its frames");
  }
  Result<bool> lend_frame(std::size_t file, std::size_t chunk, LentBytes& lent) const override {
    lent.bytes = *frames_[file][chunk];
    lent.keep = frames_[file][chunk];
    return true;
  }

 private:
  const ArchiveReader& archive_;
  std::vector<std::vector<std::shared_ptr<std::vector<std::byte>>>> frames_;
};

// The decoded chunk and the decoder's plane scratch are the process's,
// borrowed only while a chunk is decoded: the next walk (the next restore
// of an agent or of ferry.load) decodes into the pages the last one left,
// instead of each slot of each walk faulting in its own 8 MiB (a restore
// with 16 threads held 32 slots, each with its own).
TEST(ArchiveTest, TheNextWalkDecodesInTheScratchTheLastOneLeft) {
  testing::large_blocks_from_mmap();
  testing::TempDir dir;
  fs::create_directories(dir / "in");
  for (int i = 0; i < 6; ++i) {
    testing::write_file(dir / "in" / ("w" + std::to_string(i) + ".bf16"),
                        testing::normal_floats(k4MiB / 2, 2, true, 0.02, testing::test_seed() + i));
  }
  pack(dir / "in", dir / "a.ferry");
  auto reader = ArchiveReader::open(dir / "a.ferry");
  ASSERT_TRUE(reader.is_ok()) << reader.status().to_string();
  HeldFramesSource held(*reader);
  // One chunk at a time, so that the second walk borrows exactly the scratch
  // the first one gave back last (whatever earlier tests of this process
  // left in the list).
  ThreadPool pool(1);
  std::vector<long> faults;
  for (int k = 0; k < 2; ++k) {
    const long before = testing::minor_faults();
    Status st = verify_frames(held, {.pool = &pool, .window_chunks = 1});
    ASSERT_TRUE(st.is_ok()) << st.to_string();
    faults.push_back(testing::minor_faults() - before);
  }
  // One 4 MiB chunk decoded into fresh memory is 1,024 faults.
  EXPECT_LT(faults[1], 500) << faults[0] << " faults, then " << faults[1];
}

// A source that holds back one file's frame, as a slow GET would, and counts
// the frames of later files read meanwhile.
class SlowFileSource final : public FrameSource {
 public:
  SlowFileSource(const ArchiveReader& archive, std::size_t slow_file)
      : archive_(archive), slow_file_(slow_file) {}
  const Manifest& manifest() const override { return archive_.manifest(); }
  std::string describe() const override { return "slow source"; }
  Status read_frame(std::size_t file, std::size_t chunk, std::vector<std::byte>& out) const override {
    if (file == slow_file_) {
      std::this_thread::sleep_for(std::chrono::milliseconds(400));
      slow_done_ = true;
    } else if (file > slow_file_ && !slow_done_) {
      ++read_past_slow_;
    }
    return archive_.read_frame(file, chunk, out);
  }
  std::size_t read_past_slow() const { return read_past_slow_.load(); }

 private:
  const ArchiveReader& archive_;
  const std::size_t slow_file_;
  mutable std::atomic<bool> slow_done_{false};
  mutable std::atomic<std::size_t> read_past_slow_{0};
};

// The window slides: a slow chunk holds back only the chunks a window after
// it, not the rest of a batch (a restore from S3 waited for the slowest GET
// of every batch of 2 x threads chunks before asking for the next).
TEST(ArchiveTest, ASlowChunkHoldsBackOnlyTheChunksAWindowAfterIt) {
  testing::TempDir dir;
  fs::create_directories(dir / "in");
  for (int i = 0; i < 16; ++i) {
    char name[8];
    std::snprintf(name, sizeof name, "f%02d", i);
    testing::write_file(dir / "in" / name, testing::random_bytes(5000, testing::test_seed() + i));
  }
  pack(dir / "in", dir / "a.ferry");
  auto reader = ArchiveReader::open(dir / "a.ferry");
  ASSERT_TRUE(reader.is_ok()) << reader.status().to_string();
  std::size_t slow = 0;
  while (slow < reader->manifest().files.size() && reader->manifest().files[slow].path != "f07") ++slow;
  ASSERT_LT(slow, reader->manifest().files.size());
  SlowFileSource source(*reader, slow);
  ThreadPool pool(3);
  Status st = unpack_frames(source, dir / "out", {.pool = &pool, .window_chunks = 8});
  ASSERT_TRUE(st.is_ok()) << st.to_string();
  expect_same_tree(dir / "in", dir / "out");
  // f08 to f14 fit the window behind f07; batches of 8 read none of them.
  EXPECT_GE(source.read_past_slow(), 3u);
}

// A tiny safetensors file whose chunks follow its two tensors, so they are
// not all one size (the file root must then come from hashed leaves).
std::vector<std::byte> small_safetensors() {
  std::string header = R"({"a":{"dtype":"F32","shape":[3000],"data_offsets":[0,12000]},)"
                       R"("b":{"dtype":"BF16","shape":[5000],"data_offsets":[12000,22000]}})";
  while ((8 + header.size()) % 8 != 0) header += ' ';
  std::vector<std::byte> out(8);
  for (int i = 0; i < 8; ++i) out[i] = std::byte(static_cast<std::uint8_t>(header.size() >> (8 * i)));
  for (char ch : header) out.push_back(std::byte(static_cast<std::uint8_t>(ch)));
  auto data = testing::normal_floats(3000, 4, false, 0.05, 17);
  auto more = testing::normal_floats(5000, 2, true, 0.05, 18);
  out.insert(out.end(), data.begin(), data.end());
  out.insert(out.end(), more.begin(), more.end());
  return out;
}

// An archive whose chunks are all intact but whose manifest records a wrong
// file root: verify and unpack must both refuse it, naming the file, whether
// the root is recomputed from leaves or composed from chunk ids.
TEST(ArchiveTest, WrongFileRootIsCaught) {
  testing::TempDir dir;
  fs::create_directories(dir / "in");
  testing::write_file(dir / "in/uniform.bin", testing::random_bytes(5u << 20, 21));
  testing::write_file(dir / "in/model.safetensors", small_safetensors());
  for (const char* victim : {"model.safetensors", "uniform.bin"}) {
    fs::remove(dir / "r.ferry");
    auto sources = list_pack_sources(dir / "in");
    ASSERT_TRUE(sources.is_ok());
    auto writer = ArchiveWriter::create(dir / "r.ferry");
    ASSERT_TRUE(writer.is_ok());
    auto m = pack_files(*sources, {.chunk_bytes = 1u << 20}, *writer);
    ASSERT_TRUE(m.is_ok()) << m.status().to_string();
    ASSERT_EQ(m->files[0].layout, LayoutKind::kSafetensors);
    ASSERT_GT(m->files[0].chunks.size(), 1u);
    ASSERT_NE(m->files[0].chunks[0].length, m->files[0].chunks[1].length);
    {
      auto good = ArchiveReader::open(dir / "r.ferry");  // not written yet
      EXPECT_FALSE(good.is_ok());
    }
    for (auto& f : m->files) {
      if (f.path == victim) f.root[5] ^= 1;
    }
    ASSERT_TRUE(writer->finish(*m).is_ok());
    auto reader = ArchiveReader::open(dir / "r.ferry");
    ASSERT_TRUE(reader.is_ok()) << reader.status().to_string();
    Status st = verify_archive(*reader);
    EXPECT_EQ(st.code(), Code::kCorruption) << victim;
    EXPECT_NE(st.message().find(std::string("\"") + victim + "\" root mismatch"), std::string::npos)
        << st.to_string();
    fs::remove_all(dir / "out");
    EXPECT_EQ(unpack_archive(*reader, dir / "out").code(), Code::kCorruption);
    EXPECT_FALSE(fs::exists(dir / "out" / victim));
  }
}

TEST(ArchiveTest, TruncatedOrDamagedArchiveIsAClearError) {
  testing::TempDir dir;
  make_tree(dir / "in", 3);
  pack(dir / "in", dir / "a.ferry");
  const auto bytes = testing::read_file(dir / "a.ferry");
  const std::size_t cuts[] = {0, 1, 7, 8, 55, bytes.size() / 2, bytes.size() - 48, bytes.size() - 1};
  for (std::size_t cut : cuts) {
    testing::write_file(dir / "t.ferry", std::vector<std::byte>(bytes.begin(), bytes.begin() + cut));
    auto r = ArchiveReader::open(dir / "t.ferry");
    ASSERT_FALSE(r.is_ok()) << cut;
    EXPECT_EQ(r.status().code(), Code::kCorruption) << cut;
    EXPECT_NE(r.status().message().find("t.ferry"), std::string::npos) << r.status().to_string();
    if (cut >= 8) {
      EXPECT_NE(r.status().message().find("truncated"), std::string::npos) << r.status().to_string();
    }
  }
  // Damage in the manifest, the index and the trailer is caught at open.
  auto reader = ArchiveReader::open(dir / "a.ferry");
  ASSERT_TRUE(reader.is_ok());
  const std::size_t index_bytes = reader->manifest().chunk_count() * kFrameIndexEntryBytes;
  for (std::size_t from_end :
       {std::size_t{1}, std::size_t{20}, std::size_t{48 + 3}, std::size_t{48 + index_bytes + 5}}) {
    auto b = bytes;
    b[b.size() - from_end] ^= std::byte{0x01};
    testing::write_file(dir / "d.ferry", b);
    auto r = ArchiveReader::open(dir / "d.ferry");
    EXPECT_EQ(r.status().code(), Code::kCorruption) << from_end;
  }
  EXPECT_EQ(ArchiveReader::open(dir / "missing.ferry").status().code(), Code::kNotFound);
}

TEST(ArchiveTest, PackingTwiceGivesIdenticalArchives) {
  testing::TempDir dir;
  make_tree(dir / "in", 9);
  pack(dir / "in", dir / "1.ferry", 1000);
  pack(dir / "in", dir / "2.ferry", 1000);
  EXPECT_EQ(testing::read_file(dir / "1.ferry"), testing::read_file(dir / "2.ferry"));
  // Only the creation time differs otherwise.
  pack(dir / "in", dir / "3.ferry", 2000);
  auto a = testing::read_file(dir / "1.ferry");
  auto b = testing::read_file(dir / "3.ferry");
  ASSERT_EQ(a.size(), b.size());
  std::size_t differing = 0;
  for (std::size_t i = 0; i < a.size(); ++i) differing += a[i] != b[i];
  EXPECT_GT(differing, 0u);
  EXPECT_LE(differing, 8u + 4 + 4 + 4);  // the time field, manifest CRCs, trailer CRC
}

TEST(ArchiveTest, UnfinishedWriterLeavesNothing) {
  testing::TempDir dir;
  {
    auto w = ArchiveWriter::create(dir / "x.ferry");
    ASSERT_TRUE(w.is_ok());
  }
  EXPECT_TRUE(all_entries(dir.path()).empty());
}

// The byte layout of FORMAT.md section 6 (with sections 3 and 5 inside it),
// frozen: a fixed two-file tree with fixed modes and mtimes packs to these
// exact bytes. FERRY_UPDATE_GOLDEN=1 rewrites the file after a deliberate
// format change.
TEST(ArchiveTest, GoldenBytes) {
  testing::TempDir dir;
  fs::create_directories(dir / "in/b");
  std::string text;
  for (int i = 0; i < 40; ++i)
    text += "step " + std::to_string(i * 100) + " loss 2." + std::to_string(i % 7) + "\n";
  std::vector<std::byte> a(text.size()), c(5000);
  std::memcpy(a.data(), text.data(), text.size());
  for (std::size_t i = 0; i < c.size(); ++i) c[i] = std::byte(static_cast<std::uint8_t>((i * i) >> 3));
  testing::write_file(dir / "in/a.txt", a);
  testing::write_file(dir / "in/b/c.bin", c);
  for (const char* f : {"in/a.txt", "in/b/c.bin"}) {
    fs::permissions(dir / f, fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read);
    struct timespec t[2] = {{1'700'000'000, 5}, {1'700'000'000, 5}};
    ASSERT_EQ(::utimensat(AT_FDCWD, (dir / f).c_str(), t, 0), 0);
  }
  pack(dir / "in", dir / "g.ferry", 1'700'000'000'000'000'000);
  const auto bytes = testing::read_file(dir / "g.ferry");
  testing::expect_golden_file("tests/codec/golden/archive_v1.hex", testing::hex_of(bytes) + "\n",
                              "archive bytes");
}

// A manifest comes from a host the DR site does not trust: a file recorded
// with setuid, setgid and world write comes back with permission bits only,
// less group and other write, unless the operator asks for exact modes.
TEST(ArchiveTest, RestoresPermissionBitsOnlyUnlessExactModesAsked) {
  testing::TempDir dir;
  fs::create_directories(dir / "in");
  testing::write_file(dir / "in" / "tool", testing::random_bytes(5000, 3));
  ASSERT_EQ(::chmod((dir / "in" / "tool").c_str(), 06777), 0);
  struct stat st {};
  ASSERT_EQ(::stat((dir / "in" / "tool").c_str(), &st), 0);
  if ((st.st_mode & 07777) != 06777) GTEST_SKIP() << "this file system does not keep setuid/setgid bits";
  Packed p = pack(dir / "in", dir / "a.ferry");
  ASSERT_EQ(p.manifest.files.at(0).mode & 07777, 06777u) << "the manifest records the mode as it was";
  auto reader = ArchiveReader::open(dir / "a.ferry");
  ASSERT_TRUE(reader.is_ok()) << reader.status().to_string();

  ASSERT_TRUE(unpack_archive(*reader, dir / "safe").is_ok());
  ASSERT_EQ(::stat((dir / "safe" / "tool").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0755u) << "no setuid, setgid, sticky, group or other write by default";

  UnpackOptions exact;
  exact.exact_modes = true;
  ASSERT_TRUE(unpack_archive(*reader, dir / "exact", exact).is_ok());
  ASSERT_EQ(::stat((dir / "exact" / "tool").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 06777u);
}

// A link planted inside the restore target (r/sub -> elsewhere) must not
// redirect the restore: it is refused, naming the link, and nothing is
// written where it points.
TEST(ArchiveTest, RefusesToRestoreThroughASymlinkInsideTheTarget) {
  testing::TempDir dir;
  fs::create_directories(dir / "in" / "sub");
  testing::write_file(dir / "in" / "sub" / "weights.bin", testing::random_bytes(70000, 5));
  testing::write_file(dir / "in" / "top.txt", testing::random_bytes(100, 6));
  pack(dir / "in", dir / "a.ferry");
  auto reader = ArchiveReader::open(dir / "a.ferry");
  ASSERT_TRUE(reader.is_ok()) << reader.status().to_string();

  fs::create_directories(dir / "elsewhere");
  fs::create_directories(dir / "r");
  fs::create_directory_symlink(dir / "elsewhere", dir / "r" / "sub");
  Status st = unpack_archive(*reader, dir / "r");
  EXPECT_EQ(st.code(), Code::kPermissionDenied) << st.to_string();
  EXPECT_NE(st.message().find((dir / "r" / "sub").string()), std::string::npos) << st.to_string();
  EXPECT_TRUE(fs::is_empty(dir / "elsewhere")) << "nothing may be written through the link";

  // A link to a file where a restored file goes is replaced, not written through.
  testing::write_file(dir / "victim", testing::random_bytes(10, 7));
  fs::create_directories(dir / "r2");
  fs::create_symlink(dir / "victim", dir / "r2" / "top.txt");
  auto victim_before = testing::read_file(dir / "victim");
  fs::create_directories(dir / "r2" / "sub");
  ASSERT_TRUE(unpack_archive(*reader, dir / "r2").is_ok());
  EXPECT_FALSE(fs::is_symlink(dir / "r2" / "top.txt"));
  EXPECT_EQ(testing::read_file(dir / "r2" / "top.txt"), testing::read_file(dir / "in" / "top.txt"));
  EXPECT_EQ(testing::read_file(dir / "victim"), victim_before);
}

}  // namespace
}  // namespace ferry
