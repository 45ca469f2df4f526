// scheduler.cc: newest-first queue with superseding, pause and backoff (see
// scheduler.h).
#include "agent/scheduler.h"
#include "base/clock.h"

#include <algorithm>
#include <chrono>

namespace ferry::agent {
namespace {

// How long next() sleeps at most before looking at backoff times again.
constexpr int kBackoffPollMs = 100;

}  // namespace

Scheduler::Scheduler(SchedulerOptions options) : options_(options) {}

bool Scheduler::newer(const QueuedJob& a, const QueuedJob& b) {
  if (a.mtime_ns != b.mtime_ns) return a.mtime_ns > b.mtime_ns;
  if (a.step != b.step) return a.step > b.step;
  return a.id > b.id;
}

void Scheduler::add(QueuedJob job) {
  std::lock_guard lock(mu_);
  if (running_.count(job.id)) return;
  for (const auto& q : queue_) {
    if (q.id == job.id) return;
  }
  queue_.push_back(std::move(job));
  cv_.notify_all();
}

bool Scheduler::superseded(const QueuedJob& j) const {
  if (!options_.skip_superseded) return false;
  auto c = newest_committed_mtime_.find(j.job);
  if (c != newest_committed_mtime_.end() && c->second > j.mtime_ns) return true;
  for (const auto& [id, r] : running_) {
    if (r.job == j.job && newer(r, j)) return true;
  }
  for (const auto& q : queue_) {
    if (q.id != j.id && q.job == j.job && newer(q, j)) return true;
  }
  return false;
}

Scheduler::Next Scheduler::next(int wait_ms) {
  Next out;
  std::unique_lock lock(mu_);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(wait_ms);
  while (!stopped_) {
    // Superseded checkpoints leave the queue first (paused jobs included:
    // skipping sends nothing).
    for (auto it = queue_.begin(); it != queue_.end();) {
      if (superseded(*it)) {
        out.skipped.push_back(std::move(*it));
        it = queue_.erase(it);
      } else {
        ++it;
      }
    }
    const std::int64_t now = mono_ns();
    auto best = queue_.end();
    for (auto it = queue_.begin(); it != queue_.end(); ++it) {
      if (all_paused_ || paused_jobs_.count(it->job) || it->not_before_ns > now) continue;
      if (best == queue_.end() || newer(*it, *best)) best = it;
    }
    if (best != queue_.end()) {
      QueuedJob j = std::move(*best);
      queue_.erase(best);
      running_.emplace(j.id, j);
      out.run = std::move(j);
      return out;
    }
    if (!out.skipped.empty()) return out;
    if (std::chrono::steady_clock::now() >= deadline) break;
    auto until =
        std::min(deadline, std::chrono::steady_clock::now() + std::chrono::milliseconds(kBackoffPollMs));
    cv_.wait_until(lock, until);
  }
  return out;
}

void Scheduler::finish(std::uint64_t id, bool committed) {
  std::lock_guard lock(mu_);
  auto it = running_.find(id);
  if (it == running_.end()) return;
  if (committed) {
    auto& newest = newest_committed_mtime_[it->second.job];
    newest = std::max(newest, it->second.mtime_ns);
  }
  running_.erase(it);
  cv_.notify_all();
}

void Scheduler::retry(QueuedJob job, int delay_ms) {
  std::lock_guard lock(mu_);
  running_.erase(job.id);
  job.not_before_ns = mono_ns() + static_cast<std::int64_t>(delay_ms) * 1'000'000;
  queue_.push_back(std::move(job));
  cv_.notify_all();
}

void Scheduler::pause(const std::string& job) {
  std::lock_guard lock(mu_);
  if (job.empty()) {
    all_paused_ = true;
  } else {
    paused_jobs_.insert(job);
  }
}

void Scheduler::resume(const std::string& job) {
  std::lock_guard lock(mu_);
  if (job.empty()) {
    all_paused_ = false;
    paused_jobs_.clear();
  } else {
    paused_jobs_.erase(job);
  }
  cv_.notify_all();
}

bool Scheduler::paused(const std::string& job) const {
  std::lock_guard lock(mu_);
  return all_paused_ || paused_jobs_.count(job) > 0;
}

bool Scheduler::all_paused() const {
  std::lock_guard lock(mu_);
  return all_paused_;
}

void Scheduler::set_skip_superseded(bool skip) {
  std::lock_guard lock(mu_);
  options_.skip_superseded = skip;
}

void Scheduler::stop() {
  std::lock_guard lock(mu_);
  stopped_ = true;
  cv_.notify_all();
}

std::vector<Scheduler::Entry> Scheduler::entries() const {
  std::lock_guard lock(mu_);
  std::vector<Entry> out;
  for (const auto& [id, j] : running_) out.push_back({j, true});
  std::vector<QueuedJob> q = queue_;
  std::sort(q.begin(), q.end(), newer);
  for (auto& j : q) out.push_back({std::move(j), false});
  return out;
}

std::size_t Scheduler::queued() const {
  std::lock_guard lock(mu_);
  return queue_.size();
}

std::size_t Scheduler::running() const {
  std::lock_guard lock(mu_);
  return running_.size();
}

}  // namespace ferry::agent
