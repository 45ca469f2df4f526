// connection.cc: blocking TLS message streams over the io engine. Ciphertext
// leaves through two buffers (one being sent while TLS writes records into
// the other; they trade places without a copy) and arrives through one large
// receive buffer.
#include "replication/connection.h"
#include "base/clock.h"

#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <iterator>
#include <thread>

namespace ferry::replication {
namespace {

constexpr std::uint64_t kTagConnect = 1;
constexpr std::uint64_t kTagSend = 2;
constexpr std::uint64_t kTagRecv = 3;
// Ciphertext of one plaintext slice is the slice plus per-record overhead
// (22 bytes per 16 KiB record in TLS 1.3); the slack lets one buffer hold it.
constexpr std::size_t kCipherSlackBytes = 32u << 10;
constexpr std::size_t kSendBufferBytes = kCipherBufferBytes + kCipherSlackBytes;
// close(): how long a close_notify may take to leave.
constexpr int kCloseTimeoutMs = 1000;

// The kernel's id of the calling thread. Not std::thread::id: glibc hands an
// exited thread's id to the next thread it starts, and an io_uring ring set
// up SINGLE_ISSUER refuses (EEXIST) submissions from any task but its
// creator, so a connection used by a short-lived thread after another one
// (the packer's read-ahead threads asking have/need on the control
// connection, one per window) must see the change. Asked once per thread:
// gettid is a system call, and every send and receive asks.
std::size_t this_thread_key() {
  thread_local const std::size_t key = static_cast<std::size_t>(::gettid());
  return key;
}

// The host part of "host:port", "[v6]:port".
std::string host_of(std::string_view host_port) {
  if (!host_port.empty() && host_port.front() == '[') {
    std::size_t end = host_port.find(']');
    if (end != std::string_view::npos) return std::string(host_port.substr(1, end - 1));
  }
  std::size_t colon = host_port.rfind(':');
  return std::string(colon == std::string_view::npos ? host_port : host_port.substr(0, colon));
}

}  // namespace

Connection::Connection(io::Socket socket, ConnectionOptions options)
    : socket_(std::move(socket)), options_(options) {
  send_buf_.reserve(kSendBufferBytes);  // trades places with TLS's buffer (pump_out)
  recv_buf_ = std::make_unique<std::byte[]>(kCipherBufferBytes);
}

Connection::~Connection() { close(); }

Status Connection::ensure_engine() {
  std::size_t me = this_thread_key();
  if (engine_ && engine_thread_ == me) return Status::ok();
  if (engine_) {
    FERRY_CHECK(engine_->outstanding() == 0);
    engine_.reset();
  }
  io::EngineOptions eo;
  eo.backend = options_.backend;
  eo.queue_depth = kConnectionQueueDepth;
  eo.single_thread = true;
  // The provided-buffer ring of multishot receive costs megabytes per
  // engine; a connection reads into its own buffer instead.
  eo.recv_multishot = false;
  eo.threads = 2;
  eo.log_choice = false;
  ASSIGN_OR_RETURN(engine_, io::make_engine(eo));
  engine_thread_ = me;
  return Status::ok();
}

Result<std::unique_ptr<Connection>> Connection::dial(const io::SocketAddress& addr,
                                                     std::shared_ptr<const TlsContext> ctx,
                                                     std::string server_name,
                                                     const ConnectionOptions& options) {
  if (ctx->role() != TlsRole::kClient)
    return Status::invalid_argument("Connection::connect needs a client TLS context");
  ASSIGN_OR_RETURN(io::Socket sock, io::Socket::tcp_for(addr));
  std::unique_ptr<Connection> c(new Connection(std::move(sock), options));
  RETURN_IF_ERROR(c->ensure_engine());
  RETURN_IF_ERROR(
      c->engine_->submit(io::Op::connect(c->socket_, addr, kTagConnect, options.connect_timeout_ms)));
  ASSIGN_OR_RETURN(io::Completion done, c->engine_->wait_one());
  if (!done.status.is_ok())
    return Status(done.status.code(), "cannot connect to " + addr.to_string() + ": " + done.status.message());
  // Ignored on failure: Nagle only delays small messages, it breaks nothing.
  (void)c->socket_.set_no_delay(true);
  std::string name = ctx->config().expected_server_name.empty() ? std::move(server_name)
                                                                : ctx->config().expected_server_name;
  ASSIGN_OR_RETURN(c->tls_, TlsSession::create(std::move(ctx), addr.to_string(), name));
  RETURN_IF_ERROR(c->run_handshake());
  return c;
}

Result<std::unique_ptr<Connection>> Connection::connect(const io::SocketAddress& addr,
                                                        std::shared_ptr<const TlsContext> ctx,
                                                        const ConnectionOptions& options) {
  return dial(addr, std::move(ctx), host_of(addr.to_string()), options);
}

Result<std::unique_ptr<Connection>> Connection::connect(std::string_view host_port,
                                                        std::shared_ptr<const TlsContext> ctx,
                                                        const ConnectionOptions& options) {
  ASSIGN_OR_RETURN(io::SocketAddress addr, io::SocketAddress::parse(host_port));
  return dial(addr, std::move(ctx), host_of(host_port), options);
}

Result<std::unique_ptr<Connection>> Connection::accept(io::Socket socket,
                                                       std::shared_ptr<const TlsContext> ctx,
                                                       const ConnectionOptions& options) {
  if (ctx->role() != TlsRole::kServer)
    return Status::invalid_argument("Connection::accept needs a server TLS context");
  (void)socket.set_no_delay(true);
  std::string peer = socket.name();
  std::unique_ptr<Connection> c(new Connection(std::move(socket), options));
  c->server_ = true;
  ASSIGN_OR_RETURN(c->tls_, TlsSession::create(std::move(ctx), peer));
  RETURN_IF_ERROR(c->ensure_engine());
  RETURN_IF_ERROR(c->run_handshake());
  return c;
}

Status Connection::run_handshake() {
  std::int64_t deadline = mono_ms() + options_.handshake_timeout_ms;
  for (;;) {
    Result<bool> step = tls_->handshake();
    // Send what TLS produced even on failure: it is the alert that tells
    // the peer why (best effort, briefly).
    Status sent = pump_out(true);
    if (!step.is_ok()) return step.status();
    RETURN_IF_ERROR(sent);
    if (*step) return Status::ok();
    std::int64_t left = deadline - mono_ms();
    if (left <= 0)
      return Status::timeout("TLS handshake with " + peer_name() + " did not finish within " +
                             std::to_string(options_.handshake_timeout_ms) + " ms");
    RETURN_IF_ERROR(pull_ciphertext(static_cast<int>(left), "the TLS handshake"));
  }
}

Status Connection::wait_send() {
  if (!send_in_flight_) return Status::ok();
  ASSIGN_OR_RETURN(io::Completion done, engine_->wait_one());
  send_in_flight_ = false;
  counters_.cipher_bytes_out += done.status.is_ok() ? done.bytes : 0;
  if (!done.status.is_ok()) {
    open_ = false;  // part of a TLS record may have left: the stream is unusable
    if (done.status.code() == Code::kTimeout)
      return Status::timeout("sending to " + peer_name() + ": the peer accepted no data for " +
                             std::to_string(options_.io_timeout_ms) + " ms");
    return done.status.with_context("sending to " + peer_name());
  }
  return Status::ok();
}

Status Connection::pump_out(bool all) {
  RETURN_IF_ERROR(ensure_engine());
  while (tls_->pending_ciphertext() > 0) {
    // Once the previous send is done its buffer is free: it and the one TLS
    // wrote the records into trade places, so the records are sent from
    // where they were written while TLS writes on into the other.
    RETURN_IF_ERROR(wait_send());
    tls_->take_ciphertext_buffer(send_buf_);
    RETURN_IF_ERROR(engine_->submit(io::Op::send(socket_, send_buf_, kTagSend, options_.io_timeout_ms)));
    send_in_flight_ = true;
  }
  if (all) RETURN_IF_ERROR(wait_send());
  return Status::ok();
}

Status Connection::pull_ciphertext(int timeout_ms, std::string_view during) {
  RETURN_IF_ERROR(ensure_engine());
  RETURN_IF_ERROR(wait_send());
  RETURN_IF_ERROR(engine_->submit(
      io::Op::recv(socket_, {recv_buf_.get(), kCipherBufferBytes}, kTagRecv, std::max(timeout_ms, 1))));
  ASSIGN_OR_RETURN(io::Completion done, engine_->wait_one());
  if (!done.status.is_ok()) {
    if (done.status.code() == Code::kTimeout)
      return Status::timeout("no data from " + peer_name() + " for " + std::to_string(timeout_ms) +
                             " ms during " + std::string(during));
    return done.status.with_context("receiving from " + peer_name() + " during " + std::string(during));
  }
  if (done.bytes == 0)
    return Status::unavailable(peer_name() + " closed the connection during " + std::string(during));
  counters_.cipher_bytes_in += done.bytes;
  return tls_->feed_ciphertext({recv_buf_.get(), done.bytes});
}

Status Connection::read_exact(std::span<std::byte> out, std::int64_t deadline_ms, bool at_start,
                              bool first_byte_deadline) {
  std::size_t got = 0;
  while (got < out.size()) {
    Result<std::size_t> r = tls_->read_plaintext(out.subspan(got));
    if (!r.is_ok()) {
      open_ = false;
      return r.status();
    }
    std::size_t n = *r;
    if (n > 0) {
      got += n;
      continue;
    }
    // TLS may owe the peer something (a key update answer).
    RETURN_IF_ERROR(pump_out(true));
    int wait_ms = options_.io_timeout_ms;
    if (deadline_ms >= 0 && !(first_byte_deadline && got > 0)) {
      std::int64_t left = deadline_ms - mono_ms();
      if (left <= 0)
        return Status::timeout("no " + std::string(at_start && got == 0 ? "message" : "complete message") +
                               " from " + peer_name() + " in time");
      wait_ms = static_cast<int>(left);
    }
    Status s =
        pull_ciphertext(wait_ms, at_start && got == 0 ? "a wait for a message" : "a message (part received)");
    if (!s.is_ok()) {
      // Waiting for a message that has not begun may be retried; anything
      // else leaves the stream out of step.
      if (!(at_start && got == 0 && s.code() == Code::kTimeout)) open_ = false;
      return s;
    }
  }
  return Status::ok();
}

Status Connection::send(const Message& m) {
  if (!open_) return Status::unavailable("connection to " + peer_name() + " is closed");
  // A receiver never sends more than it announced, which is what its
  // client accepts; a reply too large for that (a store's manifest or frame
  // past the limit) is refused here, before a byte of it leaves.
  ASSIGN_OR_RETURN(EncodedMessage e,
                   try_encode_message(m, server_ ? options_.max_message_bytes : kMaxMessageBodyBytes));
  std::span<const std::byte> parts[2] = {e.head, e.tail};
  for (std::span<const std::byte> part : parts) {
    while (!part.empty()) {
      std::size_t n = std::min(part.size(), kPlainWriteSliceBytes);
      RETURN_IF_ERROR(tls_->write_plaintext(part.first(n)));
      part = part.subspan(n);
      RETURN_IF_ERROR(pump_out(false));
    }
  }
  RETURN_IF_ERROR(pump_out(true));
  counters_.plain_bytes_out += e.size();
  ++counters_.messages_out;
  return Status::ok();
}

Status Connection::send_raw(std::span<const std::byte> bytes) {
  if (!open_) return Status::unavailable("connection to " + peer_name() + " is closed");
  RETURN_IF_ERROR(tls_->write_plaintext(bytes));
  return pump_out(true);
}

Result<Message> Connection::recv(int timeout_ms) { return recv_message(timeout_ms, false); }

bool Connection::input_ready() const {
  if (!open_ || !tls_) return true;
  if (tls_->has_buffered_input()) return true;
  pollfd p{};
  p.fd = socket_.fd();
  p.events = POLLIN | POLLRDHUP;
  return ::poll(&p, 1, 0) != 0;  // readable, hung up, failed, or poll itself failed
}

Result<Message> Connection::recv_next(int first_byte_timeout_ms) {
  return recv_message(first_byte_timeout_ms, true);
}

Result<Message> Connection::recv_message(int timeout_ms, bool first_byte_deadline) {
  if (!open_) return Status::unavailable("connection to " + peer_name() + " is closed");
  std::int64_t deadline = timeout_ms >= 0 ? mono_ms() + timeout_ms : -1;
  std::array<std::byte, kMessageHeaderBytes> head;
  RETURN_IF_ERROR(read_exact(head, deadline, true, first_byte_deadline));
  if (first_byte_deadline) deadline = -1;
  Result<MessageHeader> h = parse_message_header(head, options_.max_message_bytes);
  if (!h.is_ok()) return h.status().with_context("from " + peer_name());
  // A frame-carrying body is read in two parts, so the frame lands at the
  // start of its own buffer (a recycled one when the caller gave it back)
  // and is never shifted down over the fields before it.
  std::array<std::byte, kMaxBulkLeadBytes> lead_buf;
  const std::size_t lead_bytes = bulk_lead_bytes(h->type);
  FERRY_CHECK(lead_bytes <= lead_buf.size());
  const bool apart = lead_bytes > 0 && h->body_bytes > lead_bytes;
  std::span<std::byte> lead(lead_buf.data(), apart ? lead_bytes : 0);
  if (apart) RETURN_IF_ERROR(read_exact(lead, deadline, false));
  const std::size_t rest_bytes = h->body_bytes - lead.size();
  std::vector<std::byte> body;
  if (apart) body = std::exchange(spare_body_, {});
  // A recycled buffer's bytes up to its last size are read over as they
  // are, not zeroed first (a vector zeroes what it grows by); past that the
  // body grows as it arrives, so a peer that announces a large body and
  // sends little costs little.
  body.resize(std::min(body.size(), rest_bytes));  // shrinking writes nothing
  std::size_t have = 0;
  while (have < rest_bytes) {
    if (body.size() == have) body.resize(std::min<std::size_t>(rest_bytes, have + kBodyGrowStepBytes));
    RETURN_IF_ERROR(read_exact(std::span(body).subspan(have), deadline, false));
    have = body.size();
  }
  counters_.plain_bytes_in += kMessageHeaderBytes + h->body_bytes;
  ++counters_.messages_in;
  Result<Message> m =
      apart ? decode_body(h->type, lead, std::move(body)) : decode_body(h->type, std::move(body));
  if (!m.is_ok()) return m.status().with_context("from " + peer_name());
  return m;
}

void Connection::recycle(std::vector<std::byte>&& buffer) {
  if (buffer.capacity() > spare_body_.capacity() && buffer.capacity() <= kMaxSpareBodyBytes)
    spare_body_ = std::move(buffer);
}

Result<HelloOk> Connection::hello(std::string_view software) {
  Hello h;
  h.software = std::string(software.substr(0, kMaxSoftwareBytes));
  Status sent = send(h);
  if (!sent.is_ok()) {
    // A receiver that refused our certificate has sent its alert already and
    // may have reset the connection; the alert says more than "connection
    // reset", so read what arrived before giving up.
    open_ = true;
    Result<Message> alert = recv(kCloseTimeoutMs);
    open_ = false;
    if (!alert.is_ok() && alert.status().code() == Code::kPermissionDenied) return alert.status();
    return sent;
  }
  Result<Message> reply = recv(options_.handshake_timeout_ms);
  if (!reply.is_ok()) return reply.status();
  if (auto* e = std::get_if<Error>(&*reply)) return status_from_peer_error(*e);
  auto* ok = std::get_if<HelloOk>(&*reply);
  if (ok == nullptr)
    return Status::corruption(peer_name() + " answered HELLO with " + std::string(message_name(*reply)));
  if (ok->version < h.min_version || ok->version > h.max_version)
    return Status::unsupported(peer_name() + " chose protocol version " + std::to_string(ok->version) +
                               ", which this build does not speak");
  options_.max_message_bytes = std::max<std::size_t>(
      options_.max_message_bytes, std::min<std::size_t>(ok->max_message_bytes, kMaxMessageBodyBytes));
  version_ = ok->version;
  return *ok;
}

Result<HelloOk> Connection::serve_hello(const HelloOk& limits) {
  ASSIGN_OR_RETURN(Message m, recv(options_.handshake_timeout_ms));
  auto* h = std::get_if<Hello>(&m);
  if (h == nullptr) {
    Status s =
        Status::corruption(peer_name() + " began with " + std::string(message_name(m)) + " instead of HELLO");
    (void)send(error_from_status(0, s));
    return s;
  }
  Result<std::uint16_t> version = choose_version(*h);
  if (!version.is_ok()) {
    (void)send(error_from_status(0, version.status()));
    return version.status().with_context(peer_name());
  }
  HelloOk ok = limits;
  ok.version = *version;
  ok.namespace_name = peer_identity();
  RETURN_IF_ERROR(send(ok));
  options_.max_message_bytes = static_cast<std::size_t>(limits.max_message_bytes);
  version_ = ok.version;
  return ok;
}

const std::string& Connection::peer_identity() const { return tls_->peer_identity(); }

std::string Connection::cipher_description() const { return tls_->cipher_description(); }

io::Backend Connection::backend() const { return engine_ ? engine_->backend() : options_.backend; }

void Connection::close() {
  if (open_ && tls_ && tls_->handshake_done() && engine_thread_ == this_thread_key() && engine_ &&
      engine_->outstanding() == 0) {
    tls_->shutdown();
    int saved = options_.io_timeout_ms;
    options_.io_timeout_ms = kCloseTimeoutMs;
    (void)pump_out(true);
    options_.io_timeout_ms = saved;
  }
  abort();
}

void Connection::abort() {
  open_ = false;
  if (engine_ && engine_->outstanding() > 0) engine_->cancel_all_and_drain();
  send_in_flight_ = false;
  socket_.close();
}

Status status_from_peer_error(const Error& e) {
  Status st = status_from_error(e);
  return e.request_id != 0 ? st.with_detail(Detail::kRefusedByPeer) : st;
}

Result<std::vector<SnapshotInfo>> list_snapshots(std::uint16_t version, const Requester& request,
                                                 std::string_view peer) {
  std::vector<SnapshotInfo> out;
  List list;
  list.paged = version >= kPagedListVersion;
  for (;;) {
    ASSIGN_OR_RETURN(Message m, request(list));
    auto* reply = std::get_if<ListReply>(&m);
    if (reply == nullptr)
      return Status::corruption(std::string(peer) + " answered LIST with " + std::string(message_name(m)));
    if (out.size() + reply->snapshots.size() > kMaxListedSnapshots)
      return Status::corruption(std::string(peer) + " listed more than " +
                                std::to_string(kMaxListedSnapshots) + " snapshots");
    std::move(reply->snapshots.begin(), reply->snapshots.end(), std::back_inserter(out));
    if (!list.paged || reply->next.empty()) return out;
    // A cursor that does not move would list forever.
    if (reply->snapshots.empty() || reply->next == list.after)
      return Status::corruption(std::string(peer) + " answered a LIST page without progress");
    list.after = std::move(reply->next);
  }
}

Result<std::vector<SnapshotInfo>> list_snapshots(Connection& c) {
  std::uint64_t next_id = 0;
  Requester request = [&](Message m) -> Result<Message> {
    const std::uint64_t id = ++next_id;
    std::get<List>(m).request_id = id;
    RETURN_IF_ERROR(c.send(m));
    ASSIGN_OR_RETURN(Message reply, c.recv());
    if (auto* e = std::get_if<Error>(&reply)) return status_from_peer_error(*e);
    if (request_id_of(reply) != id)
      return Status::corruption(c.peer_name() + " answered request " + std::to_string(id) + " with id " +
                                std::to_string(request_id_of(reply)));
    return reply;
  };
  return list_snapshots(c.version(), request, c.peer_name());
}

}  // namespace ferry::replication
