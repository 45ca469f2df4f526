// device_restore.cc: see device_restore.h. A restore into memory is a
// pipeline of windows (consecutive chunks in file order, bounded in bytes and
// in count): a reader thread fills a ring of staging slots with frames, read
// in parallel on the pool; decode lanes take filled slots, decode and verify
// every chunk straight into its file's allocation and hand the slot back.
//   GPU engine: each lane has its own engine (its own CUDA stream) and device
//   staging; a slot's compressed frames cross PCIe in one copy from pinned
//   memory, then the engine decodes and verifies them into the tensors'
//   device allocation. Two lanes let one window's copy overlap another's
//   decode, and the reader fills the next slot meanwhile.
//   CPU fallback into a device: decode on the host into the slot's pinned raw
//   buffer, then copy to the device.
//   Host destinations (device=cpu, files without a tensor layout): decode on
//   the host straight into the final allocation, no copy.
#include "replication/device_restore.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>
#include <utility>

#include "base/clock.h"
#include "base/human_size.h"
#include "base/thread_pool.h"
#include "codec/limits.h"
#include "codec/manifest.h"
#include "codec/tree_hash.h"
#include "cuda/gpu_memory.h"
#include "replication/frame_sources.h"

namespace ferry::replication {
namespace {

// GPU engines (each with its own stream and arena) decoding windows at once.
constexpr std::size_t kGpuLanes = 2;
// Staging slots per lane: one being read while one decodes.
constexpr std::size_t kSlotsPerLane = 2;
// The GPU engine's decode arena needs about five bytes per raw byte of a
// batch (payload, output, tables, digests); six leaves room for rounding.
constexpr std::size_t kArenaBytesPerRawByte = 6;
// The GPU engine's own pinned pool is unused when frames are already on the
// device; keep it small.
constexpr std::size_t kEnginePinnedBytes = 1u << 20;

std::uint64_t round_up(std::uint64_t n, std::uint64_t a) { return (n + a - 1) / a * a; }

// Host memory aligned like cudaMalloc's, freed when the last owner goes.
Result<std::shared_ptr<std::byte>> host_allocate(std::uint64_t bytes) {
  const std::uint64_t n = round_up(std::max<std::uint64_t>(bytes, 1), kRestoreDataAlignment);
  void* p = std::aligned_alloc(kRestoreDataAlignment, n);
  if (!p) return Status::exhausted("cannot allocate " + format_bytes_exact(n) + " of host memory");
  return std::shared_ptr<std::byte>(static_cast<std::byte*>(p), [](std::byte* q) { std::free(q); });
}

// Where one file of the snapshot lands: byte 0 of the file at `base`.
struct FilePlan {
  bool tensors = false;    // a safetensors file restored as tensors
  bool on_device = false;  // in options.device memory (else host)
  std::uint64_t pad = 0;   // bytes before the file so its data section is aligned
  std::uint64_t alloc_bytes = 0;
  std::shared_ptr<std::byte> alloc;
  std::byte* base = nullptr;
};

struct ChunkRef {
  std::size_t file = 0;
  std::size_t chunk = 0;
};

struct Window {
  std::size_t first = 0;  // into the flat chunk list
  std::size_t count = 0;
  std::uint64_t raw_bytes = 0;
  std::uint64_t frame_bytes = 0;
};

struct Slot {
  std::shared_ptr<std::byte> frames;  // frame bytes of one window, back to back
  std::shared_ptr<std::byte> raw;     // CPU fallback into a device: decoded bytes
  std::size_t window = 0;
  std::vector<Status> read_status;  // per chunk of the window
};

struct Lane {
  std::unique_ptr<CodecEngine> gpu;  // null: decode on the host
  std::unique_ptr<CodecEngine> cpu;
  std::shared_ptr<std::byte> device_frames;  // GPU lane: the window's frames on the device
  GpuStream stream;
};

std::uint64_t data_section_begin(const ManifestFile& f) {
  std::uint64_t d = f.size;
  for (const ManifestTensor& t : f.tensors) d = std::min(d, t.begin);
  return d;
}

// Everything the reader and the lanes share.
class Pipeline {
 public:
  Pipeline(const FrameSource& source, const DeviceRestoreOptions& options, ThreadPool& pool,
           std::vector<FilePlan>& files)
      : source_(source), m_(source.manifest()), options_(options), pool_(pool), files_(files) {}

  Status run(std::vector<Lane>& lanes, std::size_t slot_count, std::uint64_t slot_raw_bytes,
             std::size_t window_chunks, bool pinned);
  std::uint64_t frame_bytes() const { return progress_.frame_bytes; }

 private:
  void plan_windows(std::uint64_t slot_raw_bytes, std::size_t window_chunks);
  void read_loop();
  void lane_loop(Lane& lane);
  Status decode_window(Lane& lane, Slot& slot);
  // Records a chunk's failure (the earliest chunk wins) and stops the pipeline.
  void fail_chunk(std::size_t index, const Status& st);
  void fail(const Status& st) { fail_chunk(kNoChunk, st); }
  bool stopped() {
    std::lock_guard lock(mu_);
    return stop_;
  }

  static constexpr std::size_t kNoChunk = static_cast<std::size_t>(-1);

  const FrameSource& source_;
  const Manifest& m_;
  const DeviceRestoreOptions& options_;
  ThreadPool& pool_;
  std::vector<FilePlan>& files_;
  std::vector<ChunkRef> chunks_;
  std::vector<std::uint64_t> frame_at_;  // per chunk: offset of its frame in its window's slot
  std::vector<std::uint64_t> raw_at_;    // per chunk: offset of its bytes in its window's raw slot
  std::vector<Window> windows_;
  std::vector<Slot> slots_;
  std::uint64_t slot_frame_capacity_ = 0;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::size_t> free_, ready_;
  bool reader_done_ = false;
  bool stop_ = false;
  std::size_t error_chunk_ = kNoChunk;
  Status error_;
  std::mutex progress_mu_;
  UnpackProgress progress_;
};

void Pipeline::plan_windows(std::uint64_t slot_raw_bytes, std::size_t window_chunks) {
  for (std::size_t f = 0; f < m_.files.size(); ++f) {
    for (std::size_t c = 0; c < m_.files[f].chunks.size(); ++c) chunks_.push_back({f, c});
  }
  frame_at_.resize(chunks_.size());
  raw_at_.resize(chunks_.size());
  for (std::size_t i = 0; i < chunks_.size();) {
    Window w{i, 0, 0, 0};
    while (i < chunks_.size() && w.count < window_chunks) {
      const ManifestChunk& c = m_.files[chunks_[i].file].chunks[chunks_[i].chunk];
      if (w.count > 0 && w.raw_bytes + c.length > slot_raw_bytes) break;
      frame_at_[i] = w.frame_bytes;
      raw_at_[i] = w.raw_bytes;
      w.raw_bytes += c.length;
      w.frame_bytes += c.frame_bytes;
      ++w.count;
      ++i;
    }
    slot_frame_capacity_ = std::max(slot_frame_capacity_, w.frame_bytes);
    windows_.push_back(w);
  }
}

void Pipeline::fail_chunk(std::size_t index, const Status& st) {
  {
    std::lock_guard lock(mu_);
    if (error_.is_ok() || index < error_chunk_) {
      error_chunk_ = index;
      error_ = st;
    }
    stop_ = true;
  }
  cv_.notify_all();
}

void Pipeline::read_loop() {
  for (std::size_t w = 0; w < windows_.size(); ++w) {
    std::size_t s;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !free_.empty(); });
      if (stop_) break;
      s = free_.front();
      free_.pop_front();
    }
    Slot& slot = slots_[s];
    const Window& win = windows_[w];
    slot.window = w;
    slot.read_status.assign(win.count, Status::ok());
    const auto* direct = dynamic_cast<const DirectFrameSource*>(&source_);
    pool_.parallel_for(win.count, [&](std::size_t j) {
      const std::size_t i = win.first + j;
      const ManifestChunk& c = m_.files[chunks_[i].file].chunks[chunks_[i].chunk];
      const std::span<std::byte> dst(slot.frames.get() + frame_at_[i], c.frame_bytes);
      Status st;
      if (direct) {
        st = direct->read_frame_into(chunks_[i].file, chunks_[i].chunk, dst);
      } else {
        // Reused per pool thread: read_frame resizes it, the hot path does
        // not allocate once it has grown to the largest frame.
        thread_local std::vector<std::byte> frame;
        st = source_.read_frame(chunks_[i].file, chunks_[i].chunk, frame);
        if (st.is_ok() && frame.size() != c.frame_bytes) {
          st = Status::corruption("frame is " + std::to_string(frame.size()) + " bytes, manifest says " +
                                  std::to_string(c.frame_bytes));
        }
        if (st.is_ok()) std::memcpy(dst.data(), frame.data(), frame.size());
      }
      // Here, where frame and manifest meet, a disagreement is Corruption;
      // the decode below sizes its output from the manifest.
      if (st.is_ok()) st = check_frame_header(dst, c);
      slot.read_status[j] = std::move(st);
    });
    {
      std::lock_guard lock(mu_);
      ready_.push_back(s);
    }
    cv_.notify_all();
  }
  {
    std::lock_guard lock(mu_);
    reader_done_ = true;
  }
  cv_.notify_all();
}

Status Pipeline::decode_window(Lane& lane, Slot& slot) {
  const Window& win = windows_[slot.window];
  std::vector<DecodeJob> host_jobs, device_jobs;
  std::vector<std::size_t> host_idx, device_idx;  // chunk index of each job
  for (std::size_t j = 0; j < win.count; ++j) {
    const std::size_t i = win.first + j;
    if (!slot.read_status[j].is_ok()) {
      fail_chunk(i, slot.read_status[j]);
      return Status::ok();
    }
    const FilePlan& fp = files_[chunks_[i].file];
    const ManifestChunk& c = m_.files[chunks_[i].file].chunks[chunks_[i].chunk];
    std::span<const std::byte> frame(slot.frames.get() + frame_at_[i], c.frame_bytes);
    std::span<std::byte> out(fp.base + c.offset, c.length);
    if (!fp.on_device) {
      host_jobs.push_back({frame, out, c.id});
      host_idx.push_back(i);
    } else if (lane.gpu) {
      device_jobs.push_back(
          {std::span<const std::byte>(lane.device_frames.get() + frame_at_[i], c.frame_bytes), out, c.id});
      device_idx.push_back(i);
    } else {
      // Decoded into pinned staging first, copied to the device below.
      host_jobs.push_back({frame, std::span<std::byte>(slot.raw.get() + raw_at_[i], c.length), c.id});
      host_idx.push_back(i);
    }
  }
  std::vector<Status> host_status(host_jobs.size()), device_status(device_jobs.size());
  if (!device_jobs.empty()) {
    // One copy of the whole window's compressed frames over PCIe.
    RETURN_IF_ERROR(
        lane.stream.copy_to_device_async(lane.device_frames.get(), slot.frames.get(), win.frame_bytes));
    RETURN_IF_ERROR(lane.stream.synchronize());
  }
  if (!host_jobs.empty()) RETURN_IF_ERROR(lane.cpu->decode(host_jobs, host_status, MemorySpace::kHost));
  if (!device_jobs.empty())
    RETURN_IF_ERROR(lane.gpu->decode(device_jobs, device_status, MemorySpace::kDevice));
  for (std::size_t k = 0; k < host_jobs.size(); ++k) {
    const std::size_t i = host_idx[k];
    if (!host_status[k].is_ok()) {
      fail_chunk(i, host_status[k]);
      continue;
    }
    const FilePlan& fp = files_[chunks_[i].file];
    if (fp.on_device) {
      const ManifestChunk& c = m_.files[chunks_[i].file].chunks[chunks_[i].chunk];
      RETURN_IF_ERROR(gpu_copy_to_device(fp.base + c.offset, slot.raw.get() + raw_at_[i], c.length));
    }
  }
  for (std::size_t k = 0; k < device_jobs.size(); ++k) {
    if (!device_status[k].is_ok()) fail_chunk(device_idx[k], device_status[k]);
  }
  std::lock_guard lock(progress_mu_);
  progress_.logical_done += win.raw_bytes;
  progress_.frame_bytes += win.frame_bytes;
  if (options_.progress) options_.progress(progress_);
  return Status::ok();
}

void Pipeline::lane_loop(Lane& lane) {
  if (options_.device.kind == Device::Kind::kCuda) {
    Status st = gpu_set_device(options_.device.index);
    if (!st) return fail(st);
  }
  for (;;) {
    std::size_t s;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !ready_.empty() || reader_done_; });
      if (stop_ || ready_.empty()) return;
      s = ready_.front();
      ready_.pop_front();
    }
    Status st = decode_window(lane, slots_[s]);
    if (!st) return fail(st.with_context("restore to " + device_name(options_.device)));
    {
      std::lock_guard lock(mu_);
      free_.push_back(s);
    }
    cv_.notify_all();
  }
}

Status Pipeline::run(std::vector<Lane>& lanes, std::size_t slot_count, std::uint64_t slot_raw_bytes,
                     std::size_t window_chunks, bool pinned) {
  plan_windows(slot_raw_bytes, window_chunks);
  progress_.logical_total = m_.logical_bytes();
  if (windows_.empty()) return Status::ok();
  slot_count = std::min(slot_count, windows_.size());
  const bool raw_staging = pinned && !lanes.front().gpu;
  slots_.resize(slot_count);
  for (std::size_t s = 0; s < slot_count; ++s) {
    if (pinned) {
      ASSIGN_OR_RETURN(slots_[s].frames, pinned_allocate_shared(slot_frame_capacity_));
    } else {
      ASSIGN_OR_RETURN(slots_[s].frames, host_allocate(slot_frame_capacity_));
    }
    if (raw_staging) {
      ASSIGN_OR_RETURN(slots_[s].raw, pinned_allocate_shared(slot_raw_bytes));
    }
    free_.push_back(s);
  }
  for (Lane& lane : lanes) {
    if (lane.gpu) {
      ASSIGN_OR_RETURN(lane.device_frames, gpu_allocate_shared(slot_frame_capacity_, options_.device.index));
      ASSIGN_OR_RETURN(lane.stream, GpuStream::create(options_.device.index));
    }
  }
  std::vector<std::thread> threads;
  for (Lane& lane : lanes) threads.emplace_back([this, &lane] { lane_loop(lane); });
  read_loop();
  // The reader has queued every window (or stopped); lanes drain the rest.
  for (std::thread& t : threads) t.join();
  if (!error_.is_ok()) {
    if (error_chunk_ == kNoChunk) return error_;
    const ManifestFile& f = m_.files[chunks_[error_chunk_].file];
    const ManifestChunk& c = f.chunks[chunks_[error_chunk_].chunk];
    // The source's own code (I/O, Corruption, Unavailable) tells the user
    // whether to retry or to repair.
    return error_.with_context(source_.describe() + ": chunk " + to_hex(c.id) + " (file \"" + f.path +
                               "\" offset " + std::to_string(c.offset) + ")");
  }
  if (progress_.logical_done != progress_.logical_total) {
    return Status::internal("restore to " + device_name(options_.device) + " ended with " +
                            std::to_string(progress_.logical_done) + " of " +
                            std::to_string(progress_.logical_total) + " bytes");
  }
  return Status::ok();
}

// The file root, where it composes from the verified chunk ids. Where it does
// not (chunks cut at tensor boundaries), every byte is still covered by a
// chunk id that the decoder recomputed, so the root adds no check on the data.
Status check_roots(const FrameSource& source) {
  for (const ManifestFile& f : source.manifest().files) {
    std::vector<std::uint32_t> lengths(f.chunks.size());
    for (std::size_t i = 0; i < lengths.size(); ++i) lengths[i] = f.chunks[i].length;
    if (!root_composes_from_chunk_ids(lengths)) continue;
    std::vector<Digest> ids(f.chunks.size());
    for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = f.chunks[i].id;
    const Digest root = merkle_root(ids);
    if (root != f.root) {
      return Status::corruption(source.describe() + ": file \"" + f.path + "\" root mismatch: manifest " +
                                to_hex(f.root) + ", its chunk ids give " + to_hex(root));
    }
  }
  return Status::ok();
}

}  // namespace

Result<Device> parse_device(std::string_view s) {
  if (s == "cpu") return Device{Device::Kind::kCpu, 0};
  if (s == "cuda") return Device{Device::Kind::kCuda, 0};
  if (s.starts_with("cuda:") && s.size() > 5 && s.size() <= 9) {
    int index = 0;
    for (char ch : s.substr(5)) {
      if (ch < '0' || ch > '9')
        return Status::invalid_argument("device \"" + std::string(s) + "\": bad index");
      index = index * 10 + (ch - '0');
    }
    return Device{Device::Kind::kCuda, index};
  }
  return Status::invalid_argument("device \"" + std::string(s) + "\": expected cpu, cuda or cuda:N");
}

std::string device_name(const Device& d) {
  return d.kind == Device::Kind::kCpu ? "cpu" : "cuda:" + std::to_string(d.index);
}

Result<DeviceRestoreResult> restore_to_device(const FrameSource& source,
                                              const DeviceRestoreOptions& options) {
  const double start = mono_seconds();
  const Manifest& m = source.manifest();
  const bool cuda = options.device.kind == Device::Kind::kCuda;
  const std::string dev = device_name(options.device);
  if (cuda) {
    const std::string why = gpu_unavailable_reason(options.device.index);
    if (!why.empty()) return Status::unavailable(dev + ": no usable GPU: " + why);
  }
  ThreadPool& pool = options.pool ? *options.pool : ThreadPool::shared();

  // Where each file goes, and how much device memory that takes.
  std::vector<FilePlan> files(m.files.size());
  std::uint64_t device_bytes = 0, max_chunk = 0;
  for (std::size_t i = 0; i < m.files.size(); ++i) {
    const ManifestFile& f = m.files[i];
    FilePlan& p = files[i];
    p.tensors = f.layout == LayoutKind::kSafetensors && !f.tensors.empty();
    p.on_device = p.tensors && cuda;
    if (p.tensors) {
      const std::uint64_t d = data_section_begin(f);
      p.pad = (kRestoreDataAlignment - d % kRestoreDataAlignment) % kRestoreDataAlignment;
    }
    p.alloc_bytes = p.pad + f.size;
    if (p.on_device)
      device_bytes += round_up(std::max<std::uint64_t>(p.alloc_bytes, 1), kRestoreDataAlignment);
    for (const ManifestChunk& c : f.chunks) max_chunk = std::max<std::uint64_t>(max_chunk, c.length);
  }

  // Staging: a ring of slots, each holding one window's frames.
  const std::size_t lane_count = cuda ? kGpuLanes : 1;
  const std::size_t slot_count = lane_count * kSlotsPerLane;
  const std::uint64_t slot_raw_bytes =
      std::max<std::uint64_t>({options.pinned_memory_bytes / slot_count, max_chunk, kLeafBytes});
  std::size_t window_chunks = options.window_chunks ? options.window_chunks : kSourceWindowChunks;
  window_chunks = std::clamp<std::size_t>(window_chunks, 1, kSourceWindowChunks);
  const std::uint64_t slot_frame_bytes = slot_raw_bytes + kFrameHeaderBytes * window_chunks;

  // Engines: on a device, a GPU engine per lane when one is usable (else the
  // CPU fallback); on the host, the CPU engine.
  std::vector<Lane> lanes(lane_count);
  GpuOptions gpu;
  gpu.device = cuda ? options.device.index : 0;
  gpu.device_memory_bytes = kArenaBytesPerRawByte * slot_raw_bytes;
  gpu.pinned_memory_bytes = kEnginePinnedBytes;
  gpu.low_priority_streams = false;  // a restore is what the GPUs wait for
  bool use_gpu = false;
  if (cuda) {
    ASSIGN_OR_RETURN(GpuMemoryInfo mem, gpu_memory_info(options.device.index));
    const std::uint64_t staging =
        options.engine == EngineChoice::kCpu ? 0 : lane_count * (gpu.device_memory_bytes + slot_frame_bytes);
    const std::uint64_t need = device_bytes + staging;
    if (need > mem.free_bytes) {
      return Status::exhausted(dev + " has " + format_bytes_exact(mem.free_bytes) +
                               " free, the snapshot needs " + format_bytes_exact(need) + " (" +
                               format_bytes_exact(device_bytes) + " of tensors and " +
                               format_bytes_exact(staging) + " of staging)");
    }
    ASSIGN_OR_RETURN(std::unique_ptr<CodecEngine> first, choose_engine(options.engine, gpu, {&pool}));
    use_gpu = first->kind() == "gpu";
    if (use_gpu) {
      lanes[0].gpu = std::move(first);
      for (std::size_t l = 1; l < lane_count; ++l) {
        ASSIGN_OR_RETURN(lanes[l].gpu, make_gpu_engine(gpu));
      }
    } else {
      lanes.resize(1);  // the host decodes; one lane keeps the pool busy
    }
  } else {
    lanes.resize(1);
  }
  for (Lane& lane : lanes) lane.cpu = make_cpu_engine({&pool});

  DeviceRestoreResult result;
  result.report.engine = use_gpu ? lanes[0].gpu->description() : lanes[0].cpu->description();
  if (cuda && !use_gpu) result.report.engine += ", then copied to " + dev;

  for (std::size_t i = 0; i < files.size(); ++i) {
    FilePlan& p = files[i];
    if (p.on_device) {
      ASSIGN_OR_RETURN(p.alloc, gpu_allocate_shared(p.alloc_bytes, options.device.index));
    } else {
      ASSIGN_OR_RETURN(p.alloc, host_allocate(p.alloc_bytes));
    }
    p.base = p.alloc.get() + p.pad;
  }

  Pipeline pipeline(source, options, pool, files);
  RETURN_IF_ERROR(pipeline.run(lanes, lanes.size() * kSlotsPerLane, slot_raw_bytes, window_chunks, cuda));
  RETURN_IF_ERROR(check_roots(source));

  for (std::size_t i = 0; i < files.size(); ++i) {
    const ManifestFile& f = m.files[i];
    const FilePlan& p = files[i];
    Allocation owner = p.alloc;
    if (!p.tensors) {
      result.files.push_back({f.path, p.base, f.size, owner});
      continue;
    }
    for (const ManifestTensor& t : f.tensors) {
      RestoredTensor r;
      r.name = t.name;
      r.file = f.path;
      r.dtype = t.dtype;
      r.shape.assign(t.shape.begin(), t.shape.end());
      r.data = p.base + t.begin;
      r.bytes = t.end - t.begin;
      r.device = p.on_device ? options.device : Device{};
      r.owner = owner;
      result.tensors.push_back(std::move(r));
    }
  }
  DeviceRestoreReport& report = result.report;
  report.files = m.files.size();
  report.tensors = result.tensors.size();
  report.chunks = m.chunk_count();
  report.logical_bytes = m.logical_bytes();
  report.frame_bytes = pipeline.frame_bytes();
  report.seconds = mono_seconds() - start;
  return result;
}

}  // namespace ferry::replication
