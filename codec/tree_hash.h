// tree_hash.h: chunk ids and file roots (docs/FORMAT.md section 2). A chunk
// id is the root of an RFC 6962-style SHA-256 Merkle tree over the chunk's
// 4 KiB leaves: leaf = SHA-256(0x00 || bytes), node = SHA-256(0x01 || l || r),
// built level by level with an unpaired last hash promoted unchanged. A file
// root is the same tree over all of a file's leaf hashes, so it composes from
// chunk roots when chunks are cut at power-of-two multiples of the leaf size.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace ferry {

class ThreadPool;

using Digest = std::array<std::uint8_t, 32>;
inline constexpr std::size_t kDigestBytes = 32;

// Lower-case hex, 64 characters.
std::string to_hex(const Digest& d);
// Parses 64 hex digits (either case); nullopt on anything else.
std::optional<Digest> digest_from_hex(std::string_view hex);

// Number of 4 KiB leaves covering `bytes` (the last may be shorter); 0 for 0.
std::size_t leaf_count(std::uint64_t bytes);

// SHA-256(0x00 || leaf).  REQUIRES: leaf.size() <= kLeafBytes.
Digest hash_leaf(std::span<const std::byte> leaf);
// SHA-256(0x01 || left || right).
Digest hash_node(const Digest& left, const Digest& right);

// Hashes every 4 KiB leaf of `data` into `out`.  REQUIRES: out.size() ==
// leaf_count(data.size()). With a pool, leaves are spread over its threads
// (for inputs large enough to be worth it); the result is identical.
void hash_leaves(std::span<const std::byte> data, std::span<Digest> out, ThreadPool* pool = nullptr);

// Root over leaf (or subtree) hashes, level by level with promotion (RFC 6962
// MTH). An empty list gives SHA-256 of the empty string.
Digest merkle_root(std::span<const Digest> leaf_hashes);

// The chunk id: merkle_root(hash_leaves(chunk)). Allocation-free for chunks
// up to the maximum chunk size when no pool is given.
Digest chunk_id(std::span<const std::byte> chunk, ThreadPool* pool = nullptr);

// SHA-256 of arbitrary bytes (no domain prefix); exposed for benchmarks and
// the empty-tree root.
Digest sha256(std::span<const std::byte> data);

}  // namespace ferry
