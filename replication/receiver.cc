// receiver.cc: see receiver.h. An accept thread polls the listening socket
// and an eventfd (stop); each accepted socket gets its own thread, which runs
// the TLS handshake there (so a slow or hostile handshake delays nobody
// else) and then a Session (receiver_session.h): the request loop of one
// namespace.
#include "replication/receiver.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <utility>
#include <vector>

#include "base/clock.h"
#include "replication/connection.h"
#include "replication/protocol.h"
#include "replication/receiver_session.h"

namespace ferry::replication {

struct Receiver::Conn {
  std::thread thread;
  // A duplicate of the connection's descriptor, so that stop() can shut the
  // socket down (waking a blocked recv) without racing the close of the
  // original, whose number could be reused.
  UniqueFd dup_fd;
  std::atomic<bool> done{false};
  bool pending = true;   // in its handshake (guarded by mu_)
  bool dropped = false;  // its handshake was dropped for a newer one (mu_)
  std::string ns;        // once admitted (mu_)
};

namespace {

// What identifies a version of the CRL file: a new file renamed into place
// changes the inode, one rewritten in place its size or mtime. Empty when
// there is no CRL or it cannot be read (the reload then names the error).
std::string crl_stamp(const std::string& path) {
  struct stat st {};
  if (path.empty() || ::stat(path.c_str(), &st) != 0) return {};
  return std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino) + ":" + std::to_string(st.st_size) +
         ":" + std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec);
}

}  // namespace

Receiver::Receiver(ChunkStore& store, ReceiverOptions options) : store_(store), options_(std::move(options)) {
  options_.tls.role = TlsRole::kServer;
  options_.max_connections = std::max<std::size_t>(1, options_.max_connections);
  options_.max_connections_per_namespace = std::max<std::size_t>(1, options_.max_connections_per_namespace);
  options_.list_page_snapshots =
      std::clamp<std::size_t>(options_.list_page_snapshots, 1, kMaxListPageSnapshots);
  options_.max_inflight_puts = std::clamp<std::uint32_t>(options_.max_inflight_puts, 1, kMaxInflightPuts);
  options_.max_message_bytes =
      std::clamp<std::size_t>(options_.max_message_bytes, kMinAnnouncedMessageBytes, kMaxMessageBodyBytes);
}

Receiver::~Receiver() { stop(); }

void Receiver::log(std::string_view line) const {
  if (options_.log) {
    options_.log(line);
  } else {
    std::fprintf(stderr, "ferry serve: %.*s\n", static_cast<int>(line.size()), line.data());
  }
}

Status Receiver::start() {
  if (started_) return Status::invalid_argument("receiver already started");
  crl_stamp_ = crl_stamp(options_.tls.crl_file);
  ASSIGN_OR_RETURN(tls_, TlsContext::create(options_.tls));
  ASSIGN_OR_RETURN(io::SocketAddress addr, io::SocketAddress::parse(options_.listen));
  ASSIGN_OR_RETURN(io::Socket listener, io::Socket::listen(addr, kListenBacklog));
  // Non-blocking: a connection that vanishes between poll and accept must not
  // block the accept loop.
  const int flags = ::fcntl(listener.fd(), F_GETFL);
  if (flags < 0 || ::fcntl(listener.fd(), F_SETFL, flags | O_NONBLOCK) != 0) {
    return Status::from_errno(errno, "set O_NONBLOCK on " + options_.listen);
  }
  ASSIGN_OR_RETURN(bound_, listener.local_address());
  listener_.emplace(std::move(listener));
  wake_fd_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake_fd_.valid()) return Status::from_errno(errno, "eventfd");
  started_ = true;
  accept_thread_ = std::thread([this] { accept_loop(); });
  return Status::ok();
}

void Receiver::accept_loop() {
  const bool watch_crl = !options_.tls.crl_file.empty() && options_.crl_reload_interval_ms > 0;
  std::int64_t next_crl_check_ms = mono_ms() + options_.crl_reload_interval_ms;
  while (!stopping_.load()) {
    pollfd fds[2] = {{listener_->fd(), POLLIN, 0}, {wake_fd_.get(), POLLIN, 0}};
    const int timeout_ms =
        watch_crl ? static_cast<int>(std::max<std::int64_t>(0, next_crl_check_ms - mono_ms())) : -1;
    int n = ::poll(fds, 2, timeout_ms);
    if (n < 0) {
      if (errno == EINTR) continue;
      log("accept error=" + log_quoted(Status::from_errno(errno, "poll").to_string()));
      return;
    }
    if (stopping_.load() || (fds[1].revents & POLLIN)) return;
    if (watch_crl && mono_ms() >= next_crl_check_ms) {
      reload_if_crl_changed();
      next_crl_check_ms = mono_ms() + options_.crl_reload_interval_ms;
    }
    if (!(fds[0].revents & POLLIN)) continue;
    int fd = ::accept4(listener_->fd(), nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNABORTED) continue;
      // EMFILE and friends: back off rather than spin; served clients go on.
      log("accept error=" + log_quoted(Status::from_errno(errno, "accept").to_string()));
      ::poll(nullptr, 0, kAcceptRetryDelayMs);
      continue;
    }
    io::Socket socket = io::Socket::adopt(fd);
    stats_.accepted++;
    std::lock_guard lock(mu_);
    reap_finished();
    make_room_for_handshake();
    auto conn = std::make_unique<Conn>();
    conn->dup_fd.reset(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
    handshaking_++;
    Conn* raw = conn.get();
    conns_.push_back(std::move(conn));
    raw->thread = std::thread([this, raw, s = std::move(socket)]() mutable { serve(raw, std::move(s)); });
  }
}

void Receiver::make_room_for_handshake() {
  if (handshaking_ < kMaxPendingHandshakes) return;
  // The oldest first: a real host finishes its handshake in milliseconds,
  // so it is never the oldest for long, while a peer that never finishes
  // ages until it is dropped.
  for (auto& c : conns_) {
    if (!c->pending || c->dropped) continue;
    c->dropped = true;
    handshaking_--;
    stats_.dropped++;
    if (c->dup_fd.valid()) ::shutdown(c->dup_fd.get(), SHUT_RDWR);
    return;
  }
}

Status Receiver::admit(Conn* conn, const std::string& ns) {
  std::lock_guard lock(mu_);
  if (served_ >= options_.max_connections) {
    return Status::exhausted("receiver at its limit of " + std::to_string(options_.max_connections) +
                             " connections; try again later");
  }
  auto it = per_namespace_.find(ns);
  if (it != per_namespace_.end() && it->second >= options_.max_connections_per_namespace) {
    return Status::exhausted("namespace " + ns + " already holds " + std::to_string(it->second) +
                             " connections, the most one host may hold; try again later");
  }
  served_++;
  per_namespace_[ns]++;
  conn->ns = ns;
  return Status::ok();
}

void Receiver::reap_finished() {
  for (auto it = conns_.begin(); it != conns_.end();) {
    if ((*it)->done.load()) {
      (*it)->thread.join();
      it = conns_.erase(it);
    } else {
      ++it;
    }
  }
}

void Receiver::serve(Conn* conn, io::Socket socket) {
  const double start = mono_seconds();
  const std::string peer = socket.name();
  ConnectionOptions copts;
  copts.handshake_timeout_ms = options_.handshake_timeout_ms;
  copts.max_message_bytes = options_.max_message_bytes;
  std::shared_ptr<const TlsContext> tls;
  {
    std::lock_guard lock(tls_mu_);
    tls = tls_;
  }
  auto accepted = Connection::accept(std::move(socket), std::move(tls), copts);
  bool dropped = false;
  {
    std::lock_guard lock(mu_);
    dropped = conn->dropped;
    if (!dropped) handshaking_--;
    conn->pending = false;
  }
  std::string line;
  Status admitted = Status::ok();
  if (dropped) {
    stats_.refused++;
    line = "refused peer=" + peer + " reason=" +
           log_quoted("handshake dropped: " + std::to_string(kMaxPendingHandshakes) +
                      " handshakes were pending and the oldest goes first");
  } else if (!accepted) {
    stats_.refused++;
    stats_.refused_handshake++;
    line = "refused peer=" + peer + " reason=" + log_quoted(accepted.status().to_string());
  } else if (admitted = admit(conn, (*accepted)->peer_identity()); !admitted) {
    stats_.refused++;
    stats_.refused_limit++;
    (void)(*accepted)->send(error_from_status(0, admitted));
    line = "refused peer=" + peer + " ns=" + (*accepted)->peer_identity() +
           " reason=" + log_quoted(admitted.to_string());
  } else {
    Connection& c = **accepted;
    Session session(*this, c, c.peer_identity());
    Status st = session.run();
    const ConnectionCounters& k = c.counters();
    stats_.wire_in += k.cipher_bytes_in;
    stats_.wire_out += k.cipher_bytes_out;
    char dur[32];
    std::snprintf(dur, sizeof dur, "%.3f", mono_seconds() - start);
    line = "conn peer=" + peer + " ns=" + c.peer_identity() +
           " result=" + (st ? std::string("ok") : log_quoted(st.to_string())) + " seconds=" + dur +
           " puts=" + std::to_string(session.puts()) + " put_bytes=" + std::to_string(session.put_bytes()) +
           " commits=" + std::to_string(session.commits()) +
           " chunks_served=" + std::to_string(session.chunks_served()) +
           " wire_in=" + std::to_string(k.cipher_bytes_in) +
           " wire_out=" + std::to_string(k.cipher_bytes_out);
  }
  {
    // The duplicate would keep the socket open after the connection closes
    // it: the peer must see the close.
    std::lock_guard lock(mu_);
    conn->dup_fd.reset();
  }
  if (accepted) (*accepted)->close();
  accepted = Status::aborted("closed");  // destroy the connection before we say we are done
  log(line);
  {
    std::lock_guard lock(mu_);
    if (!conn->ns.empty()) {
      served_--;
      auto it = per_namespace_.find(conn->ns);
      if (--it->second == 0) per_namespace_.erase(it);
    }
  }
  conn->done.store(true);
}

Status Receiver::reload_tls() {
  if (!started_) return Status::invalid_argument("receiver not started");
  std::string stamp = crl_stamp(options_.tls.crl_file);
  auto ctx = TlsContext::create(options_.tls);
  if (!ctx) {
    log("tls_reload error=" + log_quoted(ctx.status().to_string()));
    return ctx.status();
  }
  {
    std::lock_guard lock(tls_mu_);
    tls_ = std::move(*ctx);
    crl_stamp_ = std::move(stamp);
  }
  log("tls_reload result=ok crl=" +
      log_quoted(options_.tls.crl_file.empty() ? "none" : options_.tls.crl_file));
  return Status::ok();
}

void Receiver::reload_if_crl_changed() {
  {
    std::lock_guard lock(tls_mu_);
    if (crl_stamp(options_.tls.crl_file) == crl_stamp_) return;
  }
  (void)reload_tls();  // a failure is logged; the CRL in use stays
}

void Receiver::stop() {
  if (!started_) return;
  if (!stopping_.exchange(true)) {
    const std::uint64_t one = 1;
    [[maybe_unused]] ssize_t w = ::write(wake_fd_.get(), &one, sizeof one);
  }
  if (accept_thread_.joinable()) accept_thread_.join();
  std::list<std::unique_ptr<Conn>> conns;
  {
    std::lock_guard lock(mu_);
    for (auto& c : conns_) {
      if (c->dup_fd.valid()) ::shutdown(c->dup_fd.get(), SHUT_RDWR);
    }
    conns.swap(conns_);
  }
  for (auto& c : conns) {
    if (c->thread.joinable()) c->thread.join();
  }
  listener_.reset();
}

ReceiverStats Receiver::stats() const {
  ReceiverStats s;
  s.connections_accepted = stats_.accepted.load();
  s.connections_served = stats_.served.load();
  s.connections_refused = stats_.refused.load();
  s.puts = stats_.puts.load();
  s.put_bytes = stats_.put_bytes.load();
  s.syncs = stats_.syncs.load();
  s.commits = stats_.commits.load();
  s.chunks_served = stats_.chunks_served.load();
  s.refused_handshake = stats_.refused_handshake.load();
  s.refused_connection_limit = stats_.refused_limit.load();
  s.refused_hello = stats_.refused_hello.load();
  s.chunks_stored = stats_.stored.load();
  s.wire_bytes_in = stats_.wire_in.load();
  s.wire_bytes_out = stats_.wire_out.load();
  s.sync_seconds = stats_.sync_seconds.counts();
  s.handshakes_dropped = stats_.dropped.load();
  std::lock_guard lock(mu_);
  s.connections_active = served_;
  return s;
}

}  // namespace ferry::replication
