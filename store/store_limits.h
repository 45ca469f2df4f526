// store_limits.h: the limits of the chunk store, in one place (docs/FORMAT.md
// section 7 and docs/OPERATIONS.md repeat them). Hosts are not trusted: each
// bound here keeps one host from growing the store, or bending its retention,
// beyond what the operator allowed.
#pragma once

#include <cstddef>
#include <cstdint>

namespace ferry {

// Snapshots one namespace may hold (the default of
// StoreOptions::max_snapshots). Every snapshot is a file in one directory and
// is read by LIST and prune, so their number needs a bound even without a
// quota: 100,000 is about a year of checkpoints every five minutes with no
// pruning, and stays below what one LIST reply may carry
// (replication/limits.h kMaxListedSnapshots, 2^20).
inline constexpr std::uint64_t kMaxSnapshotsPerNamespace = 100'000;

// How far ahead of the receiver's clock a manifest's created time may lie
// before its commit is refused. Retention never reads the host's time (it
// orders by the receiver's commit time), but tools display it; a day covers
// any clock skew and a host whose time zone is set wrong.
inline constexpr std::int64_t kMaxCreatedAheadSeconds = 86'400;

}  // namespace ferry

namespace ferry {

// The S3 client (store/s3_client.h). A reply body larger than this is cut
// and refused: whole-object GETs read packs (at most 64 MiB plus their
// trailer), index objects and manifests, and a gateway that sends more is
// broken or hostile.
inline constexpr std::uint64_t kS3MaxReplyBytes = 1ull << 30;
// A LIST reply page, and the pages one listing may take (at 1,000 keys a
// page, ten million keys) before it is refused as a gateway looping.
inline constexpr std::uint64_t kS3MaxListReplyBytes = 16ull << 20;
inline constexpr std::uint64_t kS3MaxListPages = 10'000;
// Retries (the defaults of S3Config). A request that fails in a way another
// attempt may cure (503 SlowDown, 500, 502, 504, 429, a reset, a cut or
// stalled transfer, an unreachable endpoint) is sent again, at most
// kS3MaxAttempts times in all, after an exponential backoff: attempt n waits
// kS3BackoffBaseMs * 2^(n-1), at most kS3BackoffMaxMs, times a random
// factor in [0.5, 1) (jitter, so that many clients refused at once do not
// come back at once). With these values a request gives up after about
// 4-8 s of refusals. Wrong credentials, a missing bucket or key, and a
// request the gateway finds malformed are never retried.
inline constexpr int kS3MaxAttempts = 6;
inline constexpr int kS3BackoffBaseMs = 100;
inline constexpr int kS3BackoffMaxMs = 5'000;
// A connection not made in this time counts as an unreachable endpoint.
inline constexpr int kS3ConnectTimeoutMs = 5'000;
// A transfer slower than 1 KiB/s for this long is cut (and retried).
inline constexpr int kS3StallTimeoutMs = 30'000;
// Requests in flight at once in one S3Client::run().
inline constexpr int kS3MaxParallelRequests = 16;

// The S3 backend (store/s3_store.h). Chunks put and not yet in a durable
// pack object, per namespace, before a put is refused (ResourceExhausted):
// a bucket that refuses every PUT must not fill the gateway's memory.
inline constexpr std::uint64_t kS3MaxPendingBytes = 1ull << 30;
// Full packs uploading in the background at once, per namespace (each up to
// the pack target, 32 MiB by default): while they travel, the put that
// filled the last one returns and packing goes on; one more full pack
// waits for one of them to finish. The default of
// StoreOptions::object_uploads.
inline constexpr std::size_t kS3MaxBackgroundUploads = 2;
// Pack buffers a process keeps for its next packs (store/s3_pack.h): the
// uploads in flight, the pack being filled and one sealed pack waiting for
// an upload to finish.
inline constexpr std::size_t kS3KeptPackBuffers = kS3MaxBackgroundUploads + 2;
// A pack's buffer holds the pack target and this much more: the record that
// passes the target (a default chunk's frame) and the trailer.
inline constexpr std::uint64_t kS3PackRoomSlackBytes = 8ull << 20;
// StoreOptions::object_uploads (what the agent's --streams sets for s3://
// targets) is taken from 1 to this; each upload holds one pack in memory.
inline constexpr std::size_t kS3MaxObjectUploads = 64;
// The least upload cap StoreOptions::object_upload_bytes_per_s accepts: a
// slower upload would look stalled (S3Config::stall_timeout_ms).
inline constexpr std::uint64_t kS3MinUploadBytesPerS = 64ull << 10;
// Reads: a get of a chunk stored in a pack reads up to kS3ReadAheadBytes of
// the pack from that chunk on in one ranged GET, and keeps the last
// kS3MaxReadWindows such windows (per namespace, at most 96 MiB) for the
// gets of the chunks that follow: a restore asks for chunks in the order
// they were pushed, so one GET serves about four chunks of 4 MiB. A get of
// a lone chunk reads at most this much more than it needs.
inline constexpr std::uint64_t kS3ReadAheadBytes = 16ull << 20;
inline constexpr std::size_t kS3MaxReadWindows = 6;
// Window buffers kept from one GET to the next (base/buffer_stash.h), so
// that a restore's GETs land in pages faulted in once, not in fresh memory
// each time: the windows held, and one more per get still reading an old one.
inline constexpr std::size_t kS3KeptReadWindows = kS3MaxReadWindows + 2;
// How old a namespace's view of the bucket's index objects may grow before
// have() lists them again (other gateways and hosts write to the bucket).
inline constexpr std::int64_t kS3IndexRefreshMs = 2'000;
// A gateway's spool (store/s3_spool.h): a sync uploads the open pack, full
// or not, once its first spooled chunk has waited this long, so that chunks
// of a pack that fills slowly do not stay on the gateway's disk alone. The
// default of StoreOptions::object_spool_max_age_ms.
inline constexpr std::int64_t kS3SpoolMaxAgeMs = 60'000;
// Bytes read from a pack's end to find its trailer in one GET: the trailer
// of a 64 MiB pack of 4 KiB chunks needs more, which a second GET fetches.
inline constexpr std::uint64_t kS3TrailerProbeBytes = 64ull << 10;
// The S3 backend accepts pack targets in this range.
inline constexpr std::uint64_t kS3MinPackTargetBytes = 1ull << 20;
inline constexpr std::uint64_t kS3MaxPackTargetBytes = 1ull << 30;

}  // namespace ferry

namespace ferry {

// The lock object of an S3 namespace (store/s3_lock.h, docs/FORMAT.md 9.6).
// Its holder refreshes it every quarter of its expiry and stops deleting
// once half of it has passed without a good refresh; a host may take it
// over once its expiry (by that host's clock) has passed.
inline constexpr std::int64_t kS3LockExpiryMs = 120'000;
// A lock object is a few text lines plus one per condemned pack (76 bytes).
inline constexpr std::uint64_t kS3MaxLockObjectBytes = 16ull << 20;
inline constexpr std::size_t kS3MaxLockHolderBytes = 512;
// Rounds of create / read / take over before acquire() gives up on a lock
// that keeps changing hands.
inline constexpr int kS3LockAcquireRounds = 4;
// Packs one gc run condemns at most (the rest wait for the next run), so
// that the lock object stays below kS3MaxLockObjectBytes.
inline constexpr std::size_t kS3GcMaxCondemnedPacks = 100'000;
// gc rewrites a pack past the grace period whose live records (those a
// snapshot names) are less than this percentage of its records' bytes: its
// live chunks go into new packs and the old pack is deleted like a dead
// one (docs/FORMAT.md 9.5). A rewrite costs a GET of the pack and the PUTs
// of the new one, so a little garbage is left in place (the local store's
// gc rewrites at the same 25% of dead bytes). The default of
// StoreOptions::gc_repack_live_percent; 0 turns rewriting off.
inline constexpr int kS3GcRepackLivePercent = 75;
// The safety window between gc and a concurrent commit (FORMAT.md 9.5). A
// commit that relies on packs checks the lock object, then publishes; if
// publishing ended more than kS3CommitRecheckMs after that check, it checks
// again. gc waits at least kS3GcMinSettleMs (> kS3CommitRecheckMs) between
// writing its condemned packs into the lock object and reading the
// snapshots that decide their fate.
inline constexpr std::int64_t kS3CommitRecheckMs = 1'000;
inline constexpr std::int64_t kS3GcMinSettleMs = 2'000;
inline constexpr std::int64_t kS3GcSettleMs = 10'000;
// How long a commit waits for a gc that condemned a pack the snapshot
// needs, polling the lock object, before it is refused (Unavailable).
inline constexpr std::int64_t kS3CommitGcWaitMs = 600'000;
inline constexpr std::int64_t kS3LockPollMs = 250;
// The longest Object Lock retention ferry asks for (StoreOptions::
// object_lock_days): ten years.
inline constexpr std::int64_t kS3MaxObjectLockDays = 3'650;
// A push straight into a store packs again (sending only what the store
// now lacks) when its commit finds chunks missing, this many times in all.
inline constexpr int kStorePushCommitAttempts = 3;

}  // namespace ferry
