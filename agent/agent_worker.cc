// agent_worker.cc: the workers (see agent.h): each takes the newest
// runnable checkpoint from the scheduler and runs it as one job: file states
// before, a push to the healthiest target(s) with the states checked again
// before COMMIT, the commit journaled per target; transient failures go
// back to the queue with backoff, permanent ones are journaled as failed.
#include <algorithm>

#include "agent/agent_impl.h"
#include "codec/packer.h"
#include "replication/sender.h"

namespace ferry::agent {
namespace {

using Clock = std::chrono::steady_clock;

// Errors another attempt may cure; the rest mark the job failed for good.
bool transient(const Status& s) {
  switch (s.code()) {
    case Code::kUnavailable:
    case Code::kTimeout:
    case Code::kIOError:
    case Code::kAborted:
    case Code::kResourceExhausted:
      return true;
    default:
      return false;
  }
}

// The journal record of a state change of job `j`, stamped now.
JournalRecord journal_record(const QueuedJob& j, JobState state) {
  JournalRecord r;
  r.job_id = j.id;
  r.state = state;
  r.time_ns = wall_ns();
  r.job = j.job;
  r.path = j.dir.string();
  r.snapshot = j.snapshot;
  r.created_ns = j.created_ns;
  r.step = j.step;
  r.logical_bytes = j.logical_bytes;
  return r;
}

}  // namespace

// ---- workers ----

void Agent::Impl::worker(std::size_t index) {
  while (!stopping.load()) {
    Scheduler::Next n = scheduler.next(kRpoTickMs);
    for (const auto& s : n.skipped)
      job_done(s, JobState::kSkipped, "superseded by a newer checkpoint of " + s.job);
    if (n.run) run_job(std::move(*n.run), index);
  }
}

void Agent::Impl::job_done(const QueuedJob& j, JobState state, const std::string& detail) {
  JournalRecord r = journal_record(j, state);
  r.detail = detail;
  Status st = journal->append(r);
  if (!st) log.error("journal_append_failed", {field("error", st.to_string())});
  {
    std::lock_guard lock(jobs_mu);
    JobStats& s = stats[j.job];
    if (state == JobState::kSkipped) ++s.skipped;
    if (state == JobState::kFailed) {
      ++s.failed;
      s.last_error = detail;
    }
  }
  metrics.add(kMetricJobs, {{"state", std::string(job_state_name(state))}}, 1);
  log.log(state == JobState::kFailed ? LogLevel::kError : LogLevel::kInfo,
          state == JobState::kSkipped ? "checkpoint_skipped" : "checkpoint_failed",
          {field("id", j.id), field("job", j.job), field("snapshot", j.snapshot), field("detail", detail)});
  if (state != JobState::kSkipped) scheduler.finish(j.id, false);
}

void Agent::Impl::run_job(QueuedJob j, std::size_t worker_index) {
  const AgentConfig c = config_copy();
  auto retry_later = [&](const Status& why, const char* kind) {
    const int delay = std::min(kRetryMaxDelayMs, kRetryInitialDelayMs << std::min(j.attempts, 10));
    {
      std::lock_guard lock(jobs_mu);
      stats[j.job].last_error = why.to_string();
    }
    metrics.add(kMetricErrors, {{"kind", kind}}, 1);
    log.warn("checkpoint_retry",
             {field("id", j.id), field("job", j.job), field("snapshot", j.snapshot),
              field("attempt", j.attempts), field("delay_ms", delay), field("error", why.to_string())});
    ++j.attempts;
    scheduler.retry(std::move(j), delay);
  };
  // Which targets this attempt may use: nothing is tried while every
  // candidate is down (the job waits; the backlog and RPO warning show it).
  std::vector<std::string> targets;
  if (c.fan_out) {
    for (const auto& t : j.pending_targets) {
      if (health.is_up(t)) targets.push_back(t);
    }
  } else if (health.any_up()) {
    targets = health.healthy_first();
  }
  if (targets.empty()) {
    scheduler.retry(std::move(j), static_cast<int>(std::min(c.probe_interval_s * 1000, 2000.0)));
    return;
  }
  if (Status st = journal->append(journal_record(j, JobState::kStarted)); !st)
    return retry_later(st, "journal");

  auto sources = list_pack_sources(j.dir);
  if (!sources) {
    if (sources.status().code() == Code::kNotFound)
      return job_done(j, JobState::kFailed, sources.status().to_string());
    return retry_later(sources.status(), "read");
  }
  auto before = file_states(*sources);
  if (!before) return retry_later(before.status(), "read");

  replication::PushOptions po;
  po.tls = c.tls();
  po.streams = c.streams;
  po.snapshot = j.snapshot;
  po.job = j.job;
  po.step = j.step;
  po.pool = pool.get();
  po.engine = engines[worker_index].get();
  po.bandwidth_bytes_per_s = c.bandwidth_bytes_per_s();
  po.retry.max_attempts = kPushMaxAttempts;
  po.created_ns = j.created_ns;
  po.should_stop = [this] { return cancel.load(); };
  const std::vector<PackSource>& srcs = *sources;
  const std::vector<FileState>& states = *before;
  po.before_commit = [&srcs, &states]() -> Status {
    ASSIGN_OR_RETURN(auto after, file_states(srcs));
    return check_unchanged(states, after);
  };
  // Fan-out: one push (one commitment) per target; otherwise one push with
  // the targets in failover order.
  std::vector<std::vector<std::string>> rounds;
  if (c.fan_out) {
    for (const auto& t : targets) rounds.push_back({t});
  } else {
    rounds.push_back(targets);
  }
  for (const auto& round : rounds) {
    po.targets = round;
    const auto t0 = Clock::now();
    auto pushed = replication::push(*sources, po);
    const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    if (!pushed) {
      if (cancel.load()) {
        // Shutdown: the journal keeps the job started; the next start resumes it.
        log.info("checkpoint_cancelled", {field("id", j.id), field("snapshot", j.snapshot)});
        scheduler.finish(j.id, false);
        return;
      }
      // check_unchanged's refusal in before_commit: read again later.
      const bool changed = pushed.status().code() == Code::kAborted &&
                           pushed.status().message().find("changed while it was read") != std::string::npos;
      if (changed) return retry_later(pushed.status(), "checkpoint_changed");
      if (!transient(pushed.status())) return job_done(j, JobState::kFailed, pushed.status().to_string());
      return retry_later(pushed.status(), "push");
    }
    for (const auto& rep : *pushed) {
      JournalRecord r = journal_record(j, JobState::kCommitted);
      r.target = rep.target;
      if (Status st = journal->append(r); !st)
        log.error("journal_append_failed", {field("error", st.to_string())});
      metrics.add(kMetricLogicalBytes, {}, static_cast<double>(rep.logical_bytes));
      metrics.add(kMetricWireBytes, {}, static_cast<double>(rep.wire_bytes_sent));
      log.info(
          "checkpoint_committed",
          {field("id", j.id), field("job", j.job), field("snapshot", j.snapshot), field("target", rep.target),
           field("logical_bytes", rep.logical_bytes), field("wire_bytes", rep.wire_bytes_sent),
           field("chunks_sent", rep.chunks_sent), field("chunks_skipped", rep.chunks_skipped),
           field("failovers", rep.failovers), field("seconds", rep.seconds)});
      std::erase(j.pending_targets, rep.target);
    }
    std::lock_guard lock(jobs_mu);
    throughput.add(j.logical_bytes, seconds);
  }
  if (c.fan_out && !j.pending_targets.empty()) {
    // Other targets are down: this part waits for them.
    return retry_later(Status::unavailable("waiting for " + std::to_string(j.pending_targets.size()) +
                                           " down target(s) of the fan-out"),
                       "target_down");
  }
  {
    std::lock_guard lock(jobs_mu);
    JobStats& s = stats[j.job];
    ++s.committed;
    s.last_error.clear();
    if (!s.newest_committed_ns || j.created_ns >= *s.newest_committed_ns) {
      s.newest_committed_ns = j.created_ns;
      s.newest_committed_step = j.step;
      s.newest_committed_snapshot = j.snapshot;
    }
  }
  metrics.add(kMetricJobs, {{"state", "committed"}}, 1);
  scheduler.finish(j.id, true);
  tick_cv.notify_all();
}

}  // namespace ferry::agent
