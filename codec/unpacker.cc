// unpacker.cc: see unpacker.h. One walker serves verify and unpack, whatever
// the FrameSource: its threads read, decode and verify chunks in file order,
// up to a window ahead of the oldest chunk not yet done (a sliding window:
// no thread waits for the slowest chunk of a batch), hash each decoded
// chunk's leaves into its file's leaf list for the file root, and call hooks
// (file begin, chunk decoded, file verified) that unpack uses to write.
#include "codec/unpacker.h"

#include "codec/delta_codec.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <functional>
#include <mutex>
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

// The chunk a thread of the walk decodes. `frame` holds a frame the source
// reads (one it lends is not copied); kept from one chunk to the thread's
// next.
struct Slot {
  std::size_t file = 0;
  std::size_t chunk = 0;
  std::vector<std::byte> frame;
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

// The state the threads of one walk share (walk_frames). Chunks are
// claimed in file order, decoded by whichever thread claimed them, and
// retired in file order by one thread at a time: the file root checks and
// end_file run there, while the other threads go on decoding.
struct Walk {
  std::mutex mu;
  std::condition_variable window_moved;
  std::size_t next = 0;              // the next chunk to claim
  std::size_t retired = 0;           // chunks [0, retired) are retired
  bool retiring = false;             // a thread is retiring chunks (outside mu)
  Status failure;                    // the first failure in file order; ends the walk
  std::vector<char> done;            // per chunk: decoded (or failed)
  std::vector<Status> status;        // per chunk: its failure, as reported
  std::mutex progress_mu;            // options.progress is called under it
  std::uint64_t reported_bytes = 0;  // logical_done last reported
};

Status walk_frames(const FrameSource& a, const UnpackOptions& options, const Hooks& hooks) {
  const Manifest& m = a.manifest();
  ThreadPool& pool = options.pool ? *options.pool : ThreadPool::shared();
  const std::size_t window =
      std::max<std::size_t>(1, options.window_chunks ? options.window_chunks : 2 * pool.size());

  UnpackProgress progress;
  progress.logical_total = m.logical_bytes();
  std::vector<std::pair<std::size_t, std::size_t>> work;
  work.reserve(m.chunk_count());
  for (std::size_t f = 0; f < m.files.size(); ++f) {
    for (std::size_t c = 0; c < m.files[f].chunks.size(); ++c) work.emplace_back(f, c);
  }
  // Empty files have no chunks to carry them through the walk.
  for (std::size_t f = 0; f < m.files.size(); ++f) {
    if (!m.files[f].chunks.empty()) continue;
    if (hooks.begin_file) RETURN_IF_ERROR(hooks.begin_file(f));
    RETURN_IF_ERROR(check_root(a, m.files[f], {}));
    if (hooks.end_file) RETURN_IF_ERROR(hooks.end_file(f));
  }
  const std::size_t n = work.size();
  if (n == 0) return Status::ok();

  std::vector<std::vector<Digest>> leaves(m.files.size());
  Walk w;
  w.done.assign(n, 0);
  w.status.resize(n);

  // Chunk r, decoded, in file order: its failure, or its file's root check
  // and end once it is the file's last chunk.
  auto retire = [&](std::size_t r, const Status& st) -> Status {
    if (!st) return st;
    const auto [fi, ci] = work[r];
    const ManifestFile& f = m.files[fi];
    const ManifestChunk& c = f.chunks[ci];
    progress.logical_done += c.length;
    progress.frame_bytes += c.frame_bytes;
    if (ci + 1 < f.chunks.size()) return Status::ok();
    if (leaves[fi].empty()) {
      std::vector<Digest> ids(f.chunks.size());
      for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = f.chunks[i].id;
      RETURN_IF_ERROR(check_root(a, f, ids));
    } else {
      RETURN_IF_ERROR(check_root(a, f, leaves[fi]));
    }
    leaves[fi] = {};
    return hooks.end_file ? hooks.end_file(fi) : Status::ok();
  };

  // Marks chunk k done, then retires every chunk it completes the run of,
  // unless another thread is retiring already (it will see k).
  auto finish = [&](std::size_t k, Status st) {
    std::unique_lock lock(w.mu);
    w.status[k] = std::move(st);
    w.done[k] = 1;
    if (w.retiring) return;
    w.retiring = true;
    bool moved = false;
    while (w.failure.is_ok() && w.retired < n && w.done[w.retired]) {
      const std::size_t r = w.retired;
      const Status chunk_status = w.status[r];
      lock.unlock();
      Status out = retire(r, chunk_status);
      lock.lock();
      if (!out) {
        w.failure = std::move(out);
        break;
      }
      ++w.retired;
      moved = true;
    }
    // Read while this thread still retires: the next one may update it.
    const UnpackProgress seen = progress;
    w.retiring = false;
    const bool failed = !w.failure.is_ok();
    lock.unlock();
    w.window_moved.notify_all();
    if (moved && options.progress && !failed) {
      // One report at a time, never one older than the last.
      std::lock_guard report(w.progress_mu);
      if (seen.logical_done >= w.reported_bytes) {
        w.reported_bytes = seen.logical_done;
        options.progress(seen);
      }
    }
  };

  // One lane per thread: claim the next chunk in order (at most `window`
  // ahead of the oldest one not retired), decode it, finish it.
  const std::size_t lanes = std::min({pool.size() + 1, window, n});
  pool.parallel_for(lanes, [&](std::size_t) {
    Slot s;
    for (;;) {
      std::size_t k = 0;
      Status begun;
      {
        std::unique_lock lock(w.mu);
        w.window_moved.wait(lock,
                            [&] { return !w.failure.is_ok() || w.next >= n || w.next < w.retired + window; });
        if (!w.failure.is_ok() || w.next >= n) return;
        k = w.next++;
        // Under the lock, so that files begin in order.
        const auto [fi, ci] = work[k];
        if (ci == 0) {
          if (!root_from_chunk_ids(m.files[fi])) leaves[fi].assign(leaf_count(m.files[fi].size), Digest{});
          if (hooks.begin_file) begun = hooks.begin_file(fi);
        }
      }
      if (!begun) {
        finish(k, std::move(begun));
        continue;
      }
      s.file = work[k].first;
      s.chunk = work[k].second;
      Status st = decode_chunk(a, s, leaves[s.file], hooks);
      if (!st) {
        const ManifestFile& f = m.files[s.file];
        st = chunk_failure(a, f, f.chunks[s.chunk], st);
      }
      finish(k, std::move(st));
    }
  });
  if (!w.failure.is_ok()) return w.failure;
  if (w.retired != n)
    return Status::internal("unpack: " + std::to_string(n - w.retired) + " chunks not retired");
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
    const std::uint64_t offset = m.files[f].chunks[c].offset;
    RETURN_IF_ERROR(pwrite_all(file.fd(), data, offset, file.temp_path()));
    // Start writing the chunk to disk now, so that the file's fsync at its
    // end (AtomicFile::commit, on the thread that retires chunks in order)
    // finds little left to wait for. Best effort: the fsync reports errors.
    (void)::sync_file_range(file.fd(), static_cast<off64_t>(offset), static_cast<off64_t>(data.size()),
                            SYNC_FILE_RANGE_WRITE);
    return Status::ok();
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
