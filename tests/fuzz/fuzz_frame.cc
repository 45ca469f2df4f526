// fuzz_frame.cc: libFuzzer target for the frame decoder. Any input must give
// either a verified chunk or a Corruption status, never a crash, a hang or a
// sanitizer report. When decoding succeeds, the bytes must hash to the id in
// the header (which the decoder checked). Each input is also decoded once
// more with both CRCs recomputed, so that mutated payloads get past the CRC
// checks and reach the zstd and byte-plane decoders.
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "codec/chunk_codec.h"
#include "tests/fuzz/reseal_frame.h"

namespace {

void decode_one(std::span<const std::byte> frame) {
  static ferry::ChunkDecoder decoder;
  static std::vector<std::byte> out;
  ferry::Status st = decoder.decode(frame, out);
  if (!st.is_ok()) {
    // A valid delta frame needs its base (fuzz_delta_decode.cc decodes it).
    FERRY_CHECK(st.code() == ferry::Code::kCorruption ||
                (st.code() == ferry::Code::kInvalidArgument &&
                 ferry::is_delta_codec(ferry::parse_frame_header_only(frame)->codec)));
    return;
  }
  FERRY_CHECK(ferry::chunk_id(out) == ferry::parse_frame_header_only(frame)->chunk_id);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto frame = std::as_bytes(std::span<const std::uint8_t>(data, size));
  decode_one(frame);
  if (size < ferry::kFrameHeaderBytes) return 0;
  decode_one(ferry::fuzz::resealed(frame));
  return 0;
}
