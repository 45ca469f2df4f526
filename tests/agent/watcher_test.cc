// watcher_test.cc: finding complete checkpoints with real directories and
// real inotify: slowly written DCP and safetensors sets are reported only
// once complete, and exactly once; a marker completes any directory without
// hiding DCP or safetensors (unless marker_only); directories that never
// complete are reported once per root; a directory renamed into a root is
// found; a rescan finds what inotify could not see; forget() re-reports;
// check_unchanged names a changed file. Real PyTorch and safetensors output
// is checked too when python3 with torch is installed.
#include "agent/watcher.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <thread>

#include <gtest/gtest.h>

#include "base/clock.h"
#include "tests/testing/testing.h"

namespace ferry {
namespace {

namespace fs = std::filesystem;
using ferry::testing::TempDir;
using namespace std::chrono_literals;

void write_text(const fs::path& p, const std::string& s) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << s;
  ASSERT_TRUE(out.good()) << p;
}

// A whole file appears under its name at once (written beside it, renamed).
void write_atomically(const fs::path& p, const std::string& s) {
  const fs::path tmp = p.string() + ".tmp";
  write_text(tmp, s);
  fs::rename(tmp, p);
}

// A small but real safetensors file: one F32 tensor of n values.
std::string safetensors_bytes(const std::string& tensor, std::size_t n) {
  std::string header = "{\"" + tensor + "\":{\"dtype\":\"F32\",\"shape\":[" + std::to_string(n) +
                       "],\"data_offsets\":[0," + std::to_string(4 * n) + "]}}";
  while (header.size() % 8) header.push_back(' ');
  std::string out;
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((header.size() >> (8 * i)) & 0xff));
  out += header;
  for (std::size_t i = 0; i < n; ++i) {
    const float f = static_cast<float>(i) * 0.25f;
    out.append(reinterpret_cast<const char*>(&f), 4);
  }
  return out;
}

std::string index_json(const std::vector<std::pair<std::string, std::string>>& map) {
  std::string s = "{\"metadata\":{\"total_size\":1},\"weight_map\":{";
  for (std::size_t i = 0; i < map.size(); ++i) {
    s += (i ? "," : "") + std::string("\"") + map[i].first + "\":\"" + map[i].second + "\"";
  }
  return s + "}}";
}

// Collects on_complete calls; waits for them with a deadline.
class Reports {
 public:
  std::function<void(const CheckpointCandidate&)> callback() {
    return [this](const CheckpointCandidate& c) {
      std::lock_guard lock(mu_);
      got_.push_back(c);
      cv_.notify_all();
    };
  }
  // Waits until at least n reports arrived (or the deadline).
  bool wait_for(std::size_t n, std::chrono::milliseconds deadline = 5s) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, deadline, [&] { return got_.size() >= n; });
  }
  std::vector<CheckpointCandidate> all() {
    std::lock_guard lock(mu_);
    return got_;
  }
  std::size_t count_for(const fs::path& dir) {
    std::lock_guard lock(mu_);
    std::size_t n = 0;
    for (const auto& c : got_) n += c.dir == dir;
    return n;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<CheckpointCandidate> got_;
};

std::unique_ptr<Watcher> start_watcher(const fs::path& root, Reports& reports, int rescan_ms = 60'000,
                                       std::string marker = "", std::vector<std::string>* notices = nullptr) {
  WatcherOptions o;
  o.roots.push_back({root, ""});
  o.completion.marker_file = std::move(marker);
  o.rescan_interval_ms = rescan_ms;
  static std::mutex notice_mu;
  if (notices) {
    o.on_notice = [notices](const std::string& s) {
      std::lock_guard lock(notice_mu);
      notices->push_back(s);
    };
  }
  auto w = Watcher::start(o, reports.callback());
  EXPECT_TRUE(w.is_ok()) << w.status().to_string();
  return w.is_ok() ? std::move(w).value() : nullptr;
}

// Lets the watcher thread catch up with what was just written: long enough
// for inotify to deliver, far shorter than any rescan interval used here.
void settle() { std::this_thread::sleep_for(150ms); }

TEST(CheckpointCompleteTest, StepIsTheLastRunOfDigits) {
  EXPECT_EQ(step_from_name("step-300"), 300u);
  EXPECT_EQ(step_from_name("global_step00120_v2"), 2u);
  EXPECT_EQ(step_from_name("checkpoint-0042.tmp"), 42u);
  EXPECT_EQ(step_from_name("final"), 0u);
  EXPECT_EQ(step_from_name(""), 0u);
  EXPECT_EQ(step_from_name("s18446744073709551615"), 18446744073709551615ull);
  EXPECT_EQ(step_from_name("s18446744073709551616"), 0u);  // overflow
}

TEST(CheckpointCompleteTest, DcpIsCompleteOnceMetadataHasBytes) {
  TempDir t;
  const fs::path d = t / "step-1";
  fs::create_directory(d);
  write_text(d / "__0_0.distcp", "data");
  Incomplete why;
  auto r = checkpoint_complete(d, {}, &why);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_FALSE(r->has_value());
  EXPECT_NE(why.reason.find(".metadata"), std::string::npos) << why.reason;
  EXPECT_TRUE(why.still_writing);
  write_text(d / ".metadata", "");
  EXPECT_FALSE(checkpoint_complete(d, {})->has_value()) << "an empty .metadata is being written";
  write_text(d / ".metadata", "meta");
  EXPECT_EQ(checkpoint_complete(d, {})->value(), CheckpointKind::kDcp);

  EXPECT_EQ(checkpoint_complete(t / "absent", {}).status().code(), Code::kNotFound);
  EXPECT_EQ(checkpoint_complete(d / ".metadata", {}).status().code(), Code::kInvalidArgument);
}

TEST(CheckpointCompleteTest, SafetensorsSetNeedsEveryShardWhole) {
  TempDir t;
  const fs::path d = t / "step-2";
  fs::create_directory(d);
  write_text(d / "model.safetensors.index.json", index_json({{"a", "model-00001-of-00002.safetensors"},
                                                             {"b", "model-00002-of-00002.safetensors"},
                                                             {"c", "model-00002-of-00002.safetensors"}}));
  Incomplete why;
  EXPECT_FALSE(checkpoint_complete(d, {}, &why)->has_value());
  EXPECT_NE(why.reason.find("model-00001-of-00002.safetensors does not exist"), std::string::npos)
      << why.reason;
  EXPECT_TRUE(why.still_writing);
  write_text(d / "model-00001-of-00002.safetensors", safetensors_bytes("a", 64));
  const std::string whole = safetensors_bytes("b", 1000);
  write_text(d / "model-00002-of-00002.safetensors", whole.substr(0, whole.size() / 2));
  EXPECT_FALSE(checkpoint_complete(d, {}, &why)->has_value());
  EXPECT_NE(why.reason.find("not whole yet"), std::string::npos) << why.reason;
  EXPECT_TRUE(why.still_writing);
  write_text(d / "model-00002-of-00002.safetensors", whole);
  auto r = checkpoint_complete(d, {}, &why);
  ASSERT_TRUE(r.is_ok());
  EXPECT_EQ(r->value(), CheckpointKind::kSafetensorsSet);
  EXPECT_EQ(why.reason, "");
  EXPECT_FALSE(why.still_writing);
}

TEST(CheckpointCompleteTest, BadIndexIsNotCompleteWithAReason) {
  TempDir t;
  const fs::path d = t / "step-3";
  fs::create_directory(d);
  write_text(d / "x.safetensors", safetensors_bytes("a", 8));
  const fs::path index = d / "model.safetensors.index.json";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{\"weight_map\": {\"a\" \"x.safetensors\"}}", "not valid JSON"},
      {"[1, 2, 3]", "weight_map"},
      {"{\"weight_map\": []}", "weight_map"},
      {"{\"weight_map\": {\"a\": 7}}", "is not a string"},
      {"{\"weight_map\": {}}", "names no shards"},
      {"{\"weight_map\": {\"a\": \"../x.safetensors\"}}", "leaves the checkpoint"},
      {"{\"weight_map\": {\"a\": \"/etc/passwd\"}}", "leaves the checkpoint"},
      {std::string("\xff\xfe\x00garbage", 10), "not valid JSON"},
  };
  for (const auto& [text, want] : cases) {
    SCOPED_TRACE(text);
    write_text(index, text);
    Incomplete why;
    auto r = checkpoint_complete(d, {}, &why);
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();
    EXPECT_FALSE(r->has_value());
    EXPECT_NE(why.reason.find(want), std::string::npos) << why.reason;
    EXPECT_FALSE(why.still_writing) << "a wrong index is worth a notice";
  }
  write_text(index, "{\"weight_map\": {\"a\": \"./x.safetensors\"}}");
  EXPECT_EQ(checkpoint_complete(d, {})->value(), CheckpointKind::kSafetensorsSet);
}

// An index seen between its creation and its last write (empty, or valid
// JSON cut short) is a checkpoint still being written: no notice.
TEST(CheckpointCompleteTest, IndexCutShortIsStillBeingWritten) {
  TempDir t;
  const fs::path d = t / "step-5";
  fs::create_directory(d);
  write_text(d / "x.safetensors", safetensors_bytes("a", 8));
  const fs::path index = d / "model.safetensors.index.json";
  const std::string whole = "{\"weight_map\": {\"a\": \"x.safetensors\"}}";
  for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{14}, whole.size() - 1}) {
    SCOPED_TRACE(n);
    write_text(index, whole.substr(0, n));
    Incomplete why;
    auto r = checkpoint_complete(d, {}, &why);
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();
    EXPECT_FALSE(r->has_value());
    EXPECT_TRUE(why.still_writing) << why.reason;
  }
  write_text(index, whole);
  EXPECT_EQ(checkpoint_complete(d, {})->value(), CheckpointKind::kSafetensorsSet);
}

TEST(CheckpointCompleteTest, MarkerIsOneSignalAmongTheOthers) {
  TempDir t;
  const fs::path d = t / "step-4";
  fs::create_directory(d);
  write_text(d / "__0_0.distcp", "data");
  const CompletionSignals marker{"DONE", false};
  Incomplete why;
  EXPECT_FALSE(checkpoint_complete(d, marker, &why)->has_value());
  EXPECT_NE(why.reason.find(".metadata"), std::string::npos) << why.reason;
  EXPECT_NE(why.reason.find("no marker DONE"), std::string::npos) << why.reason;
  // DCP's own signal completes it although the marker never came.
  write_text(d / ".metadata", "meta");
  EXPECT_EQ(checkpoint_complete(d, marker)->value(), CheckpointKind::kDcp);
  // So does the marker alone, in a directory of any format.
  const fs::path other = t / "run-a";
  fs::create_directory(other);
  write_text(other / "weights.bin", "w");
  EXPECT_FALSE(checkpoint_complete(other, marker)->has_value());
  write_text(other / "DONE", "");
  EXPECT_EQ(checkpoint_complete(other, marker)->value(), CheckpointKind::kMarker);
  // A safetensors set still missing a shard names the shard and the marker.
  const fs::path st = t / "step-5";
  fs::create_directory(st);
  write_text(st / "model.safetensors.index.json", index_json({{"a", "a.safetensors"}}));
  EXPECT_FALSE(checkpoint_complete(st, marker, &why)->has_value());
  EXPECT_NE(why.reason.find("a.safetensors does not exist yet (and no marker DONE)"), std::string::npos)
      << why.reason;
  write_text(st / "a.safetensors", safetensors_bytes("a", 4));
  EXPECT_EQ(checkpoint_complete(st, marker)->value(), CheckpointKind::kSafetensorsSet);
}

TEST(CheckpointCompleteTest, MarkerOnlyIgnoresTheOtherSignals) {
  TempDir t;
  const fs::path d = t / "step-4";
  fs::create_directory(d);
  write_text(d / ".metadata", "meta");
  const CompletionSignals only{"DONE", true};
  Incomplete why;
  EXPECT_FALSE(checkpoint_complete(d, only, &why)->has_value());
  EXPECT_NE(why.reason.find("marker " + (d / "DONE").string() + " does not exist yet"), std::string::npos)
      << why.reason;
  EXPECT_TRUE(why.still_writing);
  write_text(d / "DONE", "");
  EXPECT_EQ(checkpoint_complete(d, only)->value(), CheckpointKind::kMarker);
  EXPECT_EQ(checkpoint_complete(d, {})->value(), CheckpointKind::kDcp);
}

TEST(WatcherTest, StartRefusesBadOptions) {
  TempDir t;
  Reports reports;
  WatcherOptions o;
  EXPECT_EQ(Watcher::start(o, reports.callback()).status().code(), Code::kInvalidArgument);
  o.roots.push_back({t / "missing", ""});
  auto w = Watcher::start(o, reports.callback());
  ASSERT_FALSE(w.is_ok());
  EXPECT_NE(w.status().message().find((t / "missing").string()), std::string::npos);
  write_text(t / "file", "x");
  o.roots = {{t / "file", ""}};
  EXPECT_EQ(Watcher::start(o, reports.callback()).status().code(), Code::kInvalidArgument);
  o.roots = {{t.path(), ""}};
  o.roots = {{t.path(), ""}, {t.path().string() + "/", ""}};
  EXPECT_EQ(Watcher::start(o, reports.callback()).status().code(), Code::kInvalidArgument);
  o.roots = {{t.path(), ""}};
  o.rescan_interval_ms = 0;
  EXPECT_EQ(Watcher::start(o, reports.callback()).status().code(), Code::kInvalidArgument);
  o.rescan_interval_ms = 1000;
  o.completion = {"", true};  // marker_only without a marker would take nothing
  EXPECT_EQ(Watcher::start(o, reports.callback()).status().code(), Code::kInvalidArgument);
  o.completion = {"sub/DONE", false};
  EXPECT_EQ(Watcher::start(o, reports.callback()).status().code(), Code::kInvalidArgument);
  o.completion = {};
  o.incomplete_grace_ms = 0;
  EXPECT_EQ(Watcher::start(o, reports.callback()).status().code(), Code::kInvalidArgument);
}

TEST(WatcherTest, SlowlyWrittenDcpIsReportedOnceWhenComplete) {
  TempDir t;
  const fs::path root = t / "llama";
  fs::create_directory(root);
  Reports reports;
  auto w = start_watcher(root, reports);
  ASSERT_TRUE(w);
  const fs::path d = root / "step-00300";
  fs::create_directory(d);
  for (int i = 0; i < 4; ++i) {
    write_text(d / ("__" + std::to_string(i) + "_0.distcp"), std::string(1000 + i, 'x'));
    settle();
    EXPECT_EQ(reports.all().size(), 0u) << "reported after shard " << i;
  }
  write_atomically(d / ".metadata", "torch metadata");
  ASSERT_TRUE(reports.wait_for(1));
  // More events in the directory and a full rescan report nothing new.
  write_text(d / "extra", "late");
  w->rescan_now();
  settle();
  const auto got = reports.all();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].dir, d);
  EXPECT_EQ(got[0].job, "llama");
  EXPECT_EQ(got[0].kind, CheckpointKind::kDcp);
  EXPECT_EQ(got[0].step, 300u);
  struct stat st {};
  ASSERT_EQ(::stat(d.c_str(), &st), 0);
  EXPECT_GT(got[0].mtime_ns, 0);
}

TEST(WatcherTest, SafetensorsIndexBeforeShardsIsReportedAfterTheLastShard) {
  TempDir t;
  const fs::path root = t / "root";
  fs::create_directory(root);
  Reports reports;
  std::vector<std::string> notices;
  auto w = start_watcher(root, reports, 60'000, "", &notices);
  ASSERT_TRUE(w);
  const fs::path d = root / "ckpt-7";
  fs::create_directory(d);
  constexpr int kShards = 3;
  std::vector<std::pair<std::string, std::string>> map;
  for (int i = 0; i < kShards; ++i)
    map.push_back({"t" + std::to_string(i), "model-" + std::to_string(i) + ".safetensors"});
  write_text(d / "model.safetensors.index.json", index_json(map));
  for (int i = 0; i < kShards; ++i) {
    settle();
    EXPECT_EQ(reports.all().size(), 0u) << "reported with " << i << " shards";
    write_text(d / map[i].second, safetensors_bytes(map[i].first, 256 * (i + 1)));
  }
  ASSERT_TRUE(reports.wait_for(1));
  settle();
  ASSERT_EQ(reports.all().size(), 1u);
  EXPECT_EQ(reports.all()[0].kind, CheckpointKind::kSafetensorsSet);
  EXPECT_EQ(reports.all()[0].step, 7u);
  EXPECT_TRUE(notices.empty()) << notices.front();  // missing shards are routine
}

TEST(WatcherTest, DirectoryRenamedIntoTheRootIsFound) {
  TempDir t;
  const fs::path root = t / "root";
  fs::create_directory(root);
  Reports reports;
  WatcherOptions o;
  o.roots.push_back({root.string() + "/", "named-job"});
  o.rescan_interval_ms = 60'000;
  auto w = Watcher::start(o, reports.callback());
  ASSERT_TRUE(w.is_ok()) << w.status().to_string();
  const fs::path staging = t / "staging-step-9";
  fs::create_directory(staging);
  write_text(staging / "__0_0.distcp", "data");
  write_text(staging / ".metadata", "meta");
  settle();
  EXPECT_EQ(reports.all().size(), 0u);
  fs::rename(staging, root / "step-9");
  ASSERT_TRUE(reports.wait_for(1));
  EXPECT_EQ(reports.all()[0].dir, root / "step-9");
  EXPECT_EQ(reports.all()[0].job, "named-job");
  EXPECT_EQ(reports.all()[0].step, 9u);

  // Staged as a hidden directory inside the root: reported only under its
  // final name.
  const fs::path hidden = root / ".step-10.tmp";
  fs::create_directory(hidden);
  write_text(hidden / "__0_0.distcp", "data");
  write_text(hidden / ".metadata", "meta");
  (*w)->rescan_now();
  settle();
  EXPECT_EQ(reports.all().size(), 1u);
  fs::rename(hidden, root / "step-10");
  ASSERT_TRUE(reports.wait_for(2));
  settle();
  ASSERT_EQ(reports.all().size(), 2u);
  EXPECT_EQ(reports.all()[1].dir, root / "step-10");
}

TEST(WatcherTest, QueueOverflowTriggersAFullRescan) {
  TempDir t;
  const fs::path root = t / "root";
  fs::create_directory(root);
  fs::create_directory(root / "step-1");
  write_text(root / "step-1" / ".metadata", "meta");
  // The first report holds the watcher thread while inotify's queue fills.
  std::mutex mu;
  std::condition_variable cv;
  bool release = false;
  Reports reports;
  auto record = reports.callback();
  std::vector<std::string> notices;
  std::mutex notice_mu;
  WatcherOptions o;
  o.roots.push_back({root, ""});
  o.rescan_interval_ms = 60'000;
  o.on_notice = [&](const std::string& s) {
    std::lock_guard lock(notice_mu);
    notices.push_back(s);
  };
  auto w = Watcher::start(o, [&](const CheckpointCandidate& c) {
    record(c);
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return release; });
  });
  ASSERT_TRUE(w.is_ok()) << w.status().to_string();
  ASSERT_TRUE(reports.wait_for(1));
  int max_events = 16384;
  std::ifstream("/proc/sys/fs/inotify/max_queued_events") >> max_events;
  if (max_events > 200'000) GTEST_SKIP() << "max_queued_events " << max_events << " is too large to fill";
  // Each new file is two events (create, close-write) in a watched directory.
  fs::create_directory(root / "step-2");
  for (int i = 0; i < max_events / 2 + 200; ++i) write_text(root / "step-1" / std::to_string(i), "");
  write_text(root / "step-2" / ".metadata", "meta");
  {
    std::lock_guard lock(mu);
    release = true;
  }
  cv.notify_all();
  ASSERT_TRUE(reports.wait_for(2, 10s));
  EXPECT_EQ(reports.all()[1].dir, root / "step-2");
  std::lock_guard lock(notice_mu);
  bool overflowed = false;
  for (const auto& n : notices) overflowed |= n.find("overflowed") != std::string::npos;
  EXPECT_TRUE(overflowed);
}

TEST(WatcherTest, StartScanFindsWhatAppearedWhileStopped) {
  TempDir t;
  const fs::path root = t / "root";
  fs::create_directory(root);
  {
    Reports reports;
    auto w = start_watcher(root, reports);
    ASSERT_TRUE(w);
  }  // stopped
  fs::create_directory(root / "step-1");
  write_text(root / "step-1" / ".metadata", "meta");
  fs::create_directory(root / "step-2");  // incomplete
  Reports reports;
  auto w = start_watcher(root, reports);
  ASSERT_TRUE(reports.wait_for(1));
  settle();
  ASSERT_EQ(reports.all().size(), 1u);
  EXPECT_EQ(reports.all()[0].dir, root / "step-1");
  // The incomplete one is watched from the start scan on.
  write_text(root / "step-2" / ".metadata", "meta");
  ASSERT_TRUE(reports.wait_for(2));
  EXPECT_EQ(reports.count_for(root / "step-2"), 1u);
}

TEST(WatcherTest, PeriodicRescanFindsWhatInotifyCannotSee) {
  TempDir t;
  const fs::path root = t / "root";
  fs::create_directory(root);
  const fs::path d = root / "step-5";
  fs::create_directory(d);
  fs::create_directory(d / "shards");
  write_text(d / "model.safetensors.index.json", index_json({{"a", "shards/a.safetensors"}}));
  Reports reports;
  auto w = start_watcher(root, reports, /*rescan_ms=*/300);
  ASSERT_TRUE(w);
  settle();
  EXPECT_EQ(reports.all().size(), 0u);
  // Only the checkpoint directory is watched, not shards/ below it: no
  // event arrives for this file, the rescan finds it.
  write_text(d / "shards" / "a.safetensors", safetensors_bytes("a", 16));
  ASSERT_TRUE(reports.wait_for(1, 3s));
  EXPECT_EQ(reports.all()[0].dir, d);
}

TEST(WatcherTest, ForgetLetsADirectoryBeReportedAgain) {
  TempDir t;
  const fs::path root = t / "root";
  fs::create_directory(root);
  const fs::path d = root / "step-10";
  fs::create_directory(d);
  write_text(d / ".metadata", "meta");
  Reports reports;
  auto w = start_watcher(root, reports);
  ASSERT_TRUE(reports.wait_for(1));
  w->rescan_now();
  settle();
  EXPECT_EQ(reports.count_for(d), 1u);
  w->forget(d.string() + "/");
  w->rescan_now();
  ASSERT_TRUE(reports.wait_for(2));
  EXPECT_EQ(reports.count_for(d), 2u);
}

TEST(WatcherTest, DirectoryRemovedAndWrittenAgainIsANewCheckpoint) {
  TempDir t;
  const fs::path root = t / "root";
  fs::create_directory(root);
  Reports reports;
  auto w = start_watcher(root, reports);
  const fs::path d = root / "step-11";
  fs::create_directory(d);
  write_atomically(d / ".metadata", "meta");
  ASSERT_TRUE(reports.wait_for(1));
  fs::remove_all(d);
  settle();
  fs::create_directory(d);
  write_atomically(d / ".metadata", "meta again");
  ASSERT_TRUE(reports.wait_for(2));
  EXPECT_EQ(reports.count_for(d), 2u);
}

TEST(WatcherTest, MarkerFileCompletesAnyDirectory) {
  TempDir t;
  const fs::path root = t / "root";
  fs::create_directory(root);
  Reports reports;
  auto w = start_watcher(root, reports, 60'000, "COMMITTED");
  const fs::path d = root / "run-a";
  fs::create_directory(d);
  write_text(d / "weights.bin", "w");
  settle();
  EXPECT_EQ(reports.all().size(), 0u);
  write_text(d / "COMMITTED", "");
  ASSERT_TRUE(reports.wait_for(1));
  EXPECT_EQ(reports.all()[0].kind, CheckpointKind::kMarker);
  EXPECT_EQ(reports.all()[0].step, 0u);
}

// The example flag file names a marker: a trainer that writes DCP (or a
// safetensors set) and no marker must still be replicated.
TEST(WatcherTest, DcpAndSafetensorsAreFoundWhenAMarkerIsConfigured) {
  TempDir t;
  const fs::path root = t / "root";
  fs::create_directory(root);
  Reports reports;
  auto w = start_watcher(root, reports, 60'000, "COMMITTED");
  fs::create_directory(root / "step-1");
  write_text(root / "step-1" / "__0_0.distcp", "data");
  write_atomically(root / "step-1" / ".metadata", "meta");
  fs::create_directory(root / "step-2");
  write_text(root / "step-2" / "a.safetensors", safetensors_bytes("a", 16));
  write_atomically(root / "step-2" / "model.safetensors.index.json", index_json({{"a", "a.safetensors"}}));
  ASSERT_TRUE(reports.wait_for(2));
  settle();
  auto got = reports.all();
  ASSERT_EQ(got.size(), 2u);
  std::sort(got.begin(), got.end(), [](auto& a, auto& b) { return a.step < b.step; });
  EXPECT_EQ(got[0].kind, CheckpointKind::kDcp);
  EXPECT_EQ(got[1].kind, CheckpointKind::kSafetensorsSet);
}

TEST(WatcherTest, MarkerOnlyWaitsForTheMarkerAfterMetadata) {
  TempDir t;
  const fs::path root = t / "root";
  fs::create_directory(root);
  Reports reports;
  WatcherOptions o;
  o.roots.push_back({root, ""});
  o.completion = {"COMMITTED", true};
  o.rescan_interval_ms = 60'000;
  auto w = Watcher::start(o, reports.callback());
  ASSERT_TRUE(w.is_ok()) << w.status().to_string();
  const fs::path d = root / "step-7";
  fs::create_directory(d);
  write_atomically(d / ".metadata", "meta");
  write_text(d / "trainer_state.json", "{}");  // written after DCP's own files
  settle();
  EXPECT_EQ(reports.all().size(), 0u);
  write_text(d / "COMMITTED", "");
  ASSERT_TRUE(reports.wait_for(1));
  EXPECT_EQ(reports.all()[0].kind, CheckpointKind::kMarker);
}

// Directories that never complete are not silent: each root reports one
// (once) after the grace period, incomplete() lists them all, and a root
// reports again only after its stuck directories are gone.
TEST(WatcherTest, DirectoriesThatNeverCompleteAreReportedOncePerRoot) {
  TempDir t;
  const fs::path a = t / "a", b = t / "b";
  fs::create_directory(a);
  fs::create_directory(b);
  Reports reports;
  std::mutex mu;
  std::vector<IncompleteCheckpoint> told;
  WatcherOptions o;
  o.roots = {{a, "job-a"}, {b, ""}};
  o.completion = {"COMMITTED", false};
  o.rescan_interval_ms = 100;
  o.incomplete_grace_ms = 300;
  o.on_incomplete = [&](const IncompleteCheckpoint& ic) {
    std::lock_guard lock(mu);
    told.push_back(ic);
    return true;
  };
  auto told_copy = [&] {
    std::lock_guard lock(mu);
    return told;
  };
  const std::int64_t before_ns = wall_ns();
  fs::create_directory(a / "step-1");
  write_text(a / "step-1" / "__0_0.distcp", "data");
  fs::create_directory(a / "step-2");
  fs::create_directory(b / "step-9");
  auto w = Watcher::start(o, reports.callback());
  ASSERT_TRUE(w.is_ok()) << w.status().to_string();
  settle();
  EXPECT_TRUE(told_copy().empty()) << "reported before the grace period";
  auto listed = (*w)->incomplete();
  ASSERT_EQ(listed.size(), 3u);
  for (const auto& ic : listed) {
    EXPECT_GE(ic.first_seen_ns, before_ns - 1'000'000'000) << ic.dir;
    EXPECT_LE(ic.first_seen_ns, wall_ns()) << ic.dir;
  }
  std::this_thread::sleep_for(700ms);  // past the grace, several rescans
  auto got = told_copy();
  ASSERT_EQ(got.size(), 2u) << "one per root, once";
  std::sort(got.begin(), got.end(), [](auto& x, auto& y) { return x.job < y.job; });
  EXPECT_EQ(got[0].job, "b");
  EXPECT_EQ(got[0].dir, b / "step-9");
  EXPECT_EQ(got[1].job, "job-a");
  EXPECT_NE(got[1].waiting_for.find("no .metadata"), std::string::npos) << got[1].waiting_for;
  EXPECT_NE(got[1].waiting_for.find("no marker COMMITTED"), std::string::npos) << got[1].waiting_for;
  EXPECT_GE(got[1].incomplete_for_s, 0.3);

  // Completing one of a's two leaves a's other stuck: no new line.
  write_text(a / "step-1" / "COMMITTED", "");
  ASSERT_TRUE(reports.wait_for(1));
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(told_copy().size(), 2u);
  EXPECT_EQ((*w)->incomplete().size(), 2u);
  // Once b has nothing stuck, its next stuck directory is reported again.
  fs::remove_all(b / "step-9");
  std::this_thread::sleep_for(200ms);
  fs::create_directory(b / "step-10");
  for (int i = 0; i < 50 && told_copy().size() < 3; ++i) std::this_thread::sleep_for(100ms);
  ASSERT_EQ(told_copy().size(), 3u);
  EXPECT_EQ(told_copy()[2].dir, b / "step-10");
}

TEST(WatcherTest, RootRemovedAndRecreatedIsWatchedAgainAfterARescan) {
  TempDir t;
  const fs::path root = t / "root";
  fs::create_directory(root);
  Reports reports;
  std::vector<std::string> notices;
  auto w = start_watcher(root, reports, 60'000, "", &notices);
  settle();
  fs::remove_all(root);
  settle();
  fs::create_directory(root);
  w->rescan_now();
  settle();
  fs::create_directory(root / "step-1");
  write_atomically(root / "step-1" / ".metadata", "meta");
  ASSERT_TRUE(reports.wait_for(1));
}

// Real PyTorch output, when python3 with torch and safetensors is here.
TEST(WatcherTest, RealTorchDcpAndSafetensorsSetAreFound) {
  TempDir t;
  const fs::path root = t / "root";
  fs::create_directory(root);
  Reports reports;
  auto w = start_watcher(root, reports);
  const fs::path script = t / "write.py";
  write_text(script,
             "import json, os, sys, torch\n"
             "import torch.distributed.checkpoint as dcp\n"
             "from safetensors.torch import save_file\n"
             "root = sys.argv[1]\n"
             "sd = {'w': torch.randn(64, 32), 'b': torch.zeros(32, dtype=torch.bfloat16)}\n"
             "dcp.save(sd, checkpoint_id=os.path.join(root, 'step-100'))\n"
             "d = os.path.join(root, 'step-200'); os.mkdir(d)\n"
             "wm = {}\n"
             "for i, (k, v) in enumerate(sd.items()):\n"
             "    name = f'model-{i+1:05d}-of-00002.safetensors'\n"
             "    save_file({k: v.contiguous()}, os.path.join(d, name)); wm[k] = name\n"
             "json.dump({'metadata': {}, 'weight_map': wm}, open(os.path.join(d, "
             "'model.safetensors.index.json'), 'w'))\n");
  const std::string cmd = "python3 -c 'import torch, safetensors' >/dev/null 2>&1";
  if (std::system(cmd.c_str()) != 0) GTEST_SKIP() << "python3 with torch and safetensors is not installed";
  const std::string run = "python3 " + script.string() + " " + root.string() + " 2>&1";
  ASSERT_EQ(std::system(run.c_str()), 0);
  ASSERT_TRUE(reports.wait_for(2, 10s));
  settle();
  auto got = reports.all();
  ASSERT_EQ(got.size(), 2u);
  std::sort(got.begin(), got.end(), [](auto& a, auto& b) { return a.step < b.step; });
  EXPECT_EQ(got[0].kind, CheckpointKind::kDcp);
  EXPECT_EQ(got[0].step, 100u);
  EXPECT_EQ(got[1].kind, CheckpointKind::kSafetensorsSet);
  EXPECT_EQ(got[1].step, 200u);
}

TEST(FileStateTest, CheckUnchangedNamesWhatChanged) {
  TempDir t;
  write_text(t / "a.bin", "aaaa");
  write_text(t / "b.bin", "bbbb");
  auto sources = list_pack_sources(t.path());
  ASSERT_TRUE(sources.is_ok());
  auto before = file_states(*sources);
  ASSERT_TRUE(before.is_ok()) << before.status().to_string();
  ASSERT_EQ(before->size(), 2u);
  EXPECT_EQ((*before)[0].rel_path, "a.bin");
  EXPECT_EQ((*before)[0].size, 4u);
  EXPECT_TRUE(check_unchanged(*before, *file_states(*sources)).is_ok());

  // Size.
  { std::ofstream(t / "b.bin", std::ios::app) << "more"; }
  auto st = check_unchanged(*before, *file_states(*sources));
  EXPECT_EQ(st.code(), Code::kAborted);
  EXPECT_EQ(st.detail(), Detail::kSourceChanged);
  EXPECT_NE(st.message().find("b.bin"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("size 4 -> 8"), std::string::npos) << st.message();
  write_text(t / "b.bin", "bbbb");

  // Same size, new mtime (a rewrite in place).
  before = file_states(*sources);
  struct timespec times[2] = {{0, UTIME_OMIT}, {12345, 678}};
  ASSERT_EQ(::utimensat(AT_FDCWD, (t / "a.bin").c_str(), times, 0), 0);
  st = check_unchanged(*before, *file_states(*sources));
  EXPECT_EQ(st.code(), Code::kAborted);
  EXPECT_EQ(st.detail(), Detail::kSourceChanged);
  EXPECT_NE(st.message().find("a.bin"), std::string::npos);
  EXPECT_NE(st.message().find("mtime"), std::string::npos) << st.message();

  // Replaced by rename: same size, new inode.
  before = file_states(*sources);
  write_text(t / "a.new", "aaaa");
  fs::rename(t / "a.new", t / "a.bin");
  st = check_unchanged(*before, *file_states(*sources));
  EXPECT_EQ(st.code(), Code::kAborted);
  EXPECT_EQ(st.detail(), Detail::kSourceChanged);
  EXPECT_NE(st.message().find("inode"), std::string::npos) << st.message();

  // Gone and appeared.
  before = file_states(*sources);
  auto fewer = *before;
  fewer.pop_back();
  st = check_unchanged(*before, fewer);
  EXPECT_EQ(st.detail(), Detail::kSourceChanged);
  EXPECT_NE(st.message().find("b.bin changed while it was read (gone)"), std::string::npos) << st.message();
  st = check_unchanged(fewer, *before);
  EXPECT_EQ(st.detail(), Detail::kSourceChanged);
  EXPECT_NE(st.message().find("b.bin changed while it was read (appeared)"), std::string::npos);
  fs::remove(t / "b.bin");
  auto missing = file_states(*sources);
  EXPECT_EQ(missing.status().code(), Code::kNotFound);
  EXPECT_NE(missing.status().message().find("b.bin"), std::string::npos);
}

}  // namespace
}  // namespace ferry
