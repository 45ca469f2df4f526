// chunker_test.cc: chunk plans (docs/FORMAT.md section 1) on the corpus
// files and on synthetic safetensors headers: invariants for every chunk
// size, tensor-aligned boundaries, packing, dtype tags, and plans that depend
// on the header alone.
#include "codec/chunker.h"

#include <gtest/gtest.h>

#include <cstring>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "codec/limits.h"
#include "tests/testing/testing.h"

namespace ferry {
namespace {

constexpr std::size_t kKiB = 1024;
constexpr std::size_t kMiB = 1024 * kKiB;

std::vector<std::size_t> all_chunk_sizes() {
  std::vector<std::size_t> sizes;
  for (std::size_t c = kMinChunkBytes; c <= kMaxChunkBytes; c *= 2) sizes.push_back(c);
  return sizes;
}

// One tensor of a synthetic file: its safetensors dtype and byte size.
struct Spec {
  std::string dtype;
  std::uint64_t bytes;
};

// A synthetic safetensors file: the header bytes and the size the whole
// file would have. Tensors are laid out in the order given; `pad` metadata
// characters let a test move the data section's start.
struct Synthetic {
  std::vector<std::byte> prefix;
  std::uint64_t file_size = 0;
  SafetensorsLayout layout;
};

Synthetic make_synthetic(const std::vector<Spec>& specs, std::size_t pad = 0) {
  nlohmann::json h = nlohmann::json::object();
  std::uint64_t pos = 0;
  for (std::size_t i = 0; i < specs.size(); ++i) {
    auto props = safetensors_dtype(specs[i].dtype);
    FERRY_CHECK(props && specs[i].bytes % props->element_bytes == 0);
    char name[32];
    std::snprintf(name, sizeof name, "t%06zu", i);
    h[name] = {{"dtype", specs[i].dtype},
               {"shape", {specs[i].bytes / props->element_bytes}},
               {"data_offsets", {pos, pos + specs[i].bytes}}};
    pos += specs[i].bytes;
  }
  if (pad) h["__metadata__"] = {{"pad", std::string(pad, 'x')}};
  std::string text = h.dump();
  Synthetic s;
  s.prefix.resize(8 + text.size());
  for (int i = 0; i < 8; ++i) s.prefix[i] = static_cast<std::byte>(text.size() >> (8 * i));
  std::memcpy(s.prefix.data() + 8, text.data(), text.size());
  s.file_size = s.prefix.size() + pos;
  auto r = parse_safetensors(s.prefix, s.file_size);
  FERRY_CHECK(r.is_ok());
  s.layout = std::move(r).value();
  return s;
}

std::uint64_t leaf_floor(std::uint64_t x) { return x - x % kLeafBytes; }

// The invariants every plan must hold, with or without a layout.
void expect_valid_plan(const std::vector<ChunkPlan>& plan, std::uint64_t file_size, std::size_t chunk_bytes,
                       const SafetensorsLayout* layout) {
  SCOPED_TRACE("file_size=" + std::to_string(file_size) + " chunk_bytes=" + std::to_string(chunk_bytes));
  if (file_size == 0) {
    EXPECT_TRUE(plan.empty());
    return;
  }
  ASSERT_FALSE(plan.empty());
  std::uint64_t pos = 0;
  for (const ChunkPlan& c : plan) {
    ASSERT_EQ(c.offset, pos);
    ASSERT_EQ(c.offset % kLeafBytes, 0u);
    ASSERT_GT(c.length, 0u);
    ASSERT_LE(c.length, chunk_bytes);
    EXPECT_EQ(c.trial, layout == nullptr);
    pos = c.end();
  }
  EXPECT_EQ(pos, file_size);
  if (layout == nullptr) return;
  // Every chunk starts where a segment (header or tensor) starts, rounded
  // down to a leaf, or a whole number of chunk sizes after that.
  std::vector<std::uint64_t> anchors = {0};
  for (const TensorInfo& t : layout->tensors) anchors.push_back(leaf_floor(t.begin));
  for (const ChunkPlan& c : plan) {
    auto it = std::upper_bound(anchors.begin(), anchors.end(), c.offset);
    ASSERT_NE(it, anchors.begin());
    EXPECT_EQ((c.offset - *(it - 1)) % chunk_bytes, 0u) << "chunk at " << c.offset;
  }
  // A change of element type always starts a chunk at the tensor's leaf.
  std::set<std::uint64_t> starts;
  for (const ChunkPlan& c : plan) starts.insert(c.offset);
  const TensorInfo* prev = nullptr;
  for (const TensorInfo& t : layout->tensors) {
    if (t.bytes() == 0) continue;
    if (prev == nullptr || prev->chunk_dtype() != t.chunk_dtype()) {
      EXPECT_TRUE(starts.count(leaf_floor(t.begin))) << "tensor " << t.name;
    }
    prev = &t;
  }
}

// The worked example of docs/FORMAT.md section 1, byte for byte: a change
// here is a format change.
TEST(Chunker, GoldenPlan) {
  SafetensorsLayout l;
  l.header_bytes = 192;
  l.data_offset = 200;
  l.file_bytes = 70000;
  auto add = [&](const char* name, const char* dtype, std::uint64_t begin, std::uint64_t end) {
    TensorInfo t;
    t.name = name;
    t.dtype_name = dtype;
    t.dtype = safetensors_dtype(dtype)->dtype;
    t.element_bytes = safetensors_dtype(dtype)->element_bytes;
    t.begin = begin;
    t.end = end;
    l.tensors.push_back(t);
  };
  add("t0", "F32", 200, 1200);
  add("t1", "F32", 1200, 7200);
  add("t2", "BF16", 7200, 27680);
  add("t3", "I64", 27680, 27744);
  add("t4", "BF16", 27744, 70000);
  const std::vector<ChunkPlan> expected = {
      {0, 4096, DType::kF32, false},       {4096, 16384, DType::kBF16, false},
      {20480, 4096, DType::kBF16, false},  {24576, 16384, DType::kBF16, false},
      {40960, 16384, DType::kBF16, false}, {57344, 12656, DType::kBF16, false},
  };
  EXPECT_EQ(plan_chunks(l.file_bytes, &l, 16 * kKiB), expected);
}

TEST(Chunker, ChecksChunkSize) {
  for (std::size_t c : all_chunk_sizes()) EXPECT_TRUE(check_chunk_bytes(c).is_ok()) << c;
  for (std::size_t c : {std::size_t{0}, std::size_t{1}, std::size_t{2048}, std::size_t{4095},
                        std::size_t{6144}, 4 * kMiB + 4 * kKiB, 128 * kMiB}) {
    Status st = check_chunk_bytes(c);
    EXPECT_EQ(st.code(), Code::kInvalidArgument) << c;
    EXPECT_NE(st.message().find("chunk size " + std::to_string(c) + " bytes"), std::string::npos)
        << st.message();
  }
}

TEST(Chunker, UnknownLayoutCutsAtFixedMultiples) {
  for (std::uint64_t size : {0ul, 1ul, 4095ul, 4096ul, 4097ul, 10ul * kMiB + 7}) {
    auto plan = plan_chunks(size, nullptr, 4 * kMiB);
    expect_valid_plan(plan, size, 4 * kMiB, nullptr);
    for (std::size_t i = 0; i < plan.size(); ++i) {
      EXPECT_EQ(plan[i].offset, i * 4 * kMiB);
      EXPECT_EQ(plan[i].dtype, DType::kBytes);
    }
  }
  EXPECT_EQ(plan_chunks(10 * kMiB + 7, nullptr, 4 * kMiB).size(), 3u);
}

TEST(Chunker, CorpusFilesAtEveryChunkSize) {
  int seen = 0;
  for (const auto& f : testing::corpus_files()) {
    if (!looks_like_safetensors(f.path)) continue;
    ++seen;
    auto layout = read_safetensors_layout(f.path);
    ASSERT_TRUE(layout.is_ok()) << layout.status().to_string();
    for (std::size_t c : all_chunk_sizes()) {
      auto plan = plan_chunks(layout->file_bytes, &*layout, c);
      expect_valid_plan(plan, layout->file_bytes, c, &*layout);
      std::uint64_t tagged_float = 0;
      for (const ChunkPlan& p : plan) {
        if (is_float(p.dtype)) tagged_float += p.length;
      }
      // Both files are almost all float weights; the header is the rest.
      EXPECT_GT(tagged_float, layout->file_bytes * 9 / 10) << f.name << " chunk " << c;
      if (f.name == "bf16_standin.safetensors") {
        for (const ChunkPlan& p : plan) {
          if (p.offset >= layout->data_offset) {
            EXPECT_EQ(p.dtype, DType::kBF16);
          }
        }
      }
    }
  }
  if (seen == 0) GTEST_SKIP() << "corpus not found: set FERRY_CORPUS_DIR (scripts/test.sh does)";
}

TEST(Chunker, PacksManyTinyTensors) {
  std::vector<Spec> specs(20000, Spec{"F32", 12});
  Synthetic s = make_synthetic(specs);
  for (std::size_t c : {4 * kKiB, 64 * kKiB, 4 * kMiB}) {
    auto plan = plan_chunks(s.file_size, &s.layout, c);
    expect_valid_plan(plan, s.file_size, c, &s.layout);
    // Packed: as few chunks as the size allows, past the header's own.
    std::uint64_t data_chunks = 0;
    for (const ChunkPlan& p : plan) {
      if (p.offset >= leaf_floor(s.layout.data_offset)) {
        ++data_chunks;
        EXPECT_EQ(p.dtype, DType::kF32);
      } else {
        EXPECT_EQ(p.dtype, DType::kBytes);  // the header region
      }
    }
    std::uint64_t data_span = s.file_size - leaf_floor(s.layout.data_offset);
    EXPECT_LE(data_chunks, data_span / c + 2) << c;
  }
}

TEST(Chunker, CutsHugeTensorAtChunkMultiples) {
  // 1 GiB of BF16 behind a header of a few KiB: only the header is read.
  Synthetic s = make_synthetic({{"U8", 100}, {"BF16", 1024 * kMiB}}, 5000);
  const std::uint64_t t_start = leaf_floor(s.layout.tensors[1].begin);
  for (std::size_t c : {64 * kKiB, 4 * kMiB, 64 * kMiB}) {
    auto plan = plan_chunks(s.file_size, &s.layout, c);
    expect_valid_plan(plan, s.file_size, c, &s.layout);
    ASSERT_EQ(plan[0].offset, 0u);
    EXPECT_EQ(plan[0].dtype, DType::kBytes);
    ASSERT_EQ(plan[1].offset, t_start);
    for (std::size_t i = 1; i < plan.size(); ++i) {
      EXPECT_EQ(plan[i].offset, t_start + (i - 1) * c);
      EXPECT_EQ(plan[i].dtype, DType::kBF16);
    }
    EXPECT_EQ(plan.size(), 1 + (s.file_size - t_start + c - 1) / c);
  }
}

TEST(Chunker, DtypeChangesStartChunks) {
  std::vector<Spec> specs;
  for (int i = 0; i < 40; ++i) specs.push_back({i % 2 ? "BF16" : "F32", 16 * kKiB + 4 * (i % 3)});
  Synthetic s = make_synthetic(specs);
  auto plan = plan_chunks(s.file_size, &s.layout, 4 * kMiB);
  expect_valid_plan(plan, s.file_size, 4 * kMiB, &s.layout);
  // One chunk per tensor (each starts in a leaf of its own), the header in
  // the first tensor's chunk because both share leaf 0.
  ASSERT_EQ(plan.size(), specs.size());
  for (std::size_t i = 0; i < plan.size(); ++i) {
    EXPECT_EQ(plan[i].offset, leaf_floor(s.layout.tensors[i].begin)) << i;
    EXPECT_EQ(plan[i].dtype, s.layout.tensors[i].chunk_dtype()) << i;
  }
}

TEST(Chunker, NonFloatTensorsAreBytes) {
  Synthetic s = make_synthetic({{"F32", 64 * kKiB}, {"I64", 64 * kKiB}, {"F32", 64 * kKiB}});
  auto plan = plan_chunks(s.file_size, &s.layout, 4 * kMiB);
  expect_valid_plan(plan, s.file_size, 4 * kMiB, &s.layout);
  ASSERT_EQ(plan.size(), 3u);
  EXPECT_EQ(plan[0].dtype, DType::kF32);
  EXPECT_EQ(plan[1].dtype, DType::kBytes);
  EXPECT_EQ(plan[2].dtype, DType::kF32);
}

TEST(Chunker, LargeHeaderIsItsOwnChunk) {
  Synthetic s = make_synthetic({{"F16", 64 * kKiB}}, 30000);
  ASSERT_GT(s.layout.data_offset, 30000u);
  auto plan = plan_chunks(s.file_size, &s.layout, 16 * kKiB);
  expect_valid_plan(plan, s.file_size, 16 * kKiB, &s.layout);
  const std::uint64_t t_start = leaf_floor(s.layout.data_offset);
  for (const ChunkPlan& p : plan) {
    EXPECT_EQ(p.dtype, p.offset < t_start ? DType::kBytes : DType::kF16) << p.offset;
    EXPECT_TRUE(p.end() <= t_start || p.offset >= t_start) << "chunk mixes header and tensor";
  }
}

TEST(Chunker, TagIsTheMajorityType) {
  // All in one leaf: 96 bytes of F32 and ~3 KiB of BF16 after a tiny header.
  Synthetic s = make_synthetic({{"F32", 96}, {"BF16", 3000}, {"F32", 8}});
  auto plan = plan_chunks(s.file_size, &s.layout, 4 * kKiB);
  ASSERT_EQ(plan.size(), 1u);
  EXPECT_EQ(plan[0].dtype, DType::kBF16);
}

TEST(Chunker, RandomLayoutsHoldInvariants) {
  const std::uint64_t seed = testing::test_seed();
  std::mt19937_64 rng(seed);
  const char* dtypes[] = {"F32", "BF16", "F16", "F8_E4M3", "I64", "U8"};
  auto sizes = all_chunk_sizes();
  for (int round = 0; round < 200; ++round) {
    std::vector<Spec> specs(rng() % 60);
    for (Spec& sp : specs) {
      sp.dtype = dtypes[rng() % 6];
      std::uint64_t elem = safetensors_dtype(sp.dtype)->element_bytes;
      switch (rng() % 4) {
        case 0:
          sp.bytes = 0;
          break;
        case 1:
          sp.bytes = elem * (rng() % 100);
          break;
        case 2:
          sp.bytes = elem * (rng() % 100000);
          break;
        default:
          sp.bytes = elem * (rng() % (40 * kMiB));
          break;
      }
    }
    Synthetic s = make_synthetic(specs, rng() % 9000);
    std::size_t c = sizes[rng() % sizes.size()];
    SCOPED_TRACE("seed " + std::to_string(seed) + " round " + std::to_string(round));
    auto plan = plan_chunks(s.file_size, &s.layout, c);
    expect_valid_plan(plan, s.file_size, c, &s.layout);
    if (::testing::Test::HasFatalFailure()) return;
  }
}

TEST(Chunker, MismatchedFileSizeStillCoversTheFile) {
  Synthetic s = make_synthetic({{"F32", 64 * kKiB}, {"BF16", 64 * kKiB}});
  for (std::uint64_t size : {std::uint64_t{0}, std::uint64_t{5}, s.file_size - 70000, s.file_size + 12345}) {
    auto plan = plan_chunks(size, &s.layout, 16 * kKiB);
    ASSERT_EQ(plan.empty(), size == 0);
    std::uint64_t pos = 0;
    for (const ChunkPlan& p : plan) {
      EXPECT_EQ(p.offset, pos);
      EXPECT_LE(p.length, 16 * kKiB);
      pos = p.end();
    }
    EXPECT_EQ(pos, size);
  }
}

// Writes a real safetensors file with the synthetic header and `data`.
std::filesystem::path write_checkpoint(const testing::TempDir& dir, const std::string& name,
                                       const Synthetic& s, const std::vector<std::byte>& data) {
  std::vector<std::byte> file = s.prefix;
  file.insert(file.end(), data.begin(), data.end());
  testing::write_file(dir / name, file);
  return dir / name;
}

TEST(Chunker, PlansDependOnTheHeaderOnly) {
  const std::uint64_t seed = testing::test_seed();
  std::vector<Spec> specs;
  for (int i = 0; i < 30; ++i) specs.push_back({i % 3 ? "BF16" : "F32", (i % 7 + 1) * 20 * kKiB});
  Synthetic s = make_synthetic(specs, 777);
  const std::uint64_t data_bytes = s.file_size - s.prefix.size();
  testing::TempDir dir;
  auto data1 = testing::random_bytes(data_bytes, seed);
  auto data2 = testing::random_bytes(data_bytes, seed + 1);
  auto p1 = write_checkpoint(dir, "step1.safetensors", s, data1);
  auto p2 = write_checkpoint(dir, "step2.safetensors", s, data2);

  // Change one tensor's values only.
  const TensorInfo& victim = s.layout.tensors[11];
  auto data3 = data1;
  for (std::uint64_t i = victim.begin; i < victim.end; ++i) {
    data3[i - s.prefix.size()] ^= std::byte{0x41};
  }
  auto p3 = write_checkpoint(dir, "step3.safetensors", s, data3);

  const std::size_t c = 64 * kKiB;
  auto plan_of = [&](const std::filesystem::path& p) {
    auto l = read_safetensors_layout(p);
    FERRY_CHECK(l.is_ok());
    return plan_chunks(l->file_bytes, &*l, c);
  };
  auto plan1 = plan_of(p1);
  EXPECT_EQ(plan1, plan_of(p2));
  EXPECT_EQ(plan1, plan_of(p3));

  // Only the chunks covering the changed tensor differ.
  auto f1 = testing::read_file(p1);
  auto f3 = testing::read_file(p3);
  ChunkRange hit = chunks_covering(plan1, victim.begin, victim.end);
  ASSERT_LT(hit.first, hit.last);
  for (std::size_t i = 0; i < plan1.size(); ++i) {
    bool same = std::memcmp(f1.data() + plan1[i].offset, f3.data() + plan1[i].offset, plan1[i].length) == 0;
    EXPECT_EQ(same, i < hit.first || i >= hit.last) << "chunk " << i;
  }
}

TEST(Chunker, MapsTensorsToChunks) {
  // Header in leaf 0 with t0; t1 packs with t0; t2 changes type.
  Synthetic s = make_synthetic({{"F32", 1000}, {"F32", 6000}, {"BF16", 20 * kKiB}, {"BF16", 0}});
  auto plan = plan_chunks(s.file_size, &s.layout, 8 * kKiB);
  expect_valid_plan(plan, s.file_size, 8 * kKiB, &s.layout);
  auto map = map_tensors_to_chunks(s.layout, plan);
  ASSERT_EQ(map.size(), s.layout.tensors.size());
  for (std::size_t i = 0; i < map.size(); ++i) {
    const TensorInfo& t = s.layout.tensors[i];
    std::uint64_t covered = 0, own = 0;
    for (std::size_t k = map[i].chunks.first; k < map[i].chunks.last; ++k) {
      covered += plan[k].length;
      own += overlap_bytes(plan[k], t.begin, t.end);
      EXPECT_GT(overlap_bytes(plan[k], t.begin, t.end), 0u);
    }
    EXPECT_EQ(own, t.bytes()) << t.name;
    EXPECT_EQ(map[i].shared_bytes, covered - own) << t.name;
    if (t.bytes() == 0) {
      EXPECT_EQ(map[i].chunks.first, map[i].chunks.last);
    }
  }
  EXPECT_EQ(chunks_covering(plan, 0, s.file_size).last, plan.size());
  EXPECT_EQ(chunks_covering(plan, 0, s.file_size).first, 0u);
}

}  // namespace
}  // namespace ferry
