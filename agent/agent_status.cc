// agent_status.cc: what the agent tells about itself (see agent.h): the
// RPO ticker (forecast, warning raised and cleared once each in the log,
// gauges), the status object of the control socket, and the control
// handler (status, submit, pause, resume).
#include <algorithm>
#include <cmath>
#include <set>

#include "agent/agent_impl.h"
#include "cuda/gpu_engine.h"

namespace ferry::agent {

// ---- RPO, metrics and status ----

void Agent::Impl::tick() {
  const AgentConfig c = config_copy();
  RpoRefresh in;
  in.now_ns = wall_ns();
  const auto entries = scheduler.entries();
  for (const auto& e : entries) {
    in.backlog_bytes[e.job.job] += e.job.logical_bytes;
    if (!e.running) in.waiting_bytes[e.job.job] += e.job.logical_bytes;
    auto [it, fresh] = in.oldest_pending_ns.emplace(e.job.job, e.job.mtime_ns);
    if (!fresh) it->second = std::min(it->second, e.job.mtime_ns);
  }
  for (const auto& w : c.watch) in.watched_jobs.push_back(w.job);
  in.incomplete = watcher.incomplete();
  in.any_target_up = health.any_up();
  in.rpo_target_s = c.rpo_target_s;
  in.checkpoint_interval_s = c.checkpoint_interval_s;
  in.incomplete_grace_s = c.incomplete_grace_s;
  std::set<std::string> listed;
  for (const JobRpo& j : jobs.refresh_rpo(in)) {
    if (j.change == RpoWarning::Change::kRaised)
      log.warn("rpo_warning_raised", {field("job", j.job), field("reason", j.warning_text)});
    if (j.change == RpoWarning::Change::kCleared) log.info("rpo_warning_cleared", {field("job", j.job)});
    listed.insert(j.job);
    const Labels l{{std::string(kJobLabel), j.job}};
    // The age of the DR copy is time() minus this in PromQL; a job with no
    // commit yet has no such series (its age is unknown, never 0).
    if (j.newest_committed_ns) {
      metrics.set(kMetricLastCommit, l, static_cast<double>(*j.newest_committed_ns) / 1e9);
    } else {
      metrics.remove(kMetricLastCommit, l);
    }
    metrics.set(kMetricRpoForecastSeconds, l, j.forecast.forecast_rpo_seconds);
    metrics.set(kMetricRpoWarning, l, j.warning ? 1 : 0);
    metrics.set(kMetricBacklogBytes, l, static_cast<double>(j.backlog_bytes));
    metrics.set(kMetricIncompleteCheckpoints, l, static_cast<double>(j.stuck_dirs));
  }
  // A job the table dropped (no longer watched, nothing pending) leaves no
  // series behind.
  for (const auto& job : metrics.label_values(kMetricRpoWarning, kJobLabel)) {
    if (!listed.count(job)) metrics.remove_labelled(kJobLabel, job);
  }
  metrics.set(kMetricRpoTarget, {}, c.rpo_target_s);
  // Checkpoints not yet committed, queued or in flight (as status lists
  // them): a job between attempts is never missing from it.
  metrics.set(kMetricQueueDepth, {}, static_cast<double>(entries.size()));
  metrics.set(kMetricPaused, {}, scheduler.all_paused() ? 1 : 0);
  std::set<std::string> targets;
  for (const auto& t : health.states()) {
    targets.insert(t.address);
    metrics.set(kMetricTargetUp, {{"target", t.address}}, t.up ? 1 : 0);
  }
  for (const auto& t : metrics.label_values(kMetricTargetUp, "target")) {
    if (!targets.count(t)) metrics.remove(kMetricTargetUp, {{"target", t}});
  }
  if (auto e = last_engine_selection())
    metrics.set(kMetricEngineInfo, {{"engine", e->engine}, {"reason", e->reason}}, 1);
}

nlohmann::json Agent::Impl::status_json() {
  tick();
  const AgentConfig c = config_copy();
  auto entries = scheduler.entries();
  nlohmann::json out;
  out["ok"] = true;
  out["paused"] = scheduler.all_paused();
  out["engine"] = engine_description;
  const auto selection = last_engine_selection();
  out["engine_reason"] = selection ? selection->reason : "";
  out["uptime_s"] = static_cast<double>(wall_ns() - started_ns) / 1e9;
  // JSON has no infinity or NaN: a forecast that cannot drain is reported
  // as -1, an unknown value (no checkpoint seen yet) as null.
  auto number = [](double v) -> nlohmann::json {
    if (std::isnan(v)) return nullptr;
    return std::isfinite(v) ? v : -1.0;
  };
  nlohmann::json job_list = nlohmann::json::array();
  for (const auto& [job, s] : jobs.jobs()) {
    std::uint64_t queued = 0, in_flight = 0, backlog = 0;
    for (const auto& e : entries) {
      if (e.job.job != job) continue;
      (e.running ? in_flight : queued)++;
      backlog += e.job.logical_bytes;
    }
    nlohmann::json stuck = nullptr;
    if (s.stuck_dirs > 0) {
      stuck = {{"count", s.stuck_dirs},
               {"oldest_dir", s.oldest_stuck.dir.string()},
               {"waiting_for", s.oldest_stuck.waiting_for},
               {"incomplete_for_seconds", s.oldest_stuck.incomplete_for_s}};
    }
    job_list.push_back({{"job", job},
                        {"paused", scheduler.paused(job)},
                        {"newest_committed_step", s.newest_committed_step},
                        {"newest_committed_snapshot", s.newest_committed_snapshot},
                        {"rpo_seconds", number(s.forecast.rpo_seconds)},
                        {"rpo_target_seconds", c.rpo_target_s},
                        {"forecast_rpo_seconds", number(s.forecast.forecast_rpo_seconds)},
                        {"incomplete", stuck},
                        {"warning", s.warning.active()},
                        {"warning_text", s.warning.text()},
                        {"backlog_bytes", backlog},
                        {"queued", queued},
                        {"in_flight", in_flight},
                        {"committed", s.committed},
                        {"skipped", s.skipped},
                        {"failed", s.failed},
                        {"last_error", s.last_error},
                        {"delta",
                         {{"newest_kind", std::string(snapshot_kind_name(s.newest_origin.kind))},
                          {"newest_base", s.newest_origin.base_snapshot},
                          {"newest_chain_depth", s.newest_origin.chain_depth},
                          {"logical_bytes", s.delta_logical_bytes},
                          {"frame_bytes", s.delta_frame_bytes},
                          {"ratio", s.delta_frame_bytes ? static_cast<double>(s.delta_logical_bytes) /
                                                              static_cast<double>(s.delta_frame_bytes)
                                                        : 0.0}}}});
  }
  out["throughput_bytes_per_second"] = jobs.throughput_bytes_per_second();
  out["jobs"] = job_list;
  nlohmann::json targets = nlohmann::json::array();
  for (const auto& t : health.states()) {
    targets.push_back({{"address", t.address},
                       {"up", t.up},
                       {"consecutive_failures", t.consecutive_failures},
                       {"last_error", t.last_error}});
  }
  out["targets"] = targets;
  out["logical_bytes"] = static_cast<std::uint64_t>(metrics.value(kMetricLogicalBytes, {}));
  out["wire_bytes"] = static_cast<std::uint64_t>(metrics.value(kMetricWireBytes, {}));
  nlohmann::json queue = nlohmann::json::array();
  for (const auto& e : entries) {
    queue.push_back({{"id", e.job.id},
                     {"job", e.job.job},
                     {"dir", e.job.dir.string()},
                     {"snapshot", e.job.snapshot},
                     {"state", e.running ? "in_flight" : "queued"}});
  }
  out["queue"] = queue;
  return out;
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

}  // namespace ferry::agent
