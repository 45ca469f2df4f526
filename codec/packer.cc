// packer.cc: files -> planned chunks -> parallel encode -> frames in order;
// see packer.h.
//
// Work is cut into windows of chunks that may span files, so many small files
// keep every thread busy as well as one large file does. A window is read and
// hashed in parallel (each slot owns its buffers, reused from window to
// window), coded in one batch by a codec engine (codec/engine.h: the CPU
// engine over the pool, or the GPU engine), then its frames go to the sink in
// order, while the next window is read and hashed beside it; memory in flight
// is bounded by 2 x window x (chunk + frame) bytes.
#include "codec/packer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <future>
#include <limits>
#include <map>
#include <memory>
#include <set>
#include <system_error>
#include <thread>
#include <utility>

#include "base/aligned_bytes.h"
#include "base/buffer_stash.h"
#include "base/clock.h"
#include "base/direct_file.h"
#include "base/thread_pool.h"
#include "codec/chunk_codec.h"
#include "codec/chunker.h"
#include "codec/delta_base.h"
#include "codec/delta_codec.h"
#include "codec/engine.h"
#include "codec/safetensors.h"
#include "codec/tree_hash.h"

namespace ferry {
namespace {

// Chunks per window when each window asks the receiver what it lacks.
constexpr std::size_t kNeedWindowChunks = 8;
// Chunk buffers kept for the next pack_files in this process when one ends
// (base/buffer_stash.h): both windows at the have/need window (2 x 8), and
// more for a larger pool's windows (each is a chunk, 4 MiB by default).
constexpr std::size_t kKeptChunkBuffers = 4 * kNeedWindowChunks;

// The chunk buffers packing runs leave for the next one (never destroyed:
// a pack may run on another thread while the process exits).
BufferStash<AlignedBytes>& chunk_buffer_stash() {
  static auto* stash = new BufferStash<AlignedBytes>(kKeptChunkBuffers);
  return *stash;
}

inline constexpr std::size_t kHostNameBytes = 256;

std::string local_host_name() {
  char buf[kHostNameBytes] = {};
  if (::gethostname(buf, sizeof(buf) - 1) != 0) return "unknown";
  return buf;
}

std::int64_t mtime_ns(const struct stat& st) {
  return static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
}

// One input file as planned before any data is read.
struct PlannedFile {
  const PackSource* source = nullptr;
  // The file planned (lstat when described): every chunk's read checks that
  // it opened this same file.
  std::uint64_t dev = 0, ino = 0;
  std::vector<ChunkPlan> plan;
  // Chunk ids compose the file root (manifest.h): leaf hashes are needed
  // only per chunk. Otherwise the file's leaves are kept while it is in
  // flight (32 bytes per 4 KiB) for its root.
  bool compose_root = false;
  std::vector<Digest> leaves;
  std::size_t chunks_done = 0;
  // The same file in the earlier checkpoint (PackOptions::delta_from), when
  // laid out the same.
  std::optional<DeltaBaseFile> base;
};

// One chunk of the work list: (file, chunk) indexes, in pack order.
using WorkItem = std::pair<std::size_t, std::size_t>;

// One chunk in flight: everything a worker touches, reused across windows.
struct Slot {
  std::size_t file = 0;
  std::size_t chunk = 0;
  AlignedBytes raw;    // the chunk's bytes, read around the page cache where possible
  AlignedBytes frame;  // frame_room_bytes(raw); encoded.frame_bytes of it are the frame
  // Instead of `frame` for a chunk to send when the sink lends memory
  // (FrameSink::lend_frame): the frame is coded where the sink keeps it.
  std::vector<std::byte> lent;
  std::vector<Digest> leaves;  // this chunk's leaf hashes, when the file keeps none
  EncodedChunk encoded;
  Digest id{};
  // Have/need outcome: send the frame, or skip it (listed, not sent). A
  // skipped chunk takes its frame facts from `facts`, from the slot it
  // repeats (`repeat_of`), or from encoding it (`encode`).
  bool send = true;
  bool encode = true;
  std::optional<FrameFacts> facts;
  std::optional<std::size_t> repeat_of;
  // With have/need: the id was asked about when the window was read
  // (WindowPipeline::ask), and `needed` is the answer.
  bool asked = false;
  bool needed = false;
  // Delta base (PackOptions::delta_from): its bytes and id as read, and
  // whether the destination said it holds that id.
  AlignedBytes base;
  std::optional<Digest> base_id;
  bool base_held = false;
  Status status;
};

// Whether `st` is the file `src` listed (when the listing recorded one).
Status check_listed_identity(const PackSource& src, const struct stat& st) {
  if (src.ino == 0 || (st.st_dev == src.dev && st.st_ino == src.ino)) return Status::ok();
  return Status::source_changed(src.path.string() + " was replaced after it was listed (device " +
                                std::to_string(src.dev) + " inode " + std::to_string(src.ino) +
                                ", now device " + std::to_string(st.st_dev) + " inode " +
                                std::to_string(st.st_ino) + ")");
}

Result<ManifestFile> describe_file(const PackSource& src, std::size_t chunk_bytes, PlannedFile& pf) {
  std::vector<ChunkPlan>& plan = pf.plan;
  struct stat st {};
  // lstat: a file swapped for a symlink since the listing is not followed.
  if (::lstat(src.path.c_str(), &st) != 0) return Status::from_errno(errno, "stat " + src.path.string());
  if (S_ISLNK(st.st_mode))
    return Status::source_changed(src.path.string() + " became a symlink after it was listed; not followed");
  if (!S_ISREG(st.st_mode)) return Status::invalid_argument(src.path.string() + ": not a regular file");
  RETURN_IF_ERROR(check_listed_identity(src, st));
  pf.dev = st.st_dev;
  pf.ino = st.st_ino;
  ManifestFile f;
  f.path = src.rel_path;
  f.size = static_cast<std::uint64_t>(st.st_size);
  f.mode = st.st_mode & 07777;
  f.mtime_ns = mtime_ns(st);
  std::optional<SafetensorsLayout> layout;
  if (looks_like_safetensors(src.path)) {
    // A file named .safetensors whose header does not parse is still packed,
    // byte for byte, as a file of unknown layout.
    auto parsed = read_safetensors_layout(src.path);
    if (parsed && parsed->file_bytes == f.size) layout = std::move(parsed).value();
  }
  plan = plan_chunks(f.size, layout ? &*layout : nullptr, chunk_bytes);
  if (layout) {
    f.layout = LayoutKind::kSafetensors;
    f.tensors.reserve(layout->tensors.size());
    for (const auto& t : layout->tensors) {
      f.tensors.push_back(ManifestTensor{t.name, t.dtype_name, t.shape, t.begin, t.end});
    }
  }
  return f;
}

// Reads and hashes one chunk into its slot, setting its id (runs on a pool
// thread). Each chunk opens the file anew, so a file is never held open
// between windows, and the size check catches a file rewritten meanwhile.
void read_chunk(Slot& s, PlannedFile& pf, std::uint64_t expected_size, bool direct_io) {
  const ChunkPlan& p = pf.plan[s.chunk];
  const std::filesystem::path& path = pf.source->path;
  auto file = DirectReadFile::open(path, direct_io, /*follow_symlinks=*/false);
  if (!file) {
    struct stat ls {};
    s.status =
        ::lstat(path.c_str(), &ls) == 0 && S_ISLNK(ls.st_mode)
            ? Status::source_changed(path.string() + " became a symlink after it was listed; not followed")
            : file.status();
    return;
  }
  struct stat st {};
  if (::fstat(file->fd(), &st) != 0) {
    s.status = Status::from_errno(errno, "stat " + path.string());
    return;
  }
  if (st.st_dev != pf.dev || st.st_ino != pf.ino) {
    s.status = Status::source_changed(path.string() + " was replaced by another file while being packed");
    return;
  }
  if (static_cast<std::uint64_t>(st.st_size) != expected_size) {
    s.status = Status::source_changed(path.string() + " changed size while being packed (" +
                                      std::to_string(expected_size) + " -> " + std::to_string(st.st_size) +
                                      " bytes)");
    return;
  }
  s.raw.take(p.length);
  s.status = file->read(s.raw.padded(), p.length, p.offset);
  if (!s.status) return;
  std::span<Digest> leaves;
  if (pf.compose_root) {
    s.leaves.resize(leaf_count(p.length));
    leaves = s.leaves;
  } else {
    leaves = std::span(pf.leaves).subspan(p.offset / kLeafBytes, leaf_count(p.length));
  }
  hash_leaves(s.raw.view(), leaves);
  s.id = merkle_root(leaves);
  s.base_id.reset();
  s.base_held = false;
  if (pf.base) {
    s.base_id = read_delta_base(*pf.base, p, s.base, direct_io);
    if (s.base_id == s.id) s.base_id.reset();  // unchanged: dedup, not a delta
  }
}

// Codes the window's slots marked `encode` in one engine call, with the ids
// the read already computed; a frame to send goes into memory the sink lends
// when it does. `jobs` and `results` are reused scratch.
Status encode_window(std::span<Slot> slots, std::span<const PlannedFile> files, CodecEngine& engine,
                     FrameSink& sink, std::vector<EncodeJob>& jobs, std::vector<EncodedChunk>& results) {
  jobs.clear();
  for (Slot& s : slots) {
    if (!s.encode) continue;
    const ChunkPlan& p = files[s.file].plan[s.chunk];
    EncodeJob job;
    job.data = s.raw.view();
    job.dtype = p.dtype;
    job.trial = p.trial;
    const std::size_t room = frame_room_bytes(p.length);
    s.lent = s.send ? sink.lend_frame(room) : std::vector<std::byte>{};
    FERRY_CHECK(s.lent.empty() || s.lent.size() >= room);
    job.frame = s.lent.empty() ? s.frame.take(room) : std::span<std::byte>(s.lent);
    job.known_id = &s.id;
    // A chunk the destination holds is coded only to learn its manifest
    // facts; coded against its base as a sent one would be, it gives the
    // facts of the frame an interrupted push of the same snapshot (same
    // base) stored, not those of a standalone frame the destination never
    // got (its restore would refuse the disagreement as damage).
    if (s.base_id && s.base_held) {
      job.base = s.base.view();
      job.base_id = &*s.base_id;
    }
    jobs.push_back(job);
  }
  if (jobs.empty()) return Status::ok();
  results.assign(jobs.size(), EncodedChunk{});
  Status st = engine.encode(jobs, results);
  if (!st) {
    const Slot& first = *std::find_if(slots.begin(), slots.end(), [](const Slot& s) { return s.encode; });
    return st.with_context(std::string(engine.kind()) + " codec engine, coding " +
                           std::to_string(jobs.size()) + " chunks from " +
                           files[first.file].source->path.string());
  }
  std::size_t i = 0;
  for (Slot& s : slots) {
    if (s.encode) s.encoded = results[i++];
  }
  return Status::ok();
}

// Marks each slot of a window to send, to skip with known facts, or to
// encode only for its facts, from the have/need answers its read brought
// (WindowPipeline::ask). An id met before (in this window or an earlier one)
// is never sent twice: its facts come from `seen` or from its first slot.
void decide_window(std::span<Slot> slots, const PackOptions& options, std::map<Digest, FrameFacts>& seen) {
  for (std::size_t j = 0; j < slots.size(); ++j) {
    Slot& s = slots[j];
    s.send = false;
    s.encode = false;
    s.facts.reset();
    s.repeat_of.reset();
    if (auto it = seen.find(s.id); it != seen.end()) {
      s.facts = it->second;
      continue;
    }
    for (std::size_t k = 0; k < j; ++k) {
      if (slots[k].id == s.id && !slots[k].repeat_of && !slots[k].facts) {
        s.repeat_of = k;
        break;
      }
    }
  }
  // Met for the first time (neither seen nor repeated): asked about when
  // the window was read; the ids of earlier windows are all in `seen` by
  // now, so that is exactly the set asked.
  for (Slot& s : slots) {
    if (s.facts || s.repeat_of) continue;
    FERRY_CHECK(s.asked);
    s.send = s.needed;
    s.encode = true;
    if (!s.send && options.known_frame) {
      s.facts = options.known_frame(s.id);
      if (s.facts) s.encode = false;
    }
  }
}

}  // namespace

const PackSource* find_pack_source(std::span<const PackSource> sources, std::string_view rel_path) {
  auto it = std::lower_bound(sources.begin(), sources.end(), rel_path,
                             [](const PackSource& s, std::string_view p) { return s.rel_path < p; });
  return it != sources.end() && it->rel_path == rel_path ? &*it : nullptr;
}

Result<std::vector<PackSource>> list_pack_sources(const std::filesystem::path& path,
                                                  std::vector<std::string>* notices) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::file_status st = fs::symlink_status(path, ec);
  if (ec) return Status::not_found(path.string() + ": " + ec.message());
  std::vector<PackSource> out;
  if (fs::is_regular_file(st)) {
    struct stat ls {};
    if (::lstat(path.c_str(), &ls) != 0 || !S_ISREG(ls.st_mode)) ls = {};
    out.push_back({path, path.filename().string(), static_cast<std::uint64_t>(ls.st_dev),
                   static_cast<std::uint64_t>(ls.st_ino)});
    return out;
  }
  if (fs::is_symlink(st)) {
    return Status::invalid_argument(path.string() + " is a symlink; name the file or directory it points to");
  }
  if (!fs::is_directory(st)) return Status::invalid_argument(path.string() + ": not a file or directory");
  fs::recursive_directory_iterator it(path, fs::directory_options::none, ec), end;
  for (; !ec && it != end; it.increment(ec)) {
    const fs::directory_entry& e = *it;
    fs::file_status es = e.symlink_status(ec);
    if (ec) break;
    if (fs::is_directory(es)) continue;
    std::string rel = e.path().lexically_relative(path).generic_string();
    if (fs::is_regular_file(es)) {
      struct stat st {};
      // Gone since the directory was read: the packer names it when it plans.
      if (::lstat(e.path().c_str(), &st) != 0 || !S_ISREG(st.st_mode)) st = {};
      out.push_back(
          {e.path(), rel, static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino)});
    } else if (notices) {
      notices->push_back("skipping " + rel + (fs::is_symlink(es) ? ": symlink" : ": not a regular file"));
    }
  }
  if (ec) return Status::io_error("listing " + path.string() + ": " + ec.message());
  std::sort(out.begin(), out.end(),
            [](const PackSource& a, const PackSource& b) { return a.rel_path < b.rel_path; });
  return out;
}

namespace {

// Plans every file up front (headers only) into `m` and `files`, and
// flattens the chunks of all files into one ordered work list.
Status plan_sources(std::span<const PackSource> sources, std::size_t chunk_bytes,
                    const std::filesystem::path& delta_from, Manifest& m, std::vector<PlannedFile>& files,
                    std::vector<WorkItem>& work) {
  files.resize(sources.size());
  m.files.reserve(sources.size());
  for (std::size_t i = 0; i < sources.size(); ++i) {
    RETURN_IF_ERROR(validate_relative_path(sources[i].rel_path));
    if (i > 0 && !(sources[i - 1].rel_path < sources[i].rel_path)) {
      return Status::invalid_argument("pack sources not in strictly ascending order at " +
                                      sources[i].rel_path);
    }
    files[i].source = &sources[i];
    ASSIGN_OR_RETURN(ManifestFile f, describe_file(sources[i], chunk_bytes, files[i]));
    if (files[i].plan.size() > kMaxFileChunks) {
      return Status::invalid_argument(sources[i].path.string() +
                                      ": too many chunks; use a larger --chunk_size");
    }
    std::vector<std::uint32_t> lengths;
    for (const auto& p : files[i].plan) lengths.push_back(p.length);
    files[i].compose_root = root_composes_from_chunk_ids(lengths);
    if (!delta_from.empty()) files[i].base = pair_delta_base(delta_from, f, files[i].plan, chunk_bytes);
    f.chunks.reserve(files[i].plan.size());
    if (files[i].plan.empty()) f.root = merkle_root({});
    for (std::size_t c = 0; c < files[i].plan.size(); ++c) work.emplace_back(i, c);
    m.files.push_back(std::move(f));
  }
  return Status::ok();
}

// Records a chunk in the manifest and hands its frame to the sink, or
// reports it skipped (in file order); completes the file's root after its
// last chunk. `window` holds the slot a repeated id refers to.
Status emit_chunk(Slot& s, std::span<const Slot> window, PlannedFile& pf, ManifestFile& mf, FrameSink& sink,
                  std::map<Digest, FrameFacts>* seen) {
  const ChunkPlan& p = pf.plan[s.chunk];
  ManifestChunk c;
  c.offset = p.offset;
  c.length = p.length;
  c.id = s.id;
  c.dtype = p.dtype;
  if (s.encode) {
    c.codec = static_cast<std::uint8_t>(s.encoded.codec);
    c.frame_bytes = s.encoded.frame_bytes;
    c.base_id = s.encoded.base_id;
  } else {
    const Slot& first = s.repeat_of ? window[*s.repeat_of] : s;
    FrameFacts f = first.facts ? *first.facts
                               : FrameFacts{static_cast<std::uint8_t>(first.encoded.codec),
                                            first.encoded.frame_bytes, first.encoded.base_id};
    c.codec = f.codec;
    c.frame_bytes = f.frame_bytes;
    c.base_id = f.base_id;
  }
  mf.chunks.push_back(c);
  if (s.send && !s.lent.empty()) {
    s.lent.resize(s.encoded.frame_bytes);
    RETURN_IF_ERROR(sink.put_lent_frame(mf, mf.chunks.back(), std::exchange(s.lent, {})));
  } else if (s.send) {
    RETURN_IF_ERROR(sink.put_frame(mf, mf.chunks.back(), s.frame.view().first(s.encoded.frame_bytes)));
  } else {
    RETURN_IF_ERROR(sink.skip_chunk(mf, mf.chunks.back()));
  }
  if (seen) seen->emplace(c.id, FrameFacts{c.codec, c.frame_bytes, c.base_id});
  if (++pf.chunks_done == pf.plan.size()) {
    if (pf.compose_root) {
      std::vector<Digest> ids(mf.chunks.size());
      for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = mf.chunks[i].id;
      mf.root = merkle_root(ids);
    } else {
      mf.root = merkle_root(pf.leaves);
    }
    pf.leaves = {};
  }
  return Status::ok();
}

// The manifest's header fields from the options, after checking the limits
// that do not depend on the files' contents.
Result<Manifest> start_manifest(std::size_t source_count, const PackOptions& options) {
  if (options.job.size() > kMaxJobBytes) {
    return Status::invalid_argument("job name longer than " + std::to_string(kMaxJobBytes) + " bytes");
  }
  if (source_count > kMaxManifestFiles) {
    return Status::invalid_argument("too many files: " + std::to_string(source_count) + " (limit " +
                                    std::to_string(kMaxManifestFiles) + ")");
  }
  Manifest m;
  m.host = options.host.empty() ? manifest_host_name() : options.host;
  if (m.host.size() > kMaxHostBytes) m.host.resize(kMaxHostBytes);
  m.job = options.job;
  m.step = options.step;
  m.created_ns = options.created_ns.value_or(wall_ns());
  m.origin = options.origin;
  return m;
}

// The engine that codes the windows: the caller's, or a CPU engine over the
// same pool at the caller's zstd level, kept in `own`.
Result<CodecEngine*> choose_engine(const PackOptions& options, ThreadPool& pool,
                                   std::unique_ptr<CodecEngine>& own) {
  CodecEngine* engine = options.engine;
  if (engine == nullptr) {
    CpuEngineOptions eo;
    eo.pool = &pool;
    eo.zstd_level = options.zstd_level;
    own = make_cpu_engine(eo);
    engine = own.get();
  }
  if (!engine->supports(MemorySpace::kHost)) {
    return Status::invalid_argument(std::string(engine->kind()) + " codec engine cannot code host memory");
  }
  return engine;
}

// The window pipeline of one pack_files call. Two windows of slots: while
// the calling thread asks have/need about, codes and emits window k, a helper
// thread reads and hashes window k + 1 on the same pool, so the pool is not
// idle during the round trip and while the sink blocks on a full queue. Only
// the calling thread uses the engine.
class WindowPipeline {
 public:
  WindowPipeline(const PackOptions& options, FrameSink& sink, ThreadPool& pool, CodecEngine& engine,
                 Manifest& m, std::vector<PlannedFile>& files, std::span<const WorkItem> work)
      : options_(options), sink_(sink), pool_(pool), engine_(engine), m_(m), files_(files), work_(work) {
    // With have/need, each window costs one round trip to the receiver
    // before its chunks are coded, so windows are larger there (fewer round
    // trips on a long link) than for a local archive.
    const std::size_t window = options.window_chunks ? options.window_chunks
                               : options.need ? std::max<std::size_t>(kNeedWindowChunks, 2 * pool.size())
                                              : 2 * pool.size();
    const std::size_t slot_count = std::max<std::size_t>(1, std::min(window, work.size()));
    // Chunk buffers an earlier pack left, of the chunk size: their pages
    // are mapped already.
    const std::size_t chunk_room = round_up_to_direct_align(options.chunk_bytes);
    for (auto& set : slot_sets_) {
      set = std::vector<Slot>(slot_count);
      for (Slot& s : set) s.raw = chunk_buffer_stash().take(chunk_room, 2 * chunk_room);
    }
    progress_.logical_total = m.logical_bytes();
  }
  WindowPipeline(const WindowPipeline&) = delete;
  WindowPipeline& operator=(const WindowPipeline&) = delete;
  ~WindowPipeline() {
    for (auto& set : slot_sets_) {
      for (Slot& s : set) {
        chunk_buffer_stash().keep(std::move(s.raw));
        chunk_buffer_stash().keep(std::move(s.frame));
      }
    }
  }

  Status run() {
    std::size_t cur_n = assign(slot_sets_[0], 0);
    read_window(slot_sets_[0], cur_n);
    ask_in_turn(0, cur_n, {});
    int cur = 0;
    for (std::size_t start = 0; start < work_.size();) {
      const std::size_t n = cur_n;
      const std::size_t next_start = start + n;
      std::size_t next_n = 0;
      // A window whose read failed ends the run before the next one is read.
      RETURN_IF_ERROR(prepared_status(std::span(slot_sets_[cur]).first(n)));
      std::jthread ahead;  // joined on every path out of this iteration
      if (next_start < work_.size()) {
        std::vector<Slot>& next = slot_sets_[1 - cur];
        next_n = assign(next, next_start);
        ahead = std::jthread([this, &next, set = 1 - cur, next_n, before = questions_[cur]] {
          read_window(next, next_n);
          ask_in_turn(set, next_n, before);
        });
      }
      // The next window is read while this one's question is answered: on a
      // long link the round trip overlaps a read, not only a coding. A
      // failed question ends the run before the next window is asked about.
      if (questions_[cur].valid()) questions_[cur].wait();
      RETURN_IF_ERROR(question_status_[cur]);
      RETURN_IF_ERROR(finish(std::span(slot_sets_[cur]).first(n)));
      if (ahead.joinable()) ahead.join();
      cur = 1 - cur;
      cur_n = next_n;
      start = next_start;
    }
    return Status::ok();
  }

 private:
  // Assigns the window at `start` to `slots` (calling thread; allocates the
  // leaves of a file met for the first time, which no other window touches
  // yet). Returns the window's chunk count.
  std::size_t assign(std::vector<Slot>& slots, std::size_t start) {
    const std::size_t n = std::min(slots.size(), work_.size() - start);
    for (std::size_t j = 0; j < n; ++j) {
      auto [fi, ci] = work_[start + j];
      slots[j].file = fi;
      slots[j].chunk = ci;
      slots[j].status = Status::ok();
      if (ci == 0 && !files_[fi].compose_root)
        files_[fi].leaves.assign(leaf_count(m_.files[fi].size), Digest{});
    }
    return n;
  }

  // Reads and hashes a window. Touches only its slots and the leaf ranges of
  // their chunks.
  void read_window(std::vector<Slot>& slots, std::size_t n) {
    pool_.parallel_for(n, [&](std::size_t j) {
      Slot& s = slots[j];
      read_chunk(s, files_[s.file], m_.files[s.file].size, options_.direct_io);
    });
  }

  // With have/need, asks about the read window in slot set `set` on a thread
  // of its own, once the question `before` (the window before's) is
  // answered: questions go one at a time and in window order, and none is
  // asked after one failed. questions_[set] is done when the slots hold
  // their answer and question_status_[set] its outcome.
  void ask_in_turn(int set, std::size_t n, std::shared_future<void> before) {
    question_status_[set] = Status::ok();
    if (!options_.need) return;
    questions_[set] = std::async(std::launch::async, [this, set, n, before] {
                        if (before.valid()) before.wait();
                        if (question_failed_) return;
                        question_status_[set] = ask(std::span(slot_sets_[set]).first(n));
                        if (!question_status_[set]) question_failed_ = true;
                      }).share();
  }

  // Asks options.need about the window's ids not asked before in this run
  // (each once, in order), on the question thread (ask_in_turn). Exactly the
  // ids decide_window will find met for the first time. A window with a
  // failed read is not asked about (the run ends at its read).
  Status ask(std::span<Slot> slots) {
    std::vector<Digest> fresh;
    std::vector<std::size_t> fresh_slot;
    for (std::size_t j = 0; j < slots.size(); ++j) {
      Slot& s = slots[j];
      s.asked = false;
      if (!s.status) return Status::ok();
      if (!asked_.insert(s.id).second) continue;  // an earlier window's, or repeated in this one
      fresh.push_back(s.id);
      fresh_slot.push_back(j);
    }
    // The delta bases of the fresh chunks, after them in the same question:
    // a base the destination lacks means a standalone frame.
    const std::size_t n_fresh = fresh.size();
    std::map<Digest, std::size_t> base_at;
    for (std::size_t i = 0; i < n_fresh; ++i) {
      const Slot& s = slots[fresh_slot[i]];
      if (s.base_id && base_at.emplace(*s.base_id, fresh.size()).second) fresh.push_back(*s.base_id);
    }
    if (fresh.empty()) return Status::ok();
    Result<std::vector<bool>> need = options_.need(fresh);
    if (need && need->size() != fresh.size()) {
      need = Status::internal("have/need answered " + std::to_string(need->size()) + " flags for " +
                              std::to_string(fresh.size()) + " chunks");
    }
    if (!need) return need.status();
    for (std::size_t i = 0; i < n_fresh; ++i) {
      Slot& s = slots[fresh_slot[i]];
      s.asked = true;
      s.needed = (*need)[i];
      s.base_held = s.base_id && !(*need)[base_at.at(*s.base_id)];
    }
    return Status::ok();
  }

  // The first failure of a read window's reads, in order (the outcome of
  // its question is question_status_, apart).
  static Status prepared_status(std::span<const Slot> slots) {
    for (const Slot& s : slots) {
      if (!s.status) return s.status;
    }
    return Status::ok();
  }

  // Decides, codes and emits a prepared window (prepared_status ok), in
  // order.
  Status finish(std::span<Slot> slots) {
    if (options_.need) {
      decide_window(slots, options_, seen_);
    } else {
      for (Slot& s : slots) {
        s.send = true;
        s.encode = true;
      }
    }
    RETURN_IF_ERROR(encode_window(slots, files_, engine_, sink_, jobs_, results_));
    for (Slot& s : slots) {
      if (!s.status) return s.status;
      RETURN_IF_ERROR(
          emit_chunk(s, slots, files_[s.file], m_.files[s.file], sink_, options_.need ? &seen_ : nullptr));
      progress_.logical_done += s.raw.size();
      ++progress_.chunks_done;
      if (s.send) {
        progress_.frame_bytes += s.encoded.frame_bytes;
        if (is_delta_codec(s.encoded.codec)) {
          ++progress_.delta_chunks;
          progress_.delta_logical_bytes += s.raw.size();
          progress_.delta_frame_bytes += s.encoded.frame_bytes;
        }
      } else {
        ++progress_.chunks_skipped;
      }
    }
    if (options_.progress) options_.progress(progress_);
    return Status::ok();
  }

  const PackOptions& options_;
  FrameSink& sink_;
  ThreadPool& pool_;
  CodecEngine& engine_;
  Manifest& m_;
  std::vector<PlannedFile>& files_;
  std::span<const WorkItem> work_;
  std::vector<Slot> slot_sets_[2];
  // With have/need: the frame facts of every id met so far, so that no id is
  // sent twice in one run (32 + 8 bytes per distinct chunk).
  std::map<Digest, FrameFacts> seen_;
  // Every id asked about so far (ask, one thread at a time; 32 bytes each).
  std::set<Digest> asked_;
  std::atomic<bool> question_failed_{false};
  Status question_status_[2];
  // Each slot set's question in flight (ask_in_turn). Declared after the
  // slots and asked_, so that destruction waits for a question before they go.
  std::shared_future<void> questions_[2];
  std::vector<EncodeJob> jobs_;  // encode_window's scratch
  std::vector<EncodedChunk> results_;
  PackProgress progress_;
};

}  // namespace

std::string manifest_host_name() {
  std::string host = local_host_name();
  if (host.size() > kMaxHostBytes) host.resize(kMaxHostBytes);
  return host;
}

Result<Manifest> pack_files(std::span<const PackSource> sources, const PackOptions& options,
                            FrameSink& sink) {
  RETURN_IF_ERROR(check_chunk_bytes(options.chunk_bytes));
  ThreadPool& pool = options.pool ? *options.pool : ThreadPool::shared();
  ASSIGN_OR_RETURN(Manifest m, start_manifest(sources.size(), options));
  std::vector<PlannedFile> files;
  std::vector<WorkItem> work;
  RETURN_IF_ERROR(plan_sources(sources, options.chunk_bytes, options.delta_from, m, files, work));
  std::unique_ptr<CodecEngine> own_engine;
  ASSIGN_OR_RETURN(CodecEngine * engine, choose_engine(options, pool, own_engine));
  WindowPipeline pipeline(options, sink, pool, *engine, m, files, work);
  RETURN_IF_ERROR(pipeline.run());
  if (m.origin.kind == SnapshotKind::kDelta && !m.has_delta_chunks()) {
    m.origin.kind = SnapshotKind::kKey;  // no chunk needs a base: restore reads one frame each
    m.origin.base_snapshot.clear();
    m.origin.chain_depth = 0;
  }
  RETURN_IF_ERROR(validate_manifest(m));
  return m;
}

}  // namespace ferry
