// gpu_engine.cu: the GPU codec engine: plans sub-batches that fit the
// device arena, launches the kernels of encode_kernels.cuh and
// decode_kernels.cuh on one explicit stream, and turns per-chunk device
// results into EncodedChunk records and Statuses. Chunks the GPU does not
// code (zstd, empty) go through the CPU engine, so frames stay identical.
#include <cuda_runtime.h>

// nvcc flags assignment to a [[nodiscard]] class type (Status) as a
// discarded result; the assignments below keep the value.
#pragma nv_diag_suppress 2810

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "base/crc32c.h"
#include "base/thread_pool.h"
#include "codec/frame.h"
#include "codec/limits.h"
#include "cuda/decode_kernels.cuh"
#include "cuda/device_arena.h"
#include "cuda/gpu_engine.h"

namespace ferry {
namespace {

using gpu::DecChunk;
using gpu::EncChunk;
using gpu::EncResult;

constexpr std::uint32_t kBlockSyms = gpu::kBlockSymbols;

std::uint32_t blocks_of(std::uint32_t n) { return (n + kBlockSyms - 1) / kBlockSyms; }
std::uint32_t leaves_of(std::uint32_t bytes) { return (bytes + 4095) / 4096; }
unsigned grid_for(std::uint32_t items, unsigned per_block) {
  return std::max(1u, (items + per_block - 1) / per_block);
}

// Device bytes one chunk of `raw` bytes needs for encode (input staged or
// not) or decode, with arena rounding.
std::size_t chunk_need(std::uint32_t raw, std::uint32_t w) {
  std::uint32_t n = raw / w, B = blocks_of(n);
  using gpu::StackArena;
  return StackArena::rounded(raw) * 2 + StackArena::rounded(raw + 88) +
         StackArena::rounded(std::size_t{w} * B * kBlockSyms) +
         StackArena::rounded(std::size_t{w} * B * 128) + StackArena::rounded(32ull * leaves_of(raw)) +
         StackArena::rounded(std::size_t{w} * 4096 * 4) + StackArena::rounded(std::size_t{w} * B * 8) +
         StackArena::rounded(4ull * (leaves_of(raw) + 1)) + StackArena::rounded(w * 256 * 24) +
         StackArena::rounded(w * 512 * 4) + 4 * gpu::kArenaAlign;
}

class GpuEngine final : public CodecEngine {
 public:
  Status init(const GpuOptions& opts) {
    opts_ = opts;
    CUDA_RETURN_IF_ERROR(cudaSetDevice(opts.device));
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
    CUDA_RETURN_IF_ERROR(cudaMalloc(&p, opts.device_memory_bytes));
    arena_mem_.reset(p);
    arena_ = gpu::StackArena(static_cast<std::byte*>(p), opts.device_memory_bytes);
    CUDA_RETURN_IF_ERROR(cudaMallocHost(&p, opts.pinned_memory_bytes));
    pinned_.reset(p);
    CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(
        gpu::decode_fused_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, gpu::kMaxWidth * kBlockSyms));
    std::uint32_t shift[32];
    gpu::crc32c_shift_matrix(4096, shift);
    CUDA_RETURN_IF_ERROR(cudaMalloc(&p, sizeof shift));
    shift_mem_.reset(p);
    CUDA_RETURN_IF_ERROR(cudaMemcpy(p, shift, sizeof shift, cudaMemcpyHostToDevice));
    return Status::ok();
  }

  std::string_view kind() const override { return "gpu"; }
  std::string description() const override { return desc_; }
  bool supports(MemorySpace) const override { return true; }

  Status encode(std::span<const EncodeJob> jobs, std::span<EncodedChunk> results, MemorySpace space) override;
  Status decode(std::span<const DecodeJob> jobs, std::span<Status> statuses, MemorySpace space) override;

 private:
  Status encode_gpu(std::span<const EncodeJob> jobs, const std::vector<std::size_t>& idx,
                    const std::vector<Codec>& codecs, std::span<EncodedChunk> results, MemorySpace space);
  Status decode_gpu(std::span<const DecodeJob> jobs, const std::vector<std::size_t>& idx,
                    const std::vector<FrameHeader>& headers, std::span<Status> statuses, MemorySpace space);
  Status copy(void* dst, const void* src, std::size_t n, cudaMemcpyKind kind) {
    CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dst, src, n, kind, stream_.get()));
    return Status::ok();
  }
  Status sync() {
    CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_.get()));
    return Status::ok();
  }

  GpuOptions opts_;
  std::string desc_;
  gpu::Stream stream_;
  gpu::DeviceBuffer arena_mem_, shift_mem_;
  gpu::PinnedBuffer pinned_;
  gpu::StackArena arena_;
  std::unique_ptr<CodecEngine> cpu_ = make_cpu_engine();
  std::unique_ptr<CodecChoiceScratch> choice_ = std::make_unique<CodecChoiceScratch>();
};

Status GpuEngine::encode(std::span<const EncodeJob> jobs, std::span<EncodedChunk> results,
                         MemorySpace space) {
  if (results.size() != jobs.size())
    return Status::invalid_argument("gpu codec engine: jobs and results differ in count");
  std::vector<Codec> codecs(jobs.size());
  std::vector<std::byte> host_copy;
  for (std::size_t i = 0; i < jobs.size(); ++i) {
    const EncodeJob& j = jobs[i];
    if (j.data.size() > kMaxChunkBytes || j.frame.size() < max_frame_bytes(j.data.size()))
      return Status::invalid_argument("encode job " + std::to_string(i) +
                                      ": chunk over 64 MiB or frame buffer too small");
    if (!opts_.sample_codec_choice && is_float(j.dtype) && !j.trial && !j.data.empty()) {
      codecs[i] = element_bytes(j.dtype) == 4   ? Codec::kPlanes32
                  : element_bytes(j.dtype) == 2 ? Codec::kPlanes16
                                                : Codec::kPlanes8;
      continue;
    }
    if (space == MemorySpace::kDevice && !j.data.empty()) {
      // Only the sample crosses to the host; the choice needs its bytes.
      std::vector<std::byte> whole(j.data.size());
      for (const SamplePiece& p : codec_choice_sample(j.data.size())) {
        RETURN_IF_ERROR(
            copy(whole.data() + p.offset, j.data.data() + p.offset, p.length, cudaMemcpyDeviceToHost));
      }
      RETURN_IF_ERROR(sync());
      codecs[i] = choose_chunk_codec(whole, j.dtype, j.trial, *choice_);
    } else {
      codecs[i] = choose_chunk_codec(j.data, j.dtype, j.trial, *choice_);
    }
  }
  std::vector<std::size_t> gpu_idx;
  for (std::size_t i = 0; i < jobs.size(); ++i) {
    if (codec_element_width(codecs[i]) != 0) {
      gpu_idx.push_back(i);
      continue;
    }
    // zstd or empty: the CPU engine, through host memory when needed.
    EncodeJob hj = jobs[i];
    std::vector<std::byte> data, frame(hj.frame.size());
    if (space == MemorySpace::kDevice) {
      data.resize(hj.data.size());
      RETURN_IF_ERROR(copy(data.data(), hj.data.data(), data.size(), cudaMemcpyDeviceToHost));
      RETURN_IF_ERROR(sync());
      hj.data = data;
      hj.frame = frame;
    }
    RETURN_IF_ERROR(cpu_->encode(std::span(&hj, 1), results.subspan(i, 1), MemorySpace::kHost));
    if (space == MemorySpace::kDevice) {
      RETURN_IF_ERROR(
          copy(jobs[i].frame.data(), frame.data(), results[i].frame_bytes, cudaMemcpyHostToDevice));
      RETURN_IF_ERROR(sync());
    }
  }
  // Sub-batches that fit the arena.
  std::size_t at = 0;
  while (at < gpu_idx.size()) {
    std::vector<std::size_t> part;
    std::size_t need = 0;
    while (at < gpu_idx.size()) {
      std::size_t i = gpu_idx[at];
      std::size_t c =
          chunk_need(static_cast<std::uint32_t>(jobs[i].data.size()), codec_element_width(codecs[i])) +
          2 * (sizeof(EncChunk) + sizeof(EncResult));
      if (!part.empty() && need + c > arena_.capacity()) break;
      if (c > arena_.capacity())
        return Status::exhausted("gpu codec engine: a " + std::to_string(jobs[i].data.size()) +
                                 "-byte chunk needs more than the device memory cap");
      need += c;
      part.push_back(i);
      ++at;
    }
    RETURN_IF_ERROR(encode_gpu(jobs, part, codecs, results, space));
  }
  return Status::ok();
}

Status GpuEngine::encode_gpu(std::span<const EncodeJob> jobs, const std::vector<std::size_t>& idx,
                             const std::vector<Codec>& codecs, std::span<EncodedChunk> results,
                             MemorySpace space) {
  arena_.reset();
  const std::uint32_t K = static_cast<std::uint32_t>(idx.size());
  std::vector<EncChunk> host(K);
  std::uint32_t max_leaves = 1, max_units = 1;
  for (std::uint32_t k = 0; k < K; ++k) {
    const EncodeJob& j = jobs[idx[k]];
    EncChunk& c = host[k];
    std::memset(&c, 0, sizeof c);
    const std::uint32_t raw = static_cast<std::uint32_t>(j.data.size());
    const std::uint32_t w = static_cast<std::uint32_t>(codec_element_width(codecs[idx[k]]));
    c.raw_bytes = raw;
    c.width = w;
    c.n = raw / w;
    c.blocks = blocks_of(c.n);
    c.leaves = leaves_of(raw);
    c.codec = static_cast<std::uint8_t>(codecs[idx[k]]);
    c.dtype = static_cast<std::uint8_t>(j.dtype);
    if (space == MemorySpace::kDevice) {
      c.in = reinterpret_cast<const std::uint8_t*>(j.data.data());
      c.frame = reinterpret_cast<std::uint8_t*>(j.frame.data());
    } else {
      auto* in = arena_.take<std::uint8_t>(raw);
      c.frame = arena_.take<std::uint8_t>(gpu::kFrameHeaderBytes + raw);
      if (!in || !c.frame) return Status::internal("gpu arena plan");
      RETURN_IF_ERROR(copy(in, j.data.data(), raw, cudaMemcpyHostToDevice));
      c.in = in;
    }
    c.planes = arena_.take<std::uint8_t>(std::size_t{w} * c.n);
    c.words = arena_.take<std::uint16_t>(std::size_t{w} * c.blocks * (kBlockSyms / 2));
    c.states = arena_.take<std::uint32_t>(std::size_t{w} * c.blocks * 32);
    c.digests = arena_.take<std::uint8_t>(32ull * c.leaves);
    c.hist = arena_.take<std::uint32_t>(w * 512);
    c.stored = arena_.take<std::uint32_t>(std::size_t{w} * c.blocks);
    c.block_off = arena_.take<std::uint32_t>(std::size_t{w} * c.blocks);
    c.seg_crc = arena_.take<std::uint32_t>(c.leaves + 1);
    c.tables = arena_.take<gpu::EncSym>(w * 256);
    if (!c.planes || !c.words || !c.states || !c.digests || !c.hist || !c.stored || !c.block_off ||
        !c.seg_crc || !c.tables)
      return Status::internal("gpu arena plan");
    CUDA_RETURN_IF_ERROR(cudaMemsetAsync(c.hist, 0, w * 512 * 4, stream_.get()));
    max_leaves = std::max(max_leaves, c.leaves);
    max_units = std::max(max_units, w * std::max(c.blocks, 1u));
  }
  auto* dev = arena_.take<EncChunk>(K);
  auto* res = arena_.take<EncResult>(K);
  if (!dev || !res) return Status::internal("gpu arena plan");
  RETURN_IF_ERROR(copy(dev, host.data(), K * sizeof(EncChunk), cudaMemcpyHostToDevice));
  cudaStream_t s = stream_.get();
  using namespace gpu;
  split_hash_kernel<<<dim3(grid_for(max_leaves, kThreads), K), kThreads, 0, s>>>(dev);
  CUDA_RETURN_IF_LAUNCH_ERROR("split_hash_kernel");
  plan_kernel<<<K, 32, 0, s>>>(dev);
  CUDA_RETURN_IF_LAUNCH_ERROR("plan_kernel");
  encode_blocks_kernel<<<dim3(grid_for(max_units, kWarpsPerBlock), K), kThreads, 0, s>>>(dev);
  CUDA_RETURN_IF_LAUNCH_ERROR("encode_blocks_kernel");
  layout_kernel<<<K, 32, 0, s>>>(dev);
  CUDA_RETURN_IF_LAUNCH_ERROR("layout_kernel");
  assemble_kernel<<<dim3(grid_for(max_units, kWarpsPerBlock), K), kThreads, 0, s>>>(dev);
  CUDA_RETURN_IF_LAUNCH_ERROR("assemble_kernel");
  enc_crc_kernel<<<dim3(grid_for(max_leaves + 1, kThreads), K), kThreads, 0, s>>>(dev);
  CUDA_RETURN_IF_LAUNCH_ERROR("enc_crc_kernel");
  enc_finish_kernel<<<K, 256, 0, s>>>(dev, res, static_cast<const std::uint32_t*>(shift_mem_.get()));
  CUDA_RETURN_IF_LAUNCH_ERROR("enc_finish_kernel");
  std::vector<EncResult> out(K);
  RETURN_IF_ERROR(copy(out.data(), res, K * sizeof(EncResult), cudaMemcpyDeviceToHost));
  RETURN_IF_ERROR(sync());
  for (std::uint32_t k = 0; k < K; ++k) {
    EncodedChunk& e = results[idx[k]];
    std::memcpy(e.id.data(), out[k].id, 32);
    e.codec = static_cast<Codec>(out[k].codec);
    e.dtype = jobs[idx[k]].dtype;
    e.raw_bytes = host[k].raw_bytes;
    e.frame_bytes = out[k].frame_bytes;
    if (space == MemorySpace::kHost)
      RETURN_IF_ERROR(copy(jobs[idx[k]].frame.data(), host[k].frame, e.frame_bytes, cudaMemcpyDeviceToHost));
  }
  return sync();
}

Status GpuEngine::decode(std::span<const DecodeJob> jobs, std::span<Status> statuses, MemorySpace space) {
  if (statuses.size() != jobs.size())
    return Status::invalid_argument("gpu codec engine: jobs and statuses differ in count");
  std::vector<FrameHeader> headers(jobs.size());
  std::vector<std::size_t> gpu_idx;
  for (std::size_t i = 0; i < jobs.size(); ++i) {
    const DecodeJob& j = jobs[i];
    std::array<std::byte, kFrameHeaderBytes> hb{};
    std::span<const std::byte> head = j.frame.first(std::min(j.frame.size(), kFrameHeaderBytes));
    if (space == MemorySpace::kDevice) {
      RETURN_IF_ERROR(copy(hb.data(), head.data(), head.size(), cudaMemcpyDeviceToHost));
      RETURN_IF_ERROR(sync());
      head = std::span<const std::byte>(hb.data(), head.size());
    }
    Result<FrameHeader> h = parse_frame_header_only(head);
    if (!h.is_ok()) {
      statuses[i] = h.status();
      continue;
    }
    headers[i] = h.value();
    const std::string chunk = "chunk " + to_hex(h->chunk_id) + ": ";
    if (j.frame.size() != kFrameHeaderBytes + h->payload_bytes) {
      statuses[i] =
          Status::corruption(chunk + "frame is " + std::to_string(j.frame.size()) + " bytes, header says " +
                             std::to_string(kFrameHeaderBytes + h->payload_bytes));
      continue;
    }
    if (j.expected_id && *j.expected_id != h->chunk_id) {
      statuses[i] =
          Status::corruption(chunk + "frame holds a different chunk than expected " + to_hex(*j.expected_id));
      continue;
    }
    if (j.out.size() != h->raw_bytes) {
      statuses[i] =
          Status::invalid_argument(chunk + "output buffer is " + std::to_string(j.out.size()) + " bytes");
      continue;
    }
    const bool on_gpu = h->raw_bytes > 0 && (h->codec == Codec::kRaw || codec_element_width(h->codec) != 0);
    if (on_gpu) {
      gpu_idx.push_back(i);
      continue;
    }
    // zstd and empty frames: the CPU decoder, through host memory when needed.
    std::vector<std::byte> f(j.frame.size()), o(j.out.size());
    DecodeJob hj{j.frame, j.out, j.expected_id};
    if (space == MemorySpace::kDevice) {
      RETURN_IF_ERROR(copy(f.data(), j.frame.data(), f.size(), cudaMemcpyDeviceToHost));
      RETURN_IF_ERROR(sync());
      hj.frame = f;
      hj.out = o;
    }
    RETURN_IF_ERROR(cpu_->decode(std::span(&hj, 1), statuses.subspan(i, 1), MemorySpace::kHost));
    if (space == MemorySpace::kDevice && statuses[i].is_ok()) {
      RETURN_IF_ERROR(copy(j.out.data(), o.data(), o.size(), cudaMemcpyHostToDevice));
      RETURN_IF_ERROR(sync());
    }
  }
  std::size_t at = 0;
  while (at < gpu_idx.size()) {
    std::vector<std::size_t> part;
    std::size_t need = 0;
    while (at < gpu_idx.size()) {
      std::size_t i = gpu_idx[at];
      std::size_t c = chunk_need(headers[i].raw_bytes, 4) + 2 * sizeof(DecChunk);
      if (!part.empty() && need + c > arena_.capacity()) break;
      if (c > arena_.capacity())
        return Status::exhausted("gpu codec engine: a frame needs more than the device memory cap");
      need += c;
      part.push_back(i);
      ++at;
    }
    RETURN_IF_ERROR(decode_gpu(jobs, part, headers, statuses, space));
  }
  return Status::ok();
}

Status GpuEngine::decode_gpu(std::span<const DecodeJob> jobs, const std::vector<std::size_t>& idx,
                             const std::vector<FrameHeader>& headers, std::span<Status> statuses,
                             MemorySpace space) {
  arena_.reset();
  const std::uint32_t K = static_cast<std::uint32_t>(idx.size());
  std::vector<DecChunk> host(K);
  std::uint32_t max_leaves = 1, max_blocks = 1;
  for (std::uint32_t k = 0; k < K; ++k) {
    const DecodeJob& j = jobs[idx[k]];
    const FrameHeader& h = headers[idx[k]];
    DecChunk& c = host[k];
    std::memset(&c, 0, sizeof c);
    const std::uint32_t w = std::max(1, codec_element_width(h.codec));
    c.raw_bytes = h.raw_bytes;
    c.payload_bytes = h.payload_bytes;
    c.width = w;
    c.n = h.raw_bytes / w;
    c.blocks = h.codec == Codec::kRaw ? 0 : blocks_of(c.n);
    c.leaves = leaves_of(h.raw_bytes);
    c.codec = static_cast<std::uint32_t>(h.codec);
    c.payload_crc = unmask_crc(h.payload_crc);
    std::memcpy(c.chunk_id, h.chunk_id.data(), 32);
    if (space == MemorySpace::kDevice) {
      c.payload = reinterpret_cast<const std::uint8_t*>(j.frame.data()) + kFrameHeaderBytes;
      c.out = reinterpret_cast<std::uint8_t*>(j.out.data());
    } else {
      auto* p = arena_.take<std::uint8_t>(h.payload_bytes + 1);
      c.out = arena_.take<std::uint8_t>(h.raw_bytes);
      if (!p || !c.out) return Status::internal("gpu arena plan");
      RETURN_IF_ERROR(copy(p, j.frame.data() + kFrameHeaderBytes, h.payload_bytes, cudaMemcpyHostToDevice));
      c.payload = p;
    }
    c.digests = arena_.take<std::uint8_t>(32ull * c.leaves);
    c.seg_crc = arena_.take<std::uint32_t>(leaves_of(h.payload_bytes) + 1);
    c.dec_table = arena_.take<std::uint32_t>(std::size_t{w} * 4096);
    c.block_in = arena_.take<std::uint32_t>(std::size_t{w} * c.blocks + 1);
    c.block_st = arena_.take<std::uint32_t>(std::size_t{w} * c.blocks + 1);
    if (!c.digests || !c.seg_crc || !c.dec_table || !c.block_in || !c.block_st)
      return Status::internal("gpu arena plan");
    max_leaves = std::max(max_leaves, c.leaves);
    max_blocks = std::max(max_blocks, c.blocks);
  }
  auto* dev = arena_.take<DecChunk>(K);
  if (!dev) return Status::internal("gpu arena plan");
  RETURN_IF_ERROR(copy(dev, host.data(), K * sizeof(DecChunk), cudaMemcpyHostToDevice));
  cudaStream_t s = stream_.get();
  using namespace gpu;
  dec_crc_kernel<<<dim3(grid_for(max_leaves + 1, kThreads), K), kThreads, 0, s>>>(dev);
  CUDA_RETURN_IF_LAUNCH_ERROR("dec_crc_kernel");
  parse_kernel<<<K, 32, 0, s>>>(dev);
  CUDA_RETURN_IF_LAUNCH_ERROR("parse_kernel");
  decode_fused_kernel<<<dim3(max_blocks, K), kThreads, kMaxWidth * kBlockSyms, s>>>(dev);
  CUDA_RETURN_IF_LAUNCH_ERROR("decode_fused_kernel");
  raw_copy_hash_kernel<<<dim3(grid_for(max_leaves, kThreads), K), kThreads, 0, s>>>(dev);
  CUDA_RETURN_IF_LAUNCH_ERROR("raw_copy_hash_kernel");
  dec_finish_kernel<<<K, 256, 0, s>>>(dev, static_cast<const std::uint32_t*>(shift_mem_.get()));
  CUDA_RETURN_IF_LAUNCH_ERROR("dec_finish_kernel");
  RETURN_IF_ERROR(copy(host.data(), dev, K * sizeof(DecChunk), cudaMemcpyDeviceToHost));
  RETURN_IF_ERROR(sync());
  for (std::uint32_t k = 0; k < K; ++k) {
    const DecChunk& c = host[k];
    const FrameHeader& h = headers[idx[k]];
    const std::string chunk = "chunk " + to_hex(h.chunk_id) + ": ";
    const std::string codec(codec_name(h.codec));
    switch (c.err) {
      case kDecOk:
        statuses[idx[k]] = Status::ok();
        if (space == MemorySpace::kHost)
          RETURN_IF_ERROR(copy(jobs[idx[k]].out.data(), c.out, c.raw_bytes, cudaMemcpyDeviceToHost));
        break;
      case kDecPayloadCrc:
        statuses[idx[k]] = Status::corruption(chunk + "payload CRC mismatch");
        break;
      case kDecStructure:
        statuses[idx[k]] = Status::corruption(
            chunk + codec + " payload: plane " + std::to_string(c.err_plane) + " block " +
            std::to_string(c.err_block) + ": invalid structure (check " + std::to_string(c.err_detail) + ")");
        break;
      case kDecBlock:
        statuses[idx[k]] =
            Status::corruption(chunk + codec + " payload: plane " + std::to_string(c.err_plane) + " block " +
                               std::to_string(c.err_block) + ": rANS block does not decode");
        break;
      default:
        statuses[idx[k]] = Status::corruption(chunk + "decoded bytes do not hash to the chunk id");
    }
  }
  return sync();
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

Result<std::unique_ptr<CodecEngine>> make_gpu_engine(const GpuOptions& opts) {
  std::string why = gpu_unavailable_reason(opts.device);
  if (!why.empty()) return Status::unavailable(why);
  auto e = std::make_unique<GpuEngine>();
  RETURN_IF_ERROR(e->init(opts));
  return std::unique_ptr<CodecEngine>(std::move(e));
}

}  // namespace ferry
