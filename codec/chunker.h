// chunker.h: cuts a file into chunks (docs/FORMAT.md section 1). Where the
// safetensors layout is known, boundaries follow tensors so an unchanged
// tensor yields the same chunks in the next checkpoint; otherwise the file is
// cut at fixed chunk-size multiples. A plan depends only on the file size and
// the header (names, sizes, dtypes, order), never on tensor values.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "base/status.h"
#include "codec/dtype.h"
#include "codec/safetensors.h"

namespace ferry {

struct ChunkPlan {
  std::uint64_t offset = 0;     // a multiple of kLeafBytes
  std::uint32_t length = 0;     // 1 .. chunk_bytes; only the file's last chunk may end off a leaf boundary
  DType dtype = DType::kBytes;  // the element type holding most of the chunk's bytes
  bool trial = false;           // layout unknown: the codec is chosen by trial, not by dtype

  std::uint64_t end() const { return offset + length; }
  friend bool operator==(const ChunkPlan&, const ChunkPlan&) = default;
};

// OK when chunk_bytes is a power of two times kLeafBytes within
// [kMinChunkBytes, kMaxChunkBytes]; otherwise InvalidArgument naming the value.
Status check_chunk_bytes(std::size_t chunk_bytes);

// The chunks of a file of `file_size` bytes, in order, covering it exactly
// (an empty file has none). `layout` may be null (unknown layout). A layout
// that disagrees with file_size (the file changed after its header was read)
// still yields a valid plan: bytes outside every tensor are tagged kBytes.
// REQUIRES: check_chunk_bytes(chunk_bytes).is_ok().
std::vector<ChunkPlan> plan_chunks(std::uint64_t file_size, const SafetensorsLayout* layout,
                                   std::size_t chunk_bytes);

// The chunks covering a byte range [begin, end): indexes [first, last) into
// the plan, so `last - first` chunks; first == last for an empty range.
struct ChunkRange {
  std::size_t first = 0;
  std::size_t last = 0;
};
ChunkRange chunks_covering(std::span<const ChunkPlan> plan, std::uint64_t begin, std::uint64_t end);

// Bytes of [begin, end) that lie inside `chunk`.
std::uint64_t overlap_bytes(const ChunkPlan& chunk, std::uint64_t begin, std::uint64_t end);

// For `ferry inspect`: per tensor (in layout order), the chunks that hold its
// bytes and how many of those chunks' bytes belong to other tensors or the
// header (`shared_bytes`): a tensor whose chunks are all its own re-sends
// nothing else when it alone changes.
struct TensorChunks {
  ChunkRange chunks;
  std::uint64_t shared_bytes = 0;
};
std::vector<TensorChunks> map_tensors_to_chunks(const SafetensorsLayout& layout,
                                                std::span<const ChunkPlan> plan);

}  // namespace ferry
