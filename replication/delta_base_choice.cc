// delta_base_choice.cc: see delta_base_choice.h.
#include "replication/delta_base_choice.h"

#include <algorithm>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <tuple>
#include <vector>

#include "replication/limits.h"
#include "replication/protocol.h"

namespace ferry::replication {
namespace {

// The chain facts of snapshots this process has read, by receiver, name and
// LIST's creation second: a committed snapshot never changes, so the next
// push's base choice (the agent's, every checkpoint) fetches only the
// manifests it has not seen. A name reused after a removal in the same
// second could alias: that costs at most a base whose chunks do not match,
// which the chunk ids catch (full frames, never wrong ones).
class ChainFactsCache {
 public:
  struct Facts {
    std::int64_t created_ns = 0;
    ChainSnapshot snapshot;
  };
  using Key = std::tuple<std::string, std::string, std::int64_t>;  // peer, name, created second

  static ChainFactsCache& instance() {
    static auto* cache = new ChainFactsCache();  // never destroyed: pushes may run at exit
    return *cache;
  }
  std::optional<Facts> find(const Key& key) {
    std::lock_guard lock(mu_);
    auto it = facts_.find(key);
    if (it == facts_.end()) return std::nullopt;
    return it->second;
  }
  void add(Key key, Facts facts) {
    std::lock_guard lock(mu_);
    if (!facts_.emplace(key, std::move(facts)).second) return;
    order_.push_back(std::move(key));
    if (order_.size() > kMaxCachedChainSnapshots) {
      facts_.erase(order_.front());
      order_.pop_front();
    }
  }

 private:
  std::mutex mu_;
  std::map<Key, Facts> facts_;
  std::deque<Key> order_;  // oldest first
};

// Walks the listing newest first. LIST's times are whole seconds, so the
// snapshots of one second are fetched together and ordered by their
// manifests' nanoseconds before any is handed out.
class ReceiverWalk {
 public:
  ReceiverWalk(std::uint16_t version, Requester request, std::string peer)
      : version_(version), request_(std::move(request)), peer_(std::move(peer)) {}

  Result<std::optional<ChainSnapshot>> next() {
    if (!listed_) {
      ASSIGN_OR_RETURN(listing_, list_snapshots(version_, request_, peer_));
      std::sort(listing_.begin(), listing_.end(), [](const SnapshotInfo& a, const SnapshotInfo& b) {
        return a.created_unix_seconds != b.created_unix_seconds
                   ? a.created_unix_seconds > b.created_unix_seconds
                   : a.name > b.name;
      });
      listed_ = true;
    }
    while (ready_.empty()) {
      if (at_ == listing_.size()) return std::optional<ChainSnapshot>();
      const std::int64_t second = listing_[at_].created_unix_seconds;
      std::vector<std::pair<std::int64_t, ChainSnapshot>> group;
      for (; at_ < listing_.size() && listing_[at_].created_unix_seconds == second; ++at_) {
        const std::string& name = listing_[at_].name;
        ChainFactsCache::Key key{peer_, name, second};
        if (auto known = ChainFactsCache::instance().find(key)) {
          group.emplace_back(known->created_ns, std::move(known->snapshot));
          continue;
        }
        ASSIGN_OR_RETURN(std::optional<Manifest> m, fetch(name));
        if (!m) continue;
        ChainSnapshot s = chain_snapshot_of(name, *m);
        ChainFactsCache::instance().add(std::move(key), {m->created_ns, s});
        group.emplace_back(m->created_ns, std::move(s));
      }
      std::stable_sort(group.begin(), group.end(),
                       [](const auto& a, const auto& b) { return a.first > b.first; });
      for (auto it = group.rbegin(); it != group.rend(); ++it) ready_.push_back(std::move(it->second));
    }
    ChainSnapshot s = std::move(ready_.back());
    ready_.pop_back();
    return std::optional<ChainSnapshot>(std::move(s));
  }

 private:
  Result<std::optional<Manifest>> fetch(const std::string& name) {
    GetManifest get;
    get.snapshot = name;
    Result<Message> got = request_(get);
    if (!got) {
      if (got.status().code() == Code::kNotFound) return std::optional<Manifest>();  // pruned meanwhile
      return got.status();
    }
    const auto* data = std::get_if<ManifestData>(&*got);
    if (data == nullptr)
      return Status::corruption(peer_ + " answered GET_MANIFEST with " + std::string(message_name(*got)));
    auto m = parse_manifest(data->manifest);
    if (!m) return m.status().with_context(peer_ + ": manifest of snapshot " + name);
    return std::optional<Manifest>(std::move(*m));
  }

  const std::uint16_t version_;
  const Requester request_;
  const std::string peer_;
  bool listed_ = false;
  std::vector<SnapshotInfo> listing_;
  std::size_t at_ = 0;
  std::vector<ChainSnapshot> ready_;  // the current second's, oldest at the front
};

}  // namespace

NextSnapshot receiver_snapshots_newest_first(std::uint16_t version, Requester request, std::string peer) {
  auto walk = std::make_shared<ReceiverWalk>(version, std::move(request), std::move(peer));
  return [walk]() { return walk->next(); };
}

}  // namespace ferry::replication
