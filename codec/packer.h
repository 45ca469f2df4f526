// packer.h: turns files into frames. Each file is planned into chunks (on
// tensor boundaries where its safetensors layout is known), its 4 KiB leaves
// are hashed once to serve both the chunk ids and the file root, and chunks
// are coded a window at a time by a codec engine (codec/engine.h; the CPU
// engine runs on a ThreadPool) with a bounded window of chunks in flight
// (buffers reused from window to window). Frames leave through a
// FrameSink strictly in file order, chunk by chunk, so the same code feeds a
// `.ferry` archive today and the network sender later: the packer knows
// nothing about where frames go. It returns the snapshot manifest.
//
// Have/need: a caller that ships frames to a store which may already hold
// some chunks (the network sender) sets PackOptions::need. Each window's
// chunks are then read and hashed first, `need` is asked once with the
// window's ids, and only the chunks it asks for are encoded and handed to
// put_frame; the others go to skip_chunk and are still listed in the
// manifest, so the snapshot stays complete while the work and the bytes on
// the wire shrink to what changed. The question for a window is asked right
// after it is read, while the window before it is being coded, and its answer
// is awaited only when the window's turn to be coded comes, while the next
// window is read: a long link's round trip holds up neither the coding nor
// the reads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "codec/limits.h"
#include "codec/manifest.h"
#include "codec/zstd_codec.h"

namespace ferry {

class CodecEngine;
class ThreadPool;

// Where frames go. Called from one thread at a time, in file order.
class FrameSink {
 public:
  virtual ~FrameSink() = default;
  // `file` is the file's manifest entry as far as known (path, size, mode,
  // layout; chunks up to and including `chunk`); `frame` (88-byte header +
  // payload) is valid only during the call.
  virtual Status put_frame(const ManifestFile& file, const ManifestChunk& chunk,
                           std::span<const std::byte> frame) = 0;
  // Optional, so that a frame is coded where the sink keeps it instead of
  // being copied into the sink: memory for the frame of one chunk that will
  // be sent, at least `bytes` long (its size(); bytes >= frame_room_bytes of
  // the chunk). The packer codes into it and hands it back, cut to the frame,
  // through put_lent_frame. The default lends nothing (an empty vector): the
  // packer codes into its own buffers and calls put_frame. A buffer the
  // packer does not hand back (packing failed) is simply dropped.
  virtual std::vector<std::byte> lend_frame(std::size_t bytes) {
    (void)bytes;
    return {};
  }
  // As put_frame, for a frame in a buffer from lend_frame (its size() is the
  // frame's); the sink keeps the buffer.
  virtual Status put_lent_frame(const ManifestFile& file, const ManifestChunk& chunk,
                                std::vector<std::byte>&& frame) {
    return put_frame(file, chunk, frame);
  }
  // A chunk that PackOptions::need said the destination holds: it is listed
  // in the manifest (`chunk` is its entry) but no frame was made for it.
  virtual Status skip_chunk(const ManifestFile& file, const ManifestChunk& chunk) {
    (void)file;
    (void)chunk;
    return Status::ok();
  }
};

// What the manifest records about a chunk's frame (its codec and size),
// known without encoding the chunk when the same id was coded before.
struct FrameFacts {
  std::uint8_t codec = 0;
  std::uint32_t frame_bytes = 0;
  Digest base_id{};  // a delta frame's base (docs/FORMAT.md 3.1); zero otherwise
};

// One input file: where to read it and the relative path it gets in the
// snapshot (validated with validate_relative_path). dev and ino identify the
// file that was listed (list_pack_sources records them; 0 and 0: not
// recorded): the packer reads only that file, never one put in its place.
struct PackSource {
  std::filesystem::path path;
  std::string rel_path;
  std::uint64_t dev = 0;
  std::uint64_t ino = 0;
};

// Lists what `ferry pack PATH` packs: PATH itself when it is a regular file
// (named by its file name), or every regular file below the directory PATH,
// sorted bytewise by relative path. Symlinks and special files are skipped;
// each skip adds a line to *notices when given. Each file's device and inode
// are recorded: packing opens files without following symlinks and refuses
// (SourceChanged) one that is not the file listed.
Result<std::vector<PackSource>> list_pack_sources(const std::filesystem::path& path,
                                                  std::vector<std::string>* notices = nullptr);

// The source of `rel_path` among `sources`, which are strictly ascending by
// rel_path (pack_files checks): a sink finds where a frame's chunk came
// from to read it again. Null when none is.
const PackSource* find_pack_source(std::span<const PackSource> sources, std::string_view rel_path);

struct PackProgress {
  std::uint64_t logical_done = 0;         // input bytes coded so far
  std::uint64_t logical_total = 0;        // all input bytes
  std::uint64_t frame_bytes = 0;          // frame bytes emitted so far (before dedup)
  std::uint64_t chunks_done = 0;          // chunks emitted or skipped so far
  std::uint64_t chunks_skipped = 0;       // chunks `need` said the destination holds
  std::uint64_t delta_chunks = 0;         // chunks sent as delta frames
  std::uint64_t delta_logical_bytes = 0;  // their bytes
  std::uint64_t delta_frame_bytes = 0;    // their delta frames' bytes
};

struct PackOptions {
  std::size_t chunk_bytes = kDefaultChunkBytes;
  int zstd_level = kDefaultZstdLevel;
  ThreadPool* pool = nullptr;  // nullptr: ThreadPool::shared()
  // Codes each window's chunks in one batch (codec/engine.h), with the ids
  // the packer computed (EncodeJob::known_id). nullptr: a CPU engine over
  // `pool` at `zstd_level` (a given engine uses its own level). Not owned;
  // called from the packing thread only, one batch at a time.
  CodecEngine* engine = nullptr;
  std::size_t window_chunks = 0;  // chunks in flight; 0: 2 x pool threads
  std::string host;               // empty: this machine's host name
  std::string job;
  std::uint64_t step = 0;
  std::optional<std::int64_t> created_ns;             // unset: now (set it for reproducible output)
  std::function<void(const PackProgress&)> progress;  // after each window; may be empty
  // Have/need (see the top of this file). Empty: every chunk is encoded and
  // sent. Otherwise called at most once per window, one call at a time and in
  // window order, from a thread of the packer's own (while the calling thread
  // codes the window before and the next window is read), with the
  // new chunk ids of the window in order; it returns one flag per id, true when
  // the chunk must be sent. Only ids not met before in this run are asked
  // about: an id that repeats (a file of zeros, a copied shard) is decided
  // once and sent at most once. An error stops packing with that error.
  std::function<Result<std::vector<bool>>(std::span<const Digest> ids)> need;
  // For a skipped chunk, the manifest's codec and frame size: when this
  // returns them the chunk is not encoded at all; otherwise (or when empty)
  // it is encoded to learn them (against its delta base when the
  // destination holds that, as if it were sent), and still not sent.
  std::function<std::optional<FrameFacts>(const Digest& id)> known_frame;
  // Delta frames (codec/delta_base.h, docs/FORMAT.md 3.1): an earlier
  // checkpoint directory on this host. Each chunk is paired with the chunk
  // at the same position there, which is read and hashed beside it; with
  // have/need the window's question also names those base ids, and a chunk
  // whose base the destination holds is coded as the smaller of a delta and
  // its standalone frame. Empty, or without `need`: no deltas.
  std::filesystem::path delta_from;
  // Recorded in the manifest (docs/FORMAT.md 5): where the snapshot comes
  // from and what it is coded against (codec/delta_chain.h). A kDelta origin
  // whose manifest lists no delta chunk is recorded as a key (kKey, no base).
  // Unset (the default): a version 1 manifest, as `ferry pack` writes.
  SnapshotOrigin origin;
  // Read the files around the page cache (O_DIRECT, base/direct_file.h) so
  // that packing a checkpoint neither evicts the training job's cached pages
  // nor fills memory with checkpoint bytes; a file system that refuses
  // O_DIRECT is read through the cache (said once). false: always through
  // the cache.
  bool direct_io = true;
};

// The host name a manifest records when PackOptions::host is empty: this
// machine's, cut to kMaxHostBytes.
std::string manifest_host_name();

// Packs `sources` (in the given order, which must be strictly ascending by
// rel_path) into frames sent to `sink` and returns the manifest. Files are
// read with pread from the pool's threads (O_DIRECT unless
// options.direct_io is false; see docs/BENCHMARKS.md, "io", for why not
// through io_uring); a file that changes size while being read is Aborted
// with Detail::kSourceChanged.
Result<Manifest> pack_files(std::span<const PackSource> sources, const PackOptions& options, FrameSink& sink);

}  // namespace ferry
