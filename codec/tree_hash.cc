// tree_hash.cc: SHA-256 Merkle tree over 4 KiB leaves (docs/FORMAT.md
// section 2) on OpenSSL's SHA-256. It uses the low-level SHA256_* calls, which
// OpenSSL 3 marks deprecated but keeps: per 4 KiB leaf they measured 12-15%
// faster than EVP_DigestInit_ex2/Update/Final with a reused EVP_MD_CTX and a
// pre-fetched EVP_MD (the provider dispatch and context reset cost about as
// much as a quarter of a leaf's compression calls), which `ferry-bench hash`
// shows against the `openssl speed -evp sha256` baseline. Both use SHA-NI.
// Where the CPU has it, full leaves and nodes go two at a time through
// tree_hash_pair.h instead (the same bytes, about 1.8x faster).
// A checksum-of-content id needs no FIPS provider routing.
#define OPENSSL_SUPPRESS_DEPRECATED 1
#include "codec/tree_hash.h"

#include <openssl/sha.h>

#include <algorithm>
#include <vector>

#include "base/status.h"
#include "base/thread_pool.h"
#include "codec/limits.h"
#include "codec/tree_hash_pair.h"

namespace ferry {
namespace {

constexpr std::uint8_t kLeafPrefix = 0x00;
constexpr std::uint8_t kNodePrefix = 0x01;
// Below this many leaves a pool is not worth its hand-off cost.
constexpr std::size_t kMinParallelLeaves = 64;  // 256 KiB
// Leaves per pool task: big enough to amortise the task, small enough to balance.
constexpr std::size_t kLeavesPerTask = 32;  // 128 KiB

// Hashing state for one digest at a time; plain data, so no resource to free.
class Hasher {
 public:
  void begin() { FERRY_CHECK(SHA256_Init(&ctx_) == 1); }
  void update(const void* p, std::size_t n) { FERRY_CHECK(SHA256_Update(&ctx_, p, n) == 1); }
  Digest finish() {
    Digest d;
    FERRY_CHECK(SHA256_Final(d.data(), &ctx_) == 1);
    return d;
  }

 private:
  SHA256_CTX ctx_;
};

Hasher& thread_hasher() {
  thread_local Hasher h;
  return h;
}

void hash_leaf_range(std::span<const std::byte> data, std::span<Digest> out, std::size_t first,
                     std::size_t count) {
  std::size_t i = first;
  if (tree_hash_pair_available()) {
    // Full leaves two at a time (tree_hash_pair.h); a last odd or short one below.
    const std::size_t full = std::min(first + count, data.size() / kLeafBytes);
    for (; i + 1 < full; i += 2) {
      const std::byte* p = data.data() + i * kLeafBytes;
      hash_leaf_pair(p, p + kLeafBytes, out[i], out[i + 1]);
    }
  }
  for (; i < first + count; ++i) {
    std::size_t off = i * kLeafBytes;
    std::size_t len = std::min(kLeafBytes, data.size() - off);
    out[i] = hash_leaf(data.subspan(off, len));
  }
}

// Reduces `level` in place, level by level, and returns the root.
// REQUIRES: level non-empty.
Digest reduce_in_place(std::span<Digest> level) {
  std::size_t n = level.size();
  while (n > 1) {
    std::size_t half = n / 2;
    std::size_t i = 0;
    if (tree_hash_pair_available()) {
      // Nodes i and i + 1 read 2i..2i+3 before writing i, i + 1 (<= 2i + 1).
      for (; i + 1 < half; i += 2)
        hash_node_pair(level[2 * i], level[2 * i + 1], level[2 * i + 2], level[2 * i + 3], level[i],
                       level[i + 1]);
    }
    for (; i < half; ++i) level[i] = hash_node(level[2 * i], level[2 * i + 1]);
    if (n % 2 == 1) {
      level[half] = level[n - 1];  // unpaired: promoted unchanged
      n = half + 1;
    } else {
      n = half;
    }
  }
  return level[0];
}

constexpr char kHexDigits[] = "0123456789abcdef";

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::string to_hex(const Digest& d) {
  std::string s(2 * d.size(), '0');
  for (std::size_t i = 0; i < d.size(); ++i) {
    s[2 * i] = kHexDigits[d[i] >> 4];
    s[2 * i + 1] = kHexDigits[d[i] & 0xf];
  }
  return s;
}

std::optional<Digest> digest_from_hex(std::string_view hex) {
  if (hex.size() != 2 * kDigestBytes) return std::nullopt;
  Digest d;
  for (std::size_t i = 0; i < d.size(); ++i) {
    int hi = hex_value(hex[2 * i]);
    int lo = hex_value(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    d[i] = static_cast<std::uint8_t>(hi << 4 | lo);
  }
  return d;
}

std::size_t leaf_count(std::uint64_t bytes) {
  return static_cast<std::size_t>((bytes + kLeafBytes - 1) / kLeafBytes);
}

Digest sha256(std::span<const std::byte> data) {
  Hasher& h = thread_hasher();
  h.begin();
  h.update(data.data(), data.size());
  return h.finish();
}

Digest hash_leaf(std::span<const std::byte> leaf) {
  FERRY_CHECK(leaf.size() <= kLeafBytes);
  Hasher& h = thread_hasher();
  h.begin();
  h.update(&kLeafPrefix, 1);
  h.update(leaf.data(), leaf.size());
  return h.finish();
}

Digest hash_node(const Digest& left, const Digest& right) {
  std::uint8_t buf[1 + 2 * kDigestBytes];
  buf[0] = kNodePrefix;
  std::copy(left.begin(), left.end(), buf + 1);
  std::copy(right.begin(), right.end(), buf + 1 + kDigestBytes);
  Hasher& h = thread_hasher();
  h.begin();
  h.update(buf, sizeof buf);
  return h.finish();
}

void hash_leaves(std::span<const std::byte> data, std::span<Digest> out, ThreadPool* pool) {
  const std::size_t n = leaf_count(data.size());
  FERRY_CHECK(out.size() == n);
  if (pool == nullptr || pool->size() == 0 || n < kMinParallelLeaves) {
    hash_leaf_range(data, out, 0, n);
    return;
  }
  const std::size_t tasks = (n + kLeavesPerTask - 1) / kLeavesPerTask;
  pool->parallel_for(tasks, [&](std::size_t t) {
    std::size_t first = t * kLeavesPerTask;
    hash_leaf_range(data, out, first, std::min(kLeavesPerTask, n - first));
  });
}

Digest merkle_root(std::span<const Digest> leaf_hashes) {
  if (leaf_hashes.empty()) return sha256({});
  if (leaf_hashes.size() == 1) return leaf_hashes[0];
  thread_local std::vector<Digest> scratch;
  scratch.assign(leaf_hashes.begin(), leaf_hashes.end());
  return reduce_in_place(scratch);
}

Digest chunk_id(std::span<const std::byte> chunk, ThreadPool* pool) {
  if (chunk.empty()) return sha256({});
  thread_local std::vector<Digest> leaves;
  leaves.resize(leaf_count(chunk.size()));
  hash_leaves(chunk, leaves, pool);
  return reduce_in_place(leaves);
}

}  // namespace ferry
