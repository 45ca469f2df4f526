// s3_pack.cc: see s3_pack.h.
#include "store/s3_pack.h"

#include <cstring>

#include "base/buffer_stash.h"
#include "base/crc32c.h"
#include "codec/limits.h"
#include "store/pack_file.h"
#include "store/store_limits.h"

namespace ferry {
namespace {

void put_u32(std::vector<std::byte>& out, std::uint32_t v) {
  const auto* p = reinterpret_cast<const std::byte*>(&v);
  out.insert(out.end(), p, p + 4);  // little-endian host (x86-64, aarch64)
}
void put_u64(std::vector<std::byte>& out, std::uint64_t v) {
  const auto* p = reinterpret_cast<const std::byte*>(&v);
  out.insert(out.end(), p, p + 8);
}
std::uint32_t get_u32(const std::byte* p) {
  std::uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
std::uint64_t get_u64(const std::byte* p) {
  std::uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

BufferStash<std::vector<std::byte>>& pack_buffer_stash() {
  // Never destroyed: an upload may finish on another thread while the
  // process exits.
  static auto* stash = new BufferStash<std::vector<std::byte>>(kS3KeptPackBuffers);
  return *stash;
}

}  // namespace

S3PackBuilder::S3PackBuilder(std::size_t room_bytes) : room_bytes_(room_bytes) {
  const auto header = pack_header();
  bytes_.assign(header.begin(), header.end());
  bytes_[4] = std::byte{kS3PackVersion};
}

void S3PackBuilder::take_room() {
  if (bytes_.capacity() >= room_bytes_) return;
  // At the first record, not when the pack before is sealed: by then that
  // pack's upload may have given a buffer back.
  std::vector<std::byte> room = pack_buffer_stash().take(room_bytes_, 2 * room_bytes_);
  room.clear();
  room.reserve(room_bytes_);
  room.insert(room.end(), bytes_.begin(), bytes_.end());
  bytes_.swap(room);
}

void recycle_s3_pack_buffer(std::vector<std::byte>&& bytes) {
  if (bytes.capacity() != 0) pack_buffer_stash().keep(std::move(bytes));
  bytes = {};
}

std::uint64_t S3PackBuilder::add(std::span<const std::byte> frame, const FrameHeader& verified) {
  take_room();
  const RecordFraming framing = frame_record(frame, verified);
  const std::uint64_t offset = bytes_.size();
  bytes_.insert(bytes_.end(), framing.header.begin(), framing.header.end());
  bytes_.insert(bytes_.end(), frame.begin(), frame.end());
  bytes_.insert(bytes_.end(), framing.trailer.begin(), framing.trailer.end());
  entries_.push_back({verified.chunk_id, offset, static_cast<std::uint32_t>(frame.size())});
  return offset;
}

std::uint64_t S3PackBuilder::add_record(std::span<const std::byte> record, const Digest& id) {
  FERRY_CHECK(record.size() >= kRecordOverheadBytes);
  take_room();
  const std::uint64_t offset = bytes_.size();
  bytes_.insert(bytes_.end(), record.begin(), record.end());
  entries_.push_back({id, offset, static_cast<std::uint32_t>(record.size() - kRecordOverheadBytes)});
  return offset;
}

std::span<const std::byte> S3PackBuilder::records_from(std::uint64_t offset) const {
  FERRY_CHECK(offset <= bytes_.size());
  return std::span(bytes_).subspan(offset);
}

std::span<const std::byte> S3PackBuilder::frame_at(std::uint64_t offset, std::uint32_t frame_bytes) const {
  FERRY_CHECK(offset + kRecordHeaderBytes + frame_bytes <= bytes_.size());
  return std::span(bytes_).subspan(offset + kRecordHeaderBytes, frame_bytes);
}

std::vector<std::byte> S3PackBuilder::seal() {
  const std::uint64_t trailer_offset = bytes_.size();
  for (const S3PackEntry& e : entries_) {
    const auto* id = reinterpret_cast<const std::byte*>(e.id.data());
    bytes_.insert(bytes_.end(), id, id + e.id.size());
    put_u64(bytes_, e.offset);
    put_u32(bytes_, e.frame_bytes);
    put_u32(bytes_, 0);
  }
  put_u64(bytes_, trailer_offset);
  put_u32(bytes_, static_cast<std::uint32_t>(entries_.size()));
  put_u32(bytes_, 0);
  bytes_.insert(bytes_.end(), reinterpret_cast<const std::byte*>(kS3TrailerMagic),
                reinterpret_cast<const std::byte*>(kS3TrailerMagic) + 4);
  const std::size_t covered = entries_.size() * kS3TrailerEntryBytes + kS3FooterBytes - 4;
  put_u32(bytes_, mask_crc(crc32c(std::span(bytes_).last(covered))));
  std::vector<std::byte> out = std::move(bytes_);
  *this = S3PackBuilder(room_bytes_);
  return out;
}

std::span<const std::byte> s3_pack_trailer(std::span<const std::byte> pack) {
  FERRY_CHECK(pack.size() >= kS3FooterBytes);
  const std::uint32_t n = get_u32(pack.data() + pack.size() - kS3FooterBytes + 8);
  return pack.last(kS3FooterBytes + std::size_t{n} * kS3TrailerEntryBytes);
}

Result<std::uint64_t> s3_trailer_bytes(std::span<const std::byte> footer, std::uint64_t object_bytes,
                                       std::string_view where) {
  if (footer.size() < kS3FooterBytes ||
      std::memcmp(footer.data() + footer.size() - 8, kS3TrailerMagic, 4) != 0) {
    return Status::corruption(std::string(where) + ": no pack trailer (bad magic)");
  }
  const std::byte* f = footer.data() + footer.size() - kS3FooterBytes;
  const std::uint64_t n = get_u32(f + 8);
  const std::uint64_t bytes = kS3FooterBytes + n * kS3TrailerEntryBytes;
  if (object_bytes != 0 && bytes > object_bytes) {
    return Status::corruption(std::string(where) + ": the trailer claims " + std::to_string(n) +
                              " chunks, more than the object holds");
  }
  return bytes;
}

Result<S3PackIndex> parse_s3_trailer(std::span<const std::byte> trailer, std::string_view where) {
  ASSIGN_OR_RETURN(std::uint64_t bytes, s3_trailer_bytes(trailer, 0, where));
  if (bytes != trailer.size()) {
    return Status::corruption(std::string(where) + ": trailer of " + std::to_string(trailer.size()) +
                              " bytes, its footer says " + std::to_string(bytes));
  }
  const std::byte* f = trailer.data() + trailer.size() - kS3FooterBytes;
  if (mask_crc(crc32c(trailer.first(trailer.size() - 4))) != get_u32(f + 20)) {
    return Status::corruption(std::string(where) + ": trailer CRC mismatch");
  }
  if (get_u32(f + 12) != 0)
    return Status::corruption(std::string(where) + ": trailer reserved bytes are not zero");
  S3PackIndex index;
  const std::uint64_t trailer_offset = get_u64(f);
  index.pack_bytes = trailer_offset + trailer.size();
  if (trailer_offset < kPackHeaderBytes || index.pack_bytes < trailer_offset) {
    return Status::corruption(std::string(where) + ": trailer offset out of range");
  }
  const std::size_t n = (trailer.size() - kS3FooterBytes) / kS3TrailerEntryBytes;
  std::uint64_t next = kPackHeaderBytes;
  for (std::size_t i = 0; i < n; ++i) {
    const std::byte* e = trailer.data() + i * kS3TrailerEntryBytes;
    S3PackEntry entry;
    std::memcpy(entry.id.data(), e, entry.id.size());
    entry.offset = get_u64(e + 32);
    entry.frame_bytes = get_u32(e + 40);
    if (get_u32(e + 44) != 0 || entry.offset != next || entry.frame_bytes < kFrameHeaderBytes ||
        entry.frame_bytes > kMaxFrameBytes ||
        entry.offset + record_bytes(entry.frame_bytes) > trailer_offset) {
      return Status::corruption(std::string(where) + ": trailer entry " + std::to_string(i) +
                                " is out of place");
    }
    next = entry.offset + record_bytes(entry.frame_bytes);
    index.entries.push_back(entry);
  }
  if (next != trailer_offset) {
    return Status::corruption(std::string(where) + ": the trailer's entries do not tile the records");
  }
  return index;
}

Result<std::span<const std::byte>> s3_record_frame(std::span<const std::byte> record, const Digest& id,
                                                   std::string_view where) {
  if (record.size() < kRecordOverheadBytes + kFrameHeaderBytes ||
      std::memcmp(record.data(), kRecordMagic, 4) != 0 ||
      get_u32(record.data() + 4) != record.size() - kRecordOverheadBytes) {
    return Status::corruption(std::string(where) + ": record framing does not match the index");
  }
  const std::size_t body = record.size() - kRecordTrailerBytes;
  const auto frame = record.subspan(kRecordHeaderBytes, body - kRecordHeaderBytes);
  // One pass over the frame: its header and payload CRCs. The record CRC is
  // derived from those two (frame_record), not computed by a second pass.
  auto h = parse_frame_header(frame);
  if (!h) return Status::corruption(std::string(where) + ": " + h.status().message());
  const RecordFraming expected = frame_record(frame, *h);
  if (std::memcmp(expected.trailer.data(), record.data() + body, kRecordTrailerBytes) != 0) {
    return Status::corruption(std::string(where) + ": record CRC mismatch");
  }
  if (h->chunk_id != id) {
    return Status::corruption(std::string(where) + ": holds chunk " + to_hex(h->chunk_id) +
                              ", the index says " + to_hex(id));
  }
  return frame;
}

Result<S3PackCheck> check_s3_pack(std::span<const std::byte> pack, std::string_view where) {
  if (pack.size() < kPackHeaderBytes + kS3FooterBytes || std::memcmp(pack.data(), kPackMagic, 4) != 0 ||
      pack[4] != std::byte{kS3PackVersion}) {
    return Status::corruption(std::string(where) + ": not a ferry pack object (bad header)");
  }
  ASSIGN_OR_RETURN(std::uint64_t trailer_bytes, s3_trailer_bytes(pack, pack.size(), where));
  ASSIGN_OR_RETURN(S3PackIndex index, parse_s3_trailer(pack.last(trailer_bytes), where));
  if (index.pack_bytes != pack.size()) {
    return Status::corruption(std::string(where) + ": " + std::to_string(pack.size()) +
                              " bytes, its trailer says " + std::to_string(index.pack_bytes));
  }
  S3PackCheck check;
  for (const S3PackEntry& e : index.entries) {
    auto frame = s3_record_frame(pack.subspan(e.offset, record_bytes(e.frame_bytes)), e.id,
                                 std::string(where) + " at offset " + std::to_string(e.offset));
    if (frame) {
      check.good.push_back(e);
    } else {
      check.bad.emplace_back(e, frame.status().to_string());
    }
  }
  return check;
}

}  // namespace ferry
