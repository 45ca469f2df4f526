// restore_plan.cc: see restore_plan.h.
#include "replication/restore_plan.h"

#include <algorithm>

#include "cuda/gpu_engine.h"
#include "replication/frame_sources.h"
#include "replication/limits.h"

namespace ferry::replication {
namespace {

std::uint64_t round_up(std::uint64_t n, std::uint64_t a) { return (n + a - 1) / a * a; }

std::uint64_t data_section_begin(const ManifestFile& f) {
  std::uint64_t d = f.size;
  for (const ManifestTensor& t : f.tensors) d = std::min(d, t.begin);
  return d;
}

}  // namespace

std::vector<FilePlan> plan_files(const Manifest& m, bool cuda, std::uint64_t& device_tensor_bytes) {
  std::vector<FilePlan> files(m.files.size());
  device_tensor_bytes = 0;
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
      device_tensor_bytes += round_up(std::max<std::uint64_t>(p.alloc_bytes, 1), kRestoreDataAlignment);
  }
  return files;
}

std::uint64_t restore_frame_bytes(const ManifestChunk& c) {
  return is_delta_codec(static_cast<Codec>(c.codec)) ? std::uint64_t{c.frame_bytes} + c.length
                                                     : c.frame_bytes;
}

WindowPlan plan_windows(const Manifest& m, std::uint64_t slot_raw_bytes, std::size_t window_chunks) {
  WindowPlan p;
  for (std::size_t f = 0; f < m.files.size(); ++f) {
    for (std::size_t c = 0; c < m.files[f].chunks.size(); ++c) p.chunks.push_back({f, c});
  }
  p.frame_at.resize(p.chunks.size());
  p.raw_at.resize(p.chunks.size());
  for (std::size_t i = 0; i < p.chunks.size();) {
    Window w{i, 0, 0, 0};
    while (i < p.chunks.size() && w.count < window_chunks) {
      const ManifestChunk& c = m.files[p.chunks[i].file].chunks[p.chunks[i].chunk];
      if (w.count > 0 && w.raw_bytes + c.length > slot_raw_bytes) break;
      p.frame_at[i] = w.frame_bytes;
      p.raw_at[i] = w.raw_bytes;
      w.raw_bytes += c.length;
      w.frame_bytes += restore_frame_bytes(c);
      ++w.count;
      ++i;
    }
    p.slot_frame_bytes = std::max(p.slot_frame_bytes, w.frame_bytes);
    p.windows.push_back(w);
  }
  return p;
}

RestorePlan plan_restore(const Manifest& m, const Device& device, const DeviceRestoreOptions& options) {
  const bool cuda = device.kind == Device::Kind::kCuda;
  RestorePlan p;
  p.files = plan_files(m, cuda, p.device_tensor_bytes);
  std::uint64_t max_chunk = 0;
  for (const ManifestFile& f : m.files)
    for (const ManifestChunk& c : f.chunks) max_chunk = std::max<std::uint64_t>(max_chunk, c.length);
  // Staging: a ring of slots, each holding one window's frames.
  p.lanes = cuda ? kRestoreGpuLanes : 1;
  p.slots = p.lanes * kRestoreSlotsPerLane;
  p.slot_raw_bytes = std::max<std::uint64_t>({options.pinned_memory_bytes / p.slots, max_chunk, kLeafBytes});
  p.window_chunks = std::clamp<std::size_t>(
      options.window_chunks ? options.window_chunks : kSourceWindowChunks, 1, kSourceWindowChunks);
  p.windows = plan_windows(m, p.slot_raw_bytes, p.window_chunks);
  if (!cuda) return p;
  p.engine_arena_bytes = kGpuMinArenaBytes;
  std::vector<std::uint32_t> raw;
  for (const Window& w : p.windows.windows) {
    raw.clear();
    for (std::size_t i = w.first; i < w.first + w.count; ++i) {
      const ChunkRef& r = p.windows.chunks[i];
      raw.push_back(m.files[r.file].chunks[r.chunk].length);
    }
    p.engine_arena_bytes = std::max(p.engine_arena_bytes, gpu_decode_arena_bytes(raw));
  }
  p.device_frame_bytes = p.windows.slot_frame_bytes;
  return p;
}

std::uint64_t gpu_staging_bytes(const RestorePlan& plan) {
  return plan.lanes * (plan.engine_arena_bytes + std::max<std::uint64_t>(plan.device_frame_bytes, 1));
}

}  // namespace ferry::replication
