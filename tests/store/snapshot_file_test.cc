// snapshot_file_test.cc: the snapshot file of the local store (commit record
// + manifest, docs/FORMAT.md section 7.4): golden bytes, a round trip, bare
// manifests of older stores passed through, and damage refused with the
// path named.
#include "store/snapshot_file.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "base/crc32c.h"

namespace ferry {
namespace {

std::string hex(std::span<const std::byte> b) {
  std::string out;
  char buf[3];
  for (std::byte x : b) {
    std::snprintf(buf, sizeof buf, "%02x", static_cast<unsigned>(x));
    out += buf;
  }
  return out;
}

const std::vector<std::byte> kManifest = {std::byte{0x46}, std::byte{0x52}, std::byte{0x59}, std::byte{0x4d},
                                          std::byte{0xaa}};

TEST(SnapshotFile, GoldenBytes) {
  const auto bytes = serialize_snapshot_file(0x0102030405060708, kManifest);
  ASSERT_EQ(bytes.size(), kCommitRecordBytes + kManifest.size());
  // "FRYC", version 1, 3 zero bytes, committed_ns little-endian, masked CRC32C
  // of the 16 bytes before it, then the manifest as given.
  EXPECT_EQ(hex(std::span(bytes).first(16)), "46525943010000000807060504030201");
  EXPECT_EQ(hex(std::span(bytes).subspan(kCommitRecordBytes)), "4652594daa");
  auto parsed = parse_snapshot_file(bytes, "s.manifest");
  ASSERT_TRUE(parsed.is_ok()) << parsed.status().to_string();
  ASSERT_TRUE(parsed->committed_ns.has_value());
  EXPECT_EQ(*parsed->committed_ns, 0x0102030405060708);
  EXPECT_EQ(std::vector<std::byte>(parsed->manifest.begin(), parsed->manifest.end()), kManifest);
  EXPECT_EQ(hex(std::span(bytes).subspan(16, 4)), "d0399bf7");
}

TEST(SnapshotFile, NegativeTimesRoundTrip) {
  const auto bytes = serialize_snapshot_file(-42, {});
  auto parsed = parse_snapshot_file(bytes, "s.manifest");
  ASSERT_TRUE(parsed.is_ok());
  EXPECT_EQ(*parsed->committed_ns, -42);
  EXPECT_TRUE(parsed->manifest.empty());
}

TEST(SnapshotFile, ABareManifestIsPassedThrough) {
  auto parsed = parse_snapshot_file(kManifest, "old.manifest");
  ASSERT_TRUE(parsed.is_ok());
  EXPECT_FALSE(parsed->committed_ns.has_value());
  EXPECT_EQ(parsed->manifest.data(), kManifest.data());
  EXPECT_EQ(parsed->manifest.size(), kManifest.size());
  auto empty = parse_snapshot_file({}, "empty.manifest");
  ASSERT_TRUE(empty.is_ok()) << "the manifest parser judges it";
  EXPECT_TRUE(empty->manifest.empty());
}

TEST(SnapshotFile, DamageIsRefusedNamingThePath) {
  const auto good = serialize_snapshot_file(1'700'000'000'000'000'000, kManifest);
  for (std::size_t i = 4; i < kCommitRecordBytes; ++i) {
    auto bad = good;
    bad[i] ^= std::byte{0x01};
    auto parsed = parse_snapshot_file(bad, "/srv/ferry/a/snapshots/s.manifest");
    ASSERT_FALSE(parsed.is_ok()) << "byte " << i;
    EXPECT_EQ(parsed.status().code(), Code::kCorruption) << i << ": " << parsed.status().to_string();
    EXPECT_NE(parsed.status().message().find("/srv/ferry/a/snapshots/s.manifest"), std::string::npos);
  }
  auto cut = parse_snapshot_file(std::span(good).first(kCommitRecordBytes - 1), "s.manifest");
  EXPECT_EQ(cut.status().code(), Code::kCorruption);
}

TEST(SnapshotFile, AnotherVersionIsUnsupported) {
  auto bytes = serialize_snapshot_file(7, kManifest);
  bytes[4] = std::byte{2};
  // Reseal the CRC, so that only the version is wrong.
  const std::uint32_t crc = mask_crc(crc32c(std::span(bytes).first(16)));
  std::memcpy(bytes.data() + 16, &crc, 4);
  auto parsed = parse_snapshot_file(bytes, "s.manifest");
  EXPECT_EQ(parsed.status().code(), Code::kUnsupported) << parsed.status().to_string();
  EXPECT_NE(parsed.status().message().find("version 2"), std::string::npos);
}

}  // namespace
}  // namespace ferry
