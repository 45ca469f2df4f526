// store_push_delta_test.cc: a push straight into a store (what `ferry push
// --to=s3://...` and the agent do for buckets) finds its delta base from the
// store's own list: each snapshot's origin read back from its manifest, the
// job's key snapshot chosen, the chunks stored as deltas against it, and the
// delta rebuilt on read. Runs on the local store, whose list and manifests
// go through the same snapshot_info as the S3 store's.
#include <gtest/gtest.h>

#include "codec/delta_chain.h"
#include "codec/delta_codec.h"
#include "codec/frame.h"
#include "store/local_store.h"
#include "store/store_push.h"
#include "tests/testing/testing.h"

namespace ferry {
namespace {

namespace fs = std::filesystem;

constexpr const char* kNs = "host-a";

TEST(StorePushDeltaTest, BaseChosenFromTheStoresListAndDeltasRebuild) {
  testing::TempDir dir;
  auto store = open_local_store(dir / "store", {.log = [](std::string_view) {}});
  ASSERT_TRUE(store.is_ok()) << store.status().to_string();
  std::vector<std::byte> weights = testing::normal_floats(3u << 17, 2, true, 0.02, 11);
  std::vector<fs::path> dirs;
  std::vector<StorePushReport> reports;
  for (int step = 1; step <= 3; ++step) {
    testing::drift_bf16(weights, static_cast<std::uint64_t>(step));
    const fs::path d = dir / ("step-" + std::to_string(step));
    fs::create_directories(d);
    testing::write_bf16_safetensors(d / "model.safetensors", weights, 3);
    dirs.push_back(d);
    ChainQuery q;
    q.job = "llama";
    q.source_dir = d;
    DeltaChoice choice = choose_store_delta_base(**store, kNs, DeltaPolicy{}, q);
    PackOptions pack;
    pack.chunk_bytes = 256u << 10;
    pack.job = "llama";
    pack.step = static_cast<std::uint64_t>(step);
    pack.created_ns = 1'000'000'000LL * (1000 + step);
    pack.delta_from = choice.base_dir;
    pack.origin = choice.origin;
    auto sources = list_pack_sources(d);
    ASSERT_TRUE(sources.is_ok());
    auto r = push_to_store(**store, kNs, *sources, pack, "llama-" + std::to_string(step));
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();
    reports.push_back(*r);
  }
  EXPECT_EQ(reports[0].origin.kind, SnapshotKind::kKey);
  for (int i : {1, 2}) {
    EXPECT_EQ(reports[i].origin.kind, SnapshotKind::kDelta);
    EXPECT_EQ(reports[i].origin.base_snapshot, "llama-1");
    EXPECT_EQ(reports[i].delta_chunks, 3u);
    EXPECT_LT(reports[i].frame_bytes_stored, reports[0].frame_bytes_stored / 2);
  }
  // The list gives each snapshot's origin back.
  auto listed = (*store)->list(kNs);
  ASSERT_TRUE(listed.is_ok());
  ASSERT_EQ(listed->size(), 3u);
  for (std::size_t i = 0; i < 3; ++i) {
    EXPECT_EQ((*listed)[i].origin, reports[i].origin);
    EXPECT_EQ((*listed)[i].origin.source_dir, dirs[i].string());
    EXPECT_GT((*listed)[i].frame_bytes, 0u);
  }
  // Each delta chunk rebuilds from its base, equal to the file's bytes.
  auto bytes = (*store)->manifest(kNs, "llama-3");
  ASSERT_TRUE(bytes.is_ok());
  auto m = parse_manifest(*bytes);
  ASSERT_TRUE(m.is_ok());
  const auto file = testing::read_file(dirs[2] / "model.safetensors");
  for (const ManifestChunk& c : m->files[0].chunks) {
    if (c.base_id == Digest{}) continue;
    auto frame = (*store)->get(kNs, c.id);
    ASSERT_TRUE(frame.is_ok());
    auto header = parse_frame_header(*frame);
    ASSERT_TRUE(header.is_ok());
    ASSERT_TRUE(is_delta_codec(header->codec));
    std::vector<std::byte> out;
    Status rebuilt = rebuild_chunk(
        *header, *frame, [&](const Digest& id) { return (*store)->get(kNs, id); }, out);
    ASSERT_TRUE(rebuilt.is_ok()) << rebuilt.to_string();
    EXPECT_TRUE(std::equal(out.begin(), out.end(), file.begin() + static_cast<std::ptrdiff_t>(c.offset)));
  }
}

}  // namespace
}  // namespace ferry
