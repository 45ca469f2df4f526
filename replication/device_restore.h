// device_restore.h: restore a snapshot straight into memory a program uses,
// GPU memory (`ferry restore --to cuda:N`, the Python module ferry.load) or
// host memory, instead of into files. Frames come from any FrameSource (a
// local .ferry archive, a receiver's local store, a DR receiver over mTLS);
// every chunk is verified against its id and every file against its root
// before the result is handed over. safetensors files come back as tensor
// descriptors over one allocation per file; other files come back whole, on
// the host. Allocations free themselves when their last owner goes, so a
// caller (or a DLPack capsule) may keep one tensor and drop the rest.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "codec/unpacker.h"
#include "cuda/gpu_engine.h"
#include "replication/restore.h"
#include "replication/tls.h"

namespace ferry {
class ThreadPool;
}

namespace ferry::replication {

struct Device {
  enum class Kind : std::uint8_t { kCpu, kCuda } kind = Kind::kCpu;
  int index = 0;
};
// "cpu", "cuda", "cuda:N"; InvalidArgument naming the text otherwise.
Result<Device> parse_device(std::string_view s);
// "cpu", "cuda:0".
std::string device_name(const Device& d);

// Memory that frees itself (cudaFree / free) when the last owner goes.
using Allocation = std::shared_ptr<void>;

struct RestoredTensor {
  std::string name;
  std::string file;
  std::string dtype;  // the safetensors name: "BF16", "F32", ...
  std::vector<std::int64_t> shape;
  std::byte* data = nullptr;
  std::uint64_t bytes = 0;
  Device device;
  Allocation owner;
};

// Files without a known tensor layout (torch.save .pt files, json, tokenizer
// files): whole, on the host.
struct RestoredFile {
  std::string path;
  std::byte* data = nullptr;
  std::uint64_t size = 0;
  Allocation owner;
};

// The data section of a safetensors file starts on this alignment in the
// restored allocation, so every tensor keeps the alignment of its offset.
inline constexpr std::size_t kRestoreDataAlignment = 256;
// Pinned host staging for the GPU path when the caller sets none.
inline constexpr std::size_t kDefaultRestorePinnedBytes = 256u << 20;

struct DeviceRestoreOptions {
  Device device;
  ThreadPool* pool = nullptr;     // reads and host decode; nullptr: ThreadPool::shared()
  std::size_t window_chunks = 0;  // chunks in flight; 0: chosen from the pool and staging size
  EngineChoice engine = EngineChoice::kAuto;
  std::size_t pinned_memory_bytes = kDefaultRestorePinnedBytes;
  std::function<void(const UnpackProgress&)> progress;  // may be empty
};

struct DeviceRestoreReport {
  std::uint64_t files = 0, tensors = 0, chunks = 0, logical_bytes = 0, frame_bytes = 0;
  std::string engine;  // the codec engine that decoded: "cpu (8 threads)", "gpu (...)"
  double seconds = 0;
};

struct DeviceRestoreResult {
  std::vector<RestoredTensor> tensors;
  std::vector<RestoredFile> files;
  DeviceRestoreReport report;
};

// Restores every file of the source's snapshot: safetensors files' tensors
// into options.device memory (one allocation per file, the data section
// aligned to kRestoreDataAlignment bytes so tensors keep the alignment of
// their offsets), other files to host memory. Every chunk is verified against
// its id (Corruption naming chunk id, file and offset), every file against
// its root. A CUDA device without enough free memory fails before copying
// anything: "cuda:0 has X free, the snapshot needs Y". Without CUDA in the
// build or without a driver, a CUDA device is Unavailable: "no usable GPU:
// <reason>".
Result<DeviceRestoreResult> restore_to_device(const FrameSource& source, const DeviceRestoreOptions& options);

}  // namespace ferry::replication
