// chunk_store_test_util.h: what the chunk store tests share: real frames
// coded by ChunkEncoder from seeded BF16 weights or corpus files, and
// manifests that name them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "codec/chunk_codec.h"
#include "codec/manifest.h"
#include "tests/testing/testing.h"

namespace ferry::testing {

struct TestChunk {
  std::vector<std::byte> raw;
  std::vector<std::byte> frame;
  EncodedChunk info;
};

inline TestChunk encode_chunk(std::vector<std::byte> raw, DType dtype) {
  TestChunk c;
  c.raw = std::move(raw);
  ChunkEncoder enc;
  c.info = enc.encode(c.raw, dtype, c.frame);
  return c;
}

// A 64 KiB chunk of BF16 weights drawn from N(0, 0.02) with `seed`.
inline TestChunk make_chunk(std::uint64_t seed, std::size_t bytes = 64u << 10) {
  return encode_chunk(normal_floats(bytes / 2, 2, true, 0.02, seed), DType::kBF16);
}

// A manifest of one file made of `chunks` in order (each a multiple of
// 4 KiB but the last).
inline std::vector<std::byte> manifest_for(const std::vector<const TestChunk*>& chunks,
                                           std::int64_t created_ns, std::uint64_t step = 1) {
  Manifest m;
  m.host = "host-a";
  m.job = "job";
  m.step = step;
  m.created_ns = created_ns;
  ManifestFile f;
  f.path = "weights.bin";
  f.mode = 0644;
  for (const TestChunk* c : chunks) {
    ManifestChunk mc;
    mc.offset = f.size;
    mc.length = static_cast<std::uint32_t>(c->raw.size());
    mc.id = c->info.id;
    mc.dtype = c->info.dtype;
    mc.codec = static_cast<std::uint8_t>(c->info.codec);
    mc.frame_bytes = c->info.frame_bytes;
    mc.base_id = c->info.base_id;
    f.size += c->raw.size();
    f.chunks.push_back(mc);
  }
  m.files.push_back(std::move(f));
  return serialize_manifest(m);
}

// A manifest naming no chunks: `files` empty files whose paths are about
// `path_bytes` long, dated `created_ns`. A real host never sends one this
// shape; a hostile one does, to fill a store without sending chunks.
inline std::vector<std::byte> chunkless_manifest(std::size_t files, std::size_t path_bytes,
                                                 std::int64_t created_ns, const std::string& job = "junk") {
  Manifest m;
  m.host = "host-a";
  m.job = job;
  m.step = 1;
  m.created_ns = created_ns;
  for (std::size_t i = 0; i < files; ++i) {
    ManifestFile f;
    char prefix[32];
    std::snprintf(prefix, sizeof prefix, "f%08zu/", i);  // ascending paths
    f.path = prefix + std::string(path_bytes > 12 ? path_bytes - 12 : 1, 'x');
    f.mode = 0644;
    m.files.push_back(std::move(f));
  }
  return serialize_manifest(m);
}

}  // namespace ferry::testing
