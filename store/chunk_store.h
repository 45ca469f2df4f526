// chunk_store.h: the receiver's content-addressed chunk store, as an
// interface. The DR receiver calls it for every wire request (have/need, chunk
// upload, snapshot commit, listing, fetch, deletion); the local filesystem
// backend (store/local_store.h) implements it today, and an object-store
// backend can implement it later without the receiver changing.
//
// Contract shared by every backend:
//   - Namespaces isolate hosts: every call names one, and nothing a call does
//     reads or writes another. The receiver derives the namespace from the
//     client certificate; the store only checks its syntax.
//   - put() verifies the whole frame (header CRC, payload CRC, decode, chunk
//     id recomputed) before storing anything; a put of an id already stored is
//     a no-op. A put is durable only after a later sync() of its namespace
//     returned OK: the receiver acknowledges chunks only then (group commit:
//     many puts, one sync).
//   - have() answers true only for durable chunks.
//   - commit_snapshot() makes every earlier put durable, checks that every
//     chunk the manifest names is present, and then publishes the manifest
//     atomically: a snapshot is visible only complete. The manifest it
//     publishes lists each chunk with the frame stored for that id
//     (docs/FORMAT.md 5, "frame facts"), whatever the host coded.
//   - Deletion (remove_snapshot, prune, gc) is refused with PermissionDenied
//     to a host (Actor::kHost) when the store runs append-only; the operator
//     on the receiver's machine (Actor::kOperator) may always delete.
//   - Every method is thread-safe; many connections may put to one namespace
//     at once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/lent_bytes.h"
#include "base/status.h"
#include "codec/manifest.h"
#include "codec/tree_hash.h"

namespace ferry {

// Namespaces are [A-Za-z0-9._-]{1,64}, not "." or "..": they become directory
// names on the receiver.
inline constexpr std::size_t kMaxNamespaceBytes = 64;
// Snapshot names follow the same rule, up to 128 bytes, and may not hold
// kTempFileMarker (".ferry-tmp-", base/posix_file.h): the store removes files
// so named as interrupted writes.
inline constexpr std::size_t kMaxSnapshotNameBytes = 128;

// InvalidArgument naming the value unless it follows the rules above.
Status validate_namespace(std::string_view ns);
Status validate_snapshot_name(std::string_view name);

// Who asks for a deletion: a host over the network, or the operator running
// `ferry prune` / `ferry scrub` on the receiver's machine.
enum class Actor { kHost, kOperator };

struct SnapshotInfo {
  std::string name;
  std::string host;
  std::string job;
  std::uint64_t step = 0;
  std::int64_t created_ns = 0;    // from the manifest: the host's clock
  std::int64_t committed_ns = 0;  // when the receiver published it, by its own clock
  std::uint64_t files = 0;
  std::uint64_t chunks = 0;
  std::uint64_t logical_bytes = 0;  // sum of file sizes
  std::uint64_t manifest_bytes = 0;
  std::uint64_t frame_bytes = 0;  // Manifest::frame_bytes
  SnapshotOrigin origin;          // source directory, key or delta, base (docs/FORMAT.md 5)
};

struct PutResult {
  Digest id{};
  bool stored = false;  // false when the id was already present
  std::uint64_t frame_bytes = 0;
};

// Retention: a snapshot is kept when it is among the newest keep_last (by
// committed_ns, ties by name) or was committed within keep_within_seconds of
// the time given to prune(). The receiver's commit time, never the host's
// created_ns, decides (store/retention.h). At least one of the two must be
// set, so an empty policy never deletes everything by accident.
//
// Rules apply to each job on its own (SnapshotInfo::job; snapshots without
// a job form one group of their own): keep_last=3 keeps the newest three
// of every job, never three of all jobs together. keep_daily/weekly/monthly
// (restic's rules) keep the newest snapshot of each of the newest N UTC
// days, Monday-based weeks or months that have one. A non-empty `job`
// limits the prune to that job; every other job's snapshots are kept.
struct RetentionPolicy {
  std::uint32_t keep_last = 0;
  std::int64_t keep_within_seconds = 0;
  std::uint32_t keep_daily = 0;
  std::uint32_t keep_weekly = 0;
  std::uint32_t keep_monthly = 0;
  std::string job;
  // True when no rule is set (such a policy is refused: it would remove
  // every snapshot).
  bool empty() const {
    return keep_last == 0 && keep_within_seconds <= 0 && keep_daily == 0 && keep_weekly == 0 &&
           keep_monthly == 0;
  }
};

struct PruneReport {
  std::vector<std::string> kept;
  std::vector<std::string> removed;
};

struct GcReport {
  std::uint64_t chunks_kept = 0;
  std::uint64_t chunks_removed = 0;
  std::uint64_t bytes_removed = 0;  // stored (frame) bytes reclaimed
  std::uint64_t packs_rewritten = 0;
  std::uint64_t packs_deleted = 0;
  // S3: packs gc condemned that a snapshot committed meanwhile named.
  std::uint64_t packs_spared = 0;
};

struct ScrubReport {
  struct BadChunk {
    std::string ns;
    Digest id{};
    std::string where;  // pack file and offset
    std::string error;
    std::vector<std::string> snapshots;  // snapshots that name this chunk
  };
  struct BrokenSnapshot {
    std::string ns;
    std::string name;
    std::string error;  // unreadable manifest, or chunks missing from the store
  };
  std::uint64_t namespaces = 0;
  std::uint64_t chunks_checked = 0;
  std::uint64_t bytes_checked = 0;  // stored bytes read
  std::uint64_t snapshots_checked = 0;
  std::vector<BadChunk> bad_chunks;
  std::vector<BrokenSnapshot> broken_snapshots;
  bool clean() const { return bad_chunks.empty() && broken_snapshots.empty(); }
};

struct StoreUsage {
  std::uint64_t stored_bytes = 0;    // packs and snapshot files (what the quota counts)
  std::uint64_t snapshot_bytes = 0;  // of which snapshot files (manifests)
  std::uint64_t chunks = 0;
  std::uint64_t snapshots = 0;
  std::uint64_t quota_bytes = 0;  // 0: no quota
};

class ChunkStore {
 public:
  virtual ~ChunkStore() = default;

  // For each id, whether it is durable in `ns`.
  virtual Result<std::vector<bool>> have(std::string_view ns, std::span<const Digest> ids) = 0;

  // Verifies `frame` fully (and, when given, that its id is *expected_id),
  // then stores it unless present. Corruption for a bad frame (nothing is
  // stored), ResourceExhausted when the namespace's quota would be exceeded.
  virtual Result<PutResult> put(std::string_view ns, std::span<const std::byte> frame,
                                const Digest* expected_id = nullptr) = 0;

  // Makes every put to `ns` that returned before this call durable.
  virtual Status sync(std::string_view ns) = 0;

  // The stored frame, its header and payload CRCs checked (the caller
  // decodes, which recomputes the id). NotFound when absent.
  virtual Result<std::vector<std::byte>> get(std::string_view ns, const Digest& id) = 0;
  // get into `out`, whose capacity a store may reuse (a restore reads every
  // frame into the same few buffers); the same checks and errors as get.
  virtual Status get_into(std::string_view ns, const Digest& id, std::vector<std::byte>& out) {
    ASSIGN_OR_RETURN(out, get(ns, id));
    return Status::ok();
  }
  // get, with the frame lent in place where the store holds it in memory
  // already (an S3 read window) instead of copied out; by default a copy
  // that `lent` owns.
  virtual Status lend(std::string_view ns, const Digest& id, LentBytes& lent) {
    auto frame = std::make_shared<std::vector<std::byte>>();
    RETURN_IF_ERROR(get_into(ns, id, *frame));
    lent.bytes = *frame;
    lent.keep = std::move(frame);
    return Status::ok();
  }

  // Parses `manifest_bytes` (codec/manifest.h), sets each chunk's codec,
  // base id and frame size from the frame stored for its id
  // (restate_frame_facts, store_checks.h), syncs `ns`, checks every chunk it
  // names is present, then publishes it under `name` atomically, with the
  // receiver's commit time. InvalidArgument (AlreadyExists
  // semantics) if `name` exists with other bytes; OK when it exists with the
  // same bytes (a retried commit). InvalidArgument for a created time more
  // than kMaxCreatedAheadSeconds ahead of the receiver's clock;
  // ResourceExhausted when the snapshot file would take the namespace past
  // its quota or its snapshot count past StoreOptions::max_snapshots.
  virtual Status commit_snapshot(std::string_view ns, std::string_view name,
                                 std::span<const std::byte> manifest_bytes) = 0;

  // Snapshots of `ns`, oldest first (created_ns, then name).
  virtual Result<std::vector<SnapshotInfo>> list(std::string_view ns) = 0;
  // The manifest bytes of one snapshot. NotFound when absent.
  virtual Result<std::vector<std::byte>> manifest(std::string_view ns, std::string_view name) = 0;

  // Unpublishes one snapshot (its chunks stay until gc).
  virtual Status remove_snapshot(std::string_view ns, std::string_view name, Actor actor) = 0;
  // Removes the snapshots the policy does not keep (chunks stay until gc).
  virtual Result<PruneReport> prune(std::string_view ns, const RetentionPolicy& policy, std::int64_t now_ns,
                                    Actor actor) = 0;
  // Removes chunks no snapshot references. Crash-safe: a kill at any point
  // never loses a chunk that a snapshot references.
  virtual Result<GcReport> gc(std::string_view ns, Actor actor) = 0;

  // Re-reads and fully verifies every stored chunk of `ns` (every namespace
  // when `ns` is empty) and every snapshot's manifest and chunk presence.
  // Damage is reported in the ScrubReport; the Status fails only when the
  // scrub itself could not run.
  virtual Result<ScrubReport> scrub(std::string_view ns) = 0;

  virtual Result<StoreUsage> usage(std::string_view ns) = 0;
  // Namespaces that exist in the store, sorted.
  virtual Result<std::vector<std::string>> namespaces() = 0;
};

}  // namespace ferry
