// io_file.h: a file opened for the io engine's file operations, a test and
// benchmark aid (tests/io, `ferry-bench io`): ferry's own files are read and
// written with plain pread/pwrite (base/direct_file.h, base/posix_file.h;
// docs/BENCHMARKS.md, "io", has the measurements that chose this), so only
// the engine's tests and benchmark open files for it. With direct I/O asked
// for, it holds two descriptors on the same file: one with O_DIRECT for
// aligned transfers and one without it for the unaligned heads and tails
// that O_DIRECT refuses (the engine picks per operation). Where the
// filesystem refuses O_DIRECT (ramfs, some FUSE and overlay mounts) the file
// falls back to buffered I/O and says so once per process.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "base/status.h"
#include "base/unique_fd.h"
#include "io/engine.h"

namespace ferry::io {

struct OpenOptions {
  bool write = false;     // open read-write instead of read-only
  bool create = false;    // create when missing (implies write)
  bool truncate = false;  // cut to zero length (implies write)
  bool direct = false;    // O_DIRECT for aligned transfers, when the filesystem allows it
  unsigned mode = 0644;   // permissions of a created file
};

class File {
 public:
  static Result<File> open(const std::string& path, const OpenOptions& options);

  File(File&&) noexcept = default;
  File& operator=(File&&) noexcept = default;

  // The descriptor for aligned transfers (O_DIRECT when direct() is true).
  int fd() const { return fd_.get(); }
  // The descriptor without O_DIRECT; -1 when fd() is already buffered.
  int buffered_fd() const { return buffered_.get(); }
  bool direct() const { return buffered_.valid(); }
  // What the engine's file operations (Op::read, Op::write, ...) take.
  FileRef ref() const { return {fd(), buffered_fd(), path_.get()}; }
  // Stable for the life of the File, also across moves: operations point at it.
  const std::string& path() const { return *path_; }

  Result<std::uint64_t> size() const;
  Status truncate(std::uint64_t bytes) const;

 private:
  File(UniqueFd fd, UniqueFd buffered, std::string path);

  UniqueFd fd_;
  UniqueFd buffered_;
  std::unique_ptr<std::string> path_;
};

}  // namespace ferry::io
