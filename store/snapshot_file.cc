// snapshot_file.cc: see snapshot_file.h.
#include "store/snapshot_file.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "base/crc32c.h"
#include "codec/byte_writer.h"

namespace ferry {
namespace {

// Record layout: magic, version, 3 zero bytes, i64 committed_ns, masked
// CRC32C of the 16 bytes before it.
constexpr std::size_t kCommitRecordCrcOffset = 16;

}  // namespace

std::vector<std::byte> serialize_snapshot_file(std::int64_t committed_ns,
                                               std::span<const std::byte> manifest) {
  std::vector<std::byte> out;
  out.reserve(kCommitRecordBytes + manifest.size());
  ByteWriter w(out);
  w.bytes(kCommitRecordMagic, sizeof kCommitRecordMagic);
  w.u8(kCommitRecordVersion);
  w.u8(0);
  w.u16(0);
  w.i64(committed_ns);
  w.u32(mask_crc(crc32c(std::span(out.data(), kCommitRecordCrcOffset))));
  w.raw(manifest);
  return out;
}

Result<SnapshotFile> parse_snapshot_file(std::span<const std::byte> bytes,
                                         const std::filesystem::path& path) {
  SnapshotFile file;
  if (bytes.size() < sizeof kCommitRecordMagic ||
      std::memcmp(bytes.data(), kCommitRecordMagic, sizeof kCommitRecordMagic) != 0) {
    file.manifest = bytes;  // a bare manifest, written before commit records
    return file;
  }
  if (bytes.size() < kCommitRecordBytes) {
    return Status::corruption(path.string() + ": commit record cut short (" + std::to_string(bytes.size()) +
                              " bytes of " + std::to_string(kCommitRecordBytes) + ")");
  }
  std::uint32_t stored_crc;
  std::memcpy(&stored_crc, bytes.data() + kCommitRecordCrcOffset, 4);  // little-endian host
  if (mask_crc(crc32c(bytes.first(kCommitRecordCrcOffset))) != stored_crc) {
    return Status::corruption(path.string() + ": commit record fails its CRC");
  }
  const auto version = static_cast<std::uint8_t>(bytes[4]);
  if (version != kCommitRecordVersion) {
    return Status::unsupported(path.string() + ": commit record version " + std::to_string(version) +
                               " (this ferry reads version " + std::to_string(kCommitRecordVersion) + ")");
  }
  if (bytes[5] != std::byte{0} || bytes[6] != std::byte{0} || bytes[7] != std::byte{0}) {
    return Status::corruption(path.string() + ": commit record has non-zero reserved bytes");
  }
  std::int64_t committed_ns;
  std::memcpy(&committed_ns, bytes.data() + 8, 8);
  file.committed_ns = committed_ns;
  file.manifest = bytes.subspan(kCommitRecordBytes);
  return file;
}

SnapshotInfo snapshot_info(std::string name, const Manifest& m, std::int64_t committed_ns,
                           std::uint64_t manifest_bytes) {
  SnapshotInfo info;
  info.name = std::move(name);
  info.host = m.host;
  info.job = m.job;
  info.step = m.step;
  info.created_ns = m.created_ns;
  info.committed_ns = committed_ns;
  info.files = m.files.size();
  info.chunks = m.chunk_count();
  info.logical_bytes = m.logical_bytes();
  info.manifest_bytes = manifest_bytes;
  info.frame_bytes = m.frame_bytes();
  info.origin = m.origin;
  return info;
}

void sort_snapshots(std::vector<SnapshotInfo>& snapshots) {
  std::sort(snapshots.begin(), snapshots.end(), [](const SnapshotInfo& a, const SnapshotInfo& b) {
    return a.created_ns != b.created_ns ? a.created_ns < b.created_ns : a.name < b.name;
  });
}

}  // namespace ferry
