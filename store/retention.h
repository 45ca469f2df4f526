// retention.h: which snapshots a retention policy (chunk_store.h
// RetentionPolicy) keeps, decided in one place for the store's prune, the
// receiver's dry-run PRUNE and `ferry prune --dry_run`, so that what a dry run
// shows is what a prune does.
//
// Snapshots are ordered and aged by committed_ns, the receiver's own clock
// when it published them, never by the manifest's created_ns: that is the
// host's word, and a host that dated snapshots in the future would otherwise
// make retention remove the real ones.
#pragma once

#include <cstdint>
#include <span>

#include "store/chunk_store.h"

namespace ferry {

// The oldest commit time keep_within_seconds still keeps at `now_ns`;
// saturated, so any duration is safe (a very long one keeps everything).
std::int64_t keep_within_cutoff_ns(std::int64_t now_ns, std::int64_t keep_within_seconds);

// Splits `snapshots` into those `policy` keeps and those it removes, each
// oldest first (committed_ns, then name). Each job (SnapshotInfo::job) is
// judged on its own; with policy.job set, only that job's snapshots can be
// removed. A policy with no rule set keeps everything: callers refuse it
// before asking.
PruneReport select_retention(std::span<const SnapshotInfo> snapshots, const RetentionPolicy& policy,
                             std::int64_t now_ns);

}  // namespace ferry
