// frame.h: the 88-byte frame header (docs/FORMAT.md section 3): codec ids,
// serialisation, and parsing that validates everything knowable without
// decoding the payload (magic, version, flags, header CRC, codec, sizes,
// frame length, payload CRC).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "base/status.h"
#include "codec/dtype.h"
#include "codec/limits.h"
#include "codec/tree_hash.h"

namespace ferry {

enum class Codec : std::uint8_t {
  kRaw = 0,
  kZstd = 1,
  kPlanes8 = 2,
  kPlanes16 = 3,
  kPlanes32 = 4,
  // The same element widths with float payload version 2 (FORMAT.md 4.2).
  kPlanes8V2 = 5,
  kPlanes16V2 = 6,
  kPlanes32V2 = 7,
  // Delta frames (FORMAT.md 3.1, frame version 2): the chunk's difference
  // from a base chunk, coded as a version 2 float payload of element width
  // 1, 2, 4; the header names the base id. Decoded by codec/delta_codec.h.
  kDeltaPlanes8 = 16,
  kDeltaPlanes16 = 17,
  kDeltaPlanes32 = 18,
};

// Frame format versions: version 1 frames carry codecs 0-7 and no base id;
// version 2 frames carry exactly the delta codecs and a base id. An encoder
// writes version 1 for every frame that is not a delta, so those frames are
// byte-identical to what earlier builds wrote.
inline constexpr std::uint8_t kFrameVersion = 1;
inline constexpr std::uint8_t kFrameVersionDelta = 2;
inline constexpr std::uint8_t kFrameMagic[4] = {0x46, 0x52, 0x59, 0x46};  // "FRYF"

// "raw", "zstd", "planes8", "planes16", "planes32", "planes8v2",
// "planes16v2", "planes32v2", "delta8", "delta16", "delta32", or "unknown".
std::string_view codec_name(Codec c);
// True for the codec ids this build decodes (0-7, 16-18).
bool codec_known(std::uint8_t id);
// True for the delta codecs (16-18): their frames need the base chunk.
bool is_delta_codec(Codec c);
// Element width of a delta codec (1, 2, 4); 0 for any other codec.
int delta_codec_width(Codec c);
// The delta codec of an element width (1, 2, 4).
Codec delta_codec(int element_width);
// Element width of a planes codec of either payload version (1, 2, 4); 0
// for raw and zstd.
int codec_element_width(Codec c);
// Float payload version of a planes codec (1 or 2); 0 for raw and zstd.
int codec_payload_version(Codec c);
// The planes codec of an element width (1, 2, 4) and payload version.
Codec planes_codec(int element_width, int version);

struct FrameHeader {
  std::uint8_t version = kFrameVersion;
  Codec codec = Codec::kRaw;
  DType dtype = DType::kBytes;
  std::uint32_t raw_bytes = 0;
  std::uint32_t payload_bytes = 0;
  Digest chunk_id{};
  Digest base_id{};               // all zero unless the codec is a delta codec
  std::uint32_t payload_crc = 0;  // masked CRC32C of the payload
};

// Serialises `h` (flags 0, header CRC computed) into exactly 88 bytes.
void write_frame_header(const FrameHeader& h, std::span<std::byte, kFrameHeaderBytes> out);

// Parses and checks the header only (magic, header CRC, version, flags, known
// codec, dtype, base id set exactly for delta codecs and never equal to the
// chunk id, raw_bytes <= 64 MiB, payload_bytes <= raw_bytes). Errors are
// Corruption; messages say "frame header" and, once the header CRC holds,
// the chunk id.  REQUIRES nothing of `bytes`: short input is Corruption.
Result<FrameHeader> parse_frame_header_only(std::span<const std::byte> bytes);

// parse_frame_header_only plus: the frame's length equals 88 + payload_bytes,
// and the payload's CRC matches. `frame` is the whole frame.
Result<FrameHeader> parse_frame_header(std::span<const std::byte> frame);

// crc32c(frame, crc), derived from the two CRCs the frame carries instead of
// a pass over its bytes (only the 4 bytes of the header CRC itself are
// read). REQUIRES: parse_frame_header(frame) returned `verified`, so both
// stored CRCs are those of the frame's bytes; otherwise the result is the
// CRC of no such frame (a record written with it fails its own check).
std::uint32_t frame_crc32c(const FrameHeader& verified, std::span<const std::byte> frame,
                           std::uint32_t crc = 0);

// The chunk id field of a frame header as it stands, before any check: what
// a damaged frame claims to carry, for error messages only. False when
// `bytes` is too short to hold the field.
bool claimed_chunk_id(std::span<const std::byte> bytes, Digest& id);

}  // namespace ferry
