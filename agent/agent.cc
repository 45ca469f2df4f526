// agent.cc: the daemon's wiring (see agent.h): start-up and recovery from
// the journal, submission, the worker loop that runs one job, the RPO
// ticker, the control handler, reload and shutdown.
#include "agent/agent.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "agent/control.h"
#include "agent/journal.h"
#include "agent/metrics.h"
#include "agent/rpo.h"
#include "agent/scheduler.h"
#include "agent/target_health.h"
#include "agent/watcher.h"
#include "codec/engine.h"
#include "codec/packer.h"
#include "codec/thread_pool.h"
#include "cuda/gpu_engine.h"
#include "replication/restore.h"
#include "replication/sender.h"

namespace ferry::agent {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// ioprio_set(2) has no glibc wrapper; these are its ABI constants.
constexpr int kIoprioWhoProcess = 1;
constexpr int kIoprioClassShift = 13;
constexpr int kIoprioClassBestEffort = 2;
constexpr int kIoprioClassIdle = 3;
constexpr int kIoprioLowestBestEffortLevel = 7;

std::int64_t wall_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::int64_t dir_mtime_ns(const fs::path& dir) {
  std::error_code ec;
  auto t = fs::last_write_time(dir, ec);
  if (ec) return wall_ns();
  auto sys = std::chrono::file_clock::to_sys(t);
  return std::chrono::duration_cast<std::chrono::nanoseconds>(sys.time_since_epoch()).count();
}

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
};

}  // namespace

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

  Status probe(const std::string& target) {
    replication::RemoteOptions r;
    r.address = target;
    r.tls = config_copy().tls();
    r.connection.connect_timeout_ms = kProbeTimeoutMs;
    r.connection.handshake_timeout_ms = kProbeTimeoutMs;
    r.connection.io_timeout_ms = kProbeTimeoutMs;
    r.software = "ferry-agent probe";
    ASSIGN_OR_RETURN(auto conn, replication::dial_receiver(r));
    conn->close();
    return Status::ok();
  }

  Status recover();
  Status start_watcher(const AgentConfig& c);
  Result<std::uint64_t> submit(const fs::path& dir, const std::string& job, std::uint64_t step,
                               std::int64_t mtime_ns);
  void worker(std::size_t index);
  void run_job(QueuedJob j, std::size_t worker_index);
  void job_done(const QueuedJob& j, JobState state, const std::string& detail);
  void tick();
  nlohmann::json status_json();
};

// ---- recovery and submission ----

Status Agent::Impl::recover() {
  if (!journal->recovered_notice().empty()) log.warn("journal_recovered", {field("notice", journal->recovered_notice())});
  const AgentConfig c = config_copy();
  auto folded = fold_journal(journal->recovered());
  std::vector<JournalRecord> live;
  std::size_t requeued = 0;
  for (const auto& [id, js] : folded) {
    const JournalRecord& r = js.latest;
    known_dirs.insert(r.path);
    JobStats& st = stats[r.job];
    // The checkpoint's own time is the manifest's pinned created time.
    for (const auto& t : js.committed_targets) {
      (void)t;
      if (!st.newest_committed_ns || r.created_ns > *st.newest_committed_ns) {
        st.newest_committed_ns = r.created_ns;
        st.newest_committed_step = r.step;
        st.newest_committed_snapshot = r.snapshot;
      }
      JournalRecord cr = r;
      cr.state = JobState::kCommitted;
      cr.target = t;
      live.push_back(cr);
    }
    st.interval.observe(r.created_ns);
    std::vector<std::string> pending;
    bool done = false;
    if (r.state == JobState::kSkipped || r.state == JobState::kFailed) {
      done = true;
      (r.state == JobState::kSkipped ? st.skipped : st.failed)++;
    } else if (c.fan_out) {
      for (const auto& t : c.targets) {
        if (std::find(js.committed_targets.begin(), js.committed_targets.end(), t) == js.committed_targets.end()) {
          pending.push_back(t);
        }
      }
      done = pending.empty();
    } else {
      done = !js.committed_targets.empty();
    }
    if (done) {
      if (!js.committed_targets.empty()) ++st.committed;
      if (js.committed_targets.empty()) live.push_back(r);
      continue;
    }
    JournalRecord sub = r;
    sub.state = JobState::kSubmitted;
    sub.target.clear();
    live.push_back(sub);
    QueuedJob q;
    q.id = id;
    q.job = r.job;
    q.dir = r.path;
    q.snapshot = r.snapshot;
    q.created_ns = r.created_ns;
    q.mtime_ns = r.created_ns;
    q.step = r.step;
    q.logical_bytes = r.logical_bytes;
    q.pending_targets = pending;
    scheduler.add(std::move(q));
    ++requeued;
  }
  // Compaction keeps the journal to one record per job (plus one per commit
  // target) however long the agent runs between restarts.
  RETURN_IF_ERROR(journal->compact(live));
  log.info("journal_opened", {field("path", journal->path().string()), field("records", journal->recovered().size()),
                              field("jobs", folded.size()), field("requeued", requeued)});
  return Status::ok();
}

Result<std::uint64_t> Agent::Impl::submit(const fs::path& dir, const std::string& job, std::uint64_t step,
                                          std::int64_t mtime_ns) {
  const AgentConfig c = config_copy();
  {
    std::lock_guard lock(jobs_mu);
    if (known_dirs.count(dir.string())) return Status::invalid_argument(dir.string() + " was already submitted");
  }
  std::vector<std::string> notices;
  ASSIGN_OR_RETURN(auto sources, list_pack_sources(dir, &notices));
  std::uint64_t bytes = 0;
  for (const auto& s : sources) {
    std::error_code ec;
    bytes += fs::file_size(s.path, ec);
  }
  JournalRecord r;
  r.state = JobState::kSubmitted;
  r.time_ns = wall_ns();
  r.job = job;
  r.path = dir.string();
  r.snapshot = checkpoint_snapshot_name(job, dir, step);
  r.created_ns = mtime_ns;
  r.step = step;
  r.logical_bytes = bytes;
  {
    std::lock_guard lock(jobs_mu);
    if (!known_dirs.insert(dir.string()).second) return Status::invalid_argument(dir.string() + " was already submitted");
    r.job_id = journal->next_job_id();
    Status st = journal->append(r);
    if (!st) {
      known_dirs.erase(dir.string());
      return st;
    }
    stats[job].interval.observe(mtime_ns);
  }
  QueuedJob q;
  q.id = r.job_id;
  q.job = job;
  q.dir = dir;
  q.snapshot = r.snapshot;
  q.created_ns = mtime_ns;
  q.mtime_ns = mtime_ns;
  q.step = step;
  q.logical_bytes = bytes;
  if (c.fan_out) q.pending_targets = c.targets;
  log.info("checkpoint_submitted", {field("id", r.job_id), field("job", job), field("dir", dir.string()),
                                    field("snapshot", r.snapshot), field("bytes", bytes)});
  metrics.add(kMetricJobs, {{"state", "submitted"}}, 1);
  scheduler.add(std::move(q));
  return r.job_id;
}

Status Agent::Impl::start_watcher(const AgentConfig& c) {
  WatcherOptions wo;
  for (const auto& w : c.watch) wo.roots.push_back(WatchRoot{w.path, w.job});
  wo.marker_file = c.marker_file;
  wo.rescan_interval_ms = static_cast<int>(c.rescan_interval_s * 1000);
  wo.on_notice = [this](const std::string& line) { log.info("watcher_notice", {field("detail", line)}); };
  std::unique_ptr<Watcher> next;
  {
    // The old watcher stops first so no candidate is reported twice.
    std::lock_guard lock(watcher_mu);
    watcher.reset();
  }
  ASSIGN_OR_RETURN(next, Watcher::start(wo, [this](const CheckpointCandidate& cand) {
    {
      std::lock_guard lock(jobs_mu);
      if (known_dirs.count(cand.dir.string())) return;
    }
    auto id = submit(cand.dir, cand.job, cand.step, cand.mtime_ns);
    if (!id) log.warn("submit_failed", {field("dir", cand.dir.string()), field("error", id.status().to_string())});
  }));
  std::lock_guard lock(watcher_mu);
  watcher = std::move(next);
  return Status::ok();
}

// ---- workers ----

void Agent::Impl::worker(std::size_t index) {
  while (!stopping.load()) {
    Scheduler::Next n = scheduler.next(kRpoTickMs);
    for (const auto& s : n.skipped) job_done(s, JobState::kSkipped, "superseded by a newer checkpoint of " + s.job);
    if (n.run) run_job(std::move(*n.run), index);
  }
}

void Agent::Impl::job_done(const QueuedJob& j, JobState state, const std::string& detail) {
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
    log.warn("checkpoint_retry", {field("id", j.id), field("job", j.job), field("snapshot", j.snapshot),
                                  field("attempt", j.attempts), field("delay_ms", delay),
                                  field("error", why.to_string())});
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
  JournalRecord started;
  started.job_id = j.id;
  started.state = JobState::kStarted;
  started.time_ns = wall_ns();
  started.job = j.job;
  started.path = j.dir.string();
  started.snapshot = j.snapshot;
  started.created_ns = j.created_ns;
  started.step = j.step;
  started.logical_bytes = j.logical_bytes;
  if (Status st = journal->append(started); !st) return retry_later(st, "journal");

  auto sources = list_pack_sources(j.dir);
  if (!sources) {
    if (sources.status().code() == Code::kNotFound) return job_done(j, JobState::kFailed, sources.status().to_string());
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
      JournalRecord r = started;
      r.state = JobState::kCommitted;
      r.time_ns = wall_ns();
      r.target = rep.target;
      if (Status st = journal->append(r); !st) log.error("journal_append_failed", {field("error", st.to_string())});
      metrics.add(kMetricLogicalBytes, {}, static_cast<double>(rep.logical_bytes));
      metrics.add(kMetricWireBytes, {}, static_cast<double>(rep.wire_bytes_sent));
      log.info("checkpoint_committed",
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
                                           " down target(s) of the fan-out"), "target_down");
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

// ---- RPO, metrics and status ----

void Agent::Impl::tick() {
  const AgentConfig c = config_copy();
  const std::int64_t now = wall_ns();
  auto entries = scheduler.entries();
  std::map<std::string, std::uint64_t> backlog;
  std::map<std::string, std::int64_t> oldest_pending;
  for (const auto& e : entries) {
    backlog[e.job.job] += e.job.logical_bytes;
    auto [it, fresh] = oldest_pending.emplace(e.job.job, e.job.mtime_ns);
    if (!fresh) it->second = std::min(it->second, e.job.mtime_ns);
  }
  const bool any_up = health.any_up();
  std::vector<std::pair<std::string, std::string>> raised, cleared;
  {
    std::lock_guard lock(jobs_mu);
    for (const auto& w : c.watch) stats[w.job];
    for (const auto& [job, b] : backlog) stats[job];
    const double rate = throughput.bytes_per_second();
    for (auto& [job, s] : stats) {
      RpoInputs in;
      in.now_ns = now;
      in.newest_committed_ns = s.newest_committed_ns;
      if (oldest_pending.count(job)) in.oldest_pending_ns = oldest_pending[job];
      in.backlog_bytes = backlog.count(job) ? backlog[job] : 0;
      in.throughput_bytes_per_s = rate;
      in.any_target_up = any_up;
      in.rpo_target_s = c.rpo_target_s;
      in.checkpoint_interval_s = c.checkpoint_interval_s > 0 ? c.checkpoint_interval_s : s.interval.seconds();
      s.forecast = forecast_rpo(in);
      auto change = s.warning.update(s.forecast);
      if (change == RpoWarning::Change::kRaised) raised.emplace_back(job, s.warning.text());
      if (change == RpoWarning::Change::kCleared) cleared.emplace_back(job, "");
      const Labels l{{"job", job}};
      metrics.set(kMetricRpoSeconds, l, s.forecast.rpo_seconds);
      metrics.set(kMetricRpoForecastSeconds, l, s.forecast.forecast_rpo_seconds);
      metrics.set(kMetricRpoWarning, l, s.warning.active() ? 1 : 0);
      metrics.set(kMetricBacklogBytes, l, static_cast<double>(in.backlog_bytes));
    }
    metrics.set(kMetricThroughput, {}, rate);
  }
  for (const auto& [job, text] : raised) log.warn("rpo_warning_raised", {field("job", job), field("reason", text)});
  for (const auto& [job, text] : cleared) log.info("rpo_warning_cleared", {field("job", job)});
  metrics.set(kMetricQueueDepth, {}, static_cast<double>(scheduler.queued()));
  metrics.set(kMetricPaused, {}, scheduler.all_paused() ? 1 : 0);
  for (const auto& t : health.states()) metrics.set(kMetricTargetUp, {{"target", t.address}}, t.up ? 1 : 0);
  const double logical = metrics.value(kMetricLogicalBytes, {});
  const double wire = metrics.value(kMetricWireBytes, {});
  if (wire > 0) metrics.set(kMetricCompressionRatio, {}, logical / wire);
}

nlohmann::json Agent::Impl::status_json() {
  tick();
  const AgentConfig c = config_copy();
  auto entries = scheduler.entries();
  nlohmann::json out;
  out["ok"] = true;
  out["paused"] = scheduler.all_paused();
  out["engine"] = engine_description;
  out["uptime_s"] = static_cast<double>(wall_ns() - started_ns) / 1e9;
  // JSON has no infinity: a forecast that cannot drain is reported as -1.
  auto finite = [](double v) { return std::isfinite(v) ? v : -1.0; };
  nlohmann::json jobs = nlohmann::json::array();
  {
    std::lock_guard lock(jobs_mu);
    for (const auto& [job, s] : stats) {
      std::uint64_t queued = 0, in_flight = 0, backlog = 0;
      for (const auto& e : entries) {
        if (e.job.job != job) continue;
        (e.running ? in_flight : queued)++;
        backlog += e.job.logical_bytes;
      }
      jobs.push_back({{"job", job},
                      {"paused", scheduler.paused(job)},
                      {"newest_committed_step", s.newest_committed_step},
                      {"newest_committed_snapshot", s.newest_committed_snapshot},
                      {"rpo_seconds", s.forecast.rpo_seconds},
                      {"rpo_target_seconds", c.rpo_target_s},
                      {"forecast_rpo_seconds", finite(s.forecast.forecast_rpo_seconds)},
                      {"warning", s.warning.active()},
                      {"warning_text", s.warning.text()},
                      {"backlog_bytes", backlog},
                      {"queued", queued},
                      {"in_flight", in_flight},
                      {"committed", s.committed},
                      {"skipped", s.skipped},
                      {"failed", s.failed},
                      {"last_error", s.last_error}});
    }
    out["throughput_bytes_per_second"] = throughput.bytes_per_second();
  }
  out["jobs"] = jobs;
  nlohmann::json targets = nlohmann::json::array();
  for (const auto& t : health.states()) {
    targets.push_back({{"address", t.address}, {"up", t.up}, {"consecutive_failures", t.consecutive_failures},
                       {"last_error", t.last_error}});
  }
  out["targets"] = targets;
  out["logical_bytes"] = static_cast<std::uint64_t>(metrics.value(kMetricLogicalBytes, {}));
  out["wire_bytes"] = static_cast<std::uint64_t>(metrics.value(kMetricWireBytes, {}));
  nlohmann::json queue = nlohmann::json::array();
  for (const auto& e : entries) {
    queue.push_back({{"id", e.job.id}, {"job", e.job.job}, {"dir", e.job.dir.string()},
                     {"snapshot", e.job.snapshot}, {"state", e.running ? "in_flight" : "queued"}});
  }
  out["queue"] = queue;
  return out;
}

// ---- Agent ----

Agent::Agent(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Agent::~Agent() { shutdown(0); }

Result<std::unique_ptr<Agent>> Agent::start(const AgentConfig& config, Logger& log) {
  RETURN_IF_ERROR(validate(config));
  Status prio = lower_process_priority(config.nice, config.io_class);
  if (!prio) log.warn("priority_not_lowered", {field("error", prio.to_string())});
  auto impl = std::make_unique<Impl>(config, log);
  Impl& a = *impl;
  auto journal = Journal::open(config.state_dir / "journal");
  if (!journal) return journal.status().with_context("--state_dir=" + config.state_dir.string());
  a.journal = std::move(journal).value();
  a.metrics.describe_agent_metrics();
  RETURN_IF_ERROR(a.recover());

  // Every target is probed once: refusing to start when none answers turns
  // a typo or a missing route into an immediate, named error (systemd's
  // Restart=on-failure tries again later for a site that is merely down).
  std::string probe_errors;
  for (const auto& t : config.targets) {
    Status st = a.probe(t);
    if (st) continue;
    for (int i = 0; i < config.target_down_after; ++i) (void)a.health.record(t, st);
    probe_errors += (probe_errors.empty() ? "" : "; ") + t + ": " + st.to_string();
    log.warn("target_unreachable", {field("target", t), field("error", st.to_string())});
  }
  if (!a.health.any_up()) {
    return Status::unavailable("--targets: no target is reachable: " + probe_errors);
  }

  a.pool = std::make_unique<ThreadPool>(static_cast<std::size_t>(config.threads));
  auto choice = parse_engine_choice(config.engine);
  if (!choice) return choice.status().with_context("--engine");
  GpuOptions gpu;
  gpu.device_memory_bytes = static_cast<std::size_t>(config.gpu_memory_mb) << 20;
  gpu.pinned_memory_bytes = static_cast<std::size_t>(config.pinned_memory_mb) << 20;
  gpu.low_priority_streams = true;
  CpuEngineOptions cpu;
  cpu.pool = a.pool.get();
  for (int i = 0; i < config.max_jobs; ++i) {
    auto engine = choose_engine(*choice, gpu, cpu);
    if (!engine) return engine.status().with_context("--engine=" + config.engine);
    a.engines.push_back(std::move(engine).value());
  }
  a.engine_description = a.engines.front()->description();
  log.info("codec_engine", {field("engine", a.engine_description), field("threads", config.threads),
                            field("gpu_memory_mb", config.gpu_memory_mb),
                            field("pinned_memory_mb", config.pinned_memory_mb)});

  if (!config.metrics_listen.empty()) {
    auto server = MetricsServer::start(config.metrics_listen, a.metrics);
    if (!server) return server.status().with_context("--metrics_listen=" + config.metrics_listen);
    a.metrics_server = std::move(server).value();
  }
  std::unique_ptr<Agent> agent(new Agent(std::move(impl)));
  Agent* self = agent.get();
  std::error_code ec;
  fs::create_directories(config.control_socket.parent_path(), ec);
  auto control = ControlServer::start(config.control_socket, [self](const std::string& cmd, const nlohmann::json& args) {
    return self->handle_control(cmd, args);
  });
  if (!control) return control.status().with_context("--control_socket=" + config.control_socket.string());
  a.control = std::move(control).value();

  a.prober = std::make_unique<HealthProber>(
      a.health, [&a](const std::string& t) { return a.probe(t); },
      [&a](const std::string& t, TargetHealth::Change ch, const Status& st) {
        if (ch == TargetHealth::Change::kWentDown) {
          a.log.warn("target_down", {field("target", t), field("error", st.to_string())});
        } else if (ch == TargetHealth::Change::kCameUp) {
          a.log.info("target_up", {field("target", t)});
        }
      },
      static_cast<int>(config.probe_interval_s * 1000));
  for (int i = 0; i < config.max_jobs; ++i) a.workers.emplace_back([&a, i] { a.worker(static_cast<std::size_t>(i)); });
  a.ticker = std::thread([&a] {
    std::unique_lock lock(a.tick_mu);
    while (!a.stopping.load()) {
      lock.unlock();
      a.tick();
      lock.lock();
      // No predicate: a commit's notify_all wakes it for an early tick.
      if (!a.stopping.load()) a.tick_cv.wait_for(lock, std::chrono::milliseconds(kRpoTickMs));
    }
  });
  RETURN_IF_ERROR(a.start_watcher(config));
  log.info("agent_started", {field("targets", std::to_string(config.targets.size())),
                             field("roots", std::to_string(config.watch.size())),
                             field("control_socket", config.control_socket.string()),
                             field("metrics_port", self->metrics_port())});
  return agent;
}

void Agent::shutdown(double grace_s) {
  Impl& a = *impl_;
  if (a.shut_down) return;
  a.shut_down = true;
  {
    std::lock_guard lock(a.watcher_mu);
    a.watcher.reset();
  }
  a.scheduler.pause("");  // no new job starts
  const auto deadline = Clock::now() + std::chrono::duration<double>(grace_s);
  while (a.scheduler.running() > 0 && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  const std::size_t cancelled = a.scheduler.running();
  a.cancel.store(true);
  a.stopping.store(true);
  a.scheduler.stop();
  a.tick_cv.notify_all();
  for (auto& w : a.workers) w.join();
  a.workers.clear();
  if (a.ticker.joinable()) a.ticker.join();
  a.prober.reset();
  a.control.reset();
  a.metrics_server.reset();
  a.log.info("agent_stopped", {field("cancelled_in_flight", cancelled), field("queued", a.scheduler.queued())});
}

Status Agent::reload(const AgentConfig& next) {
  Impl& a = *impl_;
  const AgentConfig old = a.config_copy();
  {
    std::lock_guard lock(a.config_mu);
    a.config = next;
  }
  a.health.reconfigure(next.targets, next.target_down_after, next.target_up_after);
  a.scheduler.set_skip_superseded(next.skip_superseded);
  if (a.prober) a.prober->set_interval_ms(static_cast<int>(next.probe_interval_s * 1000));
  bool roots_changed = old.watch.size() != next.watch.size() || old.marker_file != next.marker_file ||
                       old.rescan_interval_s != next.rescan_interval_s;
  for (std::size_t i = 0; !roots_changed && i < old.watch.size(); ++i) {
    roots_changed = old.watch[i].path != next.watch[i].path || old.watch[i].job != next.watch[i].job;
  }
  if (roots_changed) {
    Status st = a.start_watcher(next);
    if (!st) {
      std::lock_guard lock(a.config_mu);
      a.config = old;
      a.health.reconfigure(old.targets, old.target_down_after, old.target_up_after);
      (void)a.start_watcher(old);
      return st.with_context("reload");
    }
  }
  if (old.max_jobs != next.max_jobs || old.threads != next.threads || old.engine != next.engine ||
      old.metrics_listen != next.metrics_listen || old.control_socket != next.control_socket ||
      old.state_dir != next.state_dir) {
    a.log.warn("reload_needs_restart",
               {field("detail", "max_jobs, threads, engine, metrics_listen, control_socket and state_dir "
                                "take effect at the next start")});
  }
  a.log.info("config_reloaded", {field("targets", next.targets.size()), field("roots", next.watch.size())});
  return Status::ok();
}

nlohmann::json Agent::status_json() { return impl_->status_json(); }

Result<std::uint64_t> Agent::submit(const fs::path& dir, const std::string& job) {
  std::error_code ec;
  fs::path abs = fs::absolute(dir, ec).lexically_normal();
  if (!abs.has_filename()) abs = abs.parent_path();
  if (!fs::is_directory(abs, ec)) return Status::invalid_argument(abs.string() + ": no such directory");
  std::string name = job;
  if (name.empty()) {
    for (const auto& w : impl_->config_copy().watch) {
      if (abs.parent_path() == w.path) name = w.job;
    }
    if (name.empty()) name = abs.parent_path().filename().string();
  }
  return impl_->submit(abs, name, step_from_name(abs.filename().string()), dir_mtime_ns(abs));
}

nlohmann::json Agent::handle_control(const std::string& command, const nlohmann::json& args) {
  auto arg = [&](const char* key) -> std::string {
    if (!args.is_object() || !args.contains(key) || !args[key].is_string()) return "";
    return args[key].get<std::string>();
  };
  if (command == "status") return status_json();
  if (command == "submit") {
    if (arg("dir").empty()) return {{"ok", false}, {"error", "submit needs args.dir"}};
    auto id = submit(arg("dir"), arg("job"));
    if (!id) return {{"ok", false}, {"error", id.status().to_string()}};
    return {{"ok", true}, {"id", *id}};
  }
  if (command == "pause" || command == "resume") {
    const std::string job = arg("job");
    if (command == "pause") {
      impl_->scheduler.pause(job);
    } else {
      impl_->scheduler.resume(job);
    }
    impl_->log.info(command == "pause" ? "paused" : "resumed", {field("job", job.empty() ? "*" : job)});
    return {{"ok", true}};
  }
  return {{"ok", false}, {"error", "unknown command '" + command + "' (status, submit, pause, resume)"}};
}

int Agent::metrics_port() const { return impl_->metrics_server ? impl_->metrics_server->port() : 0; }

std::string checkpoint_snapshot_name(const std::string& job, const fs::path& dir, std::uint64_t step) {
  const std::string dirname = dir.filename().string();
  const bool digits = std::any_of(dirname.begin(), dirname.end(), [](char c) { return c >= '0' && c <= '9'; });
  std::string name = job + "-" + (digits ? std::to_string(step) : dirname);
  for (char& c : name) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '_' || c == '-';
    if (!ok) c = '_';
  }
  if (name.size() > replication::kMaxSnapshotNameBytes) name.resize(replication::kMaxSnapshotNameBytes);
  return name;
}

Status lower_process_priority(int nice_increment, const std::string& io_class) {
  errno = 0;
  if (nice_increment > 0 && ::nice(nice_increment) == -1 && errno != 0) {
    return Status::from_errno(errno, "nice(" + std::to_string(nice_increment) + ")");
  }
  const int prio = io_class == "idle" ? (kIoprioClassIdle << kIoprioClassShift)
                                      : ((kIoprioClassBestEffort << kIoprioClassShift) | kIoprioLowestBestEffortLevel);
  if (::syscall(SYS_ioprio_set, kIoprioWhoProcess, 0, prio) != 0) {
    return Status::from_errno(errno, "ioprio_set(" + io_class + ")");
  }
  return Status::ok();
}

}  // namespace ferry::agent
