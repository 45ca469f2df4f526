// agent_worker.cc: the workers (see agent.h): each takes the newest
// runnable checkpoint from the scheduler and runs it as one job: file states
// before, a push to the healthiest target(s) with the states checked again
// before COMMIT, the commit journaled per target. A failure goes back to the
// queue with backoff when base/retry.h's retry_job_later says another attempt
// may cure it, and is journaled as failed otherwise.
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "agent/agent_impl.h"
#include "base/retry.h"
#include "codec/packer.h"
#include "store/open_store.h"
#include "store/s3_store.h"
#include "store/store_push.h"

namespace ferry::agent {
namespace {

using Clock = std::chrono::steady_clock;

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
  if (!j.delta_target.empty()) {
    r.delta_target = j.delta_target;
    r.delta_base_dir = j.delta.base_dir.string();
    r.delta_base_snapshot = j.delta.origin.base_snapshot;
    r.delta_kind = static_cast<std::uint8_t>(j.delta.origin.kind);
    r.delta_chain_depth = j.delta.origin.chain_depth;
  }
  return r;
}

// Which targets an attempt may use: with fan-out, the owed targets that are
// up; otherwise every target, healthiest first, once any is up. Empty while
// every candidate is down (the job waits; the backlog and RPO warning show it).
std::vector<std::string> attempt_targets(const QueuedJob& j, bool fan_out, const TargetHealth& health) {
  std::vector<std::string> targets;
  if (fan_out) {
    for (const auto& t : j.pending_targets) {
      if (health.is_up(t)) targets.push_back(t);
    }
  } else if (health.any_up()) {
    targets = health.healthy_first();
  }
  return targets;
}

// Fan-out: one push (one commitment) per target; otherwise one push with the
// targets in failover order.
std::vector<std::vector<std::string>> push_rounds(const std::vector<std::string>& targets, bool fan_out) {
  if (!fan_out) return {targets};
  std::vector<std::vector<std::string>> rounds;
  for (const auto& t : targets) rounds.push_back({t});
  return rounds;
}

// The files of checkpoint `dir` and their states before the push.
Result<CheckpointRead> read_checkpoint(const std::filesystem::path& dir) {
  CheckpointRead read;
  ASSIGN_OR_RETURN(read.sources, list_pack_sources(dir));
  ASSIGN_OR_RETURN(read.states, file_states(read.sources));
  return read;
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
  if (state == JobState::kSkipped) jobs.skipped(j.job);
  if (state == JobState::kFailed) jobs.failed(j.job, detail);
  metrics.add(kMetricFinished, {{"state", std::string(job_state_name(state))}}, 1);
  log.log(state == JobState::kFailed ? LogLevel::kError : LogLevel::kInfo,
          state == JobState::kSkipped ? "checkpoint_skipped" : "checkpoint_failed",
          {field("id", j.id), field("job", j.job), field("snapshot", j.snapshot), field("detail", detail)});
  if (state != JobState::kSkipped) scheduler.finish(j.id, false);
}

replication::PushOptions Agent::Impl::push_options(const QueuedJob& j, const AgentConfig& c,
                                                   std::size_t worker_index, const CheckpointRead& read) {
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
  po.source_dir = std::filesystem::absolute(j.dir).lexically_normal();
  po.delta = c.delta_policy();
  if (!j.delta_target.empty()) {
    po.pinned_delta = j.delta;
    po.pinned_delta_target = j.delta_target;
  }
  po.should_stop = [this] { return cancel.load(); };
  // A file that changed since `read` refuses the commit (Detail::kSourceChanged).
  po.before_commit = [&read]() -> Status {
    ASSIGN_OR_RETURN(auto after, file_states(read.sources));
    return check_unchanged(read.states, after);
  };
  return po;
}

void Agent::Impl::run_job(QueuedJob j, std::size_t worker_index) {
  const AgentConfig c = config_copy();
  const std::vector<std::string> targets = attempt_targets(j, c.fan_out, health);
  if (targets.empty()) {
    scheduler.retry(std::move(j), static_cast<int>(std::min(c.probe_interval_s * 1000, 2000.0)));
    return;
  }
  // Without the journal the job can neither start nor be failed on record:
  // it waits, whatever the journal's error.
  if (Status st = journal->append(journal_record(j, JobState::kStarted)); !st)
    return retry_job(std::move(j), st, "journal");
  Result<CheckpointRead> read = read_checkpoint(j.dir);
  if (!read) return retry_or_fail(std::move(j), read.status(), "read");

  replication::PushOptions po = push_options(j, c, worker_index, *read);
  // The base chosen at a target is journaled before any frame goes there, so
  // a restarted agent pushes against the same one (see journal_delta_choice).
  po.on_delta_choice = [this, &j](const std::string& target, const DeltaChoice& choice) {
    journal_delta_choice(j, target, choice);
  };
  for (const auto& round : push_rounds(targets, c.fan_out)) {
    const auto t0 = Clock::now();
    auto pushed = push_round(*read, po, round, c);
    const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    metrics.observe(kMetricPushSeconds, {}, seconds);
    if (!pushed) {
      if (cancel.load()) {
        // Shutdown: the journal keeps the job started; the next start resumes it.
        log.info("checkpoint_cancelled", {field("id", j.id), field("snapshot", j.snapshot)});
        scheduler.finish(j.id, false);
        return;
      }
      return retry_or_fail(std::move(j), pushed.status(), "push");
    }
    record_commits(j, *pushed, seconds);
  }
  if (c.fan_out && !j.pending_targets.empty()) {
    // Other targets are down: this part waits for them.
    Status waiting = Status::unavailable("waiting for " + std::to_string(j.pending_targets.size()) +
                                         " down target(s) of the fan-out");
    return retry_job(std::move(j), waiting, "target_down");
  }
  job_committed(j);
}

void Agent::Impl::journal_delta_choice(QueuedJob& j, const std::string& target, const DeltaChoice& choice) {
  log.info("delta_base", {field("id", j.id), field("snapshot", j.snapshot), field("target", target),
                          field("kind", std::string(snapshot_kind_name(choice.origin.kind))),
                          field("base", choice.origin.base_snapshot), field("reason", choice.reason)});
  if (j.delta_target == target && j.delta.base_dir == choice.base_dir && j.delta.origin == choice.origin)
    return;  // journaled already (a resumed push)
  j.delta_target = target;
  j.delta = choice;
  if (Status st = journal->append(journal_record(j, JobState::kStarted)); !st)
    log.error("journal_append_failed", {field("error", st.to_string())});
}

Result<ChunkStore*> Agent::Impl::bucket_store(const std::string& url, const AgentConfig& c) {
  StoreOptions options;
  options.object_uploads = static_cast<std::size_t>(c.streams);
  options.object_upload_bytes_per_s = c.bandwidth_bytes_per_s();
  const std::string key = url + " uploads=" + std::to_string(options.object_uploads) +
                          " bytes_per_s=" + std::to_string(options.object_upload_bytes_per_s);
  std::lock_guard lock(buckets_mu);
  auto it = buckets.find(key);
  if (it != buckets.end()) return it->second.get();
  auto store = open_store(url, options);
  if (!store) return store.status();
  ChunkStore* raw = store->get();
  buckets.emplace(key, std::move(*store));
  return raw;
}

Result<replication::PushReport> Agent::Impl::push_to_bucket(const CheckpointRead& read,
                                                            const replication::PushOptions& po,
                                                            const std::string& url, const AgentConfig& c) {
  ASSIGN_OR_RETURN(ChunkStore * store, bucket_store(url, c));
  std::string ns = c.ns;
  if (ns.empty()) {
    char host[256] = {};
    if (::gethostname(host, sizeof host - 1) != 0) return Status::from_errno(errno, "gethostname");
    ns = host;
  }
  PackOptions pack = replication::pack_options_of(po, po.created_ns);
  DeltaChoice choice;
  if (po.pinned_delta && po.pinned_delta_target == url) {
    choice = *po.pinned_delta;
  } else {
    ChainQuery query;
    query.job = po.job;
    query.source_dir = po.source_dir;
    choice = choose_store_delta_base(*store, ns, po.delta, query);
  }
  if (po.on_delta_choice) po.on_delta_choice(url, choice);
  pack.delta_from = choice.base_dir;
  pack.origin = choice.origin;
  StorePushHooks hooks;
  hooks.before_commit = po.before_commit;
  hooks.should_stop = po.should_stop;
  auto pushed = push_to_store(*store, ns, read.sources, pack, po.snapshot, hooks);
  if (!pushed) return pushed.status().with_context("push of " + po.snapshot + " to " + url);
  replication::PushReport rep;
  rep.target = url;
  rep.snapshot = pushed->snapshot;
  rep.files = pushed->files;
  rep.logical_bytes = pushed->logical_bytes;
  rep.chunks_total = pushed->chunks_total;
  rep.chunks_skipped = pushed->chunks_skipped;
  rep.chunks_sent = pushed->chunks_total - std::min(pushed->chunks_total, pushed->chunks_skipped);
  rep.frame_bytes_sent = pushed->frame_bytes_stored;
  rep.wire_bytes_sent = pushed->frame_bytes_stored;  // pack bodies; HTTP adds little
  rep.delta_chunks = pushed->delta_chunks;
  rep.delta_logical_bytes = pushed->delta_logical_bytes;
  rep.delta_frame_bytes = pushed->delta_frame_bytes;
  rep.origin = pushed->origin;
  rep.delta_reason = choice.reason;
  rep.seconds = pushed->seconds;
  return rep;
}

Result<std::vector<replication::PushReport>> Agent::Impl::push_round(const CheckpointRead& read,
                                                                     replication::PushOptions po,
                                                                     const std::vector<std::string>& round,
                                                                     const AgentConfig& c) {
  Status last = Status::unavailable("no target to push to");
  std::uint64_t failovers = 0;
  for (std::size_t i = 0; i < round.size() && !cancel.load();) {
    if (is_s3_url(round[i])) {
      auto rep = push_to_bucket(read, po, round[i], c);
      if (rep) {
        rep->failovers = failovers;
        return std::vector<replication::PushReport>{*rep};
      }
      last = rep.status();
      log.warn("target_failed", {field("target", round[i]), field("error", last.to_string())});
      ++failovers;
      ++i;
      continue;
    }
    // A run of receivers: replication::push fails over among them itself.
    std::size_t end = i;
    while (end < round.size() && !is_s3_url(round[end])) ++end;
    po.targets.assign(round.begin() + static_cast<std::ptrdiff_t>(i),
                      round.begin() + static_cast<std::ptrdiff_t>(end));
    auto pushed = replication::push(read.sources, po);
    if (pushed) {
      for (auto& rep : *pushed) rep.failovers += failovers;
      return pushed;
    }
    last = pushed.status();
    failovers += end - i;
    i = end;
  }
  return last;
}

void Agent::Impl::retry_or_fail(QueuedJob j, const Status& why, const char* kind) {
  if (!retry_job_later(why)) return job_done(j, JobState::kFailed, why.to_string());
  // A checkpoint that changed while it was read is read again later; it is
  // counted apart, as it says the trainer rewrote files, not that ferry failed.
  retry_job(std::move(j), why, why.detail() == Detail::kSourceChanged ? "checkpoint_changed" : kind);
}

void Agent::Impl::retry_job(QueuedJob j, const Status& why, const char* kind) {
  const int delay = std::min(kRetryMaxDelayMs, kRetryInitialDelayMs << std::min(j.attempts, 10));
  jobs.set_last_error(j.job, why.to_string());
  metrics.add(kMetricErrors, {{"kind", kind}}, 1);
  log.warn("checkpoint_retry", {field("id", j.id), field("job", j.job), field("snapshot", j.snapshot),
                                field("attempt", j.attempts), field("delay_ms", delay), field("kind", kind),
                                field("error", why.to_string())});
  ++j.attempts;
  scheduler.retry(std::move(j), delay);
}

void Agent::Impl::record_commits(QueuedJob& j, const std::vector<replication::PushReport>& reports,
                                 double seconds) {
  for (const auto& rep : reports) {
    JournalRecord r = journal_record(j, JobState::kCommitted);
    r.target = rep.target;
    if (Status st = journal->append(r); !st)
      log.error("journal_append_failed", {field("error", st.to_string())});
    metrics.add(kMetricLogicalBytes, {}, static_cast<double>(rep.logical_bytes));
    metrics.add(kMetricWireBytes, {}, static_cast<double>(rep.wire_bytes_sent));
    metrics.add(kMetricDeltaLogicalBytes, {}, static_cast<double>(rep.delta_logical_bytes));
    metrics.add(kMetricDeltaFrameBytes, {}, static_cast<double>(rep.delta_frame_bytes));
    metrics.add(kMetricSnapshots, {{"kind", std::string(snapshot_kind_name(rep.origin.kind))}}, 1);
    jobs.add_delta(j.job, rep.origin, rep.delta_logical_bytes, rep.delta_frame_bytes);
    log.info("checkpoint_committed",
             {field("id", j.id), field("job", j.job), field("snapshot", j.snapshot),
              field("target", rep.target), field("logical_bytes", rep.logical_bytes),
              field("wire_bytes", rep.wire_bytes_sent), field("chunks_sent", rep.chunks_sent),
              field("chunks_skipped", rep.chunks_skipped), field("failovers", rep.failovers),
              field("seconds", rep.seconds), field("kind", std::string(snapshot_kind_name(rep.origin.kind))),
              field("base", rep.origin.base_snapshot), field("delta_logical_bytes", rep.delta_logical_bytes),
              field("delta_frame_bytes", rep.delta_frame_bytes)});
    std::erase(j.pending_targets, rep.target);
  }
  jobs.add_throughput(j.logical_bytes, seconds);
}

void Agent::Impl::job_committed(const QueuedJob& j) {
  jobs.committed(j.job, j.created_ns, j.step, j.snapshot);
  metrics.add(kMetricFinished, {{"state", "committed"}}, 1);
  scheduler.finish(j.id, true);
  if (ticker) ticker->wake();
}

}  // namespace ferry::agent
