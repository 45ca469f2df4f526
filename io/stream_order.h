// stream_order.h: keeps sends (and recvs) on one socket in submission order.
// A stream socket's bytes must leave in the order the caller queued them,
// but two sends in flight at once may interleave when one goes out short and
// is resubmitted (io_uring gives no order between unlinked requests). The
// thread backend (sends and recvs) and io_uring's single-shot recvs therefore
// run at most one per socket at a time and hold the rest in a FIFO here; the
// next starts when the head finishes. io_uring's sends go as linked chains
// and its multishot recvs fill in order (io/uring_engine.h).
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <unordered_map>

#include "io/engine.h"

namespace ferry::io {

class StreamOrder {
 public:
  static bool applies(OpKind kind) { return kind == OpKind::kSend || kind == OpKind::kRecv; }

  // Records `slot`; true when it may start now (nothing earlier in flight).
  bool admit(int fd, OpKind kind, unsigned slot) {
    auto& q = queues_[key(fd, kind)];
    q.push_back(slot);
    return q.size() == 1;
  }

  // Forgets `slot` (finished, or cancelled while waiting). Returns the slot
  // that may start now, when `slot` was the one in flight.
  std::optional<unsigned> release(int fd, OpKind kind, unsigned slot) {
    auto it = queues_.find(key(fd, kind));
    if (it == queues_.end()) return std::nullopt;
    auto& q = it->second;
    std::optional<unsigned> next;
    if (!q.empty() && q.front() == slot) {
      q.pop_front();
      if (!q.empty()) next = q.front();
    } else {
      for (auto i = q.begin(); i != q.end(); ++i) {
        if (*i == slot) {
          q.erase(i);
          break;
        }
      }
    }
    if (q.empty()) queues_.erase(it);
    return next;
  }

 private:
  static std::uint64_t key(int fd, OpKind kind) {
    return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(fd)) << 8) |
           static_cast<std::uint64_t>(kind);
  }
  std::unordered_map<std::uint64_t, std::deque<unsigned>> queues_;
};

}  // namespace ferry::io
