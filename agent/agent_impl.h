// agent_impl.h: the agent's internals, shared by the files that implement
// Agent (agent.cc: start, recovery, submission, reload, shutdown;
// agent_worker.cc: running one job; agent_status.cc: RPO, metrics, status
// and the control handler). Not a public header: nothing outside agent/
// includes it.
#pragma once

#include <atomic>
#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "agent/agent.h"
#include "agent/control.h"
#include "agent/job_table.h"
#include "agent/journal.h"
#include "agent/metrics.h"
#include "agent/rpo.h"
#include "agent/scheduler.h"
#include "agent/target_health.h"
#include "agent/ticker.h"
#include "agent/watcher.h"
#include "base/clock.h"
#include "base/thread_pool.h"
#include "codec/engine.h"
#include "replication/sender.h"
#include "store/chunk_store.h"

namespace ferry::agent {

// A checkpoint as one job read it before its push: its files, and their
// states, which are compared with a second look before COMMIT.
struct CheckpointRead {
  std::vector<PackSource> sources;
  std::vector<FileState> states;
};

// The configuration in force: read whole by every user, replaced whole by
// reload. Thread-safe.
class SharedConfig {
 public:
  explicit SharedConfig(AgentConfig c) : config_(std::move(c)) {}
  AgentConfig get() const {
    std::lock_guard lock(mu_);
    return config_;
  }
  void set(const AgentConfig& c) {
    std::lock_guard lock(mu_);
    config_ = c;
  }

 private:
  mutable std::mutex mu_;
  AgentConfig config_;
};

// The watcher in use, replaced on reload (the old one stops first so no
// candidate is reported twice). Thread-safe.
class WatcherSlot {
 public:
  void reset() { set(nullptr); }
  void set(std::unique_ptr<Watcher> next) {
    std::lock_guard lock(mu_);
    watcher_ = std::move(next);  // the old one stops while no other thread can reach it
  }
  // The watcher's incomplete checkpoint directories, oldest first.
  std::vector<IncompleteCheckpoint> incomplete() const {
    std::lock_guard lock(mu_);
    return watcher_ ? watcher_->incomplete() : std::vector<IncompleteCheckpoint>{};
  }

 private:
  mutable std::mutex mu_;
  std::unique_ptr<Watcher> watcher_;
};

// The agent's parts. Each part guards its own state (the journal, scheduler,
// target health, job table, metrics, config and watcher are thread-safe
// classes); the files implementing Agent call their methods and share no lock.
struct Agent::Impl {
  Logger& log;
  SharedConfig config;
  std::int64_t started_ns = wall_ns();

  std::unique_ptr<Journal> journal;
  // Held while a submission takes the next job id and journals it, so two
  // submissions never take the same id (agent.cc only).
  std::mutex submit_mu;
  Scheduler scheduler;
  TargetHealth health;
  JobTable jobs;
  Metrics metrics;
  std::unique_ptr<ThreadPool> pool;
  std::vector<std::unique_ptr<CodecEngine>> engines;  // one per worker
  std::string engine_description;

  std::atomic<bool> cancel{false};  // in-flight pushes stop
  std::atomic<bool> stopping{false};

  std::unique_ptr<MetricsServer> metrics_server;
  std::unique_ptr<HealthProber> prober;
  WatcherSlot watcher;
  std::unique_ptr<ControlServer> control;
  std::vector<std::thread> workers;
  std::unique_ptr<Ticker> ticker;
  bool shut_down = false;
  std::mutex buckets_mu;
  // s3:// targets, by URL and upload settings (a reload that changes
  // --streams or --bandwidth_mbps opens the target again; pushes running
  // keep the store they hold).
  std::map<std::string, std::unique_ptr<ChunkStore>> buckets;

  Impl(const AgentConfig& c, Logger& l)
      : log(l), config(c), scheduler(SchedulerOptions{c.skip_superseded}),
        health(c.targets, c.target_down_after, c.target_up_after) {}

  AgentConfig config_copy() const { return config.get(); }

  // Dials `target` and completes HELLO, or lists an s3:// target's bucket:
  // the health probe.
  Status probe(const std::string& target);
  // The store at s3:// target `url`, opened on first use (credentials from
  // the environment, as `ferry push --to=s3://` reads them), uploading as
  // many packs at once as `c.streams` and no faster than
  // `c.bandwidth_mbps`.
  Result<ChunkStore*> bucket_store(const std::string& url, const AgentConfig& c);
  // One round of a push: its targets in failover order, receivers through
  // replication::push and buckets through push_to_store.
  Result<std::vector<replication::PushReport>> push_round(const CheckpointRead& read,
                                                          replication::PushOptions po,
                                                          const std::vector<std::string>& round,
                                                          const AgentConfig& c);
  Result<replication::PushReport> push_to_bucket(const CheckpointRead& read,
                                                 const replication::PushOptions& po, const std::string& url,
                                                 const AgentConfig& c);

  // agent.cc: start-up steps, recovery and submission.
  Status recover();
  void recover_job(std::uint64_t id, const JobStatus& js, const AgentConfig& c,
                   std::vector<JournalRecord>& live, std::size_t& requeued);
  Status probe_targets(const AgentConfig& c);
  Status make_engines(const AgentConfig& c);
  void start_threads(const AgentConfig& c);
  Status start_watcher(const AgentConfig& c);
  // `by_hand`: through the control socket (`ferry submit`), which keeps the
  // job listed while the agent runs even when no watched root names it.
  Result<std::uint64_t> submit(const std::filesystem::path& dir, const std::string& job, std::uint64_t step,
                               std::int64_t mtime_ns, bool by_hand);
  // agent_worker.cc: the workers and the steps of one job.
  void worker(std::size_t index);
  void run_job(QueuedJob j, std::size_t worker_index);
  // The push of job `j` with this configuration; its before_commit refers
  // to `read`, which must outlive the push.
  replication::PushOptions push_options(const QueuedJob& j, const AgentConfig& c, std::size_t worker_index,
                                        const CheckpointRead& read);
  // Journals, counts and logs the targets that committed `j`.
  // Journals the delta base a push chose at `target` (before any frame goes
  // there) and keeps it in `j`, so a retry or a restarted agent uses it again.
  void journal_delta_choice(QueuedJob& j, const std::string& target, const DeltaChoice& choice);
  void record_commits(QueuedJob& j, const std::vector<replication::PushReport>& reports, double seconds);
  void job_committed(const QueuedJob& j);
  // `why` stopped an attempt: the job is queued again with backoff when
  // retry_job_later(why) says another attempt may cure it (metrics and log
  // under `kind`, or checkpoint_changed for a source changed while read),
  // else it fails for good.
  void retry_or_fail(QueuedJob j, const Status& why, const char* kind);
  void retry_job(QueuedJob j, const Status& why, const char* kind);
  void job_done(const QueuedJob& j, JobState state, const std::string& detail);
  // agent_status.cc: RPO, metrics and status.
  void tick();
  nlohmann::json status_json();
};

}  // namespace ferry::agent
