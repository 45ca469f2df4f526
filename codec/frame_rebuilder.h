// frame_rebuilder.h: makes the frame of one pushed chunk again, byte for
// byte, from its source file, so that the sender can give a frame's memory
// back as soon as the frame is sent instead of holding it until the
// receiver acknowledges it: only a resend after a broken connection needs
// the frame again, and it is rebuilt then. With frames released once sent, a
// push holds frame memory for the packer's window and the queue only, never
// for the (possibly very large) windows in flight.
//
// The rebuild reads the chunk, checks that it still hashes to the chunk id
// the manifest records (the file did not change since it was packed) and
// codes it with the CPU encoder as the packer did (every engine makes the
// same bytes: codec/engine.h); the frame's codec and size must match the
// manifest's too. A delta whose base the destination lost after saying it
// held it is coded alone the same way, by the sender and by a push straight
// into a store (store/store_push.cc).
#pragma once

#include <cstddef>
#include <filesystem>
#include <memory>
#include <span>
#include <vector>

#include "base/status.h"
#include "codec/chunk_codec.h"
#include "codec/delta_codec.h"
#include "codec/manifest.h"

namespace ferry {

// Where a pushed chunk comes from and how it was coded.
struct ChunkOrigin {
  std::filesystem::path path;  // the source file
  ManifestChunk chunk;         // offset, length, dtype, id, codec, frame_bytes
  bool trial = false;          // unknown layout: codec chosen by trial (packer.h)
  // A delta frame's base file (the same path in PackOptions::delta_from);
  // empty for a standalone frame.
  std::filesystem::path base_path;
};

// The origin of `chunk` of `file` (its manifest entry) read from `path`: the
// packer chooses codecs by trial exactly for files of unknown layout.
// `delta_from` is the push's earlier checkpoint directory (empty: none).
ChunkOrigin chunk_origin(const std::filesystem::path& path, const ManifestFile& file,
                         const ManifestChunk& chunk, const std::filesystem::path& delta_from = {});

// Reusable scratch (the raw chunk, an encoder); one per thread.
class FrameRebuilder {
 public:
  // float_version: the float payload version the frames were first coded
  // with (the engine's: version 1 from the GPU engine, 2 from the CPU's).
  explicit FrameRebuilder(int zstd_level, int float_version = kFloatPayloadV2)
      : zstd_level_(zstd_level), float_version_(float_version) {}

  // Rebuilds the frame of `origin` into `frame`, which holds at least
  // frame_room_bytes(origin.chunk.length) bytes, and cuts it to the frame.
  // Aborted naming the file and offset when the chunk no longer hashes to
  // its id (the file changed); IOError when it cannot be read; Internal when
  // the frame differs in codec or size from the one first sent. A delta
  // frame is rebuilt against its base read again from base_path, which must
  // still hash to the base id (else Aborted, naming it).
  Status rebuild(const ChunkOrigin& origin, std::vector<std::byte>& frame);
  // Codes the chunk of `origin` alone (never as a delta) into `frame`, as
  // rebuild() does, and makes `origin` describe that frame (codec, size, no
  // base): a delta the receiver refused because its base is gone goes in
  // full. Aborted or IOError as rebuild().
  Status rebuild_standalone(ChunkOrigin& origin, std::vector<std::byte>& frame);

 private:
  // The chunk of `origin` read into raw_ and checked against its id (the
  // encoder made on first use).
  Result<std::span<std::byte>> read_raw(const ChunkOrigin& origin);
  EncodeOptions encode_options(const ChunkOrigin& origin) const;

  int zstd_level_;
  int float_version_;
  std::unique_ptr<std::byte[]> raw_;
  std::size_t raw_capacity_ = 0;
  std::unique_ptr<ChunkEncoder> encoder_;  // made at the first rebuild
  std::unique_ptr<DeltaEncoder> delta_;    // made at the first delta rebuild
  std::vector<std::byte> base_;
};

}  // namespace ferry
