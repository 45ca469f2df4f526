// safetensors.h: reads and validates the header of a safetensors file (an
// 8-byte little-endian length N, N bytes of JSON, then the tensor data). The
// layout it yields is what the chunker cuts on (docs/FORMAT.md section 1) and
// what `ferry inspect` shows. Only the header is read; tensor values never
// influence the layout. Every input is treated as hostile: lengths, offsets
// and shapes are checked against the file size and codec/limits.h.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "codec/dtype.h"

namespace ferry {

// The length prefix that starts every safetensors file.
inline constexpr std::size_t kSafetensorsPrefixBytes = 8;

struct TensorInfo {
  std::string name;
  std::string dtype_name;            // as written in the file: "BF16", "F32", "I64", ...
  std::optional<DType> dtype;        // ferry's float tag; nullopt for non-float types (I64, F64, BOOL, ...)
  std::size_t element_bytes = 0;     // bytes per element of dtype_name (8 for I64, 2 for BF16, ...)
  std::vector<std::uint64_t> shape;  // empty for a scalar
  std::uint64_t begin = 0;           // absolute file offsets: data_offset + data_offsets[0]
  std::uint64_t end = 0;             // data_offset + data_offsets[1]

  std::uint64_t bytes() const { return end - begin; }
  // The chunk tag for this tensor's bytes: its float type, or kBytes.
  DType chunk_dtype() const { return dtype.value_or(DType::kBytes); }
};

struct SafetensorsLayout {
  std::uint64_t header_bytes = 0;               // N: the JSON header's length, padding included
  std::uint64_t data_offset = 0;                // 8 + N: where the data section starts
  std::uint64_t file_bytes = 0;                 // the file size the layout was validated against
  std::vector<TensorInfo> tensors;              // sorted by begin (then end, then name)
  std::map<std::string, std::string> metadata;  // "__metadata__", when present
};

// Properties of a safetensors dtype name; nullopt for names ferry does not
// support (sub-byte types such as F4 or F6_E2M3, F8_E8M0, C64, or unknown).
struct SafetensorsDType {
  std::size_t element_bytes;
  std::optional<DType> dtype;
};
std::optional<SafetensorsDType> safetensors_dtype(std::string_view name);

// Decodes the 8-byte length prefix and checks it against the file size and
// kMaxSafetensorsHeaderBytes. Returns N (so the caller reads 8 + N bytes).
Result<std::uint64_t> safetensors_header_length(std::span<const std::byte> first8, std::uint64_t file_size);

// Parses and validates a safetensors header. `prefix` holds at least the
// first 8 + N bytes of a file of `file_size` bytes (more is ignored).
// Corruption for a malformed header, Unsupported for a dtype ferry lacks;
// messages name the tensor and what is wrong.
Result<SafetensorsLayout> parse_safetensors(std::span<const std::byte> prefix, std::uint64_t file_size);

// Opens `path` and reads just its header; errors carry the path.
Result<SafetensorsLayout> read_safetensors_layout(const std::filesystem::path& path);

// By extension (".safetensors"); says nothing about the contents.
bool looks_like_safetensors(const std::filesystem::path& path);

}  // namespace ferry
