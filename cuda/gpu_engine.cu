// gpu_engine.cu: the GPU codec engine: plans sub-batches that fit the
// device arena, the pinned pool and CUDA's grid (cuda/batch_plan.h),
// launches the kernels of encode_kernels.cuh and decode_kernels.cuh on one
// explicit stream (with one host step between split_hash and encode_blocks:
// the planes' plans, made by the CPU encoder's planner from the kernel's
// histograms), and turns per-chunk device results into EncodedChunk
// records and Statuses. Chunks the GPU does not code (zstd, empty) go
// through the CPU engine, so frames stay identical. A chunk with a delta
// base gets the CPU DeltaEncoder's codings (the sample judged on the host,
// the transform in split_hash) and its frame; a delta frame decodes on the
// device against its base, rebuilt bytes verified against the chunk id. Every call makes the
// engine's device current for its duration only (gpu::DeviceGuard).
#include <cuda_runtime.h>

// nvcc flags assignment to a [[nodiscard]] class type (Status) as a
// discarded result; the assignments below keep the value.
#pragma nv_diag_suppress 2810

#include <algorithm>
#include <array>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "base/crc32c.h"
#include "base/thread_pool.h"
#include "codec/delta_codec.h"
#include "codec/frame.h"
#include "codec/limits.h"
#include "cuda/decode_kernels.cuh"
#include "cuda/delta_passes.h"
#include "cuda/device_arena.h"
#include "cuda/gpu_engine.h"

namespace ferry {
namespace {

using gpu::DecChunk;
using gpu::EncChunk;
using gpu::EncResult;

static_assert(gpu::kFrameHeaderBytes == kFrameHeaderBytes && gpu::kLeafBytes == kLeafBytes &&
              gpu::kDigestBytes == kDigestBytes);

// Frames that decode on the GPU: raw, planes (payload version 1 or 2) and
// delta frames (with their base) with at least one byte.
bool decodes_on_gpu(const FrameHeader& h) {
  return h.raw_bytes > 0 && (h.codec == Codec::kRaw || gpu::dec_payload_version(h.codec) != 0);
}

// The frame length, expected id and output size a job must agree on.
Status check_decode_job(const DecodeJob& j, const FrameHeader& h) {
  const std::string chunk = "chunk " + to_hex(h.chunk_id) + ": ";
  if (j.frame.size() != kFrameHeaderBytes + h.payload_bytes) {
    return Status::corruption(chunk + "frame is " + std::to_string(j.frame.size()) + " bytes, header says " +
                              std::to_string(kFrameHeaderBytes + h.payload_bytes));
  }
  if (j.expected_id && *j.expected_id != h.chunk_id)
    return Status::corruption(chunk + "frame holds a different chunk than expected " +
                              to_hex(*j.expected_id));
  if (j.out.size() != h.raw_bytes)
    return Status::invalid_argument(chunk + "output buffer is " + std::to_string(j.out.size()) + " bytes");
  if (is_delta_codec(h.codec) && j.base.size() != h.raw_bytes)
    return Status::invalid_argument(chunk + "a delta frame against base " + to_hex(h.base_id) +
                                    " is decoded with its base of " + std::to_string(h.raw_bytes) +
                                    " bytes, got " + std::to_string(j.base.size()));
  return Status::ok();
}

// A chunk's decode outcome from its device record.
Status decode_status(const DecChunk& c, const FrameHeader& h) {
  const bool delta = is_delta_codec(h.codec);
  const std::string chunk =
      "chunk " + to_hex(h.chunk_id) + (delta ? " (delta against base " + to_hex(h.base_id) + ")" : "") + ": ";
  const std::string where = chunk + std::string(codec_name(h.codec)) + " payload: plane " +
                            std::to_string(c.err_plane) + " block " + std::to_string(c.err_block);
  switch (c.err) {
    case gpu::kDecOk:
      return Status::ok();
    case gpu::kDecPayloadCrc:
      return Status::corruption(chunk + "payload CRC mismatch");
    case gpu::kDecStructure:
      return Status::corruption(where + ": invalid structure (check " + std::to_string(c.err_detail) + ")");
    case gpu::kDecBlock:
      return Status::corruption(where + ": rANS block does not decode");
    default:
      return Status::corruption(chunk + (delta
                                             ? "rebuilt bytes do not hash to the chunk id (a wrong base or a "
                                               "damaged delta)"
                                             : "decoded bytes do not hash to the chunk id"));
  }
}

class GpuEngine final : public CodecEngine {
 public:
  Status init(const GpuOptions& opts);

  std::string_view kind() const override { return "gpu"; }
  std::string description() const override { return desc_; }
  bool supports(MemorySpace) const override { return true; }

  Status encode(std::span<const EncodeJob> jobs, std::span<EncodedChunk> results, MemorySpace space) override;
  Status decode(std::span<const DecodeJob> jobs, std::span<Status> statuses, MemorySpace space) override;

 private:
  // What one kernel pass codes, by job index: each job's codec (a delta
  // codec in the delta pass) and, in the delta pass, the payload a delta
  // must beat and whether it did.
  struct EncodePass {
    std::vector<Codec> codec;
    std::vector<std::uint32_t> beat_payload;
    std::vector<char> won;
    bool delta = false;
  };
  Status sample_to_host(const std::byte* src, std::size_t n, std::vector<std::byte>& dst);
  Status choose_codecs(std::span<const EncodeJob> jobs, std::span<const std::size_t> idx, MemorySpace space,
                       std::vector<Codec>& codecs);
  Status plan_deltas(std::span<const EncodeJob> jobs, MemorySpace space,
                     std::vector<DeltaEncoder::Plan>& plans);
  Status encode_with_cpu(const EncodeJob& job, EncodedChunk& result, MemorySpace space);
  Status encode_alone(std::span<const EncodeJob> jobs, std::span<const std::size_t> idx,
                      std::span<EncodedChunk> results, MemorySpace space);
  Status encode_deltas(std::span<const EncodeJob> jobs, const gpu::DeltaPassJobs& d, std::vector<char>& won,
                       std::span<EncodedChunk> results, MemorySpace space);
  Status run_pass(std::span<const EncodeJob> jobs, std::span<const std::size_t> idx, EncodePass& pass,
                  std::span<EncodedChunk> results, MemorySpace space);
  Status encode_sub_batch(std::span<const EncodeJob> jobs, std::span<const std::size_t> idx, EncodePass& pass,
                          std::span<EncodedChunk> results, MemorySpace space, bool pinned);
  Status launch_split(EncChunk* dev, std::span<const EncChunk> host);
  Status plan_on_host(EncChunk* dev, std::span<EncChunk> recs, const gpu::EncPlanRegions& regions);
  Status launch_encode(EncChunk* dev, EncResult* res, std::span<const EncChunk> host);
  Status read_headers(std::span<const DecodeJob> jobs, MemorySpace space, std::vector<FrameHeader>& headers,
                      std::span<Status> statuses, std::vector<char>& parsed);
  Status decode_with_cpu(const DecodeJob& job, Status& status, MemorySpace space);
  Status decode_sub_batch(std::span<const DecodeJob> jobs, std::span<const std::size_t> idx,
                          const std::vector<FrameHeader>& headers, std::span<Status> statuses,
                          MemorySpace space, bool pinned);
  Status launch_decode(DecChunk* dev, std::span<const DecChunk> host);
  // Sub-batches of chunks with these needs; ResourceExhausted naming the
  // chunk (name(k)) that alone needs more than the arena.
  Result<std::vector<gpu::SubBatch>> plan(std::span<const gpu::ChunkNeed> needs,
                                          const std::function<std::string(std::size_t)>& name) const;

  // Host memory into the arena: through the pinned pool at *pinned_at when
  // `pinned`, else straight from pageable memory.
  Status stage_in(void* dst, std::span<const std::byte> src, bool pinned, std::size_t& pinned_at,
                  std::size_t slot_bytes);
  Status copy(void* dst, const void* src, std::size_t n, cudaMemcpyKind kind) {
    CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dst, src, n, kind, stream_.get()));
    return Status::ok();
  }
  Status sync() {
    CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_.get()));
    return Status::ok();
  }
  std::byte* pool() const { return static_cast<std::byte*>(pinned_.get()); }

  GpuOptions opts_;
  std::string desc_;
  gpu::Stream stream_;
  gpu::DeviceBuffer arena_mem_, shift_mem_;
  gpu::PinnedBuffer pinned_;
  gpu::StackArena arena_;
  std::unique_ptr<CodecEngine> cpu_ = make_cpu_engine(gpu_reference_options());
  std::unique_ptr<CodecChoiceScratch> choice_ = std::make_unique<CodecChoiceScratch>();
  std::unique_ptr<DeltaEncoder> delta_plan_ = std::make_unique<DeltaEncoder>();  // plan_codings only
  std::vector<std::byte> sample_, sample_base_;  // a device chunk's sample pieces, at their offsets
  // Host side of the plan between split_hash and encode_blocks (reused).
  std::vector<planes::Planner> planners_;  // one per part of the shared pool
  std::vector<std::uint32_t> plan_hist_;
  std::vector<gpu::EncSym> plan_tables_;
  std::vector<std::uint8_t> plan_assign_;
};

Status GpuEngine::init(const GpuOptions& opts) {
  opts_ = opts;
  opts_.device_memory_bytes = std::max(opts.device_memory_bytes, kGpuMinArenaBytes);
  opts_.pinned_memory_bytes = std::max(opts.pinned_memory_bytes, gpu::kMinPinnedBytes);
  ASSIGN_OR_RETURN(gpu::DeviceGuard guard, gpu::DeviceGuard::enter(opts.device));
  cudaDeviceProp prop{};
  CUDA_RETURN_IF_ERROR(cudaGetDeviceProperties(&prop, opts.device));
  int driver = 0;
  CUDA_RETURN_IF_ERROR(cudaDriverGetVersion(&driver));
  desc_ = std::string("gpu (") + prop.name + ", driver " + std::to_string(driver / 1000) + "." +
          std::to_string(driver % 1000 / 10) + ")";
  int lo = 0, hi = 0;
  CUDA_RETURN_IF_ERROR(cudaDeviceGetStreamPriorityRange(&lo, &hi));
  cudaStream_t s = nullptr;
  CUDA_RETURN_IF_ERROR(
      cudaStreamCreateWithPriority(&s, cudaStreamNonBlocking, opts.low_priority_streams ? lo : hi));
  stream_.reset(s);
  void* p = nullptr;
  CUDA_RETURN_IF_ERROR(cudaMalloc(&p, opts_.device_memory_bytes));
  arena_mem_.reset(p);
  arena_ = gpu::StackArena(static_cast<std::byte*>(p), opts_.device_memory_bytes);
  CUDA_RETURN_IF_ERROR(cudaMallocHost(&p, opts_.pinned_memory_bytes));
  pinned_.reset(p);
  CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(gpu::decode_fused_kernel,
                                            cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            gpu::kMaxWidth * gpu::kBlockSymbols));
  std::uint32_t shift[gpu::kCrcMatrixRows];  // appends one 4 KiB segment to a CRC
  gpu::crc32c_shift_matrix(gpu::kLeafBytes, shift);
  CUDA_RETURN_IF_ERROR(cudaMalloc(&p, sizeof shift));
  shift_mem_.reset(p);
  CUDA_RETURN_IF_ERROR(cudaMemcpy(p, shift, sizeof shift, cudaMemcpyHostToDevice));
  return Status::ok();
}

Result<std::vector<gpu::SubBatch>> GpuEngine::plan(
    std::span<const gpu::ChunkNeed> needs, const std::function<std::string(std::size_t)>& name) const {
  for (std::size_t k = 0; k < needs.size(); ++k) {
    if (needs[k].device_bytes + gpu::kBatchFixedBytes > arena_.capacity())
      return Status::exhausted("gpu codec engine: " + name(k) + " needs more than the device memory cap of " +
                               std::to_string(arena_.capacity()) + " bytes");
  }
  gpu::BatchCaps caps;
  caps.device_bytes = arena_.capacity();
  caps.pinned_bytes = opts_.pinned_memory_bytes;
  return gpu::plan_sub_batches(needs, caps);
}

Status GpuEngine::stage_in(void* dst, std::span<const std::byte> src, bool pinned, std::size_t& pinned_at,
                           std::size_t slot_bytes) {
  if (!pinned) return copy(dst, src.data(), src.size(), cudaMemcpyHostToDevice);
  if (!src.empty()) std::memcpy(pool() + pinned_at, src.data(), src.size());
  RETURN_IF_ERROR(copy(dst, pool() + pinned_at, src.size(), cudaMemcpyHostToDevice));
  pinned_at += slot_bytes;
  return Status::ok();
}

// ---- encode ----

// Copies the codec_choice_sample pieces of `n` bytes of device memory at
// `src` to their offsets in `dst` (the rest left unread): what the host
// needs of a chunk in device memory to make the CPU encoder's choices.
Status GpuEngine::sample_to_host(const std::byte* src, std::size_t n, std::vector<std::byte>& dst) {
  dst.resize(n);
  for (const SamplePiece& p : codec_choice_sample(n))
    RETURN_IF_ERROR(copy(dst.data() + p.offset, src + p.offset, p.length, cudaMemcpyDeviceToHost));
  return Status::ok();
}

// pass.codec[i] for each i in idx: the planes codec the kernels code chunk i
// with, or Codec::kRaw for the CPU engine (gpu::gpu_chunk_codec).
Status GpuEngine::choose_codecs(std::span<const EncodeJob> jobs, std::span<const std::size_t> idx,
                                MemorySpace space, std::vector<Codec>& codecs) {
  codecs.assign(jobs.size(), Codec::kRaw);
  for (std::size_t i : idx) {
    const EncodeJob& j = jobs[i];
    if (!opts_.sample_codec_choice && is_float(j.dtype) && !j.trial && !j.data.empty()) {
      codecs[i] = planes_codec(static_cast<int>(element_bytes(j.dtype)), kGpuFloatPayloadVersion);
      continue;
    }
    if (space == MemorySpace::kDevice && !j.data.empty()) {
      // Only the sample crosses to the host; the choice needs its bytes.
      RETURN_IF_ERROR(sample_to_host(j.data.data(), j.data.size(), sample_));
      RETURN_IF_ERROR(sync());
      codecs[i] = gpu::gpu_chunk_codec(sample_, j.dtype, j.trial, *choice_);
    } else {
      codecs[i] = gpu::gpu_chunk_codec(j.data, j.dtype, j.trial, *choice_);
    }
  }
  return Status::ok();
}

// plans[i]: the codings job i gets, by DeltaEncoder's rule (FORMAT.md 3.1):
// kAlone without a usable base. The sample is judged on the host, as the
// CPU encoder judges it (two small float codings); of a chunk in device
// memory only the sample's pieces of it and of its base cross.
Status GpuEngine::plan_deltas(std::span<const EncodeJob> jobs, MemorySpace space,
                              std::vector<DeltaEncoder::Plan>& plans) {
  plans.assign(jobs.size(), DeltaEncoder::Plan::kAlone);
  for (std::size_t i = 0; i < jobs.size(); ++i) {
    const EncodeJob& j = jobs[i];
    if (j.base_id == nullptr || !delta_base_usable(j.data.size(), j.base.size(), j.known_id, *j.base_id))
      continue;
    if (space == MemorySpace::kHost || !is_float(j.dtype)) {
      plans[i] = delta_plan_->plan_codings(j.data, j.base, j.dtype);
      continue;
    }
    RETURN_IF_ERROR(sample_to_host(j.data.data(), j.data.size(), sample_));
    RETURN_IF_ERROR(sample_to_host(j.base.data(), j.base.size(), sample_base_));
    RETURN_IF_ERROR(sync());
    plans[i] = delta_plan_->plan_codings(sample_, sample_base_, j.dtype);
  }
  return Status::ok();
}

Status GpuEngine::encode_with_cpu(const EncodeJob& job, EncodedChunk& result, MemorySpace space) {
  EncodeJob hj = job;
  hj.base = {};  // the standalone coding; a delta is the kernels' pass
  hj.base_id = nullptr;
  if (space == MemorySpace::kHost) return cpu_->encode(std::span(&hj, 1), std::span(&result, 1));
  std::vector<std::byte> data(job.data.size()), frame(job.frame.size());
  RETURN_IF_ERROR(copy(data.data(), job.data.data(), data.size(), cudaMemcpyDeviceToHost));
  RETURN_IF_ERROR(sync());
  hj.data = data;
  hj.frame = frame;
  RETURN_IF_ERROR(cpu_->encode(std::span(&hj, 1), std::span(&result, 1)));
  RETURN_IF_ERROR(copy(job.frame.data(), frame.data(), result.frame_bytes, cudaMemcpyHostToDevice));
  return sync();
}

// Jobs with a usable base get DeltaEncoder's codings in the passes of
// cuda/delta_passes.h; the rest are coded alone in the first.
Status GpuEngine::encode(std::span<const EncodeJob> jobs, std::span<EncodedChunk> results,
                         MemorySpace space) {
  if (results.size() != jobs.size())
    return Status::invalid_argument("gpu codec engine: jobs and results differ in count");
  for (std::size_t i = 0; i < jobs.size(); ++i) {
    const EncodeJob& j = jobs[i];
    if (j.data.size() > kMaxChunkBytes || j.frame.size() < max_frame_bytes(j.data.size()))
      return Status::invalid_argument("encode job " + std::to_string(i) +
                                      ": chunk over 64 MiB or frame buffer too small");
  }
  ASSIGN_OR_RETURN(gpu::DeviceGuard guard, gpu::DeviceGuard::enter(opts_.device));
  std::vector<DeltaEncoder::Plan> plans;
  RETURN_IF_ERROR(plan_deltas(jobs, space, plans));
  return gpu::encode_in_passes(
      jobs, plans, results,
      [&](std::span<const std::size_t> idx) { return encode_alone(jobs, idx, results, space); },
      [&](const gpu::DeltaPassJobs& d, std::vector<char>& won) {
        return encode_deltas(jobs, d, won, results, space);
      });
}

Status GpuEngine::encode_alone(std::span<const EncodeJob> jobs, std::span<const std::size_t> idx,
                               std::span<EncodedChunk> results, MemorySpace space) {
  EncodePass pass;
  RETURN_IF_ERROR(choose_codecs(jobs, idx, space, pass.codec));
  std::vector<std::size_t> gpu_idx;
  for (std::size_t i : idx) {
    if (codec_element_width(pass.codec[i]) == 0) {  // zstd, empty or a close call: the CPU engine
      RETURN_IF_ERROR(encode_with_cpu(jobs[i], results[i], space));
      continue;
    }
    gpu_idx.push_back(i);
  }
  return run_pass(jobs, gpu_idx, pass, results, space);
}

Status GpuEngine::encode_deltas(std::span<const EncodeJob> jobs, const gpu::DeltaPassJobs& d,
                                std::vector<char>& won, std::span<EncodedChunk> results, MemorySpace space) {
  EncodePass pass;
  pass.delta = true;
  pass.codec.assign(jobs.size(), Codec::kRaw);
  pass.beat_payload.assign(jobs.size(), 0);
  pass.won.assign(jobs.size(), 0);
  for (std::size_t k = 0; k < d.idx.size(); ++k) {
    pass.codec[d.idx[k]] = d.codec[k];
    pass.beat_payload[d.idx[k]] = d.beat_payload[k];
  }
  RETURN_IF_ERROR(run_pass(jobs, d.idx, pass, results, space));
  for (std::size_t k = 0; k < d.idx.size(); ++k) won[k] = pass.won[d.idx[k]];
  return Status::ok();
}

Status GpuEngine::run_pass(std::span<const EncodeJob> jobs, std::span<const std::size_t> idx,
                           EncodePass& pass, std::span<EncodedChunk> results, MemorySpace space) {
  const bool host = space == MemorySpace::kHost;
  std::vector<gpu::ChunkNeed> needs;
  for (std::size_t i : idx) {
    const auto raw = static_cast<std::uint32_t>(jobs[i].data.size());
    const auto w = static_cast<std::uint32_t>(gpu::dec_codec_width(pass.codec[i]));
    needs.push_back(
        {gpu::enc_chunk_device_bytes(raw, w, host, pass.delta), host ? gpu::enc_chunk_pinned_bytes(raw) : 0});
  }
  ASSIGN_OR_RETURN(std::vector<gpu::SubBatch> parts, plan(needs, [&](std::size_t k) {
                     return "a " + std::to_string(jobs[idx[k]].data.size()) + "-byte chunk";
                   }));
  for (const gpu::SubBatch& part : parts) {
    RETURN_IF_ERROR(
        encode_sub_batch(jobs, idx.subspan(part.first, part.count), pass, results, space, part.pinned));
  }
  return Status::ok();
}

// The delta pass keeps a delta frame only when it wins (FORMAT.md 3.1:
// coded, strictly smaller than the payload to beat, and not the base's
// own chunk); its frame is in the arena until then.
Status GpuEngine::encode_sub_batch(std::span<const EncodeJob> jobs, std::span<const std::size_t> idx,
                                   EncodePass& pass, std::span<EncodedChunk> results, MemorySpace space,
                                   bool pinned) {
  arena_.reset();
  const bool host = space == MemorySpace::kHost;
  std::vector<EncChunk> recs(idx.size());
  std::vector<std::size_t> slot_at(idx.size());  // each chunk's place in the pinned pool
  std::size_t pinned_at = 0;
  for (std::size_t k = 0; k < idx.size(); ++k) {
    const EncodeJob& j = jobs[idx[k]];
    const Codec codec = pass.codec[idx[k]];
    EncChunk& c = recs[k] = gpu::make_enc_chunk(
        static_cast<std::uint32_t>(j.data.size()), static_cast<std::uint32_t>(gpu::dec_codec_width(codec)),
        static_cast<std::uint8_t>(codec), static_cast<std::uint8_t>(j.dtype));
    if (pass.delta) std::memcpy(c.base_id, j.base_id->data(), kDigestBytes);
    if (!host) {
      c.in = reinterpret_cast<const std::uint8_t*>(j.data.data());
      if (pass.delta) {
        c.base = reinterpret_cast<const std::uint8_t*>(j.base.data());
      } else {
        c.frame = reinterpret_cast<std::uint8_t*>(j.frame.data());
      }
    }
    if (!gpu::take_enc_slices(arena_, c, host)) return Status::internal("gpu arena plan");
    slot_at[k] = pinned_at;
    if (!host) continue;
    RETURN_IF_ERROR(stage_in(const_cast<std::uint8_t*>(c.in), j.data, pinned, pinned_at,
                             gpu::enc_chunk_pinned_bytes(c.raw_bytes)));
    // The base straight from pageable memory: the job keeps it until the
    // batch's last wait.
    if (pass.delta)
      RETURN_IF_ERROR(
          copy(const_cast<std::uint8_t*>(c.base), j.base.data(), j.base.size(), cudaMemcpyHostToDevice));
  }
  gpu::EncPlanRegions regions;
  if (!gpu::take_enc_plan_slices(arena_, recs, regions)) return Status::internal("gpu arena plan");
  CUDA_RETURN_IF_ERROR(
      cudaMemsetAsync(regions.hist, 0, regions.hist_words * sizeof(std::uint32_t), stream_.get()));
  auto* dev = arena_.take<EncChunk>(recs.size());
  auto* res = arena_.take<EncResult>(recs.size());
  if (!dev || !res) return Status::internal("gpu arena plan");
  RETURN_IF_ERROR(copy(dev, recs.data(), recs.size() * sizeof(EncChunk), cudaMemcpyHostToDevice));
  RETURN_IF_ERROR(launch_split(dev, recs));
  RETURN_IF_ERROR(plan_on_host(dev, recs, regions));
  RETURN_IF_ERROR(launch_encode(dev, res, recs));
  std::vector<EncResult> out(recs.size());
  RETURN_IF_ERROR(copy(out.data(), res, out.size() * sizeof(EncResult), cudaMemcpyDeviceToHost));
  RETURN_IF_ERROR(sync());
  std::vector<char> kept(idx.size(), 0);
  for (std::size_t k = 0; k < idx.size(); ++k) {
    const std::size_t i = idx[k];
    const EncodeJob& j = jobs[i];
    EncodedChunk e;
    std::memcpy(e.id.data(), out[k].id, kDigestBytes);
    e.codec = static_cast<Codec>(out[k].codec);
    e.dtype = j.dtype;
    e.raw_bytes = recs[k].raw_bytes;
    e.frame_bytes = out[k].frame_bytes;
    if (pass.delta) {
      if (!gpu::delta_wins(e, *j.base_id, pass.beat_payload[i])) continue;  // its frame stays in the arena
      pass.won[i] = 1;
      e.base_id = *j.base_id;
    }
    results[i] = e;
    kept[k] = 1;
    if (!host) {
      if (pass.delta)
        RETURN_IF_ERROR(copy(j.frame.data(), recs[k].frame, e.frame_bytes, cudaMemcpyDeviceToDevice));
      continue;
    }
    void* to = pinned ? static_cast<void*>(pool() + slot_at[k]) : j.frame.data();
    RETURN_IF_ERROR(copy(to, recs[k].frame, e.frame_bytes, cudaMemcpyDeviceToHost));
  }
  RETURN_IF_ERROR(sync());
  for (std::size_t k = 0; host && pinned && k < idx.size(); ++k) {
    if (kept[k]) std::memcpy(jobs[idx[k]].frame.data(), pool() + slot_at[k], results[idx[k]].frame_bytes);
  }
  return Status::ok();
}

Status GpuEngine::launch_split(EncChunk* dev, std::span<const EncChunk> host) {
  const gpu::EncGrids g = gpu::enc_grids(host);
  gpu::split_hash_kernel<<<dim3(g.leaf_blocks, static_cast<unsigned>(host.size())), gpu::kThreads, 0,
                           stream_.get()>>>(dev);
  CUDA_RETURN_IF_LAUNCH_ERROR("split_hash_kernel");
  return Status::ok();
}

// The histograms come back in one copy, the host plans every plane with
// the CPU encoder's planner (gpu::plan_chunk; the chunks spread over the
// shared thread pool, one Planner per part, which changes no byte: the plan
// is a pure function of the counts), and the tables, choices and records go
// back in three copies.
Status GpuEngine::plan_on_host(EncChunk* dev, std::span<EncChunk> recs, const gpu::EncPlanRegions& r) {
  plan_hist_.resize(r.hist_words);
  plan_tables_.resize(r.table_entries);
  plan_assign_.resize(r.assign_bytes);
  RETURN_IF_ERROR(
      copy(plan_hist_.data(), r.hist, r.hist_words * sizeof(std::uint32_t), cudaMemcpyDeviceToHost));
  RETURN_IF_ERROR(sync());
  ThreadPool& pool = ThreadPool::shared();
  const std::size_t parts = std::min(recs.size(), pool.size() + 1);
  if (planners_.size() < parts) planners_.resize(parts);
  pool.parallel_for(parts, [&](std::size_t part) {
    for (std::size_t k = part * recs.size() / parts; k < (part + 1) * recs.size() / parts; ++k) {
      EncChunk& c = recs[k];
      gpu::plan_chunk(c, plan_hist_.data() + (c.hist - r.hist), plan_tables_.data() + (c.tables - r.tables),
                      plan_assign_.data() + (c.assign - r.assign), planners_[part]);
    }
  });
  RETURN_IF_ERROR(
      copy(r.tables, plan_tables_.data(), r.table_entries * sizeof(gpu::EncSym), cudaMemcpyHostToDevice));
  RETURN_IF_ERROR(copy(r.assign, plan_assign_.data(), r.assign_bytes, cudaMemcpyHostToDevice));
  RETURN_IF_ERROR(copy(dev, recs.data(), recs.size() * sizeof(EncChunk), cudaMemcpyHostToDevice));
  // Pageable sources: the copies have read them when the stream gets here.
  return sync();
}

Status GpuEngine::launch_encode(EncChunk* dev, EncResult* res, std::span<const EncChunk> host) {
  using namespace gpu;
  const gpu::EncGrids g = gpu::enc_grids(host);
  const auto K = static_cast<unsigned>(host.size());
  cudaStream_t s = stream_.get();
  encode_blocks_kernel<<<dim3(g.block_blocks, K), kThreads, 0, s>>>(dev);
  CUDA_RETURN_IF_LAUNCH_ERROR("encode_blocks_kernel");
  layout_kernel<<<K, kPlanThreads, 0, s>>>(dev);
  CUDA_RETURN_IF_LAUNCH_ERROR("layout_kernel");
  assemble_kernel<<<dim3(g.assemble_blocks, K), kThreads, 0, s>>>(dev);
  CUDA_RETURN_IF_LAUNCH_ERROR("assemble_kernel");
  enc_crc_kernel<<<dim3(g.crc_blocks, K), kThreads, 0, s>>>(dev);
  CUDA_RETURN_IF_LAUNCH_ERROR("enc_crc_kernel");
  enc_finish_kernel<<<K, kFinishThreads, 0, s>>>(dev, res,
                                                 static_cast<const std::uint32_t*>(shift_mem_.get()));
  CUDA_RETURN_IF_LAUNCH_ERROR("enc_finish_kernel");
  return Status::ok();
}

// ---- decode ----

Status GpuEngine::read_headers(std::span<const DecodeJob> jobs, MemorySpace space,
                               std::vector<FrameHeader>& headers, std::span<Status> statuses,
                               std::vector<char>& parsed) {
  auto parse = [&](std::size_t i, std::span<const std::byte> head) {
    Result<FrameHeader> h = parse_frame_header_only(head);
    parsed[i] = h.is_ok();
    if (h.is_ok()) {
      headers[i] = h.value();
    } else {
      statuses[i] = h.status();
    }
  };
  std::vector<std::size_t> fetch;  // device frames without a host copy: one copy back each, one wait
  for (std::size_t i = 0; i < jobs.size(); ++i) {
    const DecodeJob& j = jobs[i];
    const std::size_t len = std::min(j.frame.size(), kFrameHeaderBytes);
    if (space == MemorySpace::kHost) {
      parse(i, j.frame.first(len));
    } else if (j.host_frame.size() >= len) {
      parse(i, j.host_frame.first(len));
    } else {
      fetch.push_back(i);
    }
  }
  const std::size_t per_round = opts_.pinned_memory_bytes / kFrameHeaderBytes;
  for (std::size_t first = 0; first < fetch.size(); first += per_round) {
    const std::size_t count = std::min(per_round, fetch.size() - first);
    for (std::size_t k = 0; k < count; ++k) {
      const DecodeJob& j = jobs[fetch[first + k]];
      RETURN_IF_ERROR(copy(pool() + k * kFrameHeaderBytes, j.frame.data(),
                           std::min(j.frame.size(), kFrameHeaderBytes), cudaMemcpyDeviceToHost));
    }
    RETURN_IF_ERROR(sync());
    for (std::size_t k = 0; k < count; ++k) {
      const DecodeJob& j = jobs[fetch[first + k]];
      parse(fetch[first + k], std::span<const std::byte>(pool() + k * kFrameHeaderBytes,
                                                         std::min(j.frame.size(), kFrameHeaderBytes)));
    }
  }
  return Status::ok();
}

Status GpuEngine::decode_with_cpu(const DecodeJob& job, Status& status, MemorySpace space) {
  if (space == MemorySpace::kHost) return cpu_->decode(std::span(&job, 1), std::span(&status, 1));
  std::vector<std::byte> f(job.frame.size()), o(job.out.size());
  RETURN_IF_ERROR(copy(f.data(), job.frame.data(), f.size(), cudaMemcpyDeviceToHost));
  RETURN_IF_ERROR(sync());
  DecodeJob hj{f, o, job.expected_id};
  RETURN_IF_ERROR(cpu_->decode(std::span(&hj, 1), std::span(&status, 1)));
  if (!status.is_ok()) return Status::ok();
  RETURN_IF_ERROR(copy(job.out.data(), o.data(), o.size(), cudaMemcpyHostToDevice));
  return sync();
}

Status GpuEngine::decode(std::span<const DecodeJob> jobs, std::span<Status> statuses, MemorySpace space) {
  if (statuses.size() != jobs.size())
    return Status::invalid_argument("gpu codec engine: jobs and statuses differ in count");
  ASSIGN_OR_RETURN(gpu::DeviceGuard guard, gpu::DeviceGuard::enter(opts_.device));
  std::vector<FrameHeader> headers(jobs.size());
  std::vector<char> parsed(jobs.size(), 0);
  RETURN_IF_ERROR(read_headers(jobs, space, headers, statuses, parsed));
  const bool host = space == MemorySpace::kHost;
  std::vector<std::size_t> gpu_idx;
  std::vector<gpu::ChunkNeed> needs;
  for (std::size_t i = 0; i < jobs.size(); ++i) {
    if (!parsed[i]) continue;
    const FrameHeader& h = headers[i];
    statuses[i] = check_decode_job(jobs[i], h);
    if (!statuses[i].is_ok()) continue;
    if (!decodes_on_gpu(h)) {  // zstd and empty frames: the CPU decoder
      RETURN_IF_ERROR(decode_with_cpu(jobs[i], statuses[i], space));
      continue;
    }
    gpu_idx.push_back(i);
    needs.push_back(
        {gpu::dec_chunk_device_bytes(h, host), host ? gpu::dec_chunk_pinned_bytes(h.raw_bytes) : 0});
  }
  ASSIGN_OR_RETURN(std::vector<gpu::SubBatch> parts, plan(needs, [&](std::size_t k) {
                     return "the frame of chunk " + to_hex(headers[gpu_idx[k]].chunk_id);
                   }));
  for (const gpu::SubBatch& part : parts) {
    RETURN_IF_ERROR(decode_sub_batch(jobs, std::span(gpu_idx).subspan(part.first, part.count), headers,
                                     statuses, space, part.pinned));
  }
  return Status::ok();
}

Status GpuEngine::decode_sub_batch(std::span<const DecodeJob> jobs, std::span<const std::size_t> idx,
                                   const std::vector<FrameHeader>& headers, std::span<Status> statuses,
                                   MemorySpace space, bool pinned) {
  arena_.reset();
  const bool host = space == MemorySpace::kHost;
  std::vector<DecChunk> recs(idx.size());
  std::size_t pinned_at = 0;
  for (std::size_t k = 0; k < idx.size(); ++k) {
    const DecodeJob& j = jobs[idx[k]];
    DecChunk& c = recs[k] = gpu::make_dec_chunk(headers[idx[k]]);
    const bool delta = is_delta_codec(headers[idx[k]].codec);
    if (!host) {
      c.payload = reinterpret_cast<const std::uint8_t*>(j.frame.data()) + kFrameHeaderBytes;
      c.out = reinterpret_cast<std::uint8_t*>(j.out.data());
      if (delta) c.base = reinterpret_cast<const std::uint8_t*>(j.base.data());
    }
    if (!gpu::take_dec_slices(arena_, c, host)) return Status::internal("gpu arena plan");
    if (!host) continue;
    RETURN_IF_ERROR(stage_in(const_cast<std::uint8_t*>(c.payload), j.frame.subspan(kFrameHeaderBytes), pinned,
                             pinned_at, gpu::dec_chunk_pinned_bytes(c.raw_bytes)));
    // The base straight from pageable memory (the job keeps it to the end).
    if (delta)
      RETURN_IF_ERROR(
          copy(const_cast<std::uint8_t*>(c.base), j.base.data(), c.raw_bytes, cudaMemcpyHostToDevice));
  }
  auto* dev = arena_.take<DecChunk>(recs.size());
  if (!dev) return Status::internal("gpu arena plan");
  RETURN_IF_ERROR(copy(dev, recs.data(), recs.size() * sizeof(DecChunk), cudaMemcpyHostToDevice));
  RETURN_IF_ERROR(launch_decode(dev, recs));
  // Every output comes back with the records (a damaged chunk's is simply
  // not used), so the sub-batch waits once.
  pinned_at = 0;
  for (std::size_t k = 0; host && k < idx.size(); ++k) {
    void* to = pinned ? static_cast<void*>(pool() + pinned_at) : jobs[idx[k]].out.data();
    RETURN_IF_ERROR(copy(to, recs[k].out, recs[k].raw_bytes, cudaMemcpyDeviceToHost));
    pinned_at += gpu::dec_chunk_pinned_bytes(recs[k].raw_bytes);
  }
  RETURN_IF_ERROR(copy(recs.data(), dev, recs.size() * sizeof(DecChunk), cudaMemcpyDeviceToHost));
  RETURN_IF_ERROR(sync());
  pinned_at = 0;
  for (std::size_t k = 0; k < idx.size(); ++k) {
    statuses[idx[k]] = decode_status(recs[k], headers[idx[k]]);
    if (host && pinned && statuses[idx[k]].is_ok())
      std::memcpy(jobs[idx[k]].out.data(), pool() + pinned_at, recs[k].raw_bytes);
    pinned_at += gpu::dec_chunk_pinned_bytes(recs[k].raw_bytes);
  }
  return Status::ok();
}

Status GpuEngine::launch_decode(DecChunk* dev, std::span<const DecChunk> host) {
  using namespace gpu;
  const gpu::DecGrids g = gpu::dec_grids(host);
  const auto K = static_cast<unsigned>(host.size());
  cudaStream_t s = stream_.get();
  dec_crc_kernel<<<dim3(g.crc_blocks, K), kThreads, 0, s>>>(dev);
  CUDA_RETURN_IF_LAUNCH_ERROR("dec_crc_kernel");
  parse_kernel<<<K, kPlanThreads, 0, s>>>(dev);
  CUDA_RETURN_IF_LAUNCH_ERROR("parse_kernel");
  decode_blocks_kernel<<<dim3(g.block_blocks, K), kThreads, 0, s>>>(dev);
  CUDA_RETURN_IF_LAUNCH_ERROR("decode_blocks_kernel");
  decode_fused_kernel<<<dim3(g.fused_blocks, K), kThreads, kMaxWidth * kBlockSymbols, s>>>(dev);
  CUDA_RETURN_IF_LAUNCH_ERROR("decode_fused_kernel");
  raw_copy_hash_kernel<<<dim3(g.leaf_blocks, K), kThreads, 0, s>>>(dev);
  CUDA_RETURN_IF_LAUNCH_ERROR("raw_copy_hash_kernel");
  dec_finish_kernel<<<K, kFinishThreads, 0, s>>>(dev, static_cast<const std::uint32_t*>(shift_mem_.get()));
  CUDA_RETURN_IF_LAUNCH_ERROR("dec_finish_kernel");
  return Status::ok();
}

}  // namespace

std::string gpu_unavailable_reason(int device) {
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) return cudaGetErrorString(err);
  if (count == 0) return "no CUDA device";
  if (device < 0 || device >= count)
    return "device " + std::to_string(device) + " of " + std::to_string(count);
  return "";
}

Result<std::uint64_t> gpu_context_reserve_bytes(int device) {
  int sms = 0, threads = 0;
  CUDA_RETURN_IF_ERROR(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  CUDA_RETURN_IF_ERROR(cudaDeviceGetAttribute(&threads, cudaDevAttrMaxThreadsPerMultiProcessor, device));
  return gpu::context_reserve_bytes(static_cast<std::uint32_t>(sms), static_cast<std::uint32_t>(threads));
}

Result<std::unique_ptr<CodecEngine>> make_gpu_engine(const GpuOptions& opts) {
  std::string why = gpu_unavailable_reason(opts.device);
  if (!why.empty()) return Status::unavailable(why);
  auto e = std::make_unique<GpuEngine>();
  RETURN_IF_ERROR(e->init(opts));
  return std::unique_ptr<CodecEngine>(std::move(e));
}

}  // namespace ferry
