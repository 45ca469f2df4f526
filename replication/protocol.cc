// protocol.cc: encoding and hostile-input-safe decoding of the replication
// messages (docs/PROTOCOL.md section 3). Every read goes through Reader,
// which checks the remaining length first and remembers the first failure,
// so a decoder is a straight sequence of field reads followed by one check.
#include "replication/protocol.h"

#include "codec/byte_writer.h"

#include <cstring>
#include <type_traits>

namespace ferry::replication {
namespace detail {
// For a static_assert in an if-constexpr chain that must fail only when reached.
template <class>
inline constexpr bool kAlwaysFalse = false;
}  // namespace detail
namespace {

using Writer = ByteWriter;

class Reader {
 public:
  Reader(std::span<const std::byte> b, MessageType type) : b_(b), type_(type) {}
  // A body whose bulk field (`apart_bytes` long) was received into a buffer
  // of its own: `b` holds only the fields before it.
  Reader(std::span<const std::byte> b, MessageType type, std::size_t apart_bytes)
      : b_(b), type_(type), apart_(apart_bytes) {}

  bool ok() const { return error_.empty(); }
  std::uint8_t u8(const char* field) { return static_cast<std::uint8_t>(le(1, field)); }
  std::uint16_t u16(const char* field) { return static_cast<std::uint16_t>(le(2, field)); }
  std::uint32_t u32(const char* field) { return static_cast<std::uint32_t>(le(4, field)); }
  std::uint64_t u64(const char* field) { return le(8, field); }
  std::int64_t i64(const char* field) { return static_cast<std::int64_t>(le(8, field)); }
  Digest digest(const char* field) {
    Digest d{};
    if (need(d.size(), field)) {
      std::memcpy(d.data(), b_.data() + pos_, d.size());
      pos_ += d.size();
    }
    return d;
  }
  std::string str(const char* field, std::size_t max_bytes) {
    std::size_t at = pos_;
    std::uint16_t n = u16(field);
    if (!ok()) return {};
    if (n > max_bytes) {
      fail(at, std::string(field) + " is " + std::to_string(n) + " bytes, more than the limit of " +
                   std::to_string(max_bytes));
      return {};
    }
    if (!need(n, field)) return {};
    std::string s(reinterpret_cast<const char*>(b_.data() + pos_), n);
    pos_ += n;
    return s;
  }
  // A u32 count that must be <= max_count and, at `min_bytes_each`, fit in
  // what remains (so a hostile count cannot make us allocate).
  std::size_t count(const char* field, std::size_t max_count, std::size_t min_bytes_each) {
    std::size_t at = pos_;
    std::uint32_t n = u32(field);
    if (!ok()) return 0;
    if (n > max_count) {
      fail(at, std::string(field) + " " + std::to_string(n) + " is over the limit of " +
                   std::to_string(max_count));
      return 0;
    }
    if (min_bytes_each > 0 && n > remaining() / min_bytes_each) {
      fail(at, std::string(field) + " " + std::to_string(n) + " does not fit in the " +
                   std::to_string(remaining()) + " bytes that follow");
      return 0;
    }
    return n;
  }
  // Everything left (the bulk field, always last). With keep_bulk_in_place
  // it returns nothing and records where the field starts, for the caller
  // that owns the buffer to hand it over without a copy.
  std::vector<std::byte> rest() {
    if (apart_ > 0 && pos_ != b_.size()) {
      fail(pos_, "bulk field does not start where it was received apart");
      return {};
    }
    if (in_place_) {
      bulk_at_ = pos_;
      pos_ = b_.size();
      return {};
    }
    std::vector<std::byte> v(b_.begin() + pos_, b_.end());
    pos_ = b_.size();
    return v;
  }
  static constexpr std::size_t kNoBulk = ~std::size_t{0};
  void keep_bulk_in_place() { in_place_ = true; }
  std::size_t bulk_offset() const { return bulk_at_; }
  std::size_t remaining() const { return b_.size() - pos_ + apart_; }
  std::size_t pos() const { return pos_; }
  void fail(std::size_t at, std::string what) {
    if (ok()) error_ = std::string(message_type_name(type_)) + " at byte " + std::to_string(at) + ": " + what;
  }
  Status finish() {
    const std::size_t left = b_.size() - pos_ + (bulk_at_ == kNoBulk ? apart_ : 0);
    if (ok() && left != 0) fail(pos_, std::to_string(left) + " unexpected trailing bytes");
    if (ok()) return Status::ok();
    return Status::corruption("malformed message: " + error_);
  }

 private:
  bool need(std::size_t n, const char* field) {
    if (!ok()) return false;
    if (b_.size() - pos_ < n) {
      fail(pos_, std::string("truncated in ") + field + " (needs " + std::to_string(n) + " bytes, " +
                     std::to_string(remaining()) + " left)");
      return false;
    }
    return true;
  }
  std::uint64_t le(int n, const char* field) {
    if (!need(static_cast<std::size_t>(n), field)) return 0;
    std::uint64_t v = 0;
    for (int i = 0; i < n; ++i) v |= std::uint64_t(std::to_integer<std::uint8_t>(b_[pos_ + i])) << (8 * i);
    pos_ += static_cast<std::size_t>(n);
    return v;
  }

  std::span<const std::byte> b_;
  MessageType type_;
  std::size_t pos_ = 0;
  std::string error_;
  bool in_place_ = false;
  std::size_t bulk_at_ = kNoBulk;
  std::size_t apart_ = 0;  // bulk bytes held outside b_
};

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

void encode_fields(const Message& m, Writer& w, std::span<const std::byte>& tail) {
  std::visit(
      [&](const auto& v) {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, Hello>) {
          w.u16(v.min_version);
          w.u16(v.max_version);
          w.str16(v.software);
        } else if constexpr (std::is_same_v<T, HelloOk>) {
          w.u16(v.version);
          w.str16(v.namespace_name);
          w.u64(v.max_message_bytes);
          w.u32(v.max_inflight_puts);
          w.u32(v.max_query_ids);
          w.u32(v.flags);
        } else if constexpr (std::is_same_v<T, Query> || std::is_same_v<T, GetChunk>) {
          w.u64(v.request_id);
          w.u32(static_cast<std::uint32_t>(v.ids.size()));
          for (const Digest& d : v.ids) w.digest(d);
        } else if constexpr (std::is_same_v<T, QueryReply>) {
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
        } else if constexpr (std::is_same_v<T, Put> || std::is_same_v<T, ChunkData>) {
          w.u64(v.request_id);
          tail = v.frame;
        } else if constexpr (std::is_same_v<T, PutAck>) {
          w.u64(v.request_id);
          w.digest(v.chunk_id);
        } else if constexpr (std::is_same_v<T, Commit> || std::is_same_v<T, ManifestData>) {
          w.u64(v.request_id);
          w.str16(v.snapshot);
          tail = v.manifest;
        } else if constexpr (std::is_same_v<T, CommitOk> || std::is_same_v<T, GetManifest> ||
                             std::is_same_v<T, Delete>) {
          w.u64(v.request_id);
          w.str16(v.snapshot);
        } else if constexpr (std::is_same_v<T, List> || std::is_same_v<T, Ping> || std::is_same_v<T, Pong>) {
          w.u64(v.request_id);
        } else if constexpr (std::is_same_v<T, ListReply>) {
          w.u64(v.request_id);
          w.u32(static_cast<std::uint32_t>(v.snapshots.size()));
          for (const SnapshotInfo& s : v.snapshots) {
            w.str16(s.name);
            w.i64(s.created_unix_seconds);
            w.u64(s.logical_bytes);
            w.u32(s.file_count);
            w.u32(s.chunk_count);
          }
        } else if constexpr (std::is_same_v<T, Prune>) {
          w.u64(v.request_id);
          w.u32(v.keep_last);
          w.u64(v.keep_within_seconds);
          w.u8(v.dry_run ? 1 : 0);
        } else if constexpr (std::is_same_v<T, Removed>) {
          w.u64(v.request_id);
          w.u32(static_cast<std::uint32_t>(v.snapshots.size()));
          for (const std::string& s : v.snapshots) w.str16(s);
          w.u64(v.chunks_freed);
          w.u64(v.bytes_freed);
        } else if constexpr (std::is_same_v<T, Error>) {
          w.u64(v.request_id);
          w.u8(static_cast<std::uint8_t>(v.code));
          w.str16(std::string_view(v.message).substr(0, kMaxErrorMessageBytes));
        } else if constexpr (std::is_same_v<T, Bye>) {
        } else {
          static_assert(detail::kAlwaysFalse<T>, "message without an encoder");
        }
      },
      m);
}

// ---- decoding ----------------------------------------------------------

Message decode_fields(MessageType type, Reader& r) {
  switch (type) {
    case MessageType::kHello: {
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
    case MessageType::kHelloOk: {
      HelloOk v;
      v.version = r.u16("version");
      std::size_t at = r.pos();
      v.namespace_name = r.str("namespace", kMaxNamespaceBytes);
      check_name(r, at, v.namespace_name, kMaxNamespaceBytes, "namespace");
      at = r.pos();
      v.max_message_bytes = r.u64("max_message_bytes");
      if (r.ok() &&
          (v.max_message_bytes < kMinAnnouncedMessageBytes || v.max_message_bytes > kMaxMessageBodyBytes))
        r.fail(at, "max_message_bytes " + std::to_string(v.max_message_bytes) + " is outside [" +
                       std::to_string(kMinAnnouncedMessageBytes) + ", " +
                       std::to_string(kMaxMessageBodyBytes) + "]");
      at = r.pos();
      v.max_inflight_puts = r.u32("max_inflight_puts");
      if (r.ok() && (v.max_inflight_puts == 0 || v.max_inflight_puts > kMaxInflightPuts))
        r.fail(at, "max_inflight_puts " + std::to_string(v.max_inflight_puts) + " is outside [1, " +
                       std::to_string(kMaxInflightPuts) + "]");
      at = r.pos();
      v.max_query_ids = r.u32("max_query_ids");
      if (r.ok() && (v.max_query_ids == 0 || v.max_query_ids > kMaxQueryIds))
        r.fail(at, "max_query_ids " + std::to_string(v.max_query_ids) + " is outside [1, " +
                       std::to_string(kMaxQueryIds) + "]");
      v.flags = r.u32("flags");
      return v;
    }
    case MessageType::kQuery:
    case MessageType::kGetChunk: {
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
    case MessageType::kQueryReply: {
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
    case MessageType::kPut:
    case MessageType::kChunk: {
      std::uint64_t id = r.u64("request_id");
      if (r.ok() && r.remaining() < kFrameHeaderBytes)
        r.fail(r.pos(),
               "frame of " + std::to_string(r.remaining()) + " bytes is shorter than a frame header");
      if (r.ok() && r.remaining() > kMaxFrameBytes)
        r.fail(r.pos(), "frame of " + std::to_string(r.remaining()) + " bytes is over the limit of " +
                            std::to_string(kMaxFrameBytes));
      std::vector<std::byte> frame = r.ok() ? r.rest() : std::vector<std::byte>{};
      if (type == MessageType::kPut) return Put{id, std::move(frame)};
      return ChunkData{id, std::move(frame)};
    }
    case MessageType::kPutAck: {
      PutAck v;
      v.request_id = r.u64("request_id");
      v.chunk_id = r.digest("chunk id");
      return v;
    }
    case MessageType::kCommit:
    case MessageType::kManifest: {
      std::uint64_t id = r.u64("request_id");
      std::size_t at = r.pos();
      std::string name = r.str("snapshot", kMaxSnapshotNameBytes);
      check_name(r, at, name, kMaxSnapshotNameBytes, "snapshot name");
      if (r.ok() && r.remaining() == 0) r.fail(r.pos(), "empty manifest");
      std::vector<std::byte> manifest = r.ok() ? r.rest() : std::vector<std::byte>{};
      if (type == MessageType::kCommit) return Commit{id, std::move(name), std::move(manifest)};
      return ManifestData{id, std::move(name), std::move(manifest)};
    }
    case MessageType::kCommitOk:
    case MessageType::kGetManifest:
    case MessageType::kDelete: {
      std::uint64_t id = r.u64("request_id");
      std::size_t at = r.pos();
      std::string name = r.str("snapshot", kMaxSnapshotNameBytes);
      check_name(r, at, name, kMaxSnapshotNameBytes, "snapshot name");
      if (type == MessageType::kCommitOk) return CommitOk{id, std::move(name)};
      if (type == MessageType::kGetManifest) return GetManifest{id, std::move(name)};
      return Delete{id, std::move(name)};
    }
    case MessageType::kList:
      return List{r.u64("request_id")};
    case MessageType::kPing:
      return Ping{r.u64("request_id")};
    case MessageType::kPong:
      return Pong{r.u64("request_id")};
    case MessageType::kListReply: {
      ListReply v;
      v.request_id = r.u64("request_id");
      std::size_t n = r.count("snapshot count", kMaxListedSnapshots, kMinSnapshotInfoBytes);
      v.snapshots.reserve(n);
      for (std::size_t i = 0; i < n && r.ok(); ++i) {
        SnapshotInfo s;
        std::size_t at = r.pos();
        s.name = r.str("snapshot", kMaxSnapshotNameBytes);
        check_name(r, at, s.name, kMaxSnapshotNameBytes, "snapshot name");
        s.created_unix_seconds = r.i64("created");
        s.logical_bytes = r.u64("logical_bytes");
        s.file_count = r.u32("file_count");
        s.chunk_count = r.u32("chunk_count");
        v.snapshots.push_back(std::move(s));
      }
      return v;
    }
    case MessageType::kPrune: {
      Prune v;
      v.request_id = r.u64("request_id");
      v.keep_last = r.u32("keep_last");
      v.keep_within_seconds = r.u64("keep_within_seconds");
      std::size_t at = r.pos();
      std::uint8_t dry = r.u8("dry_run");
      if (r.ok() && dry > 1) r.fail(at, "dry_run is " + std::to_string(dry) + ", not 0 or 1");
      v.dry_run = dry == 1;
      if (r.ok() && v.keep_last == 0 && v.keep_within_seconds == 0)
        r.fail(kRequestIdBytes, "a policy that keeps nothing (keep_last 0 and keep_within_seconds 0)");
      return v;
    }
    case MessageType::kRemoved: {
      Removed v;
      v.request_id = r.u64("request_id");
      std::size_t n = r.count("name count", kMaxRemovedNames, kMinNameFieldBytes);
      v.snapshots.reserve(n);
      for (std::size_t i = 0; i < n && r.ok(); ++i) {
        std::size_t at = r.pos();
        std::string s = r.str("snapshot", kMaxSnapshotNameBytes);
        check_name(r, at, s, kMaxSnapshotNameBytes, "snapshot name");
        v.snapshots.push_back(std::move(s));
      }
      v.chunks_freed = r.u64("chunks_freed");
      v.bytes_freed = r.u64("bytes_freed");
      return v;
    }
    case MessageType::kError: {
      Error v;
      v.request_id = r.u64("request_id");
      std::size_t at = r.pos();
      std::uint8_t code = r.u8("code");
      if (r.ok() && !valid_code(code)) r.fail(at, "unknown error code " + std::to_string(code));
      v.code = static_cast<Code>(code);
      v.message = r.str("message", kMaxErrorMessageBytes);
      return v;
    }
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

EncodedMessage encode_message(const Message& m) {
  EncodedMessage e;
  e.head.reserve(64);
  e.head.resize(kMessageHeaderBytes);
  Writer w(e.head);
  encode_fields(m, w, e.tail);
  std::size_t body = e.head.size() - kMessageHeaderBytes + e.tail.size();
  FERRY_CHECK(body <= kMaxMessageBodyBytes);
  for (int i = 0; i < 4; ++i) e.head[i] = std::byte(static_cast<std::uint8_t>(body >> (8 * i)));
  e.head[4] = std::byte(static_cast<std::uint8_t>(message_type(m)));
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
  if (r.bulk_offset() != Reader::kNoBulk) {
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
