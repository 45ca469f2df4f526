// tree_hash_test.cc: chunk ids and file roots (docs/FORMAT.md section 2):
// the level-by-level tree equals RFC 6962's recursive MTH for every shape,
// the empty and one-leaf cases, file roots composing from power-of-two chunk
// roots, parallel hashing equal to serial, and the two-leaf SHA-NI path
// equal to OpenSSL's one-shot SHA-256 for every kind of leaf.
#include "codec/tree_hash.h"

#include <gtest/gtest.h>

#include <openssl/sha.h>

#include <bit>
#include <cstring>
#include <vector>

#include "base/thread_pool.h"
#include "codec/limits.h"
#include "codec/tree_hash_pair.h"
#include "tests/testing/testing.h"

namespace ferry {
namespace {

Digest openssl_sha256(const std::vector<std::uint8_t>& msg) {
  Digest d;
  SHA256(msg.data(), msg.size(), d.data());  // one-shot: independent of ferry's EVP path
  return d;
}

Digest ref_leaf(std::span<const std::byte> leaf) {
  std::vector<std::uint8_t> msg{0x00};
  for (std::byte b : leaf) msg.push_back(static_cast<std::uint8_t>(b));
  return openssl_sha256(msg);
}

Digest ref_node(const Digest& l, const Digest& r) {
  std::vector<std::uint8_t> msg{0x01};
  msg.insert(msg.end(), l.begin(), l.end());
  msg.insert(msg.end(), r.begin(), r.end());
  return openssl_sha256(msg);
}

// RFC 6962 section 2.1 MTH: split at the largest power of two below n.
Digest ref_mth(std::span<const Digest> d) {
  if (d.size() == 1) return d[0];
  std::size_t k = std::bit_floor(d.size() - 1);
  return ref_node(ref_mth(d.first(k)), ref_mth(d.subspan(k)));
}

std::vector<Digest> ref_leaves(std::span<const std::byte> data) {
  std::vector<Digest> out;
  for (std::size_t off = 0; off < data.size(); off += kLeafBytes) {
    out.push_back(ref_leaf(data.subspan(off, std::min(kLeafBytes, data.size() - off))));
  }
  return out;
}

TEST(TreeHash, HexRoundTrip) {
  Digest d;
  for (std::size_t i = 0; i < d.size(); ++i) d[i] = static_cast<std::uint8_t>(i * 37 + 1);
  std::string hex = to_hex(d);
  EXPECT_EQ(hex.size(), 64u);
  EXPECT_EQ(digest_from_hex(hex), d);
  std::string upper = hex;
  for (char& c : upper) c = static_cast<char>(std::toupper(c));
  EXPECT_EQ(digest_from_hex(upper), d);
  EXPECT_FALSE(digest_from_hex(hex.substr(1)));
  EXPECT_FALSE(digest_from_hex(hex + "0"));
  EXPECT_FALSE(digest_from_hex(std::string(63, '0') + "g"));
}

TEST(TreeHash, LeafCount) {
  EXPECT_EQ(leaf_count(0), 0u);
  EXPECT_EQ(leaf_count(1), 1u);
  EXPECT_EQ(leaf_count(4096), 1u);
  EXPECT_EQ(leaf_count(4097), 2u);
  EXPECT_EQ(leaf_count(std::uint64_t{64} << 20), 16384u);
}

TEST(TreeHash, EmptyChunkIsSha256OfNothing) {
  EXPECT_EQ(to_hex(chunk_id({})), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(merkle_root({}), chunk_id({}));
}

TEST(TreeHash, OneLeafIsTheLeafHash) {
  auto data = testing::random_bytes(100, testing::test_seed());
  EXPECT_EQ(chunk_id(data), ref_leaf(data));
  EXPECT_EQ(hash_leaf(data), ref_leaf(data));
  // Domain separation: a leaf hash is not the plain SHA-256.
  EXPECT_NE(chunk_id(data), sha256(data));
}

TEST(TreeHash, MatchesRfc6962ForEveryShape) {
  auto seed = testing::test_seed();
  for (std::size_t leaves : {1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 16, 17, 100}) {
    auto data = testing::random_bytes(leaves * kLeafBytes - (leaves % 3) * 100, seed + leaves);
    auto ref = ref_leaves(data);
    ASSERT_EQ(ref.size(), leaves);
    std::vector<Digest> mine(leaf_count(data.size()));
    hash_leaves(data, mine);
    EXPECT_EQ(mine, ref);
    EXPECT_EQ(merkle_root(mine), ref_mth(ref)) << leaves << " leaves";
    EXPECT_EQ(chunk_id(data), ref_mth(ref)) << leaves << " leaves";
  }
}

TEST(TreeHash, ThreeLeafShapeByHand) {
  // RFC 6962: MTH(a,b,c) = node(node(a,b), c): c is promoted, not duplicated.
  Digest a{}, b{}, c{};
  a[0] = 1;
  b[0] = 2;
  c[0] = 3;
  std::vector<Digest> v{a, b, c};
  EXPECT_EQ(merkle_root(v), ref_node(ref_node(a, b), c));
  EXPECT_EQ(hash_node(a, b), ref_node(a, b));
}

TEST(TreeHash, FileRootComposesFromPowerOfTwoChunks) {
  // A file of 37 leaves and a short tail, cut into 8-leaf (32 KiB) chunks:
  // the tree over chunk ids equals the tree over all leaves.
  auto data = testing::random_bytes(37 * kLeafBytes + 1234, testing::test_seed());
  std::vector<Digest> all(leaf_count(data.size()));
  hash_leaves(data, all);
  Digest file_root = merkle_root(all);
  for (std::size_t chunk_bytes : {kLeafBytes, 8 * kLeafBytes, 16 * kLeafBytes, 64 * kLeafBytes}) {
    std::vector<Digest> ids;
    for (std::size_t off = 0; off < data.size(); off += chunk_bytes) {
      ids.push_back(
          chunk_id(std::span<const std::byte>(data).subspan(off, std::min(chunk_bytes, data.size() - off))));
    }
    EXPECT_EQ(merkle_root(ids), file_root) << "chunk " << chunk_bytes;
  }
}

TEST(TreeHash, ParallelEqualsSerial) {
  ThreadPool pool(4);
  for (std::size_t bytes : {std::size_t{0}, std::size_t{5000}, 256 * kLeafBytes + 17, std::size_t{4} << 20}) {
    auto data = testing::random_bytes(bytes, testing::test_seed() + bytes);
    std::vector<Digest> serial(leaf_count(bytes)), parallel(leaf_count(bytes));
    hash_leaves(data, serial);
    hash_leaves(data, parallel, &pool);
    EXPECT_EQ(serial, parallel);
    EXPECT_EQ(chunk_id(data), chunk_id(data, &pool));
  }
}

TEST(TreeHash, LeafPairEqualsOneShotSha256) {
  if (!tree_hash_pair_available())
    GTEST_SKIP() << "this CPU has no SHA extensions; every leaf is hashed by OpenSSL";
  // Patterns that stress the byte order and the padding block (the leaf's
  // last byte shares it with the 0x80 pad), random leaves, and leaves at odd
  // addresses (the blocks are read unaligned).
  std::vector<std::vector<std::byte>> leaves;
  leaves.push_back(std::vector<std::byte>(kLeafBytes, std::byte{0x00}));
  leaves.push_back(std::vector<std::byte>(kLeafBytes, std::byte{0xff}));
  leaves.push_back(std::vector<std::byte>(kLeafBytes, std::byte{0x80}));
  std::vector<std::byte> counting(kLeafBytes);
  for (std::size_t i = 0; i < counting.size(); ++i) counting[i] = static_cast<std::byte>(i * 31 + (i >> 8));
  leaves.push_back(counting);
  for (int k = 0; k < 6; ++k) leaves.push_back(testing::random_bytes(kLeafBytes, testing::test_seed() + k));
  for (std::size_t i = 0; i < leaves.size(); ++i) {
    for (std::size_t j = 0; j < leaves.size(); ++j) {
      Digest a{}, b{};
      hash_leaf_pair(leaves[i].data(), leaves[j].data(), a, b);
      EXPECT_EQ(a, ref_leaf(leaves[i])) << "leaf " << i << " beside " << j;
      EXPECT_EQ(b, ref_leaf(leaves[j])) << "leaf " << j << " beside " << i;
    }
  }
  auto buffer = testing::random_bytes(2 * kLeafBytes + 7, testing::test_seed() + 99);
  for (std::size_t shift : {1, 3, 7}) {
    std::span<const std::byte> a(buffer.data() + shift, kLeafBytes);
    std::span<const std::byte> b(buffer.data() + shift + kLeafBytes - 5, kLeafBytes);  // overlapping
    Digest da{}, db{};
    hash_leaf_pair(a.data(), b.data(), da, db);
    EXPECT_EQ(da, ref_leaf(a)) << "shift " << shift;
    EXPECT_EQ(db, ref_leaf(b)) << "shift " << shift;
  }
}

TEST(TreeHash, NodePairEqualsOneShotSha256EvenInPlace) {
  if (!tree_hash_pair_available())
    GTEST_SKIP() << "this CPU has no SHA extensions; every node is hashed by OpenSSL";
  std::vector<Digest> d;
  for (int k = 0; k < 8; ++k) {
    auto bytes = testing::random_bytes(kDigestBytes, testing::test_seed() + 200 + k);
    Digest x{};
    std::memcpy(x.data(), bytes.data(), kDigestBytes);
    d.push_back(x);
  }
  d.push_back(Digest{});  // all zero
  Digest ones{};
  ones.fill(0xff);
  d.push_back(ones);
  for (std::size_t i = 0; i + 3 < d.size(); ++i) {
    Digest o0{}, o1{};
    hash_node_pair(d[i], d[i + 1], d[i + 2], d[i + 3], o0, o1);
    EXPECT_EQ(o0, ref_node(d[i], d[i + 1])) << i;
    EXPECT_EQ(o1, ref_node(d[i + 2], d[i + 3])) << i;
    // Written over its own inputs, as a tree level reduced in place is.
    std::vector<Digest> level(d.begin() + i, d.begin() + i + 4);
    hash_node_pair(level[0], level[1], level[2], level[3], level[0], level[1]);
    EXPECT_EQ(level[0], o0) << i;
    EXPECT_EQ(level[1], o1) << i;
  }
}

}  // namespace
}  // namespace ferry
