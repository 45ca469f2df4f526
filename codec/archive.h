// archive.h: the single-file `.ferry` container (docs/FORMAT.md section 6):
// an 8-byte header, the frames back to back in file order (a chunk id that
// occurs twice in a snapshot is stored once), the snapshot manifest, a frame
// index (one offset per manifest chunk) and a fixed 48-byte trailer that lets
// a reader find the manifest and index from the end of the file. The writer
// is a FrameSink and writes to a temporary name, renamed into place only
// after the trailer is fsynced; the reader validates the trailer, manifest
// and index before handing out frames, and reads frames with pread, so many
// threads can read one archive at once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <unordered_map>
#include <vector>

#include "base/posix_file.h"
#include "base/status.h"
#include "codec/manifest.h"
#include "codec/packer.h"

namespace ferry {

inline constexpr std::uint8_t kArchiveMagic[4] = {0x46, 0x52, 0x59, 0x41};  // "FRYA"
inline constexpr std::uint8_t kTrailerMagic[4] = {0x46, 0x52, 0x59, 0x54};  // "FRYT"
inline constexpr std::uint8_t kArchiveVersion = 1;
inline constexpr std::size_t kArchiveHeaderBytes = 8;
inline constexpr std::size_t kArchiveTrailerBytes = 48;
inline constexpr std::size_t kFrameIndexEntryBytes = 8;

class ArchiveWriter final : public FrameSink {
 public:
  // Starts `target` (a temporary file beside it until finish()).
  static Result<ArchiveWriter> create(const std::filesystem::path& target);
  ArchiveWriter(ArchiveWriter&&) = default;
  ArchiveWriter& operator=(ArchiveWriter&&) = default;

  // Appends the frame unless a frame with the same chunk id is already stored.
  Status put_frame(const ManifestFile& file, const ManifestChunk& chunk,
                   std::span<const std::byte> frame) override;

  // Writes manifest, index and trailer, fsyncs and renames onto the target.
  // `manifest` must list exactly the chunks given to put_frame, in order.
  Status finish(const Manifest& manifest);

  std::uint64_t bytes_written() const { return offset_; }
  std::uint64_t frames_stored() const { return stored_; }
  std::uint64_t frames_deduplicated() const { return deduplicated_; }

 private:
  ArchiveWriter() = default;
  Status append(std::span<const std::byte> data);

  struct DigestHash {
    std::size_t operator()(const Digest& d) const;
  };
  AtomicFile file_;
  std::uint64_t offset_ = 0;
  std::uint64_t stored_ = 0;
  std::uint64_t deduplicated_ = 0;
  std::unordered_map<Digest, std::uint64_t, DigestHash> offsets_by_id_;
  std::vector<std::uint64_t> index_;  // frame offset per chunk, in manifest order
};

// An open archive. Thread-safe for concurrent read_frame calls.
class ArchiveReader {
 public:
  // Opens and validates `path`: trailer (magic, CRC; a missing one means the
  // archive is truncated or not an archive), manifest, index (CRC, one entry
  // per chunk, every frame inside the frame region). Errors name the path.
  static Result<ArchiveReader> open(const std::filesystem::path& path);

  const std::filesystem::path& path() const { return path_; }
  const Manifest& manifest() const { return manifest_; }
  std::uint64_t archive_bytes() const { return archive_bytes_; }
  // Bytes of stored frames (each deduplicated frame counted once).
  std::uint64_t stored_frame_bytes() const { return stored_frame_bytes_; }

  // Chunk `chunk` of file `file` (indexes into manifest().files): where its
  // frame starts in the archive.
  std::uint64_t frame_offset(std::size_t file, std::size_t chunk) const;

  // Reads that chunk's whole frame (header + payload) into `out` (resized).
  Status read_frame(std::size_t file, std::size_t chunk, std::vector<std::byte>& out) const;

 private:
  ArchiveReader() = default;
  // Reads and checks the frame index (every frame inside [8, frames_end)).
  Status load_index(std::uint64_t index_offset, std::uint64_t frames_end, std::uint32_t index_crc);

  std::filesystem::path path_;
  UniqueFd fd_;
  std::uint64_t archive_bytes_ = 0;
  std::uint64_t stored_frame_bytes_ = 0;
  Manifest manifest_;
  std::vector<std::uint64_t> index_;      // frame offset per chunk, manifest order
  std::vector<std::size_t> first_chunk_;  // per file: its first entry in index_
};

}  // namespace ferry
