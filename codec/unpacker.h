// unpacker.h: frames -> verified bytes. verify_frames decodes every frame of
// a snapshot, recomputes every chunk id and every file root and stops at the
// first bad chunk, naming its id, file and file offset. unpack_frames does
// the same and writes each file under a temporary name beside its
// destination, fsyncs it and renames it into place only once its root
// matches, with the recorded mode and mtime, so a failed unpack never leaves
// a partly written file under a real name. Frames come from a FrameSource
// (a local archive read with pread, or a DR receiver over the network:
// replication/restore.h) and are decoded in parallel on a ThreadPool with a
// bounded window of chunks in flight, in file order.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "base/lent_bytes.h"
#include "base/status.h"
#include "codec/archive.h"

namespace ferry {

class ThreadPool;

// Where the frames of one snapshot come from.
class FrameSource {
 public:
  virtual ~FrameSource() = default;
  // The snapshot: its files and their chunks, in order.
  virtual const Manifest& manifest() const = 0;
  // Names the source in error messages (an archive's path, "HOST:PORT
  // snapshot NAME").
  virtual std::string describe() const = 0;
  // The whole frame (header + payload) of chunk `chunk` of file `file`
  // (indexes into manifest().files) into `out`, resized. Called once per
  // chunk, concurrently from pool threads, in roughly file order. The
  // frame is untrusted: the unpacker verifies it.
  virtual Status read_frame(std::size_t file, std::size_t chunk, std::vector<std::byte>& out) const = 0;
  // The same frame lent in place where the source holds it in memory
  // already (a store's read window), saving the copy into `out` of
  // read_frame: true with `lent` set, false when the caller is to use
  // read_frame (the default). Untrusted like read_frame.
  virtual Result<bool> lend_frame(std::size_t file, std::size_t chunk, LentBytes& lent) const {
    (void)file, (void)chunk, (void)lent;
    return false;
  }
  // The frame of any chunk the source holds, by id: a delta frame's base
  // (docs/FORMAT.md 3.1), which may belong to another snapshot. Called
  // concurrently from pool threads. Untrusted like read_frame. The default
  // holds none (a source of standalone frames only).
  virtual Status read_chunk_frame(const Digest& id, std::vector<std::byte>& out) const {
    (void)out;
    return Status::unsupported(describe() + " cannot fetch base chunk " + to_hex(id) + " of a delta frame");
  }
};

// A FrameSource over an open archive (which must outlive it).
class ArchiveFrameSource final : public FrameSource {
 public:
  explicit ArchiveFrameSource(const ArchiveReader& archive) : archive_(archive) {}
  const Manifest& manifest() const override { return archive_.manifest(); }
  std::string describe() const override { return archive_.path().string(); }
  Status read_frame(std::size_t file, std::size_t chunk, std::vector<std::byte>& out) const override {
    return archive_.read_frame(file, chunk, out);
  }

 private:
  const ArchiveReader& archive_;
};

struct UnpackProgress {
  std::uint64_t logical_done = 0;  // decoded and verified bytes
  std::uint64_t logical_total = 0;
  std::uint64_t frame_bytes = 0;  // frame bytes read so far
};

struct UnpackOptions {
  ThreadPool* pool = nullptr;                           // nullptr: ThreadPool::shared()
  std::size_t window_chunks = 0;                        // chunks in flight; 0: 2 x pool threads
  std::function<void(const UnpackProgress&)> progress;  // as chunks are done, in order; may be empty
  // Restore the recorded mode exactly (setuid, setgid, sticky and group or
  // other write included). Off by default: a manifest comes from a host the
  // DR site does not trust, so only the permission bits are restored, less
  // group and other write (mode & 0755).
  bool exact_modes = false;
};

// The mode a restored file gets for the recorded `mode`.
unsigned restored_mode(unsigned mode, bool exact_modes);

// Decodes and verifies everything; Corruption naming the first bad chunk.
Status verify_frames(const FrameSource& source, const UnpackOptions& options = {});

// Restores every file of the source's snapshot under `out_dir` (created if
// missing). Files are written only beneath `out_dir`: a symbolic link found
// inside it where a directory of the snapshot goes is refused
// (PermissionDenied naming it), never followed.
Status unpack_frames(const FrameSource& source, const std::filesystem::path& out_dir,
                     const UnpackOptions& options = {});

// The same over an archive.
Status verify_archive(const ArchiveReader& archive, const UnpackOptions& options = {});

// Restores every file of the archive under `out_dir` (created if missing).
Status unpack_archive(const ArchiveReader& archive, const std::filesystem::path& out_dir,
                      const UnpackOptions& options = {});

}  // namespace ferry
