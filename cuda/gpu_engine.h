// gpu_engine.h: the GPU codec engine behind the plain CodecEngine interface
// (codec/engine.h), and the run-time choice between it and the CPU engine.
// Plain C++: no CUDA header here, so any layer may include it; a build
// without CUDA links a stub whose make_gpu_engine says why there is no GPU.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "base/status.h"
#include "codec/engine.h"

namespace ferry {

struct GpuOptions {
  int device = 0;
  // Device memory the engine may hold (arena for one sub-batch); batches
  // larger than this run as several sub-batches.
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

enum class EngineChoice { kAuto, kCpu, kGpu };

// kAuto: the GPU engine when a usable device exists, else the CPU engine.
// kCpu / kGpu force one; kGpu without a usable device is an error. Logs the
// choice to stderr once per process: "ferry: codec engine: gpu (NVIDIA H100
// 80GB HBM3, driver 580)" or "ferry: codec engine: cpu (no usable GPU: ...)".
Result<std::unique_ptr<CodecEngine>> choose_engine(EngineChoice choice, const GpuOptions& gpu = {},
                                                   const CpuEngineOptions& cpu = {});

// Parses "auto", "cpu", "gpu" (a --engine flag).
Result<EngineChoice> parse_engine_choice(const std::string& s);

}  // namespace ferry
