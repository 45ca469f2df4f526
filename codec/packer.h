// packer.h: turns files into frames. Each file is planned into chunks (on
// tensor boundaries where its safetensors layout is known), its 4 KiB leaves
// are hashed once to serve both the chunk ids and the file root, and chunks
// are coded in parallel on a ThreadPool with a bounded window of chunks in
// flight (buffers reused from window to window). Frames leave through a
// FrameSink strictly in file order, chunk by chunk, so the same code feeds a
// `.ferry` archive today and the network sender later: the packer knows
// nothing about where frames go. It returns the snapshot manifest.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "codec/limits.h"
#include "codec/manifest.h"
#include "codec/status.h"
#include "codec/zstd_codec.h"

namespace ferry {

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
};

// One input file: where to read it and the relative path it gets in the
// snapshot (validated with validate_relative_path).
struct PackSource {
  std::filesystem::path path;
  std::string rel_path;
};

// Lists what `ferry pack PATH` packs: PATH itself when it is a regular file
// (named by its file name), or every regular file below the directory PATH,
// sorted bytewise by relative path. Symlinks and special files are skipped;
// each skip adds a line to *notices when given.
Result<std::vector<PackSource>> list_pack_sources(const std::filesystem::path& path,
                                                  std::vector<std::string>* notices = nullptr);

struct PackProgress {
  std::uint64_t logical_done = 0;   // input bytes coded so far
  std::uint64_t logical_total = 0;  // all input bytes
  std::uint64_t frame_bytes = 0;    // frame bytes emitted so far (before dedup)
};

struct PackOptions {
  std::size_t chunk_bytes = kDefaultChunkBytes;
  int zstd_level = kDefaultZstdLevel;
  ThreadPool* pool = nullptr;       // nullptr: ThreadPool::shared()
  std::size_t window_chunks = 0;    // chunks in flight; 0: 2 x pool threads
  std::string host;                 // empty: this machine's host name
  std::string job;
  std::uint64_t step = 0;
  std::optional<std::int64_t> created_ns;  // unset: now (set it for reproducible output)
  std::function<void(const PackProgress&)> progress;  // after each window; may be empty
};

// Packs `sources` (in the given order, which must be strictly ascending by
// rel_path) into frames sent to `sink` and returns the manifest. Files are
// read with pread; a file that changes size while being read is an error.
Result<Manifest> pack_files(std::span<const PackSource> sources, const PackOptions& options,
                            FrameSink& sink);

}  // namespace ferry
