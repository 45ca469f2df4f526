// zstd_codec.h: the zstd frame codec (frame codec id 1) for chunks that are
// not floats, or that zstd codes better (sparse, quantised data). A thin RAII
// wrapper over libzstd's reusable contexts; decoding checks that the zstd
// frame's content size equals the chunk's raw size before touching output.
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <vector>

#include "base/status.h"

struct ZSTD_CCtx_s;
struct ZSTD_DCtx_s;

namespace ferry {

// Level 1: on the real-weights corpus the chunks that go to zstd (sparse and
// quantised tensors, unknown layouts, metadata) come out no larger than at
// level 3 (201.49 vs 201.51 MB of frames for the 239 MB corpus) at about
// twice the speed, and the codec choice already judges the sample at level 1.
inline constexpr int kDefaultZstdLevel = 1;

// The largest zstd frame compress() can make of raw_bytes (ZSTD_compressBound).
std::size_t zstd_compress_bound(std::size_t raw_bytes);

class ZstdCompressor {
 public:
  ZstdCompressor();
  ~ZstdCompressor();
  ZstdCompressor(const ZstdCompressor&) = delete;
  ZstdCompressor& operator=(const ZstdCompressor&) = delete;

  // Compresses `in` into `out` (resized to the zstd frame, which records its
  // content size). Fails only when libzstd does (out of memory).
  Status compress(std::span<const std::byte> in, int level, std::vector<std::byte>& out);
  // Compresses `in` into the start of `out`, which holds at least
  // zstd_compress_bound(in.size()) bytes (FERRY_CHECKed); the bytes are
  // those compress() makes. The zstd frame's size, or libzstd's failure.
  Result<std::size_t> compress_into(std::span<const std::byte> in, int level, std::span<std::byte> out);

 private:
  struct Deleter {
    void operator()(ZSTD_CCtx_s* c) const;
  };
  std::unique_ptr<ZSTD_CCtx_s, Deleter> ctx_;
};

class ZstdDecompressor {
 public:
  ZstdDecompressor();
  ~ZstdDecompressor();
  ZstdDecompressor(const ZstdDecompressor&) = delete;
  ZstdDecompressor& operator=(const ZstdDecompressor&) = delete;

  // Decompresses exactly one zstd frame whose content size is out.size().
  // Corruption on anything else (bad frame, wrong size, trailing bytes).
  Status decompress(std::span<const std::byte> in, std::span<std::byte> out);

 private:
  struct Deleter {
    void operator()(ZSTD_DCtx_s* d) const;
  };
  std::unique_ptr<ZSTD_DCtx_s, Deleter> ctx_;
};

}  // namespace ferry
