// protocol.cc: encoding and hostile-input-safe decoding of the replication
// messages (docs/PROTOCOL.md section 3). Every read goes through a
// BodyReader (body_reader.h), which checks the remaining length first and
// remembers the first failure, so a decoder is a straight sequence of field
// reads followed by one check.
#include "replication/protocol.h"

#include "codec/byte_writer.h"
#include "replication/body_reader.h"

#include <algorithm>
#include <cstring>

namespace ferry::replication {
namespace {

using Writer = ByteWriter;
using Reader = BodyReader;

bool name_char_ok(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
         c == '-';
}

Status validate_name(std::string_view name, std::size_t max_bytes, const char* what) {
  if (name.empty() || name.size() > max_bytes)
    return Status::invalid_argument(std::string(what) + " must be 1 to " + std::to_string(max_bytes) +
                                    " bytes, got " + std::to_string(name.size()));
  if (name == "." || name == "..")
    return Status::invalid_argument(std::string(what) + " may not be \"" + std::string(name) + "\"");
  for (char c : name) {
    if (!name_char_ok(c))
      return Status::invalid_argument(std::string(what) + " \"" + std::string(name.substr(0, max_bytes)) +
                                      "\" has a character outside [A-Za-z0-9._-]");
  }
  return Status::ok();
}

// Checks a name field after reading it; a bad one makes the message malformed.
void check_name(Reader& r, std::size_t at, const std::string& name, std::size_t max_bytes, const char* what) {
  if (!r.ok()) return;
  Status s = validate_name(name, max_bytes, what);
  if (!s.is_ok()) r.fail(at, s.message());
}

void check_printable(Reader& r, std::size_t at, const std::string& s, const char* what) {
  for (char c : s) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      r.fail(at, std::string(what) + " has a control character");
      return;
    }
  }
}

bool valid_code(std::uint8_t c) {
  return c > static_cast<std::uint8_t>(Code::kOk) && c <= static_cast<std::uint8_t>(Code::kInternal);
}

// ---- encoding ----------------------------------------------------------
// One overload per message shape, in wire order; std::visit picks it, so a
// message without an encoder does not compile. The bulk field (frame,
// manifest) is not written but pointed at by `tail`.

struct BodyEncoder {
  Writer& w;
  std::span<const std::byte>& tail;

  void operator()(const Hello& v) {
    w.u16(v.min_version);
    w.u16(v.max_version);
    w.str16(v.software);
  }
  void operator()(const HelloOk& v) {
    w.u16(v.version);
    w.str16(v.namespace_name);
    w.u64(v.max_message_bytes);
    w.u32(v.max_inflight_puts);
    w.u32(v.max_query_ids);
    w.u32(v.flags);
  }
  void operator()(const Query& v) { id_list(v.request_id, v.ids); }
  void operator()(const GetChunk& v) { id_list(v.request_id, v.ids); }
  void operator()(const QueryReply& v) {
    w.u64(v.request_id);
    w.u32(static_cast<std::uint32_t>(v.missing.size()));
    std::uint8_t acc = 0;
    for (std::size_t i = 0; i < v.missing.size(); ++i) {
      if (v.missing[i]) acc |= static_cast<std::uint8_t>(1u << (i % 8));
      if (i % 8 == 7) {
        w.u8(acc);
        acc = 0;
      }
    }
    if (v.missing.size() % 8 != 0) w.u8(acc);
  }
  void operator()(const Put& v) { bulk_after_id(v.request_id, v.frame); }
  void operator()(const ChunkData& v) { bulk_after_id(v.request_id, v.frame); }
  void operator()(const PutAck& v) {
    w.u64(v.request_id);
    w.digest(v.chunk_id);
  }
  void operator()(const Commit& v) {
    named(v.request_id, v.snapshot);
    tail = v.manifest;
  }
  void operator()(const ManifestData& v) {
    named(v.request_id, v.snapshot);
    tail = v.manifest;
  }
  void operator()(const CommitOk& v) { named(v.request_id, v.snapshot); }
  void operator()(const GetManifest& v) { named(v.request_id, v.snapshot); }
  void operator()(const Delete& v) { named(v.request_id, v.snapshot); }
  void operator()(const List& v) {
    w.u64(v.request_id);
    if (v.paged) w.str16(v.after);
  }
  void operator()(const Ping& v) { w.u64(v.request_id); }
  void operator()(const Pong& v) { w.u64(v.request_id); }
  void operator()(const ListReply& v) {
    w.u64(v.request_id);
    w.u32(static_cast<std::uint32_t>(v.snapshots.size()));
    for (const SnapshotInfo& s : v.snapshots) {
      w.str16(s.name);
      w.i64(s.created_unix_seconds);
      w.u64(s.logical_bytes);
      w.u32(s.file_count);
      w.u32(s.chunk_count);
    }
    if (v.paged) w.str16(v.next);
  }
  void operator()(const Prune& v) {
    w.u64(v.request_id);
    w.u32(v.keep_last);
    w.u64(v.keep_within_seconds);
    w.u8(v.dry_run ? 1 : 0);
  }
  void operator()(const Removed& v) {
    w.u64(v.request_id);
    w.u32(static_cast<std::uint32_t>(v.snapshots.size()));
    for (const std::string& s : v.snapshots) w.str16(s);
    w.u64(v.chunks_freed);
    w.u64(v.bytes_freed);
    if (v.counted) w.u64(v.unnamed);
  }
  void operator()(const Error& v) {
    w.u64(v.request_id);
    w.u8(static_cast<std::uint8_t>(v.code));
    w.str16(std::string_view(v.message).substr(0, kMaxErrorMessageBytes));
  }
  void operator()(const Bye&) {}

 private:
  void id_list(std::uint64_t request_id, const std::vector<Digest>& ids) {
    w.u64(request_id);
    w.u32(static_cast<std::uint32_t>(ids.size()));
    for (const Digest& d : ids) w.digest(d);
  }
  void bulk_after_id(std::uint64_t request_id, std::span<const std::byte> bulk) {
    w.u64(request_id);
    tail = bulk;
  }
  void named(std::uint64_t request_id, const std::string& snapshot) {
    w.u64(request_id);
    w.str16(snapshot);
  }
};

void encode_fields(const Message& m, Writer& w, std::span<const std::byte>& tail) {
  std::visit(BodyEncoder{w, tail}, m);
}

// ---- decoding ----------------------------------------------------------
// One decoder per message shape; decode_fields picks it by type. Each reads
// its fields in wire order and leaves every defect to the reader.

// Checks a limit read at `at` against [lo, hi].
void check_range(Reader& r, std::size_t at, const char* field, std::uint64_t v, std::uint64_t lo,
                 std::uint64_t hi) {
  if (r.ok() && (v < lo || v > hi))
    r.fail(at, std::string(field) + " " + std::to_string(v) + " is outside [" + std::to_string(lo) + ", " +
                   std::to_string(hi) + "]");
}

// A snapshot name field; a bad name makes the message malformed.
std::string read_snapshot_name(Reader& r) {
  std::size_t at = r.pos();
  std::string name = r.str("snapshot", kMaxSnapshotNameBytes);
  check_name(r, at, name, kMaxSnapshotNameBytes, "snapshot name");
  return name;
}

Hello decode_hello(Reader& r) {
  Hello v;
  v.min_version = r.u16("min_version");
  v.max_version = r.u16("max_version");
  std::size_t at = r.pos();
  v.software = r.str("software", kMaxSoftwareBytes);
  check_printable(r, at, v.software, "software");
  if (r.ok() && (v.min_version == 0 || v.min_version > v.max_version))
    r.fail(0, "version range " + std::to_string(v.min_version) + ".." + std::to_string(v.max_version) +
                  " is empty");
  return v;
}

HelloOk decode_hello_ok(Reader& r) {
  HelloOk v;
  v.version = r.u16("version");
  std::size_t at = r.pos();
  v.namespace_name = r.str("namespace", kMaxNamespaceBytes);
  check_name(r, at, v.namespace_name, kMaxNamespaceBytes, "namespace");
  at = r.pos();
  v.max_message_bytes = r.u64("max_message_bytes");
  check_range(r, at, "max_message_bytes", v.max_message_bytes, kMinAnnouncedMessageBytes,
              kMaxMessageBodyBytes);
  at = r.pos();
  v.max_inflight_puts = r.u32("max_inflight_puts");
  check_range(r, at, "max_inflight_puts", v.max_inflight_puts, 1, kMaxInflightPuts);
  at = r.pos();
  v.max_query_ids = r.u32("max_query_ids");
  check_range(r, at, "max_query_ids", v.max_query_ids, 1, kMaxQueryIds);
  v.flags = r.u32("flags");
  return v;
}

// QUERY and GET_CHUNK: a request id and 1 .. limit chunk ids.
Message decode_id_list(MessageType type, Reader& r) {
  std::uint64_t id = r.u64("request_id");
  std::size_t limit = type == MessageType::kQuery ? kMaxQueryIds : kMaxGetChunkIds;
  std::size_t at = r.pos();
  std::size_t n = r.count("id count", limit, kDigestBytes);
  if (r.ok() && n == 0) r.fail(at, "no chunk ids");
  std::vector<Digest> ids;
  ids.reserve(n);
  for (std::size_t i = 0; i < n && r.ok(); ++i) ids.push_back(r.digest("chunk id"));
  if (type == MessageType::kQuery) return Query{id, std::move(ids)};
  return GetChunk{id, std::move(ids)};
}

QueryReply decode_query_reply(Reader& r) {
  QueryReply v;
  v.request_id = r.u64("request_id");
  std::size_t n = r.count("id count", kMaxQueryIds, 0);
  std::size_t bitmap_bytes = (n + 7) / 8;
  if (r.ok() && r.remaining() != bitmap_bytes)
    r.fail(r.pos(), "bitmap of " + std::to_string(n) + " ids needs " + std::to_string(bitmap_bytes) +
                        " bytes, " + std::to_string(r.remaining()) + " follow");
  if (!r.ok()) return v;
  v.missing.resize(n);
  std::uint8_t byte = 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (i % 8 == 0) byte = r.u8("bitmap");
    v.missing[i] = (byte >> (i % 8)) & 1u;
  }
  if (n % 8 != 0 && (byte >> (n % 8)) != 0) r.fail(r.pos() - 1, "bitmap padding bits are set");
  return v;
}

// PUT and CHUNK: a request id (bulk_lead_bytes), then one frame.
Message decode_frame_message(MessageType type, Reader& r) {
  std::uint64_t id = r.u64("request_id");
  if (r.ok() && r.remaining() < kFrameHeaderBytes)
    r.fail(r.pos(), "frame of " + std::to_string(r.remaining()) + " bytes is shorter than a frame header");
  if (r.ok() && r.remaining() > kMaxFrameBytes)
    r.fail(r.pos(), "frame of " + std::to_string(r.remaining()) + " bytes is over the limit of " +
                        std::to_string(kMaxFrameBytes));
  std::vector<std::byte> frame = r.ok() ? r.rest() : std::vector<std::byte>{};
  if (type == MessageType::kPut) return Put{id, std::move(frame)};
  return ChunkData{id, std::move(frame)};
}

PutAck decode_put_ack(Reader& r) {
  PutAck v;
  v.request_id = r.u64("request_id");
  v.chunk_id = r.digest("chunk id");
  return v;
}

// COMMIT and MANIFEST: a request id, a snapshot name, then the manifest.
Message decode_manifest_message(MessageType type, Reader& r) {
  std::uint64_t id = r.u64("request_id");
  std::string name = read_snapshot_name(r);
  if (r.ok() && r.remaining() == 0) r.fail(r.pos(), "empty manifest");
  std::vector<std::byte> manifest = r.ok() ? r.rest() : std::vector<std::byte>{};
  if (type == MessageType::kCommit) return Commit{id, std::move(name), std::move(manifest)};
  return ManifestData{id, std::move(name), std::move(manifest)};
}

// COMMIT_OK, GET_MANIFEST and DELETE: a request id and a snapshot name.
Message decode_named_message(MessageType type, Reader& r) {
  std::uint64_t id = r.u64("request_id");
  std::string name = read_snapshot_name(r);
  if (type == MessageType::kCommitOk) return CommitOk{id, std::move(name)};
  if (type == MessageType::kGetManifest) return GetManifest{id, std::move(name)};
  return Delete{id, std::move(name)};
}

// A LIST cursor: printable ASCII, at most kMaxListCursorBytes.
std::string read_cursor(Reader& r, const char* field) {
  std::size_t at = r.pos();
  std::string cursor = r.str(field, kMaxListCursorBytes);
  check_printable(r, at, cursor, field);
  return cursor;
}

// LIST: a request id; version 2 adds the cursor.
List decode_list(Reader& r) {
  List v;
  v.request_id = r.u64("request_id");
  if (r.ok() && r.remaining() > 0) {
    v.paged = true;
    v.after = read_cursor(r, "after");
  }
  return v;
}

ListReply decode_list_reply(Reader& r) {
  ListReply v;
  v.request_id = r.u64("request_id");
  std::size_t n = r.count("snapshot count", kMaxListedSnapshots, kMinSnapshotInfoBytes);
  v.snapshots.reserve(n);
  for (std::size_t i = 0; i < n && r.ok(); ++i) {
    SnapshotInfo s;
    s.name = read_snapshot_name(r);
    s.created_unix_seconds = r.i64("created");
    s.logical_bytes = r.u64("logical_bytes");
    s.file_count = r.u32("file_count");
    s.chunk_count = r.u32("chunk_count");
    v.snapshots.push_back(std::move(s));
  }
  if (r.ok() && r.remaining() > 0) {
    v.paged = true;
    v.next = read_cursor(r, "next");
  }
  return v;
}

Prune decode_prune(Reader& r) {
  Prune v;
  v.request_id = r.u64("request_id");
  v.keep_last = r.u32("keep_last");
  v.keep_within_seconds = r.u64("keep_within_seconds");
  std::size_t at = r.pos();
  std::uint8_t dry = r.u8("dry_run");
  if (r.ok() && dry > 1) r.fail(at, "dry_run is " + std::to_string(dry) + ", not 0 or 1");
  v.dry_run = dry == 1;
  // The policy begins right after the request id.
  if (r.ok() && v.keep_last == 0 && v.keep_within_seconds == 0)
    r.fail(kRequestIdBytes, "a policy that keeps nothing (keep_last 0 and keep_within_seconds 0)");
  return v;
}

Removed decode_removed(Reader& r) {
  Removed v;
  v.request_id = r.u64("request_id");
  std::size_t n = r.count("name count", kMaxRemovedNames, kMinNameFieldBytes);
  v.snapshots.reserve(n);
  for (std::size_t i = 0; i < n && r.ok(); ++i) v.snapshots.push_back(read_snapshot_name(r));
  v.chunks_freed = r.u64("chunks_freed");
  v.bytes_freed = r.u64("bytes_freed");
  if (r.ok() && r.remaining() > 0) {
    v.counted = true;
    v.unnamed = r.u64("unnamed");
  }
  return v;
}

Error decode_error(Reader& r) {
  Error v;
  v.request_id = r.u64("request_id");
  std::size_t at = r.pos();
  std::uint8_t code = r.u8("code");
  if (r.ok() && !valid_code(code)) r.fail(at, "unknown error code " + std::to_string(code));
  v.code = static_cast<Code>(code);
  v.message = r.str("message", kMaxErrorMessageBytes);
  return v;
}

Message decode_fields(MessageType type, Reader& r) {
  switch (type) {
    case MessageType::kHello:
      return decode_hello(r);
    case MessageType::kHelloOk:
      return decode_hello_ok(r);
    case MessageType::kQuery:
    case MessageType::kGetChunk:
      return decode_id_list(type, r);
    case MessageType::kQueryReply:
      return decode_query_reply(r);
    case MessageType::kPut:
    case MessageType::kChunk:
      return decode_frame_message(type, r);
    case MessageType::kPutAck:
      return decode_put_ack(r);
    case MessageType::kCommit:
    case MessageType::kManifest:
      return decode_manifest_message(type, r);
    case MessageType::kCommitOk:
    case MessageType::kGetManifest:
    case MessageType::kDelete:
      return decode_named_message(type, r);
    case MessageType::kList:
      return decode_list(r);
    case MessageType::kPing:
      return Ping{r.u64("request_id")};
    case MessageType::kPong:
      return Pong{r.u64("request_id")};
    case MessageType::kListReply:
      return decode_list_reply(r);
    case MessageType::kPrune:
      return decode_prune(r);
    case MessageType::kRemoved:
      return decode_removed(r);
    case MessageType::kError:
      return decode_error(r);
    case MessageType::kBye:
      return Bye{};
  }
  r.fail(0, "unknown message type");
  return Bye{};
}

}  // namespace

std::string_view message_type_name(MessageType type) {
  switch (type) {
    case MessageType::kHello:
      return "HELLO";
    case MessageType::kHelloOk:
      return "HELLO_OK";
    case MessageType::kQuery:
      return "QUERY";
    case MessageType::kQueryReply:
      return "QUERY_REPLY";
    case MessageType::kPut:
      return "PUT";
    case MessageType::kPutAck:
      return "PUT_ACK";
    case MessageType::kCommit:
      return "COMMIT";
    case MessageType::kCommitOk:
      return "COMMIT_OK";
    case MessageType::kList:
      return "LIST";
    case MessageType::kListReply:
      return "LIST_REPLY";
    case MessageType::kGetManifest:
      return "GET_MANIFEST";
    case MessageType::kManifest:
      return "MANIFEST";
    case MessageType::kGetChunk:
      return "GET_CHUNK";
    case MessageType::kChunk:
      return "CHUNK";
    case MessageType::kDelete:
      return "DELETE";
    case MessageType::kPrune:
      return "PRUNE";
    case MessageType::kRemoved:
      return "REMOVED";
    case MessageType::kPing:
      return "PING";
    case MessageType::kPong:
      return "PONG";
    case MessageType::kError:
      return "ERROR";
    case MessageType::kBye:
      return "BYE";
  }
  return "UNKNOWN";
}

MessageType message_type(const Message& m) {
  // The variant's alternatives are in type-number order, starting at 1.
  return static_cast<MessageType>(m.index() + 1);
}
static_assert(std::variant_size_v<Message> == static_cast<std::size_t>(MessageType::kBye));

std::string_view message_name(const Message& m) { return message_type_name(message_type(m)); }

std::uint64_t request_id_of(const Message& m) {
  return std::visit(
      [](const auto& v) -> std::uint64_t {
        if constexpr (requires { v.request_id; })
          return v.request_id;
        else
          return 0;
      },
      m);
}

namespace {
// The message with its header; the header's length field is left zero when
// the body is over kMaxMessageBodyBytes (the callers refuse it).
EncodedMessage encode_unchecked(const Message& m, std::size_t& body) {
  EncodedMessage e;
  e.head.reserve(64);
  e.head.resize(kMessageHeaderBytes);
  Writer w(e.head);
  encode_fields(m, w, e.tail);
  body = e.head.size() - kMessageHeaderBytes + e.tail.size();
  if (body <= kMaxMessageBodyBytes) {
    for (int i = 0; i < 4; ++i) e.head[i] = std::byte(static_cast<std::uint8_t>(body >> (8 * i)));
  }
  e.head[4] = std::byte(static_cast<std::uint8_t>(message_type(m)));
  return e;
}
}  // namespace

EncodedMessage encode_message(const Message& m) {
  std::size_t body = 0;
  EncodedMessage e = encode_unchecked(m, body);
  FERRY_CHECK(body <= kMaxMessageBodyBytes);
  return e;
}

Result<EncodedMessage> try_encode_message(const Message& m, std::size_t max_body_bytes) {
  std::size_t body = 0;
  EncodedMessage e = encode_unchecked(m, body);
  const std::size_t limit = std::min(max_body_bytes, kMaxMessageBodyBytes);
  if (body > limit)
    return Status::exhausted(std::string(message_name(m)) + " message of " + std::to_string(body) +
                             " bytes is over the limit of " + std::to_string(limit) + " bytes");
  return e;
}

std::vector<std::byte> encode_message_bytes(const Message& m) {
  EncodedMessage e = encode_message(m);
  std::vector<std::byte> out = std::move(e.head);
  out.insert(out.end(), e.tail.begin(), e.tail.end());
  return out;
}

Result<MessageHeader> parse_message_header(std::span<const std::byte, kMessageHeaderBytes> bytes,
                                           std::size_t max_body_bytes) {
  MessageHeader h;
  for (int i = 0; i < 4; ++i)
    h.body_bytes |= std::uint32_t(std::to_integer<std::uint8_t>(bytes[i])) << (8 * i);
  std::uint8_t type = std::to_integer<std::uint8_t>(bytes[4]);
  if (type < static_cast<std::uint8_t>(MessageType::kHello) ||
      type > static_cast<std::uint8_t>(MessageType::kBye))
    return Status::corruption("malformed message: unknown message type " + std::to_string(type) +
                              " (is the peer speaking ferry's protocol?)");
  h.type = static_cast<MessageType>(type);
  std::size_t limit = std::min(max_body_bytes, kMaxMessageBodyBytes);
  if (h.body_bytes > limit)
    return Status::exhausted(std::string(message_type_name(h.type)) + " message of " +
                             std::to_string(h.body_bytes) + " bytes is over the limit of " +
                             std::to_string(limit) + " bytes");
  return h;
}

Result<Message> decode_body(MessageType type, std::span<const std::byte> body) {
  if (body.size() > kMaxMessageBodyBytes)
    return Status::exhausted("message body of " + std::to_string(body.size()) + " bytes is over the limit");
  Reader r(body, type);
  Message m = decode_fields(type, r);
  RETURN_IF_ERROR(r.finish());
  return m;
}

namespace {
// Hands a decoded message its bulk field's buffer (frame or manifest).
void give_bulk(Message& m, std::vector<std::byte>&& bulk) {
  std::visit(
      [&](auto& v) {
        if constexpr (requires { v.frame; })
          v.frame = std::move(bulk);
        else if constexpr (requires { v.manifest; })
          v.manifest = std::move(bulk);
      },
      m);
}
}  // namespace

Result<Message> decode_body(MessageType type, std::vector<std::byte>&& body) {
  if (body.size() > kMaxMessageBodyBytes)
    return Status::exhausted("message body of " + std::to_string(body.size()) + " bytes is over the limit");
  Reader r(body, type);
  r.keep_bulk_in_place();
  Message m = decode_fields(type, r);
  RETURN_IF_ERROR(r.finish());
  if (r.bulk_offset() != BodyReader::kNoBulk) {
    // The bulk field takes the buffer itself, less the fields before it.
    body.erase(body.begin(), body.begin() + static_cast<std::ptrdiff_t>(r.bulk_offset()));
    give_bulk(m, std::move(body));
  }
  return m;
}

std::size_t bulk_lead_bytes(MessageType type) {
  // Keep in step with decode_fields: PUT and CHUNK are a request id, then the frame.
  switch (type) {
    case MessageType::kPut:
    case MessageType::kChunk:
      return kRequestIdBytes;
    default:
      return 0;
  }
}

Result<Message> decode_body(MessageType type, std::span<const std::byte> lead,
                            std::vector<std::byte>&& bulk) {
  if (lead.size() > kMaxMessageBodyBytes || bulk.size() > kMaxMessageBodyBytes - lead.size())
    return Status::exhausted("message body of " + std::to_string(lead.size() + bulk.size()) +
                             " bytes is over the limit");
  if (bulk.empty()) return decode_body(type, lead);
  Reader r(lead, type, bulk.size());
  r.keep_bulk_in_place();
  Message m = decode_fields(type, r);
  RETURN_IF_ERROR(r.finish());
  if (r.bulk_offset() != lead.size())
    return Status::internal(std::string(message_type_name(type)) + " has no bulk field after " +
                            std::to_string(lead.size()) + " bytes");
  give_bulk(m, std::move(bulk));
  return m;
}

Result<Message> decode_message(std::span<const std::byte> bytes, std::size_t max_body_bytes) {
  if (bytes.size() < kMessageHeaderBytes)
    return Status::corruption("malformed message: " + std::to_string(bytes.size()) +
                              " bytes is shorter than a message header");
  ASSIGN_OR_RETURN(MessageHeader h, parse_message_header(bytes.first<kMessageHeaderBytes>(), max_body_bytes));
  std::span<const std::byte> body = bytes.subspan(kMessageHeaderBytes);
  if (body.size() != h.body_bytes)
    return Status::corruption("malformed message: " + std::string(message_type_name(h.type)) +
                              " header announces " + std::to_string(h.body_bytes) + " body bytes, " +
                              std::to_string(body.size()) + " present");
  return decode_body(h.type, body);
}

Result<std::uint16_t> choose_version(const Hello& hello) {
  std::uint16_t hi = std::min(hello.max_version, kMaxProtocolVersion);
  std::uint16_t lo = std::max(hello.min_version, kMinProtocolVersion);
  if (hello.min_version == 0 || hello.min_version > hello.max_version || lo > hi)
    return Status::unsupported("no common protocol version: the client speaks " +
                               std::to_string(hello.min_version) + ".." + std::to_string(hello.max_version) +
                               ", the receiver " + std::to_string(kMinProtocolVersion) + ".." +
                               std::to_string(kMaxProtocolVersion));
  return hi;
}

Status validate_namespace(std::string_view name) {
  return validate_name(name, kMaxNamespaceBytes, "namespace");
}

Status validate_snapshot_name(std::string_view name) {
  return validate_name(name, kMaxSnapshotNameBytes, "snapshot name");
}

Status status_from_error(const Error& e) {
  Code code = valid_code(static_cast<std::uint8_t>(e.code)) ? e.code : Code::kInternal;
  return Status(code, "receiver: " + e.message);
}

Error error_from_status(std::uint64_t request_id, const Status& s) {
  Error e;
  e.request_id = request_id;
  e.code = s.is_ok() ? Code::kInternal : s.code();
  e.message = s.message().substr(0, kMaxErrorMessageBytes);
  return e;
}

}  // namespace ferry::replication
