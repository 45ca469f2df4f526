// tree_hash_pair.h: the leaf and node hashes of docs/FORMAT.md section 2,
// SHA-256(0x00 || 4096 bytes) and SHA-256(0x01 || left || right), two at a
// time on the x86 SHA extensions.
//
// Why by hand: a leaf is 65 SHA-256 blocks in one dependent chain, and on
// SHA-NI each round instruction waits for the one before it, so one stream
// leaves the unit idle between rounds. Two independent messages interleaved
// in one loop fill those gaps: `ferry-bench hash` measures about 1.8x
// OpenSSL's one-at-a-time SHA-256 per core for the same leaves. Three or more
// streams need more than the 16 registers the SHA instructions can address,
// and spill. OpenSSL has no multi-buffer SHA-256 API, and no Debian library
// offers one. Tree hashing is about a sixth of the CPU of a push (both
// ends), so the gain is the product's.
#pragma once

#include <cstddef>
#include <span>

#include "codec/tree_hash.h"

namespace ferry {

// True when this CPU has the SHA extensions (and SSSE3, SSE4.1) that the
// functions below need; checked once.
bool tree_hash_pair_available();

// out_a = hash_leaf(a), out_b = hash_leaf(b), bit for bit, for two leaves of
// exactly kLeafBytes. REQUIRES: tree_hash_pair_available().
void hash_leaf_pair(const std::byte* a, const std::byte* b, Digest& out_a, Digest& out_b);

// out0 = hash_node(left0, right0), out1 = hash_node(left1, right1). The
// outputs may alias the inputs. REQUIRES: tree_hash_pair_available().
void hash_node_pair(const Digest& left0, const Digest& right0, const Digest& left1, const Digest& right1,
                    Digest& out0, Digest& out1);

}  // namespace ferry
