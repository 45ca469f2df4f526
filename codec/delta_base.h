// delta_base.h: where a chunk's delta base comes from on the sending host
// (docs/FORMAT.md 3.1). The packer pairs each file it packs with the file at
// the same relative path in an earlier checkpoint directory still on disk
// (training jobs keep the last few); a chunk's base is the chunk at the same
// position: same path, the same tensors (names, dtypes, shapes, offsets) or,
// for a file of unknown layout, the same size, and so the same chunk plan
// and chunk index. The base is read and hashed when the chunk is read; its
// hash is the base id the delta names, so a base file that changed or
// vanished since its snapshot was pushed only means a full frame (the
// receiver does not hold that id), never a wrong one.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>

#include "base/aligned_bytes.h"
#include "codec/chunker.h"
#include "codec/manifest.h"
#include "codec/tree_hash.h"

namespace ferry {

// The earlier file paired with one file being packed.
struct DeltaBaseFile {
  std::filesystem::path path;
  std::uint64_t size = 0;  // as planned; a base of another size when read gives no delta
};

// The base of `current` (whose chunk plan is `plan`) under the earlier
// checkpoint directory `from`, or nullopt when there is none or it is laid
// out differently (then every chunk of the file goes without a delta).
std::optional<DeltaBaseFile> pair_delta_base(const std::filesystem::path& from, const ManifestFile& current,
                                             std::span<const ChunkPlan> plan, std::size_t chunk_bytes);

// Reads the base of chunk `p` into `out` (taken to p.length) and returns its
// chunk id; nullopt when the base file cannot be read as planned (vanished,
// replaced, another size, a read error): the chunk then goes without a delta.
std::optional<Digest> read_delta_base(const DeltaBaseFile& base, const ChunkPlan& p, AlignedBytes& out,
                                      bool direct_io);

}  // namespace ferry
