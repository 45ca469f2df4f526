// agent_impl.h: the agent's internals, shared by the files that implement
// Agent (agent.cc: start, recovery, submission, reload, shutdown;
// agent_worker.cc: running one job; agent_status.cc: RPO, metrics, status
// and the control handler). Not a public header: nothing outside agent/
// includes it.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "agent/agent.h"
#include "agent/control.h"
#include "agent/journal.h"
#include "agent/metrics.h"
#include "agent/rpo.h"
#include "agent/scheduler.h"
#include "agent/target_health.h"
#include "agent/watcher.h"
#include "base/clock.h"
#include "base/thread_pool.h"
#include "codec/engine.h"
#include "replication/sender.h"

namespace ferry::agent {

// A checkpoint as one job read it before its push: its files, and their
// states, which are compared with a second look before COMMIT.
struct CheckpointRead {
  std::vector<PackSource> sources;
  std::vector<FileState> states;
};

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
  // complete after --incomplete_grace_s, and the oldest of them (tick()).
  std::uint64_t stuck_dirs = 0;
  IncompleteCheckpoint oldest_stuck;
};

struct Agent::Impl {
  Logger& log;
  std::mutex config_mu;
  AgentConfig config;
  std::int64_t started_ns = wall_ns();

  std::unique_ptr<Journal> journal;
  Scheduler scheduler;
  TargetHealth health;
  Metrics metrics;
  std::unique_ptr<ThreadPool> pool;
  std::vector<std::unique_ptr<CodecEngine>> engines;  // one per worker
  std::string engine_description;

  std::mutex jobs_mu;  // guards stats, known_dirs, throughput
  std::map<std::string, JobStats> stats;
  std::set<std::string> known_dirs;  // every directory ever submitted
  ThroughputEstimate throughput;

  std::atomic<bool> cancel{false};  // in-flight pushes stop
  std::atomic<bool> stopping{false};
  std::mutex tick_mu;
  std::condition_variable tick_cv;

  std::unique_ptr<MetricsServer> metrics_server;
  std::unique_ptr<HealthProber> prober;
  std::mutex watcher_mu;
  std::unique_ptr<Watcher> watcher;
  std::unique_ptr<ControlServer> control;
  std::vector<std::thread> workers;
  std::thread ticker;
  bool shut_down = false;

  Impl(const AgentConfig& c, Logger& l)
      : log(l), config(c), scheduler(SchedulerOptions{c.skip_superseded}),
        health(c.targets, c.target_down_after, c.target_up_after) {}

  AgentConfig config_copy() {
    std::lock_guard lock(config_mu);
    return config;
  }

  // Dials `target` and completes HELLO: the health probe.
  Status probe(const std::string& target);

  Status recover();
  Status start_watcher(const AgentConfig& c);
  Result<std::uint64_t> submit(const std::filesystem::path& dir, const std::string& job, std::uint64_t step,
                               std::int64_t mtime_ns);
  // agent_worker.cc: the workers and the steps of one job.
  void worker(std::size_t index);
  void run_job(QueuedJob j, std::size_t worker_index);
  // The push of job `j` with this configuration; its before_commit refers
  // to `read`, which must outlive the push.
  replication::PushOptions push_options(const QueuedJob& j, const AgentConfig& c, std::size_t worker_index,
                                        const CheckpointRead& read);
  // Journals, counts and logs the targets that committed `j`.
  void record_commits(QueuedJob& j, const std::vector<replication::PushReport>& reports, double seconds);
  void job_committed(const QueuedJob& j);
  // `why` stopped an attempt: the job is queued again with backoff when
  // retry_job_later(why) says another attempt may cure it (metrics and log
  // under `kind`, or checkpoint_changed for a source changed while read),
  // else it fails for good.
  void retry_or_fail(QueuedJob j, const Status& why, const char* kind);
  void retry_job(QueuedJob j, const Status& why, const char* kind);
  void job_done(const QueuedJob& j, JobState state, const std::string& detail);
  void tick();
  nlohmann::json status_json();
};

}  // namespace ferry::agent
