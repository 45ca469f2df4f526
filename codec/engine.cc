// engine.cc: the CPU codec engine (a batch over ChunkEncoder/DeltaDecoder,
// one per worker thread) and the codec choice shared with the GPU engine.
#include "codec/engine.h"

#include <algorithm>
#include <string>
#include <vector>

#include "base/free_list.h"
#include "base/thread_pool.h"
#include "codec/delta_codec.h"

namespace ferry {
namespace {

class CpuEngine final : public CodecEngine {
 public:
  explicit CpuEngine(const CpuEngineOptions& opts)
      : pool_(opts.pool != nullptr ? *opts.pool : ThreadPool::shared()), zstd_level_(opts.zstd_level),
        float_version_(opts.float_version) {}

  std::string_view kind() const override { return "cpu"; }
  std::string description() const override {
    return "cpu (" + std::to_string(pool_.size() + 1) + " threads)";
  }
  bool supports(MemorySpace space) const override { return space == MemorySpace::kHost; }

  Status encode(std::span<const EncodeJob> jobs, std::span<EncodedChunk> results,
                MemorySpace space) override {
    if (space != MemorySpace::kHost)
      return Status::invalid_argument("cpu codec engine: device memory is not supported");
    if (results.size() != jobs.size())
      return Status::invalid_argument("cpu codec engine: " + std::to_string(jobs.size()) + " jobs but " +
                                      std::to_string(results.size()) + " results");
    for (std::size_t i = 0; i < jobs.size(); ++i) {
      if (jobs[i].data.size() > kMaxChunkBytes)
        return Status::invalid_argument("encode job " + std::to_string(i) + ": chunk of " +
                                        std::to_string(jobs[i].data.size()) +
                                        " bytes exceeds the 64 MiB limit");
      if (jobs[i].frame.size() < max_frame_bytes(jobs[i].data.size()))
        return Status::invalid_argument("encode job " + std::to_string(i) + ": frame buffer of " +
                                        std::to_string(jobs[i].frame.size()) + " bytes, needs " +
                                        std::to_string(max_frame_bytes(jobs[i].data.size())));
    }
    pool_.parallel_for(jobs.size(), [&](std::size_t i) {
      FreeList<Encoder>::Loan coder(encoders_);
      EncodeOptions o;
      o.zstd_level = zstd_level_;
      o.float_version = float_version_;
      o.trial = jobs[i].trial;
      const EncodeJob& j = jobs[i];
      // Straight into the caller's frame buffer (its size was checked above).
      const Digest id = j.known_id != nullptr ? *j.known_id : chunk_id(j.data);
      if (j.base_id != nullptr && !j.base.empty()) {
        if (!coder->delta) coder->delta = std::make_unique<DeltaEncoder>();
        results[i] = coder->delta->encode_into(j.data, j.dtype, id, j.base, *j.base_id, j.frame, o);
      } else {
        results[i] = coder->encoder.encode_into(j.data, j.dtype, id, j.frame, o);
      }
    });
    return Status::ok();
  }

  Status decode(std::span<const DecodeJob> jobs, std::span<Status> statuses, MemorySpace space) override {
    if (space != MemorySpace::kHost)
      return Status::invalid_argument("cpu codec engine: device memory is not supported");
    if (statuses.size() != jobs.size())
      return Status::invalid_argument("cpu codec engine: " + std::to_string(jobs.size()) + " jobs but " +
                                      std::to_string(statuses.size()) + " statuses");
    pool_.parallel_for(jobs.size(), [&](std::size_t i) {
      FreeList<DeltaDecoder>::Loan coder(decoders_);
      const DecodeJob& j = jobs[i];
      statuses[i] = coder->decode(j.frame, j.base, j.out, j.expected_id ? &*j.expected_id : nullptr);
    });
    return Status::ok();
  }

 private:
  struct Encoder {
    ChunkEncoder encoder;
    std::unique_ptr<DeltaEncoder> delta;  // made at the first job with a base
  };

  ThreadPool& pool_;
  int zstd_level_;
  int float_version_;
  // Coders are not thread-safe: each job borrows one from the process's
  // free list (base/free_list.h), not the engine's: a push makes its own
  // engine, and a warm coder's buffers, plane scratch and zstd contexts
  // (10-20 MB each) would otherwise be faulted in again by every push
  // (about 4,000 page faults a push on the full corpus).
  FreeList<Encoder>& encoders_ = FreeList<Encoder>::shared();
  FreeList<DeltaDecoder>& decoders_ =
      FreeList<DeltaDecoder>::shared();  // every frame; deltas with their base
};

}  // namespace

std::unique_ptr<CodecEngine> make_cpu_engine(const CpuEngineOptions& opts) {
  return std::make_unique<CpuEngine>(opts);
}

}  // namespace ferry
