// pack_file.cc: see pack_file.h.
#include "store/pack_file.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "base/crc32c.h"
#include "base/posix_file.h"
#include "codec/frame.h"
#include "codec/limits.h"

namespace ferry {
namespace {

// How much of a pack the resynchronising search reads at a time.
constexpr std::size_t kResyncWindowBytes = 1u << 20;

std::uint32_t load_u32(const std::byte* p) {
  std::uint32_t v;
  std::memcpy(&v, p, 4);
  return v;  // little-endian host (x86-64, aarch64)
}
void store_u32(std::byte* p, std::uint32_t v) { std::memcpy(p, &v, 4); }

bool has_magic(const std::byte* p, const std::uint8_t (&magic)[4]) { return std::memcmp(p, magic, 4) == 0; }

std::string where(const std::filesystem::path& path, std::uint64_t offset) {
  return path.string() + " at offset " + std::to_string(offset);
}

// Reads and checks the record at `offset`; fills `rec` and `buf` (the whole
// record). False when the bytes there are not a good record.
Result<bool> try_record(int fd, const std::filesystem::path& path, std::uint64_t offset,
                        std::uint64_t file_bytes, std::vector<std::byte>& buf, PackRecord& rec) {
  if (file_bytes - offset < kRecordOverheadBytes + kFrameHeaderBytes) return false;
  std::byte head[kRecordHeaderBytes];
  RETURN_IF_ERROR(pread_exact(fd, head, offset, path));
  if (!has_magic(head, kRecordMagic)) return false;
  const std::uint32_t frame_bytes = load_u32(head + 4);
  if (frame_bytes < kFrameHeaderBytes || frame_bytes > kMaxFrameBytes) return false;
  if (file_bytes - offset < record_bytes(frame_bytes)) return false;
  buf.resize(record_bytes(frame_bytes));
  RETURN_IF_ERROR(pread_exact(fd, buf, offset, path));
  const std::size_t body = kRecordHeaderBytes + frame_bytes;
  const std::uint32_t want = load_u32(buf.data() + body);
  if (mask_crc(crc32c(std::span(buf.data(), body))) != want) return false;
  auto header = parse_frame_header_only(std::span(buf.data() + kRecordHeaderBytes, frame_bytes));
  if (!header) return false;
  rec.offset = offset;
  rec.frame_bytes = frame_bytes;
  rec.id = header->chunk_id;
  return true;
}

// The offset of the next good record at or after `from`, or nullopt.
Result<std::optional<std::uint64_t>> resync(int fd, const std::filesystem::path& path, std::uint64_t from,
                                            std::uint64_t file_bytes, std::vector<std::byte>& buf,
                                            PackRecord& rec) {
  std::vector<std::byte> window;
  std::uint64_t pos = from;
  while (pos + 4 <= file_bytes) {
    const std::size_t n =
        static_cast<std::size_t>(std::min<std::uint64_t>(kResyncWindowBytes, file_bytes - pos));
    window.resize(n);
    RETURN_IF_ERROR(pread_exact(fd, window, pos, path));
    for (std::size_t i = 0; i + 4 <= n; ++i) {
      if (!has_magic(window.data() + i, kRecordMagic)) continue;
      ASSIGN_OR_RETURN(bool good, try_record(fd, path, pos + i, file_bytes, buf, rec));
      if (good) return std::optional<std::uint64_t>(pos + i);
    }
    if (n < 4) break;
    pos += n - 3;  // a magic may straddle two windows
  }
  return std::optional<std::uint64_t>();
}

// A record's framing with its header filled in and the trailer still zero.
RecordFraming record_header(std::size_t frame_bytes) {
  FERRY_CHECK(frame_bytes <= kMaxFrameBytes);
  RecordFraming f{};
  std::memcpy(f.header.data(), kRecordMagic, 4);
  store_u32(f.header.data() + 4, static_cast<std::uint32_t>(frame_bytes));
  return f;
}

}  // namespace

std::string pack_file_name(std::uint32_t number) {
  char name[32];
  std::snprintf(name, sizeof name, "%08u.pack", number);
  return name;
}

std::optional<std::uint32_t> parse_pack_file_name(std::string_view name) {
  if (name.size() != 13 || name.substr(8) != ".pack") return std::nullopt;
  std::uint32_t v = 0;
  for (char c : name.substr(0, 8)) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<std::uint32_t>(c - '0');
  }
  return v;
}

std::array<std::byte, kPackHeaderBytes> pack_header() {
  std::array<std::byte, kPackHeaderBytes> h{};
  std::memcpy(h.data(), kPackMagic, 4);
  h[4] = std::byte{kPackVersion};
  return h;
}

Status check_pack_header(std::span<const std::byte> bytes, const std::filesystem::path& path) {
  if (bytes.size() < kPackHeaderBytes || !has_magic(bytes.data(), kPackMagic)) {
    return Status::corruption(path.string() + ": not a ferry pack (bad magic)");
  }
  if (bytes[4] != std::byte{kPackVersion}) {
    return Status::unsupported(path.string() + ": pack version " +
                               std::to_string(static_cast<int>(bytes[4])) + " (this build reads 1)");
  }
  if (bytes[5] != std::byte{0} || bytes[6] != std::byte{0} || bytes[7] != std::byte{0}) {
    return Status::corruption(path.string() + ": pack header reserved bytes are not zero");
  }
  return Status::ok();
}

RecordFraming frame_record(std::span<const std::byte> frame) {
  RecordFraming f = record_header(frame.size());
  store_u32(f.trailer.data(), mask_crc(crc32c(frame, crc32c(f.header))));
  return f;
}

RecordFraming frame_record(std::span<const std::byte> frame, const FrameHeader& verified) {
  RecordFraming f = record_header(frame.size());
  store_u32(f.trailer.data(), mask_crc(frame_crc32c(verified, frame, crc32c(f.header))));
  return f;
}

Result<PackScan> scan_pack(int fd, const std::filesystem::path& path, std::uint64_t from, std::uint64_t end) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return Status::from_errno(errno, "stat " + path.string());
  PackScan scan;
  scan.file_bytes = std::min(static_cast<std::uint64_t>(st.st_size), end);
  FERRY_CHECK(from >= kPackHeaderBytes);
  if (from > scan.file_bytes) {
    return Status::corruption(path.string() + ": shorter (" + std::to_string(scan.file_bytes) +
                              " bytes) than the index says (" + std::to_string(from) + ")");
  }
  std::vector<std::byte> buf;
  std::uint64_t pos = from;
  scan.valid_end = from;
  while (pos < scan.file_bytes) {
    PackRecord rec;
    ASSIGN_OR_RETURN(bool good, try_record(fd, path, pos, scan.file_bytes, buf, rec));
    if (!good) {
      ASSIGN_OR_RETURN(auto next, resync(fd, path, pos + 1, scan.file_bytes, buf, rec));
      if (!next) break;  // nothing good follows: a torn tail from valid_end
      scan.damaged.emplace_back(pos, *next);
      pos = *next;
    }
    scan.records.push_back(rec);
    pos += record_bytes(rec.frame_bytes);
    scan.valid_end = pos;
  }
  return scan;
}

Status read_record(int fd, const std::filesystem::path& path, std::uint64_t offset, std::uint32_t frame_bytes,
                   std::vector<std::byte>& frame) {
  FERRY_CHECK(frame_bytes <= kMaxFrameBytes);
  std::byte head[kRecordHeaderBytes];
  RETURN_IF_ERROR(pread_exact(fd, head, offset, path));
  if (!has_magic(head, kRecordMagic) || load_u32(head + 4) != frame_bytes) {
    return Status::corruption(where(path, offset) + ": record header does not match the index");
  }
  frame.resize(frame_bytes);
  RETURN_IF_ERROR(pread_exact(fd, frame, offset + kRecordHeaderBytes, path));
  std::byte trailer[kRecordTrailerBytes];
  RETURN_IF_ERROR(pread_exact(fd, trailer, offset + kRecordHeaderBytes + frame_bytes, path));
  const std::uint32_t crc = crc32c(frame, crc32c(head));
  if (mask_crc(crc) != load_u32(trailer)) {
    return Status::corruption(where(path, offset) + ": record CRC mismatch");
  }
  return Status::ok();
}

}  // namespace ferry
