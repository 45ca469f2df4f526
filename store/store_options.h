// store_options.h: how a chunk store behaves (append-only, quota, snapshot
// cap, pack size, gc grace, where its recovery notes go), shared by every
// backend and by the namespaces of the local one.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string_view>

#include "store/store_limits.h"

namespace ferry {

// A pack is closed and a new one started once it reaches this size.
inline constexpr std::uint64_t kDefaultPackTargetBytes = 256ull << 20;
// The same for the pack objects of the S3 backend: big enough that requests
// (what object stores bill) stay few, small enough that a pack is one quick
// PUT and a failed one costs little to send again.
inline constexpr std::uint64_t kDefaultObjectPackTargetBytes = 32ull << 20;

struct StoreOptions {
  // Hosts (Actor::kHost) may not remove snapshots, prune or gc.
  bool append_only = false;
  // Per-namespace limit on stored bytes: pack files and snapshot files
  // (manifests) together; 0: none.
  std::uint64_t quota_bytes = 0;
  // Per-namespace limit on snapshots; a commit beyond it is refused.
  std::uint64_t max_snapshots = kMaxSnapshotsPerNamespace;
  std::uint64_t pack_target_bytes = kDefaultPackTargetBytes;
  // The S3 backend's (store/s3_store.h); without a spool, a sync seals a
  // smaller one.
  std::uint64_t object_pack_target_bytes = kDefaultObjectPackTargetBytes;
  // The S3 backend: a directory on the gateway's disk where a sync makes the
  // open pack's chunks durable (store/s3_spool.h; docs/FORMAT.md 9.3), so that
  // packs reach the bucket at the target size however often a receiver
  // commits; one subdirectory per bucket, prefix and namespace. Empty: a
  // sync seals and uploads the open pack, full or not.
  std::filesystem::path object_spool_dir;
  // gc leaves packs written within this many seconds alone, so the chunks of
  // a push still in flight (stored, not yet named by a committed snapshot)
  // are not collected under it.
  std::int64_t gc_grace_seconds = 3600;
  // The S3 backend's lock object (store/s3_lock.h): its expiry, and how
  // long gc waits between condemning packs and reading the snapshots again
  // (at least kS3GcMinSettleMs; docs/FORMAT.md 9.5).
  std::int64_t lock_expiry_ms = kS3LockExpiryMs;
  std::int64_t gc_settle_ms = kS3GcSettleMs;
  // S3 gc rewrites packs whose live records are below this percentage of
  // their bytes (0: only wholly dead packs are deleted; at most 100).
  int gc_repack_live_percent = kS3GcRepackLivePercent;
  // S3 Object Lock: every object ferry writes is retained in COMPLIANCE mode
  // for this many days (the bucket must have been made with Object Lock);
  // 0: no retention. At most kS3MaxObjectLockDays.
  std::int64_t object_lock_days = 0;
  // Recovery and gc notes ("truncated 123 bytes of torn tail at ..."). Null:
  // printed on stderr as "ferry store: ...".
  std::function<void(std::string_view)> log;
  // Told of each directory the store creates (root, namespace, packs/,
  // snapshots/) once the directory's parent has been fsynced, so that tests
  // can check the durability order. Null: nobody is told.
  std::function<void(const std::filesystem::path&)> directory_made_durable;
};

}  // namespace ferry
