// receiver.cc: see receiver.h. An accept thread polls the listening socket
// and an eventfd (stop); each accepted socket gets its own thread, which runs
// the TLS handshake there (so a slow or hostile handshake delays nobody
// else) and then a Session: the request loop of one namespace.
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
#include "codec/manifest.h"
#include "replication/connection.h"
#include "replication/protocol.h"
#include "store/retention.h"

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

namespace {

// Quotes a value for a key=value log line when it holds spaces or quotes.
std::string quoted(std::string_view v) {
  if (!v.empty() && v.find_first_of(" \"=\n") == std::string_view::npos) return std::string(v);
  std::string out = "\"";
  for (char c : v) {
    if (c == '"' || c == '\\') out += '\\';
    out += c == '\n' ? ' ' : c;
  }
  return out + "\"";
}

}  // namespace

// The request loop of one authenticated connection.
class Receiver::Session {
 public:
  Session(Receiver& r, Connection& c, std::string ns) : r_(r), c_(c), ns_(std::move(ns)) {}

  // Serves until BYE, the peer closes, a fatal error or stop(). OK for an
  // orderly end; otherwise why the connection was dropped.
  Status run();

  std::uint64_t puts = 0, put_bytes = 0, chunks_served = 0, commits = 0;

 private:
  struct PendingAck {
    std::uint64_t request_id = 0;
    Digest id{};
    Status status;
  };

  Status hello();
  // A request that the connection survives answers with an ERROR carrying
  // its id; a non-OK return ends the connection.
  Status handle(Message& m);
  Status on_put(Put& m);
  Status flush_acks();
  Status on_commit(const Commit& m);
  Status on_get_chunk(const GetChunk& m);
  Status on_delete(const Delete& m);
  Status on_prune(const Prune& m);
  Status reply_error(std::uint64_t request_id, const Status& st) {
    return c_.send(error_from_status(request_id, st));
  }
  // Best effort: tells the client why it is being dropped.
  void refuse(const Status& st) { (void)c_.send(error_from_status(0, st)); }
  std::size_t ack_batch() const { return std::max<std::size_t>(1, r_.options_.max_inflight_puts / 2); }
  Status gc_into(Removed& out);

  Receiver& r_;
  Connection& c_;
  std::string ns_;
  std::vector<PendingAck> pending_;
  std::uint64_t pending_bytes_ = 0;
};

Status Receiver::Session::hello() {
  auto m = c_.recv(r_.options_.handshake_timeout_ms);
  if (!m) {
    if (m.status().code() != Code::kUnavailable) refuse(m.status());
    return m.status().with_context("waiting for HELLO");
  }
  auto* h = std::get_if<Hello>(&*m);
  if (!h) {
    Status st = Status::invalid_argument("expected HELLO first, got " + std::string(message_name(*m)));
    refuse(st);
    return st;
  }
  auto version = choose_version(*h);
  if (!version) {
    refuse(version.status());
    return version.status();
  }
  HelloOk ok;
  ok.version = *version;
  ok.namespace_name = ns_;
  ok.max_message_bytes = r_.options_.max_message_bytes;
  ok.max_inflight_puts = r_.options_.max_inflight_puts;
  ok.max_query_ids = kMaxQueryIds;
  ok.flags = r_.options_.append_only ? kHelloFlagAppendOnly : 0;
  return c_.send(ok);
}

Status Receiver::Session::run() {
  RETURN_IF_ERROR(hello());
  r_.stats_.served++;
  while (!r_.stopping_.load()) {
    // With acknowledgements owed, wait only briefly for a further message
    // to begin: when none does, the client has sent all it had, so sync now.
    const int timeout_ms = pending_.empty() ? r_.options_.idle_timeout_ms : r_.options_.ack_delay_ms;
    auto m = c_.recv_next(timeout_ms);
    if (!m) {
      const Status& st = m.status();
      if (st.code() == Code::kTimeout && !pending_.empty()) {
        RETURN_IF_ERROR(flush_acks());
        continue;
      }
      if (st.code() == Code::kUnavailable) {
        return r_.stopping_.load() ? Status::aborted("receiver stopping") : st;
      }
      if (st.code() == Code::kTimeout) {
        Status idle = Status::timeout("no request for " + std::to_string(r_.options_.idle_timeout_ms / 1000) +
                                      " s; closing idle connection");
        refuse(idle);
        return idle;
      }
      refuse(st);  // oversized or malformed: this connection only
      return st;
    }
    if (std::holds_alternative<Bye>(*m)) {
      RETURN_IF_ERROR(flush_acks());
      return Status::ok();
    }
    if (!std::holds_alternative<Put>(*m)) RETURN_IF_ERROR(flush_acks());
    RETURN_IF_ERROR(handle(*m));
  }
  return Status::aborted("receiver stopping");
}

Status Receiver::Session::handle(Message& m) {
  ChunkStore& store = r_.store_;
  if (auto* put = std::get_if<Put>(&m)) return on_put(*put);
  if (auto* q = std::get_if<Query>(&m)) {
    auto have = store.have(ns_, q->ids);
    if (!have) return reply_error(q->request_id, have.status());
    QueryReply reply;
    reply.request_id = q->request_id;
    reply.missing.resize(have->size());
    for (std::size_t i = 0; i < have->size(); ++i) reply.missing[i] = !(*have)[i];
    return c_.send(reply);
  }
  if (auto* commit = std::get_if<Commit>(&m)) return on_commit(*commit);
  if (auto* list = std::get_if<List>(&m)) {
    auto snaps = store.list(ns_);
    if (!snaps) return reply_error(list->request_id, snaps.status());
    ListReply reply;
    reply.request_id = list->request_id;
    for (const ferry::SnapshotInfo& s : *snaps) {
      reply.snapshots.push_back({s.name, s.created_ns / 1'000'000'000, s.logical_bytes,
                                 static_cast<std::uint32_t>(s.files), static_cast<std::uint32_t>(s.chunks)});
    }
    return c_.send(reply);
  }
  if (auto* gm = std::get_if<GetManifest>(&m)) {
    auto bytes = store.manifest(ns_, gm->snapshot);
    if (!bytes) return reply_error(gm->request_id, bytes.status());
    return c_.send(ManifestData{gm->request_id, gm->snapshot, std::move(*bytes)});
  }
  if (auto* gc = std::get_if<GetChunk>(&m)) return on_get_chunk(*gc);
  if (auto* d = std::get_if<Delete>(&m)) return on_delete(*d);
  if (auto* p = std::get_if<Prune>(&m)) return on_prune(*p);
  if (auto* ping = std::get_if<Ping>(&m)) return c_.send(Pong{ping->request_id});
  Status st = Status::invalid_argument("unexpected " + std::string(message_name(m)) + " from a client");
  refuse(st);
  return st;
}

Status Receiver::Session::on_put(Put& m) {
  puts++;
  put_bytes += m.frame.size();
  r_.stats_.puts++;
  r_.stats_.put_bytes += m.frame.size();
  PendingAck ack;
  ack.request_id = m.request_id;
  auto put = r_.store_.put(ns_, m.frame);
  if (put) {
    ack.id = put->id;
  } else {
    ack.status = put.status();
  }
  pending_bytes_ += m.frame.size();
  c_.recycle(std::move(m.frame));
  pending_.push_back(std::move(ack));
  if (pending_.size() >= ack_batch() || pending_bytes_ >= r_.options_.group_commit_bytes) return flush_acks();
  return Status::ok();
}

Status Receiver::Session::flush_acks() {
  if (pending_.empty()) return Status::ok();
  const bool any_ok =
      std::any_of(pending_.begin(), pending_.end(), [](const PendingAck& a) { return a.status.is_ok(); });
  if (any_ok) {
    Status synced = r_.store_.sync(ns_);
    r_.stats_.syncs++;
    if (!synced) {
      for (PendingAck& a : pending_) {
        if (a.status) a.status = synced.with_context("chunk " + to_hex(a.id) + " not made durable");
      }
    }
  }
  std::vector<PendingAck> acks = std::move(pending_);
  pending_.clear();
  pending_bytes_ = 0;
  for (const PendingAck& a : acks) {
    if (a.status) {
      RETURN_IF_ERROR(c_.send(PutAck{a.request_id, a.id}));
    } else {
      RETURN_IF_ERROR(reply_error(a.request_id, a.status));
    }
  }
  return Status::ok();
}

Status Receiver::Session::on_commit(const Commit& m) {
  Status st = r_.store_.commit_snapshot(ns_, m.snapshot, m.manifest);
  if (!st) return reply_error(m.request_id, st);
  commits++;
  r_.stats_.commits++;
  std::string line = "commit ns=" + ns_ + " snapshot=" + quoted(m.snapshot) +
                     " manifest_bytes=" + std::to_string(m.manifest.size());
  if (auto parsed = parse_manifest(m.manifest)) {
    line += " host=" + quoted(parsed->host) + " job=" + quoted(parsed->job) +
            " step=" + std::to_string(parsed->step) + " files=" + std::to_string(parsed->files.size()) +
            " chunks=" + std::to_string(parsed->chunk_count()) +
            " logical_bytes=" + std::to_string(parsed->logical_bytes());
  }
  r_.log(line);
  return c_.send(CommitOk{m.request_id, m.snapshot});
}

Status Receiver::Session::on_get_chunk(const GetChunk& m) {
  for (const Digest& id : m.ids) {
    auto frame = r_.store_.get(ns_, id);
    if (!frame) {
      RETURN_IF_ERROR(reply_error(m.request_id, frame.status()));  // the store names the chunk
      continue;
    }
    chunks_served++;
    r_.stats_.chunks_served++;
    RETURN_IF_ERROR(c_.send(ChunkData{m.request_id, std::move(*frame)}));
  }
  return Status::ok();
}

Status Receiver::Session::gc_into(Removed& out) {
  auto gc = r_.store_.gc(ns_, Actor::kHost);
  if (!gc) {
    r_.log("gc ns=" + ns_ + " error=" + quoted(gc.status().to_string()));
    return Status::ok();  // the snapshots are gone; space comes back at the next gc
  }
  out.chunks_freed = gc->chunks_removed;
  out.bytes_freed = gc->bytes_removed;
  return Status::ok();
}

Status Receiver::Session::on_delete(const Delete& m) {
  if (r_.options_.append_only) {
    return reply_error(
        m.request_id,
        Status::permission_denied("namespace " + ns_ + " is append-only: hosts may not delete snapshots"));
  }
  Status st = r_.store_.remove_snapshot(ns_, m.snapshot, Actor::kHost);
  if (!st) return reply_error(m.request_id, st);
  r_.log("delete ns=" + ns_ + " snapshot=" + quoted(m.snapshot));
  Removed removed;
  removed.request_id = m.request_id;
  removed.snapshots.push_back(m.snapshot);
  RETURN_IF_ERROR(gc_into(removed));
  return c_.send(removed);
}

Status Receiver::Session::on_prune(const Prune& m) {
  if (r_.options_.append_only) {
    return reply_error(
        m.request_id, Status::permission_denied("namespace " + ns_ + " is append-only: hosts may not prune"));
  }
  RetentionPolicy policy;
  policy.keep_last = m.keep_last;
  policy.keep_within_seconds =
      static_cast<std::int64_t>(std::min<std::uint64_t>(m.keep_within_seconds, std::uint64_t{1} << 32));
  if (policy.keep_last == 0 && policy.keep_within_seconds == 0) {
    return reply_error(m.request_id,
                       Status::invalid_argument("prune needs keep_last or keep_within_seconds"));
  }
  Removed removed;
  removed.request_id = m.request_id;
  const std::int64_t now = wall_ns();
  if (m.dry_run) {
    auto snaps = r_.store_.list(ns_);
    if (!snaps) return reply_error(m.request_id, snaps.status());
    removed.snapshots = select_retention(*snaps, policy, now).removed;  // the store's own rule
    return c_.send(removed);
  }
  auto report = r_.store_.prune(ns_, policy, now, Actor::kHost);
  if (!report) return reply_error(m.request_id, report.status());
  removed.snapshots = std::move(report->removed);
  r_.log("prune ns=" + ns_ + " removed=" + std::to_string(removed.snapshots.size()) +
         " kept=" + std::to_string(report->kept.size()));
  RETURN_IF_ERROR(gc_into(removed));
  return c_.send(removed);
}

// ---------------------------------------------------------------------------

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
      log("accept error=" + quoted(Status::from_errno(errno, "poll").to_string()));
      return;
    }
    if (stopping_.load() || (fds[1].revents & POLLIN)) return;
    int fd = ::accept4(listener_->fd(), nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNABORTED) continue;
      // EMFILE and friends: back off rather than spin; served clients go on.
      log("accept error=" + quoted(Status::from_errno(errno, "accept").to_string()));
      ::poll(nullptr, 0, 100);
      continue;
    }
    io::Socket socket = io::Socket::adopt(fd);
    stats_.accepted++;
    std::lock_guard lock(mu_);
    reap_finished();
    const bool over = served_ >= options_.max_connections;
    if (over && refusing_ >= kMaxRefusingConnections) {
      stats_.refused++;
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
    line = "refused peer=" + peer + " reason=" + quoted(accepted.status().to_string());
  } else if (over_limit) {
    stats_.refused++;
    Status st = Status::exhausted("receiver at its limit of " + std::to_string(options_.max_connections) +
                                  " connections; try again later");
    (void)(*accepted)->send(error_from_status(0, st));
    line =
        "refused peer=" + peer + " ns=" + (*accepted)->peer_identity() + " reason=" + quoted(st.to_string());
  } else {
    Connection& c = **accepted;
    Session session(*this, c, c.peer_identity());
    Status st = session.run();
    const ConnectionCounters& k = c.counters();
    char dur[32];
    std::snprintf(dur, sizeof dur, "%.3f", mono_seconds() - start);
    line = "conn peer=" + peer + " ns=" + c.peer_identity() +
           " result=" + (st ? std::string("ok") : quoted(st.to_string())) + " seconds=" + dur +
           " puts=" + std::to_string(session.puts) + " put_bytes=" + std::to_string(session.put_bytes) +
           " commits=" + std::to_string(session.commits) +
           " chunks_served=" + std::to_string(session.chunks_served) +
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
  std::lock_guard lock(mu_);
  s.connections_active = served_;
  return s;
}

}  // namespace ferry::replication
