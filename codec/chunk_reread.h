// chunk_reread.h: a pushed chunk read again from its source file, checked
// against the id it was packed under. The sender rebuilds the frames it
// released this way for a resend (codec/frame_rebuilder.h), and a push
// codes a delta in full this way when the destination lost its base after
// saying it held it (docs/FORMAT.md 3.1).
#pragma once

#include <cstddef>
#include <filesystem>
#include <span>

#include "base/status.h"
#include "codec/manifest.h"

namespace ferry {

// Reads chunk `c` (c.offset, c.length) of `path` into `raw`, which holds
// exactly c.length bytes, and checks that it still hashes to c.id: Aborted
// naming the file and offset when it does not (the file changed since it
// was packed), IOError when it cannot be read.
Status read_chunk_checked(const std::filesystem::path& path, const ManifestChunk& c,
                          std::span<std::byte> raw);

}  // namespace ferry
