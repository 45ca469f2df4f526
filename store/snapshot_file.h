// snapshot_file.h: the file that publishes one snapshot in the local store,
// ROOT/<ns>/snapshots/<name>.manifest (docs/FORMAT.md section 7.4): a commit
// record the receiver writes, saying when it published the snapshot by its
// own clock, followed by the manifest exactly as the host sent it. Retention
// orders snapshots by that commit time, never by the manifest's created
// time, which the host chose.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <vector>

#include "base/status.h"
#include "codec/manifest.h"
#include "store/chunk_store.h"

namespace ferry {

inline constexpr std::uint8_t kCommitRecordMagic[4] = {0x46, 0x52, 0x59, 0x43};  // "FRYC"
inline constexpr std::uint8_t kCommitRecordVersion = 1;
inline constexpr std::size_t kCommitRecordBytes = 20;

// The commit record for `committed_ns`, then `manifest`.
std::vector<std::byte> serialize_snapshot_file(std::int64_t committed_ns,
                                               std::span<const std::byte> manifest);

struct SnapshotFile {
  // Absent in a file written before commit records existed: such a file is
  // the bare manifest, and its modification time stands for the commit time.
  std::optional<std::int64_t> committed_ns;
  std::span<const std::byte> manifest;  // points into the parsed bytes
};

// What list() reports of a published snapshot: its manifest `m` (of
// `manifest_bytes` bytes) and the store's commit time.
SnapshotInfo snapshot_info(std::string name, const Manifest& m, std::int64_t committed_ns,
                           std::uint64_t manifest_bytes);
// Orders snapshots as list() returns them: oldest first (created_ns, then name).
void sort_snapshots(std::vector<SnapshotInfo>& snapshots);

// Splits a snapshot file. A file that does not begin with the record's magic
// is taken as a bare manifest (the manifest parser judges it). A record that
// is cut short, fails its CRC or has reserved bytes set is Corruption naming
// `path`; another version is Unsupported.
Result<SnapshotFile> parse_snapshot_file(std::span<const std::byte> bytes, const std::filesystem::path& path);

}  // namespace ferry
