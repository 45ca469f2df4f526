// gpu_engine.h: the GPU codec engine behind the plain CodecEngine interface
// (codec/engine.h), and the run-time choice between it and the CPU engine.
// Plain C++: no CUDA header here, so any layer may include it; a build
// without CUDA links a stub whose make_gpu_engine says why there is no GPU.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "base/status.h"
#include "codec/engine.h"

namespace ferry {

// The float payload version the GPU kernels write (docs/FORMAT.md 4.2), the
// CPU engine's default; they decode versions 1 and 2. The CPU engine is
// their byte-for-byte reference when asked for this version.
inline constexpr int kGpuFloatPayloadVersion = kFloatPayloadV2;

// CPU engine options that make the GPU engine's frames (whatever payload
// version `o` asked for).
inline CpuEngineOptions gpu_reference_options(CpuEngineOptions o = {}) {
  o.float_version = kGpuFloatPayloadVersion;
  return o;
}

// The smallest arena a GPU engine takes, whatever GpuOptions asks: room for
// the reference batch choose_engine codes at start (under 1 MiB) and for
// decoding any one frame already in device memory (under 2 MiB for 64 MiB:
// leaf digests, CRC segments, up to 16 decoder tables per plane, block
// offsets; plus the decoded planes, 64 MiB, for a version 2 frame).
inline constexpr std::size_t kGpuMinArenaBytes = std::size_t{72} << 20;

struct GpuOptions {
  int device = 0;
  // Device memory the engine may hold (arena for one sub-batch, at least
  // kGpuMinArenaBytes); batches larger than this run as several sub-batches.
  std::size_t device_memory_bytes = std::size_t{2} << 30;
  // Pinned host staging for host-memory batches (two halves, double buffered).
  std::size_t pinned_memory_bytes = std::size_t{512} << 20;
  // Run on the lowest-priority streams so that training kernels go first.
  bool low_priority_streams = true;
  // Make the CPU encoder's zstd-vs-planes choice on a sample of each float
  // chunk (byte-identical frames to the CPU engine). Off: float chunks take
  // the planes codec without a host look (faster; sparse tensors then code
  // worse than on the CPU engine and their frames differ).
  bool sample_codec_choice = true;
};

// The GPU engine on opts.device, or Unavailable with the reason (no driver,
// no device, build without CUDA, too little memory).
Result<std::unique_ptr<CodecEngine>> make_gpu_engine(const GpuOptions& opts = {});

// Why no GPU engine can be made here, or "" when one can (cheap probe).
std::string gpu_unavailable_reason(int device = 0);

// Device memory (GpuOptions::device_memory_bytes) with which the GPU engine
// decodes frames of these raw sizes, already in device memory, in one
// sub-batch. Plain arithmetic: any build can size a GPU engine with it.
std::size_t gpu_decode_arena_bytes(std::span<const std::uint32_t> raw_chunk_bytes);

// Device memory the CUDA context on `device` may still take when the GPU
// engine's kernels first run (local memory for every resident thread, the
// module), which cudaMemGetInfo does not show beforehand. Unavailable
// without CUDA.
Result<std::uint64_t> gpu_context_reserve_bytes(int device);

enum class EngineChoice { kAuto, kCpu, kGpu };

// Which engine choose_engine picked and why, for logs, `ferry status` and
// the agent's metrics: engine "cpu" or "gpu"; reason "forced
// (--engine=cpu)", "no usable GPU: ...", "GPU reference check failed: ...",
// or "GPU reference check passed".
struct EngineSelection {
  std::string engine;
  std::string reason;
  std::string description;  // the engine's own line: "gpu (NVIDIA H100 ...)"
};

// kAuto: the GPU engine when a usable device exists and codes a reference
// batch exactly as the CPU engine does (check_engine_matches_cpu), else the
// CPU engine. kCpu / kGpu force one; kGpu without a usable device, or with
// one that fails the reference check, is an error. Logs the choice and its
// reason to stderr once per process: "ferry: codec engine: gpu (NVIDIA H100
// 80GB HBM3, driver 580): GPU reference check passed" or "ferry: codec
// engine: cpu (8 threads): no usable GPU: ...". `selection`, when given,
// receives the choice.
Result<std::unique_ptr<CodecEngine>> choose_engine(EngineChoice choice, const GpuOptions& gpu = {},
                                                   const CpuEngineOptions& cpu = {},
                                                   EngineSelection* selection = nullptr);

// choose_engine with the GPU engine made by `make_gpu` (a caller's own
// engine, or a test's).
using GpuEngineFactory = std::function<Result<std::unique_ptr<CodecEngine>>()>;
Result<std::unique_ptr<CodecEngine>> choose_engine_with(EngineChoice choice, const GpuEngineFactory& make_gpu,
                                                        const CpuEngineOptions& cpu = {},
                                                        EngineSelection* selection = nullptr);

// The most recent choice choose_engine made in this process, if any.
std::optional<EngineSelection> last_engine_selection();

// Codes a small fixed reference batch (bf16, fp16 and fp32 chunks, one that
// stays raw, chunks smaller than one element, two chunks with a delta base)
// with `engine` and `cpu`,
// compares the frames byte for byte, and decodes each engine's frames with
// both. OK, or Internal naming the first chunk and what differed.
Status check_engine_matches_cpu(CodecEngine& engine, CodecEngine& cpu);

// Parses "auto", "cpu", "gpu" (a --engine flag).
Result<EngineChoice> parse_engine_choice(const std::string& s);

}  // namespace ferry
