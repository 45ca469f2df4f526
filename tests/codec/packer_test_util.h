// packer_test_util.h: what the packer's tests share: a sink that keeps
// every frame, and a file's root hashed independently of the packer.
#pragma once

#include <span>
#include <string>
#include <vector>

#include "codec/packer.h"
#include "codec/tree_hash.h"

namespace ferry::packer_test {

// Keeps every frame it is given, with the path it came with.
class RecordingSink : public FrameSink {
 public:
  Status put_frame(const ManifestFile& file, const ManifestChunk& chunk,
                   std::span<const std::byte> frame) override {
    paths.push_back(file.path);
    chunks.push_back(chunk);
    frames.emplace_back(frame.begin(), frame.end());
    return Status::ok();
  }
  std::vector<std::string> paths;
  std::vector<ManifestChunk> chunks;
  std::vector<std::vector<std::byte>> frames;
};

inline Digest file_root_of(const std::vector<std::byte>& data) {
  std::vector<Digest> leaves(leaf_count(data.size()));
  hash_leaves(data, leaves);
  return merkle_root(leaves);
}

}  // namespace ferry::packer_test
