// unpacker.cc: see unpacker.h. One walker serves verify and unpack, whatever
// the FrameSource: it reads, decodes and verifies windows of chunks in
// parallel, hashes each decoded
// chunk's leaves into its file's leaf list for the file root, and calls hooks
// (file begin, chunk decoded, file verified) that unpack uses to write.
#include "codec/unpacker.h"

#include "codec/delta_codec.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <functional>
#include <optional>
#include <system_error>
#include <utility>
#include <vector>

#include "base/free_list.h"
#include "base/posix_file.h"
#include "base/thread_pool.h"
#include "codec/chunk_codec.h"
#include "codec/frame.h"
#include "codec/tree_hash.h"

namespace ferry {
namespace {

struct Hooks {
  std::function<Status(std::size_t file)> begin_file;  // in order, before its first chunk
  // Parallel: may run for several chunks (of one or several files) at once.
  std::function<Status(std::size_t file, std::size_t chunk, std::span<const std::byte> data)> on_chunk;
  std::function<Status(std::size_t file)> end_file;  // in order, after its root matched
};

// A chunk of the window being decoded. `frame` holds a frame the source
// reads (one it lends is not copied).
struct Slot {
  std::size_t file = 0;
  std::size_t chunk = 0;
  std::vector<std::byte> frame;
  Status status;
};

// What decoding a chunk needs once its frame is here: the decoded bytes and
// a decoder with its plane scratch (about 8 MiB for a 4 MiB chunk). Borrowed
// from the process's free list only then, not held per slot or per thread:
// a restore from a store that reads with many threads (one ranged GET
// each) had every thread fault in its own while most of them waited on the
// network (106,000 page faults with 16 threads against 54,000 with 4).
struct DecodeScratch {
  std::vector<std::byte> raw;
  ChunkDecoder decoder;
};

Status chunk_failure(const FrameSource& a, const ManifestFile& f, const ManifestChunk& c, const Status& st) {
  // The source's own code (I/O, Corruption, a remote source's Unavailable)
  // tells the user whether to retry or to repair.
  return Status(st.code(), a.describe() + ": chunk " + to_hex(c.id) + " (file \"" + f.path + "\" offset " +
                               std::to_string(c.offset) + "): " + st.message());
}

// Reads, decodes and verifies one chunk into its slot (runs on a pool thread).
// When chunk ids compose the file root (manifest.h), the decoded bytes need
// not be hashed a second time for it.
bool root_from_chunk_ids(const ManifestFile& f) {
  std::vector<std::uint32_t> lengths(f.chunks.size());
  for (std::size_t i = 0; i < lengths.size(); ++i) lengths[i] = f.chunks[i].length;
  return root_composes_from_chunk_ids(lengths);
}

Status decode_chunk(const FrameSource& a, Slot& s, std::vector<Digest>& leaves, const Hooks& hooks) {
  const ManifestChunk& c = a.manifest().files[s.file].chunks[s.chunk];
  // A lent frame is decoded where the source holds it; `lent` keeps it
  // alive until this chunk is done.
  LentBytes lent;
  ASSIGN_OR_RETURN(const bool is_lent, a.lend_frame(s.file, s.chunk, lent));
  if (!is_lent) RETURN_IF_ERROR(a.read_frame(s.file, s.chunk, s.frame));
  const std::span<const std::byte> frame = is_lent ? lent.bytes : std::span<const std::byte>(s.frame);
  RETURN_IF_ERROR(check_frame_header(frame, c));
  FreeList<DecodeScratch>::Loan scratch(FreeList<DecodeScratch>::shared());
  std::vector<std::byte>& raw = scratch->raw;
  raw.resize(c.length);
  if (is_delta_codec(static_cast<Codec>(c.codec))) {
    // Rebuilt from its base, fetched by id, and verified against its own id.
    ASSIGN_OR_RETURN(FrameHeader h, parse_frame_header(frame));
    if (h.chunk_id != c.id) {
      return Status::corruption("frame holds chunk " + to_hex(h.chunk_id) + ", manifest says " +
                                to_hex(c.id));
    }
    RETURN_IF_ERROR(rebuild_chunk(
        h, frame,
        [&a](const Digest& id) -> Result<std::vector<std::byte>> {
          std::vector<std::byte> f;
          RETURN_IF_ERROR(a.read_chunk_frame(id, f));
          return f;
        },
        raw));
  } else {
    RETURN_IF_ERROR(scratch->decoder.decode(frame, std::span<std::byte>(raw), &c.id));
  }
  if (!leaves.empty()) {  // else the root composes from chunk ids
    hash_leaves(raw, std::span(leaves).subspan(c.offset / kLeafBytes, leaf_count(c.length)));
  }
  return hooks.on_chunk ? hooks.on_chunk(s.file, s.chunk, raw) : Status::ok();
}

Status check_root(const FrameSource& a, const ManifestFile& f, std::span<const Digest> leaves) {
  Digest root = merkle_root(leaves);
  if (root != f.root) {
    return Status::corruption(a.describe() + ": file \"" + f.path + "\" root mismatch: manifest " +
                              to_hex(f.root) + ", decoded chunks give " + to_hex(root));
  }
  return Status::ok();
}

Status walk_frames(const FrameSource& a, const UnpackOptions& options, const Hooks& hooks) {
  const Manifest& m = a.manifest();
  ThreadPool& pool = options.pool ? *options.pool : ThreadPool::shared();
  const std::size_t window = options.window_chunks ? options.window_chunks : 2 * pool.size();

  UnpackProgress progress;
  progress.logical_total = m.logical_bytes();
  std::vector<std::pair<std::size_t, std::size_t>> work;
  work.reserve(m.chunk_count());
  for (std::size_t f = 0; f < m.files.size(); ++f) {
    for (std::size_t c = 0; c < m.files[f].chunks.size(); ++c) work.emplace_back(f, c);
  }
  // Empty files have no chunks to carry them through the windows.
  for (std::size_t f = 0; f < m.files.size(); ++f) {
    if (!m.files[f].chunks.empty()) continue;
    if (hooks.begin_file) RETURN_IF_ERROR(hooks.begin_file(f));
    RETURN_IF_ERROR(check_root(a, m.files[f], {}));
    if (hooks.end_file) RETURN_IF_ERROR(hooks.end_file(f));
  }

  std::vector<std::vector<Digest>> leaves(m.files.size());
  std::vector<Slot> slots(std::max<std::size_t>(1, std::min(window, work.size())));
  for (std::size_t start = 0; start < work.size(); start += slots.size()) {
    const std::size_t n = std::min(slots.size(), work.size() - start);
    for (std::size_t j = 0; j < n; ++j) {
      auto [f, c] = work[start + j];
      slots[j].file = f;
      slots[j].chunk = c;
      if (c == 0) {
        if (!root_from_chunk_ids(m.files[f])) leaves[f].assign(leaf_count(m.files[f].size), Digest{});
        if (hooks.begin_file) RETURN_IF_ERROR(hooks.begin_file(f));
      }
    }
    pool.parallel_for(n, [&](std::size_t j) {
      Slot& s = slots[j];
      s.status = decode_chunk(a, s, leaves[s.file], hooks);
    });
    // Slots are in file order, so the first failure is the first bad chunk.
    for (std::size_t j = 0; j < n; ++j) {
      const Slot& s = slots[j];
      const ManifestFile& f = m.files[s.file];
      const ManifestChunk& c = f.chunks[s.chunk];
      if (!s.status) return chunk_failure(a, f, c, s.status);
      progress.logical_done += c.length;
      progress.frame_bytes += c.frame_bytes;
      if (s.chunk + 1 == f.chunks.size()) {
        if (leaves[s.file].empty()) {
          std::vector<Digest> ids(f.chunks.size());
          for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = f.chunks[i].id;
          RETURN_IF_ERROR(check_root(a, f, ids));
        } else {
          RETURN_IF_ERROR(check_root(a, f, leaves[s.file]));
        }
        leaves[s.file] = {};
        if (hooks.end_file) RETURN_IF_ERROR(hooks.end_file(s.file));
      }
    }
    if (options.progress) options.progress(progress);
  }
  return Status::ok();
}

}  // namespace

Status verify_frames(const FrameSource& source, const UnpackOptions& options) {
  return walk_frames(source, options, Hooks{});
}

Status verify_archive(const ArchiveReader& archive, const UnpackOptions& options) {
  return verify_frames(ArchiveFrameSource(archive), options);
}

Status unpack_archive(const ArchiveReader& archive, const std::filesystem::path& out_dir,
                      const UnpackOptions& options) {
  return unpack_frames(ArchiveFrameSource(archive), out_dir, options);
}

unsigned restored_mode(unsigned mode, bool exact_modes) {
  return exact_modes ? (mode & 07777u) : (mode & 0755u);
}

Status unpack_frames(const FrameSource& source, const std::filesystem::path& out_dir,
                     const UnpackOptions& options) {
  const Manifest& m = source.manifest();
  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  if (ec) return Status::io_error("creating " + out_dir.string() + ": " + ec.message());
  // The target directory itself is the operator's choice and may be a link;
  // everything beneath it is opened from this fd without following links.
  ASSIGN_OR_RETURN(UniqueFd root, open_fd(out_dir, O_RDONLY | O_DIRECTORY));

  // Files being written: one slot per manifest file, open only while in flight.
  std::vector<std::optional<AtomicFile>> open(m.files.size());
  Hooks hooks;
  hooks.begin_file = [&](std::size_t f) -> Status {
    // Paths were validated by the manifest parser: relative, no "..".
    const std::filesystem::path rel = m.files[f].path;
    ASSIGN_OR_RETURN(UniqueFd dir, open_dir_beneath(root.get(), rel.parent_path(), out_dir));
    ASSIGN_OR_RETURN(AtomicFile file,
                     AtomicFile::create_in(std::move(dir), rel.filename().string(), out_dir / rel, 0600));
    if (::ftruncate(file.fd(), static_cast<off_t>(m.files[f].size)) != 0) {
      return Status::from_errno(errno, "truncate " + file.temp_path().string());
    }
    open[f] = std::move(file);
    return Status::ok();
  };
  // Through the page cache on purpose: the restored files are what the
  // restarting job reads next (docs/BENCHMARKS.md, "ferry's own files").
  hooks.on_chunk = [&](std::size_t f, std::size_t c, std::span<const std::byte> data) {
    const AtomicFile& file = *open[f];
    return pwrite_all(file.fd(), data, m.files[f].chunks[c].offset, file.temp_path());
  };
  hooks.end_file = [&](std::size_t f) -> Status {
    AtomicFile& file = *open[f];
    RETURN_IF_ERROR(file.set_mode(restored_mode(m.files[f].mode, options.exact_modes)));
    const std::int64_t ns = m.files[f].mtime_ns;
    struct timespec times[2];
    times[0].tv_sec = 0;
    times[0].tv_nsec = UTIME_OMIT;  // access time: leave as now
    times[1].tv_sec = static_cast<time_t>(ns / 1'000'000'000);
    times[1].tv_nsec = static_cast<long>(ns % 1'000'000'000);
    if (times[1].tv_nsec < 0) {
      times[1].tv_nsec += 1'000'000'000;
      times[1].tv_sec -= 1;
    }
    if (::futimens(file.fd(), times) != 0)
      return Status::from_errno(errno, "set mtime of " + file.temp_path().string());
    RETURN_IF_ERROR(file.commit());
    open[f].reset();
    return Status::ok();
  };
  return walk_frames(source, options, hooks);
}

}  // namespace ferry
