// job_table.h: what the agent knows about each training job and each
// checkpoint directory: every directory ever submitted (so none is
// submitted twice), per-job counts, the newest commit, the learned
// checkpoint interval, the RPO forecast and its warning, and the push
// throughput the forecast drains at. One lock guards it all; callers get
// copies, never references into it. Thread-safe.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "agent/journal.h"
#include "agent/rpo.h"
#include "agent/watcher.h"
#include "codec/manifest.h"

namespace ferry::agent {

// Per-job figures behind status and the RPO metrics.
struct JobStats {
  std::uint64_t newest_committed_step = 0;
  std::string newest_committed_snapshot;
  std::optional<std::int64_t> newest_committed_ns;
  std::uint64_t committed = 0, skipped = 0, failed = 0;
  std::string last_error;
  IntervalEstimate interval;
  RpoWarning warning;
  RpoForecast forecast;
  // Checkpoint directories newer than the newest commit and still not
  // complete after --incomplete_grace_s, and the oldest of them.
  std::uint64_t stuck_dirs = 0;
  IncompleteCheckpoint oldest_stuck;
  // A checkpoint of this job was submitted by hand since the agent started:
  // the job stays listed even when no watched root names it.
  bool submitted_here = false;
  // Delta snapshots since the agent started: the newest commit's kind and
  // base, and the bytes sent as delta frames against their logical size.
  SnapshotOrigin newest_origin;
  std::uint64_t delta_logical_bytes = 0;
  std::uint64_t delta_frame_bytes = 0;
};

// What one RPO refresh looks at, gathered by the caller outside the table's
// lock: the queue per job, the watcher's incomplete directories, targets.
struct RpoRefresh {
  std::int64_t now_ns = 0;
  std::vector<std::string> watched_jobs;                  // listed even before their first checkpoint
  std::map<std::string, std::uint64_t> backlog_bytes;     // queued and in flight, per job
  std::map<std::string, std::uint64_t> waiting_bytes;     // of which queued
  std::map<std::string, std::int64_t> oldest_pending_ns;  // per job
  std::vector<IncompleteCheckpoint> incomplete;           // oldest first
  bool any_target_up = true;
  double rpo_target_s = 0;
  double checkpoint_interval_s = 0;  // 0: learned per job
  double incomplete_grace_s = 0;
};

// One job after a refresh.
struct JobRpo {
  std::string job;
  RpoForecast forecast;
  bool warning = false;
  std::string warning_text;
  RpoWarning::Change change = RpoWarning::Change::kNone;
  std::uint64_t backlog_bytes = 0;
  std::uint64_t stuck_dirs = 0;
  std::optional<std::int64_t> newest_committed_ns;
};

class JobTable {
 public:
  // Directories. claim_dir is false when `dir` was submitted before.
  bool known_dir(const std::string& dir) const;
  bool claim_dir(const std::string& dir);
  void release_dir(const std::string& dir);

  // Recovery: one job's journaled history. A commit counts as newest only
  // when strictly newer than the one recorded.
  void recovered_commit(const std::string& job, std::int64_t created_ns, std::uint64_t step,
                        const std::string& snapshot);
  void recovered_final(const std::string& job, JobState state, bool committed);

  // A checkpoint of `job` taken at `created_ns` was seen (interval learning);
  // submitted() (by hand) also keeps the job listed while the agent runs.
  void observe_checkpoint(const std::string& job, std::int64_t created_ns);
  void submitted(const std::string& job, std::int64_t created_ns);
  void committed(const std::string& job, std::int64_t created_ns, std::uint64_t step,
                 const std::string& snapshot);
  void skipped(const std::string& job);
  void failed(const std::string& job, const std::string& detail);
  void set_last_error(const std::string& job, const std::string& error);
  void add_throughput(std::uint64_t bytes, double seconds);
  // A commit of `job` with this origin, and its bytes sent as deltas.
  void add_delta(const std::string& job, const SnapshotOrigin& origin, std::uint64_t logical_bytes,
                 std::uint64_t frame_bytes);
  double throughput_bytes_per_second() const;

  // Recomputes every job's forecast and warning. A job that is no longer
  // watched (a root removed, or one only the journal remembers), has
  // nothing queued or incomplete and had nothing submitted since the start
  // is dropped first: status no longer lists it and nothing of it is
  // exported, so no alert stays raised for a job that is gone.
  std::vector<JobRpo> refresh_rpo(const RpoRefresh& in);
  // Every job's figures, by name.
  std::map<std::string, JobStats> jobs() const;

 private:
  mutable std::mutex mu_;
  std::map<std::string, JobStats> stats_;
  std::set<std::string> known_dirs_;  // every directory ever submitted
  ThroughputEstimate throughput_;
};

}  // namespace ferry::agent
