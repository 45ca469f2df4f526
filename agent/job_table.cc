// job_table.cc: see job_table.h.
#include "agent/job_table.h"

#include <algorithm>

namespace ferry::agent {

bool JobTable::known_dir(const std::string& dir) const {
  std::lock_guard lock(mu_);
  return known_dirs_.count(dir) > 0;
}

bool JobTable::claim_dir(const std::string& dir) {
  std::lock_guard lock(mu_);
  return known_dirs_.insert(dir).second;
}

void JobTable::release_dir(const std::string& dir) {
  std::lock_guard lock(mu_);
  known_dirs_.erase(dir);
}

void JobTable::recovered_commit(const std::string& job, std::int64_t created_ns, std::uint64_t step,
                                const std::string& snapshot) {
  std::lock_guard lock(mu_);
  JobStats& s = stats_[job];
  if (!s.newest_committed_ns || created_ns > *s.newest_committed_ns) {
    s.newest_committed_ns = created_ns;
    s.newest_committed_step = step;
    s.newest_committed_snapshot = snapshot;
  }
}

void JobTable::recovered_final(const std::string& job, JobState state, bool committed) {
  std::lock_guard lock(mu_);
  JobStats& s = stats_[job];
  if (state == JobState::kSkipped) ++s.skipped;
  if (state == JobState::kFailed) ++s.failed;
  if (committed) ++s.committed;
}

void JobTable::observe_checkpoint(const std::string& job, std::int64_t created_ns) {
  std::lock_guard lock(mu_);
  stats_[job].interval.observe(created_ns);
}

void JobTable::submitted(const std::string& job, std::int64_t created_ns) {
  std::lock_guard lock(mu_);
  JobStats& s = stats_[job];
  s.interval.observe(created_ns);
  s.submitted_here = true;
}

void JobTable::committed(const std::string& job, std::int64_t created_ns, std::uint64_t step,
                         const std::string& snapshot) {
  std::lock_guard lock(mu_);
  JobStats& s = stats_[job];
  ++s.committed;
  s.last_error.clear();
  if (!s.newest_committed_ns || created_ns >= *s.newest_committed_ns) {
    s.newest_committed_ns = created_ns;
    s.newest_committed_step = step;
    s.newest_committed_snapshot = snapshot;
  }
}

void JobTable::skipped(const std::string& job) {
  std::lock_guard lock(mu_);
  ++stats_[job].skipped;
}

void JobTable::failed(const std::string& job, const std::string& detail) {
  std::lock_guard lock(mu_);
  JobStats& s = stats_[job];
  ++s.failed;
  s.last_error = detail;
}

void JobTable::set_last_error(const std::string& job, const std::string& error) {
  std::lock_guard lock(mu_);
  stats_[job].last_error = error;
}

void JobTable::add_delta(const std::string& job, const SnapshotOrigin& origin, std::uint64_t logical_bytes,
                         std::uint64_t frame_bytes) {
  std::lock_guard lock(mu_);
  JobStats& s = stats_[job];
  s.newest_origin = origin;
  s.delta_logical_bytes += logical_bytes;
  s.delta_frame_bytes += frame_bytes;
}

void JobTable::add_throughput(std::uint64_t bytes, double seconds) {
  std::lock_guard lock(mu_);
  throughput_.add(bytes, seconds);
}

double JobTable::throughput_bytes_per_second() const {
  std::lock_guard lock(mu_);
  return throughput_.bytes_per_second();
}

std::vector<JobRpo> JobTable::refresh_rpo(const RpoRefresh& in) {
  auto get = [](const auto& map, const std::string& key) {
    auto it = map.find(key);
    return it == map.end() ? typename std::decay_t<decltype(map)>::mapped_type{} : it->second;
  };
  std::vector<JobRpo> out;
  std::lock_guard lock(mu_);
  for (const auto& job : in.watched_jobs) stats_[job];
  for (const auto& [job, b] : in.backlog_bytes) stats_[job];
  std::erase_if(stats_, [&](const auto& kv) {
    const std::string& job = kv.first;
    if (kv.second.submitted_here || in.backlog_bytes.count(job)) return false;
    if (std::find(in.watched_jobs.begin(), in.watched_jobs.end(), job) != in.watched_jobs.end()) return false;
    return std::none_of(in.incomplete.begin(), in.incomplete.end(),
                        [&](const IncompleteCheckpoint& ic) { return ic.job == job; });
  });
  std::map<std::string, std::int64_t> oldest_incomplete;
  for (auto& [job, s] : stats_) s.stuck_dirs = 0;
  for (const auto& ic : in.incomplete) {
    if (known_dirs_.count(ic.dir.string())) continue;  // handed over by `ferry submit`
    oldest_incomplete.emplace(ic.job, ic.first_seen_ns);
    JobStats& s = stats_[ic.job];
    // Only what is newer than the DR copy is at risk: an old directory
    // left half-written by a crash must not raise the RPO warning forever.
    const bool newer = !s.newest_committed_ns || ic.first_seen_ns > *s.newest_committed_ns;
    if (newer && ic.incomplete_for_s >= in.incomplete_grace_s) {
      if (s.stuck_dirs++ == 0) s.oldest_stuck = ic;
    }
  }
  const double rate = throughput_.bytes_per_second();
  for (auto& [job, s] : stats_) {
    RpoInputs r;
    r.now_ns = in.now_ns;
    r.newest_committed_ns = s.newest_committed_ns;
    if (in.oldest_pending_ns.count(job)) r.oldest_pending_ns = get(in.oldest_pending_ns, job);
    if (oldest_incomplete.count(job)) r.oldest_incomplete_ns = oldest_incomplete[job];
    r.stuck_dirs = s.stuck_dirs;
    if (s.stuck_dirs > 0) {
      r.stuck_detail = s.oldest_stuck.dir.filename().string() + " waits for " + s.oldest_stuck.waiting_for;
    }
    r.backlog_bytes = get(in.backlog_bytes, job);
    r.waiting_bytes = get(in.waiting_bytes, job);
    r.throughput_bytes_per_s = rate;
    r.any_target_up = in.any_target_up;
    r.rpo_target_s = in.rpo_target_s;
    r.checkpoint_interval_s = in.checkpoint_interval_s > 0 ? in.checkpoint_interval_s : s.interval.seconds();
    s.forecast = forecast_rpo(r);
    JobRpo j;
    j.job = job;
    j.change = s.warning.update(s.forecast);
    j.forecast = s.forecast;
    j.warning = s.warning.active();
    j.warning_text = s.warning.text();
    j.backlog_bytes = r.backlog_bytes;
    j.stuck_dirs = s.stuck_dirs;
    j.newest_committed_ns = s.newest_committed_ns;
    out.push_back(std::move(j));
  }
  return out;
}

std::map<std::string, JobStats> JobTable::jobs() const {
  std::lock_guard lock(mu_);
  return stats_;
}

}  // namespace ferry::agent
