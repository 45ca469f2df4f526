// manifest_test.cc: the snapshot manifest: round trip, every validation rule
// (magic, version, CRCs, unsafe paths, overlapping or gapped chunks, counts
// over limits) and hostile input: every truncation and random byte damage,
// with CRCs recomputed so the parser itself is exercised, never crash.
#include "codec/manifest.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>

#include "base/crc32c.h"
#include "codec/limits.h"
#include "codec/tree_hash.h"
#include "tests/testing/testing.h"

namespace ferry {
namespace {

Digest digest_of(std::uint8_t seed) {
  Digest d{};
  for (std::size_t i = 0; i < d.size(); ++i) d[i] = static_cast<std::uint8_t>(seed * 31 + i);
  return d;
}

ManifestChunk chunk(std::uint64_t offset, std::uint32_t length, std::uint8_t seed, std::uint8_t codec = 3,
                    DType dtype = DType::kBF16) {
  ManifestChunk c;
  c.offset = offset;
  c.length = length;
  c.id = digest_of(seed);
  c.dtype = dtype;
  c.codec = codec;
  c.frame_bytes = static_cast<std::uint32_t>(kFrameHeaderBytes + length / 2);
  return c;
}

Manifest sample_manifest() {
  Manifest m;
  m.host = "gpu-node-17";
  m.job = "llama-pretrain";
  m.step = 12000;
  m.created_ns = 1'700'000'000'123'456'789;
  ManifestFile a;
  a.path = "model/model-00001.safetensors";
  a.size = 3 * 4096 + 100;
  a.mode = 0644;
  a.mtime_ns = 1'699'999'999'000'000'001;
  a.root = digest_of(7);
  a.layout = LayoutKind::kSafetensors;
  a.tensors.push_back({"embed.weight", "BF16", {16, 128}, 104, 104 + 4096});
  a.tensors.push_back({"norm", "F32", {}, 4200, a.size});
  a.chunks.push_back(chunk(0, 2 * 4096, 1));
  a.chunks.push_back(chunk(2 * 4096, 4096 + 100, 2, 1, DType::kBytes));
  ManifestFile b;
  b.path = "zz-empty";
  b.size = 0;
  b.mode = 0600;
  b.root = digest_of(9);
  m.files = {a, b};
  return m;
}

// Recomputes the body length and both CRCs after a test edits the bytes, so
// the parser's own checks (not the CRC) must catch the damage.
void reseal(std::vector<std::byte>& bytes) {
  if (bytes.size() < kManifestHeaderBytes) return;
  std::uint64_t body = bytes.size() - kManifestHeaderBytes;
  for (int i = 0; i < 8; ++i) bytes[8 + i] = std::byte(static_cast<std::uint8_t>(body >> (8 * i)));
  auto put32 = [&](std::size_t at, std::uint32_t v) {
    for (int i = 0; i < 4; ++i) bytes[at + i] = std::byte(static_cast<std::uint8_t>(v >> (8 * i)));
  };
  put32(16, mask_crc(crc32c(std::span<const std::byte>(bytes).subspan(kManifestHeaderBytes))));
  put32(20, mask_crc(crc32c(std::span<const std::byte>(bytes).first(20))));
}

// Replaces the first occurrence of `from` with `to` (same length).
void patch(std::vector<std::byte>& bytes, std::string_view from, std::string_view to) {
  ASSERT_EQ(from.size(), to.size());
  std::string s(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  auto at = s.find(from);
  ASSERT_NE(at, std::string::npos) << from;
  std::memcpy(bytes.data() + at, to.data(), to.size());
}

void put_u32_at(std::vector<std::byte>& bytes, std::size_t at, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) bytes[at + i] = std::byte(static_cast<std::uint8_t>(v >> (8 * i)));
}

// Offset of the file count in sample_manifest's bytes.
std::size_t file_count_offset(const Manifest& m) {
  return kManifestHeaderBytes + 2 + m.host.size() + 2 + m.job.size() + 8 + 8;
}

Status parse_status(const std::vector<std::byte>& bytes) { return parse_manifest(bytes).status(); }

TEST(ManifestTest, RoundTrip) {
  Manifest m = sample_manifest();
  ASSERT_TRUE(validate_manifest(m).is_ok()) << validate_manifest(m).to_string();
  std::vector<std::byte> bytes = serialize_manifest(m);
  auto parsed = parse_manifest(bytes);
  ASSERT_TRUE(parsed.is_ok()) << parsed.status().to_string();
  const Manifest& p = *parsed;
  EXPECT_EQ(p.host, m.host);
  EXPECT_EQ(p.job, m.job);
  EXPECT_EQ(p.step, m.step);
  EXPECT_EQ(p.created_ns, m.created_ns);
  ASSERT_EQ(p.files.size(), 2u);
  const ManifestFile& f = p.files[0];
  EXPECT_EQ(f.path, m.files[0].path);
  EXPECT_EQ(f.size, m.files[0].size);
  EXPECT_EQ(f.mode, 0644u);
  EXPECT_EQ(f.mtime_ns, m.files[0].mtime_ns);
  EXPECT_EQ(f.root, m.files[0].root);
  EXPECT_EQ(f.layout, LayoutKind::kSafetensors);
  ASSERT_EQ(f.tensors.size(), 2u);
  EXPECT_EQ(f.tensors[0].name, "embed.weight");
  EXPECT_EQ(f.tensors[0].dtype, "BF16");
  EXPECT_EQ(f.tensors[0].shape, (std::vector<std::uint64_t>{16, 128}));
  EXPECT_EQ(f.tensors[1].shape.size(), 0u);
  EXPECT_EQ(f.tensors[1].end, f.size);
  ASSERT_EQ(f.chunks.size(), 2u);
  EXPECT_EQ(f.chunks[1].offset, 8192u);
  EXPECT_EQ(f.chunks[1].codec, 1);
  EXPECT_EQ(f.chunks[1].dtype, DType::kBytes);
  EXPECT_EQ(f.chunks[1].id, digest_of(2));
  EXPECT_EQ(f.chunks[0].frame_bytes, m.files[0].chunks[0].frame_bytes);
  EXPECT_EQ(p.files[1].chunks.size(), 0u);
  EXPECT_EQ(p.logical_bytes(), m.files[0].size);
  EXPECT_EQ(p.chunk_count(), 2u);
  // Serialising the parsed manifest gives the same bytes.
  EXPECT_EQ(serialize_manifest(p), bytes);
}

TEST(ManifestTest, EmptyManifestRoundTrips) {
  Manifest m;
  auto parsed = parse_manifest(serialize_manifest(m));
  ASSERT_TRUE(parsed.is_ok()) << parsed.status().to_string();
  EXPECT_TRUE(parsed->files.empty());
}

TEST(ManifestTest, RootComposesFromUniformPowerOfTwoChunks) {
  using L = std::vector<std::uint32_t>;
  EXPECT_TRUE(root_composes_from_chunk_ids(L{4096}));
  EXPECT_TRUE(root_composes_from_chunk_ids(L{16384, 16384, 100}));
  EXPECT_TRUE(root_composes_from_chunk_ids(L{8192, 8192, 8192}));
  EXPECT_FALSE(root_composes_from_chunk_ids(L{}));
  EXPECT_FALSE(root_composes_from_chunk_ids(L{12288, 12288}));  // 3 leaves: not a subtree
  EXPECT_FALSE(root_composes_from_chunk_ids(L{8192, 4096, 8192}));
  EXPECT_FALSE(root_composes_from_chunk_ids(L{8192, 16384}));
  EXPECT_FALSE(root_composes_from_chunk_ids(L{100, 100}));
  EXPECT_TRUE(root_composes_from_chunk_ids(L{100}));
  // Where it says yes, the composed root equals the root over all leaves.
  auto data = testing::random_bytes(7 * 16384 + 100, testing::test_seed());
  for (std::size_t chunk :
       {std::size_t{4096}, std::size_t{16384}, std::size_t{65536}, std::size_t{1} << 20}) {
    std::vector<Digest> ids;
    L lengths;
    for (std::size_t off = 0; off < data.size(); off += chunk) {
      std::size_t n = std::min(chunk, data.size() - off);
      ids.push_back(chunk_id(std::span(data).subspan(off, n)));
      lengths.push_back(static_cast<std::uint32_t>(n));
    }
    ASSERT_TRUE(root_composes_from_chunk_ids(lengths)) << chunk;
    std::vector<Digest> leaves(leaf_count(data.size()));
    hash_leaves(data, leaves);
    EXPECT_EQ(merkle_root(ids), merkle_root(leaves)) << chunk;
  }
}

TEST(ManifestTest, HeaderChecks) {
  const std::vector<std::byte> good = serialize_manifest(sample_manifest());
  {
    auto b = good;
    b[0] = std::byte{'X'};
    Status st = parse_status(b);
    EXPECT_EQ(st.code(), Code::kCorruption);
    EXPECT_NE(st.message().find("magic"), std::string::npos) << st.to_string();
  }
  {
    auto b = good;
    b[4] = std::byte{3};
    EXPECT_EQ(parse_status(b).code(), Code::kCorruption) << "header CRC must catch it";
    reseal(b);
    Status st = parse_status(b);
    EXPECT_EQ(st.code(), Code::kUnsupported) << st.to_string();
    EXPECT_NE(st.message().find("version 3"), std::string::npos);
  }
  {
    auto b = good;
    b[5] = std::byte{1};  // flags
    reseal(b);
    EXPECT_EQ(parse_status(b).code(), Code::kCorruption);
  }
  {
    auto b = good;
    b[22] ^= std::byte{1};
    EXPECT_NE(parse_status(b).message().find("header CRC"), std::string::npos);
  }
  {
    auto b = good;
    b[b.size() - 3] ^= std::byte{0x40};
    Status st = parse_status(b);
    EXPECT_EQ(st.code(), Code::kCorruption);
    EXPECT_NE(st.message().find("body CRC"), std::string::npos) << st.to_string();
  }
  {
    auto b = good;
    b.push_back(std::byte{0});  // body length disagrees with the header
    EXPECT_EQ(parse_status(b).code(), Code::kCorruption);
    reseal(b);  // now the body itself has a trailing byte
    Status st = parse_status(b);
    EXPECT_NE(st.message().find("unexpected bytes"), std::string::npos) << st.to_string();
  }
}

TEST(ManifestTest, RelativePathRules) {
  for (const char* ok :
       {"a", "a/b", "model-00001-of-00002.safetensors", "a/.hidden", "a/..b", "...", "a b/c"}) {
    EXPECT_TRUE(validate_relative_path(ok).is_ok()) << ok;
  }
  for (const char* bad :
       {"", "/etc/passwd", "..", "../x", "a/../../x", "a/..", "./a", "a/./b", "a//b", "a/", "/"}) {
    Status st = validate_relative_path(bad);
    EXPECT_EQ(st.code(), Code::kInvalidArgument) << bad;
  }
  EXPECT_FALSE(validate_relative_path(std::string("a\0b", 3)).is_ok());
  EXPECT_FALSE(validate_relative_path(std::string(kMaxPathBytes + 1, 'a')).is_ok());
  EXPECT_TRUE(validate_relative_path(std::string(kMaxPathBytes, 'a')).is_ok());
}

TEST(ManifestTest, ParserRejectsPathTraversal) {
  Manifest m = sample_manifest();
  m.files[0].path = "xx/model";
  const auto good = serialize_manifest(m);
  const std::string_view evils[] = {"../model", "/x/model", "xx/../mo", std::string_view("xx/\0odel", 8)};
  for (std::string_view evil : evils) {
    auto b = good;
    patch(b, "xx/model", evil);
    reseal(b);
    Status st = parse_status(b);
    EXPECT_EQ(st.code(), Code::kCorruption) << evil;
    EXPECT_NE(st.message().find("unsafe path"), std::string::npos) << st.to_string();
  }
}

TEST(ManifestTest, ChunksMustTileTheFile) {
  {
    Manifest m = sample_manifest();
    m.files[0].chunks[1].offset -= 4096;  // overlap
    Status st = validate_manifest(m);
    EXPECT_EQ(st.code(), Code::kInvalidArgument);
    EXPECT_NE(st.message().find("overlaps"), std::string::npos) << st.to_string();
  }
  {
    Manifest m = sample_manifest();
    m.files[0].chunks[1].offset += 1;  // gap
    EXPECT_NE(validate_manifest(m).message().find("gap"), std::string::npos);
  }
  {
    Manifest m = sample_manifest();
    m.files[0].size += 1;  // chunks stop short
    EXPECT_NE(validate_manifest(m).message().find("chunks cover"), std::string::npos);
  }
  {
    Manifest m = sample_manifest();
    m.files[0].chunks[0].length = 0;
    EXPECT_FALSE(validate_manifest(m).is_ok());
  }
  {
    Manifest m = sample_manifest();
    m.files[0].chunks[0].frame_bytes = 10;  // below the frame header
    EXPECT_FALSE(validate_manifest(m).is_ok());
  }
  {
    Manifest m = sample_manifest();
    m.files[0].chunks[0].base_id = digest_of(3);  // base id without a delta codec
    EXPECT_FALSE(validate_manifest(m).is_ok());
    m.files[0].chunks[0].codec = 17;  // reserved delta planes16: allowed with a base
    EXPECT_TRUE(validate_manifest(m).is_ok()) << validate_manifest(m).to_string();
    m.files[0].chunks[0].codec = 9;
    EXPECT_FALSE(validate_manifest(m).is_ok());
  }
  // The same checks run in the parser: a gap written into the bytes.
  Manifest m;
  ManifestFile f;
  f.path = "f";
  f.size = 0x3000 + 777;
  f.chunks = {chunk(0, 0x3000, 1), chunk(0x3000, 777, 2)};
  m.files = {f};
  auto b = serialize_manifest(m);
  const std::uint8_t from[8] = {0x00, 0x30, 0, 0, 0, 0, 0, 0}, to[8] = {0x01, 0x30, 0, 0, 0, 0, 0, 0};
  patch(b, std::string_view(reinterpret_cast<const char*>(from), 8),
        std::string_view(reinterpret_cast<const char*>(to), 8));
  reseal(b);
  Status st = parse_status(b);
  EXPECT_EQ(st.code(), Code::kCorruption);
  EXPECT_NE(st.message().find("gap"), std::string::npos) << st.to_string();
}

TEST(ManifestTest, OtherSemanticRules) {
  {
    Manifest m = sample_manifest();
    std::swap(m.files[0], m.files[1]);
    EXPECT_NE(validate_manifest(m).message().find("ascending"), std::string::npos);
    m.files[0] = m.files[1];  // duplicate path
    EXPECT_FALSE(validate_manifest(m).is_ok());
  }
  {
    Manifest m = sample_manifest();
    m.files[0].tensors[0].end = m.files[0].size + 1;
    EXPECT_NE(validate_manifest(m).message().find("outside the file"), std::string::npos);
  }
  {
    Manifest m = sample_manifest();
    m.files[0].tensors[0].shape.assign(kMaxTensorRank + 1, 1);
    EXPECT_FALSE(validate_manifest(m).is_ok());
  }
  {
    Manifest m = sample_manifest();
    m.files[0].layout = LayoutKind::kUnknown;  // tensors without a layout
    EXPECT_FALSE(validate_manifest(m).is_ok());
  }
  {
    Manifest m = sample_manifest();
    m.files[0].mode = 0100644;  // file type bits are not stored
    EXPECT_FALSE(validate_manifest(m).is_ok());
  }
  {
    Manifest m = sample_manifest();
    m.host.assign(kMaxHostBytes + 1, 'h');
    EXPECT_FALSE(validate_manifest(m).is_ok());
  }
}

TEST(ManifestTest, CountsOverLimitsAreRejectedBeforeAllocation) {
  Manifest m = sample_manifest();
  const auto good = serialize_manifest(m);
  const std::size_t at = file_count_offset(m);
  for (std::uint32_t count : {kMaxManifestFiles + 1, 0xffffffffu, 1000u, 3u}) {
    auto b = good;
    put_u32_at(b, at, count);
    reseal(b);
    Status st = parse_status(b);
    EXPECT_EQ(st.code(), Code::kCorruption) << count;
    if (count > kMaxManifestFiles) {
      EXPECT_NE(st.message().find("exceeds"), std::string::npos) << st.to_string();
    }
  }
  // A chunk count far beyond the bytes left: the first file's chunk count sits
  // right before its first chunk record, whose offset is 0 and length 8192.
  auto b = good;
  std::string s(reinterpret_cast<const char*>(b.data()), b.size());
  const char rec[] = {2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x20, 0, 0};  // count 2, offset 0, length 8192
  auto pos = s.find(std::string(rec, sizeof(rec)));
  ASSERT_NE(pos, std::string::npos);
  for (std::uint32_t count : {kMaxFileChunks + 1, 100000u}) {
    auto c = b;
    put_u32_at(c, pos, count);
    reseal(c);
    EXPECT_EQ(parse_status(c).code(), Code::kCorruption) << count;
  }
  // The body length in the header is bounded too.
  auto h = good;
  for (int i = 0; i < 8; ++i) h[8 + i] = std::byte{0xff};
  EXPECT_EQ(parse_status(h).code(), Code::kCorruption);
}

TEST(ManifestTest, EveryTruncationFailsCleanly) {
  const auto good = serialize_manifest(sample_manifest());
  for (std::size_t n = 0; n < good.size(); ++n) {
    std::vector<std::byte> b(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(n));
    EXPECT_FALSE(parse_manifest(b).is_ok()) << n;
    reseal(b);  // a consistent header over a short body: the parser must notice
    EXPECT_FALSE(parse_manifest(b).is_ok()) << n;
  }
}

TEST(ManifestTest, RandomDamageNeverCrashes) {
  const std::uint64_t seed = testing::test_seed();
  std::mt19937_64 rng(seed);
  const auto good = serialize_manifest(sample_manifest());
  int rejected = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    auto b = good;
    int flips = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < flips; ++k) {
      std::size_t at = kManifestHeaderBytes + rng() % (b.size() - kManifestHeaderBytes);
      b[at] ^= std::byte(static_cast<std::uint8_t>(1 + rng() % 255));
    }
    reseal(b);
    auto r = parse_manifest(b);
    if (!r.is_ok()) {
      ++rejected;
      EXPECT_NE(r.status().code(), Code::kOk);
    } else {
      EXPECT_TRUE(validate_manifest(*r).is_ok());  // whatever parses is valid
    }
  }
  EXPECT_GT(rejected, 0);
}

// A pushed snapshot records its origin (FORMAT.md section 5, version 2); a
// manifest without one stays version 1, byte for byte.
Manifest delta_manifest() {
  Manifest m = sample_manifest();
  m.files[0].chunks[0].codec = 17;
  m.files[0].chunks[0].base_id = digest_of(40);
  m.origin.source_dir = "/ckpt/llama/step-12000";
  m.origin.kind = SnapshotKind::kDelta;
  m.origin.base_snapshot = "llama-pretrain-11000";
  m.origin.chain_depth = 2;
  return m;
}

TEST(ManifestTest, OriginRoundTripsInVersion2) {
  EXPECT_EQ(serialize_manifest(sample_manifest())[4], std::byte{1});
  const Manifest m = delta_manifest();
  const auto bytes = serialize_manifest(m);
  EXPECT_EQ(bytes[4], std::byte{2});
  auto p = parse_manifest(bytes);
  ASSERT_TRUE(p.is_ok()) << p.status().to_string();
  EXPECT_EQ(p->origin, m.origin);
  EXPECT_TRUE(p->has_delta_chunks());
  EXPECT_FALSE(sample_manifest().has_delta_chunks());
  EXPECT_EQ(p->frame_bytes(), m.files[0].chunks[0].frame_bytes + m.files[0].chunks[1].frame_bytes);
  Manifest key = sample_manifest();
  key.origin.source_dir = "/ckpt/llama/step-10000";
  key.origin.kind = SnapshotKind::kKey;
  auto k = parse_manifest(serialize_manifest(key));
  ASSERT_TRUE(k.is_ok()) << k.status().to_string();
  EXPECT_EQ(k->origin, key.origin);
}

TEST(ManifestTest, OriginRules) {
  auto refused = [](const Manifest& m, std::string_view what) {
    Status st = validate_manifest(m);
    EXPECT_EQ(st.code(), Code::kInvalidArgument) << what;
    EXPECT_NE(st.message().find(what), std::string::npos) << st.to_string();
  };
  Manifest m = delta_manifest();
  m.origin.source_dir = "ckpt/relative";
  refused(m, "not an absolute path");
  m = delta_manifest();
  m.origin.chain_depth = 0;
  refused(m, "chain depth 0");
  m.origin.chain_depth = kMaxDeltaChainSnapshots + 1;
  refused(m, "chain depth " + std::to_string(kMaxDeltaChainSnapshots + 1));
  m = delta_manifest();
  m.origin.kind = SnapshotKind::kKey;
  refused(m, "names a base snapshot");
  m = delta_manifest();
  m.origin.kind = static_cast<SnapshotKind>(3);
  refused(m, "kind 3 is unknown");
  // The parser refuses the same, and a version 2 manifest without an origin.
  auto bytes = serialize_manifest(delta_manifest());
  bytes[bytes.size() - 1] = std::byte{kMaxDeltaChainSnapshots + 1};
  reseal(bytes);
  EXPECT_EQ(parse_status(bytes).code(), Code::kCorruption);
  auto v1 = serialize_manifest(sample_manifest());
  v1[4] = std::byte{2};
  for (int i = 0; i < 6; ++i) v1.push_back(std::byte{0});  // empty dir, kind 0, empty base, depth 0
  reseal(v1);
  Status st = parse_status(v1);
  EXPECT_EQ(st.code(), Code::kCorruption);
  EXPECT_NE(st.message().find("empty origin"), std::string::npos) << st.to_string();
}

TEST(ManifestTest, GoldenBytesVersion2) {
  testing::expect_golden_file("tests/codec/golden/manifest_v2.hex",
                              testing::hex_of(serialize_manifest(delta_manifest())) + "\n", "manifest bytes");
}

// The byte layout of FORMAT.md section 5, frozen: a change here is a format
// change and must be made deliberately (FERRY_UPDATE_GOLDEN=1 rewrites it).
TEST(ManifestTest, GoldenBytes) {
  testing::expect_golden_file("tests/codec/golden/manifest_v1.hex",
                              testing::hex_of(serialize_manifest(sample_manifest())) + "\n",
                              "manifest bytes");
}

}  // namespace
}  // namespace ferry
