// chunk_reread.cc: see chunk_reread.h.
#include "codec/chunk_reread.h"

#include <fcntl.h>

#include <string>

#include "base/posix_file.h"
#include "codec/tree_hash.h"

namespace ferry {

Status read_chunk_checked(const std::filesystem::path& path, const ManifestChunk& c,
                          std::span<std::byte> raw) {
  FERRY_CHECK(raw.size() == c.length);
  ASSIGN_OR_RETURN(UniqueFd fd, open_fd(path, O_RDONLY | O_CLOEXEC));
  RETURN_IF_ERROR(pread_exact(fd.get(), raw, c.offset, path));
  const Digest id = chunk_id(raw);
  if (id != c.id) {
    return Status::aborted(path.string() + " at offset " + std::to_string(c.offset) +
                           " changed while being pushed: the chunk of " + std::to_string(c.length) +
                           " bytes sent as " + to_hex(c.id) + " now hashes to " + to_hex(id));
  }
  return Status::ok();
}

}  // namespace ferry
