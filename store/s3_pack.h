// s3_pack.h: the pack objects of the object-store backend (docs/FORMAT.md
// section 9.2): the records of a local pack (section 7.1) behind a version-2
// pack header, followed by a trailer that lists every chunk in the pack, so
// that a pack describes itself and its index object (the same trailer bytes,
// stored beside it) can always be rebuilt from it with one ranged GET. This
// file knows the bytes; store/s3_store.cc decides what to do with them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "codec/frame.h"
#include "codec/tree_hash.h"

namespace ferry {

inline constexpr std::uint8_t kS3PackVersion = 2;
inline constexpr std::uint8_t kS3TrailerMagic[4] = {0x46, 0x52, 0x59, 0x54};  // "FRYT"
inline constexpr std::size_t kS3TrailerEntryBytes = 48;
inline constexpr std::size_t kS3FooterBytes = 24;

struct S3PackEntry {
  Digest id{};
  std::uint64_t offset = 0;  // of the record (its magic) in the pack
  std::uint32_t frame_bytes = 0;
};

// Builds one pack object in memory: records appended, then sealed. With
// room_bytes (the pack target and a record or two over it), each pack is
// built in a buffer of that capacity, taken at its first record from the
// buffers earlier packs of this process gave back (recycle_s3_pack_buffer):
// a fresh 32 MiB buffer per pack, grown by doubling, cost its page faults,
// the kernel's zeroing and the copies of every regrowth, a sixth of a
// direct push's CPU.
class S3PackBuilder {
 public:
  explicit S3PackBuilder(std::size_t room_bytes = 0);
  // Appends the record for a verified frame (parse_frame_header(frame)
  // returned `verified`); its offset.
  std::uint64_t add(std::span<const std::byte> frame, const FrameHeader& verified);
  std::uint64_t bytes() const { return bytes_.size(); }
  std::size_t chunks() const { return entries_.size(); }
  const std::vector<S3PackEntry>& entries() const { return entries_; }
  // Appends a whole record taken from another pack (checked by its reader):
  // a failed upload's chunks going back into the open pack.
  std::uint64_t add_record(std::span<const std::byte> record, const Digest& id);
  // The bytes from `offset` (a record boundary) to the end of the records
  // added so far: what a spool (s3_spool.h) has not written yet.
  std::span<const std::byte> records_from(std::uint64_t offset) const;
  // The frame of a record added earlier (for reads before the pack is sealed).
  std::span<const std::byte> frame_at(std::uint64_t offset, std::uint32_t frame_bytes) const;
  // Appends the trailer and hands over the whole object; the builder is empty
  // afterwards.
  std::vector<std::byte> seal();

 private:
  // Swaps in a buffer of room_bytes_ capacity unless bytes_ has one.
  void take_room();

  std::size_t room_bytes_ = 0;
  std::vector<std::byte> bytes_;
  std::vector<S3PackEntry> entries_;
};

// Gives a sealed pack's buffer back once it is uploaded, for the next pack
// of this process (kept up to kS3KeptPackBuffers; the kernel may take its
// pages back under memory pressure, base/buffer_stash.h).
void recycle_s3_pack_buffer(std::vector<std::byte>&& bytes);

// The trailer (entries + footer) of a sealed pack: the last
// 24 + 48 * chunks bytes of it, which are also its index object.
std::span<const std::byte> s3_pack_trailer(std::span<const std::byte> pack);

// The size of the trailer that ends with `footer` (its last 24 bytes), so
// that a reader of a pack's tail knows how much more to fetch. Corruption
// naming `where` when the footer is damaged or claims more than
// `object_bytes` (0: unknown).
Result<std::uint64_t> s3_trailer_bytes(std::span<const std::byte> footer, std::uint64_t object_bytes,
                                       std::string_view where);

struct S3PackIndex {
  std::uint64_t pack_bytes = 0;  // the whole pack object, trailer included
  std::vector<S3PackEntry> entries;
};
// Parses a trailer (an index object, or a pack's tail): footer, CRC, every
// entry inside the pack's records and in offset order. Corruption naming
// `where` otherwise.
Result<S3PackIndex> parse_s3_trailer(std::span<const std::byte> trailer, std::string_view where);

// Checks one record fetched from a pack (magic, length, the frame's header
// and payload CRCs, the record CRC derived from them) and returns its frame,
// which must carry `id`: parse_frame_header accepts it. Corruption naming
// `where` otherwise.
Result<std::span<const std::byte>> s3_record_frame(std::span<const std::byte> record, const Digest& id,
                                                   std::string_view where);

// Checks a whole pack object: header, trailer, and each record the trailer
// lists (framing and CRC; frames are not decoded). The good entries, with
// each bad one reported through `bad` (entry, error).
struct S3PackCheck {
  std::vector<S3PackEntry> good;
  std::vector<std::pair<S3PackEntry, std::string>> bad;
};
Result<S3PackCheck> check_s3_pack(std::span<const std::byte> pack, std::string_view where);

}  // namespace ferry
