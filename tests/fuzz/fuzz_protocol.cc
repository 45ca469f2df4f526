// fuzz_protocol.cc: libFuzzer target for the replication message decoder
// (docs/PROTOCOL.md). Byte 0 chooses the mode: odd = decode the rest as one
// whole message with its header's length rewritten to fit (so the fuzzer
// reaches the body decoders); even = decode the rest as the body of message
// type byte 1. A message that decodes must encode back to the same bytes
// (the encoding is canonical), and the in-place and two-part decoders must
// agree.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <vector>

#include "replication/protocol.h"

using namespace ferry::replication;

namespace {

void check_same(const Message& a, std::span<const std::byte> body) {
  std::vector<std::byte> again = encode_message_bytes(a);
  if (again.size() != body.size() + kMessageHeaderBytes) std::abort();
  for (std::size_t i = 0; i < body.size(); ++i)
    if (again[kMessageHeaderBytes + i] != body[i]) std::abort();
  auto moved = decode_body(message_type(a), std::vector<std::byte>(body.begin(), body.end()));
  if (!moved.is_ok() || encode_message_bytes(*moved) != again) std::abort();
}

// A body read in two parts (connection.cc reads a frame apart from the fields
// before it) must decode exactly as the whole body does.
void check_split(MessageType type, std::span<const std::byte> body, const ferry::Result<Message>& whole) {
  const std::size_t lead = bulk_lead_bytes(type);
  if (lead == 0 || body.size() <= lead) return;
  auto split = decode_body(type, body.first(lead), std::vector<std::byte>(body.begin() + lead, body.end()));
  if (split.is_ok() != whole.is_ok()) std::abort();
  if (split.is_ok() && encode_message_bytes(*split) != encode_message_bytes(*whole)) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  std::span<const std::byte> in(reinterpret_cast<const std::byte*>(data) + 1, size - 1);
  if (data[0] & 1) {
    std::vector<std::byte> msg(in.begin(), in.end());
    if (msg.size() >= kMessageHeaderBytes) {
      std::size_t body = msg.size() - kMessageHeaderBytes;
      for (int i = 0; i < 4; ++i) msg[i] = std::byte(static_cast<std::uint8_t>(body >> (8 * i)));
    }
    auto m = decode_message(msg, kDefaultMaxMessageBytes);
    if (m.is_ok()) check_same(*m, std::span<const std::byte>(msg).subspan(kMessageHeaderBytes));
    return 0;
  }
  auto type = static_cast<MessageType>(std::to_integer<std::uint8_t>(in[0]));
  auto body = in.subspan(1);
  auto m = decode_body(type, body);
  check_split(type, body, m);
  if (m.is_ok()) {
    if (message_type(*m) != type) std::abort();
    check_same(*m, body);
  }
  return 0;
}
