// frame.cc: frame header serialisation and validation (docs/FORMAT.md
// section 3). The header CRC is checked right after the magic: once it
// holds, every other field is what the encoder wrote, so later messages can
// name the chunk id; before that, they say "frame header".
#include "codec/frame.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>

#include "base/crc32c.h"

namespace ferry {
namespace {

// Field offsets, as in the table of docs/FORMAT.md section 3.
constexpr std::size_t kOffMagic = 0;
constexpr std::size_t kOffVersion = 4;
constexpr std::size_t kOffCodec = 5;
constexpr std::size_t kOffDtype = 6;
constexpr std::size_t kOffFlags = 7;
constexpr std::size_t kOffRawBytes = 8;
constexpr std::size_t kOffPayloadBytes = 12;
constexpr std::size_t kOffChunkId = 16;
constexpr std::size_t kOffBaseId = 48;
constexpr std::size_t kOffPayloadCrc = 80;
constexpr std::size_t kOffHeaderCrc = 84;
static_assert(kOffHeaderCrc + 4 == kFrameHeaderBytes);

void put_u32(std::byte* p, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<std::byte>(v >> (8 * i));
}
std::uint32_t get_u32(const std::byte* p) {
  std::uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= static_cast<std::uint32_t>(p[i]) << (8 * i);
  return v;
}

std::string hex32(std::uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

Status chunk_error(const Digest& id, const std::string& what) {
  return Status::corruption("chunk " + to_hex(id) + ": " + what);
}

}  // namespace

std::string_view codec_name(Codec c) {
  switch (c) {
    case Codec::kRaw:
      return "raw";
    case Codec::kZstd:
      return "zstd";
    case Codec::kPlanes8:
      return "planes8";
    case Codec::kPlanes16:
      return "planes16";
    case Codec::kPlanes32:
      return "planes32";
    case Codec::kPlanes8V2:
      return "planes8v2";
    case Codec::kPlanes16V2:
      return "planes16v2";
    case Codec::kPlanes32V2:
      return "planes32v2";
    case Codec::kDeltaPlanes8:
      return "delta8";
    case Codec::kDeltaPlanes16:
      return "delta16";
    case Codec::kDeltaPlanes32:
      return "delta32";
  }
  return "unknown";
}

bool codec_known(std::uint8_t id) {
  return id <= static_cast<std::uint8_t>(Codec::kPlanes32V2) ||
         (id >= static_cast<std::uint8_t>(Codec::kDeltaPlanes8) &&
          id <= static_cast<std::uint8_t>(Codec::kDeltaPlanes32));
}

bool is_delta_codec(Codec c) { return c >= Codec::kDeltaPlanes8 && c <= Codec::kDeltaPlanes32; }

int delta_codec_width(Codec c) {
  switch (c) {
    case Codec::kDeltaPlanes8:
      return 1;
    case Codec::kDeltaPlanes16:
      return 2;
    case Codec::kDeltaPlanes32:
      return 4;
    default:
      return 0;
  }
}

Codec delta_codec(int element_width) {
  return element_width == 1   ? Codec::kDeltaPlanes8
         : element_width == 2 ? Codec::kDeltaPlanes16
                              : Codec::kDeltaPlanes32;
}

int codec_payload_version(Codec c) {
  if (c >= Codec::kPlanes8 && c <= Codec::kPlanes32) return 1;
  if (c >= Codec::kPlanes8V2 && c <= Codec::kPlanes32V2) return 2;
  return 0;
}

Codec planes_codec(int element_width, int version) {
  const int base = version == 1 ? static_cast<int>(Codec::kPlanes8) : static_cast<int>(Codec::kPlanes8V2);
  return static_cast<Codec>(base + (element_width == 1 ? 0 : element_width == 2 ? 1 : 2));
}

int codec_element_width(Codec c) {
  switch (c) {
    case Codec::kPlanes8:
    case Codec::kPlanes8V2:
      return 1;
    case Codec::kPlanes16:
    case Codec::kPlanes16V2:
      return 2;
    case Codec::kPlanes32:
    case Codec::kPlanes32V2:
      return 4;
    default:
      return 0;
  }
}

void write_frame_header(const FrameHeader& h, std::span<std::byte, kFrameHeaderBytes> out) {
  std::byte* p = out.data();
  std::memcpy(p + kOffMagic, kFrameMagic, 4);
  p[kOffVersion] = static_cast<std::byte>(h.version);
  p[kOffCodec] = static_cast<std::byte>(h.codec);
  p[kOffDtype] = static_cast<std::byte>(h.dtype);
  p[kOffFlags] = std::byte{0};
  put_u32(p + kOffRawBytes, h.raw_bytes);
  put_u32(p + kOffPayloadBytes, h.payload_bytes);
  std::memcpy(p + kOffChunkId, h.chunk_id.data(), kDigestBytes);
  std::memcpy(p + kOffBaseId, h.base_id.data(), kDigestBytes);
  put_u32(p + kOffPayloadCrc, h.payload_crc);
  put_u32(p + kOffHeaderCrc, mask_crc(crc32c(std::span<const std::byte>(p, kOffHeaderCrc))));
}

Result<FrameHeader> parse_frame_header_only(std::span<const std::byte> bytes) {
  if (bytes.size() < kFrameHeaderBytes) {
    return Status::corruption("frame header: truncated, " + std::to_string(bytes.size()) + " bytes of " +
                              std::to_string(kFrameHeaderBytes));
  }
  const std::byte* p = bytes.data();
  if (std::memcmp(p + kOffMagic, kFrameMagic, 4) != 0) {
    return Status::corruption("frame header: bad magic " + hex32(get_u32(p + kOffMagic)) +
                              " (expected \"FRYF\")");
  }
  std::uint32_t stored = unmask_crc(get_u32(p + kOffHeaderCrc));
  std::uint32_t computed = crc32c(bytes.first(kOffHeaderCrc));
  if (stored != computed) {
    return Status::corruption("frame header: header CRC mismatch (stored " + hex32(stored) + ", computed " +
                              hex32(computed) + ")");
  }
  FrameHeader h;
  std::memcpy(h.chunk_id.data(), p + kOffChunkId, kDigestBytes);
  std::memcpy(h.base_id.data(), p + kOffBaseId, kDigestBytes);
  h.version = static_cast<std::uint8_t>(p[kOffVersion]);
  if (h.version != kFrameVersion && h.version != kFrameVersionDelta) {
    return chunk_error(h.chunk_id, "frame header: unsupported version " + std::to_string(h.version) +
                                       " (this build reads " + std::to_string(kFrameVersion) + " and " +
                                       std::to_string(kFrameVersionDelta) + ")");
  }
  auto flags = static_cast<std::uint8_t>(p[kOffFlags]);
  if (flags != 0) {
    return chunk_error(h.chunk_id, "frame header: flags " + std::to_string(flags) + " set, must be 0");
  }
  auto codec = static_cast<std::uint8_t>(p[kOffCodec]);
  if (!codec_known(codec)) {
    return chunk_error(h.chunk_id, "frame header: unknown codec id " + std::to_string(codec));
  }
  h.codec = static_cast<Codec>(codec);
  auto dtype = dtype_from_byte(static_cast<std::uint8_t>(p[kOffDtype]));
  if (!dtype) {
    return chunk_error(h.chunk_id,
                       "frame header: unknown dtype tag " + std::to_string(static_cast<int>(p[kOffDtype])));
  }
  h.dtype = *dtype;
  // Version 1 carries no delta codec and no base id; version 2 exactly the
  // delta codecs, with a base id that is set and is not the chunk itself
  // (a chunk that needs itself to be rebuilt could never be restored).
  const bool delta = is_delta_codec(h.codec);
  if (delta != (h.version == kFrameVersionDelta)) {
    return chunk_error(h.chunk_id, "frame header: codec " + std::string(codec_name(h.codec)) +
                                       " is not allowed in frame version " + std::to_string(h.version));
  }
  const bool has_base =
      std::any_of(h.base_id.begin(), h.base_id.end(), [](std::uint8_t b) { return b != 0; });
  if (has_base != delta) {
    return chunk_error(
        h.chunk_id,
        delta ? "frame header: delta codec " + std::string(codec_name(h.codec)) + " without a base chunk id"
              : "frame header: base chunk id set for non-delta codec " + std::string(codec_name(h.codec)));
  }
  if (delta && h.base_id == h.chunk_id) {
    return chunk_error(h.chunk_id, "frame header: delta frame names itself as its base");
  }
  h.raw_bytes = get_u32(p + kOffRawBytes);
  h.payload_bytes = get_u32(p + kOffPayloadBytes);
  h.payload_crc = get_u32(p + kOffPayloadCrc);
  if (h.raw_bytes > kMaxChunkBytes) {
    return chunk_error(h.chunk_id, "frame header: raw_bytes " + std::to_string(h.raw_bytes) +
                                       " over the limit of " + std::to_string(kMaxChunkBytes));
  }
  if (h.codec == Codec::kRaw ? h.payload_bytes != h.raw_bytes : h.payload_bytes >= h.raw_bytes) {
    // Encoders store raw unless coding strictly shrinks the chunk.
    return chunk_error(h.chunk_id, "frame header: payload_bytes " + std::to_string(h.payload_bytes) +
                                       " with raw_bytes " + std::to_string(h.raw_bytes) +
                                       " is impossible for codec " + std::string(codec_name(h.codec)));
  }
  return h;
}

Result<FrameHeader> parse_frame_header(std::span<const std::byte> frame) {
  ASSIGN_OR_RETURN(FrameHeader h, parse_frame_header_only(frame));
  std::size_t expected = kFrameHeaderBytes + h.payload_bytes;
  if (frame.size() != expected) {
    return chunk_error(h.chunk_id, "frame is " + std::to_string(frame.size()) + " bytes, header says " +
                                       std::to_string(expected));
  }
  std::uint32_t stored = unmask_crc(h.payload_crc);
  std::uint32_t computed = crc32c(frame.subspan(kFrameHeaderBytes));
  if (stored != computed) {
    return chunk_error(
        h.chunk_id, "payload CRC mismatch (stored " + hex32(stored) + ", computed " + hex32(computed) + ")");
  }
  return h;
}

std::uint32_t frame_crc32c(const FrameHeader& verified, std::span<const std::byte> frame, std::uint32_t crc) {
  FERRY_CHECK(frame.size() == kFrameHeaderBytes + verified.payload_bytes);
  // Header bytes [0, 84) are covered by the header CRC, [84, 88) hold it,
  // and the payload is covered by the payload CRC.
  const std::uint32_t header_crc = unmask_crc(get_u32(frame.data() + kOffHeaderCrc));
  crc = crc32c_combine(crc, header_crc, kOffHeaderCrc);
  crc = crc32c(frame.subspan(kOffHeaderCrc, 4), crc);
  return crc32c_combine(crc, unmask_crc(verified.payload_crc), verified.payload_bytes);
}

bool claimed_chunk_id(std::span<const std::byte> bytes, Digest& id) {
  if (bytes.size() < kOffChunkId + kDigestBytes) return false;
  std::memcpy(id.data(), bytes.data() + kOffChunkId, kDigestBytes);
  return true;
}

}  // namespace ferry
