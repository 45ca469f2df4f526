// unpacker.h: archive -> verified bytes. verify_archive decodes every frame
// of an archive, recomputes every chunk id and every file root and stops at
// the first bad chunk, naming its id, file and file offset. unpack_archive
// does the same and writes each file under a temporary name beside its
// destination, fsyncs it and renames it into place only once its root
// matches, with the recorded mode and mtime, so a failed unpack never
// leaves a partly written file under a real name. Frames are read with
// pread and decoded in parallel on a ThreadPool with a bounded window of
// chunks in flight, in file order.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>

#include "codec/archive.h"
#include "codec/status.h"

namespace ferry {

class ThreadPool;

struct UnpackProgress {
  std::uint64_t logical_done = 0;   // decoded and verified bytes
  std::uint64_t logical_total = 0;
  std::uint64_t frame_bytes = 0;    // frame bytes read so far
};

struct UnpackOptions {
  ThreadPool* pool = nullptr;     // nullptr: ThreadPool::shared()
  std::size_t window_chunks = 0;  // chunks in flight; 0: 2 x pool threads
  std::function<void(const UnpackProgress&)> progress;  // after each window; may be empty
};

// Decodes and verifies everything; Corruption naming the first bad chunk.
Status verify_archive(const ArchiveReader& archive, const UnpackOptions& options = {});

// Restores every file of the archive under `out_dir` (created if missing).
Status unpack_archive(const ArchiveReader& archive, const std::filesystem::path& out_dir,
                      const UnpackOptions& options = {});

}  // namespace ferry
