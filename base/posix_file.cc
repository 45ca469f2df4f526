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

Result<UniqueFd> open_dir_beneath(int root, const std::filesystem::path& relative,
                                  const std::filesystem::path& shown) {
  if (relative.is_absolute()) return Status::invalid_argument("absolute path " + relative.string());
  int at = root;
  UniqueFd cur;
  std::filesystem::path walked = shown;
  for (const auto& part : relative) {
    const std::string comp = part.string();
    if (comp.empty() || comp == ".") continue;
    if (comp == "..")
      return Status::invalid_argument("path " + relative.string() + " leaves " + shown.string());
    walked /= comp;
    if (::mkdirat(at, comp.c_str(), 0755) != 0 && errno != EEXIST) {
      return Status::from_errno(errno, "mkdir " + walked.string());
    }
    int fd;
    do {
      fd = ::openat(at, comp.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) {
      struct stat st {};
      if ((errno == ELOOP || errno == ENOTDIR) &&
          ::fstatat(at, comp.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode)) {
        return Status::permission_denied(walked.string() +
                                         " is a symbolic link: ferry writes only beneath the target "
                                         "directory and never through a link");
      }
      return Status::from_errno(errno, "open directory " + walked.string());
    }
    cur = UniqueFd(fd);
    at = cur.get();
  }
  if (!cur.valid()) {
    int fd = ::fcntl(root, F_DUPFD_CLOEXEC, 0);
    if (fd < 0) return Status::from_errno(errno, "dup directory fd of " + shown.string());
    cur = UniqueFd(fd);
  }
  return cur;
}

Result<AtomicFile> AtomicFile::create(const std::filesystem::path& target, unsigned mode) {
  const std::filesystem::path parent = target.parent_path();
  ASSIGN_OR_RETURN(UniqueFd dir, open_fd(parent.empty() ? "." : parent, O_RDONLY | O_DIRECTORY));
  return create_in(std::move(dir), target.filename().string(), target, mode);
}

Result<AtomicFile> AtomicFile::create_in(UniqueFd dir, const std::string& name,
                                         const std::filesystem::path& shown, unsigned mode) {
  static std::atomic<std::uint64_t> counter{0};
  AtomicFile f;
  f.dir_ = std::move(dir);
  f.name_ = name;
  f.temp_name_ =
      name + std::string(kTempFileMarker) + std::to_string(::getpid()) + "-" + std::to_string(counter++);
  f.target_ = shown;
  f.temp_ = shown.parent_path() / f.temp_name_;
  int fd;
  do {
    fd = ::openat(f.dir_.get(), f.temp_name_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                  mode);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return Status::from_errno(errno, "open " + f.temp_.string());
  f.fd_ = UniqueFd(fd);
  return f;
}

AtomicFile::AtomicFile(AtomicFile&& o) noexcept
    : dir_(std::move(o.dir_)), fd_(std::move(o.fd_)), name_(std::move(o.name_)),
      temp_name_(std::move(o.temp_name_)), target_(std::move(o.target_)), temp_(std::move(o.temp_)),
      committed_(std::exchange(o.committed_, true)) {}

AtomicFile& AtomicFile::operator=(AtomicFile&& o) noexcept {
  if (this != &o) {
    this->~AtomicFile();
    dir_ = std::move(o.dir_);
    fd_ = std::move(o.fd_);
    name_ = std::move(o.name_);
    temp_name_ = std::move(o.temp_name_);
    target_ = std::move(o.target_);
    temp_ = std::move(o.temp_);
    committed_ = std::exchange(o.committed_, true);
  }
  return *this;
}

AtomicFile::~AtomicFile() {
  fd_.reset();
  if (!committed_ && dir_.valid() && !temp_name_.empty()) ::unlinkat(dir_.get(), temp_name_.c_str(), 0);
}

Status AtomicFile::set_mode(unsigned mode) {
  if (::fchmod(fd_.get(), mode) != 0) return Status::from_errno(errno, "chmod " + temp_.string());
  return Status::ok();
}

Status AtomicFile::commit() {
  RETURN_IF_ERROR(fsync_fd(fd_.get(), temp_));
  if (::close(fd_.release()) != 0) return Status::from_errno(errno, "close " + temp_.string());
  if (::renameat(dir_.get(), temp_name_.c_str(), dir_.get(), name_.c_str()) != 0) {
    return Status::from_errno(errno, "rename " + temp_.string() + " to " + target_.string());
  }
  committed_ = true;
  return fsync_fd(dir_.get(), target_.parent_path());
}

}  // namespace ferry
