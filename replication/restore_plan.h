// restore_plan.h: what a restore into memory decides before it allocates
// anything (replication/device_restore.cc runs the plan): where each file
// lands, the windows of consecutive chunks that travel and decode together,
// the staging ring, and the device memory of the GPU path: each lane's
// engine arena is sized from the GPU engine's own per-frame need
// (gpu_decode_arena_bytes) for the largest window, not from a guess per raw
// byte. Plain arithmetic over the manifest.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "codec/manifest.h"
#include "replication/device_restore.h"

namespace ferry::replication {

// The bytes a chunk's frame takes in a restore's frame memory: its frame,
// and behind a delta frame its base chunk (fetched and rebuilt on the host
// as the frame is read; the decode rebuilds the chunk from both, on the GPU
// in the GPU path).
std::uint64_t restore_frame_bytes(const ManifestChunk& c);

// Where one file of the snapshot lands: byte 0 of the file at `base`.
struct FilePlan {
  bool tensors = false;    // a safetensors file restored as tensors
  bool on_device = false;  // in the restore's device memory (else host)
  std::uint64_t pad = 0;   // bytes before the file so its data section is aligned
  std::uint64_t alloc_bytes = 0;
  std::shared_ptr<std::byte> alloc;
  std::byte* base = nullptr;
};

struct ChunkRef {
  std::size_t file = 0;
  std::size_t chunk = 0;
};

// Consecutive chunks (in file order) that one staging slot holds.
struct Window {
  std::size_t first = 0;  // into WindowPlan::chunks
  std::size_t count = 0;
  std::uint64_t raw_bytes = 0;
  std::uint64_t frame_bytes = 0;  // staged: restore_frame_bytes of its chunks
};

struct WindowPlan {
  std::vector<ChunkRef> chunks;         // every chunk of the snapshot, in file order
  std::vector<std::uint64_t> frame_at;  // per chunk: offset of its frame in its window's slot
  std::vector<std::uint64_t> raw_at;    // per chunk: offset of its bytes in its window's raw slot
  std::vector<Window> windows;
  std::uint64_t slot_frame_bytes = 0;  // the largest window's frames
};

struct RestorePlan {
  std::vector<FilePlan> files;
  std::uint64_t device_tensor_bytes = 0;  // the device allocations, rounded as allocated
  std::size_t lanes = 1;
  std::size_t slots = 0;
  std::uint64_t slot_raw_bytes = 0;
  std::size_t window_chunks = 0;
  WindowPlan windows;
  // GPU path, per lane: the engine's arena (decodes the largest window in
  // one sub-batch) and the device buffer the window's frames are copied to.
  std::size_t engine_arena_bytes = 0;
  std::uint64_t device_frame_bytes = 0;
};

std::vector<FilePlan> plan_files(const Manifest& m, bool cuda, std::uint64_t& device_tensor_bytes);
WindowPlan plan_windows(const Manifest& m, std::uint64_t slot_raw_bytes, std::size_t window_chunks);
// The whole plan for restoring `m` into `device` with the options' pinned
// budget and window.
RestorePlan plan_restore(const Manifest& m, const Device& device, const DeviceRestoreOptions& options);
// Device memory the GPU path adds to the tensors: every lane's arena and
// frame buffer (the CUDA context's own reserve comes on top).
std::uint64_t gpu_staging_bytes(const RestorePlan& plan);

}  // namespace ferry::replication
