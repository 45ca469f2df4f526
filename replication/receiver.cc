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
  bool over_limit = false;
};

Receiver::Receiver(ChunkStore& store, ReceiverOptions options) : store_(store), options_(std::move(options)) {
  options_.tls.role = TlsRole::kServer;
  options_.max_connections = std::max<std::size_t>(1, options_.max_connections);
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
  while (!stopping_.load()) {
    pollfd fds[2] = {{listener_->fd(), POLLIN, 0}, {wake_fd_.get(), POLLIN, 0}};
    int n = ::poll(fds, 2, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      log("accept error=" + log_quoted(Status::from_errno(errno, "poll").to_string()));
      return;
    }
    if (stopping_.load() || (fds[1].revents & POLLIN)) return;
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
    const bool over = served_ >= options_.max_connections;
    if (over && refusing_ >= kMaxRefusingConnections) {
      stats_.refused++;
      stats_.refused_limit++;
      log("refused peer=" + socket.name() + " reason=\"connection limit; too many refusals pending\"");
      continue;  // socket closes here
    }
    auto conn = std::make_unique<Conn>();
    conn->over_limit = over;
    conn->dup_fd.reset(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
    (over ? refusing_ : served_)++;
    Conn* raw = conn.get();
    conns_.push_back(std::move(conn));
    raw->thread =
        std::thread([this, raw, s = std::move(socket), over]() mutable { serve(raw, std::move(s), over); });
  }
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

void Receiver::serve(Conn* conn, io::Socket socket, bool over_limit) {
  const double start = mono_seconds();
  const std::string peer = socket.name();
  ConnectionOptions copts;
  copts.handshake_timeout_ms = options_.handshake_timeout_ms;
  copts.max_message_bytes = options_.max_message_bytes;
  std::string line;
  auto accepted = Connection::accept(std::move(socket), tls_, copts);
  if (!accepted) {
    stats_.refused++;
    stats_.refused_handshake++;
    line = "refused peer=" + peer + " reason=" + log_quoted(accepted.status().to_string());
  } else if (over_limit) {
    stats_.refused++;
    stats_.refused_limit++;
    Status st = Status::exhausted("receiver at its limit of " + std::to_string(options_.max_connections) +
                                  " connections; try again later");
    (void)(*accepted)->send(error_from_status(0, st));
    line = "refused peer=" + peer + " ns=" + (*accepted)->peer_identity() +
           " reason=" + log_quoted(st.to_string());
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
    (over_limit ? refusing_ : served_)--;
  }
  conn->done.store(true);
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
  std::lock_guard lock(mu_);
  s.connections_active = served_;
  return s;
}

}  // namespace ferry::replication
