// receiver_session.cc: see receiver_session.h.
#include "replication/receiver_session.h"

#include <algorithm>
#include <charconv>
#include <iterator>
#include <utility>

#include "base/clock.h"
#include "codec/manifest.h"
#include "store/retention.h"

namespace ferry::replication {
namespace {

Status send_error(Connection& c, std::uint64_t request_id, const Status& st) {
  return c.send(error_from_status(request_id, st));
}

// Whether a failure's message holds what only the receiver's operator should
// see: a path (namespaces, snapshot names and chunk ids never hold a '/'), or
// the text of an OS or internal error.
bool carries_receiver_detail(const Status& st) {
  return st.code() == Code::kIOError || st.code() == Code::kInternal ||
         st.message().find('/') != std::string::npos;
}

// A LIST cursor: "<created_ns>/<name>" of the last snapshot listed; the
// store lists in (created_ns, name) order.
std::string list_cursor(const ferry::SnapshotInfo& s) { return std::to_string(s.created_ns) + "/" + s.name; }

Result<std::pair<std::int64_t, std::string>> parse_list_cursor(std::string_view cursor) {
  const std::size_t slash = cursor.find('/');
  std::int64_t created = 0;
  if (slash != std::string_view::npos) {
    auto [end, ec] = std::from_chars(cursor.data(), cursor.data() + slash, created);
    std::string name(cursor.substr(slash + 1));
    if (ec == std::errc() && end == cursor.data() + slash && validate_snapshot_name(name).is_ok())
      return std::pair{created, std::move(name)};
  }
  return Status::invalid_argument("LIST cursor \"" + std::string(cursor) +
                                  "\" is not one this receiver gave (list again from the start)");
}

}  // namespace

Status Receiver::send_client_error(Connection& c, std::uint64_t request_id, std::string_view ns,
                                   std::string_view subject, const Status& st) const {
  if (!carries_receiver_detail(st)) return send_error(c, request_id, st);
  log("error ns=" + std::string(ns) + " peer=" + c.peer_name() + " subject=" + log_quoted(subject) +
      " error=" + log_quoted(st.to_string()));
  return send_error(
      c, request_id,
      Status(st.code(), std::string(subject) + " failed on the receiver (" +
                            std::string(code_name(st.code())) + "); the receiver's log has the details"));
}

Status Receiver::send_reply(Connection& c, std::string_view ns, std::string_view subject,
                            const Message& m) const {
  Status st = c.send(m);
  // Refused before a byte left (Connection::send): the stream is intact.
  if (st.code() == Code::kResourceExhausted && c.is_open())
    return send_client_error(c, request_id_of(m), ns, subject, st);
  return st;
}

std::string log_quoted(std::string_view v) {
  if (!v.empty() && v.find_first_of(" \"=\n") == std::string_view::npos) return std::string(v);
  std::string out = "\"";
  for (char c : v) {
    if (c == '"' || c == '\\') out += '\\';
    out += c == '\n' ? ' ' : c;
  }
  return out + "\"";
}

// ---- GroupCommit ----------------------------------------------------------

Status Receiver::GroupCommit::add(Put& m) {
  puts++;
  put_bytes += m.frame.size();
  r_.stats_.puts++;
  r_.stats_.put_bytes += m.frame.size();
  PendingAck ack;
  ack.request_id = m.request_id;
  auto put = r_.store_.put(ns_, m.frame);
  if (put) {
    ack.id = put->id;
    if (put->stored) r_.stats_.stored++;
  } else {
    ack.status = put.status();
  }
  pending_bytes_ += m.frame.size();
  c_.recycle(std::move(m.frame));
  pending_.push_back(std::move(ack));
  if (pending_.size() >= batch_puts() || pending_bytes_ >= r_.options_.group_commit_bytes) return flush();
  return Status::ok();
}

Status Receiver::GroupCommit::flush() {
  if (pending_.empty()) return Status::ok();
  const bool any_ok =
      std::any_of(pending_.begin(), pending_.end(), [](const PendingAck& a) { return a.status.is_ok(); });
  if (any_ok) {
    const double t0 = mono_seconds();
    Status synced = r_.store_.sync(ns_);
    r_.stats_.syncs++;
    r_.stats_.sync_seconds.observe(mono_seconds() - t0);
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
      const std::string subject =
          a.id == Digest{} ? "PUT " + std::to_string(a.request_id) : "chunk " + to_hex(a.id);
      RETURN_IF_ERROR(r_.send_client_error(c_, a.request_id, ns_, subject, a.status));
    }
  }
  return Status::ok();
}

// ---- Deletion -------------------------------------------------------------

void Receiver::Deletion::gc_into(Removed& out) {
  auto gc = r_.store_.gc(ns_, Actor::kHost);
  if (!gc) {
    r_.log("gc ns=" + ns_ + " error=" + log_quoted(gc.status().to_string()));
    return;
  }
  out.chunks_freed = gc->chunks_removed;
  out.bytes_freed = gc->bytes_removed;
}

Status Receiver::Deletion::on_delete(const Delete& m) {
  if (r_.options_.append_only) {
    return send_error(
        c_, m.request_id,
        Status::permission_denied("namespace " + ns_ + " is append-only: hosts may not delete snapshots"));
  }
  Status st = r_.store_.remove_snapshot(ns_, m.snapshot, Actor::kHost);
  if (!st) return r_.send_client_error(c_, m.request_id, ns_, "DELETE of snapshot " + m.snapshot, st);
  r_.log("delete ns=" + ns_ + " snapshot=" + log_quoted(m.snapshot));
  Removed removed;
  removed.request_id = m.request_id;
  removed.snapshots.push_back(m.snapshot);
  gc_into(removed);
  return send_removed(removed);
}

Status Receiver::Deletion::on_prune(const Prune& m) {
  if (r_.options_.append_only) {
    return send_error(c_, m.request_id,
                      Status::permission_denied("namespace " + ns_ + " is append-only: hosts may not prune"));
  }
  RetentionPolicy policy;
  policy.keep_last = m.keep_last;
  policy.keep_within_seconds =
      static_cast<std::int64_t>(std::min<std::uint64_t>(m.keep_within_seconds, std::uint64_t{1} << 32));
  if (policy.keep_last == 0 && policy.keep_within_seconds == 0) {
    return send_error(c_, m.request_id,
                      Status::invalid_argument("prune needs keep_last or keep_within_seconds"));
  }
  Removed removed;
  removed.request_id = m.request_id;
  const std::int64_t now = wall_ns();
  if (m.dry_run) {
    auto snaps = r_.store_.list(ns_);
    if (!snaps) return r_.send_client_error(c_, m.request_id, ns_, "PRUNE", snaps.status());
    removed.snapshots = select_retention(*snaps, policy, now).removed;  // the store's own rule
    return send_removed(removed);
  }
  auto report = r_.store_.prune(ns_, policy, now, Actor::kHost);
  if (!report) return r_.send_client_error(c_, m.request_id, ns_, "PRUNE", report.status());
  removed.snapshots = std::move(report->removed);
  r_.log("prune ns=" + ns_ + " removed=" + std::to_string(removed.snapshots.size()) +
         " kept=" + std::to_string(report->kept.size()));
  gc_into(removed);
  return send_removed(removed);
}

Status Receiver::Deletion::send_removed(Removed& removed) {
  // A prune may remove more snapshots than one reply should name: the
  // first kMaxRemovedNamesInReply are named, the rest counted (version 2).
  std::size_t named = std::min(removed.snapshots.size(), kMaxRemovedNamesInReply);
  removed.counted = version_ >= kPagedListVersion;
  removed.unnamed = removed.snapshots.size() - named;
  removed.snapshots.resize(named);
  return c_.send(removed);
}

// ---- Session --------------------------------------------------------------

Status Receiver::Session::hello() {
  auto m = c_.recv(r_.options_.handshake_timeout_ms);
  if (!m) r_.stats_.refused_hello++;
  if (!m) {
    if (m.status().code() != Code::kUnavailable) refuse(m.status());
    return m.status().with_context("waiting for HELLO");
  }
  auto* h = std::get_if<Hello>(&*m);
  if (!h) {
    Status st = Status::invalid_argument("expected HELLO first, got " + std::string(message_name(*m)));
    r_.stats_.refused_hello++;
    refuse(st);
    return st;
  }
  auto version = choose_version(*h);
  if (!version) {
    r_.stats_.refused_hello++;
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
  deletion_.set_version(*version);
  return c_.send(ok);
}

Status Receiver::Session::run() {
  RETURN_IF_ERROR(hello());
  r_.stats_.served++;
  while (!r_.stopping_.load()) {
    // With acknowledgements owed, wait only briefly for a further message
    // to begin: when none does, the client has sent all it had, so sync now.
    const int timeout_ms = puts_.empty() ? r_.options_.idle_timeout_ms : r_.options_.ack_delay_ms;
    auto m = c_.recv_next(timeout_ms);
    if (!m) {
      if (m.status().code() == Code::kTimeout && !puts_.empty()) {
        RETURN_IF_ERROR(puts_.flush());
        continue;
      }
      return end_on_recv_failure(m.status());
    }
    if (std::holds_alternative<Bye>(*m)) {
      RETURN_IF_ERROR(puts_.flush());
      return Status::ok();
    }
    if (!std::holds_alternative<Put>(*m)) RETURN_IF_ERROR(puts_.flush());
    RETURN_IF_ERROR(handle(*m));
  }
  return Status::aborted("receiver stopping");
}

Status Receiver::Session::end_on_recv_failure(const Status& st) {
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

Status Receiver::Session::handle(Message& m) {
  if (auto* put = std::get_if<Put>(&m)) return puts_.add(*put);
  if (auto* q = std::get_if<Query>(&m)) return on_query(*q);
  if (auto* commit = std::get_if<Commit>(&m)) return on_commit(*commit);
  if (auto* list = std::get_if<List>(&m)) return on_list(*list);
  if (auto* gm = std::get_if<GetManifest>(&m)) {
    const std::string subject = "manifest of snapshot " + gm->snapshot;
    auto bytes = r_.store_.manifest(ns_, gm->snapshot);
    if (!bytes) return r_.send_client_error(c_, gm->request_id, ns_, subject, bytes.status());
    return r_.send_reply(c_, ns_, subject, ManifestData{gm->request_id, gm->snapshot, std::move(*bytes)});
  }
  if (auto* gc = std::get_if<GetChunk>(&m)) return on_get_chunk(*gc);
  if (auto* d = std::get_if<Delete>(&m)) return deletion_.on_delete(*d);
  if (auto* p = std::get_if<Prune>(&m)) return deletion_.on_prune(*p);
  if (auto* ping = std::get_if<Ping>(&m)) return c_.send(Pong{ping->request_id});
  Status st = Status::invalid_argument("unexpected " + std::string(message_name(m)) + " from a client");
  refuse(st);
  return st;
}

Status Receiver::Session::on_query(const Query& m) {
  auto have = r_.store_.have(ns_, m.ids);
  if (!have) return r_.send_client_error(c_, m.request_id, ns_, "QUERY", have.status());
  QueryReply reply;
  reply.request_id = m.request_id;
  reply.missing.resize(have->size());
  for (std::size_t i = 0; i < have->size(); ++i) reply.missing[i] = !(*have)[i];
  return c_.send(reply);
}

Status Receiver::Session::on_list(const List& m) {
  auto snaps = r_.store_.list(ns_);
  if (!snaps) return r_.send_client_error(c_, m.request_id, ns_, "LIST", snaps.status());
  ListReply reply;
  reply.request_id = m.request_id;
  reply.paged = m.paged;
  auto info = [](const ferry::SnapshotInfo& s) {
    return SnapshotInfo{s.name, s.created_ns / 1'000'000'000, s.logical_bytes,
                        static_cast<std::uint32_t>(s.files), static_cast<std::uint32_t>(s.chunks)};
  };
  if (!m.paged) {
    // Version 1: every snapshot in one reply, when they fit the client's
    // limit; past it the client is told to list in pages.
    if (snaps->size() > kMaxListedSnapshots)
      return send_error(c_, m.request_id, list_too_long(snaps->size()));
    for (const ferry::SnapshotInfo& s : *snaps) reply.snapshots.push_back(info(s));
    Status st = c_.send(reply);
    if (st.code() == Code::kResourceExhausted && c_.is_open())
      return send_error(c_, m.request_id, list_too_long(snaps->size()));
    return st;
  }
  auto begin = snaps->begin();
  if (!m.after.empty()) {
    auto cursor = parse_list_cursor(m.after);
    if (!cursor) return send_error(c_, m.request_id, cursor.status());
    begin = std::find_if(snaps->begin(), snaps->end(), [&](const ferry::SnapshotInfo& s) {
      return std::pair(s.created_ns, std::string_view(s.name)) >
             std::pair(cursor->first, std::string_view(cursor->second));
    });
  }
  std::size_t bytes = kRequestIdBytes + 4 + 2 + kMaxListCursorBytes;
  for (auto it = begin; it != snaps->end(); ++it) {
    if (reply.snapshots.size() == r_.options_.list_page_snapshots ||
        bytes + kMinSnapshotInfoBytes + it->name.size() > kMaxListPageBytes) {
      reply.next = list_cursor(*std::prev(it));
      break;
    }
    bytes += kMinSnapshotInfoBytes + it->name.size();
    reply.snapshots.push_back(info(*it));
  }
  return c_.send(reply);
}

Status Receiver::Session::list_too_long(std::size_t count) const {
  return Status::exhausted(std::to_string(count) + " snapshots in namespace " + ns_ +
                           " do not fit one LIST reply; a ferry that speaks protocol version " +
                           std::to_string(kPagedListVersion) + " lists them in pages");
}

Status Receiver::Session::on_commit(const Commit& m) {
  Status st = r_.store_.commit_snapshot(ns_, m.snapshot, m.manifest);
  if (!st) return r_.send_client_error(c_, m.request_id, ns_, "COMMIT of snapshot " + m.snapshot, st);
  commits_++;
  r_.stats_.commits++;
  std::string line = "commit ns=" + ns_ + " snapshot=" + log_quoted(m.snapshot) +
                     " manifest_bytes=" + std::to_string(m.manifest.size());
  if (auto parsed = parse_manifest(m.manifest)) {
    line += " host=" + log_quoted(parsed->host) + " job=" + log_quoted(parsed->job) +
            " step=" + std::to_string(parsed->step) + " files=" + std::to_string(parsed->files.size()) +
            " chunks=" + std::to_string(parsed->chunk_count()) +
            " logical_bytes=" + std::to_string(parsed->logical_bytes());
  }
  r_.log(line);
  return c_.send(CommitOk{m.request_id, m.snapshot});
}

Status Receiver::Session::on_get_chunk(const GetChunk& m) {
  for (const Digest& id : m.ids) {
    const std::string subject = "chunk " + to_hex(id);
    auto frame = r_.store_.get(ns_, id);
    if (!frame) {
      RETURN_IF_ERROR(r_.send_client_error(c_, m.request_id, ns_, subject, frame.status()));
      continue;
    }
    chunks_served_++;
    r_.stats_.chunks_served++;
    RETURN_IF_ERROR(r_.send_reply(c_, ns_, subject, ChunkData{m.request_id, std::move(*frame)}));
  }
  return Status::ok();
}

}  // namespace ferry::replication
