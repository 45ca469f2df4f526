// delta_passes.cc: see delta_passes.h.
#include "cuda/delta_passes.h"

#include "codec/frame.h"

namespace ferry::gpu {

bool delta_wins(const EncodedChunk& delta, const Digest& base_id, std::uint32_t beat_payload) {
  return delta.codec != Codec::kRaw && delta.id != base_id &&
         delta.frame_bytes - kFrameHeaderBytes < beat_payload;
}

Status encode_in_passes(std::span<const EncodeJob> jobs, std::span<const DeltaEncoder::Plan> plans,
                        std::span<const EncodedChunk> results, const AlonePass& alone,
                        const DeltaPass& delta) {
  using Plan = DeltaEncoder::Plan;
  std::vector<std::size_t> first;
  for (std::size_t i = 0; i < jobs.size(); ++i)
    if (plans[i] != Plan::kDelta) first.push_back(i);
  RETURN_IF_ERROR(alone(first));
  DeltaPassJobs d;
  for (std::size_t i = 0; i < jobs.size(); ++i) {
    if (plans[i] == Plan::kAlone) continue;
    const EncodeJob& j = jobs[i];
    const bool both = plans[i] == Plan::kBoth;
    // A chunk of bytes takes the width of the codec it got alone (coded
    // both ways: the first pass has coded it).
    const int w = is_float(j.dtype) ? static_cast<int>(element_bytes(j.dtype))
                                    : delta_element_width(j.dtype, results[i].codec);
    d.idx.push_back(i);
    d.codec.push_back(delta_codec(w));
    d.beat_payload.push_back(both ? results[i].frame_bytes - static_cast<std::uint32_t>(kFrameHeaderBytes)
                                  : static_cast<std::uint32_t>(j.data.size()));
  }
  if (d.idx.empty()) return Status::ok();
  std::vector<char> won(d.idx.size(), 0);
  RETURN_IF_ERROR(delta(d, won));
  // A chunk coded both ways keeps its standalone frame when its delta lost;
  // a clear delta that lost is coded alone now.
  std::vector<std::size_t> lost;
  for (std::size_t k = 0; k < d.idx.size(); ++k)
    if (!won[k] && plans[d.idx[k]] == Plan::kDelta) lost.push_back(d.idx[k]);
  return lost.empty() ? Status::ok() : alone(lost);
}

}  // namespace ferry::gpu
