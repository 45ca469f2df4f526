// store_index.h: the index file of one namespace of the local store
// (docs/FORMAT.md section 7.2): where each chunk id's record lies, and how many
// bytes of each pack the index covers. The index is advisory: the packs are
// the truth, and a missing, damaged or stale index is rebuilt from them, so
// it only saves rescanning packs when the store opens.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "base/status.h"
#include "codec/tree_hash.h"

namespace ferry {

inline constexpr std::uint8_t kIndexMagic[4] = {0x46, 0x52, 0x59, 0x58};  // "FRYX"
inline constexpr std::uint8_t kIndexVersion = 1;
inline constexpr std::size_t kIndexHeaderBytes = 24;
inline constexpr std::size_t kIndexPackBytes = 12;
inline constexpr std::size_t kIndexEntryBytes = 48;

struct IndexPack {
  std::uint32_t number = 0;
  std::uint64_t covered_bytes = 0;  // the pack's prefix whose records the index lists
};

struct IndexEntry {
  Digest id{};
  std::uint32_t pack = 0;
  std::uint64_t offset = 0;  // of the record
  std::uint32_t frame_bytes = 0;
};

struct StoreIndex {
  std::vector<IndexPack> packs;     // strictly ascending by number
  std::vector<IndexEntry> entries;  // any order; ids unique
};

std::vector<std::byte> serialize_index(const StoreIndex& index);
// Corruption on any defect (length, magic, CRC, unknown pack, an entry
// outside its pack's covered bytes, a repeated id).
Result<StoreIndex> parse_index(std::span<const std::byte> bytes);

}  // namespace ferry
