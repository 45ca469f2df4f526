// fuzz_safetensors.cc: libFuzzer target for the safetensors header reader
// and the chunk planner. The input is the start of a file; it is parsed as a
// whole file, and again as the prefix of a longer one (the data section need
// not be present: only the header is read). Whenever a header parses, the
// layout's promises and the chunk plan's invariants are checked; a broken
// one aborts, which the fuzzer reports.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "codec/chunker.h"
#include "codec/limits.h"
#include "codec/safetensors.h"

namespace {

void require(bool ok) {
  if (!ok) std::abort();
}

void check_layout(const ferry::SafetensorsLayout& l, std::uint64_t file_size) {
  require(l.data_offset == ferry::kSafetensorsPrefixBytes + l.header_bytes);
  require(l.file_bytes == file_size && l.data_offset <= file_size);
  std::uint64_t pos = l.data_offset;
  for (const ferry::TensorInfo& t : l.tensors) {
    require(t.begin == pos && t.end >= t.begin);
    require(t.shape.size() <= ferry::kMaxTensorRank);
    pos = t.end;
  }
  require(pos == file_size);
}

void check_plan(const ferry::SafetensorsLayout& l, std::size_t chunk_bytes) {
  auto plan = ferry::plan_chunks(l.file_bytes, &l, chunk_bytes);
  std::uint64_t pos = 0;
  for (const ferry::ChunkPlan& c : plan) {
    require(c.offset == pos && c.offset % ferry::kLeafBytes == 0);
    require(c.length > 0 && c.length <= chunk_bytes && !c.trial);
    pos = c.end();
  }
  require(pos == l.file_bytes);
  auto map = ferry::map_tensors_to_chunks(l, plan);
  require(map.size() == l.tensors.size());
  for (std::size_t i = 0; i < map.size(); ++i) {
    std::uint64_t own = 0;
    for (std::size_t k = map[i].chunks.first; k < map[i].chunks.last; ++k) {
      own += ferry::overlap_bytes(plan[k], l.tensors[i].begin, l.tensors[i].end);
    }
    require(own == l.tensors[i].bytes());
  }
}

void run(std::span<const std::byte> prefix, std::uint64_t file_size, std::size_t chunk_bytes) {
  auto r = ferry::parse_safetensors(prefix, file_size);
  if (!r.is_ok()) {
    require(!r.status().message().empty());
    return;
  }
  check_layout(*r, file_size);
  // Plans over huge claimed sizes are long lists; cap the work per input.
  if (file_size / chunk_bytes < (1u << 16)) check_plan(*r, chunk_bytes);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::span<const std::byte> in(reinterpret_cast<const std::byte*>(data), size);
  // The last byte picks a chunk size (4 KiB .. 64 MiB) and how much longer
  // than the input the file claims to be.
  std::uint8_t knob = size ? data[size - 1] : 0;
  std::size_t chunk_bytes = ferry::kMinChunkBytes << (knob % 15);
  run(in, size, chunk_bytes);
  std::uint64_t extra = static_cast<std::uint64_t>(knob) * 977 * 4096 + knob;
  run(in, size + extra, chunk_bytes);
  return 0;
}
