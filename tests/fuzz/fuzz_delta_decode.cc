// fuzz_delta_decode.cc: libFuzzer target for the delta frame decoder
// (codec/delta_codec.h). The input is a frame; its base is a fixed
// pseudo-random chunk of the frame's raw size, so the payload decoder, the
// inverse transform and the id check all run. Any input must give a chunk
// that hashes to the header's id, or Corruption, never a crash, a hang or a
// sanitizer report. As in fuzz_frame.cc, each input is decoded once more
// with both CRCs resealed so mutated payloads reach the plane decoder.
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "codec/delta_codec.h"
#include "tests/fuzz/reseal_frame.h"

namespace {

void decode_one(std::span<const std::byte> frame) {
  static ferry::DeltaDecoder decoder;
  static std::vector<std::byte> out, base;
  auto h = ferry::parse_frame_header(frame);
  if (!h.is_ok()) {
    FERRY_CHECK(h.status().code() == ferry::Code::kCorruption);
    return;
  }
  out.resize(h->raw_bytes);
  base.resize(h->raw_bytes);
  std::uint32_t s = 1;
  for (auto& b : base) {
    s = s * 1664525u + 1013904223u;
    b = static_cast<std::byte>(s >> 24);
  }
  ferry::Status st = decoder.decode_verified(*h, frame, base, out);
  if (!st.is_ok()) {
    FERRY_CHECK(st.code() == ferry::Code::kCorruption);
    return;
  }
  FERRY_CHECK(ferry::chunk_id(out) == h->chunk_id);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto frame = std::as_bytes(std::span<const std::uint8_t>(data, size));
  decode_one(frame);
  if (size < ferry::kFrameHeaderBytes) return 0;
  decode_one(ferry::fuzz::resealed(frame));
  return 0;
}
