// agent.cc: the daemon's life (see agent.h): start-up, recovery from the
// journal, submission of checkpoints, reload and shutdown. Running a job is
// in agent_worker.cc; RPO, metrics and status in agent_status.cc.
#include "agent/agent.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <limits>

#include "agent/agent_impl.h"
#include "codec/packer.h"
#include "cuda/gpu_engine.h"
#include "replication/restore.h"
#include "replication/snapshot_name.h"

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

std::int64_t dir_mtime_ns(const fs::path& dir) {
  std::error_code ec;
  auto t = fs::last_write_time(dir, ec);
  if (ec) return wall_ns();
  auto sys = std::chrono::file_clock::to_sys(t);
  return std::chrono::duration_cast<std::chrono::nanoseconds>(sys.time_since_epoch()).count();
}

}  // namespace

Status probe_target(const std::string& target, const replication::TlsConfig& tls) {
  replication::RemoteOptions r;
  r.address = target;
  r.tls = tls;
  r.connection.connect_timeout_ms = kProbeTimeoutMs;
  r.connection.handshake_timeout_ms = kProbeTimeoutMs;
  r.connection.io_timeout_ms = kProbeTimeoutMs;
  r.software = "ferry-agent probe";
  ASSIGN_OR_RETURN(auto conn, replication::dial_receiver(r));
  conn->close();
  return Status::ok();
}

Status Agent::Impl::probe(const std::string& target) { return probe_target(target, config_copy().tls()); }

// ---- recovery and submission ----

Status Agent::Impl::recover() {
  if (!journal->recovered_notice().empty())
    log.warn("journal_recovered", {field("notice", journal->recovered_notice())});
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
        if (std::find(js.committed_targets.begin(), js.committed_targets.end(), t) ==
            js.committed_targets.end()) {
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
  log.info("journal_opened",
           {field("path", journal->path().string()), field("records", journal->recovered().size()),
            field("jobs", folded.size()), field("requeued", requeued)});
  return Status::ok();
}

Result<std::uint64_t> Agent::Impl::submit(const fs::path& dir, const std::string& job, std::uint64_t step,
                                          std::int64_t mtime_ns) {
  const AgentConfig c = config_copy();
  {
    std::lock_guard lock(jobs_mu);
    if (known_dirs.count(dir.string()))
      return Status::invalid_argument(dir.string() + " was already submitted");
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
    if (!known_dirs.insert(dir.string()).second)
      return Status::invalid_argument(dir.string() + " was already submitted");
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
  wo.completion = CompletionSignals{c.marker_file, c.marker_only};
  wo.rescan_interval_ms = static_cast<int>(c.rescan_interval_s * 1000);
  wo.incomplete_grace_ms = static_cast<int>(
      std::clamp(c.incomplete_grace_s * 1000, 1.0, static_cast<double>(std::numeric_limits<int>::max())));
  wo.on_notice = [this](const std::string& line) { log.info("watcher_notice", {field("detail", line)}); };
  wo.on_incomplete = [this](const IncompleteCheckpoint& ic) {
    {
      std::lock_guard lock(jobs_mu);
      if (known_dirs.count(ic.dir.string())) return false;  // handed over by `ferry submit`
    }
    log.warn("checkpoint_incomplete",
             {field("job", ic.job), field("dir", ic.dir.string()), field("waiting_for", ic.waiting_for),
              field("incomplete_for_s", std::round(ic.incomplete_for_s)),
              field("detail", "not replicated until complete; `ferry submit DIR` takes it as it is")});
    return true;
  };
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
                     if (!id)
                       log.warn("submit_failed",
                                {field("dir", cand.dir.string()), field("error", id.status().to_string())});
                   }));
  std::lock_guard lock(watcher_mu);
  watcher = std::move(next);
  return Status::ok();
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
  // The caps are for the whole agent: each worker's engine gets its share.
  const auto workers = static_cast<std::size_t>(config.max_jobs);
  gpu.device_memory_bytes = (static_cast<std::size_t>(config.gpu_memory_mb) << 20) / workers;
  gpu.pinned_memory_bytes = (static_cast<std::size_t>(config.pinned_memory_mb) << 20) / workers;
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
  auto control = ControlServer::start(
      config.control_socket,
      [self](const std::string& cmd, const nlohmann::json& args) { return self->handle_control(cmd, args); });
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
  for (int i = 0; i < config.max_jobs; ++i)
    a.workers.emplace_back([&a, i] { a.worker(static_cast<std::size_t>(i)); });
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
  a.log.info("agent_stopped",
             {field("cancelled_in_flight", cancelled), field("queued", a.scheduler.queued())});
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
                       old.marker_only != next.marker_only ||
                       old.rescan_interval_s != next.rescan_interval_s ||
                       old.incomplete_grace_s != next.incomplete_grace_s;
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
      old.state_dir != next.state_dir || old.gpu_memory_mb != next.gpu_memory_mb ||
      old.pinned_memory_mb != next.pinned_memory_mb || old.nice != next.nice ||
      old.io_class != next.io_class) {
    a.log.warn("reload_needs_restart",
               {field("detail",
                      "max_jobs, threads, engine, GPU and pinned memory caps, nice, io_class, "
                      "metrics_listen, control_socket and state_dir take effect at the next start")});
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
int Agent::metrics_port() const { return impl_->metrics_server ? impl_->metrics_server->port() : 0; }

std::string checkpoint_snapshot_name(const std::string& job, const fs::path& dir, std::uint64_t step) {
  // One rule with `ferry push --job` (replication/snapshot_name.h).
  return replication::checkpoint_snapshot_name(job, dir.filename().string(), step);
}

Status lower_process_priority(int nice_increment, const std::string& io_class) {
  errno = 0;
  if (nice_increment > 0 && ::nice(nice_increment) == -1 && errno != 0) {
    return Status::from_errno(errno, "nice(" + std::to_string(nice_increment) + ")");
  }
  const int prio = io_class == "idle"
                       ? (kIoprioClassIdle << kIoprioClassShift)
                       : ((kIoprioClassBestEffort << kIoprioClassShift) | kIoprioLowestBestEffortLevel);
  if (::syscall(SYS_ioprio_set, kIoprioWhoProcess, 0, prio) != 0) {
    return Status::from_errno(errno, "ioprio_set(" + io_class + ")");
  }
  return Status::ok();
}

}  // namespace ferry::agent
