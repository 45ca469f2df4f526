// delta_passes.h: how the GPU engine gives a batch the CPU DeltaEncoder's
// codings (codec/delta_codec.h, docs/FORMAT.md 3.1) in kernel passes: the
// chunks coded alone (every job but the clear deltas), then the deltas, each
// kept only when it wins, then alone the clear deltas that lost. Plain C++:
// the engine (cuda/gpu_engine.cu) and the host emulation of its kernels
// (tests/cuda/kernel_emulator.h) run the same decisions, so host-only tests
// check them against the CPU engine byte for byte.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "base/status.h"
#include "codec/delta_codec.h"
#include "codec/engine.h"

namespace ferry::gpu {

// What the delta pass codes: job idx[k] as codec[k] (a delta codec), kept
// when its payload is strictly smaller than beat_payload[k].
struct DeltaPassJobs {
  std::vector<std::size_t> idx;
  std::vector<Codec> codec;
  std::vector<std::uint32_t> beat_payload;
};

// Codes jobs `idx` alone into results (and their frames).
using AlonePass = std::function<Status(std::span<const std::size_t> idx)>;
// Codes the delta pass's jobs; for each k, writes results[idx[k]] and the
// frame when delta_wins, and sets won[k].
using DeltaPass = std::function<Status(const DeltaPassJobs& jobs, std::vector<char>& won)>;

// Whether a delta coding (its result `delta`: codec 0 when the kernels
// stored it raw) wins: coded, not the base's own chunk, and a payload
// strictly smaller than beat_payload.
bool delta_wins(const EncodedChunk& delta, const Digest& base_id, std::uint32_t beat_payload);

// Runs the three passes for `jobs` with `plans` (kAlone for jobs without a
// usable base; the engine judges the sample with DeltaEncoder::plan_codings).
Status encode_in_passes(std::span<const EncodeJob> jobs, std::span<const DeltaEncoder::Plan> plans,
                        std::span<const EncodedChunk> results, const AlonePass& alone,
                        const DeltaPass& delta);

}  // namespace ferry::gpu
