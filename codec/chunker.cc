// chunker.cc: chunk planning (docs/FORMAT.md section 1). The file is first
// described as segments (header, tensors, stray bytes), then one greedy pass
// picks chunk starts: a segment that cannot join the open chunk (another
// element type, or the chunk would exceed chunk_bytes) starts a chunk at its
// first byte rounded down to a leaf; a segment longer than a chunk is cut at
// chunk_bytes steps. Only offsets and types are read, never values.
#include "codec/chunker.h"

#include <algorithm>
#include <array>

#include "codec/limits.h"

namespace ferry {
namespace {

// The header region packs only with itself: it is bytes, but a non-float
// tensor right after it should start its own chunk as any tensor does.
constexpr int kHeaderClass = -1;

struct Segment {
  std::uint64_t begin;
  std::uint64_t end;
  int packing_class;  // kHeaderClass or the DType value: segments pack only with their class
  DType tag;
};

std::uint64_t leaf_floor(std::uint64_t x) { return x - x % kLeafBytes; }

// Describes [0, file_size) as ordered, contiguous, non-empty segments. A
// layout that disagrees with file_size is clipped, and any byte no tensor
// claims becomes a kBytes segment, so the plan stays valid regardless.
std::vector<Segment> segments_of(std::uint64_t file_size, const SafetensorsLayout& layout) {
  std::vector<Segment> segs;
  std::uint64_t pos = std::min(layout.data_offset, file_size);
  if (pos > 0) segs.push_back({0, pos, kHeaderClass, DType::kBytes});
  const int bytes_class = static_cast<int>(DType::kBytes);
  for (const TensorInfo& t : layout.tensors) {
    std::uint64_t b = std::max(t.begin, pos);
    std::uint64_t e = std::min(t.end, file_size);
    if (e <= b) continue;  // empty, out of order or beyond the file
    if (b > pos) segs.push_back({pos, b, bytes_class, DType::kBytes});
    DType d = t.chunk_dtype();
    segs.push_back({b, e, static_cast<int>(d), d});
    pos = e;
  }
  if (pos < file_size) segs.push_back({pos, file_size, bytes_class, DType::kBytes});
  return segs;
}

// Chunk starts, in increasing order, for the segments (see the file comment).
std::vector<std::uint64_t> chunk_starts(const std::vector<Segment>& segs, std::uint64_t chunk_bytes) {
  std::vector<std::uint64_t> starts;
  bool open = false;
  std::uint64_t cs = 0;  // start of the open chunk
  int run_class = 0;
  for (const Segment& s : segs) {
    if (open && s.packing_class == run_class && s.end - cs <= chunk_bytes) continue;
    // Everything before s in the open chunk lies in [cs, s.begin) and spans
    // at most chunk_bytes, so closing it at a leaf boundary <= s.begin keeps
    // it within the limit. When s starts in the open chunk's first leaf, no
    // boundary is possible: s shares that chunk.
    std::uint64_t a = leaf_floor(s.begin);
    if (!open || a > cs) {
      starts.push_back(a);
      cs = a;
      open = true;
    }
    while (s.end - cs > chunk_bytes) {
      cs += chunk_bytes;
      starts.push_back(cs);
    }
    run_class = s.packing_class;
  }
  return starts;
}

// The dtype holding most of [begin, end); ties go to the one met first.
DType majority_tag(const std::vector<Segment>& segs, std::size_t& seg_index, std::uint64_t begin,
                   std::uint64_t end) {
  std::array<std::uint64_t, kDTypeCount> bytes{};
  std::array<int, kDTypeCount> order{};
  int seen = 0;
  std::size_t i = seg_index;
  while (i < segs.size() && segs[i].begin < end) {
    std::uint64_t b = std::max(segs[i].begin, begin);
    std::uint64_t e = std::min(segs[i].end, end);
    auto k = static_cast<std::size_t>(segs[i].tag);
    if (e > b) {
      if (bytes[k] == 0) order[seen++] = static_cast<int>(k);
      bytes[k] += e - b;
    }
    if (segs[i].end > end) break;  // continues into the next chunk
    ++i;
  }
  seg_index = i;
  DType best = DType::kBytes;
  std::uint64_t best_bytes = 0;
  for (int j = 0; j < seen; ++j) {
    if (bytes[order[j]] > best_bytes) {
      best_bytes = bytes[order[j]];
      best = static_cast<DType>(order[j]);
    }
  }
  return best;
}

}  // namespace

Status check_chunk_bytes(std::size_t chunk_bytes) {
  bool power_of_two = chunk_bytes != 0 && (chunk_bytes & (chunk_bytes - 1)) == 0;
  if (!power_of_two || chunk_bytes < kMinChunkBytes || chunk_bytes > kMaxChunkBytes) {
    return Status::invalid_argument("chunk size " + std::to_string(chunk_bytes) +
                                    " bytes is not a power of two between " + std::to_string(kMinChunkBytes) +
                                    " (4 KiB) and " + std::to_string(kMaxChunkBytes) + " (64 MiB)");
  }
  return Status::ok();
}

std::vector<ChunkPlan> plan_chunks(std::uint64_t file_size, const SafetensorsLayout* layout,
                                   std::size_t chunk_bytes) {
  FERRY_CHECK(check_chunk_bytes(chunk_bytes).is_ok());
  std::vector<ChunkPlan> plan;
  if (file_size == 0) return plan;
  if (layout == nullptr) {
    plan.reserve(file_size / chunk_bytes + 1);
    for (std::uint64_t off = 0; off < file_size; off += chunk_bytes) {
      auto len = static_cast<std::uint32_t>(std::min<std::uint64_t>(chunk_bytes, file_size - off));
      plan.push_back({off, len, DType::kBytes, /*trial=*/true});
    }
    return plan;
  }
  std::vector<Segment> segs = segments_of(file_size, *layout);
  std::vector<std::uint64_t> starts = chunk_starts(segs, chunk_bytes);
  FERRY_CHECK(!starts.empty() && starts.front() == 0);
  plan.reserve(starts.size());
  std::size_t seg_index = 0;
  for (std::size_t i = 0; i < starts.size(); ++i) {
    std::uint64_t end = i + 1 < starts.size() ? starts[i + 1] : file_size;
    FERRY_CHECK(end > starts[i] && end - starts[i] <= chunk_bytes);
    DType tag = majority_tag(segs, seg_index, starts[i], end);
    plan.push_back({starts[i], static_cast<std::uint32_t>(end - starts[i]), tag, /*trial=*/false});
  }
  return plan;
}

ChunkRange chunks_covering(std::span<const ChunkPlan> plan, std::uint64_t begin, std::uint64_t end) {
  // First chunk ending after `begin`, first chunk starting at or after `end`.
  auto first =
      std::partition_point(plan.begin(), plan.end(), [&](const ChunkPlan& c) { return c.end() <= begin; });
  if (end <= begin) {
    auto i = static_cast<std::size_t>(first - plan.begin());
    return {i, i};
  }
  auto last = std::partition_point(first, plan.end(), [&](const ChunkPlan& c) { return c.offset < end; });
  return {static_cast<std::size_t>(first - plan.begin()), static_cast<std::size_t>(last - plan.begin())};
}

std::uint64_t overlap_bytes(const ChunkPlan& chunk, std::uint64_t begin, std::uint64_t end) {
  std::uint64_t b = std::max(chunk.offset, begin);
  std::uint64_t e = std::min(chunk.end(), end);
  return e > b ? e - b : 0;
}

std::vector<TensorChunks> map_tensors_to_chunks(const SafetensorsLayout& layout,
                                                std::span<const ChunkPlan> plan) {
  std::vector<TensorChunks> out;
  out.reserve(layout.tensors.size());
  for (const TensorInfo& t : layout.tensors) {
    TensorChunks tc;
    tc.chunks = chunks_covering(plan, t.begin, t.end);
    for (std::size_t i = tc.chunks.first; i < tc.chunks.last; ++i) {
      tc.shared_bytes += plan[i].length - overlap_bytes(plan[i], t.begin, t.end);
    }
    out.push_back(tc);
  }
  return out;
}

}  // namespace ferry
