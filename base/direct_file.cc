// direct_file.cc: see direct_file.h.
#include "base/direct_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "base/aligned_bytes.h"
#include "base/limits.h"
#include "base/posix_file.h"

namespace ferry {
namespace {

std::atomic<std::uint64_t> g_refusals{0};

// Counts a file read buffered for want of O_DIRECT; names the first one.
void note_refusal(const std::filesystem::path& path, const std::string& why) {
  if (g_refusals.fetch_add(1) == 0) {
    std::fprintf(stderr, "ferry: O_DIRECT refused on %s (%s): reading files there through the page cache\n",
                 path.c_str(), why.c_str());
  }
}

// Why an O_DIRECT descriptor cannot serve kDirectAlignBytes-aligned reads, or
// empty when it can. Kernels before 6.1 do not report the alignment; there the
// 4 KiB assumption stands.
std::string direct_alignment_problem(int fd) {
#ifdef STATX_DIOALIGN
  struct statx sx {};
  if (::statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx) != 0 || !(sx.stx_mask & STATX_DIOALIGN)) return {};
  if (sx.stx_dio_offset_align == 0) return "direct I/O not supported for this file";
  if (sx.stx_dio_offset_align > kDirectAlignBytes || sx.stx_dio_mem_align > kDirectAlignBytes) {
    return "needs " + std::to_string(sx.stx_dio_offset_align) + "-byte alignment";
  }
#else
  (void)fd;
#endif
  return {};
}

}  // namespace

std::uint64_t direct_refusal_count() { return g_refusals.load(); }

Result<DirectReadFile> DirectReadFile::open(const std::filesystem::path& path, bool direct,
                                            bool follow_symlinks) {
  const int nofollow = follow_symlinks ? 0 : O_NOFOLLOW;
  if (direct) {
    int fd;
    do {
      fd = ::open(path.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC | nofollow);
    } while (fd < 0 && errno == EINTR);
    if (fd >= 0) {
      UniqueFd owned(fd);
      std::string problem = direct_alignment_problem(fd);
      if (problem.empty()) return DirectReadFile(std::move(owned), true, path);
      note_refusal(path, problem);
    } else if (errno == EINVAL || errno == EOPNOTSUPP) {
      note_refusal(path, std::strerror(errno));
    } else {
      return Status::from_errno(errno, "open " + path.string());
    }
  }
  ASSIGN_OR_RETURN(UniqueFd fd, open_fd(path, O_RDONLY | nofollow));
  return DirectReadFile(std::move(fd), false, path);
}

Status DirectReadFile::read(std::span<std::byte> buf, std::size_t length, std::uint64_t offset) const {
  if (!direct_) return pread_exact(fd_.get(), buf.first(length), offset, path_);
  const std::size_t padded = round_up_to_direct_align(length);
  FERRY_CHECK(offset % kDirectAlignBytes == 0);
  FERRY_CHECK(reinterpret_cast<std::uintptr_t>(buf.data()) % kDirectAlignBytes == 0);
  FERRY_CHECK(buf.size() >= padded);
  std::size_t done = 0;
  while (done < length) {
    ssize_t n = ::pread(fd_.get(), buf.data() + done, padded - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::from_errno(errno,
                                "read " + path_.string() + " at offset " + std::to_string(offset + done));
    }
    done += static_cast<std::size_t>(n);
    // A transfer that stops off a block boundary, or moves nothing, met the
    // end of the file; it may not stop before `length`.
    if (done < length && (n == 0 || done % kDirectAlignBytes != 0)) {
      return Status::corruption(path_.string() + ": unexpected end of file at offset " +
                                std::to_string(offset + done));
    }
  }
  return Status::ok();
}

}  // namespace ferry
