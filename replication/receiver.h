// receiver.h: the DR receiver behind `ferry serve`. It listens for mutually
// authenticated TLS connections (connection.h), one thread per connection up
// to a bound, and serves the replication protocol (docs/PROTOCOL.md) against
// a ChunkStore. The client certificate's identity is the connection's
// namespace: every store call of that connection names it, so a host never
// reads or writes another's chunks or snapshots.
//
// Durability: a PUT is acknowledged only after store.sync() returned for it.
// PUTs are group-committed: the receiver syncs once for all PUTs received so
// far when no further message is waiting, when their bytes reach
// group_commit_bytes, when their count reaches half the window the client
// was given, or before it serves any other request; then it sends the
// acknowledgements (or per-chunk errors) in request order.
//
// Hostile or broken clients: a failed handshake (no certificate, another CA,
// expired, plaintext), a message over the announced limit, a malformed
// message or an idle timeout closes that connection (with an ERROR where the
// TLS session allows one) and touches nothing else; connections beyond
// max_connections are refused with an ERROR.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include "base/metrics.h"
#include "base/status.h"
#include "base/unique_fd.h"
#include "io/socket.h"
#include "replication/limits.h"
#include "replication/tls.h"
#include "store/chunk_store.h"

namespace ferry::replication {

// Receiver defaults (docs/PROTOCOL.md repeats them).
inline constexpr std::size_t kDefaultMaxConnections = 64;
// Connections over the limit still get a handshake and an ERROR from this
// many threads at most; beyond that they are closed without a word.
inline constexpr std::size_t kMaxRefusingConnections = 8;
inline constexpr std::uint64_t kDefaultGroupCommitBytes = 64ull << 20;
inline constexpr int kDefaultIdleTimeoutMs = 300'000;
// How long the receiver waits for a further message before it syncs the
// PUTs received so far and acknowledges them.
inline constexpr int kDefaultAckDelayMs = 2;
inline constexpr int kListenBacklog = 128;

struct ReceiverOptions {
  std::string listen = "127.0.0.1:0";  // HOST:PORT; port 0: the kernel picks one
  TlsConfig tls;                       // role is forced to kServer
  std::size_t max_connections = kDefaultMaxConnections;
  // Largest message body a client may send (announced in HELLO_OK).
  std::size_t max_message_bytes = kDefaultMaxMessageBytes;
  // PUTs a client may have unacknowledged (announced in HELLO_OK).
  std::uint32_t max_inflight_puts = kDefaultMaxInflightPuts;
  // Unsynced PUT bytes per connection after which the receiver syncs.
  std::uint64_t group_commit_bytes = kDefaultGroupCommitBytes;
  int idle_timeout_ms = kDefaultIdleTimeoutMs;
  int handshake_timeout_ms = kDefaultHandshakeTimeoutMs;
  int ack_delay_ms = kDefaultAckDelayMs;
  // Announced to hosts (the store enforces it: open it with append_only).
  bool append_only = false;
  // One structured line per connection and per committed snapshot. Null:
  // stderr, prefixed "ferry serve: ".
  std::function<void(std::string_view)> log;
};

struct ReceiverStats {
  std::uint64_t connections_accepted = 0;  // TCP connections accepted
  std::uint64_t connections_served = 0;    // that completed HELLO
  std::uint64_t connections_refused = 0;   // handshake failed, over the limit, bad first message
  std::uint64_t connections_active = 0;
  std::uint64_t puts = 0;
  std::uint64_t put_bytes = 0;
  std::uint64_t syncs = 0;
  std::uint64_t commits = 0;
  std::uint64_t chunks_served = 0;
  // Refusals by reason: a failed TLS handshake, over max_connections, a
  // bad or missing HELLO (not in connections_refused).
  std::uint64_t refused_handshake = 0;
  std::uint64_t refused_connection_limit = 0;
  std::uint64_t refused_hello = 0;
  std::uint64_t chunks_stored = 0;  // PUTs that stored a new chunk (not a duplicate)
  // TLS bytes of served connections, added when each connection closes.
  std::uint64_t wire_bytes_in = 0;
  std::uint64_t wire_bytes_out = 0;
  HistogramCounts sync_seconds{kLatencyBucketsSeconds};  // store syncs (fsync) for PUTs
};

class Receiver {
 public:
  // `store` must outlive the receiver.
  Receiver(ChunkStore& store, ReceiverOptions options);
  ~Receiver();  // stop()
  Receiver(const Receiver&) = delete;
  Receiver& operator=(const Receiver&) = delete;

  // Loads the TLS files, binds and starts accepting. Errors name the file or
  // the address.
  Status start();
  // The bound address (after start): the real port when listen asked for 0.
  const io::SocketAddress& address() const { return bound_; }
  std::uint16_t port() const { return bound_.port(); }

  // Stops accepting, closes every connection (a PUT not yet acknowledged is
  // simply not acknowledged: the client sends it again) and joins every
  // thread. Idempotent.
  void stop();

  ReceiverStats stats() const;

 private:
  struct Conn;        // one served connection: its thread and socket
  class Session;      // its request loop (receiver_session.h)
  class GroupCommit;  // a session's PUTs, answered once durable
  class Deletion;     // a session's DELETE and PRUNE

  void accept_loop();
  void serve(Conn* conn, io::Socket socket, bool over_limit);
  void reap_finished();
  void log(std::string_view line) const;

  ChunkStore& store_;
  ReceiverOptions options_;
  std::shared_ptr<const TlsContext> tls_;
  std::optional<io::Socket> listener_;
  io::SocketAddress bound_;
  UniqueFd wake_fd_;  // eventfd: wakes the accept loop on stop()
  std::thread accept_thread_;
  std::atomic<bool> stopping_{false};
  bool started_ = false;

  mutable std::mutex mu_;  // guards conns_, served_, refusing_
  std::list<std::unique_ptr<Conn>> conns_;
  std::size_t served_ = 0;    // connections within max_connections
  std::size_t refusing_ = 0;  // over-limit connections being told so

  struct AtomicStats {
    std::atomic<std::uint64_t> accepted{0}, served{0}, refused{0}, puts{0}, put_bytes{0}, syncs{0},
        commits{0}, chunks_served{0};
    std::atomic<std::uint64_t> refused_handshake{0}, refused_limit{0}, refused_hello{0}, stored{0},
        wire_in{0}, wire_out{0};
    Histogram sync_seconds{kLatencyBucketsSeconds};
  };
  mutable AtomicStats stats_;
};

}  // namespace ferry::replication
