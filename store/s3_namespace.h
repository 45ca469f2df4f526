// s3_namespace.h: one namespace of the S3 backend (keys ROOT = PREFIX/<ns>/;
// docs/FORMAT.md section 9): the in-memory index of its durable chunks (from
// the bucket's index objects), the open pack that puts fill, the uploads in
// flight, snapshot objects, gc and scrub. store/s3_store.cc owns one per
// namespace and checks names, frames and permissions before calling it.
//
// gc and commits coordinate through the namespace's lock object
// (s3_lock.h): a commit never publishes a snapshot that relies on a pack a
// gc has condemned, and gc reads the snapshots again before it deletes.
//
// With a spool (StoreOptions::object_spool_dir, s3_spool.h), a sync makes
// the open pack's chunks durable on the gateway's disk instead of sealing
// it; packs go to the bucket when full, at a commit, at gc, after
// kS3SpoolMaxAgeMs, and when the namespace closes.
//
// Locking: `mu_` guards the index, the open pack and the uploads in flight;
// it is never held across a request to the bucket. `cv_` tells syncs that
// an upload finished. `commit_mu_` orders snapshot publication and removal.
// `spool_mu_` makes one sync at a time write the spool.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "base/lent_bytes.h"
#include "base/status.h"
#include "codec/frame.h"
#include "codec/manifest.h"
#include "codec/packer.h"
#include "store/chunk_store.h"
#include "store/pack_file.h"  // kPackHeaderBytes
#include "store/s3_client.h"
#include "store/s3_lock.h"
#include "store/s3_pack.h"
#include "store/s3_spool.h"
#include "store/store_namespace.h"  // DigestHash
#include "store/store_options.h"

namespace ferry {

class S3Namespace {
 public:
  // Loads the index: lists the pack and index objects under `root`, reads
  // every index object, and rebuilds (from the pack's trailer) and writes
  // back the index object of any pack that lacks a good one.
  static Result<std::unique_ptr<S3Namespace>> open(S3Client& client, std::string bucket, std::string root,
                                                   std::string name, const StoreOptions& options);
  // Uploads what the spool holds (best effort: what fails stays in the
  // spool for the next open) and waits for the packs still uploading in the
  // background.
  ~S3Namespace();

  // True when the chunk is durable or waiting in an open or uploading pack.
  bool holds(const Digest& id);
  Result<std::vector<bool>> have(std::span<const Digest> ids);
  // `frame` is verified: parse_frame_header returned `verified`, decoded to its id.
  Result<PutResult> put(std::span<const std::byte> frame, const FrameHeader& verified);
  // Every chunk put before the call is durable once it returns: in the
  // bucket, or with a spool in the spool (flush() without one).
  Status sync();
  // Every chunk put before the call is in the bucket once it returns: seals
  // the open pack and waits for every upload.
  Status flush();
  Result<std::vector<std::byte>> get(const Digest& id);
  // get into `out`, whose capacity is reused (a restore's frame buffers).
  Status get_into(const Digest& id, std::vector<std::byte>& out);
  // get, the frame lent in place in its read window (no copy).
  Status lend(const Digest& id, LentBytes& lent);
  // The facts of the stored frames of `ids` (store_checks.h): those of
  // chunks put through this object are remembered from their put; any other
  // costs one ranged GET of its record's first bytes (remembered after).
  // Ids not held after a refresh give nullopt.
  Result<std::vector<std::optional<FrameFacts>>> frame_facts(std::span<const Digest> ids);
  Status commit(std::string_view snapshot, std::span<const std::byte> bytes, const Manifest& m);
  Result<std::vector<SnapshotInfo>> list();
  Result<std::vector<std::byte>> read_manifest(std::string_view snapshot);
  Status remove(std::span<const std::string> snapshots);
  Result<GcReport> gc();              // s3_namespace_maintenance.cc
  Status scrub(ScrubReport& report);  // s3_namespace_maintenance.cc
  StoreUsage usage();

 private:
  struct Location {
    std::string pack;  // the pack's name: hex SHA-256 of its bytes
    std::uint64_t offset = 0;
    std::uint32_t frame_bytes = 0;
  };
  struct Pending {
    std::uint64_t seq = 0;  // of the pack holding it
    std::uint64_t offset = 0;
    std::uint32_t frame_bytes = 0;
  };
  // A sealed pack on its way to the bucket.
  struct Upload {
    std::uint64_t seq = 0;
    std::vector<std::byte> bytes;
    std::vector<S3PackEntry> entries;
    // Every record is in the spool already, so a sync need not wait for it.
    bool spooled = false;
    // The spool files whose records this pack carries (its own, and those
    // of failed uploads whose chunks came back into it): deleted once it is
    // in the bucket.
    std::vector<std::uint64_t> spool_files;
    bool done = false;
    Status status;
  };
  struct StoredSnapshot {
    std::int64_t committed_ns = 0;
    std::vector<std::byte> manifest;
  };

  S3Namespace(S3Client& client, std::string bucket, std::string root, std::string name,
              const StoreOptions& options);
  std::string pack_key(const std::string& pack) const { return root_ + "packs/" + pack + ".pack"; }
  std::string index_key(const std::string& pack) const { return root_ + "index/" + pack + ".idx"; }
  std::string lock_key() const { return root_ + "lock"; }
  std::string snapshot_key(std::string_view s) const {
    return root_ + "snapshots/" + std::string(s) + ".manifest";
  }
  void log(const std::string& message) const;
  // PUT of an object ferry writes (with Object Lock retention when the
  // options ask for it); with `if_absent`, false when it existed (412).
  // body_sha256: the body's SHA-256 when the caller has it (else computed).
  Result<bool> put_object(const std::string& key, std::span<const std::byte> body, bool if_absent,
                          const Digest* body_sha256 = nullptr);

  // Lists the index objects and loads those not yet known; with
  // `repair`, also lists the packs and rebuilds missing index objects.
  Status refresh(bool repair);
  // refresh(false) unless a refresh that began at or after `since_ms`
  // (mono_ms) has completed: one caller at a time lists, and callers that
  // waited for it find their answer in its view.
  Status refresh_since(std::int64_t since_ms);
  // The trailer of pack `name` (an object of `size` bytes), read from its
  // end; `raw` gets its bytes.
  Result<S3PackIndex> read_pack_trailer(const std::string& name, std::uint64_t size,
                                        std::vector<std::byte>& raw);
  // REQUIRES mu_: true when the chunk is in a durable pack that no gc has
  // condemned (as the lock object said at the last refresh).
  bool durable_locked(const Digest& id) const;
  // REQUIRES mu_: adds a pack's entries to the index.
  void add_pack_locked(const std::string& name, const S3PackIndex& index);
  // REQUIRES mu_: seals the open pack into an upload (nullptr when empty).
  std::shared_ptr<Upload> seal_locked();
  // At open: uploads the chunks an earlier process left in the spool, then
  // deletes its files.
  Status upload_leftovers();
  // gc's rewriting of packs whose live chunks are fewer than
  // gc_repack_live_percent of their bytes (s3_namespace_maintenance.cc).
  struct GcCandidate;
  struct GcRewrite;
  Status rewrite_live_chunks(std::vector<GcCandidate>& packs,
                             const std::unordered_set<Digest, DigestHash>& live, GcRewrite& out);
  // Seals `builder` and PUTs the pack and its index object (gc's rewrite);
  // then the pack is in the index.
  Status store_rewritten_pack(S3PackBuilder& builder);
  // Uploads the pack and its index object; then the chunks are durable, or
  // on failure back in the open pack.
  void upload(const std::shared_ptr<Upload>& up);
  // Waits until every upload in `waited` is done (mu_ not held); the first
  // failure, as sync's error.
  Status wait_uploads(const std::vector<std::shared_ptr<Upload>>& waited);
  // upload() on a thread of its own, so that the put that filled the pack
  // returns and packing goes on while the pack travels; waits first while
  // StoreOptions::object_uploads packs are on their way already.
  void start_upload(const std::shared_ptr<Upload>& up);
  // A read window's bytes; its buffer goes back to a stash of kept window
  // buffers (kS3KeptReadWindows) once the last get that reads it is done,
  // so that the next window's GET lands in pages already faulted in.
  struct WindowBytes {
    Status status;
    std::vector<std::byte> bytes;
    WindowBytes() = default;
    WindowBytes(WindowBytes&&) = default;
    WindowBytes& operator=(WindowBytes&&) = default;
    ~WindowBytes();
  };
  // The record (header and frame) at `loc`, in place in a read window (a
  // ranged GET of up to kS3ReadAheadBytes from the record on, shared by the
  // gets of the records that follow it: a restore asks for chunks in the
  // order they were pushed, so one GET serves several chunks), which `hold`
  // keeps alive; or in `own` when the window could not serve it.
  Result<std::span<const std::byte>> read_record(const Location& loc, std::shared_future<WindowBytes>& hold,
                                                 std::vector<std::byte>& own);
  // The record at `loc` by a ranged GET of its own, into `own`: where no
  // read window serves it, and for the second read of a record that failed
  // its check.
  Result<std::span<const std::byte>> read_record_alone(const Location& loc, std::vector<std::byte>& own);
  // REQUIRES mu_: the bytes [first, end) of the pack that the read window
  // of the record at `loc` (`need` bytes) covers, when the pack's records
  // are known: they fall in order into windows of up to kS3ReadAheadBytes
  // that end at a record's end, so every get of a record in one window asks
  // for the same range, however the threads of a restore interleave, and no
  // byte is read twice. False otherwise (the window starts at the record).
  bool window_of_locked(const Location& loc, std::uint64_t need, std::uint64_t& first,
                        std::uint64_t& end) const;
  // The frame of chunk `id` at `loc`, checked (a record that fails its
  // check is read once more before it is reported as Corruption).
  // Exactly one of `out` and `lent`: copied into `out`, or lent in place.
  Status read_chunk(const Digest& id, const Location& loc, std::vector<std::byte>* out, LentBytes* lent);
  // get_into (`out`) or lend (`lent`): exactly one of the two.
  Status fetch(const Digest& id, std::vector<std::byte>* out, LentBytes* lent);
  // NotFound unless every chunk `m` names is durable and its pack present;
  // `packs` gets the packs that hold them.
  Status check_chunks_durable(std::string_view snapshot, const Manifest& m, std::set<std::string>& packs);
  // The lock object's condemned packs among `packs` (empty when none);
  // `holder` gets the lock's description.
  Result<std::vector<std::string>> condemned_among(const std::set<std::string>& packs, std::string& holder);
  // Waits (up to kS3CommitGcWaitMs) until no gc condemns any of `packs`.
  Status wait_for_gc(std::string_view snapshot, const std::set<std::string>& packs);
  // Before a snapshot is published (docs/FORMAT.md 9.5): every chunk `m`
  // names is durable in a pack that is present and that no gc condemns, as
  // the lock object said at `checked_ms` (mono_ms); `packs` gets the packs.
  Status check_safe_from_gc(std::string_view snapshot, const Manifest& m, std::set<std::string>& packs,
                            std::int64_t& checked_ms);
  // HEADs `packs`; the missing ones leave the index and are returned.
  Result<std::vector<std::string>> missing_packs(const std::set<std::string>& packs);
  // After a publication that ended kS3CommitRecheckMs or more after that
  // check: no gc condemns the packs and they are all present, else the
  // snapshot object is removed (best effort) and NotFound returned.
  Status recheck_after_publish(std::string_view snapshot, const std::set<std::string>& packs);
  // The namespace's lock for a deleting `operation` ("gc", "prune"), after
  // checking that the credentials may delete at all.
  Result<std::unique_ptr<S3Lock>> take_lock(std::string operation);
  Result<GcReport> gc_locked(S3Lock& lock);
  Result<StoredSnapshot> read_snapshot(std::string_view snapshot);
  // Snapshot names (from a LIST of ROOT/snapshots/) with their object sizes.
  Result<std::map<std::string, std::uint64_t>> snapshot_objects();
  Result<std::vector<std::pair<std::string, Manifest>>> load_manifests();
  // REQUIRES mu_: forgets the packs and the index entries that point into
  // them; a chunk another known pack holds too is found there instead (gc
  // rewrote it into a new pack before deleting the old one).
  void forget_packs_locked(const std::vector<std::string>& names);
  // REQUIRES mu_: each chunk of `ids` points to a pack that holds it and no
  // gc condemns, where one is known (one pass over the known packs).
  void relocate_locked(std::unordered_set<Digest, DigestHash> ids);
  // REQUIRES mu_: the chunks whose pack gc condemns move to another pack
  // that holds them, where one is known, so that have() keeps answering
  // true for chunks gc rewrites while it runs.
  void relocate_condemned_locked();

  S3Client& client_;
  const std::string bucket_;
  const std::string root_;  // "PREFIX/<ns>/" or "<ns>/"
  const std::string name_;
  const StoreOptions options_;

  std::mutex commit_mu_;
  std::mutex refresh_mu_;  // one refresh_since at a time
  std::mutex mu_;
  std::condition_variable cv_;
  std::unordered_map<Digest, Location, DigestHash> index_;  // durable chunks
  // Frame facts learnt from puts and header reads (frame_facts), valid
  // while the chunk is held with the same frame size; forgotten with the
  // chunk's pack.
  std::unordered_map<Digest, FrameFacts, DigestHash> facts_;
  std::map<std::string, std::uint64_t> packs_;                   // pack name -> object bytes
  std::map<std::string, std::vector<S3PackEntry>> pack_chunks_;  // pack name -> the chunks it holds
  std::set<std::string> condemned_;                              // packs a gc is deleting (lock object)
  std::int64_t refreshed_ms_ = 0;  // when the last completed refresh began (mono_ms)
  S3PackBuilder open_;
  std::uint64_t open_seq_ = 1;
  std::unordered_map<Digest, Pending, DigestHash> pending_;  // in open_ or an upload
  std::uint64_t pending_bytes_ = 0;
  std::map<std::uint64_t, std::shared_ptr<Upload>> uploads_;  // by seq, until done
  std::unique_ptr<S3Spool> spool_;                            // null without StoreOptions::object_spool_dir
  std::mutex spool_mu_;
  // Bytes of open_ in its spool file (from the pack header on), when the
  // first of them was written (mono_ms; 0: none yet), and the spool files of
  // failed uploads whose chunks came back into open_.
  std::uint64_t spooled_bytes_ = kPackHeaderBytes;
  std::int64_t spool_first_ms_ = 0;
  std::vector<std::uint64_t> carried_spool_files_;
  // start_upload()'s threads with their uploads (joined once done), and how
  // many of them have not finished.
  std::vector<std::pair<std::thread, std::shared_ptr<Upload>>> uploaders_;
  std::size_t background_uploads_ = 0;
  struct ReadWindow {
    std::string pack;
    std::uint64_t first = 0, end = 0;  // bytes [first, end) of the pack
    std::shared_future<WindowBytes> bytes;
  };
  std::deque<ReadWindow> windows_;    // newest last, at most kS3MaxReadWindows
  std::uint64_t snapshot_bytes_ = 0;  // as last listed
  std::uint64_t snapshot_count_ = 0;
};

}  // namespace ferry
