// delta_base_choice.cc: see delta_base_choice.h.
#include "replication/delta_base_choice.h"

#include <algorithm>
#include <memory>
#include <vector>

#include "replication/protocol.h"

namespace ferry::replication {
namespace {

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
        ASSIGN_OR_RETURN(std::optional<Manifest> m, fetch(listing_[at_].name));
        if (m) group.emplace_back(m->created_ns, chain_snapshot_of(listing_[at_].name, *m));
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
