// frame_rebuilder_test.cc: a frame made again from its source file is the
// frame the packer made, byte for byte, for chunks of a safetensors file
// (codec by dtype), of files of unknown layout (codec by trial) and of zstd
// and raw chunks; a chunk coded alone instead of as a delta is the packer's
// standalone frame; a chunk whose bytes changed since, a file that is gone
// and a coder at another zstd level are errors that name the file.
#include "codec/frame_rebuilder.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <set>

#include "codec/archive.h"
#include "codec/engine.h"
#include "codec/packer.h"
#include "tests/replication/sender_fixture.h"
#include "tests/testing/testing.h"

namespace ferry::replication {
namespace {

namespace fs = std::filesystem;

class FrameRebuilderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::uint64_t seed = testing::test_seed();
    fs::create_directories(dir_ / "src");
    testing_support::write_safetensors(dir_ / "src/model.safetensors", 6, 150'000, {}, seed);
    testing::write_file(dir_ / "src/adam.bin", testing::normal_floats(200'000, 4, false, 1e-3, seed + 1));
    std::vector<std::byte> sparse = testing::normal_floats(300'000, 2, true, 0.02, seed + 2);
    for (std::size_t i = 0; i < sparse.size(); i += 2) {
      if ((i / 2) % 20 != 0) sparse[i] = sparse[i + 1] = std::byte{0};
    }
    testing::write_file(dir_ / "src/sparse.bin", sparse);
    testing::write_file(dir_ / "src/noise.bin", testing::random_bytes(300'000, seed + 3));
    auto sources = list_pack_sources(dir_ / "src");
    ASSERT_TRUE(sources.is_ok());
    sources_ = *sources;
    ASSERT_NO_FATAL_FAILURE(pack(nullptr));
  }

  // Packs the sources (with `engine`, or the packer's CPU engine) into an
  // archive and keeps each chunk's origin, file name and frame.
  void pack(CodecEngine* engine) {
    origins_.clear();
    names_.clear();
    frames_.clear();
    const fs::path archive = dir_ / (engine != nullptr ? "packed-engine.ferry" : "packed.ferry");
    auto writer = ArchiveWriter::create(archive);
    ASSERT_TRUE(writer.is_ok());
    PackOptions o;
    o.chunk_bytes = 256u << 10;
    o.created_ns = 1;
    o.host = "h";
    o.engine = engine;
    auto m = pack_files(sources_, o, *writer);
    ASSERT_TRUE(m.is_ok()) << m.status().to_string();
    ASSERT_TRUE(writer->finish(*m).is_ok());
    auto reader = ArchiveReader::open(archive);
    ASSERT_TRUE(reader.is_ok());
    for (std::size_t f = 0; f < m->files.size(); ++f) {
      for (std::size_t c = 0; c < m->files[f].chunks.size(); ++c) {
        origins_.push_back(chunk_origin(sources_[f].path, m->files[f], m->files[f].chunks[c]));
        names_.push_back(m->files[f].path);
        frames_.emplace_back();
        ASSERT_TRUE(reader->read_frame(f, c, frames_.back()).is_ok());
      }
    }
  }

  testing::TempDir dir_;
  std::vector<PackSource> sources_;
  // Per chunk of the checkpoint, in order: its origin, file name and frame.
  std::vector<ChunkOrigin> origins_;
  std::vector<std::string> names_;
  std::vector<std::vector<std::byte>> frames_;
};

TEST_F(FrameRebuilderTest, RebuildsThePackersFramesByteForByte) {
  FrameRebuilder rebuilder(kDefaultZstdLevel);
  std::set<Codec> codecs;
  bool trial = false, by_dtype = false;
  for (std::size_t i = 0; i < frames_.size(); ++i) {
    const ChunkOrigin& o = origins_[i];
    trial |= o.trial;
    by_dtype |= !o.trial;
    std::vector<std::byte> frame(frame_room_bytes(o.chunk.length), std::byte{0x77});
    Status st = rebuilder.rebuild(o, frame);
    ASSERT_TRUE(st.is_ok()) << st.to_string();
    EXPECT_EQ(frame, frames_[i]) << names_[i] << " @" << o.chunk.offset;
    codecs.insert(static_cast<Codec>(o.chunk.codec));
  }
  EXPECT_TRUE(trial && by_dtype) << "chunks of both kinds of file";
  EXPECT_TRUE(codecs.contains(Codec::kPlanes16V2));
  EXPECT_TRUE(codecs.contains(Codec::kPlanes32V2));
  EXPECT_TRUE(codecs.contains(Codec::kZstd));
  EXPECT_TRUE(codecs.contains(Codec::kRaw));
}

// The GPU engine writes version 1 float payloads; a sender that pushed its
// frames rebuilds them at version 1 (a CPU engine asked for version 1 makes
// the same frames, cuda/gpu_engine.h).
TEST_F(FrameRebuilderTest, Version1FramesRebuildAtVersion1) {
  CpuEngineOptions eo;
  eo.float_version = kFloatPayloadV1;
  auto engine = make_cpu_engine(eo);
  ASSERT_NO_FATAL_FAILURE(pack(engine.get()));
  FrameRebuilder v1(kDefaultZstdLevel, kFloatPayloadV1), v2(kDefaultZstdLevel);
  int planes = 0;
  for (std::size_t i = 0; i < frames_.size(); ++i) {
    const ChunkOrigin& o = origins_[i];
    std::vector<std::byte> frame(frame_room_bytes(o.chunk.length));
    ASSERT_TRUE(v1.rebuild(o, frame).is_ok()) << names_[i];
    EXPECT_EQ(frame, frames_[i]) << names_[i] << " @" << o.chunk.offset;
    if (codec_payload_version(static_cast<Codec>(o.chunk.codec)) != 1) continue;
    ++planes;
    frame.assign(frame_room_bytes(o.chunk.length), std::byte{0});
    EXPECT_EQ(v2.rebuild(o, frame).code(), Code::kInternal) << "a version 2 coder makes another frame";
  }
  EXPECT_GT(planes, 0);
}

// A delta the receiver refused (its base gone) is coded alone: the frame
// the packer makes of the chunk alone, and the origin then describes it, so
// that a resend after a break rebuilds that frame.
TEST_F(FrameRebuilderTest, RebuildStandaloneCodesADeltaAloneAndKeepsIt) {
  FrameRebuilder rebuilder(kDefaultZstdLevel);
  for (std::size_t i = 0; i < frames_.size(); ++i) {
    const ChunkOrigin packed = origins_[i];
    ChunkOrigin o = packed;
    o.chunk.codec = static_cast<std::uint8_t>(Codec::kDeltaPlanes16);
    o.chunk.base_id.fill(0x5a);
    o.chunk.frame_bytes = 1;
    o.base_path = dir_ / "gone";
    std::vector<std::byte> frame(frame_room_bytes(o.chunk.length));
    Status st = rebuilder.rebuild_standalone(o, frame);
    ASSERT_TRUE(st.is_ok()) << st.to_string();
    EXPECT_EQ(frame, frames_[i]) << names_[i] << " @" << o.chunk.offset;
    EXPECT_EQ(o.chunk.codec, packed.chunk.codec);
    EXPECT_EQ(o.chunk.frame_bytes, packed.chunk.frame_bytes);
    EXPECT_EQ(o.chunk.base_id, Digest{});
    EXPECT_TRUE(o.base_path.empty());
    frame.assign(frame_room_bytes(o.chunk.length), std::byte{0});
    ASSERT_TRUE(rebuilder.rebuild(o, frame).is_ok()) << names_[i];
    EXPECT_EQ(frame, frames_[i]) << "a resend rebuilds the standalone frame";
  }
  // The source changed since: Aborted, as for any rebuild.
  testing::write_file(dir_ / "src/noise.bin", testing::random_bytes(300'000, 12345));
  const std::size_t noise =
      static_cast<std::size_t>(std::find(names_.begin(), names_.end(), "noise.bin") - names_.begin());
  ASSERT_LT(noise, origins_.size());
  ChunkOrigin o = origins_[noise];
  std::vector<std::byte> frame(frame_room_bytes(o.chunk.length));
  EXPECT_EQ(rebuilder.rebuild_standalone(o, frame).code(), Code::kAborted);
}

TEST_F(FrameRebuilderTest, AChangedChunkAMissingFileAndAnotherLevelAreErrors) {
  // One byte of adam.bin's second chunk flips: that chunk fails, naming the
  // file and the chunk's offset; the file's other chunks still rebuild.
  std::vector<std::size_t> adam;
  for (std::size_t i = 0; i < names_.size(); ++i) {
    if (names_[i] == "adam.bin") adam.push_back(i);
  }
  ASSERT_GE(adam.size(), 2u);
  const ChunkOrigin& second = origins_[adam[1]];
  {
    auto fd = open_fd(second.path, O_WRONLY);
    ASSERT_TRUE(fd.is_ok());
    std::byte b{0x5a};
    ASSERT_EQ(::pwrite(fd->get(), &b, 1, static_cast<off_t>(second.chunk.offset + 1000)), 1);
  }
  FrameRebuilder rebuilder(kDefaultZstdLevel);
  std::vector<std::byte> frame(frame_room_bytes(second.chunk.length));
  Status st = rebuilder.rebuild(second, frame);
  EXPECT_EQ(st.code(), Code::kAborted);
  EXPECT_NE(st.message().find(second.path.string() + " at offset " + std::to_string(second.chunk.offset)),
            std::string::npos)
      << st.message();
  EXPECT_NE(st.message().find("changed"), std::string::npos) << st.message();
  const ChunkOrigin& first = origins_[adam[0]];
  frame.assign(frame_room_bytes(first.chunk.length), std::byte{0});
  EXPECT_TRUE(rebuilder.rebuild(first, frame).is_ok());

  // The file is gone.
  fs::remove(dir_ / "src/noise.bin");
  for (std::size_t i = 0; i < names_.size(); ++i) {
    if (names_[i] != "noise.bin") continue;
    const ChunkOrigin& o = origins_[i];
    frame.assign(frame_room_bytes(o.chunk.length), std::byte{0});
    st = rebuilder.rebuild(o, frame);
    EXPECT_FALSE(st.is_ok());
    EXPECT_NE(st.message().find("noise.bin"), std::string::npos) << st.message();
    break;
  }

  // A zstd chunk coded at another level than the packer's comes out in
  // another size: refused, never sent in place of the first frame.
  FrameRebuilder other(19);
  for (const ChunkOrigin& o : origins_) {
    if (static_cast<Codec>(o.chunk.codec) != Codec::kZstd) continue;
    frame.assign(frame_room_bytes(o.chunk.length), std::byte{0});
    st = other.rebuild(o, frame);
    EXPECT_EQ(st.code(), Code::kInternal) << st.to_string();
    break;
  }
}

}  // namespace
}  // namespace ferry::replication
