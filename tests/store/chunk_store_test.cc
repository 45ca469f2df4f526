// chunk_store_test.cc: the local chunk store on real files with real frames:
// round trips, verification at put, group-commit durability, snapshots,
// crash recovery (torn tail, lost or stale index), scrub, retention, delta
// frames and their bases, gc, append-only mode, durable directories and
// namespace isolation. Quotas, limits and commit records:
// chunk_store_snapshots_test.cc.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <thread>

#include "base/clock.h"
#include "codec/chunk_codec.h"
#include "codec/delta_codec.h"
#include "codec/limits.h"
#include "store/local_store.h"
#include "store/pack_file.h"
#include "store/store_index.h"
#include "store/store_limits.h"
#include "tests/store/chunk_store_test_util.h"
#include "tests/store/local_store_test_util.h"
#include "tests/testing/testing.h"

namespace ferry {
namespace {

namespace fs = std::filesystem;
using testing::make_chunk;
using testing::manifest_for;
using testing::TempDir;
using testing::TestChunk;

using namespace store_test;

TEST(ChunkStore, CorpusChunksRoundTrip) {
  auto files = testing::corpus_files();
  if (files.empty()) GTEST_SKIP() << "no corpus (set FERRY_CORPUS_DIR; see shared/corpus/fetch-corpus.sh)";
  TempDir dir;
  Logged logged;
  std::vector<TestChunk> chunks;
  for (const auto& f : files) {
    auto bytes = testing::read_file(f.path);
    // Up to two 1 MiB chunks per file keeps the test quick.
    for (std::size_t off = 0; off < bytes.size() && off < (2u << 20); off += 1u << 20) {
      const std::size_t n = std::min<std::size_t>(1u << 20, bytes.size() - off);
      const DType dt = f.dtype == "bf16" ? DType::kBF16 : f.dtype == "fp32" ? DType::kF32 : DType::kBytes;
      chunks.push_back(testing::encode_chunk({bytes.begin() + off, bytes.begin() + off + n}, dt));
    }
  }
  {
    auto s = open_store(dir.path(), logged.options());
    put_all(*s, "host-a", chunks);
    for (const auto& c : chunks) EXPECT_TRUE(has(*s, "host-a", c.info.id));
    expect_readable(*s, "host-a", chunks);
  }
  auto s = open_store(dir.path(), logged.options());
  expect_readable(*s, "host-a", chunks);
  EXPECT_FALSE(logged.saw("rebuilding")) << "a clean close leaves a usable index";
}

TEST(ChunkStore, OneProcessPerStore) {
  TempDir dir;
  Logged logged;
  auto s = open_store(dir.path(), logged.options());
  auto second = open_local_store(dir.path(), logged.options());
  ASSERT_FALSE(second.is_ok());
  EXPECT_EQ(second.status().code(), Code::kUnavailable);
  s.reset();
  EXPECT_TRUE(open_local_store(dir.path(), logged.options()).is_ok());
}

TEST(ChunkStore, PutVerifiesTheFrame) {
  TempDir dir;
  Logged logged;
  auto s = open_store(dir.path(), logged.options());
  TestChunk c = make_chunk(testing::test_seed());
  // A flipped payload byte: the payload CRC fails.
  auto bad = c.frame;
  bad[kFrameHeaderBytes + bad.size() / 3 - kFrameHeaderBytes / 3] ^= std::byte{0x10};
  auto r = s->put("host-a", bad);
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), Code::kCorruption);
  // A frame with consistent CRCs whose payload is not the chunk it claims.
  TestChunk other = make_chunk(testing::test_seed() + 1);
  Digest wrong = other.info.id;
  r = s->put("host-a", c.frame, &wrong);
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), Code::kCorruption);
  // Truncated.
  r = s->put("host-a", std::span(c.frame).first(c.frame.size() - 1));
  EXPECT_FALSE(r.is_ok());
  ASSERT_TRUE(s->sync("host-a").is_ok());
  EXPECT_FALSE(has(*s, "host-a", c.info.id));
  auto u = s->usage("host-a");
  ASSERT_TRUE(u.is_ok());
  EXPECT_EQ(u->chunks, 0u);
}

TEST(ChunkStore, PackRecordsAreTheBytesOfAFullCrcPass) {
  // put() derives each record's CRC from the frame's own CRCs; the pack must
  // hold exactly what a full pass over every record would have written.
  TempDir dir;
  Logged logged;
  std::vector<TestChunk> chunks = make_chunks(2, testing::test_seed());
  chunks.push_back(testing::encode_chunk(testing::random_bytes(12289, testing::test_seed()), DType::kBytes));
  chunks.push_back(testing::encode_chunk(std::vector<std::byte>(70000, std::byte{'a'}), DType::kBytes));
  chunks.push_back(testing::encode_chunk(testing::normal_floats(3001, 4, false, 1e-3, 3), DType::kF32));
  chunks.push_back(testing::encode_chunk({}, DType::kBytes));
  std::set<Codec> codecs;
  for (const TestChunk& c : chunks) codecs.insert(c.info.codec);
  EXPECT_GE(codecs.size(), 3u) << "raw, zstd and a planes codec";
  {
    auto s = open_store(dir.path(), logged.options());
    put_all(*s, "host-a", chunks);
  }
  const auto header = pack_header();
  std::vector<std::byte> expected(header.begin(), header.end());
  for (const TestChunk& c : chunks) {
    const RecordFraming f = frame_record(c.frame);
    expected.insert(expected.end(), f.header.begin(), f.header.end());
    expected.insert(expected.end(), c.frame.begin(), c.frame.end());
    expected.insert(expected.end(), f.trailer.begin(), f.trailer.end());
  }
  EXPECT_EQ(testing::read_file(last_pack(dir.path(), "host-a")), expected);
}

TEST(ChunkStore, PutIsIdempotentAndDurableOnlyAfterSync) {
  TempDir dir;
  Logged logged;
  auto s = open_store(dir.path(), logged.options());
  TestChunk c = make_chunk(testing::test_seed());
  auto r = s->put("host-a", c.frame, &c.info.id);
  ASSERT_TRUE(r.is_ok());
  EXPECT_TRUE(r->stored);
  EXPECT_FALSE(has(*s, "host-a", c.info.id)) << "not durable before sync";
  ASSERT_TRUE(s->sync("host-a").is_ok());
  EXPECT_TRUE(has(*s, "host-a", c.info.id));
  auto before = s->usage("host-a");
  r = s->put("host-a", c.frame);
  ASSERT_TRUE(r.is_ok());
  EXPECT_FALSE(r->stored);
  EXPECT_EQ(s->usage("host-a")->stored_bytes, before->stored_bytes);
}

TEST(ChunkStore, ConcurrentPutsToOneNamespace) {
  TempDir dir;
  Logged logged;
  auto s = open_store(dir.path(), logged.options());
  auto chunks = make_chunks(64, testing::test_seed());
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (std::size_t i = t; i < chunks.size(); i += 2) {  // overlapping: every chunk twice
        auto r = s->put("host-a", chunks[i].frame);
        EXPECT_TRUE(r.is_ok()) << r.status().to_string();
        EXPECT_TRUE(s->sync("host-a").is_ok());
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(s->usage("host-a")->chunks, chunks.size());
  expect_readable(*s, "host-a", chunks);
}

TEST(ChunkStore, CommitChecksChunksAndNeverOverwrites) {
  TempDir dir;
  Logged logged;
  auto s = open_store(dir.path(), logged.options());
  auto chunks = make_chunks(3, testing::test_seed());
  put_all(*s, "host-a", {chunks[0], chunks[1]});
  const auto m = manifest_for({&chunks[0], &chunks[1], &chunks[2]}, kT0);
  Status st = s->commit_snapshot("host-a", "snap-1", m);
  EXPECT_EQ(st.code(), Code::kNotFound) << st.to_string();
  EXPECT_NE(st.message().find(to_hex(chunks[2].info.id)), std::string::npos) << st.message();
  EXPECT_TRUE(s->list("host-a")->empty());
  // Put without an explicit sync: commit makes it durable first.
  ASSERT_TRUE(s->put("host-a", chunks[2].frame).is_ok());
  ASSERT_TRUE(s->commit_snapshot("host-a", "snap-1", m).is_ok());
  EXPECT_TRUE(s->commit_snapshot("host-a", "snap-1", m).is_ok()) << "a retried commit is OK";
  const auto other = manifest_for({&chunks[0]}, kT0);
  EXPECT_EQ(s->commit_snapshot("host-a", "snap-1", other).code(), Code::kInvalidArgument);
  EXPECT_EQ(s->commit_snapshot("host-a", "../evil", other).code(), Code::kInvalidArgument);
  auto garbage = m;
  garbage[garbage.size() - 1] ^= std::byte{1};
  EXPECT_EQ(s->commit_snapshot("host-a", "snap-2", garbage).code(), Code::kCorruption);

  auto list = s->list("host-a");
  ASSERT_TRUE(list.is_ok());
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].name, "snap-1");
  EXPECT_EQ((*list)[0].host, "host-a");
  EXPECT_EQ((*list)[0].chunks, 3u);
  EXPECT_EQ((*list)[0].logical_bytes, 3u * (64u << 10));
  EXPECT_EQ((*list)[0].created_ns, kT0);
  auto back = s->manifest("host-a", "snap-1");
  ASSERT_TRUE(back.is_ok());
  EXPECT_EQ(*back, m);
  EXPECT_EQ(s->manifest("host-a", "nope").status().code(), Code::kNotFound);
}

TEST(ChunkStore, NamespacesAreIsolated) {
  TempDir dir;
  Logged logged;
  auto s = open_store(dir.path(), logged.options());
  auto chunks = make_chunks(1, testing::test_seed());
  put_all(*s, "host-a", chunks);
  ASSERT_TRUE(s->commit_snapshot("host-a", "s", manifest_for({&chunks[0]}, kT0)).is_ok());
  EXPECT_FALSE(has(*s, "host-b", chunks[0].info.id));
  EXPECT_EQ(s->get("host-b", chunks[0].info.id).status().code(), Code::kNotFound);
  EXPECT_EQ(s->manifest("host-b", "s").status().code(), Code::kNotFound);
  EXPECT_TRUE(s->list("host-b")->empty());
  EXPECT_EQ(s->commit_snapshot("host-b", "s", manifest_for({&chunks[0]}, kT0)).code(), Code::kNotFound);
  for (std::string_view bad :
       std::vector<std::string_view>{"", ".", "..", "a/b", "../host-a", std::string_view("a\0b", 3)}) {
    EXPECT_EQ(s->have(bad, {}).status().code(), Code::kInvalidArgument) << bad;
  }
  EXPECT_EQ(s->have(std::string(65, 'a'), {}).status().code(), Code::kInvalidArgument);
  auto names = s->namespaces();
  ASSERT_TRUE(names.is_ok());
  EXPECT_NE(std::find(names->begin(), names->end(), "host-a"), names->end());
}

TEST(ChunkStore, TornTailIsTruncatedOnReopen) {
  TempDir dir;
  Logged logged;
  auto chunks = make_chunks(4, testing::test_seed());
  {
    auto s = open_store(dir.path(), logged.options());
    put_all(*s, "host-a", chunks);
  }
  const fs::path pack = last_pack(dir.path(), "host-a");
  const auto good_size = fs::file_size(pack);
  // Half a record: its framing and the first half of a frame, as a kill
  // in the middle of an append leaves it.
  TestChunk extra = make_chunk(testing::test_seed() + 99);
  const RecordFraming framing = frame_record(extra.frame);
  {
    std::ofstream out(pack, std::ios::binary | std::ios::app);
    out.write(reinterpret_cast<const char*>(framing.header.data()), framing.header.size());
    out.write(reinterpret_cast<const char*>(extra.frame.data()),
              static_cast<std::streamsize>(extra.frame.size() / 2));
  }
  auto s = open_store(dir.path(), logged.options());
  EXPECT_TRUE(s->have("host-a", {}).is_ok());  // opens and recovers the namespace
  EXPECT_TRUE(logged.saw("torn tail")) << "recovery says what it cut";
  EXPECT_EQ(fs::file_size(pack), good_size);
  EXPECT_FALSE(has(*s, "host-a", extra.info.id));
  expect_readable(*s, "host-a", chunks);
  // Appends continue after the cut, and survive another reopen.
  put_all(*s, "host-a", {extra});
  s.reset();
  s = open_store(dir.path(), logged.options());
  expect_readable(*s, "host-a", {extra});
  auto scrub = s->scrub("host-a");
  ASSERT_TRUE(scrub.is_ok());
  EXPECT_TRUE(scrub->clean());
}

TEST(ChunkStore, LostIndexIsRebuilt) {
  TempDir dir;
  Logged logged;
  StoreOptions o = logged.options();
  o.pack_target_bytes = 1u << 20;  // several packs
  auto chunks = make_chunks(40, testing::test_seed());
  {
    auto s = open_store(dir.path(), o);
    put_all(*s, "host-a", chunks);
  }
  fs::remove(dir.path() / "host-a" / "index");
  auto s = open_store(dir.path(), o);
  expect_readable(*s, "host-a", chunks);
  EXPECT_TRUE(logged.saw("index missing"));
  EXPECT_EQ(s->usage("host-a")->chunks, chunks.size());
  s.reset();
  // A damaged index (bad CRC) is rebuilt too.
  {
    std::fstream f(dir.path() / "host-a" / "index", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(30);
    f.put('\x55');
  }
  s = open_store(dir.path(), o);
  expect_readable(*s, "host-a", chunks);
  EXPECT_TRUE(logged.saw("index unusable"));
}

TEST(ChunkStore, StaleIndexIsCompletedFromPacks) {
  TempDir dir;
  Logged logged;
  auto first = make_chunks(3, testing::test_seed());
  auto later = make_chunks(3, testing::test_seed() + 1);
  const fs::path index = dir.path() / "host-a" / "index";
  {
    auto s = open_store(dir.path(), logged.options());
    put_all(*s, "host-a", first);
  }
  const auto old_index = testing::read_file(index);
  {
    auto s = open_store(dir.path(), logged.options());
    put_all(*s, "host-a", later);
  }
  testing::write_file(index, old_index);  // covers only the first three
  auto s = open_store(dir.path(), logged.options());
  expect_readable(*s, "host-a", first);
  expect_readable(*s, "host-a", later);
  s.reset();
  // An index that claims more than a pack holds is not trusted for that pack.
  const fs::path pack = last_pack(dir.path(), "host-a");
  const auto full = testing::read_file(index);
  {
    auto s2 = open_store(dir.path(), logged.options());
    put_all(*s2, "host-a", make_chunks(1, 7));
  }
  testing::write_file(index, full);
  fs::resize_file(pack, fs::file_size(pack) - 1);  // cuts the newest record: torn
  s = open_store(dir.path(), logged.options());
  expect_readable(*s, "host-a", first);
  expect_readable(*s, "host-a", later);
}

TEST(ChunkStore, IndexParserRefusesDamage) {
  StoreIndex idx;
  idx.packs.push_back({1, 1000});
  idx.entries.push_back({Digest{1}, 1, 8, 200});
  auto bytes = serialize_index(idx);
  ASSERT_TRUE(parse_index(bytes).is_ok());
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    auto b = bytes;
    b[i] ^= std::byte{0x01};
    EXPECT_FALSE(parse_index(b).is_ok()) << "flip at " << i;
  }
  EXPECT_FALSE(parse_index(std::span(bytes).first(bytes.size() - 1)).is_ok());
  StoreIndex outside = idx;
  outside.entries[0].offset = 900;  // 900 + 12 + 200 > 1000
  EXPECT_FALSE(parse_index(serialize_index(outside)).is_ok());
}

TEST(ChunkStore, ScrubReportsABitFlipAndTheSnapshotsItAffects) {
  TempDir dir;
  Logged logged;
  auto chunks = make_chunks(4, testing::test_seed());
  {
    auto s = open_store(dir.path(), logged.options());
    put_all(*s, "host-a", chunks);
    ASSERT_TRUE(s->commit_snapshot("host-a", "a", manifest_for({&chunks[0], &chunks[1]}, kT0)).is_ok());
    ASSERT_TRUE(s->commit_snapshot("host-a", "b", manifest_for({&chunks[1], &chunks[2]}, kT0 + 1)).is_ok());
    ASSERT_TRUE(s->commit_snapshot("host-a", "c", manifest_for({&chunks[3]}, kT0 + 2)).is_ok());
    auto clean = s->scrub("");
    ASSERT_TRUE(clean.is_ok());
    EXPECT_TRUE(clean->clean());
    EXPECT_EQ(clean->chunks_checked, 4u);
    EXPECT_EQ(clean->snapshots_checked, 3u);
  }
  // Flip one bit in the middle of chunk 1's stored payload.
  const fs::path pack = last_pack(dir.path(), "host-a");
  auto bytes = testing::read_file(pack);
  auto at = std::search(bytes.begin(), bytes.end(), chunks[1].frame.begin(), chunks[1].frame.end());
  ASSERT_NE(at, bytes.end());
  at[static_cast<std::ptrdiff_t>(chunks[1].frame.size() / 2)] ^= std::byte{0x04};
  testing::write_file(pack, bytes);

  auto s = open_store(dir.path(), logged.options());
  auto report = s->scrub("host-a");
  ASSERT_TRUE(report.is_ok()) << report.status().to_string();
  ASSERT_EQ(report->bad_chunks.size(), 1u);
  const auto& bad = report->bad_chunks[0];
  EXPECT_EQ(bad.id, chunks[1].info.id);
  EXPECT_EQ(bad.ns, "host-a");
  EXPECT_EQ(bad.snapshots, (std::vector<std::string>{"a", "b"}));
  EXPECT_NE(bad.where.find(pack.filename().string()), std::string::npos) << bad.where;
  EXPECT_TRUE(report->broken_snapshots.empty());
  // The bad chunk left the index: the next push sends it again and heals.
  EXPECT_FALSE(has(*s, "host-a", chunks[1].info.id));
  put_all(*s, "host-a", {chunks[1]});
  expect_readable(*s, "host-a", chunks);
  s.reset();
  s = open_store(dir.path(), logged.options());
  expect_readable(*s, "host-a", chunks);
  // The damaged record is orphaned bytes now: scrub still reports them
  // (by position, no snapshot affected) until gc rewrites the pack.
  report = s->scrub("host-a");
  ASSERT_TRUE(report.is_ok());
  ASSERT_EQ(report->bad_chunks.size(), 1u);
  EXPECT_TRUE(report->bad_chunks[0].snapshots.empty());
  auto g = s->gc("host-a", Actor::kOperator);
  ASSERT_TRUE(g.is_ok()) << g.status().to_string();
  EXPECT_EQ(g->chunks_removed, 0u);
  EXPECT_GE(g->packs_rewritten, 1u);
  report = s->scrub("host-a");
  ASSERT_TRUE(report.is_ok());
  EXPECT_TRUE(report->clean());
  expect_readable(*s, "host-a", chunks);
}

TEST(ChunkStore, RetentionKeepLastAndKeepWithin) {
  TempDir dir;
  Logged logged;
  auto s = open_store(dir.path(), logged.options());
  auto chunks = make_chunks(5, testing::test_seed());
  put_all(*s, "host-a", chunks);
  for (int i = 0; i < 5; ++i) {
    const auto m = manifest_for({&chunks[i]}, kT0 + i * kHourNs, i);
    ASSERT_TRUE(s->commit_snapshot("host-a", "step-" + std::to_string(i), m).is_ok());
  }
  EXPECT_EQ(s->prune("host-a", {}, kT0, Actor::kOperator).status().code(), Code::kInvalidArgument);
  // keep_within counts from the receiver's commit times: 2.5 hours after
  // step-2 was committed, steps 2, 3 and 4 (2 at exactly the cutoff) are
  // within 9000 s.
  auto listed = s->list("host-a");
  ASSERT_TRUE(listed.is_ok());
  ASSERT_EQ(listed->size(), 5u);
  const std::int64_t step2_committed = (*listed)[2].committed_ns;
  ASSERT_LT((*listed)[1].committed_ns, step2_committed);
  auto r = s->prune("host-a", {.keep_last = 0, .keep_within_seconds = 9000},
                    step2_committed + 9000 * kSecondNs, Actor::kOperator);
  ASSERT_TRUE(r.is_ok());
  EXPECT_EQ(r->removed, (std::vector<std::string>{"step-0", "step-1"}));
  EXPECT_EQ(r->kept, (std::vector<std::string>{"step-2", "step-3", "step-4"}));
  r = s->prune("host-a", {.keep_last = 1}, step2_committed + 9000 * kSecondNs, Actor::kOperator);
  ASSERT_TRUE(r.is_ok());
  EXPECT_EQ(r->removed, (std::vector<std::string>{"step-2", "step-3"}));
  auto list = s->list("host-a");
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].name, "step-4");
}

// A delta frame (docs/FORMAT.md 3.1) is accepted only against a base held
// in the namespace, and checked by rebuilding it; scrub rebuilds it too; a
// kept delta keeps its base through the removal of the snapshot that named
// the base, and gc; a damaged base is reported with its dependant.
TEST(ChunkStore, DeltaFramesNeedTheirBaseAndKeepItThroughGc) {
  TempDir dir;
  Logged logged;
  TestChunk base = make_chunk(testing::test_seed());
  TestChunk next;
  next.raw = base.raw;
  for (std::size_t i = 0; i + 1 < next.raw.size(); i += 2) next.raw[i] ^= std::byte(i % 7 == 0 ? 1 : 0);
  DeltaEncoder enc;
  next.info = enc.encode(next.raw, DType::kBF16, chunk_id(next.raw), base.raw, base.info.id, next.frame);
  ASSERT_TRUE(is_delta_codec(next.info.codec));
  {
    auto s = open_store(dir.path(), logged.options());
    auto refused = s->put("host-a", next.frame);
    ASSERT_FALSE(refused.is_ok());
    EXPECT_EQ(refused.status().code(), Code::kNotFound);
    EXPECT_NE(refused.status().message().find(to_hex(base.info.id)), std::string::npos)
        << refused.status().message();
    EXPECT_FALSE(has(*s, "host-a", next.info.id));
    put_all(*s, "host-a", {base, next});
    ASSERT_TRUE(s->commit_snapshot("host-a", "key", manifest_for({&base}, kT0)).is_ok());
    ASSERT_TRUE(s->commit_snapshot("host-a", "delta", manifest_for({&next}, kT0 + 1)).is_ok());
    auto scrub = s->scrub("host-a");
    ASSERT_TRUE(scrub.is_ok());
    EXPECT_TRUE(scrub->clean());
    EXPECT_EQ(scrub->chunks_checked, 2u);

    ASSERT_TRUE(s->remove_snapshot("host-a", "key", Actor::kOperator).is_ok());
    auto g = s->gc("host-a", Actor::kOperator);
    ASSERT_TRUE(g.is_ok()) << g.status().to_string();
    EXPECT_EQ(g->chunks_removed, 0u) << "the base stays while the delta needs it";
    EXPECT_TRUE(has(*s, "host-a", base.info.id));
    auto frame = s->get("host-a", next.info.id);
    ASSERT_TRUE(frame.is_ok());
    std::vector<std::byte> rebuilt;
    auto h = parse_frame_header(*frame);
    ASSERT_TRUE(h.is_ok());
    Status st = rebuild_chunk(
        *h, *frame, [&](const Digest& id) { return s->get("host-a", id); }, rebuilt);
    ASSERT_TRUE(st.is_ok()) << st.to_string();
    EXPECT_EQ(rebuilt, next.raw);
  }
  // Damage the base: scrub names it, and the delta that needs it.
  const fs::path pack = last_pack(dir.path(), "host-a");
  auto bytes = testing::read_file(pack);
  auto at = std::search(bytes.begin(), bytes.end(), base.frame.begin(), base.frame.end());
  ASSERT_NE(at, bytes.end());
  at[static_cast<std::ptrdiff_t>(base.frame.size() / 2)] ^= std::byte{0x10};
  testing::write_file(pack, bytes);
  auto s = open_store(dir.path(), logged.options());
  auto report = s->scrub("host-a");
  ASSERT_TRUE(report.is_ok()) << report.status().to_string();
  ASSERT_EQ(report->bad_chunks.size(), 2u);
  bool base_bad = false, delta_bad = false;
  for (const auto& bad : report->bad_chunks) {
    base_bad = base_bad || bad.id == base.info.id;
    if (bad.id == next.info.id) {
      delta_bad = true;
      EXPECT_NE(bad.error.find(to_hex(base.info.id)), std::string::npos) << bad.error;
      EXPECT_EQ(bad.snapshots, (std::vector<std::string>{"delta"}));
    }
  }
  EXPECT_TRUE(base_bad && delta_bad);
}

TEST(ChunkStore, GcRemovesOnlyUnreferencedChunks) {
  TempDir dir;
  Logged logged;
  StoreOptions o = logged.options();
  o.pack_target_bytes = 1u << 20;
  auto chunks = make_chunks(40, testing::test_seed());  // ~2.5 packs
  std::vector<TestChunk> kept(chunks.begin() + 10, chunks.begin() + 20);
  std::vector<TestChunk> dropped(chunks.begin(), chunks.begin() + 10);
  dropped.insert(dropped.end(), chunks.begin() + 20, chunks.end());
  {
    auto s = open_store(dir.path(), o);
    put_all(*s, "host-a", chunks);
    std::vector<const TestChunk*> old_refs, new_refs;
    for (const auto& c : chunks) old_refs.push_back(&c);
    for (const auto& c : kept) new_refs.push_back(&c);
    ASSERT_TRUE(s->commit_snapshot("host-a", "old", manifest_for(old_refs, kT0)).is_ok());
    ASSERT_TRUE(s->commit_snapshot("host-a", "new", manifest_for(new_refs, kT0 + kHourNs)).is_ok());
    auto g = s->gc("host-a", Actor::kOperator);
    ASSERT_TRUE(g.is_ok());
    EXPECT_EQ(g->chunks_removed, 0u) << "everything is referenced by 'old'";
    ASSERT_TRUE(s->remove_snapshot("host-a", "old", Actor::kOperator).is_ok());
    const auto before = s->usage("host-a")->stored_bytes;
    g = s->gc("host-a", Actor::kOperator);
    ASSERT_TRUE(g.is_ok()) << g.status().to_string();
    EXPECT_EQ(g->chunks_removed, dropped.size());
    EXPECT_EQ(g->chunks_kept, kept.size());
    EXPECT_GT(g->bytes_removed, 0u);
    EXPECT_GT(g->packs_deleted + g->packs_rewritten, 0u);
    EXPECT_EQ(s->usage("host-a")->stored_bytes, before - g->bytes_removed);
    for (const auto& c : dropped) EXPECT_FALSE(has(*s, "host-a", c.info.id));
    expect_readable(*s, "host-a", kept);
  }
  auto s = open_store(dir.path(), o);
  expect_readable(*s, "host-a", kept);
  auto scrub = s->scrub("host-a");
  ASSERT_TRUE(scrub.is_ok());
  EXPECT_TRUE(scrub->clean());
  // Appends after gc land in a new pack and survive.
  put_all(*s, "host-a", dropped);
  expect_readable(*s, "host-a", dropped);
}

TEST(ChunkStore, GcRefusesWhenASnapshotIsUnreadable) {
  TempDir dir;
  Logged logged;
  auto s = open_store(dir.path(), logged.options());
  auto chunks = make_chunks(2, testing::test_seed());
  put_all(*s, "host-a", chunks);
  ASSERT_TRUE(s->commit_snapshot("host-a", "s", manifest_for({&chunks[0]}, kT0)).is_ok());
  testing::write_file(dir.path() / "host-a" / "snapshots" / "s.manifest", {std::byte{1}, std::byte{2}});
  EXPECT_FALSE(s->gc("host-a", Actor::kOperator).is_ok());
  expect_readable(*s, "host-a", chunks);
  auto scrub = s->scrub("host-a");
  ASSERT_TRUE(scrub.is_ok());
  ASSERT_EQ(scrub->broken_snapshots.size(), 1u);
  EXPECT_EQ(scrub->broken_snapshots[0].name, "s");
}

TEST(ChunkStore, AppendOnlyRefusesDeletionToHosts) {
  TempDir dir;
  Logged logged;
  StoreOptions o = logged.options();
  o.append_only = true;
  auto s = open_store(dir.path(), o);
  auto chunks = make_chunks(2, testing::test_seed());
  put_all(*s, "host-a", chunks);
  ASSERT_TRUE(s->commit_snapshot("host-a", "s0", manifest_for({&chunks[0]}, kT0)).is_ok());
  ASSERT_TRUE(s->commit_snapshot("host-a", "s1", manifest_for({&chunks[1]}, kT0 + 1)).is_ok());
  Status st = s->remove_snapshot("host-a", "s0", Actor::kHost);
  EXPECT_EQ(st.code(), Code::kPermissionDenied);
  EXPECT_NE(st.message().find("append-only"), std::string::npos);
  EXPECT_EQ(s->prune("host-a", {.keep_last = 1}, kT0, Actor::kHost).status().code(), Code::kPermissionDenied);
  EXPECT_EQ(s->gc("host-a", Actor::kHost).status().code(), Code::kPermissionDenied);
  EXPECT_EQ(s->list("host-a")->size(), 2u);
  // The operator on the receiver's machine may.
  EXPECT_TRUE(s->remove_snapshot("host-a", "s0", Actor::kOperator).is_ok());
  EXPECT_TRUE(s->gc("host-a", Actor::kOperator).is_ok());
  EXPECT_EQ(s->remove_snapshot("host-a", "s0", Actor::kOperator).code(), Code::kNotFound);
}

TEST(ChunkStore, NewDirectoriesAreDurableBeforeAnythingIsWrittenInThem) {
  TempDir dir;
  Logged logged;
  std::vector<fs::path> durable;
  StoreOptions o = logged.options();
  o.directory_made_durable = [&](const fs::path& p) {
    EXPECT_TRUE(fs::is_directory(p)) << p;
    EXPECT_TRUE(fs::is_empty(p)) << p << " was written to before its parent was synced";
    durable.push_back(p);
  };
  const fs::path root = dir.path() / "site" / "store";
  auto s = open_store(root, o);
  EXPECT_EQ(durable, (std::vector<fs::path>{dir.path() / "site", root}));
  durable.clear();
  // The first put of a new namespace creates it: every directory is durable
  // in its parent before the put returns (and so before any acknowledgement).
  auto chunks = make_chunks(1, testing::test_seed());
  ASSERT_TRUE(s->put("host-a", chunks[0].frame).is_ok());
  EXPECT_EQ(durable, (std::vector<fs::path>{root / "host-a", root / "host-a" / "packs",
                                            root / "host-a" / "snapshots"}));
  durable.clear();
  ASSERT_TRUE(s->sync("host-a").is_ok());
  s.reset();
  s = open_store(root, o);
  EXPECT_TRUE(has(*s, "host-a", chunks[0].info.id));
  EXPECT_TRUE(durable.empty()) << "nothing new to create";
}

}  // namespace
}  // namespace ferry
