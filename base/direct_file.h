// direct_file.h: a file read around the page cache. Reading a checkpoint
// through the page cache would evict the training job's own cached pages and
// fill memory with bytes nobody reads again, so the packer reads with
// O_DIRECT where the file system allows it: aligned buffers (AlignedBytes),
// offsets on kDirectAlignBytes, and the last, partial block of a file read
// whole into the buffer's padding (the kernel stops at end of file), so the
// tail bypasses the cache too and no second, buffered descriptor is needed.
// Where the file system refuses O_DIRECT (open(2) fails with EINVAL or
// EOPNOTSUPP: ramfs, tmpfs before Linux 6.6, some FUSE mounts) or needs a
// coarser alignment than kDirectAlignBytes, the file is read through the page
// cache instead, and the first such file is named once per process on stderr.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>

#include "base/status.h"
#include "base/unique_fd.h"

namespace ferry {

class DirectReadFile {
 public:
  // Opens `path` read-only: with O_DIRECT when `direct` is true and the file
  // system allows it, buffered otherwise (see the top of this file). Without
  // `follow_symlinks`, a symlink as the last component is refused (O_NOFOLLOW:
  // ELOOP) rather than followed.
  static Result<DirectReadFile> open(const std::filesystem::path& path, bool direct = true,
                                     bool follow_symlinks = true);

  int fd() const { return fd_.get(); }
  // Whether reads bypass the page cache.
  bool direct() const { return direct_; }
  const std::filesystem::path& path() const { return path_; }

  // Reads bytes [offset, offset + length) of the file into buf.first(length).
  // A file that ends first is Corruption ("PATH: unexpected end of file at
  // offset N"), an OS error IOError naming the path and offset. With direct(),
  // bytes of buf past `length` up to the next block boundary may be written.
  // REQUIRES with direct(): offset a multiple of kDirectAlignBytes, buf.data()
  // aligned to kDirectAlignBytes and buf.size() >= length rounded up to it
  // (AlignedBytes::padded() meets all three for a chunk of the packer).
  // Without direct(): buf.size() >= length.
  Status read(std::span<std::byte> buf, std::size_t length, std::uint64_t offset) const;

 private:
  DirectReadFile(UniqueFd fd, bool direct, std::filesystem::path path)
      : fd_(std::move(fd)), direct_(direct), path_(std::move(path)) {}

  UniqueFd fd_;
  bool direct_ = false;
  std::filesystem::path path_;
};

// Files opened buffered in this process because their file system refused
// O_DIRECT (only the first is named on stderr).
std::uint64_t direct_refusal_count();

}  // namespace ferry
