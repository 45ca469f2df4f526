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
// expired, revoked, plaintext), a message over the announced limit, a
// malformed message or an idle timeout closes that connection (with an ERROR
// where the TLS session allows one) and touches nothing else.
//
// Connection budgets (replication/limits.h): only authenticated connections
// count against max_connections and max_connections_per_namespace; one over
// either is told so with an ERROR. Handshakes in progress have a budget of
// their own (kMaxPendingHandshakes) and handshake_timeout_ms to finish; when
// the budget is full the oldest pending handshake is dropped for the new
// connection, so peers that never finish TLS cannot lock a real host out.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
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
#include "replication/protocol.h"
#include "replication/tls.h"
#include "store/chunk_store.h"

namespace ferry::replication {

class Connection;

// Receiver defaults (docs/PROTOCOL.md repeats them).
inline constexpr std::size_t kDefaultMaxConnections = 64;
inline constexpr std::uint64_t kDefaultGroupCommitBytes = 64ull << 20;
inline constexpr int kDefaultIdleTimeoutMs = 300'000;
// How long the receiver waits for a further message before it syncs the
// PUTs received so far and acknowledges them.
inline constexpr int kDefaultAckDelayMs = 2;
inline constexpr int kListenBacklog = 128;

struct ReceiverOptions {
  std::string listen = "127.0.0.1:0";  // HOST:PORT; port 0: the kernel picks one
  TlsConfig tls;                       // role is forced to kServer
  // Authenticated connections served at once, in all and per namespace.
  std::size_t max_connections = kDefaultMaxConnections;
  std::size_t max_connections_per_namespace = kDefaultMaxConnectionsPerNamespace;
  // Largest message body a client may send (announced in HELLO_OK).
  std::size_t max_message_bytes = kDefaultMaxMessageBytes;
  // PUTs a client may have unacknowledged (announced in HELLO_OK).
  std::uint32_t max_inflight_puts = kDefaultMaxInflightPuts;
  // Unsynced PUT bytes per connection after which the receiver syncs.
  std::uint64_t group_commit_bytes = kDefaultGroupCommitBytes;
  int idle_timeout_ms = kDefaultIdleTimeoutMs;
  // For the TLS handshake, and again for HELLO after it.
  int handshake_timeout_ms = kDefaultReceiverHandshakeTimeoutMs;
  // With tls.crl_file set: how often to check whether the CRL file changed,
  // and reload the TLS files when it did (0: only reload_tls()).
  int crl_reload_interval_ms = kDefaultCrlReloadIntervalMs;
  int ack_delay_ms = kDefaultAckDelayMs;
  // Snapshots per paged LIST_REPLY (at most kMaxListPageSnapshots; tests
  // use small pages).
  std::size_t list_page_snapshots = kMaxListPageSnapshots;
  // Announced to hosts (the store enforces it: open it with append_only).
  bool append_only = false;
  // One structured line per connection and per committed snapshot. Null:
  // stderr, prefixed "ferry serve: ".
  std::function<void(std::string_view)> log;
};

struct ReceiverStats {
  std::uint64_t connections_accepted = 0;  // TCP connections accepted
  std::uint64_t connections_served = 0;    // that completed HELLO
  std::uint64_t connections_refused = 0;   // handshake failed, over a limit, bad first message
  std::uint64_t handshakes_dropped = 0;    // pending handshakes dropped for newer ones (budget full)
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

  // Reloads the TLS files (CA, certificate, key and CRL) for new
  // handshakes; connections already served keep going. On failure the
  // files in use stay in use, and the error names the file.
  Status reload_tls();

 private:
  struct Conn;        // one served connection: its thread and socket
  class Session;      // its request loop (receiver_session.h)
  class GroupCommit;  // a session's PUTs, answered once durable
  class Deletion;     // a session's DELETE and PRUNE

  void accept_loop();
  // Drops the oldest pending handshake when kMaxPendingHandshakes are
  // pending. REQUIRES: mu_ held.
  void make_room_for_handshake();
  // After its handshake: takes a served slot for `conn` of namespace `ns`,
  // or the reason it may not have one.
  Status admit(Conn* conn, const std::string& ns);
  void serve(Conn* conn, io::Socket socket);
  // Reloads the TLS files when the CRL file changed since the last load.
  void reload_if_crl_changed();
  void reap_finished();
  void log(std::string_view line) const;
  // Answers request `request_id` of namespace `ns` with an ERROR. The client
  // gets the store's message when it names only what the client sent; one
  // that carries the receiver's paths or an OS error is logged here in full
  // and the client told a stable message naming `subject` (a chunk, a
  // snapshot) instead.
  Status send_client_error(Connection& c, std::uint64_t request_id, std::string_view ns,
                           std::string_view subject, const Status& st) const;
  // Sends a reply; one too large for the client's limit (a stored manifest
  // or frame) answers the request with an ERROR instead.
  Status send_reply(Connection& c, std::string_view ns, std::string_view subject, const Message& m) const;

  ChunkStore& store_;
  ReceiverOptions options_;
  mutable std::mutex tls_mu_;  // guards tls_ and crl_stamp_
  std::shared_ptr<const TlsContext> tls_;
  std::string crl_stamp_;  // the CRL file's identity and mtime at the last load
  std::optional<io::Socket> listener_;
  io::SocketAddress bound_;
  UniqueFd wake_fd_;  // eventfd: wakes the accept loop on stop()
  std::thread accept_thread_;
  std::atomic<bool> stopping_{false};
  bool started_ = false;

  mutable std::mutex mu_;                   // guards conns_, served_, per_namespace_, handshaking_
  std::list<std::unique_ptr<Conn>> conns_;  // in accept order
  std::size_t served_ = 0;                  // authenticated connections being served
  std::map<std::string, std::size_t, std::less<>> per_namespace_;  // served_, by namespace
  std::size_t handshaking_ = 0;                                    // pending handshakes not yet dropped

  struct AtomicStats {
    std::atomic<std::uint64_t> accepted{0}, served{0}, refused{0}, puts{0}, put_bytes{0}, syncs{0},
        commits{0}, chunks_served{0}, dropped{0};
    std::atomic<std::uint64_t> refused_handshake{0}, refused_limit{0}, refused_hello{0}, stored{0},
        wire_in{0}, wire_out{0};
    Histogram sync_seconds{kLatencyBucketsSeconds};
  };
  mutable AtomicStats stats_;
};

}  // namespace ferry::replication
