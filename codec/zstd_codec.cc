// zstd_codec.cc: libzstd behind ferry's Status, with contexts reused across
// chunks (creating a context per chunk costs more than coding a small one).
#include "codec/zstd_codec.h"

#include <zstd.h>

#include <string>

#include "codec/limits.h"

namespace ferry {
namespace {

// Chunks are at most 64 MiB = 2^26 bytes, so no valid frame needs a larger
// window; refusing larger ones bounds the decoder's memory on hostile input.
constexpr int kMaxWindowLog = 26;
static_assert((std::size_t{1} << kMaxWindowLog) >= kMaxChunkBytes);

}  // namespace

std::size_t zstd_compress_bound(std::size_t raw_bytes) { return ZSTD_compressBound(raw_bytes); }

void ZstdCompressor::Deleter::operator()(ZSTD_CCtx_s* c) const { ZSTD_freeCCtx(c); }
void ZstdDecompressor::Deleter::operator()(ZSTD_DCtx_s* d) const { ZSTD_freeDCtx(d); }

ZstdCompressor::ZstdCompressor() : ctx_(ZSTD_createCCtx()) { FERRY_CHECK(ctx_ != nullptr); }
ZstdCompressor::~ZstdCompressor() = default;

Status ZstdCompressor::compress(std::span<const std::byte> in, int level, std::vector<std::byte>& out) {
  out.resize(ZSTD_compressBound(in.size()));
  Result<std::size_t> n = compress_into(in, level, out);
  if (!n) {
    out.clear();
    return n.status();
  }
  out.resize(*n);
  return Status::ok();
}

Result<std::size_t> ZstdCompressor::compress_into(std::span<const std::byte> in, int level,
                                                  std::span<std::byte> out) {
  FERRY_CHECK(out.size() >= ZSTD_compressBound(in.size()));
  ZSTD_CCtx* c = ctx_.get();
  ZSTD_CCtx_reset(c, ZSTD_reset_session_and_parameters);
  size_t rc = ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, level);
  if (!ZSTD_isError(rc)) rc = ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, 1);
  // The frame carries its own CRC32C; zstd's checksum would be redundant.
  if (!ZSTD_isError(rc)) rc = ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 0);
  if (ZSTD_isError(rc)) {
    return Status::invalid_argument(std::string("zstd level ") + std::to_string(level) + ": " +
                                    ZSTD_getErrorName(rc));
  }
  size_t n = ZSTD_compress2(c, out.data(), out.size(), in.data(), in.size());
  if (ZSTD_isError(n)) return Status::internal(std::string("zstd compress: ") + ZSTD_getErrorName(n));
  return n;
}

ZstdDecompressor::ZstdDecompressor() : ctx_(ZSTD_createDCtx()) {
  FERRY_CHECK(ctx_ != nullptr);
  FERRY_CHECK(!ZSTD_isError(ZSTD_DCtx_setParameter(ctx_.get(), ZSTD_d_windowLogMax, kMaxWindowLog)));
}
ZstdDecompressor::~ZstdDecompressor() = default;

Status ZstdDecompressor::decompress(std::span<const std::byte> in, std::span<std::byte> out) {
  unsigned long long content = ZSTD_getFrameContentSize(in.data(), in.size());
  if (content == ZSTD_CONTENTSIZE_ERROR) return Status::corruption("zstd payload: not a zstd frame");
  if (content == ZSTD_CONTENTSIZE_UNKNOWN) {
    return Status::corruption("zstd payload: frame does not record its content size");
  }
  if (content != out.size()) {
    return Status::corruption("zstd payload: content size " + std::to_string(content) + ", chunk is " +
                              std::to_string(out.size()) + " bytes");
  }
  size_t frame_len = ZSTD_findFrameCompressedSize(in.data(), in.size());
  if (ZSTD_isError(frame_len)) {
    return Status::corruption(std::string("zstd payload: ") + ZSTD_getErrorName(frame_len));
  }
  if (frame_len != in.size()) {
    return Status::corruption("zstd payload: " + std::to_string(in.size() - frame_len) +
                              " bytes after the zstd frame");
  }
  size_t n = ZSTD_decompressDCtx(ctx_.get(), out.data(), out.size(), in.data(), in.size());
  if (ZSTD_isError(n)) {
    // Leave the context usable for the next chunk after a failed frame.
    ZSTD_DCtx_reset(ctx_.get(), ZSTD_reset_session_only);
    return Status::corruption(std::string("zstd payload: ") + ZSTD_getErrorName(n));
  }
  if (n != out.size()) {
    return Status::corruption("zstd payload: decoded " + std::to_string(n) + " bytes, expected " +
                              std::to_string(out.size()));
  }
  return Status::ok();
}

}  // namespace ferry
