// receiver_session.h: one served connection of the DR receiver (receiver.h);
// internal to it. A Session runs the request loop of one namespace: it
// answers reads and COMMIT itself, hands PUTs to its GroupCommit (answered
// only once a sync made them durable) and DELETE and PRUNE to its Deletion.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "replication/connection.h"
#include "replication/protocol.h"
#include "replication/receiver.h"

namespace ferry::replication {

// A value for a key=value log line, quoted when it holds spaces or quotes.
std::string log_quoted(std::string_view v);

// The PUTs of one connection. Each frame is verified and stored as it
// arrives, but answered only after a sync made it durable; answers go out in
// request order. One sync serves every PUT queued since the last (group
// commit).
class Receiver::GroupCommit {
 public:
  GroupCommit(Receiver& r, Connection& c, const std::string& ns) : r_(r), c_(c), ns_(ns) {}

  // Stores the frame, hands its buffer back to the connection and queues
  // the answer; flushes once the queue holds half the client's window or
  // group_commit_bytes. A non-OK return ends the connection.
  Status add(Put& put);
  // Syncs (when any queued PUT was stored) and sends every queued answer:
  // PUT_ACK, or an ERROR naming the chunk.
  Status flush();
  bool empty() const { return pending_.empty(); }

  std::uint64_t puts = 0, put_bytes = 0;

 private:
  struct PendingAck {
    std::uint64_t request_id = 0;
    Digest id{};
    Status status;
  };
  std::size_t batch_puts() const { return std::max<std::size_t>(1, r_.options_.max_inflight_puts / 2); }

  Receiver& r_;
  Connection& c_;
  const std::string& ns_;
  std::vector<PendingAck> pending_;
  std::uint64_t pending_bytes_ = 0;
};

// DELETE and PRUNE on behalf of one namespace's host: refused in
// append-only mode; otherwise the snapshots go, a gc follows, and REMOVED
// reports both. A request that fails is answered with an ERROR; a non-OK
// return ends the connection.
class Receiver::Deletion {
 public:
  Deletion(Receiver& r, Connection& c, const std::string& ns) : r_(r), c_(c), ns_(ns) {}

  Status on_delete(const Delete& m);
  Status on_prune(const Prune& m);
  // The protocol version HELLO settled (REMOVED's shape depends on it).
  void set_version(std::uint16_t version) { version_ = version; }

 private:
  // Sends REMOVED, naming at most kMaxRemovedNamesInReply snapshots.
  Status send_removed(Removed& removed);
  // Collects what the removal freed into `out`; a failed gc is logged only
  // (the snapshots are gone; the space comes back at the next gc).
  void gc_into(Removed& out);

  Receiver& r_;
  Connection& c_;
  const std::string& ns_;
  std::uint16_t version_ = kMinProtocolVersion;
};

// The request loop of one authenticated connection.
class Receiver::Session {
 public:
  Session(Receiver& r, Connection& c, std::string ns)
      : r_(r), c_(c), ns_(std::move(ns)), puts_(r, c, ns_), deletion_(r, c, ns_) {}

  // Serves until BYE, the peer closes, a fatal error or stop(). OK for an
  // orderly end; otherwise why the connection was dropped.
  Status run();

  std::uint64_t puts() const { return puts_.puts; }
  std::uint64_t put_bytes() const { return puts_.put_bytes; }
  std::uint64_t commits() const { return commits_; }
  std::uint64_t chunks_served() const { return chunks_served_; }

 private:
  Status hello();
  // Why the session ends after a wait for a request failed (closed, idle,
  // oversized or malformed), telling the client where it still can.
  Status end_on_recv_failure(const Status& st);
  // A request that the connection survives answers with an ERROR carrying
  // its id; a non-OK return ends the connection.
  Status handle(Message& m);
  Status on_query(const Query& m);
  // Version 1: one reply; a paged LIST (version 2): the page after its
  // cursor, at most kMaxListPageSnapshots and kMaxListPageBytes.
  Status on_list(const List& m);
  Status list_too_long(std::size_t count) const;
  Status on_commit(const Commit& m);
  Status on_get_chunk(const GetChunk& m);
  // Best effort: tells the client why it is being dropped.
  void refuse(const Status& st) { (void)c_.send(error_from_status(0, st)); }

  Receiver& r_;
  Connection& c_;
  const std::string ns_;
  GroupCommit puts_;
  Deletion deletion_;
  std::uint64_t commits_ = 0, chunks_served_ = 0;
};

}  // namespace ferry::replication
