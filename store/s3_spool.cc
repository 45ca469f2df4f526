// s3_spool.cc: see s3_spool.h.
#include "store/s3_spool.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>

#include "base/posix_file.h"
#include "store/durable_dirs.h"
#include "store/pack_file.h"

namespace ferry {
namespace {

constexpr std::string_view kSpoolSuffix = ".spool";

}  // namespace

Result<std::unique_ptr<S3Spool>> S3Spool::open(std::filesystem::path dir) {
  RETURN_IF_ERROR(create_directories_durably(dir));
  ASSIGN_OR_RETURN(UniqueFd lock, open_fd(dir / "lock", O_RDWR | O_CREAT));
  if (::flock(lock.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) {
      return Status::unavailable("spool " + dir.string() +
                                 " is in use by another process (its lock file is held); give each gateway a "
                                 "spool directory of its own");
    }
    return Status::from_errno(errno, "flock " + (dir / "lock").string());
  }
  return std::unique_ptr<S3Spool>(new S3Spool(std::move(dir), std::move(lock)));
}

std::filesystem::path S3Spool::file_of(std::uint64_t seq) const {
  return dir_ / (std::to_string(seq) + std::string(kSpoolSuffix));
}

Result<S3Spool::Leftovers> S3Spool::leftovers(std::vector<std::string>& notes) {
  std::vector<std::filesystem::path> files;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir_, ec)) {
    if (e.path().extension() == kSpoolSuffix) files.push_back(e.path());
  }
  if (ec) return Status::io_error("listing spool " + dir_.string() + ": " + ec.message());
  std::sort(files.begin(), files.end());
  Leftovers out;
  std::vector<std::byte> frame;
  for (const auto& path : files) {
    ASSIGN_OR_RETURN(UniqueFd fd, open_fd(path, O_RDONLY));
    out.files.push_back(path);
    std::array<std::byte, kPackHeaderBytes> header{};
    if (!pread_exact(fd.get(), header, 0, path) || !check_pack_header(header, path)) {
      // Cut before its header was durable: nothing in it was acknowledged.
      notes.push_back(path.string() + ": no pack header, holds nothing");
      continue;
    }
    ASSIGN_OR_RETURN(PackScan scan, scan_pack(fd.get(), path, kPackHeaderBytes));
    for (const auto& [begin, end] : scan.damaged) {
      notes.push_back(path.string() + ": bytes " + std::to_string(begin) + "-" + std::to_string(end) +
                      " hold no good record (damaged on disk); the records around them are kept");
    }
    if (scan.valid_end < scan.file_bytes) {
      notes.push_back(path.string() + ": " + std::to_string(scan.file_bytes - scan.valid_end) +
                      " bytes of torn tail (never acknowledged) dropped");
    }
    for (const PackRecord& r : scan.records) {
      std::vector<std::byte> record(record_bytes(r.frame_bytes));
      RETURN_IF_ERROR(pread_exact(fd.get(), record, r.offset, path));
      out.bytes += record.size();
      out.ids.push_back(r.id);
      out.records.push_back(std::move(record));
    }
  }
  return out;
}

Status S3Spool::write(std::uint64_t seq, std::uint64_t offset, std::span<const std::byte> records) {
  FERRY_CHECK(offset >= kPackHeaderBytes);
  std::lock_guard lock(mu_);
  const std::filesystem::path path = file_of(seq);
  auto it = files_.find(seq);
  if (it == files_.end()) {
    ASSIGN_OR_RETURN(UniqueFd fd, open_fd(path, O_WRONLY | O_CREAT | O_TRUNC));
    const auto header = pack_header();
    RETURN_IF_ERROR(pwrite_all(fd.get(), header, 0, path));
    // The file's name must survive a crash as well as its bytes.
    RETURN_IF_ERROR(fsync_dir(dir_));
    it = files_.emplace(seq, std::move(fd)).first;
  }
  RETURN_IF_ERROR(pwrite_all(it->second.get(), records, offset, path));
  if (::fdatasync(it->second.get()) != 0) return Status::from_errno(errno, "fdatasync " + path.string());
  return Status::ok();
}

Status S3Spool::remove(std::uint64_t seq) {
  std::lock_guard lock(mu_);
  files_.erase(seq);
  const std::filesystem::path path = file_of(seq);
  if (::unlink(path.c_str()) != 0 && errno != ENOENT)
    return Status::from_errno(errno, "unlink " + path.string());
  return Status::ok();
}

Status S3Spool::remove_files(const std::vector<std::filesystem::path>& files) {
  for (const auto& path : files) {
    if (::unlink(path.c_str()) != 0 && errno != ENOENT)
      return Status::from_errno(errno, "unlink " + path.string());
  }
  return fsync_dir(dir_);
}

}  // namespace ferry
