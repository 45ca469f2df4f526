// retention.cc: see retention.h.
#include "store/retention.h"

#include <algorithm>
#include <ctime>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "base/clock.h"

namespace ferry {

std::int64_t keep_within_cutoff_ns(std::int64_t now_ns, std::int64_t keep_within_seconds) {
  return add_ns_saturated(now_ns, -seconds_to_ns_saturated(std::max<std::int64_t>(keep_within_seconds, 0)));
}

namespace {

// The UTC day, Monday-based week or month of a commit time, as a number
// that grows with time (1970-01-01 was a Thursday: day + 3 starts weeks on
// Monday).
std::int64_t day_of(std::int64_t ns) {
  const std::int64_t s = ns / kNanosPerSecond - (ns % kNanosPerSecond < 0 ? 1 : 0);
  return s / 86400 - (s % 86400 < 0 ? 1 : 0);
}
std::int64_t week_of(std::int64_t ns) {
  const std::int64_t d = day_of(ns) + 3;
  return d / 7 - (d % 7 < 0 ? 1 : 0);
}
std::int64_t month_of(std::int64_t ns) {
  const std::time_t t = static_cast<std::time_t>(day_of(ns) * 86400);
  std::tm tm{};
  gmtime_r(&t, &tm);
  return static_cast<std::int64_t>(tm.tm_year) * 12 + tm.tm_mon;
}

// Marks the newest snapshot of each of the newest `n` periods (`period_of`)
// that have one. `order` is oldest first.
void keep_per_period(const std::vector<const SnapshotInfo*>& order, std::uint32_t n,
                     std::int64_t (*period_of)(std::int64_t), std::vector<bool>& keep) {
  std::uint32_t periods = 0;
  bool have_last = false;
  std::int64_t last = 0;
  for (std::size_t i = order.size(); i-- > 0 && periods < n;) {
    const std::int64_t p = period_of(order[i]->committed_ns);
    if (have_last && p == last) continue;
    have_last = true;
    last = p;
    keep[i] = true;
    ++periods;
  }
}

// One job's snapshots, oldest first: which the policy keeps.
std::vector<bool> keep_of_job(const std::vector<const SnapshotInfo*>& order, const RetentionPolicy& policy,
                              std::int64_t now_ns) {
  std::vector<bool> keep(order.size(), policy.empty());
  const std::size_t newest_from = order.size() > policy.keep_last ? order.size() - policy.keep_last : 0;
  const std::int64_t cutoff_ns = keep_within_cutoff_ns(now_ns, policy.keep_within_seconds);
  for (std::size_t i = 0; i < order.size(); ++i) {
    if (i >= newest_from || (policy.keep_within_seconds > 0 && order[i]->committed_ns >= cutoff_ns)) {
      keep[i] = true;
    }
  }
  keep_per_period(order, policy.keep_daily, day_of, keep);
  keep_per_period(order, policy.keep_weekly, week_of, keep);
  keep_per_period(order, policy.keep_monthly, month_of, keep);
  return keep;
}

}  // namespace

PruneReport select_retention(std::span<const SnapshotInfo> snapshots, const RetentionPolicy& policy,
                             std::int64_t now_ns) {
  std::vector<const SnapshotInfo*> order;
  order.reserve(snapshots.size());
  for (const SnapshotInfo& s : snapshots) order.push_back(&s);
  std::sort(order.begin(), order.end(), [](const SnapshotInfo* a, const SnapshotInfo* b) {
    return a->committed_ns != b->committed_ns ? a->committed_ns < b->committed_ns : a->name < b->name;
  });
  // Each job is counted on its own.
  std::map<std::string, std::vector<const SnapshotInfo*>> jobs;
  for (const SnapshotInfo* s : order) jobs[s->job].push_back(s);
  std::set<const SnapshotInfo*> removed;
  for (const auto& [job, list] : jobs) {
    if (!policy.job.empty() && job != policy.job) continue;
    const std::vector<bool> keep = keep_of_job(list, policy, now_ns);
    for (std::size_t i = 0; i < list.size(); ++i) {
      if (!keep[i]) removed.insert(list[i]);
    }
  }
  PruneReport report;
  for (const SnapshotInfo* s : order) (removed.count(s) ? report.removed : report.kept).push_back(s->name);
  return report;
}

}  // namespace ferry
