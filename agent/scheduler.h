// scheduler.h: the queue of checkpoints waiting to be replicated. Workers
// (max_jobs of them) take the newest runnable checkpoint first, since the
// newest is what a disaster recovery would use; with skip_superseded, an
// older checkpoint of a job that has a newer one queued, running or
// committed is skipped instead of sent (the agent is behind and the older
// one no longer lowers the RPO). Jobs can be paused and resumed by name; a
// failed attempt is put back with a not-before time (backoff).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "codec/delta_chain.h"

namespace ferry::agent {

// One checkpoint to replicate.
struct QueuedJob {
  std::uint64_t id = 0;
  std::string job;
  std::filesystem::path dir;
  std::string snapshot;
  std::int64_t created_ns = 0;  // pinned at submit: the manifest's created time
  std::int64_t mtime_ns = 0;    // the checkpoint's own time
  std::uint64_t step = 0;
  std::uint64_t logical_bytes = 0;
  // Targets still owed a commit (fan-out: each target is its own
  // commitment; otherwise any one target satisfies the job).
  std::vector<std::string> pending_targets;
  int attempts = 0;
  std::int64_t not_before_ns = 0;  // steady-clock ns; 0 = now
  // The delta base chosen at delta_target by an earlier attempt (journaled;
  // docs/FORMAT.md 8.2): the push there uses it again. Empty target: none.
  std::string delta_target;
  DeltaChoice delta;
};

struct SchedulerOptions {
  bool skip_superseded = true;
};

class Scheduler {
 public:
  explicit Scheduler(SchedulerOptions options = {});

  // Queues a checkpoint (ignored when its id is already queued or running).
  void add(QueuedJob job);
  // What next() hands out: a job to run, and the checkpoints it supersedes
  // (removed from the queue; the caller journals them as skipped).
  struct Next {
    std::optional<QueuedJob> run;
    std::vector<QueuedJob> skipped;
  };
  // Waits up to wait_ms for a runnable job. Returns an empty Next when none
  // came (or stop()), possibly with skipped jobs.
  Next next(int wait_ms);
  // The running job `id` ended: committed (remembered for superseding) or not.
  void finish(std::uint64_t id, bool committed);
  // The running job goes back to the queue, runnable after delay_ms.
  void retry(QueuedJob job, int delay_ms);

  void pause(const std::string& job);   // "" = everything
  void resume(const std::string& job);  // "" = everything
  bool paused(const std::string& job) const;
  bool all_paused() const;
  void set_skip_superseded(bool skip);
  // Wakes waiters; next() returns empty from now on.
  void stop();

  struct Entry {
    QueuedJob job;
    bool running = false;
  };
  std::vector<Entry> entries() const;  // running first, then queued newest first
  std::size_t queued() const;
  std::size_t running() const;

 private:
  bool superseded(const QueuedJob& j) const;  // mu_ held
  static bool newer(const QueuedJob& a, const QueuedJob& b);

  mutable std::mutex mu_;
  std::condition_variable cv_;
  SchedulerOptions options_;
  std::vector<QueuedJob> queue_;
  std::map<std::uint64_t, QueuedJob> running_;
  std::map<std::string, std::int64_t> newest_committed_mtime_;
  std::set<std::string> paused_jobs_;
  bool all_paused_ = false;
  bool stopped_ = false;
};

}  // namespace ferry::agent
