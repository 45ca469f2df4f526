// protocol.h: the messages of ferry's replication protocol (docs/PROTOCOL.md)
// and their encoding on the byte stream inside TLS. Every message is
// [u32 body length][u8 type][body], little-endian. Decoding treats the body as
// hostile: every count and length is checked against replication/limits.h
// before anything is allocated, and any defect is a Corruption status naming
// the message type and the byte offset.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "base/status.h"
#include "codec/tree_hash.h"
#include "replication/limits.h"

namespace ferry::replication {

enum class MessageType : std::uint8_t {
  kHello = 1,
  kHelloOk = 2,
  kQuery = 3,
  kQueryReply = 4,
  kPut = 5,
  kPutAck = 6,
  kCommit = 7,
  kCommitOk = 8,
  kList = 9,
  kListReply = 10,
  kGetManifest = 11,
  kManifest = 12,
  kGetChunk = 13,
  kChunk = 14,
  kDelete = 15,
  kPrune = 16,
  kRemoved = 17,
  kPing = 18,
  kPong = 19,
  kError = 20,
  kBye = 21,
};
std::string_view message_type_name(MessageType type);  // "HELLO", "PUT", ...

// client -> server, first message: the versions the client speaks.
struct Hello {
  std::uint16_t min_version = kMinProtocolVersion;
  std::uint16_t max_version = kMaxProtocolVersion;
  std::string software;  // "ferry 0.1.0"; at most kMaxSoftwareBytes, printable
};

inline constexpr std::uint32_t kHelloFlagAppendOnly = 1u << 0;  // this namespace cannot delete

// server -> client: the chosen version, the client's namespace (from its
// certificate) and the receiver's limits, which the client must respect.
struct HelloOk {
  std::uint16_t version = 0;
  std::string namespace_name;
  std::uint64_t max_message_bytes = kDefaultMaxMessageBytes;  // body bytes
  std::uint32_t max_inflight_puts = kDefaultMaxInflightPuts;
  std::uint32_t max_query_ids = kMaxQueryIds;
  std::uint32_t flags = 0;  // kHelloFlag*
};

// Which of these chunks does the receiver lack?
struct Query {
  std::uint64_t request_id = 0;
  std::vector<Digest> ids;  // 1 .. kMaxQueryIds
};
struct QueryReply {
  std::uint64_t request_id = 0;
  std::vector<bool> missing;  // one per queried id, in order
};

// One chunk as a frame (docs/FORMAT.md section 3). The bulk bytes come last
// in the body so they can be sent without a copy (see EncodedMessage).
struct Put {
  std::uint64_t request_id = 0;
  std::vector<std::byte> frame;
};
// Sent only once the chunk is verified and durable.
struct PutAck {
  std::uint64_t request_id = 0;
  Digest chunk_id{};
};

// Publish a snapshot: the manifest (docs/FORMAT.md section 5) whose chunks
// are all durable. The receiver checks that before it commits.
struct Commit {
  std::uint64_t request_id = 0;
  std::string snapshot;  // validate_snapshot_name
  std::vector<std::byte> manifest;
};
struct CommitOk {
  std::uint64_t request_id = 0;
  std::string snapshot;
};

// Version 1: every snapshot in one LIST_REPLY. Version 2 (paged): the
// snapshots after the cursor `after` ("" for the first page), in the same
// order, a page at a time.
struct List {
  std::uint64_t request_id = 0;
  bool paged = false;  // version 2: the cursor field is on the wire
  std::string after;   // a LIST_REPLY's `next`; at most kMaxListCursorBytes
};
struct SnapshotInfo {
  std::string name;
  std::int64_t created_unix_seconds = 0;
  std::uint64_t logical_bytes = 0;  // sum of file sizes
  std::uint32_t file_count = 0;
  std::uint32_t chunk_count = 0;
  bool operator==(const SnapshotInfo&) const = default;
};
struct ListReply {
  std::uint64_t request_id = 0;
  std::vector<SnapshotInfo> snapshots;
  bool paged = false;  // answers a paged LIST: the cursor field is on the wire
  std::string next;    // paged: the cursor of the next page, "" after the last
};

struct GetManifest {
  std::uint64_t request_id = 0;
  std::string snapshot;
};
struct ManifestData {
  std::uint64_t request_id = 0;
  std::string snapshot;
  std::vector<std::byte> manifest;
};

// The receiver answers with one CHUNK or one ERROR per id, in order.
struct GetChunk {
  std::uint64_t request_id = 0;
  std::vector<Digest> ids;  // 1 .. kMaxGetChunkIds
};
struct ChunkData {
  std::uint64_t request_id = 0;
  std::vector<std::byte> frame;
};

struct Delete {
  std::uint64_t request_id = 0;
  std::string snapshot;
};
// Retention: keep the newest keep_last snapshots and every snapshot younger
// than keep_within_seconds; 0 means "no rule". Both 0 is refused (it would
// remove everything).
struct Prune {
  std::uint64_t request_id = 0;
  std::uint32_t keep_last = 0;
  std::uint64_t keep_within_seconds = 0;
  bool dry_run = false;
};
// Answer to DELETE and PRUNE.
struct Removed {
  std::uint64_t request_id = 0;
  std::vector<std::string> snapshots;  // removed (or, dry run, would be)
  std::uint64_t chunks_freed = 0;
  std::uint64_t bytes_freed = 0;
  // Version 2: snapshots removed beyond those named (a REMOVED names at
  // most kMaxRemovedNamesInReply). On the wire only when `counted`.
  bool counted = false;
  std::uint64_t unnamed = 0;
};

struct Ping {
  std::uint64_t request_id = 0;
};
struct Pong {
  std::uint64_t request_id = 0;
};

// A request failed (request_id != 0) or the connection is being refused
// (request_id 0); the sender of an ERROR with id 0 closes afterwards.
struct Error {
  std::uint64_t request_id = 0;
  Code code = Code::kInternal;
  std::string message;  // at most kMaxErrorMessageBytes
};

struct Bye {};

using Message = std::variant<Hello, HelloOk, Query, QueryReply, Put, PutAck, Commit, CommitOk, List,
                             ListReply, GetManifest, ManifestData, GetChunk, ChunkData, Delete, Prune,
                             Removed, Ping, Pong, Error, Bye>;

MessageType message_type(const Message& m);
std::string_view message_name(const Message& m);
// The request id a message carries (0 for HELLO, HELLO_OK, BYE).
std::uint64_t request_id_of(const Message& m);

// An encoded message: `head` holds the 5-byte header and every body byte
// except the bulk field (frame or manifest), which `tail` points at inside
// the Message (valid while it lives and is unchanged). head + tail is the
// message on the wire.
struct EncodedMessage {
  std::vector<std::byte> head;
  std::span<const std::byte> tail;
  std::size_t size() const { return head.size() + tail.size(); }
};
// REQUIRES: the body fits kMaxMessageBodyBytes. A message whose size a peer
// or the store controls goes through try_encode_message instead.
EncodedMessage encode_message(const Message& m);
// encode_message, or ResourceExhausted naming the message and its size when
// the body is over `max_body_bytes` (or kMaxMessageBodyBytes).
Result<EncodedMessage> try_encode_message(const Message& m, std::size_t max_body_bytes);
// head + tail in one buffer (tests, fuzzing, golden bytes).
std::vector<std::byte> encode_message_bytes(const Message& m);

struct MessageHeader {
  std::uint32_t body_bytes = 0;
  MessageType type = MessageType::kBye;
};
// Parses the 5-byte header; refuses an unknown type and a body longer than
// `max_body_bytes` (ResourceExhausted) before any body byte is read.
Result<MessageHeader> parse_message_header(std::span<const std::byte, kMessageHeaderBytes> bytes,
                                           std::size_t max_body_bytes);
// Decodes one body of the given type. Corruption on any defect (truncated,
// trailing bytes, a count or length over its limit, an invalid name).
Result<Message> decode_body(MessageType type, std::span<const std::byte> body);
// The same, taking the body's buffer: the bulk field (frame, manifest) keeps
// it instead of being copied out.
Result<Message> decode_body(MessageType type, std::vector<std::byte>&& body);
// Bytes of the fixed-size fields before the bulk field of `type` (PUT and
// CHUNK: the request id), or 0 when it has none or they vary. A receiver
// reads those apart so the bulk lands at the start of its own buffer.
std::size_t bulk_lead_bytes(MessageType type);
// The same as decode_body(type, lead + bulk), for a body received in two
// parts split at bulk_lead_bytes(type): the bulk field keeps `bulk`.
Result<Message> decode_body(MessageType type, std::span<const std::byte> lead, std::vector<std::byte>&& bulk);
// Header + body in one buffer: exactly one whole message.
Result<Message> decode_message(std::span<const std::byte> bytes,
                               std::size_t max_body_bytes = kMaxMessageBodyBytes);

// The highest version both sides speak, or Unsupported with both ranges.
Result<std::uint16_t> choose_version(const Hello& hello);
// [A-Za-z0-9._-]{1,64}, not "." or "..": a host namespace (the client
// certificate's CN). InvalidArgument otherwise.
Status validate_namespace(std::string_view name);
// [A-Za-z0-9._-]{1,128}, not "." or "..".
Status validate_snapshot_name(std::string_view name);

// A Status from an ERROR message ("receiver: <message>"), and back.
Status status_from_error(const Error& e);
Error error_from_status(std::uint64_t request_id, const Status& s);

}  // namespace ferry::replication
