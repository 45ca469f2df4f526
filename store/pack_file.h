// pack_file.h: the receiver's append-only pack files (docs/FORMAT.md section
// 7.1). A pack is an 8-byte header followed by records, each a ferry frame
// wrapped in a length and a CRC so that a torn append is recognised and a
// damaged record is skipped without losing the records after it. This file
// knows the bytes; store/local_store.cc decides what to do about them.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/status.h"
#include "codec/frame.h"
#include "codec/tree_hash.h"

namespace ferry {

inline constexpr std::uint8_t kPackMagic[4] = {0x46, 0x52, 0x59, 0x50};  // "FRYP"
inline constexpr std::uint8_t kPackVersion = 1;
inline constexpr std::size_t kPackHeaderBytes = 8;
inline constexpr std::uint8_t kRecordMagic[4] = {0x46, 0x52, 0x59, 0x52};  // "FRYR"
inline constexpr std::size_t kRecordHeaderBytes = 8;                       // magic + frame length
inline constexpr std::size_t kRecordTrailerBytes = 4;                      // masked CRC32C
inline constexpr std::size_t kRecordOverheadBytes = kRecordHeaderBytes + kRecordTrailerBytes;

// Bytes a record holding a frame of `frame_bytes` takes in a pack.
constexpr std::uint64_t record_bytes(std::uint64_t frame_bytes) { return kRecordOverheadBytes + frame_bytes; }

// "00000042.pack" for 42; pack numbers only grow.
std::string pack_file_name(std::uint32_t number);
// The number of a name pack_file_name made; nullopt for anything else.
std::optional<std::uint32_t> parse_pack_file_name(std::string_view name);

std::array<std::byte, kPackHeaderBytes> pack_header();
// Corruption naming `path` unless `bytes` is a version-1 pack header.
Status check_pack_header(std::span<const std::byte> bytes, const std::filesystem::path& path);

// The bytes that go before and after a frame in its record.
struct RecordFraming {
  std::array<std::byte, kRecordHeaderBytes> header;
  std::array<std::byte, kRecordTrailerBytes> trailer;
};
// The record CRC is a pass over the whole frame.
RecordFraming frame_record(std::span<const std::byte> frame);
// The same bytes, with the record CRC derived from the frame's own two CRCs
// (codec/frame.h frame_crc32c) instead of a pass over the frame: the
// receiver's put path, where the frame was just verified. REQUIRES:
// parse_frame_header(frame) returned `verified`.
RecordFraming frame_record(std::span<const std::byte> frame, const FrameHeader& verified);

struct PackRecord {
  std::uint64_t offset = 0;  // of the record (its magic)
  std::uint32_t frame_bytes = 0;
  Digest id{};
};

struct PackScan {
  std::vector<PackRecord> records;  // good records, in file order
  std::uint64_t file_bytes = 0;
  // End of the last good record; past it lies a torn tail (no good record
  // follows) when valid_end < file_bytes.
  std::uint64_t valid_end = 0;
  // Regions [begin, end) between good records that hold no good record:
  // damage in the middle of a pack, kept on disk and reported, never cut.
  std::vector<std::pair<std::uint64_t, std::uint64_t>> damaged;
};

inline constexpr std::uint64_t kScanToEnd = ~std::uint64_t{0};

// Scans the records of an open pack from `from` (>= kPackHeaderBytes, a
// record boundary) to `end` (or the end of the file, whichever is first),
// checking each record's framing, CRC and frame header (frames are not
// decoded). A bad record is skipped by searching for the next good one.
Result<PackScan> scan_pack(int fd, const std::filesystem::path& path, std::uint64_t from,
                           std::uint64_t end = kScanToEnd);

// Reads the record at `offset` whose frame is `frame_bytes` long into `frame`
// (resized), checking the record's magic, length and CRC. Corruption naming
// the pack and offset otherwise.
Status read_record(int fd, const std::filesystem::path& path, std::uint64_t offset, std::uint32_t frame_bytes,
                   std::vector<std::byte>& frame);

}  // namespace ferry
