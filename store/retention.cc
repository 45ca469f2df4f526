// retention.cc: see retention.h.
#include "store/retention.h"

#include <algorithm>
#include <vector>

#include "base/clock.h"

namespace ferry {

std::int64_t keep_within_cutoff_ns(std::int64_t now_ns, std::int64_t keep_within_seconds) {
  return add_ns_saturated(now_ns, -seconds_to_ns_saturated(std::max<std::int64_t>(keep_within_seconds, 0)));
}

PruneReport select_retention(std::span<const SnapshotInfo> snapshots, const RetentionPolicy& policy,
                             std::int64_t now_ns) {
  std::vector<const SnapshotInfo*> order;
  order.reserve(snapshots.size());
  for (const SnapshotInfo& s : snapshots) order.push_back(&s);
  std::sort(order.begin(), order.end(), [](const SnapshotInfo* a, const SnapshotInfo* b) {
    return a->committed_ns != b->committed_ns ? a->committed_ns < b->committed_ns : a->name < b->name;
  });
  const bool no_rule = policy.keep_last == 0 && policy.keep_within_seconds <= 0;
  const std::size_t newest_from = order.size() > policy.keep_last ? order.size() - policy.keep_last : 0;
  const std::int64_t cutoff_ns = keep_within_cutoff_ns(now_ns, policy.keep_within_seconds);
  PruneReport report;
  for (std::size_t i = 0; i < order.size(); ++i) {
    const bool keep = no_rule || i >= newest_from ||
                      (policy.keep_within_seconds > 0 && order[i]->committed_ns >= cutoff_ns);
    (keep ? report.kept : report.removed).push_back(order[i]->name);
  }
  return report;
}

}  // namespace ferry
