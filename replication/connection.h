// connection.h: a blocking, message-oriented, mutually authenticated TLS 1.3
// connection: what the sender, the receiver and restore talk through. The
// TLS session runs over memory BIOs (tls.h); its ciphertext moves through an
// io::Engine (io_uring where the kernel allows it) owned by the connection,
// in buffers of kCipherBufferBytes, and a large message is encrypted while
// its previous piece is being sent.
//
// Thread-safety: one thread at a time. The engine belongs to the thread that
// last used the connection: when another thread takes it over (the receiver
// accepts on one thread and serves on another), the engine is rebuilt there
// (nothing is outstanding between calls, so this is safe).
//
// Flow control is the protocol's (HELLO_OK's max_inflight_puts): a sender
// that keeps at most that many PUTs unacknowledged can send and receive on
// one thread without deadlock, as acknowledgements are small.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "io/engine.h"
#include "io/socket.h"
#include "replication/limits.h"
#include "replication/protocol.h"
#include "replication/tls.h"

namespace ferry::replication {

struct ConnectionOptions {
  int connect_timeout_ms = kDefaultConnectTimeoutMs;
  int handshake_timeout_ms = kDefaultHandshakeTimeoutMs;
  // send(), and recv() without its own timeout: give up when the peer moves
  // nothing for this long.
  int io_timeout_ms = kDefaultIoTimeoutMs;
  // Largest message body recv() accepts (the receiver's announced limit on
  // the server; the client raises it to the receiver's HELLO_OK value).
  std::size_t max_message_bytes = kDefaultMaxMessageBytes;
  io::Backend backend = io::Backend::kAuto;
};

// Bytes that crossed this connection. Ciphertext counts TLS records (the
// bytes on the wire above TCP); plaintext counts whole messages.
struct ConnectionCounters {
  std::uint64_t plain_bytes_in = 0;
  std::uint64_t plain_bytes_out = 0;
  std::uint64_t cipher_bytes_in = 0;
  std::uint64_t cipher_bytes_out = 0;
  std::uint64_t messages_in = 0;
  std::uint64_t messages_out = 0;
};

class Connection {
 public:
  // Dials `addr` and completes the TLS handshake (the receiver's certificate
  // checked against the context's expected_server_name, or the address's
  // host when that is empty). In TLS 1.3 the receiver judges the client's
  // certificate after the client has finished, so a refused client learns
  // it at its first recv() (PermissionDenied with the receiver's alert).
  static Result<std::unique_ptr<Connection>> connect(const io::SocketAddress& addr,
                                                     std::shared_ptr<const TlsContext> ctx,
                                                     const ConnectionOptions& options = {});
  // "host:port": resolves it and, unless the context names the receiver,
  // verifies the receiver's certificate against `host` (DNS or IP SAN).
  static Result<std::unique_ptr<Connection>> connect(std::string_view host_port,
                                                     std::shared_ptr<const TlsContext> ctx,
                                                     const ConnectionOptions& options = {});
  // Server side: wraps an accepted socket and completes the handshake; the
  // client's namespace is then peer_identity(). Call it on the thread that
  // will serve the connection.
  static Result<std::unique_ptr<Connection>> accept(io::Socket socket, std::shared_ptr<const TlsContext> ctx,
                                                    const ConnectionOptions& options = {});
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Sends one whole message; ResourceExhausted, with nothing sent, for a
  // body over kMaxMessageBodyBytes or, on the server, over the limit it
  // announced (max_message_bytes). The bulk field (frame, manifest) is not copied
  // on its way out; build the Message in place or move a Put into it
  // (send(std::move(put))): a Put passed as an lvalue is copied into the
  // temporary Message first.
  Status send(const Message& m);
  // Sends bytes inside TLS exactly as given, framing or not (tests: partial
  // and malformed messages).
  Status send_raw(std::span<const std::byte> bytes);
  // Receives one whole message. timeout_ms: for the whole message (-1: the
  // options' io_timeout_ms per transfer). Timeout, or Unavailable when the
  // peer closed or reset, naming the peer; ResourceExhausted for a body over
  // max_message_bytes; Corruption for a malformed one.
  Result<Message> recv(int timeout_ms = -1);
  // recv(), but first_byte_timeout_ms bounds only the wait for a message to
  // begin (a Timeout then leaves the connection usable); once its first byte
  // has arrived, the rest comes under io_timeout_ms per transfer, so a short
  // wait never splits a message. The receiver waits this way for further
  // PUTs before it syncs and acknowledges the ones it has.
  Result<Message> recv_next(int first_byte_timeout_ms);
  // Whether recv() would find something without waiting for the peer: input
  // buffered in TLS, or bytes, an end or an error on the socket (one poll(2)
  // that does not wait; no receive may be in flight, and none is outside
  // recv). A closed connection: true (recv reports why). For a loop with
  // other work that must not sit in a receive.
  bool input_ready() const;
  // Gives back the buffer of a frame the caller is done with (a PUT's or a
  // CHUNK's), for the next frame received to reuse: a fresh multi-MiB buffer
  // per frame costs page faults and the kernel's zeroing of every page.
  // Keeps one, of at most kMaxSpareBodyBytes.
  void recycle(std::vector<std::byte>&& buffer);

  // Client side: HELLO, then HELLO_OK (raising max_message_bytes to what the
  // receiver announced, within kMaxMessageBodyBytes) or the receiver's ERROR
  // as a Status.
  Result<HelloOk> hello(std::string_view software);

  // Server side: receives HELLO, picks the version (choose_version) and
  // answers HELLO_OK built from `limits` with the version and the client's
  // namespace filled in; or answers ERROR (Unsupported) and returns it.
  // limits.max_message_bytes also becomes this side's recv limit.
  Result<HelloOk> serve_hello(const HelloOk& limits);

  // The protocol version HELLO settled (0 before).
  std::uint16_t version() const { return version_; }

  void set_max_message_bytes(std::size_t bytes) { options_.max_message_bytes = bytes; }
  std::size_t max_message_bytes() const { return options_.max_message_bytes; }

  // Server: the client's namespace. Client: the receiver certificate's CN.
  const std::string& peer_identity() const;
  // The peer's address ("127.0.0.1:7700").
  const std::string& peer_name() const { return socket_.name(); }
  const ConnectionCounters& counters() const { return counters_; }
  std::string cipher_description() const;
  io::Backend backend() const;

  // Sends close_notify (best effort, short timeout) and closes the socket.
  // Idempotent; the destructor calls it.
  void close();
  // Closes at once without close_notify (tests: a peer that vanishes).
  void abort();
  bool is_open() const { return open_; }

 private:
  Connection(io::Socket socket, ConnectionOptions options);
  static Result<std::unique_ptr<Connection>> dial(const io::SocketAddress& addr,
                                                  std::shared_ptr<const TlsContext> ctx,
                                                  std::string server_name, const ConnectionOptions& options);
  Status run_handshake();
  Status ensure_engine();
  // Moves pending ciphertext out, overlapping the send of one buffer with
  // the filling of the other; with `all`, waits until every byte is sent.
  Status pump_out(bool all);
  Status wait_send();
  // Receives some ciphertext and feeds it to TLS; `during` names the wait.
  Status pull_ciphertext(int timeout_ms, std::string_view during);
  // Reads exactly out.size() plaintext bytes. deadline_ms: monotonic, or -1
  // for io_timeout_ms per transfer. `at_start`: a clean close before any
  // byte is "closed the connection", not "in the middle of a message".
  // first_byte_deadline: the deadline holds only until the first byte.
  Status read_exact(std::span<std::byte> out, std::int64_t deadline_ms, bool at_start,
                    bool first_byte_deadline = false);
  Result<Message> recv_message(int timeout_ms, bool first_byte_deadline);

  io::Socket socket_;
  std::unique_ptr<TlsSession> tls_;
  ConnectionOptions options_;
  std::unique_ptr<io::Engine> engine_;
  std::size_t engine_thread_ = 0;    // the owning thread's kernel id
  std::vector<std::byte> send_buf_;  // being sent; TLS fills the other (pump_out)
  std::unique_ptr<std::byte[]> recv_buf_;
  bool send_in_flight_ = false;
  ConnectionCounters counters_;
  bool open_ = true;
  bool server_ = false;  // accepted, not dialled
  std::uint16_t version_ = 0;
  std::vector<std::byte> spare_body_;  // see recycle()
};

// A receiver's ERROR as the Status its client acts on: status_from_error,
// and, when the ERROR answers one request (request_id != 0), marked
// Detail::kRefusedByPeer: the receiver's verdict on that request (a frame it
// found damaged, a quota, a missing snapshot), not a break of the connection.
// An ERROR with id 0 concerns the connection, which the receiver then
// closes, and stays a failure like any other break. Every client-side
// translation goes through here; base/retry.h decides on the result.
Status status_from_peer_error(const Error& e);

// Sends one request and returns the reply that carries its id; an ERROR
// comes back as its Status (status_from_peer_error).
using Requester = std::function<Result<Message>(Message)>;
// Every snapshot of the client's namespace in the receiver's order (oldest
// first): LIST a page at a time when `version` >= kPagedListVersion, one
// LIST before (a receiver of version 1 answers in one reply). `peer` names
// the receiver in errors.
Result<std::vector<SnapshotInfo>> list_snapshots(std::uint16_t version, const Requester& request,
                                                 std::string_view peer);
// The same over `c`, a connection past HELLO used by one thread.
Result<std::vector<SnapshotInfo>> list_snapshots(Connection& c);

}  // namespace ferry::replication
