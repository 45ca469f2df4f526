// protocol_test.cc: every replication message round-trips; golden bytes pin
// the wire format (docs/PROTOCOL.md); truncated, oversized, padded and
// garbage bodies are refused with a Corruption that names the message and
// the byte; version negotiation and name rules.
#include "replication/protocol.h"

#include <gtest/gtest.h>

#include <random>

#include "tests/testing/testing.h"

namespace ferry::replication {
namespace {

std::string hex(const std::vector<std::byte>& b) {
  static const char* d = "0123456789abcdef";
  std::string s;
  for (std::byte x : b) {
    s += d[std::to_integer<int>(x) >> 4];
    s += d[std::to_integer<int>(x) & 15];
  }
  return s;
}

Digest digest_of(std::uint8_t seed) {
  Digest d{};
  for (std::size_t i = 0; i < d.size(); ++i) d[i] = static_cast<std::uint8_t>(seed + i);
  return d;
}

std::vector<std::byte> bytes(std::size_t n, std::uint8_t v) {
  return std::vector<std::byte>(n, std::byte{v});
}

// One valid instance of every message type, in type order.
std::vector<Message> samples() {
  return {
      Hello{1, 3, "ferry 0.1.0"},
      HelloOk{1, "alpha", kDefaultMaxMessageBytes, 64, 4096, kHelloFlagAppendOnly},
      Query{5, {digest_of(1), digest_of(2), digest_of(3)}},
      QueryReply{5, {true, false, true, true, false, false, false, false, true}},
      Put{6, bytes(kFrameHeaderBytes + 10, 0xab)},
      PutAck{6, digest_of(9)},
      Commit{7, "job-123.step_9", bytes(100, 0x4d)},
      CommitOk{7, "job-123.step_9"},
      List{8},
      ListReply{8, {{"a", 1700000000, 1 << 30, 3, 300}, {"b.2", -1, 0, 0, 0}}},
      GetManifest{9, "a"},
      ManifestData{9, "a", bytes(7, 1)},
      GetChunk{10, {digest_of(4)}},
      ChunkData{10, bytes(kFrameHeaderBytes, 2)},
      Delete{11, "a"},
      Prune{12, 5, 86400, true},
      Removed{12, {"a", "b"}, 10, 40 << 20},
      Ping{13},
      Pong{13},
      Error{14, Code::kPermissionDenied, "namespace beta is not yours"},
      Bye{},
  };
}

bool same(const Message& a, const Message& b) { return encode_message_bytes(a) == encode_message_bytes(b); }

// Decodes `body` as a connection does when it reads a frame-carrying body in
// two parts (the fields before the frame, then the frame into its own buffer).
Result<Message> decode_split(MessageType type, std::span<const std::byte> body) {
  const std::size_t lead = bulk_lead_bytes(type);
  if (lead == 0 || body.size() <= lead) return decode_body(type, body);
  return decode_body(type, body.first(lead), std::vector<std::byte>(body.begin() + lead, body.end()));
}

TEST(ProtocolTest, SamplesCoverEveryTypeInOrder) {
  auto all = samples();
  ASSERT_EQ(all.size(), std::variant_size_v<Message>);
  for (std::size_t i = 0; i < all.size(); ++i)
    EXPECT_EQ(static_cast<std::size_t>(message_type(all[i])), i + 1) << message_name(all[i]);
}

TEST(ProtocolTest, EveryMessageRoundTrips) {
  for (const Message& m : samples()) {
    auto wire = encode_message_bytes(m);
    auto back = decode_message(wire);
    ASSERT_TRUE(back.is_ok()) << message_name(m) << ": " << back.status().to_string();
    EXPECT_EQ(message_type(*back), message_type(m));
    EXPECT_TRUE(same(*back, m)) << message_name(m);
    EXPECT_EQ(request_id_of(*back), request_id_of(m));
    // The in-place decoder gives the same message.
    std::vector<std::byte> body(wire.begin() + kMessageHeaderBytes, wire.end());
    auto moved = decode_body(message_type(m), std::move(body));
    ASSERT_TRUE(moved.is_ok()) << moved.status().to_string();
    EXPECT_TRUE(same(*moved, m)) << message_name(m);
    // So does the decoder of a body received in two parts.
    std::span<const std::byte> whole(wire.data() + kMessageHeaderBytes, wire.size() - kMessageHeaderBytes);
    auto split = decode_split(message_type(m), whole);
    ASSERT_TRUE(split.is_ok()) << message_name(m) << ": " << split.status().to_string();
    EXPECT_TRUE(same(*split, m)) << message_name(m);
  }
}

TEST(ProtocolTest, OnlyFrameMessagesAreReadApart) {
  for (const Message& m : samples()) {
    bool frame = std::holds_alternative<Put>(m) || std::holds_alternative<ChunkData>(m);
    EXPECT_EQ(bulk_lead_bytes(message_type(m)), frame ? 8u : 0u) << message_name(m);
  }
  // A frame received apart keeps its own buffer: no copy, no shift.
  Put p{7, bytes(kFrameHeaderBytes + 9, 5)};
  auto wire = encode_message_bytes(p);
  std::span<const std::byte> lead(wire.data() + kMessageHeaderBytes, 8);
  std::vector<std::byte> frame(wire.begin() + kMessageHeaderBytes + 8, wire.end());
  const std::byte* at = frame.data();
  auto r = decode_body(MessageType::kPut, lead, std::move(frame));
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(std::get<Put>(*r).request_id, 7u);
  EXPECT_EQ(std::get<Put>(*r).frame.data(), at);
  EXPECT_EQ(std::get<Put>(*r).frame, p.frame);
  // A lead longer than the fields before the frame is refused, not misread.
  std::vector<std::byte> longer_lead(lead.begin(), lead.end());
  longer_lead.push_back(std::byte{0});
  auto bad = decode_body(MessageType::kPut, longer_lead, std::vector<std::byte>(p.frame));
  EXPECT_FALSE(bad.is_ok());
}

TEST(ProtocolTest, EncodedMessageKeepsBulkOutOfHead) {
  Message m = Put{1, bytes(kFrameHeaderBytes + 5, 3)};
  const Put& p = std::get<Put>(m);
  EncodedMessage e = encode_message(m);
  EXPECT_EQ(e.head.size(), kMessageHeaderBytes + 8);
  EXPECT_EQ(e.tail.data(), p.frame.data());
  EXPECT_EQ(e.size(), kMessageHeaderBytes + 8 + p.frame.size());
}

TEST(ProtocolTest, GoldenBytes) {
  EXPECT_EQ(hex(encode_message_bytes(Hello{1, 1, "ferry"})),
            "0b00000001"
            "0100"
            "0100"
            "0500"
            "6665727279");
  EXPECT_EQ(hex(encode_message_bytes(HelloOk{1, "h1", 134217728, 64, 65536, 1})),
            "1a00000002"
            "0100"
            "0200"
            "6831"
            "0000000800000000"
            "40000000"
            "00000100"
            "01000000");
  EXPECT_EQ(hex(encode_message_bytes(
                QueryReply{0x0102, {true, false, false, false, false, false, false, false, true}})),
            "0e00000004"
            "0201000000000000"
            "09000000"
            "01"
            "01");
  EXPECT_EQ(hex(encode_message_bytes(Error{2, Code::kNotFound, "no"})),
            "0d00000014"
            "0200000000000000"
            "02"
            "0200"
            "6e6f");
  EXPECT_EQ(hex(encode_message_bytes(Bye{})), "0000000015");
  EXPECT_EQ(hex(encode_message_bytes(Prune{1, 2, 3, false})),
            "1500000010"
            "0100000000000000"
            "02000000"
            "0300000000000000"
            "00");
}

TEST(ProtocolTest, EveryTruncationIsCorruption) {
  for (const Message& m : samples()) {
    auto wire = encode_message_bytes(m);
    std::span<const std::byte> body(wire.data() + kMessageHeaderBytes, wire.size() - kMessageHeaderBytes);
    for (std::size_t n = 0; n < body.size(); ++n) {
      auto r = decode_body(message_type(m), body.first(n));
      // Received in two parts, the same length decodes the same way.
      auto split = decode_split(message_type(m), body.first(n));
      EXPECT_EQ(split.is_ok(), r.is_ok()) << message_name(m) << " at " << n << " bytes";
      if (!split.is_ok()) {
        EXPECT_EQ(split.status().code(), Code::kCorruption) << split.status().to_string();
      }
      // Bulk-carrying messages may decode at some shorter lengths (a shorter
      // manifest is still a manifest); everything else must fail.
      if (r.is_ok()) {
        bool bulk = std::holds_alternative<Commit>(m) || std::holds_alternative<ManifestData>(m) ||
                    std::holds_alternative<Put>(m) || std::holds_alternative<ChunkData>(m);
        EXPECT_TRUE(bulk) << message_name(m) << " decoded from " << n << " bytes";
        continue;
      }
      EXPECT_EQ(r.status().code(), Code::kCorruption) << r.status().to_string();
      EXPECT_NE(r.status().message().find(std::string(message_name(m))), std::string::npos)
          << r.status().to_string();
    }
  }
}

TEST(ProtocolTest, TrailingBytesAreCorruption) {
  auto wire = encode_message_bytes(PutAck{1, digest_of(1)});
  wire.push_back(std::byte{0});
  wire[0] = std::byte{static_cast<std::uint8_t>(wire.size() - kMessageHeaderBytes)};
  auto r = decode_message(wire);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("trailing"), std::string::npos) << r.status().to_string();
}

TEST(ProtocolTest, HeaderLimitsAndUnknownTypes) {
  std::array<std::byte, kMessageHeaderBytes> h{std::byte{0xff}, std::byte{0xff}, std::byte{0xff},
                                               std::byte{0x7f}, std::byte{5}};
  auto r = parse_message_header(h, kDefaultMaxMessageBytes);
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), Code::kResourceExhausted);
  EXPECT_NE(r.status().message().find("PUT message of"), std::string::npos) << r.status().to_string();
  for (int t : {0, 22, 0x47, 255}) {
    h[4] = std::byte(static_cast<std::uint8_t>(t));
    auto u = parse_message_header(h, kDefaultMaxMessageBytes);
    ASSERT_FALSE(u.is_ok());
    EXPECT_EQ(u.status().code(), Code::kCorruption) << t;
  }
  // "GET /" is what an HTTP client sends first.
  std::array<std::byte, kMessageHeaderBytes> http{std::byte{'G'}, std::byte{'E'}, std::byte{'T'},
                                                  std::byte{' '}, std::byte{'/'}};
  EXPECT_FALSE(parse_message_header(http, kDefaultMaxMessageBytes).is_ok());
}

TEST(ProtocolTest, HostileCountsAreRefusedBeforeAllocation) {
  // QUERY claiming 65536 ids with none present.
  auto q = encode_message_bytes(Query{1, {digest_of(0)}});
  std::vector<std::byte> body(q.begin() + kMessageHeaderBytes, q.begin() + kMessageHeaderBytes + 12);
  body[8] = std::byte{0};
  body[9] = std::byte{0};
  body[10] = std::byte{1};  // 65536
  auto r = decode_body(MessageType::kQuery, body);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("does not fit"), std::string::npos) << r.status().to_string();
  body[11] = std::byte{0x7f};  // over kMaxQueryIds
  r = decode_body(MessageType::kQuery, body);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("over the limit"), std::string::npos) << r.status().to_string();
  // An empty QUERY is refused too.
  EXPECT_FALSE(decode_message(encode_message_bytes(Query{1, {}})).is_ok());
}

TEST(ProtocolTest, FieldRulesAreEnforced) {
  EXPECT_FALSE(decode_message(encode_message_bytes(CommitOk{1, "../etc"})).is_ok());
  EXPECT_FALSE(decode_message(encode_message_bytes(CommitOk{1, ".."})).is_ok());
  EXPECT_FALSE(decode_message(encode_message_bytes(Delete{1, ""})).is_ok());
  EXPECT_FALSE(
      decode_message(encode_message_bytes(Delete{1, std::string(kMaxSnapshotNameBytes + 1, 'a')})).is_ok());
  EXPECT_TRUE(
      decode_message(encode_message_bytes(Delete{1, std::string(kMaxSnapshotNameBytes, 'a')})).is_ok());
  EXPECT_FALSE(
      decode_message(encode_message_bytes(HelloOk{1, "a/b", kDefaultMaxMessageBytes, 64, 10, 0})).is_ok());
  EXPECT_FALSE(decode_message(encode_message_bytes(HelloOk{1, "a", 1024, 64, 10, 0})).is_ok());
  EXPECT_FALSE(
      decode_message(encode_message_bytes(HelloOk{1, "a", kDefaultMaxMessageBytes, 0, 10, 0})).is_ok());
  EXPECT_FALSE(decode_message(encode_message_bytes(Hello{3, 2, "x"})).is_ok());
  EXPECT_FALSE(decode_message(encode_message_bytes(Hello{1, 1, "bad\nline"})).is_ok());
  EXPECT_FALSE(decode_message(encode_message_bytes(Prune{1, 0, 0, false})).is_ok());
  EXPECT_FALSE(decode_message(encode_message_bytes(Put{1, bytes(kFrameHeaderBytes - 1, 0)})).is_ok());
  EXPECT_FALSE(decode_message(encode_message_bytes(Commit{1, "a", {}})).is_ok());
  auto err = encode_message_bytes(Error{1, Code::kNotFound, "x"});
  err[kMessageHeaderBytes + 8] = std::byte{0};  // Code::kOk is not an error
  EXPECT_FALSE(decode_message(err).is_ok());
  err[kMessageHeaderBytes + 8] = std::byte{200};
  EXPECT_FALSE(decode_message(err).is_ok());
  auto qr = encode_message_bytes(QueryReply{1, {true, true, true}});
  qr.back() = std::byte{0x0f};  // a padding bit set
  EXPECT_FALSE(decode_message(qr).is_ok());
}

TEST(ProtocolTest, VersionNegotiation) {
  EXPECT_EQ(*choose_version(Hello{1, 1, ""}), 1);
  EXPECT_EQ(*choose_version(Hello{1, 9, ""}), kMaxProtocolVersion);
  auto none = choose_version(Hello{kMaxProtocolVersion + 1, kMaxProtocolVersion + 2, ""});
  ASSERT_FALSE(none.is_ok());
  EXPECT_EQ(none.status().code(), Code::kUnsupported);
  EXPECT_NE(none.status().message().find("no common protocol version"), std::string::npos);
}

TEST(ProtocolTest, Version2FieldsRoundTripAndVersion1BytesStayTheSame) {
  // LIST and LIST_REPLY with their cursors, REMOVED with its unnamed count.
  for (const Message& m :
       std::vector<Message>{List{8, true, ""}, List{8, true, "1700000000000000000/a"},
                            ListReply{8, {{"a", 1700000000, 1, 1, 1}}, true, "1700000000000000000/a"},
                            ListReply{8, {}, true, ""}, Removed{12, {"a"}, 1, 2, true, 5}}) {
    auto back = decode_message(encode_message_bytes(m));
    ASSERT_TRUE(back.is_ok()) << message_name(m) << ": " << back.status().to_string();
    EXPECT_TRUE(same(*back, m)) << message_name(m);
  }
  auto list = decode_message(encode_message_bytes(List{8, true, "c"}));
  ASSERT_TRUE(list.is_ok());
  EXPECT_TRUE(std::get<List>(*list).paged);
  EXPECT_EQ(std::get<List>(*list).after, "c");
  auto removed = decode_message(encode_message_bytes(Removed{1, {}, 0, 0, true, 7}));
  ASSERT_TRUE(removed.is_ok());
  EXPECT_EQ(std::get<Removed>(*removed).unnamed, 7u);
  // Unpaged, the messages are version 1's, byte for byte.
  EXPECT_EQ(encode_message_bytes(List{8}), encode_message_bytes(List{8, false, "ignored"}));
  EXPECT_EQ(encode_message_bytes(List{8}).size(), kMessageHeaderBytes + 8);
  // A cursor with a control character or past its limit is malformed.
  EXPECT_EQ(decode_message(encode_message_bytes(List{8, true, "a\nb"})).status().code(), Code::kCorruption);
  EXPECT_EQ(decode_message(encode_message_bytes(List{8, true, std::string(kMaxListCursorBytes + 1, 'a')}))
                .status()
                .code(),
            Code::kCorruption);
}

TEST(ProtocolTest, AMessageOverTheLimitIsAnErrorNotAnAbort) {
  ListReply big{1, {}, true, ""};
  for (int i = 0; i < 1000; ++i) big.snapshots.push_back({std::string(100, 'n'), 0, 0, 0, 0});
  auto refused = try_encode_message(big, 64u << 10);
  ASSERT_FALSE(refused.is_ok());
  EXPECT_EQ(refused.status().code(), Code::kResourceExhausted);
  EXPECT_NE(refused.status().message().find("LIST_REPLY message of"), std::string::npos)
      << refused.status().to_string();
  auto fits = try_encode_message(big, 1u << 20);
  ASSERT_TRUE(fits.is_ok());
  EXPECT_EQ(fits->head, encode_message_bytes(big));
}

TEST(ProtocolTest, NamesAndErrors) {
  EXPECT_TRUE(validate_namespace("gpu-node-17.cluster_a").is_ok());
  EXPECT_FALSE(validate_namespace(std::string(65, 'a')).is_ok());
  EXPECT_FALSE(validate_namespace("a b").is_ok());
  EXPECT_FALSE(validate_namespace(".").is_ok());
  Status s = status_from_error(error_from_status(3, Status::not_found("snapshot x")));
  EXPECT_EQ(s.code(), Code::kNotFound);
  EXPECT_EQ(s.message(), "receiver: snapshot x");
}

TEST(ProtocolTest, RandomBodiesNeverCrash) {
  std::uint64_t seed = ferry::testing::test_seed();
  std::mt19937_64 rng(seed);
  for (int i = 0; i < 20000; ++i) {
    auto type = static_cast<MessageType>(1 + rng() % std::variant_size_v<Message>);
    auto body = ferry::testing::random_bytes(rng() % 80, rng());
    auto r = decode_body(type, body);
    if (r.is_ok()) {
      EXPECT_EQ(message_type(*r), type);
    }
  }
}

}  // namespace
}  // namespace ferry::replication
