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
#include "store/s3_store.h"

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

Status Agent::Impl::probe(const std::string& target) {
  Status st;
  if (is_s3_url(target)) {
    // One LIST page: the bucket answers and the credentials may read it.
    auto store = bucket_store(target, config_copy());
    st = store ? (*store)->namespaces().status() : store.status();
  } else {
    st = probe_target(target, config_copy().tls());
  }
  if (!st) metrics.add(kMetricErrors, {{"kind", "probe"}}, 1);
  return st;
}

// ---- recovery and submission ----

Status Agent::Impl::recover() {
  if (!journal->recovered_notice().empty())
    log.warn("journal_recovered", {field("notice", journal->recovered_notice())});
  const AgentConfig c = config_copy();
  auto folded = fold_journal(journal->recovered());
  std::vector<JournalRecord> live;
  std::size_t requeued = 0;
  for (const auto& [id, js] : folded) recover_job(id, js, c, live, requeued);
  // Compaction keeps the journal to one record per job (plus one per commit
  // target) however long the agent runs between restarts.
  RETURN_IF_ERROR(journal->compact(live));
  log.info("journal_opened",
           {field("path", journal->path().string()), field("records", journal->recovered().size()),
            field("jobs", folded.size()), field("requeued", requeued)});
  return Status::ok();
}

// One job's journaled history: its commits and final state go to the job
// table and to `live` (what compaction keeps); a job still owed to a target
// is queued again (and counted in `requeued`).
void Agent::Impl::recover_job(std::uint64_t id, const JobStatus& js, const AgentConfig& c,
                              std::vector<JournalRecord>& live, std::size_t& requeued) {
  const JournalRecord& r = js.latest;
  (void)jobs.claim_dir(r.path);
  // The checkpoint's own time is the manifest's pinned created time.
  for (const auto& t : js.committed_targets) {
    jobs.recovered_commit(r.job, r.created_ns, r.step, r.snapshot);
    JournalRecord cr = r;
    cr.state = JobState::kCommitted;
    cr.target = t;
    live.push_back(cr);
  }
  jobs.observe_checkpoint(r.job, r.created_ns);
  std::vector<std::string> pending;
  bool done = false;
  if (r.state == JobState::kSkipped || r.state == JobState::kFailed) {
    done = true;
  } else if (c.fan_out) {
    for (const auto& t : c.targets) {
      if (std::find(js.committed_targets.begin(), js.committed_targets.end(), t) ==
          js.committed_targets.end())
        pending.push_back(t);
    }
    done = pending.empty();
  } else {
    done = !js.committed_targets.empty();
  }
  if (done) {
    jobs.recovered_final(r.job, r.state, !js.committed_targets.empty());
    if (js.committed_targets.empty()) live.push_back(r);
    return;
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
  if (!r.delta_target.empty()) {  // the base an earlier attempt chose
    q.delta_target = r.delta_target;
    q.delta.base_dir = r.delta_base_dir;
    q.delta.origin.source_dir = fs::absolute(q.dir).lexically_normal().string();
    q.delta.origin.kind = static_cast<SnapshotKind>(r.delta_kind);
    q.delta.origin.base_snapshot = r.delta_base_snapshot;
    q.delta.origin.chain_depth = r.delta_chain_depth;
    q.delta.reason = "the base journaled by an earlier attempt";
  }
  scheduler.add(std::move(q));
  ++requeued;
}

Result<std::uint64_t> Agent::Impl::submit(const fs::path& dir, const std::string& job, std::uint64_t step,
                                          std::int64_t mtime_ns, bool by_hand) {
  const AgentConfig c = config_copy();
  if (jobs.known_dir(dir.string())) return Status::invalid_argument(dir.string() + " was already submitted");
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
  if (!jobs.claim_dir(dir.string())) return Status::invalid_argument(dir.string() + " was already submitted");
  {
    std::lock_guard lock(submit_mu);
    r.job_id = journal->next_job_id();
    if (Status st = journal->append(r); !st) {
      jobs.release_dir(dir.string());
      return st;
    }
  }
  if (by_hand) {
    jobs.submitted(job, mtime_ns);
  } else {
    jobs.observe_checkpoint(job, mtime_ns);
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
  metrics.add(kMetricSubmitted, {}, 1);
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
    if (jobs.known_dir(ic.dir.string())) return false;  // handed over by `ferry submit`
    log.warn("checkpoint_incomplete",
             {field("job", ic.job), field("dir", ic.dir.string()), field("waiting_for", ic.waiting_for),
              field("incomplete_for_s", std::round(ic.incomplete_for_s)),
              field("detail", "not replicated until complete; `ferry submit DIR` takes it as it is")});
    return true;
  };
  // The old watcher stops first so no candidate is reported twice.
  watcher.reset();
  ASSIGN_OR_RETURN(auto next, Watcher::start(wo, [this](const CheckpointCandidate& cand) {
                     if (jobs.known_dir(cand.dir.string())) return;
                     auto id = submit(cand.dir, cand.job, cand.step, cand.mtime_ns, false);
                     if (!id)
                       log.warn("submit_failed",
                                {field("dir", cand.dir.string()), field("error", id.status().to_string())});
                   }));
  watcher.set(std::move(next));
  return Status::ok();
}
// ---- Agent ----

Agent::Agent(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Agent::~Agent() { shutdown(0); }

// Every target is probed once: refusing to start when none answers turns a
// typo or a missing route into an immediate, named error (systemd's
// Restart=on-failure tries again later for a site that is merely down).
Status Agent::Impl::probe_targets(const AgentConfig& c) {
  std::string probe_errors;
  for (const auto& t : c.targets) {
    Status st = probe(t);
    if (st) continue;
    for (int i = 0; i < c.target_down_after; ++i) (void)health.record(t, st);
    probe_errors += (probe_errors.empty() ? "" : "; ") + t + ": " + st.to_string();
    log.warn("target_unreachable", {field("target", t), field("error", st.to_string())});
  }
  if (!health.any_up()) return Status::unavailable("--targets: no target is reachable: " + probe_errors);
  return Status::ok();
}

// The thread pool and one codec engine per worker.
Status Agent::Impl::make_engines(const AgentConfig& c) {
  pool = std::make_unique<ThreadPool>(static_cast<std::size_t>(c.threads));
  auto choice = parse_engine_choice(c.engine);
  if (!choice) return choice.status().with_context("--engine");
  GpuOptions gpu;
  // The caps are for the whole agent: each worker's engine gets its share.
  const auto workers = static_cast<std::size_t>(c.max_jobs);
  gpu.device_memory_bytes = (static_cast<std::size_t>(c.gpu_memory_mb) << 20) / workers;
  gpu.pinned_memory_bytes = (static_cast<std::size_t>(c.pinned_memory_mb) << 20) / workers;
  gpu.low_priority_streams = true;
  CpuEngineOptions cpu;
  cpu.pool = pool.get();
  for (int i = 0; i < c.max_jobs; ++i) {
    auto engine = choose_engine(*choice, gpu, cpu);
    if (!engine) return engine.status().with_context("--engine=" + c.engine);
    engines.push_back(std::move(engine).value());
  }
  engine_description = engines.front()->description();
  log.info("codec_engine",
           {field("engine", engine_description), field("threads", c.threads),
            field("gpu_memory_mb", c.gpu_memory_mb), field("pinned_memory_mb", c.pinned_memory_mb)});
  return Status::ok();
}

// The prober, the workers and the RPO ticker.
void Agent::Impl::start_threads(const AgentConfig& c) {
  prober = std::make_unique<HealthProber>(
      health, [this](const std::string& t) { return probe(t); },
      [this](const std::string& t, TargetHealth::Change ch, const Status& st) {
        if (ch == TargetHealth::Change::kWentDown) {
          log.warn("target_down", {field("target", t), field("error", st.to_string())});
        } else if (ch == TargetHealth::Change::kCameUp) {
          log.info("target_up", {field("target", t)});
        }
      },
      static_cast<int>(c.probe_interval_s * 1000));
  for (int i = 0; i < c.max_jobs; ++i)
    workers.emplace_back([this, i] { worker(static_cast<std::size_t>(i)); });
  ticker = std::make_unique<Ticker>([this] { tick(); }, kRpoTickMs);
}

Result<std::unique_ptr<Agent>> Agent::start(const AgentConfig& config, Logger& log) {
  RETURN_IF_ERROR(validate(config));
  Status prio = lower_process_priority(config.nice, config.io_class);
  if (!prio) log.warn("priority_not_lowered", {field("error", prio.to_string())});
  auto impl = std::make_unique<Impl>(config, log);
  Impl& a = *impl;
  auto journal = Journal::open(config.state_dir / "journal");
  if (!journal) return journal.status().with_context("--state_dir=" + config.state_dir.string());
  a.journal = std::move(journal).value();
  describe_agent_metrics(a.metrics);
  a.journal->set_fsync_observer(
      [&m = a.metrics](double seconds) { m.observe(kMetricJournalFsyncSeconds, {}, seconds); });
  RETURN_IF_ERROR(a.recover());
  RETURN_IF_ERROR(a.probe_targets(config));
  RETURN_IF_ERROR(a.make_engines(config));

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

  a.start_threads(config);
  RETURN_IF_ERROR(a.start_watcher(config));
  a.tick();  // every series is there for the first scrape
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
  a.watcher.reset();
  a.scheduler.pause("");  // no new job starts
  const auto deadline = Clock::now() + std::chrono::duration<double>(grace_s);
  while (a.scheduler.running() > 0 && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  const std::size_t cancelled = a.scheduler.running();
  a.cancel.store(true);
  a.stopping.store(true);
  a.scheduler.stop();
  for (auto& w : a.workers) w.join();
  a.workers.clear();
  if (a.ticker) a.ticker->stop();
  a.prober.reset();
  a.control.reset();
  a.metrics_server.reset();
  a.log.info("agent_stopped",
             {field("cancelled_in_flight", cancelled), field("queued", a.scheduler.queued())});
}

Status Agent::reload(const AgentConfig& next) {
  Impl& a = *impl_;
  const AgentConfig old = a.config_copy();
  a.config.set(next);
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
      a.config.set(old);
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
  return impl_->submit(abs, name, step_from_name(abs.filename().string()), dir_mtime_ns(abs), true);
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
