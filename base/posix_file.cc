// posix_file.cc: see posix_file.h.
#include "base/posix_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <utility>

namespace ferry {

Result<UniqueFd> open_fd(const std::filesystem::path& path, int flags, unsigned mode) {
  int fd;
  do {
    fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return Status::from_errno(errno, "open " + path.string());
  return UniqueFd(fd);
}

Status pread_exact(int fd, std::span<std::byte> out, std::uint64_t offset,
                   const std::filesystem::path& path) {
  std::size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::pread(fd, out.data() + done, out.size() - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::from_errno(errno,
                                "read " + path.string() + " at offset " + std::to_string(offset + done));
    }
    if (n == 0) {
      return Status::corruption(path.string() + ": unexpected end of file at offset " +
                                std::to_string(offset + done));
    }
    done += static_cast<std::size_t>(n);
  }
  return Status::ok();
}

Status pwrite_all(int fd, std::span<const std::byte> data, std::uint64_t offset,
                  const std::filesystem::path& path) {
  std::size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::pwrite(fd, data.data() + done, data.size() - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::from_errno(errno,
                                "write " + path.string() + " at offset " + std::to_string(offset + done));
    }
    done += static_cast<std::size_t>(n);
  }
  return Status::ok();
}

Status fsync_fd(int fd, const std::filesystem::path& path) {
  if (::fsync(fd) != 0) return Status::from_errno(errno, "fsync " + path.string());
  return Status::ok();
}

Status fsync_dir(const std::filesystem::path& dir) {
  ASSIGN_OR_RETURN(UniqueFd fd, open_fd(dir.empty() ? "." : dir, O_RDONLY | O_DIRECTORY));
  return fsync_fd(fd.get(), dir);
}

Result<AtomicFile> AtomicFile::create(const std::filesystem::path& target, unsigned mode) {
  static std::atomic<std::uint64_t> counter{0};
  AtomicFile f;
  f.target_ = target;
  f.temp_ = target;
  f.temp_ += ".ferry-tmp-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
  ASSIGN_OR_RETURN(f.fd_, open_fd(f.temp_, O_WRONLY | O_CREAT | O_EXCL | O_TRUNC, mode));
  return f;
}

AtomicFile::AtomicFile(AtomicFile&& o) noexcept
    : fd_(std::move(o.fd_)), target_(std::move(o.target_)), temp_(std::move(o.temp_)),
      committed_(std::exchange(o.committed_, true)) {}

AtomicFile& AtomicFile::operator=(AtomicFile&& o) noexcept {
  if (this != &o) {
    this->~AtomicFile();
    fd_ = std::move(o.fd_);
    target_ = std::move(o.target_);
    temp_ = std::move(o.temp_);
    committed_ = std::exchange(o.committed_, true);
  }
  return *this;
}

AtomicFile::~AtomicFile() {
  fd_.reset();
  if (!committed_ && !temp_.empty()) ::unlink(temp_.c_str());
}

Status AtomicFile::set_mode(unsigned mode) {
  if (::fchmod(fd_.get(), mode) != 0) return Status::from_errno(errno, "chmod " + temp_.string());
  return Status::ok();
}

Status AtomicFile::commit() {
  RETURN_IF_ERROR(fsync_fd(fd_.get(), temp_));
  if (::close(fd_.release()) != 0) return Status::from_errno(errno, "close " + temp_.string());
  if (::rename(temp_.c_str(), target_.c_str()) != 0) {
    return Status::from_errno(errno, "rename " + temp_.string() + " to " + target_.string());
  }
  committed_ = true;
  return fsync_dir(target_.parent_path());
}

}  // namespace ferry
