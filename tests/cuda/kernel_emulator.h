// kernel_emulator.h: runs the GPU kernels' own steps (cuda/encode_steps.cuh,
// cuda/decode_steps.cuh) on the host, over the plan and grid the engine
// launches (cuda/batch_plan.h). HostWarp and HostBlock run every lane of a
// step in turn, which equals the GPU's parallel run under the contract in
// cuda/simt.cuh. The arena stands in for device memory and is filled with
// a marker byte first, so a frame byte that no step writes shows up as a
// difference from the CPU encoder. Host-only; no GPU needed.
#pragma once

#include <cstdlib>
#include <cstring>
#include <memory>
#include <span>
#include <vector>

#include "codec/chunk_codec.h"
#include "codec/delta_codec.h"
#include "codec/engine.h"
#include "codec/frame.h"
#include "cuda/batch_plan.h"
#include "cuda/decode_steps.cuh"
#include "cuda/delta_passes.h"
#include "cuda/gpu_engine.h"

namespace ferry::gpu::emulator {

// What device memory holds before the kernels write it (cudaMalloc does not
// clear): a byte the CPU encoder never writes in a row of a small test.
inline constexpr std::uint8_t kUnwritten = 0xa5;

struct HostWarp {
  template <typename T>
  struct Each {
    T v[kWarpLanes]{};
    T& operator[](int lane) { return v[lane]; }
    const T& operator[](int lane) const { return v[lane]; }
  };
  template <typename F>
  void each(F&& f) const {
    for (int lane = 0; lane < kWarpLanes; ++lane) f(lane);
  }
  std::uint32_t ballot(const Each<bool>& pred) const {
    std::uint32_t m = 0;
    for (int lane = 0; lane < kWarpLanes; ++lane) m |= static_cast<std::uint32_t>(pred[lane]) << lane;
    return m;
  }
  bool any(const Each<bool>& pred) const { return ballot(pred) != 0; }
};

struct HostBlock {
  std::uint32_t threads = kThreads;
  template <typename T>
  struct Each {
    explicit Each(const HostBlock& b) : v(new T[b.threads]()) {}
    std::unique_ptr<T[]> v;
    T& operator[](std::uint32_t t) { return v[t]; }
  };
  std::uint32_t size() const { return threads; }
  template <typename F>
  void each(F&& f) const {
    for (std::uint32_t t = 0; t < threads; ++t) f(t);
  }
  void sync() const {}
  void add(std::uint32_t* p, std::uint32_t v) const { *p += v; }
  template <typename F>
  void each_warp(F&& f) const {
    for (std::uint32_t w = 0; w < threads / kWarpLanes; ++w) f(w, HostWarp{});
  }
};

// Host memory standing in for the engine's device arena.
class HostArena {
 public:
  explicit HostArena(std::size_t bytes)
      : mem_(static_cast<std::byte*>(::operator new (bytes + kArenaAlign, std::align_val_t{kArenaAlign}))),
        arena_(mem_.get(), bytes) {
    std::memset(mem_.get(), kUnwritten, bytes + kArenaAlign);
  }
  StackArena& arena() { return arena_; }

 private:
  struct Free {
    void operator()(std::byte* p) const { ::operator delete (p, std::align_val_t{kArenaAlign}); }
  };
  std::unique_ptr<std::byte, Free> mem_;
  StackArena arena_;
};

inline void crc_tables(std::uint32_t table[256], std::uint32_t shift4k[32]) {
  for (std::uint32_t i = 0; i < 256; ++i) table[i] = crc_table_entry(i);
  crc32c_shift_matrix(kLeafBytes, shift4k);
}

struct EncodeInput {
  std::span<const std::byte> data;
  Codec codec;  // a planes codec, or a delta codec with base and base_id set
  DType dtype;
  std::span<const std::byte> base = {};
  Digest base_id = {};
};

// The frames the GPU engine writes for `inputs` as one host-memory batch,
// kernel by kernel over the engine's grid (cuda/gpu_engine.cu:
// launch_encode).
inline std::vector<std::vector<std::byte>> encode_batch(std::span<const EncodeInput> inputs) {
  std::size_t bytes = kBatchFixedBytes;
  for (const EncodeInput& in : inputs)
    bytes += enc_chunk_device_bytes(static_cast<std::uint32_t>(in.data.size()), dec_codec_width(in.codec),
                                    true, is_delta_codec(in.codec));
  HostArena mem(bytes);
  std::vector<EncChunk> recs;
  for (const EncodeInput& in : inputs) {
    EncChunk c = make_enc_chunk(static_cast<std::uint32_t>(in.data.size()), dec_codec_width(in.codec),
                                static_cast<std::uint8_t>(in.codec), static_cast<std::uint8_t>(in.dtype));
    if (!take_enc_slices(mem.arena(), c, true)) return {};
    if (!in.data.empty()) std::memcpy(const_cast<std::uint8_t*>(c.in), in.data.data(), in.data.size());
    if (c.base) {
      if (in.base.size() != in.data.size()) return {};
      std::memcpy(const_cast<std::uint8_t*>(c.base), in.base.data(), in.base.size());
      std::memcpy(c.base_id, in.base_id.data(), kDigestBytes);
    }
    recs.push_back(c);
  }
  EncPlanRegions regions;
  if (!take_enc_plan_slices(mem.arena(), recs, regions)) return {};
  std::memset(regions.hist, 0, regions.hist_words * 4);  // the engine's cudaMemsetAsync
  std::vector<EncResult> res(recs.size());
  const EncGrids g = enc_grids(recs);
  std::uint32_t table[256], shift4k[32];
  crc_tables(table, shift4k);
  const HostBlock block{kThreads};
  for (EncChunk& c : recs) {
    std::uint32_t hist[kSplitHistWords];
    for (std::uint32_t x = 0; x < g.leaf_blocks; ++x) split_hash_block(c, x, hist, block);
  }
  // The engine's host step (gpu_engine.cu: plan_on_host), here in place.
  planes::Planner planner;
  for (EncChunk& c : recs) plan_chunk(c, c.hist, c.tables, c.assign, planner);
  for (EncChunk& c : recs)
    for (std::uint32_t q = 0; q < g.block_blocks * kWarpsPerBlock; ++q) encode_block(c, q, HostWarp{});
  for (EncChunk& c : recs) layout_chunk(c);
  for (EncChunk& c : recs)
    for (std::uint32_t q = 0; q < g.assemble_blocks * kWarpsPerBlock; ++q)
      for (std::uint32_t lane = 0; lane < kWarpLanes; ++lane) assemble_lane(c, q, lane);
  for (EncChunk& c : recs)
    for (std::uint32_t seg = 0; seg < g.crc_blocks * kThreads; ++seg)
      crc_segment(table, c.frame + kFrameHeaderBytes, c.payload_bytes, seg, c.seg_crc);
  for (std::size_t k = 0; k < recs.size(); ++k)
    finish_encode_block(recs[k], table, shift4k, res[k], HostBlock{kFinishThreads});
  std::vector<std::vector<std::byte>> frames(recs.size());
  for (std::size_t k = 0; k < recs.size(); ++k) {
    const auto* f = reinterpret_cast<const std::byte*>(recs[k].frame);
    frames[k].assign(f, f + res[k].frame_bytes);
  }
  return frames;
}

struct DecodeOutcome {
  bool on_gpu = false;  // false: the header or frame length was refused on the host first
  std::uint32_t err = kDecOk, plane = 0, block = 0, detail = 0;
  std::vector<std::byte> out;
};

// One host-memory decode batch, stage by stage as the engine launches it
// (cuda/gpu_engine.cu: launch_decode). Frames the engine refuses on the
// host (header, length) or gives the CPU decoder (zstd, empty, a delta
// frame without a base of its size) are not run. bases[i], when given, is
// frame i's base chunk.
class DecodeBatch {
 public:
  explicit DecodeBatch(std::span<const std::vector<std::byte>> frames,
                       std::span<const std::vector<std::byte>> bases = {})
      : frames_(frames), bases_(bases), mem_(plan()) {
    for (std::size_t k = 0; k < idx_.size(); ++k) {
      DecChunk c = make_dec_chunk(headers_[k]);
      if (!take_dec_slices(mem_.arena(), c, true)) std::abort();  // the plan is wrong: a bug
      std::memcpy(const_cast<std::uint8_t*>(c.payload), frames[idx_[k]].data() + kFrameHeaderBytes,
                  c.payload_bytes);
      if (c.base) std::memcpy(const_cast<std::uint8_t*>(c.base), bases[idx_[k]].data(), c.raw_bytes);
      recs_.push_back(c);
    }
    grids_ = dec_grids(recs_);
    crc_tables(table_, shift4k_);
  }

  std::vector<DecChunk>& chunks() { return recs_; }

  void crc_and_parse() {
    for (DecChunk& c : recs_)
      for (std::uint32_t seg = 0; seg < grids_.crc_blocks * kThreads; ++seg)
        crc_segment(table_, c.payload, c.payload_bytes, seg, c.seg_crc);
    for (DecChunk& c : recs_) parse_block(c, HostBlock{kPlanThreads});
  }
  void fused() {
    for (DecChunk& c : recs_)
      for (std::uint32_t q = 0; q < grids_.block_blocks * kWarpsPerBlock; ++q)
        decode_block_v2(c, q, HostWarp{});
    std::vector<std::uint8_t> tile(kMaxWidth * kBlockSymbols);
    for (DecChunk& c : recs_)
      for (std::uint32_t b = 0; b < grids_.fused_blocks; ++b) {
        std::memset(tile.data(), kUnwritten, tile.size());
        std::uint32_t err_seen = 0;
        decode_fused_block(c, b, tile.data(), err_seen, HostBlock{kThreads});
      }
  }
  void raw_and_finish() {
    for (DecChunk& c : recs_)
      for (std::uint32_t leaf = 0; leaf < grids_.leaf_blocks * kThreads; ++leaf) raw_copy_leaf(c, leaf);
    for (DecChunk& c : recs_) {
      std::uint32_t err_seen = 0;
      finish_decode_block(c, shift4k_, err_seen, HostBlock{kFinishThreads});
    }
  }

  std::vector<DecodeOutcome> outcomes() const {
    std::vector<DecodeOutcome> out(frames_.size());
    for (std::size_t k = 0; k < idx_.size(); ++k) {
      const DecChunk& c = recs_[k];
      const auto* bytes = reinterpret_cast<const std::byte*>(c.out);
      out[idx_[k]] = {true,        c.err,        c.err_plane,
                      c.err_block, c.err_detail, std::vector<std::byte>(bytes, bytes + c.raw_bytes)};
    }
    return out;
  }

 private:
  std::size_t plan() {
    std::size_t bytes = kBatchFixedBytes;
    for (std::size_t i = 0; i < frames_.size(); ++i) {
      auto h = parse_frame_header_only(frames_[i]);
      if (!h.is_ok() || frames_[i].size() != kFrameHeaderBytes + h->payload_bytes || h->raw_bytes == 0)
        continue;
      // What the GPU engine decodes on the device (gpu_engine.cu, decodes_on_gpu).
      if (h->codec != Codec::kRaw && dec_payload_version(h->codec) == 0) continue;
      if (is_delta_codec(h->codec) && (i >= bases_.size() || bases_[i].size() != h->raw_bytes)) continue;
      idx_.push_back(i);
      headers_.push_back(*h);
      bytes += dec_chunk_device_bytes(*h, true);
    }
    return bytes;
  }

  std::span<const std::vector<std::byte>> frames_, bases_;
  std::vector<std::size_t> idx_;
  std::vector<FrameHeader> headers_;
  HostArena mem_;
  std::vector<DecChunk> recs_;
  DecGrids grids_;
  std::uint32_t table_[256], shift4k_[32];
};

inline std::vector<DecodeOutcome> decode_batch(std::span<const std::vector<std::byte>> frames,
                                               std::span<const std::vector<std::byte>> bases = {}) {
  DecodeBatch batch(frames, bases);
  batch.crc_and_parse();
  batch.fused();
  batch.raw_and_finish();
  return batch.outcomes();
}

// A CodecEngine over the emulated kernels: the GPU engine's choices and
// frames, without a GPU (host memory only), for tests of code that takes an
// engine (the reference check of cuda/engine_choice.cc).
class EmulatedGpuEngine final : public CodecEngine {
 public:
  std::string_view kind() const override { return "gpu"; }
  std::string description() const override { return "gpu (host emulation of the kernels)"; }
  bool supports(MemorySpace space) const override { return space == MemorySpace::kHost; }

  // The GPU engine's codings (cuda/gpu_engine.cu: encode), deltas included:
  // the same plan, passes and decisions (cuda/delta_passes.h).
  Status encode(std::span<const EncodeJob> jobs, std::span<EncodedChunk> results, MemorySpace) override {
    std::vector<DeltaEncoder::Plan> plans(jobs.size(), DeltaEncoder::Plan::kAlone);
    for (std::size_t i = 0; i < jobs.size(); ++i) {
      const EncodeJob& j = jobs[i];
      if (j.base_id != nullptr && delta_base_usable(j.data.size(), j.base.size(), j.known_id, *j.base_id))
        plans[i] = planner_.plan_codings(j.data, j.base, j.dtype);
    }
    return encode_in_passes(
        jobs, plans, results,
        [&](std::span<const std::size_t> idx) { return encode_alone(jobs, idx, results); },
        [&](const DeltaPassJobs& d, std::vector<char>& won) {
          std::vector<EncodeInput> inputs;
          for (std::size_t k = 0; k < d.idx.size(); ++k) {
            const EncodeJob& j = jobs[d.idx[k]];
            inputs.push_back({j.data, d.codec[k], j.dtype, j.base, *j.base_id});
          }
          const std::vector<std::vector<std::byte>> frames = encode_batch(inputs);
          for (std::size_t k = 0; k < d.idx.size(); ++k) {
            const EncodeJob& j = jobs[d.idx[k]];
            const EncodedChunk e = result_of(frames[k]);
            if (!delta_wins(e, *j.base_id, d.beat_payload[k])) continue;
            std::memcpy(j.frame.data(), frames[k].data(), frames[k].size());
            results[d.idx[k]] = e;
            won[k] = 1;
          }
          return Status::ok();
        });
  }

  Status decode(std::span<const DecodeJob> jobs, std::span<Status> statuses, MemorySpace) override {
    std::vector<std::vector<std::byte>> frames, bases;
    for (const DecodeJob& j : jobs) {
      frames.emplace_back(j.frame.begin(), j.frame.end());
      bases.emplace_back(j.base.begin(), j.base.end());
    }
    const std::vector<DecodeOutcome> out = decode_batch(frames, bases);
    for (std::size_t i = 0; i < jobs.size(); ++i) {
      if (!out[i].on_gpu) {
        RETURN_IF_ERROR(cpu_->decode(jobs.subspan(i, 1), statuses.subspan(i, 1)));
        continue;
      }
      statuses[i] = out[i].err == kDecOk
                        ? Status::ok()
                        : Status::corruption("emulated gpu decode: error " + std::to_string(out[i].err));
      if (out[i].err == kDecOk && out[i].out.size() == jobs[i].out.size())
        std::memcpy(jobs[i].out.data(), out[i].out.data(), out[i].out.size());
    }
    return Status::ok();
  }

 private:
  // The result the GPU engine reads from the kernels' record, here from the
  // header's fields (read as written: a delta against the chunk's own id
  // is a header the parser refuses, and the engine drops it).
  static EncodedChunk result_of(std::span<const std::byte> frame) {
    EncodedChunk e;
    std::memcpy(e.id.data(), frame.data() + 16, kDigestBytes);
    e.codec = static_cast<Codec>(frame[5]);
    e.dtype = static_cast<DType>(frame[6]);
    e.raw_bytes = get_le32(reinterpret_cast<const std::uint8_t*>(frame.data()) + 8);
    e.frame_bytes = static_cast<std::uint32_t>(frame.size());
    if (is_delta_codec(e.codec)) std::memcpy(e.base_id.data(), frame.data() + 48, kDigestBytes);
    return e;
  }

  // Jobs idx coded alone: by the kernels, or the CPU engine where the GPU
  // engine hands a chunk to it.
  Status encode_alone(std::span<const EncodeJob> jobs, std::span<const std::size_t> idx,
                      std::span<EncodedChunk> results) {
    std::vector<EncodeInput> inputs;
    std::vector<std::size_t> on_gpu;
    for (std::size_t i : idx) {
      const Codec codec = gpu_chunk_codec(jobs[i].data, jobs[i].dtype, jobs[i].trial, scratch_);
      if (codec == Codec::kRaw) {
        EncodeJob alone = jobs[i];
        alone.base = {};
        alone.base_id = nullptr;
        RETURN_IF_ERROR(cpu_->encode(std::span(&alone, 1), results.subspan(i, 1)));
        continue;
      }
      inputs.push_back({jobs[i].data, codec, jobs[i].dtype});
      on_gpu.push_back(i);
    }
    const std::vector<std::vector<std::byte>> frames = encode_batch(inputs);
    for (std::size_t k = 0; k < on_gpu.size(); ++k) {
      std::memcpy(jobs[on_gpu[k]].frame.data(), frames[k].data(), frames[k].size());
      results[on_gpu[k]] = result_of(frames[k]);
    }
    return Status::ok();
  }

  std::unique_ptr<CodecEngine> cpu_ = make_cpu_engine(gpu_reference_options());
  CodecChoiceScratch scratch_;
  DeltaEncoder planner_;
};

}  // namespace ferry::gpu::emulator
