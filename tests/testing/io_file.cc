// io_file.cc: opening files for the io engine, with the O_DIRECT fallback.
#include "tests/testing/io_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>

namespace ferry::io {

namespace {

Status open_error(int err, const std::string& path) {
  std::string what = "open " + path;
  switch (err) {
    case ENOENT:
      return Status::not_found(what + ": " + std::strerror(err));
    case EACCES:
    case EPERM:
      return Status::permission_denied(what + ": " + std::strerror(err));
    case ENOSPC:
    case EDQUOT:
      return Status::exhausted(what + ": " + std::strerror(err));
    default:
      return Status::from_errno(err, what);
  }
}

void log_direct_refused_once(const std::string& path, int err) {
  static std::atomic<bool> logged{false};
  if (!logged.exchange(true)) {
    std::fprintf(stderr, "ferry: O_DIRECT refused on %s (%s): using buffered I/O there\n", path.c_str(),
                 std::strerror(err));
  }
}

}  // namespace

File::File(UniqueFd fd, UniqueFd buffered, std::string path)
    : fd_(std::move(fd)), buffered_(std::move(buffered)),
      path_(std::make_unique<std::string>(std::move(path))) {}

Result<File> File::open(const std::string& path, const OpenOptions& options) {
  bool write = options.write || options.create || options.truncate;
  int flags = (write ? O_RDWR : O_RDONLY) | O_CLOEXEC;
  if (options.create) flags |= O_CREAT;
  if (options.truncate) flags |= O_TRUNC;

  UniqueFd buffered(::open(path.c_str(), flags, options.mode));
  if (!buffered.valid()) return open_error(errno, path);
  if (!options.direct) return File(std::move(buffered), UniqueFd(), path);

  // The second open must not truncate what the first one may already have
  // been given by the caller; O_CREAT is done by now.
  int direct_flags = (flags & ~(O_CREAT | O_TRUNC)) | O_DIRECT;
  UniqueFd direct(::open(path.c_str(), direct_flags));
  if (!direct.valid()) {
    int err = errno;
    if (err == EINVAL || err == EOPNOTSUPP) {
      log_direct_refused_once(path, err);
      return File(std::move(buffered), UniqueFd(), path);
    }
    return open_error(err, path);
  }
  return File(std::move(direct), std::move(buffered), path);
}

Result<std::uint64_t> File::size() const {
  struct stat st {};
  if (::fstat(fd(), &st) != 0) return Status::from_errno(errno, "stat " + path());
  return static_cast<std::uint64_t>(st.st_size);
}

Status File::truncate(std::uint64_t bytes) const {
  if (::ftruncate(fd(), static_cast<off_t>(bytes)) != 0) {
    return Status::from_errno(errno, "truncate " + path() + " to " + std::to_string(bytes));
  }
  return Status::ok();
}

}  // namespace ferry::io
