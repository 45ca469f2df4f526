// restore.h: the restore side of replication, behind `ferry list` and
// `ferry restore`. A restore fetches a snapshot's manifest from the DR
// receiver, then its frames over N parallel mTLS connections (GET_CHUNK
// batches, fetched ahead of the decoder within a bounded window), and hands
// them to the unpacker (codec/unpacker.h), which verifies every chunk against
// its id and every file against its root and writes each file under a
// temporary name, fsynced and renamed into place only once it is whole. So a
// restore that fails (a damaged chunk, a broken link) names the chunk or the
// peer and leaves no partly written file under a real name.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "codec/manifest.h"
#include "codec/unpacker.h"
#include "replication/connection.h"
#include "replication/protocol.h"
#include "replication/tls.h"

namespace ferry {
class ThreadPool;
}

namespace ferry::replication {

inline constexpr std::size_t kDefaultRestoreStreams = 4;
inline constexpr std::size_t kMaxRestoreStreams = 64;
// One GET_CHUNK asks for at most this many chunks, and this many frame bytes
// (by the manifest's frame sizes), so a stream keeps a few requests' worth in
// flight and a window of fetched frames stays bounded in memory.
inline constexpr std::size_t kDefaultRestoreBatchChunks = 4;
inline constexpr std::uint64_t kRestoreBatchBytes = 32ull << 20;
// A stream whose connection breaks dials again this many times (with
// backoff) and asks again for the batch it was fetching.
inline constexpr int kRestoreReconnects = 3;
inline constexpr int kRestoreBackoffMs = 200;
// Frame buffers the decoder is done with, kept for the streams' next
// frames (per stream): a fresh multi-MiB buffer per frame costs a page
// fault and the kernel's zeroing for every 4 KiB.
inline constexpr std::size_t kRestoreSpareFramesPerStream = 2;

// Where a receiver is and how to reach it.
struct RemoteOptions {
  std::string address;  // HOST:PORT
  TlsConfig tls;        // role is forced to kClient
  ConnectionOptions connection;
  std::string software = "ferry";
};

// Dials `remote` and completes HELLO. `ctx` may be null (built from
// remote.tls).
Result<std::unique_ptr<Connection>> dial_receiver(const RemoteOptions& remote,
                                                  std::shared_ptr<const TlsContext> ctx = nullptr);

// One snapshot as `ferry list` shows it: the LIST entry, plus what its
// manifest says (fetched when asked).
struct RemoteSnapshot {
  SnapshotInfo info;
  bool have_manifest = false;
  std::string host;
  std::string job;
  std::uint64_t step = 0;
  SnapshotOrigin origin;  // where it was pushed from, key or delta, base (docs/FORMAT.md 5)
};

// The snapshots of this host's namespace (the one its certificate names),
// oldest first. with_manifests: fetch each manifest for host, job and step.
Result<std::vector<RemoteSnapshot>> list_remote(const RemoteOptions& remote, bool with_manifests);

// The parsed manifest of one snapshot of this host's namespace; NotFound
// when the receiver has no such snapshot here.
Result<Manifest> fetch_manifest(Connection& conn, std::string_view snapshot);

struct RestoreOptions {
  std::size_t streams = kDefaultRestoreStreams;
  std::size_t batch_chunks = kDefaultRestoreBatchChunks;
  ThreadPool* pool = nullptr;  // decode and verify; nullptr: ThreadPool::shared()
  // Fetch and verify everything but write nothing.
  bool verify_only = false;
  // Restore recorded modes exactly (UnpackOptions::exact_modes).
  bool exact_modes = false;
  std::function<void(const UnpackProgress&)> progress;  // may be empty
};

// The FrameSource behind restore_snapshot, for callers that decode frames
// themselves (restore into memory, replication/device_restore.h): dials the
// receiver, fetches the snapshot's manifest and starts `streams` connections
// that fetch frames ahead of the reader. A reader may ask for any chunk within
// `window_chunks` of the first chunk it has not yet taken (in file order);
// each frame is handed out once. The source owns its manifest and stops its
// streams when destroyed.
Result<std::unique_ptr<FrameSource>> open_remote_frame_source(
    const RemoteOptions& remote, std::string_view snapshot, std::size_t streams, std::size_t window_chunks,
    std::size_t batch_chunks = kDefaultRestoreBatchChunks);

struct RestoreReport {
  std::size_t files = 0;
  std::uint64_t chunks = 0;
  std::uint64_t logical_bytes = 0;
  std::uint64_t frame_bytes = 0;    // frames received
  std::uint64_t wire_bytes_in = 0;  // TLS bytes received on every stream
  std::uint64_t wire_bytes_out = 0;
  std::uint64_t reconnects = 0;
  double seconds = 0;
};

// Restores `snapshot` from `remote` into `out_dir` (created if missing).
// Corruption naming the chunk (id, file, offset) when a stored chunk is
// damaged; the receiver's or the link's error otherwise.
Result<RestoreReport> restore_snapshot(const RemoteOptions& remote, std::string_view snapshot,
                                       const std::filesystem::path& out_dir,
                                       const RestoreOptions& options = {});

}  // namespace ferry::replication
