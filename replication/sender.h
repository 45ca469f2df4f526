// sender.h: the sending side of replication, behind `ferry push` (and the
// agent later). push() packs files into frames (codec/packer.h) and ships
// them to a DR receiver over N parallel mutually authenticated TLS streams:
//
//   packer ──have/need (QUERY, control connection)──► only missing chunks
//     are encoded (into recycled PUT buffers) ──► bounded frame queue ──►
//     N stream threads, each with a window of PUTs in flight (sized in bytes
//     for long, fat links), every frame tracked until its PUT_ACK (the
//     receiver acks only durable chunks)
//   all frames acked ──► COMMIT of the manifest (control connection)
//
// Memory: a frame's buffer is given back as soon as the frame is sent, so
// the windows in flight hold none; frame memory covers the packer's window,
// the queue and one frame per stream (PushReport::frame_memory_bytes).
//
// Breaks: a stream whose connection fails reconnects with exponential
// backoff and jitter, asks QUERY about its unacknowledged frames and resends
// only those still missing, so nothing durable is sent twice; a frame to
// resend is rebuilt from its source file, byte for byte, after checking the
// chunk still hashes to its id (frame_rebuilder.h): a source that changed
// since ends the push. A target that
// keeps failing is given up for the next one in PushOptions::targets (each
// target is packed against its own have/need); with fan_out every target
// gets the snapshot. A bandwidth cap (token bucket) is shared by all
// streams of a push.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/status.h"
#include "codec/delta_chain.h"
#include "codec/packer.h"
#include "replication/tls.h"

namespace ferry {
class CodecEngine;
class ThreadPool;
}  // namespace ferry

namespace ferry::replication {

inline constexpr int kDefaultPushStreams = 4;
inline constexpr int kMaxPushStreams = 64;
// Bytes of PUTs in flight per stream (also bounded by the receiver's
// max_inflight_puts): 32 MiB keeps 4 streams busy at 1 Gbit/s and 1 s RTT.
inline constexpr std::uint64_t kDefaultStreamWindowBytes = 32ull << 20;
// Frames coded but not yet taken by a stream; back-pressure on the packer.
// The windows in flight hold no frame memory (frames are released once
// sent), so the queue need only keep the streams fed when a window opens,
// beside the packer's window of coded frames waiting to enter it; more
// would only be memory first-touched on every push.
inline constexpr std::uint64_t kDefaultQueueBytes = 4ull << 20;
// The software name sent in HELLO.
inline constexpr const char* kSenderSoftware = "ferry-push 0.1";

struct RetryPolicy {
  // Connection attempts after a break, per stream or control connection,
  // before the target is given up.
  int max_attempts = 8;
  int initial_backoff_ms = 100;
  int max_backoff_ms = 5'000;
};

struct PushProgress {
  std::uint64_t logical_done = 0;  // bytes read and hashed
  std::uint64_t logical_total = 0;
  std::uint64_t frame_bytes_acked = 0;
  std::uint64_t chunks_skipped = 0;
  std::string target;
};

struct PushOptions {
  // HOST:PORT of each receiver, in failover order (or all, with fan_out).
  std::vector<std::string> targets;
  TlsConfig tls;  // client side: CA, this host's certificate and key
  int streams = kDefaultPushStreams;
  // Snapshot name; empty: default_snapshot_name.
  std::string snapshot;
  // Names the snapshot when job is empty (the pushed directory's name).
  std::string source_name;
  std::string job;
  std::uint64_t step = 0;
  std::size_t chunk_bytes = kDefaultChunkBytes;
  // Also the level a resend rebuilds a frame at (frame_rebuilder.h): a
  // given engine must code at this level too.
  int zstd_level = kDefaultZstdLevel;
  ThreadPool* pool = nullptr;  // nullptr: ThreadPool::shared()
  // Codes each packer window's chunks (codec/engine.h; e.g. choose_engine's
  // GPU engine). nullptr: a CPU engine over `pool`. Not owned; it must
  // outlive the push and is used from the packing thread only.
  CodecEngine* engine = nullptr;
  // An earlier checkpoint directory on this host whose snapshot the target
  // holds: chunks become delta frames against the same positions there
  // (PackOptions::delta_from). Empty: no deltas.
  std::filesystem::path delta_from;
  // The absolute path pushed, on this host: recorded in the manifest with
  // the delta base (SnapshotOrigin), and, without delta_from, the key to the
  // automatic base: each target's snapshots of this job are read and
  // `delta` chooses (codec/delta_chain.h). Empty: no origin recorded and no
  // automatic base.
  std::filesystem::path source_dir;
  DeltaPolicy delta;
  // A base fixed by the caller instead of choosing one at
  // pinned_delta_target (the agent resuming a push whose base it
  // journaled); other targets choose their own. Unset: chosen.
  std::optional<DeltaChoice> pinned_delta;
  std::string pinned_delta_target;
  // Called with each target's base before anything is packed for it (the
  // agent journals it). May be empty.
  std::function<void(const std::string& target, const DeltaChoice&)> on_delta_choice;
  std::uint64_t stream_window_bytes = kDefaultStreamWindowBytes;
  std::uint64_t queue_bytes = kDefaultQueueBytes;
  // Bytes per second of frames sent, over all streams; 0: no cap.
  std::uint64_t bandwidth_bytes_per_s = 0;
  RetryPolicy retry;
  // Give the snapshot to every target instead of the first that works.
  bool fan_out = false;
  int connect_timeout_ms = 10'000;
  int io_timeout_ms = 60'000;
  std::optional<std::int64_t> created_ns;  // unset: now
  // Called from the packing thread after each window; may be empty.
  std::function<void(const PushProgress&)> progress;
  // Polled by every thread of the push; when it returns true the push stops
  // promptly with an Aborted status. Frames the receiver acknowledged stay
  // durable there, so a later push of the same sources sends only the rest.
  // May be empty.
  std::function<bool()> should_stop;
  // Called once per target after every frame is acknowledged and just before
  // COMMIT; a non-OK Status refuses the commit and becomes the push's error
  // (e.g. the sources changed while they were read). May be empty.
  std::function<Status()> before_commit;
};

// What one push did at one target.
struct PushReport {
  std::string target;
  std::string snapshot;
  std::uint64_t files = 0;
  std::uint64_t logical_bytes = 0;
  std::uint64_t chunks_total = 0;
  std::uint64_t chunks_skipped = 0;       // the receiver had them (or a repeat in this push)
  std::uint64_t chunks_sent = 0;          // distinct chunks PUT
  std::uint64_t delta_chunks = 0;         // of which as delta frames
  std::uint64_t delta_logical_bytes = 0;  // their bytes
  std::uint64_t delta_frame_bytes = 0;    // their delta frames' bytes
  // The snapshot's origin as committed (kind key or delta, base, depth) and
  // why that base (DeltaChoice::reason); kUnrecorded without source_dir.
  SnapshotOrigin origin;
  std::string delta_reason;
  std::uint64_t frame_bytes_sent = 0;    // PUT frame bytes, resends included
  std::uint64_t frame_bytes_resent = 0;  // of which sent again after a break
  // Delta frames the receiver refused because their base was removed after
  // it said it held it (a gc at that instant): sent again in full, and
  // still counted in delta_chunks.
  std::uint64_t deltas_sent_in_full = 0;
  std::uint64_t wire_bytes_sent = 0;  // TLS ciphertext, all connections
  std::uint64_t wire_bytes_received = 0;
  std::uint64_t retries = 0;  // reconnections after a break
  // Frame buffers the push held (made, or kept from an earlier push in this
  // process) and reused: what it held at most of frames not yet sent.
  // Frames are released once sent (a resend after a break rebuilds its frame
  // from the source), so this covers the packer's window, the queue and one
  // frame per stream, whatever the windows.
  std::uint64_t frame_memory_bytes = 0;
  std::uint64_t failovers = 0;  // targets given up before this one
  double seconds = 0;
};

// The packer's options of a push of `options`: how the checkpoint is coded
// and what its manifest records, created at `created_ns` (unset: now). The
// caller adds its own hooks (need, progress, commit checks).
PackOptions pack_options_of(const PushOptions& options, std::optional<std::int64_t> created_ns);

// Pushes `sources` (strictly ascending by rel_path, as list_pack_sources
// returns them) and commits them as one snapshot. Returns one report per
// target that committed: the first working target, or every target with
// fan_out (then any target failing fails the push). The error of the last
// target tried when none committed.
Result<std::vector<PushReport>> push(std::span<const PackSource> sources, const PushOptions& options);

// The default snapshot name for these options at time `now_ns`:
// checkpoint_snapshot_name(job, source_name, step) (replication/snapshot_name.h,
// the agent's rule too), with "-<UTC time>" appended when there is no job or
// no step at all (neither `step` nor digits in source_name), so repeated
// pushes of such a directory stay apart. Safe for validate_snapshot_name.
std::string default_snapshot_name(const PushOptions& options, std::int64_t now_ns);

}  // namespace ferry::replication
