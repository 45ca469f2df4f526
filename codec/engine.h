// engine.h: the codec-engine interface: code many chunks into frames, and
// decode + verify many frames, per call. Two engines implement it: the CPU
// engine here (ChunkEncoder/ChunkDecoder over a ThreadPool) and the GPU
// engine in cuda/ (cuda/gpu_engine.h). Both produce the same bytes for the
// same input, so either decodes the other's frames; callers pick one at run
// time (cuda/gpu_engine.h: choose_engine) and never see a CUDA header.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "codec/chunk_codec.h"
#include "codec/dtype.h"
#include "codec/float_codec.h"
#include "codec/frame.h"
#include "codec/tree_hash.h"
#include "codec/zstd_codec.h"

namespace ferry {

class ThreadPool;

// Where a batch's buffers live. The CPU engine accepts host memory only; the
// GPU engine accepts both (device pointers come from the caller's own CUDA
// allocations, e.g. tensors already on the GPU).
enum class MemorySpace : std::uint8_t { kHost = 0, kDevice = 1 };

// One chunk to encode. The frame is written at the start of `frame`, which
// must hold max_frame_bytes(data.size()) bytes; EncodedChunk::frame_bytes
// says how many were used. With frame_room_bytes(data.size()) the CPU engine
// codes the payload in place (no copy from scratch); the frame is the same.
struct EncodeJob {
  std::span<const std::byte> data;
  DType dtype = DType::kBytes;
  // Unknown layout: pick the codec by trial on a sample (EncodeOptions::trial).
  bool trial = false;
  std::span<std::byte> frame;
  // The chunk id when the caller has it already (the packer hashes every
  // chunk for have/need before coding it). The engine trusts it and writes it
  // into the frame without hashing `data` again; a wrong id makes a frame
  // that fails verification wherever it is decoded. nullptr: the engine
  // computes the id. An engine may ignore it (same frame, more work).
  const Digest* known_id = nullptr;
  // A delta base (codec/delta_codec.h): the same position's chunk of an
  // earlier snapshot, and its id (the caller hashed these bytes), in the
  // batch's memory space. With both set either engine writes the smaller of
  // a delta frame and the standalone frame, as DeltaEncoder does, byte for
  // byte (the GPU engine runs the transform in its kernels and judges the
  // sample on the host, as the CPU's DeltaEncoder does).
  std::span<const std::byte> base = {};
  const Digest* base_id = nullptr;
};

// One frame to decode and verify into `out` (exactly the frame's raw_bytes).
struct DecodeJob {
  std::span<const std::byte> frame;
  std::span<std::byte> out;
  std::optional<Digest> expected_id;
  // For a job in device memory: the same frame in host memory, when the
  // caller has it (a restore stages frames in pinned memory before copying
  // them over). The GPU engine then reads the header there instead of
  // copying it back; the payload is still read, and verified, on the device.
  std::span<const std::byte> host_frame = {};
  // A delta frame's base chunk (exactly raw_bytes, in the batch's memory
  // space; the caller fetched it by the header's base id and verified it).
  // The rebuilt chunk is verified against its own id, never only the
  // delta; without a base a delta frame is InvalidArgument naming the base.
  // Ignored for any other frame.
  std::span<const std::byte> base = {};
};

class CodecEngine {
 public:
  virtual ~CodecEngine() = default;

  // "cpu" or "gpu".
  virtual std::string_view kind() const = 0;
  // One line for logs: "cpu (8 threads)", "gpu (NVIDIA H100 80GB HBM3, driver 580)".
  virtual std::string description() const = 0;
  virtual bool supports(MemorySpace space) const = 0;

  // Encodes every job; results[i] describes jobs[i]. The frames are exactly
  // the bytes ChunkEncoder::encode produces. A non-OK Status means the engine
  // failed (device lost, memory cap too small for one chunk, bad arguments);
  // no result is then meaningful.
  virtual Status encode(std::span<const EncodeJob> jobs, std::span<EncodedChunk> results,
                        MemorySpace space = MemorySpace::kHost) = 0;

  // Decodes and verifies every job; statuses[i] is jobs[i]'s outcome, a
  // Corruption naming the chunk id for a damaged or hostile frame. The
  // returned Status is non-OK only when the engine itself failed.
  virtual Status decode(std::span<const DecodeJob> jobs, std::span<Status> statuses,
                        MemorySpace space = MemorySpace::kHost) = 0;
};

struct CpuEngineOptions {
  // nullptr: ThreadPool::shared().
  ThreadPool* pool = nullptr;
  int zstd_level = kDefaultZstdLevel;
  // Float payload version of planes frames: version 1 makes the frames the
  // GPU engine makes (its reference); version 2 is smaller (FORMAT.md 4.2).
  int float_version = kFloatPayloadV2;
};

std::unique_ptr<CodecEngine> make_cpu_engine(const CpuEngineOptions& opts = {});

}  // namespace ferry
