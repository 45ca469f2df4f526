// posix_file.h: the few POSIX file operations the pack/unpack pipeline needs,
// wrapped so that every descriptor is owned (RAII), every short read or write
// is retried, and every failure becomes a Status naming the path and errno
// text. AtomicFile gives "all or nothing" output: data goes to a temporary
// name beside the target and appears under the target name only after fsync
// and rename; an abandoned AtomicFile removes its temporary file.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>

#include "base/status.h"
#include "base/unique_fd.h"

namespace ferry {

// open(2) with O_CLOEXEC added; IOError "open PATH: <errno text>" on failure.
Result<UniqueFd> open_fd(const std::filesystem::path& path, int flags, unsigned mode = 0644);

// Reads exactly out.size() bytes at `offset`; a short file is Corruption
// ("PATH: unexpected end of file at offset N"), an OS error is IOError.
Status pread_exact(int fd, std::span<std::byte> out, std::uint64_t offset, const std::filesystem::path& path);
// Writes all of `data` at `offset`.
Status pwrite_all(int fd, std::span<const std::byte> data, std::uint64_t offset,
                  const std::filesystem::path& path);
Status fsync_fd(int fd, const std::filesystem::path& path);
// fsyncs a directory, so that a rename inside it is durable.
Status fsync_dir(const std::filesystem::path& dir);

// Opens directory `relative` beneath the directory `root` (an open
// directory fd), creating missing components with mode 0755, without ever
// following a symbolic link: each component is opened with O_NOFOLLOW from
// its parent's fd, so a link planted inside the tree (`root/sub ->
// /elsewhere`) cannot redirect what is written. `relative` must not be
// absolute nor contain "..". `shown` names `root` in messages. A symlinked
// component is PermissionDenied naming it.
Result<UniqueFd> open_dir_beneath(int root, const std::filesystem::path& relative,
                                  const std::filesystem::path& shown);

// Part of every temporary name AtomicFile makes; a name holding it is an
// interrupted write, which the store removes when it opens (so the store
// refuses snapshot names that hold it).
inline constexpr std::string_view kTempFileMarker = ".ferry-tmp-";

// A file written under a temporary name and renamed into place by commit().
// All operations are relative to the parent directory's fd, held from
// create to commit, so the file lands in the directory that was opened even
// if a path component is swapped meanwhile.
class AtomicFile {
 public:
  // Creates "<target>.ferry-tmp-<pid>-<n>" beside `target` with `mode`.
  static Result<AtomicFile> create(const std::filesystem::path& target, unsigned mode = 0644);
  // The same in the open directory `dir` (moved in), for the file `name`
  // (one component); `shown` is the target's path for messages. Neither
  // the temporary file nor the target is followed if it is a symlink: the
  // rename replaces a link, never what it points at.
  static Result<AtomicFile> create_in(UniqueFd dir, const std::string& name,
                                      const std::filesystem::path& shown, unsigned mode = 0644);
  AtomicFile() = default;
  AtomicFile(AtomicFile&&) noexcept;
  AtomicFile& operator=(AtomicFile&&) noexcept;
  ~AtomicFile();  // unlinks the temporary file unless committed

  int fd() const { return fd_.get(); }
  const std::filesystem::path& temp_path() const { return temp_; }
  const std::filesystem::path& target() const { return target_; }

  // Sets the permission bits exactly (umask does not apply).
  Status set_mode(unsigned mode);
  // fsync, close, rename onto the target, fsync the directory.
  Status commit();

 private:
  UniqueFd dir_;  // the parent directory
  UniqueFd fd_;
  std::string name_, temp_name_;  // within dir_
  std::filesystem::path target_;
  std::filesystem::path temp_;
  bool committed_ = false;
};

}  // namespace ferry
