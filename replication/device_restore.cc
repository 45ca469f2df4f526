// device_restore.cc: see device_restore.h. The plan (restore_plan.h) lays
// out files, windows (consecutive chunks in file order, bounded in bytes and
// in count) and staging before anything is allocated; then a pipeline runs
// it: a reader thread fills a ring of staging slots with frames, read in
// parallel on the pool; decode lanes take filled slots, decode and verify
// every chunk straight into its file's allocation and hand the slot back.
//   GPU engine: each lane has its own engine (its own CUDA stream and arena)
//   and device staging; a slot's compressed frames cross PCIe in one copy
//   from pinned memory while the lane decodes the window's host files, then
//   the engine decodes and verifies them into the tensors' device
//   allocation, reading each frame's header from the pinned copy. Two lanes
//   let one window's copy overlap another's decode, and the reader fills the
//   next slot meanwhile.
//   CPU fallback into a device: decode on the host into the slot's pinned raw
//   buffer, then copy to the device, every chunk queued, one wait a window.
//   Host destinations (device=cpu, files without a tensor layout): decode on
//   the host straight into the final allocation, no copy.
// A delta frame (FORMAT.md 3.1) is staged with its base chunk behind it:
// the reader fetches the base's frame by id and rebuilds it on the host
// (verified against the base's id; a chain of deltas rebuilds in turn), and
// whichever engine decodes the window rebuilds the chunk from the delta and
// that base, on the GPU in device memory, and verifies it against the
// chunk's own id.
#include "replication/device_restore.h"

#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>

#include "base/clock.h"
#include "base/human_size.h"
#include "base/thread_pool.h"
#include "codec/delta_codec.h"
#include "codec/limits.h"
#include "codec/manifest.h"
#include "codec/tree_hash.h"
#include "cuda/gpu_memory.h"
#include "replication/frame_sources.h"
#include "replication/limits.h"
#include "replication/restore_plan.h"

namespace ferry::replication {
namespace {

// Host memory aligned like cudaMalloc's, freed when the last owner goes.
Result<std::shared_ptr<std::byte>> host_allocate(std::uint64_t bytes) {
  const std::uint64_t n = (std::max<std::uint64_t>(bytes, 1) + kRestoreDataAlignment - 1) /
                          kRestoreDataAlignment * kRestoreDataAlignment;
  void* p = std::aligned_alloc(kRestoreDataAlignment, n);
  if (!p) return Status::exhausted("cannot allocate " + format_bytes_exact(n) + " of host memory");
  return std::shared_ptr<std::byte>(static_cast<std::byte*>(p), [](std::byte* q) { std::free(q); });
}

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
  GpuStream stream;                          // copies to the device
};

// The staging ring: a slot goes free -> filled by the reader -> ready ->
// decoded by a lane -> free. stop() wakes every waiter for good.
class SlotRing {
 public:
  void put_free(std::size_t s) { push(free_, s); }
  void put_ready(std::size_t s) { push(ready_, s); }
  // The next free slot; nullopt once stopped.
  std::optional<std::size_t> take_free() { return pop(free_, false); }
  // The next filled slot; nullopt once stopped, or once the reader is done
  // and none is left.
  std::optional<std::size_t> take_ready() { return pop(ready_, true); }
  void reader_done() {
    {
      std::lock_guard lock(mu_);
      reader_done_ = true;
    }
    cv_.notify_all();
  }
  void stop() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
  }

 private:
  void push(std::deque<std::size_t>& q, std::size_t s) {
    {
      std::lock_guard lock(mu_);
      q.push_back(s);
    }
    cv_.notify_all();
  }
  std::optional<std::size_t> pop(std::deque<std::size_t>& q, bool ends_with_reader) {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return stop_ || !q.empty() || (ends_with_reader && reader_done_); });
    if (stop_ || q.empty()) return std::nullopt;
    const std::size_t s = q.front();
    q.pop_front();
    return s;
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::size_t> free_, ready_;
  bool reader_done_ = false;
  bool stop_ = false;
};

// The failure a restore reports: the earliest chunk's, so that the message
// does not depend on which lane got there first, or one without a chunk.
class FirstError {
 public:
  static constexpr std::size_t kNoChunk = static_cast<std::size_t>(-1);
  void record(std::size_t chunk, const Status& st) {
    std::lock_guard lock(mu_);
    if (status_.is_ok() || chunk < chunk_) {
      chunk_ = chunk;
      status_ = st;
    }
  }
  // OK, or the error with the chunk's id, file and offset in front: the
  // source's own code (I/O, Corruption, Unavailable) tells the user whether
  // to retry or to repair.
  Status status(const FrameSource& source, const WindowPlan& plan) {
    std::lock_guard lock(mu_);
    if (status_.is_ok() || chunk_ == kNoChunk) return status_;
    const ManifestFile& f = source.manifest().files[plan.chunks[chunk_].file];
    const ManifestChunk& c = f.chunks[plan.chunks[chunk_].chunk];
    return status_.with_context(source.describe() + ": chunk " + to_hex(c.id) + " (file \"" + f.path +
                                "\" offset " + std::to_string(c.offset) + ")");
  }

 private:
  std::mutex mu_;
  std::size_t chunk_ = kNoChunk;
  Status status_;
};

// A window's chunks sorted by where they decode; idx are chunk indexes.
struct WindowJobs {
  std::vector<DecodeJob> host, device;
  std::vector<std::size_t> host_idx, device_idx;
};

// The reader and the lanes over one plan.
class Pipeline {
 public:
  Pipeline(const FrameSource& source, const DeviceRestoreOptions& options, ThreadPool& pool,
           RestorePlan& plan)
      : source_(source), m_(source.manifest()), options_(options), pool_(pool), plan_(plan),
        w_(plan.windows) {}

  Status run(std::vector<Lane>& lanes);
  std::uint64_t frame_bytes() const { return progress_.frame_bytes; }

 private:
  Status allocate_staging(std::vector<Lane>& lanes);
  void read_loop();
  void read_window(Slot& slot, const Window& win);
  // The base chunk of delta frame `frame` (chunk c), fetched by id, rebuilt
  // and verified on the host, into dst (c.length bytes, behind the frame).
  Status read_delta_base(std::span<const std::byte> frame, const ManifestChunk& c, std::span<std::byte> dst);
  void lane_loop(Lane& lane);
  Status decode_window(Lane& lane, Slot& slot);
  bool collect_jobs(const Lane& lane, const Slot& slot, WindowJobs& jobs);
  Status finish_host_jobs(Lane& lane, const Slot& slot, const WindowJobs& jobs, std::span<const Status> st);
  void add_progress(const Window& win);
  const ManifestChunk& chunk(std::size_t i) const {
    return m_.files[w_.chunks[i].file].chunks[w_.chunks[i].chunk];
  }
  // Records a chunk's failure (the earliest chunk wins) and stops the pipeline.
  void fail_chunk(std::size_t index, const Status& st) {
    errors_.record(index, st);
    ring_.stop();
  }
  void fail(const Status& st) { fail_chunk(FirstError::kNoChunk, st); }

  const FrameSource& source_;
  const Manifest& m_;
  const DeviceRestoreOptions& options_;
  ThreadPool& pool_;
  RestorePlan& plan_;
  const WindowPlan& w_;
  std::vector<Slot> slots_;
  SlotRing ring_;
  FirstError errors_;
  std::mutex progress_mu_;
  UnpackProgress progress_;
};

Status Pipeline::allocate_staging(std::vector<Lane>& lanes) {
  const bool cuda = options_.device.kind == Device::Kind::kCuda;
  const bool raw_staging = cuda && !lanes.front().gpu;
  // The ring: a lane decodes one slot while the reader fills the next.
  slots_.resize(std::min(lanes.size() * kRestoreSlotsPerLane, w_.windows.size()));
  for (std::size_t s = 0; s < slots_.size(); ++s) {
    if (cuda) {
      ASSIGN_OR_RETURN(slots_[s].frames, pinned_allocate_shared(w_.slot_frame_bytes));
    } else {
      ASSIGN_OR_RETURN(slots_[s].frames, host_allocate(w_.slot_frame_bytes));
    }
    if (raw_staging) {
      ASSIGN_OR_RETURN(slots_[s].raw, pinned_allocate_shared(plan_.slot_raw_bytes));
    }
    ring_.put_free(s);
  }
  for (Lane& lane : lanes) {
    if (!cuda) continue;
    if (lane.gpu) {
      ASSIGN_OR_RETURN(lane.device_frames,
                       gpu_allocate_shared(plan_.device_frame_bytes, options_.device.index));
    }
    ASSIGN_OR_RETURN(lane.stream, GpuStream::create(options_.device.index));
  }
  return Status::ok();
}

void Pipeline::read_window(Slot& slot, const Window& win) {
  slot.read_status.assign(win.count, Status::ok());
  const auto* direct = dynamic_cast<const DirectFrameSource*>(&source_);
  pool_.parallel_for(win.count, [&](std::size_t j) {
    const std::size_t i = win.first + j;
    const ManifestChunk& c = chunk(i);
    const std::span<std::byte> dst(slot.frames.get() + w_.frame_at[i], restore_frame_bytes(c));
    const std::span<std::byte> frame_dst = dst.first(c.frame_bytes);
    Status st;
    if (direct) {
      st = direct->read_frame_into(w_.chunks[i].file, w_.chunks[i].chunk, frame_dst);
    } else {
      // Reused per pool thread: read_frame resizes it, the hot path does not
      // allocate once it has grown to the largest frame.
      thread_local std::vector<std::byte> frame;
      st = source_.read_frame(w_.chunks[i].file, w_.chunks[i].chunk, frame);
      if (st.is_ok() && frame.size() != c.frame_bytes) {
        st = Status::corruption("frame is " + std::to_string(frame.size()) + " bytes, manifest says " +
                                std::to_string(c.frame_bytes));
      }
      if (st.is_ok()) std::memcpy(frame_dst.data(), frame.data(), frame.size());
    }
    // Here, where frame and manifest meet, a disagreement is Corruption;
    // the decode below sizes its output from the manifest.
    if (st.is_ok()) st = check_frame_header(frame_dst, c);
    // A delta frame travels with its base chunk behind it.
    if (st.is_ok() && is_delta_codec(static_cast<Codec>(c.codec)))
      st = read_delta_base(frame_dst, c, dst.subspan(c.frame_bytes));
    slot.read_status[j] = std::move(st);
  });
}

Status Pipeline::read_delta_base(std::span<const std::byte> frame, const ManifestChunk& c,
                                 std::span<std::byte> dst) {
  ASSIGN_OR_RETURN(FrameHeader h, parse_frame_header_only(frame));
  if (h.base_id != c.base_id) {
    return Status::corruption("delta frame names base " + to_hex(h.base_id) + ", manifest says " +
                              to_hex(c.base_id));
  }
  const std::string of = "base " + to_hex(h.base_id) + " of delta chunk " + to_hex(h.chunk_id);
  thread_local std::vector<std::byte> base_frame, base;
  RETURN_IF_ERROR(source_.read_chunk_frame(h.base_id, base_frame).with_context(of));
  auto bh = parse_frame_header(base_frame);
  if (!bh) return bh.status().with_context(of);
  if (bh->chunk_id != h.base_id || bh->raw_bytes != c.length) {
    return Status::corruption(of + ": fetched frame holds chunk " + to_hex(bh->chunk_id) + " of " +
                              std::to_string(bh->raw_bytes) + " bytes");
  }
  // Rebuilt (itself perhaps a delta) and verified against its own id; the
  // frame read so far is the first of the chain.
  RETURN_IF_ERROR(rebuild_chunk(
                      *bh, base_frame,
                      [this](const Digest& id) -> Result<std::vector<std::byte>> {
                        std::vector<std::byte> f;
                        RETURN_IF_ERROR(source_.read_chunk_frame(id, f));
                        return f;
                      },
                      base, 2)
                      .with_context(of));
  FERRY_CHECK(dst.size() == base.size());
  std::memcpy(dst.data(), base.data(), base.size());
  return Status::ok();
}

void Pipeline::read_loop() {
  for (std::size_t w = 0; w < w_.windows.size(); ++w) {
    const std::optional<std::size_t> s = ring_.take_free();
    if (!s) break;
    slots_[*s].window = w;
    read_window(slots_[*s], w_.windows[w]);
    ring_.put_ready(*s);
  }
  ring_.reader_done();
}

bool Pipeline::collect_jobs(const Lane& lane, const Slot& slot, WindowJobs& jobs) {
  const Window& win = w_.windows[slot.window];
  for (std::size_t j = 0; j < win.count; ++j) {
    const std::size_t i = win.first + j;
    if (!slot.read_status[j].is_ok()) {
      fail_chunk(i, slot.read_status[j]);
      return false;
    }
    const FilePlan& fp = plan_.files[w_.chunks[i].file];
    const ManifestChunk& c = chunk(i);
    // The frame, and behind a delta frame its base chunk (read_window).
    const bool delta = is_delta_codec(static_cast<Codec>(c.codec));
    std::span<const std::byte> staged(slot.frames.get() + w_.frame_at[i], restore_frame_bytes(c));
    std::span<const std::byte> frame = staged.first(c.frame_bytes);
    std::span<const std::byte> base = delta ? staged.subspan(c.frame_bytes) : std::span<const std::byte>();
    std::span<std::byte> out(fp.base + c.offset, c.length);
    if (!fp.on_device) {
      jobs.host.push_back({frame, out, c.id, {}, base});
      jobs.host_idx.push_back(i);
    } else if (lane.gpu) {
      // The slot crosses to the device in one copy: frame and base both,
      // and the engine rebuilds the chunk there.
      std::span<const std::byte> on_device(lane.device_frames.get() + w_.frame_at[i], restore_frame_bytes(c));
      jobs.device.push_back({on_device.first(c.frame_bytes), out, c.id, frame,
                             delta ? on_device.subspan(c.frame_bytes) : std::span<const std::byte>()});
      jobs.device_idx.push_back(i);
    } else {
      // Decoded into pinned staging first, copied to the device after.
      jobs.host.push_back(
          {frame, std::span<std::byte>(slot.raw.get() + w_.raw_at[i], c.length), c.id, {}, base});
      jobs.host_idx.push_back(i);
    }
  }
  return true;
}

Status Pipeline::finish_host_jobs(Lane& lane, const Slot& slot, const WindowJobs& jobs,
                                  std::span<const Status> st) {
  bool copies = false;
  for (std::size_t k = 0; k < jobs.host.size(); ++k) {
    const std::size_t i = jobs.host_idx[k];
    if (!st[k].is_ok()) {
      fail_chunk(i, st[k]);
      continue;
    }
    const FilePlan& fp = plan_.files[w_.chunks[i].file];
    if (!fp.on_device) continue;
    const ManifestChunk& c = chunk(i);
    RETURN_IF_ERROR(
        lane.stream.copy_to_device_async(fp.base + c.offset, slot.raw.get() + w_.raw_at[i], c.length));
    copies = true;
  }
  // The slot's raw buffer is reused once the slot is free again.
  return copies ? lane.stream.synchronize() : Status::ok();
}

void Pipeline::add_progress(const Window& win) {
  // The chunks' own frames (a window also stages each delta's base).
  std::uint64_t frames = 0;
  for (std::size_t i = win.first; i < win.first + win.count; ++i) frames += chunk(i).frame_bytes;
  std::lock_guard lock(progress_mu_);
  progress_.logical_done += win.raw_bytes;
  progress_.frame_bytes += frames;
  if (options_.progress) options_.progress(progress_);
}

Status Pipeline::decode_window(Lane& lane, Slot& slot) {
  WindowJobs jobs;
  if (!collect_jobs(lane, slot, jobs)) return Status::ok();
  const Window& win = w_.windows[slot.window];
  std::vector<Status> host_status(jobs.host.size()), device_status(jobs.device.size());
  // The window's compressed frames cross PCIe in one copy while the host
  // decodes the window's host files.
  if (!jobs.device.empty())
    RETURN_IF_ERROR(
        lane.stream.copy_to_device_async(lane.device_frames.get(), slot.frames.get(), win.frame_bytes));
  if (!jobs.host.empty()) RETURN_IF_ERROR(lane.cpu->decode(jobs.host, host_status, MemorySpace::kHost));
  if (!jobs.device.empty()) {
    RETURN_IF_ERROR(lane.stream.synchronize());
    RETURN_IF_ERROR(lane.gpu->decode(jobs.device, device_status, MemorySpace::kDevice));
  }
  RETURN_IF_ERROR(finish_host_jobs(lane, slot, jobs, host_status));
  for (std::size_t k = 0; k < jobs.device.size(); ++k) {
    if (!device_status[k].is_ok()) fail_chunk(jobs.device_idx[k], device_status[k]);
  }
  add_progress(win);
  return Status::ok();
}

void Pipeline::lane_loop(Lane& lane) {
  if (options_.device.kind == Device::Kind::kCuda) {
    Status st = gpu_set_device(options_.device.index);  // the lane's own thread
    if (!st) return fail(st);
  }
  while (const std::optional<std::size_t> s = ring_.take_ready()) {
    Status st = decode_window(lane, slots_[*s]);
    if (!st) return fail(st.with_context("restore to " + device_name(options_.device)));
    ring_.put_free(*s);
  }
}

Status Pipeline::run(std::vector<Lane>& lanes) {
  progress_.logical_total = m_.logical_bytes();
  if (w_.windows.empty()) return Status::ok();
  RETURN_IF_ERROR(allocate_staging(lanes));
  std::vector<std::thread> threads;
  for (Lane& lane : lanes) threads.emplace_back([this, &lane] { lane_loop(lane); });
  read_loop();
  // The reader has queued every window (or stopped); lanes drain the rest.
  for (std::thread& t : threads) t.join();
  RETURN_IF_ERROR(errors_.status(source_, w_));
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

// Fails, before anything is allocated, when the device cannot hold the
// tensors and the GPU path's staging, plus what the CUDA context takes when
// the engine's kernels first run.
Status check_device_memory(const RestorePlan& plan, const DeviceRestoreOptions& options) {
  const std::string dev = device_name(options.device);
  ASSIGN_OR_RETURN(GpuMemoryInfo mem, gpu_memory_info(options.device.index));
  std::uint64_t staging = 0, context = 0;
  if (options.engine != EngineChoice::kCpu) {
    staging = gpu_staging_bytes(plan);
    ASSIGN_OR_RETURN(context, gpu_context_reserve_bytes(options.device.index));
  }
  const std::uint64_t need = plan.device_tensor_bytes + staging + context;
  if (need <= mem.free_bytes) return Status::ok();
  return Status::exhausted(dev + " has " + format_bytes_exact(mem.free_bytes) + " free, the snapshot needs " +
                           format_bytes_exact(need) + " (" + format_bytes_exact(plan.device_tensor_bytes) +
                           " of tensors, " + format_bytes_exact(staging) + " of staging and " +
                           format_bytes_exact(context) + " the CUDA context takes for the kernels)");
}

// The decode lanes: on a device, a GPU engine per lane when one is usable
// (else one lane that decodes on the host and copies); on the host, one
// lane with the CPU engine. Returns the report's engine line.
Result<std::string> make_lanes(const RestorePlan& plan, const DeviceRestoreOptions& options, ThreadPool& pool,
                               std::vector<Lane>& lanes) {
  lanes.clear();
  lanes.resize(1);
  lanes[0].cpu = make_cpu_engine({&pool});
  if (options.device.kind != Device::Kind::kCuda) return lanes[0].cpu->description();
  RETURN_IF_ERROR(check_device_memory(plan, options));
  GpuOptions gpu;
  gpu.device = options.device.index;
  gpu.device_memory_bytes = plan.engine_arena_bytes;
  gpu.pinned_memory_bytes = kRestoreEnginePinnedBytes;
  gpu.low_priority_streams = false;  // a restore is what the GPUs wait for
  ASSIGN_OR_RETURN(std::unique_ptr<CodecEngine> first, choose_engine(options.engine, gpu, {&pool}));
  if (first->kind() != "gpu")
    return lanes[0].cpu->description() + ", then copied to " + device_name(options.device);
  lanes[0].gpu = std::move(first);
  lanes.resize(plan.lanes);
  for (std::size_t l = 1; l < lanes.size(); ++l) {
    ASSIGN_OR_RETURN(lanes[l].gpu, make_gpu_engine(gpu));
    lanes[l].cpu = make_cpu_engine({&pool});
  }
  return lanes[0].gpu->description();
}

Status allocate_files(std::vector<FilePlan>& files, const Device& device) {
  for (FilePlan& p : files) {
    if (p.on_device) {
      ASSIGN_OR_RETURN(p.alloc, gpu_allocate_shared(p.alloc_bytes, device.index));
    } else {
      ASSIGN_OR_RETURN(p.alloc, host_allocate(p.alloc_bytes));
    }
    p.base = p.alloc.get() + p.pad;
  }
  return Status::ok();
}

// The restored files as the caller gets them: safetensors files as tensors
// over their file's allocation, the rest whole.
DeviceRestoreResult hand_over(const Manifest& m, const std::vector<FilePlan>& files, const Device& device) {
  DeviceRestoreResult result;
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
      r.device = p.on_device ? device : Device{};
      r.owner = owner;
      result.tensors.push_back(std::move(r));
    }
  }
  return result;
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
  if (options.device.kind == Device::Kind::kCuda) {
    const std::string why = gpu_unavailable_reason(options.device.index);
    if (!why.empty()) return Status::unavailable(device_name(options.device) + ": no usable GPU: " + why);
  }
  ThreadPool& pool = options.pool ? *options.pool : ThreadPool::shared();
  RestorePlan plan = plan_restore(m, options.device, options);
  std::vector<Lane> lanes;
  ASSIGN_OR_RETURN(std::string engine, make_lanes(plan, options, pool, lanes));
  RETURN_IF_ERROR(allocate_files(plan.files, options.device));
  Pipeline pipeline(source, options, pool, plan);
  RETURN_IF_ERROR(pipeline.run(lanes));
  RETURN_IF_ERROR(check_roots(source));
  DeviceRestoreResult result = hand_over(m, plan.files, options.device);
  DeviceRestoreReport& report = result.report;
  report.engine = std::move(engine);
  report.files = m.files.size();
  report.tensors = result.tensors.size();
  report.chunks = m.chunk_count();
  report.logical_bytes = m.logical_bytes();
  report.frame_bytes = pipeline.frame_bytes();
  report.seconds = mono_seconds() - start;
  return result;
}

}  // namespace ferry::replication
