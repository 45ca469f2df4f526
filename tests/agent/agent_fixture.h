// agent_fixture.h: what the agent's end-to-end tests share: checkpoints
// written the way trainers write them (files first, the completion mark
// last), a snapshot's restore compared byte for byte with its source, a
// scrape of /metrics by a real HTTP client, and polling with a deadline.
#pragma once

#include <gtest/gtest.h>
#include <httplib.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "replication/restore.h"
#include "tests/testing/testing.h"

namespace ferry::agent::testing {

namespace fs = std::filesystem;

using ferry::testing::metric_value;
using ferry::testing::wait_until;

// A DCP-like checkpoint: shards of floats, then ".metadata" (what makes
// it complete) written last.
inline void write_checkpoint(const fs::path& dir, std::uint64_t seed, std::size_t floats = 300'000) {
  fs::create_directories(dir);
  ferry::testing::write_file(dir / "__0_0.distcp",
                             ferry::testing::normal_floats(floats, 2, true, 0.02, seed));
  ferry::testing::write_file(dir / "__1_0.distcp",
                             ferry::testing::normal_floats(floats / 3, 4, false, 1e-3, seed + 1));
  ferry::testing::write_file(dir / ".metadata", ferry::testing::random_bytes(700, seed + 2));
}

// Every regular file under `root`, by relative path.
inline std::map<std::string, std::vector<std::byte>> read_tree(const fs::path& root) {
  std::map<std::string, std::vector<std::byte>> out;
  for (const auto& e : fs::recursive_directory_iterator(root)) {
    if (e.is_regular_file()) out[fs::relative(e.path(), root).string()] = ferry::testing::read_file(e.path());
  }
  return out;
}

// Restores `snapshot` into a fresh directory and compares it with `source`.
inline ::testing::AssertionResult restores_identical(const replication::RemoteOptions& remote,
                                                     const std::string& snapshot, const fs::path& source) {
  ferry::testing::TempDir out;
  auto r = replication::restore_snapshot(remote, snapshot, out.path() / "r");
  if (!r) return ::testing::AssertionFailure() << "restore " << snapshot << ": " << r.status().to_string();
  auto want = read_tree(source), got = read_tree(out.path() / "r");
  if (want.size() != got.size()) {
    return ::testing::AssertionFailure() << snapshot << ": " << got.size() << " files, want " << want.size();
  }
  for (const auto& [name, bytes] : want) {
    if (!got.count(name)) return ::testing::AssertionFailure() << snapshot << ": " << name << " missing";
    if (got[name] != bytes) return ::testing::AssertionFailure() << snapshot << ": " << name << " differs";
  }
  return ::testing::AssertionSuccess();
}

// The snapshot names at `remote` (empty on error).
inline std::vector<std::string> remote_names(const replication::RemoteOptions& remote) {
  std::vector<std::string> out;
  auto l = replication::list_remote(remote, false);
  if (!l) return out;
  for (const auto& s : *l) out.push_back(s.info.name);
  return out;
}

// GET /metrics from 127.0.0.1:port; "" on failure.
inline std::string scrape_metrics(int port) {
  httplib::Client cli("127.0.0.1", port);
  cli.set_connection_timeout(5, 0);
  auto res = cli.Get("/metrics");
  if (!res || res->status != 200) return "";
  return res->body;
}

}  // namespace ferry::agent::testing
