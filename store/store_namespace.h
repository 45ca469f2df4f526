// store_namespace.h: one namespace of the local store (a host's directory
// root/<ns>/ with packs/, snapshots/ and index; docs/FORMAT.md section 7):
// crash recovery when it opens, appends, group-commit syncs, reads, snapshot
// files with their commit records (snapshot_file.h), quota and snapshot
// limits, garbage collection (store_gc.cc) and scrub (store_scrub.cc).
// store/local_store.cc owns one per namespace and checks names and
// permissions before calling it.
//
// Locking: `mu_` guards the in-memory index, pack bookkeeping and snapshot
// accounting and is held only for map updates and the append itself (frames
// are verified before). `commit_mu_` orders snapshot publication and removal
// and is taken before `mu_`.
// `maintenance_` is shared by every operation and held exclusively by gc,
// which moves records between packs.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "base/posix_file.h"
#include "base/status.h"
#include "codec/frame.h"
#include "codec/manifest.h"
#include "codec/packer.h"
#include "codec/tree_hash.h"
#include "store/chunk_store.h"
#include "store/store_index.h"
#include "store/store_options.h"

namespace ferry {

struct DigestHash {
  std::size_t operator()(const Digest& d) const noexcept;
};

class StoreNamespace {
 public:
  // Opens root/<name>, creating it (and packs/, snapshots/) durably when
  // absent, and recovers it: loads the index, scans packs past what it covers
  // (all of them when it is missing, damaged or stale), truncates a torn
  // tail, removes stray temporary files, counts the snapshot files, and
  // rewrites the index when anything changed.
  static Result<std::unique_ptr<StoreNamespace>> open(const std::filesystem::path& dir, std::string name,
                                                      const StoreOptions& options);
  ~StoreNamespace();  // syncs and writes the index, so the next open scans nothing
  StoreNamespace(const StoreNamespace&) = delete;
  StoreNamespace& operator=(const StoreNamespace&) = delete;

  const std::string& name() const { return name_; }

  // True when the chunk is in the index, durable or not yet synced.
  bool holds(const Digest& id);
  Result<std::vector<bool>> have(std::span<const Digest> ids);
  // `frame` must already be fully verified: parse_frame_header(frame)
  // returned `verified` and the decoded bytes hash to its chunk id. The
  // record's CRC is derived from the frame's CRCs, not computed again.
  Result<PutResult> put(std::span<const std::byte> frame, const FrameHeader& verified);
  Status sync();
  Result<std::vector<std::byte>> get(const Digest& id);
  // get() for a caller that holds maintenance_ (shared or unique): gc and
  // scrub, which rebuild delta frames from their bases.
  Result<std::vector<std::byte>> get_held(const Digest& id);
  // The facts of the stored frames of `ids` (store_checks.h), each read
  // from its record's first bytes (one pread per chunk, one open per pack).
  Result<std::vector<std::optional<FrameFacts>>> frame_facts(std::span<const Digest> ids);
  // frame_facts() for a caller that holds maintenance_ (gc). With
  // `skip_damaged`, a record that cannot be read or parsed gives nullopt
  // (scrub reports it) instead of failing the call.
  Result<std::vector<std::optional<FrameFacts>>> frame_facts_held(std::span<const Digest> ids,
                                                                  bool skip_damaged = false);
  // Publishes `bytes` (parsed as `m`) with a commit record of the
  // receiver's clock; refuses a created time too far ahead of that clock, and
  // a snapshot beyond the quota or the snapshot limit.
  Status commit(std::string_view snapshot, std::span<const std::byte> bytes, const Manifest& m);
  Result<std::vector<SnapshotInfo>> list();
  // The manifest bytes of a snapshot (without its commit record).
  Result<std::vector<std::byte>> read_manifest(std::string_view snapshot);
  Status remove(std::span<const std::string> snapshots);
  Result<GcReport> gc();              // store_gc.cc
  Status scrub(ScrubReport& report);  // store_scrub.cc
  StoreUsage usage();

 private:
  struct Location {
    std::uint32_t pack = 0;
    std::uint64_t offset = 0;
    std::uint32_t frame_bytes = 0;
    bool durable = false;
  };
  struct Pack {
    std::uint64_t size = 0;          // bytes written
    std::uint64_t synced_bytes = 0;  // prefix known durable
  };
  struct StoredSnapshot {
    std::int64_t committed_ns = 0;  // the commit record's, or the file's mtime when it has none
    std::vector<std::byte> manifest;
  };
  struct GcSweep;     // store_gc.cc: live records per pack after the sweep
  struct ScrubTally;  // store_scrub.cc: bad chunks found so far

  StoreNamespace(const std::filesystem::path& dir, std::string name, const StoreOptions& options);
  Status recover();
  Status create_directories();
  // Removes temporaries of interrupted writes; the pack numbers, ascending.
  Result<std::vector<std::uint32_t>> clear_temporaries_and_list_packs();
  // The index file when usable; `changed` when it must be rewritten.
  StoreIndex load_index(bool packs_exist, bool& changed);
  Status count_snapshots();
  Result<bool> recover_pack(std::uint32_t number, std::uint64_t covered, bool& changed);
  void log(const std::string& message) const;

  std::filesystem::path pack_path(std::uint32_t number) const;
  std::filesystem::path snapshot_path(std::string_view snapshot) const;
  // REQUIRES mu_: a pack with room for `record` bytes is open for appends.
  Status ensure_current_locked(std::uint64_t record, bool& index_due);
  // REQUIRES maintenance_ (shared or exclusive), not mu_.
  Status sync_held();
  // Writes the index of every durable entry (takes mu_ briefly).
  Status write_index();
  // Reads and parses every snapshot manifest; fails on any unreadable one.
  Result<std::vector<std::pair<std::string, Manifest>>> load_manifests();
  std::vector<std::string> snapshot_names() const;
  Result<StoredSnapshot> read_snapshot(std::string_view snapshot);

  // REQUIRES mu_: ResourceExhausted unless `bytes` more fit in the quota.
  Status check_quota_locked(std::string_view what, std::uint64_t bytes) const;
  // NotFound unless every chunk `m` names is durable.
  Status check_chunks_durable(std::string_view snapshot, const Manifest& m);
  // REQUIRES commit_mu_: counts a snapshot file of `file_bytes` against the
  // limits (refusing it when over), or releases what an aborted commit took.
  Status reserve_snapshot(std::string_view snapshot, std::uint64_t file_bytes);
  void release_snapshot(std::uint64_t file_bytes);

  // gc (store_gc.cc). REQUIRES maintenance_ exclusively and mu_.
  Result<std::unordered_set<Digest, DigestHash>> referenced_chunks();
  Result<std::vector<std::uint32_t>> packs_past_grace_locked() const;
  void sweep_unreferenced_locked(const std::unordered_set<Digest, DigestHash>& referenced,
                                 const std::vector<std::uint32_t>& eligible, GcSweep& sweep,
                                 GcReport& report);
  Status collect_pack_locked(std::uint32_t number, GcSweep& sweep, GcReport& report);
  Status unlink_pack_locked(std::uint32_t number);
  // Copies `records` (offset, id) into a new pack that replaces `number`.
  // False when a live record could not be read (the pack stays as it is).
  Result<bool> rewrite_pack_locked(std::uint32_t number,
                                   std::vector<std::pair<std::uint64_t, Digest>>& records,
                                   std::vector<std::byte>& frame);

  // scrub (store_scrub.cc). REQUIRES maintenance_ shared.
  Status scrub_pack(std::uint32_t number, std::uint64_t size, const std::map<std::uint64_t, Digest>& in_index,
                    ScrubTally& tally);
  void scrub_snapshots(ScrubTally& tally);
  // Drops bad chunks from the index (so they are accepted again).
  void forget_bad_chunks(const ScrubTally& tally);

  const std::filesystem::path dir_;
  const std::filesystem::path packs_dir_;
  const std::filesystem::path snapshots_dir_;
  const std::string name_;
  const StoreOptions options_;

  std::shared_mutex maintenance_;
  std::mutex commit_mu_;       // snapshot publication and removal
  std::mutex index_write_mu_;  // one index writer at a time

  std::mutex mu_;
  std::unordered_map<Digest, Location, DigestHash> index_;
  std::map<std::uint32_t, Pack> packs_;
  std::uint32_t next_pack_ = 1;
  bool has_current_ = false;
  std::uint32_t current_ = 0;
  std::shared_ptr<UniqueFd> current_fd_;
  std::vector<Digest> pending_;       // put since the last sync
  bool packs_dir_dirty_ = false;      // a pack was created since the last sync
  std::uint64_t stored_bytes_ = 0;    // of the packs
  std::uint64_t snapshot_bytes_ = 0;  // of the snapshot files
  std::uint64_t snapshot_count_ = 0;
};

}  // namespace ferry
