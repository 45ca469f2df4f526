// frame_rebuilder.cc: see frame_rebuilder.h.
#include "codec/frame_rebuilder.h"

#include <fcntl.h>

#include <string>

#include "base/posix_file.h"
#include "codec/chunk_reread.h"
#include "codec/tree_hash.h"

namespace ferry {

ChunkOrigin chunk_origin(const std::filesystem::path& path, const ManifestFile& file,
                         const ManifestChunk& chunk, const std::filesystem::path& delta_from) {
  ChunkOrigin o{path, chunk, file.layout != LayoutKind::kSafetensors, {}};
  if (is_delta_codec(static_cast<Codec>(chunk.codec)) && !delta_from.empty())
    o.base_path = delta_from / file.path;
  return o;
}

Result<std::span<std::byte>> FrameRebuilder::read_raw(const ChunkOrigin& origin) {
  const ManifestChunk& c = origin.chunk;
  if (c.length > raw_capacity_) {
    raw_ = std::make_unique_for_overwrite<std::byte[]>(c.length);
    raw_capacity_ = c.length;
  }
  std::span<std::byte> raw(raw_.get(), c.length);
  RETURN_IF_ERROR(read_chunk_checked(origin.path, c, raw));
  if (!encoder_) encoder_ = std::make_unique<ChunkEncoder>();
  return raw;
}

EncodeOptions FrameRebuilder::encode_options(const ChunkOrigin& origin) const {
  EncodeOptions o;
  o.zstd_level = zstd_level_;
  o.float_version = float_version_;
  o.trial = origin.trial;
  return o;
}

Status FrameRebuilder::rebuild(const ChunkOrigin& origin, std::vector<std::byte>& frame) {
  const ManifestChunk& c = origin.chunk;
  const std::string where = origin.path.string() + " at offset " + std::to_string(c.offset);
  FERRY_CHECK(frame.size() >= frame_room_bytes(c.length));
  ASSIGN_OR_RETURN(std::span<std::byte> raw, read_raw(origin));
  const Digest& id = c.id;
  const EncodeOptions o = encode_options(origin);
  EncodedChunk e;
  if (is_delta_codec(static_cast<Codec>(c.codec))) {
    base_.resize(c.length);
    const std::string base_where = origin.base_path.string() + " at offset " + std::to_string(c.offset);
    if (origin.base_path.empty())
      return Status::internal("delta chunk " + to_hex(c.id) + " without a base file");
    ASSIGN_OR_RETURN(UniqueFd bfd, open_fd(origin.base_path, O_RDONLY | O_CLOEXEC));
    RETURN_IF_ERROR(pread_exact(bfd.get(), base_, c.offset, origin.base_path));
    if (chunk_id(base_) != c.base_id) {
      return Status::aborted(base_where + " changed while being pushed: no longer the base " +
                             to_hex(c.base_id) + " of delta chunk " + to_hex(c.id));
    }
    if (!delta_) delta_ = std::make_unique<DeltaEncoder>();
    e = delta_->encode_into(raw, c.dtype, id, base_, c.base_id, frame, o);
  } else {
    e = encoder_->encode_into(raw, c.dtype, id, frame, o);
  }
  if (static_cast<std::uint8_t>(e.codec) != c.codec || e.frame_bytes != c.frame_bytes) {
    return Status::internal("rebuilding the frame of chunk " + to_hex(c.id) + " (" + where + ") gave " +
                            std::string(codec_name(e.codec)) + " in " + std::to_string(e.frame_bytes) +
                            " bytes, first sent as codec " + std::to_string(c.codec) + " in " +
                            std::to_string(c.frame_bytes) + " bytes");
  }
  frame.resize(e.frame_bytes);
  return Status::ok();
}

Status FrameRebuilder::rebuild_standalone(ChunkOrigin& origin, std::vector<std::byte>& frame) {
  ManifestChunk& c = origin.chunk;
  FERRY_CHECK(frame.size() >= frame_room_bytes(c.length));
  ASSIGN_OR_RETURN(std::span<std::byte> raw, read_raw(origin));
  const EncodedChunk e = encoder_->encode_into(raw, c.dtype, c.id, frame, encode_options(origin));
  frame.resize(e.frame_bytes);
  // From now on this chunk's frame is the standalone one: a resend after a
  // break rebuilds this frame, not the delta.
  c.codec = static_cast<std::uint8_t>(e.codec);
  c.frame_bytes = e.frame_bytes;
  c.base_id = Digest{};
  origin.base_path.clear();
  return Status::ok();
}

}  // namespace ferry
