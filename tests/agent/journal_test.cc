// journal_test.cc: the agent's write-ahead journal on real files: round
// trip, a torn tail cut at every byte of the last record, a flipped byte in
// any record ending recovery there, atomic compaction, limits and the fold.
#include "agent/journal.h"

#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include <gtest/gtest.h>

#include "tests/testing/testing.h"

namespace ferry {
namespace {

using ferry::testing::TempDir;

JournalRecord make_record(std::uint64_t id, JobState state, std::mt19937_64& rng) {
  JournalRecord r;
  r.job_id = id;
  r.state = state;
  r.time_ns = static_cast<std::int64_t>(rng() >> 1);
  r.job = "llama-" + std::to_string(rng() % 7);
  r.path = "/ckpt/llama/step-" + std::to_string(id * 100);
  r.snapshot = r.job + "-" + std::to_string(id * 100);
  r.target = state == JobState::kCommitted ? "dr1.example:7000" : "";
  r.created_ns = static_cast<std::int64_t>(rng() >> 1);
  r.step = id * 100;
  r.logical_bytes = rng();
  r.detail = state == JobState::kFailed ? std::string(rng() % 300, 'e') : "";
  if (state == JobState::kStarted && id % 2 == 0) {  // a delta base chosen
    r.delta_target = "dr1.example:7000";
    r.delta_base_dir = "/ckpt/llama/step-" + std::to_string(id * 100 - 100);
    r.delta_base_snapshot = r.job + "-" + std::to_string(id * 100 - 100);
    r.delta_kind = 2;
    r.delta_chain_depth = 1;
  }
  return r;
}

std::vector<JournalRecord> some_records(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<JournalRecord> out;
  for (std::size_t i = 0; i < n; ++i) {
    out.push_back(make_record(i / 3 + 1, static_cast<JobState>(i % 5 + 1), rng));
  }
  return out;
}

std::vector<JournalRecord> write_journal(const std::filesystem::path& p,
                                         const std::vector<JournalRecord>& recs) {
  auto j = Journal::open(p);
  EXPECT_TRUE(j.is_ok()) << j.status().to_string();
  for (const auto& r : recs) EXPECT_TRUE((*j)->append(r).is_ok());
  return recs;
}

std::uint64_t size_on_disk(const std::filesystem::path& p) { return std::filesystem::file_size(p); }

TEST(JournalTest, RoundTripAcrossReopen) {
  TempDir dir;
  const auto p = dir / "journal";
  auto recs = some_records(25, ferry::testing::test_seed());
  {
    auto j = Journal::open(p);
    ASSERT_TRUE(j.is_ok()) << j.status().to_string();
    EXPECT_TRUE((*j)->recovered().empty());
    EXPECT_EQ((*j)->recovered_notice(), "");
    EXPECT_EQ((*j)->next_job_id(), 1u);
    for (const auto& r : recs) ASSERT_TRUE((*j)->append(r).is_ok());
    EXPECT_EQ((*j)->next_job_id(), recs.back().job_id + 1);
    EXPECT_EQ((*j)->size_bytes(), size_on_disk(p));
  }
  auto j = Journal::open(p);
  ASSERT_TRUE(j.is_ok()) << j.status().to_string();
  EXPECT_EQ((*j)->recovered(), recs);
  EXPECT_EQ((*j)->recovered_notice(), "");
  EXPECT_EQ((*j)->next_job_id(), recs.back().job_id + 1);
  // Appends after a reopen land after the recovered records.
  std::mt19937_64 rng(1);
  auto extra = make_record(99, JobState::kSubmitted, rng);
  ASSERT_TRUE((*j)->append(extra).is_ok());
  j = Result<std::unique_ptr<Journal>>(Status::aborted("closed"));
  auto again = Journal::open(p);
  ASSERT_TRUE(again.is_ok());
  ASSERT_EQ((*again)->recovered().size(), recs.size() + 1);
  EXPECT_EQ((*again)->recovered().back(), extra);
  EXPECT_EQ((*again)->next_job_id(), 100u);
}

TEST(JournalTest, EncodeDecodeIsExact) {
  std::mt19937_64 rng(ferry::testing::test_seed());
  for (int s = 1; s <= 5; ++s) {
    auto r = make_record(rng(), static_cast<JobState>(s), rng);
    auto body = encode_journal_record(r);
    auto back = decode_journal_record(body);
    ASSERT_TRUE(back.is_ok()) << back.status().to_string();
    EXPECT_EQ(*back, r);
    body.push_back(std::byte{0});
    EXPECT_EQ(decode_journal_record(body).status().code(), Code::kCorruption);
  }
  auto body = encode_journal_record(make_record(1, JobState::kStarted, rng));
  body[8] = std::byte{9};  // the state byte
  auto bad = decode_journal_record(body);
  EXPECT_EQ(bad.status().code(), Code::kCorruption);
  EXPECT_NE(bad.status().message().find("state 9"), std::string::npos);
}

TEST(JournalTest, TornTailAtEveryByteOfTheLastRecordIsCut) {
  TempDir dir;
  const auto full = dir / "full";
  auto recs = some_records(6, ferry::testing::test_seed());
  write_journal(full, recs);
  const auto bytes = ferry::testing::read_file(full);
  // Size of the file without its last record.
  std::uint64_t before_last;
  {
    const auto p = dir / "prefix";
    write_journal(p, std::vector<JournalRecord>(recs.begin(), recs.end() - 1));
    before_last = size_on_disk(p);
  }
  ASSERT_LT(before_last, bytes.size());
  for (std::uint64_t cut = before_last; cut < bytes.size(); ++cut) {
    SCOPED_TRACE("file cut at " + std::to_string(cut));
    const auto p = dir / ("torn-" + std::to_string(cut));
    ferry::testing::write_file(p, std::vector<std::byte>(bytes.begin(), bytes.begin() + cut));
    auto j = Journal::open(p);
    ASSERT_TRUE(j.is_ok()) << j.status().to_string();
    EXPECT_EQ((*j)->recovered(), std::vector<JournalRecord>(recs.begin(), recs.end() - 1));
    if (cut == before_last) {
      EXPECT_EQ((*j)->recovered_notice(), "");
    } else {
      const std::string want =
          "cut " + std::to_string(cut - before_last) + " torn bytes at offset " + std::to_string(before_last);
      EXPECT_NE((*j)->recovered_notice().find(want), std::string::npos) << (*j)->recovered_notice();
      EXPECT_NE((*j)->recovered_notice().find(p.string()), std::string::npos);
    }
    EXPECT_EQ(size_on_disk(p), before_last);  // truncated on disk, not just skipped
    // The journal goes on cleanly after the cut.
    ASSERT_TRUE((*j)->append(recs.back()).is_ok());
    j = Result<std::unique_ptr<Journal>>(Status::aborted("closed"));
    auto again = Journal::open(p);
    ASSERT_TRUE(again.is_ok());
    EXPECT_EQ((*again)->recovered(), recs);
    EXPECT_EQ((*again)->recovered_notice(), "");
    std::filesystem::remove(p);
  }
}

TEST(JournalTest, FlippedByteInAnyRecordEndsRecoveryThere) {
  TempDir dir;
  const auto full = dir / "full";
  auto recs = some_records(5, ferry::testing::test_seed());
  // Record boundaries, learned by writing prefixes.
  std::vector<std::uint64_t> ends;
  for (std::size_t n = 0; n <= recs.size(); ++n) {
    const auto p = dir / ("prefix-" + std::to_string(n));
    write_journal(p, std::vector<JournalRecord>(recs.begin(), recs.begin() + n));
    ends.push_back(size_on_disk(p));
  }
  write_journal(full, recs);
  const auto bytes = ferry::testing::read_file(full);
  ASSERT_EQ(bytes.size(), ends.back());
  for (std::size_t rec = 0; rec < recs.size(); ++rec) {
    for (std::uint64_t at = ends[rec]; at < ends[rec + 1]; ++at) {
      SCOPED_TRACE("record " + std::to_string(rec) + " byte " + std::to_string(at));
      auto damaged = bytes;
      damaged[at] ^= std::byte{0x10};
      const auto p = dir / "damaged";
      ferry::testing::write_file(p, damaged);
      auto j = Journal::open(p);
      ASSERT_TRUE(j.is_ok()) << j.status().to_string();
      EXPECT_EQ((*j)->recovered(), std::vector<JournalRecord>(recs.begin(), recs.begin() + rec));
      EXPECT_NE((*j)->recovered_notice().find("at offset " + std::to_string(ends[rec])), std::string::npos)
          << (*j)->recovered_notice();
      EXPECT_EQ(size_on_disk(p), ends[rec]);
    }
  }
}

TEST(JournalTest, RefusesFilesThatAreNotJournals) {
  TempDir dir;
  const auto p = dir / "not-a-journal";
  std::string text = "{\"some\": \"json state\"}\n";
  ferry::testing::write_file(
      p, std::vector<std::byte>(reinterpret_cast<const std::byte*>(text.data()),
                                reinterpret_cast<const std::byte*>(text.data()) + text.size()));
  auto j = Journal::open(p);
  ASSERT_FALSE(j.is_ok());
  EXPECT_EQ(j.status().code(), Code::kCorruption);
  EXPECT_NE(j.status().message().find(p.string()), std::string::npos);
  EXPECT_EQ(size_on_disk(p), text.size());  // left alone

  // A future version is refused, not cut.
  const auto v2 = dir / "v3";
  write_journal(v2, some_records(2, 1));
  auto bytes = ferry::testing::read_file(v2);
  bytes[8] = std::byte{3};
  ferry::testing::write_file(v2, bytes);
  auto jv = Journal::open(v2);
  EXPECT_EQ(jv.status().code(), Code::kUnsupported);
  EXPECT_EQ(size_on_disk(v2), bytes.size());

  // A torn header of a brand-new journal is completed.
  const auto torn = dir / "torn-header";
  ferry::testing::write_file(torn, {std::byte{'F'}, std::byte{'E'}, std::byte{'R'}});
  auto jt = Journal::open(torn);
  ASSERT_TRUE(jt.is_ok()) << jt.status().to_string();
  EXPECT_EQ(size_on_disk(torn), kJournalHeaderBytes);
  EXPECT_NE((*jt)->recovered_notice(), "");
}

// A journal written before delta snapshots (version 1) is read, and its
// header says version 2 from then on; records then carry the delta base.
TEST(JournalTest, Version1IsReadAndUpgradedAndTheDeltaBaseIsKept) {
  TempDir dir;
  const auto p = dir / "journal";
  std::mt19937_64 rng(ferry::testing::test_seed());
  std::vector<JournalRecord> v1 = {make_record(1, JobState::kSubmitted, rng),
                                   make_record(1, JobState::kStarted, rng)};
  write_journal(p, v1);
  auto bytes = ferry::testing::read_file(p);
  bytes[8] = std::byte{1};
  ferry::testing::write_file(p, bytes);
  JournalRecord with_base = make_record(2, JobState::kStarted, rng);
  ASSERT_FALSE(with_base.delta_target.empty());
  {
    auto j = Journal::open(p);
    ASSERT_TRUE(j.is_ok()) << j.status().to_string();
    EXPECT_EQ((*j)->recovered(), v1);
    EXPECT_NE((*j)->recovered_notice().find("version 1"), std::string::npos) << (*j)->recovered_notice();
    EXPECT_EQ(ferry::testing::read_file(p)[8], std::byte{2});
    ASSERT_TRUE((*j)->append(with_base).is_ok());
  }
  auto j = Journal::open(p);
  ASSERT_TRUE(j.is_ok()) << j.status().to_string();
  ASSERT_EQ((*j)->recovered().size(), 3u);
  EXPECT_EQ((*j)->recovered()[2], with_base);
  EXPECT_EQ((*j)->recovered()[2].delta_base_snapshot, with_base.delta_base_snapshot);
  // A delta base without its target is damage.
  JournalRecord bad = with_base;
  auto body = encode_journal_record(bad);
  const std::size_t at = body.size() - 2 - (2 + bad.delta_base_snapshot.size()) -
                         (2 + bad.delta_base_dir.size()) - (2 + bad.delta_target.size());
  body.erase(body.begin() + static_cast<std::ptrdiff_t>(at) + 2,
             body.begin() + static_cast<std::ptrdiff_t>(at + 2 + bad.delta_target.size()));
  body[at] = std::byte{0};
  body[at + 1] = std::byte{0};
  EXPECT_EQ(decode_journal_record(body).status().code(), Code::kCorruption);
}

TEST(JournalTest, SecondOpenerIsRefusedWhileTheFirstHoldsIt) {
  TempDir dir;
  auto a = Journal::open(dir / "journal");
  ASSERT_TRUE(a.is_ok());
  auto b = Journal::open(dir / "journal");
  ASSERT_FALSE(b.is_ok());
  EXPECT_EQ(b.status().code(), Code::kUnavailable);
  EXPECT_NE(b.status().message().find("locked"), std::string::npos);
}

TEST(JournalTest, CompactionRewritesAndKeepsAppending) {
  TempDir dir;
  const auto p = dir / "journal";
  auto recs = some_records(30, ferry::testing::test_seed());
  std::vector<JournalRecord> live(recs.end() - 4, recs.end());
  {
    auto j = Journal::open(p);
    ASSERT_TRUE(j.is_ok());
    for (const auto& r : recs) ASSERT_TRUE((*j)->append(r).is_ok());
    const auto big = size_on_disk(p);
    ASSERT_TRUE((*j)->compact(live).is_ok());
    EXPECT_LT(size_on_disk(p), big);
    EXPECT_EQ((*j)->size_bytes(), size_on_disk(p));
    EXPECT_EQ((*j)->next_job_id(), recs.back().job_id + 1);
    std::mt19937_64 rng(3);
    live.push_back(make_record(1000, JobState::kSubmitted, rng));
    ASSERT_TRUE((*j)->append(live.back()).is_ok());
    // The compacted journal is still locked against a second agent.
    EXPECT_EQ(Journal::open(p).status().code(), Code::kUnavailable);
  }
  auto j = Journal::open(p);
  ASSERT_TRUE(j.is_ok());
  EXPECT_EQ((*j)->recovered(), live);
  EXPECT_EQ((*j)->next_job_id(), 1001u);
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) {
    EXPECT_EQ(e.path().filename(), "journal") << "left behind: " << e.path();
  }
}

TEST(JournalTest, CrashBeforeRenameLeavesTheOldJournalWhole) {
  TempDir dir;
  const auto p = dir / "journal";
  auto recs = some_records(10, ferry::testing::test_seed());
  write_journal(p, recs);
  const auto before = ferry::testing::read_file(p);
  // A compaction that died after writing part of its replacement: the temp
  // file holds a plausible but shorter journal.
  const auto temp = dir / "journal.compact-tmp";
  write_journal(temp, std::vector<JournalRecord>(recs.begin(), recs.begin() + 2));
  auto partial = ferry::testing::read_file(temp);
  ASSERT_GT(partial.size(), 5u);
  partial.erase(partial.end() - 5, partial.end());
  ferry::testing::write_file(temp, partial);

  auto j = Journal::open(p);
  ASSERT_TRUE(j.is_ok()) << j.status().to_string();
  EXPECT_EQ((*j)->recovered(), recs);
  EXPECT_EQ((*j)->recovered_notice(), "");
  EXPECT_EQ(ferry::testing::read_file(p), before);
  EXPECT_FALSE(std::filesystem::exists(temp)) << "stale compaction file left behind";
}

TEST(JournalTest, RecordsOverTheLimitAreRefused) {
  TempDir dir;
  const auto p = dir / "journal";
  auto j = Journal::open(p);
  ASSERT_TRUE(j.is_ok());
  std::mt19937_64 rng(5);
  auto r = make_record(1, JobState::kFailed, rng);
  r.detail.assign(kMaxJournalFieldBytes + 1, 'x');
  auto st = (*j)->append(r);
  EXPECT_EQ(st.code(), Code::kInvalidArgument);
  EXPECT_NE(st.message().find("job id 1"), std::string::npos) << st.message();
  // Fields each within their limit, a body over the record limit.
  r.detail.assign(kMaxJournalFieldBytes, 'x');
  r.path.assign(kMaxJournalFieldBytes, 'p');
  r.job.assign(kMaxJournalFieldBytes, 'j');
  r.snapshot.assign(kMaxJournalFieldBytes, 's');
  r.target.assign(kMaxJournalFieldBytes, 't');
  st = (*j)->append(r);
  EXPECT_EQ(st.code(), Code::kInvalidArgument);
  EXPECT_NE(st.message().find("over the limit"), std::string::npos) << st.message();
  EXPECT_EQ(size_on_disk(p), kJournalHeaderBytes);
  EXPECT_TRUE((*j)->compact(std::vector<JournalRecord>{r}).code() == Code::kInvalidArgument);
  EXPECT_EQ(size_on_disk(p), kJournalHeaderBytes);

  // A length field over the limit on disk is damage, cut at open.
  r.detail.clear();
  r.path = "/ckpt/a";
  r.job = r.snapshot = r.target = "x";
  ASSERT_TRUE((*j)->append(r).is_ok());
  j = Result<std::unique_ptr<Journal>>(Status::aborted("closed"));
  auto bytes = ferry::testing::read_file(p);
  bytes[kJournalHeaderBytes + 2] = std::byte{0x7f};  // length ~ 8 MiB
  ferry::testing::write_file(p, bytes);
  auto again = Journal::open(p);
  ASSERT_TRUE(again.is_ok());
  EXPECT_TRUE((*again)->recovered().empty());
  EXPECT_NE((*again)->recovered_notice().find("over the limit"), std::string::npos);
}

TEST(JournalTest, ConcurrentAppendsAreAllKept) {
  TempDir dir;
  const auto p = dir / "journal";
  constexpr int kThreads = 4, kEach = 25;
  {
    auto j = Journal::open(p);
    ASSERT_TRUE(j.is_ok());
    std::vector<std::thread> ts;
    for (int t = 0; t < kThreads; ++t) {
      ts.emplace_back([&, t] {
        std::mt19937_64 rng(t);
        for (int i = 0; i < kEach; ++i) {
          EXPECT_TRUE((*j)->append(make_record(t * 1000 + i + 1, JobState::kStarted, rng)).is_ok());
        }
      });
    }
    for (auto& t : ts) t.join();
  }
  auto j = Journal::open(p);
  ASSERT_TRUE(j.is_ok());
  EXPECT_EQ((*j)->recovered().size(), static_cast<std::size_t>(kThreads * kEach));
  EXPECT_EQ((*j)->recovered_notice(), "");
  EXPECT_EQ((*j)->next_job_id(), 3000u + kEach + 1);
}

TEST(JournalTest, FoldKeepsTheLatestStateAndEveryCommitTarget) {
  std::mt19937_64 rng(7);
  std::vector<JournalRecord> recs;
  auto add = [&](std::uint64_t id, JobState s, std::string target) {
    auto r = make_record(id, s, rng);
    r.target = std::move(target);
    recs.push_back(r);
  };
  add(1, JobState::kSubmitted, "");
  add(2, JobState::kSubmitted, "");
  add(1, JobState::kStarted, "");
  add(1, JobState::kCommitted, "dr1:7000");
  add(3, JobState::kSubmitted, "");
  add(1, JobState::kCommitted, "dr2:7000");
  add(1, JobState::kCommitted, "dr1:7000");  // a repeated commit after a crash
  add(2, JobState::kStarted, "");
  add(2, JobState::kFailed, "dr1:7000");
  add(3, JobState::kSkipped, "");
  auto jobs = fold_journal(recs);
  ASSERT_EQ(jobs.size(), 3u);
  EXPECT_EQ(jobs[1].latest, recs[6]);
  EXPECT_EQ(jobs[1].committed_targets, (std::vector<std::string>{"dr1:7000", "dr2:7000"}));
  EXPECT_EQ(jobs[2].latest.state, JobState::kFailed);
  EXPECT_TRUE(jobs[2].committed_targets.empty());
  EXPECT_EQ(jobs[3].latest.state, JobState::kSkipped);
  EXPECT_TRUE(fold_journal({}).empty());
  EXPECT_EQ(job_state_name(JobState::kCommitted), "committed");
}

}  // namespace
}  // namespace ferry
