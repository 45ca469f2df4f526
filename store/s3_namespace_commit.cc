// s3_namespace_commit.cc: committing a snapshot into the bucket (see
// s3_namespace.h): every chunk it names must be in an uploaded pack that no
// concurrent gc has condemned, checked before and after the snapshot object
// is published (docs/FORMAT.md 9.5-9.6).
#include <algorithm>
#include <chrono>
#include <set>
#include <thread>

#include "base/clock.h"
#include "store/s3_namespace.h"
#include "store/snapshot_file.h"
#include "store/store_checks.h"
#include "store/store_limits.h"

namespace ferry {

Result<std::vector<std::optional<FrameFacts>>> S3Namespace::frame_facts(std::span<const Digest> ids) {
  std::vector<std::optional<FrameFacts>> out(ids.size());
  // The frame size of each id held now (pending or durable), whether its
  // remembered facts hold, and where a header must be read from.
  auto look = [&](std::vector<std::pair<std::size_t, Location>>& reads, std::vector<std::size_t>& absent) {
    std::lock_guard lock(mu_);
    for (std::size_t i = 0; i < ids.size(); ++i) {
      if (out[i]) continue;
      std::uint32_t frame_bytes = 0;
      auto it = index_.find(ids[i]);
      if (it != index_.end()) {
        frame_bytes = it->second.frame_bytes;
      } else if (auto p = pending_.find(ids[i]); p != pending_.end()) {
        frame_bytes = p->second.frame_bytes;
      } else {
        absent.push_back(i);
        continue;
      }
      auto f = facts_.find(ids[i]);
      if (f != facts_.end() && f->second.frame_bytes == frame_bytes) {
        out[i] = f->second;
      } else if (it != index_.end()) {
        reads.emplace_back(i, it->second);
      }
    }
  };
  std::vector<std::pair<std::size_t, Location>> reads;
  std::vector<std::size_t> absent;
  look(reads, absent);
  if (!absent.empty()) {
    // Stored through another gateway since this one last looked?
    RETURN_IF_ERROR(refresh_since(mono_ms()));
    reads.clear();
    absent.clear();
    look(reads, absent);
  }
  // Ranged GETs of the record and frame headers, many at once.
  constexpr std::uint64_t kHeadBytes = kRecordHeaderBytes + kFrameHeaderBytes;
  std::vector<S3Request> reqs(reads.size());
  std::vector<S3Request*> ptrs;
  for (std::size_t r = 0; r < reads.size(); ++r) {
    reqs[r].bucket = bucket_;
    reqs[r].key = pack_key(reads[r].second.pack);
    reqs[r].range = {reads[r].second.offset, reads[r].second.offset + kHeadBytes - 1};
    ptrs.push_back(&reqs[r]);
  }
  client_.run(ptrs);
  for (std::size_t r = 0; r < reads.size(); ++r) {
    const auto& [i, loc] = reads[r];
    const std::string where = reqs[r].key + " at offset " + std::to_string(loc.offset);
    if (!reqs[r].status) return reqs[r].status.with_context("chunk " + to_hex(ids[i]));
    const std::vector<std::byte>& head = reqs[r].reply;
    if (head.size() != kHeadBytes)
      return Status::corruption(where + ": short record for chunk " + to_hex(ids[i]));
    ASSIGN_OR_RETURN(FrameHeader h, parse_frame_header_only(std::span(head).subspan(kRecordHeaderBytes)));
    if (h.chunk_id != ids[i]) {
      return Status::corruption(where + ": holds chunk " + to_hex(h.chunk_id) + ", the index says " +
                                to_hex(ids[i]));
    }
    out[i] = FrameFacts{static_cast<std::uint8_t>(h.codec), loc.frame_bytes, h.base_id};
    std::lock_guard lock(mu_);
    facts_[ids[i]] = *out[i];
  }
  return out;
}

Status S3Namespace::check_chunks_durable(std::string_view snapshot, const Manifest& m,
                                         std::set<std::string>& packs) {
  auto count_missing = [&](std::string& first) {
    std::lock_guard lock(mu_);
    std::size_t missing = 0;
    packs.clear();
    for (const ManifestFile& f : m.files) {
      for (const ManifestChunk& c : f.chunks) {
        auto it = index_.find(c.id);
        if (it != index_.end()) {
          packs.insert(it->second.pack);
        } else if (missing++ == 0) {
          first = to_hex(c.id) + " (" + f.path + " at offset " + std::to_string(c.offset) + ")";
        }
      }
    }
    return missing;
  };
  std::string first;
  std::size_t missing = count_missing(first);
  if (missing != 0) {
    // Another gateway or host may have stored them: look again.
    RETURN_IF_ERROR(refresh(/*repair=*/false));
    missing = count_missing(first);
  }
  if (missing != 0) {
    return Status::not_found("namespace " + name_ + ": snapshot " + std::string(snapshot) + " names " +
                             std::to_string(missing) + " chunks the store lacks, first " + first);
  }
  // The index may be older than a gc elsewhere: every pack must still be
  // there. A gc that rewrote a pack before deleting it left its live chunks
  // in another pack, where the index finds them now: check that one too.
  for (int round = 0;; ++round) {
    ASSIGN_OR_RETURN(std::vector<std::string> gone, missing_packs(packs));
    if (gone.empty()) return Status::ok();
    if (round == 2 || count_missing(first) != 0) {
      return Status::not_found("namespace " + name_ + ": snapshot " + std::string(snapshot) +
                               " names chunks of pack " + gone[0] +
                               (gone.size() > 1 ? " and " + std::to_string(gone.size() - 1) + " more" : "") +
                               ", which are gone from the bucket; send them again");
    }
  }
}

Result<std::map<std::string, std::uint64_t>> S3Namespace::snapshot_objects() {
  const std::string dir = root_ + "snapshots/";
  constexpr std::string_view kSuffix = ".manifest";
  ASSIGN_OR_RETURN(std::vector<S3Object> objects, client_.list(bucket_, dir));
  std::map<std::string, std::uint64_t> out;
  std::uint64_t bytes = 0;
  for (const S3Object& o : objects) {
    if (!o.key.ends_with(kSuffix)) continue;
    std::string name = o.key.substr(dir.size(), o.key.size() - dir.size() - kSuffix.size());
    if (!validate_snapshot_name(name)) continue;
    bytes += o.size;
    out.emplace(std::move(name), o.size);
  }
  std::lock_guard lock(mu_);
  snapshot_bytes_ = bytes;
  snapshot_count_ = out.size();
  return out;
}

Result<std::vector<std::string>> S3Namespace::condemned_among(const std::set<std::string>& packs,
                                                              std::string& holder) {
  ASSIGN_OR_RETURN(auto state, read_s3_lock(client_, bucket_, lock_key()));
  std::vector<std::string> out;
  if (!state) return out;
  holder = describe_s3_lock(state->record);
  for (const std::string& p : state->record.condemned) {
    if (packs.count(p) != 0) out.push_back(p);
  }
  return out;
}

Status S3Namespace::wait_for_gc(std::string_view snapshot, const std::set<std::string>& packs) {
  const std::int64_t deadline_ms = mono_ms() + kS3CommitGcWaitMs;
  std::string holder;
  ASSIGN_OR_RETURN(auto condemned, condemned_among(packs, holder));
  if (condemned.empty()) return Status::ok();
  log("snapshot " + std::string(snapshot) + " needs pack " + condemned[0] + ", which gc (" + holder +
      ") is deleting: waiting for it");
  while (!condemned.empty()) {
    if (mono_ms() >= deadline_ms) {
      return Status::unavailable("namespace " + name_ + ": snapshot " + std::string(snapshot) +
                                 " needs pack " + condemned[0] + ", which gc (" + holder +
                                 ") is deleting; try again later");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(kS3LockPollMs));
    ASSIGN_OR_RETURN(condemned, condemned_among(packs, holder));
  }
  return Status::ok();
}

Status S3Namespace::check_safe_from_gc(std::string_view snapshot, const Manifest& m,
                                       std::set<std::string>& packs, std::int64_t& checked_ms) {
  for (;;) {
    // The lock object first, then the HEADs: a gc that finished before
    // this read deleted its packs before the HEADs look.
    checked_ms = mono_ms();
    ASSIGN_OR_RETURN(auto state, read_s3_lock(client_, bucket_, lock_key()));
    RETURN_IF_ERROR(check_chunks_durable(snapshot, m, packs));
    if (!state) return Status::ok();
    const auto& condemned = state->record.condemned;
    if (std::none_of(condemned.begin(), condemned.end(),
                     [&](const std::string& p) { return packs.count(p); })) {
      return Status::ok();
    }
    // gc may delete them any moment: once it is done, look again (a pack it
    // deleted is then missing, and its chunks must be sent again).
    RETURN_IF_ERROR(wait_for_gc(snapshot, packs));
    RETURN_IF_ERROR(refresh(/*repair=*/false));
  }
}

Result<std::vector<std::string>> S3Namespace::missing_packs(const std::set<std::string>& packs) {
  std::vector<std::string> names(packs.begin(), packs.end());
  std::vector<S3Request> reqs(names.size());
  std::vector<S3Request*> ptrs;
  for (std::size_t i = 0; i < names.size(); ++i) {
    reqs[i].method = S3Request::Method::kHead;
    reqs[i].bucket = bucket_;
    reqs[i].key = pack_key(names[i]);
    ptrs.push_back(&reqs[i]);
  }
  client_.run(ptrs);
  std::vector<std::string> gone;
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (reqs[i].status) continue;
    if (reqs[i].status.code() != Code::kNotFound) return reqs[i].status;
    gone.push_back(names[i]);
  }
  if (!gone.empty()) {
    // Forgotten, so that have() answers false and a push sends them again.
    std::lock_guard lock(mu_);
    forget_packs_locked(gone);
  }
  return gone;
}

Status S3Namespace::recheck_after_publish(std::string_view snapshot, const std::set<std::string>& packs) {
  RETURN_IF_ERROR(wait_for_gc(snapshot, packs));
  ASSIGN_OR_RETURN(std::vector<std::string> gone, missing_packs(packs));
  if (gone.empty()) return Status::ok();
  // gc read the snapshots before this one was published and deleted a pack
  // it needs: unpublish it, so that no snapshot names a lost chunk.
  Status removed = client_.remove(bucket_, snapshot_key(snapshot));
  return Status::not_found(
      "namespace " + name_ + ": snapshot " + std::string(snapshot) + " was published while gc deleted pack " +
      gone[0] + " it needs; " +
      (removed ? "it was unpublished; send its chunks again"
               : "unpublishing it failed (" + removed.to_string() + "); send its chunks again"));
}

Status S3Namespace::commit(std::string_view snapshot, std::span<const std::byte> bytes, const Manifest& m) {
  // The store's clock, not the host's, dates the snapshot for retention.
  const std::int64_t now_ns = wall_ns();
  RETURN_IF_ERROR(check_created_time(name_, snapshot, m.created_ns, now_ns));
  // A snapshot names only chunks in the bucket: the spool's go there first.
  RETURN_IF_ERROR(flush());
  std::set<std::string> packs;
  std::int64_t checked_ms = 0;
  RETURN_IF_ERROR(check_safe_from_gc(snapshot, m, packs, checked_ms));
  std::lock_guard commit_lock(commit_mu_);
  ASSIGN_OR_RETURN(auto existing, snapshot_objects());
  const std::vector<std::byte> file = serialize_snapshot_file(now_ns, bytes);
  if (existing.count(std::string(snapshot)) == 0) {
    if (existing.size() >= options_.max_snapshots) {
      return Status::exhausted("namespace " + name_ + ": snapshot " + std::string(snapshot) +
                               " refused: the namespace holds " + std::to_string(existing.size()) +
                               " snapshots, its limit; prune older ones");
    }
    if (options_.quota_bytes != 0) {
      std::lock_guard lock(mu_);
      std::uint64_t stored = snapshot_bytes_;
      for (const auto& [name, b] : packs_) stored += b;
      if (stored + file.size() > options_.quota_bytes) {
        return Status::exhausted("namespace " + name_ + ": quota exceeded: " + std::to_string(stored) +
                                 " bytes stored + " + std::to_string(file.size()) + " for snapshot " +
                                 std::string(snapshot) + " > quota " + std::to_string(options_.quota_bytes));
      }
    }
  }
  // Written once: of racing commits of one name, exactly one creates it (a
  // name already listed is not written again: a versioned bucket may not
  // honour the condition).
  bool created = false;
  if (existing.count(std::string(snapshot)) == 0) {
    ASSIGN_OR_RETURN(created, put_object(snapshot_key(snapshot), file, /*if_absent=*/true));
  }
  if (!created) {
    // A retried commit, or another writer's of the same bytes: that
    // writer's own checks cover the packs; other bytes are refused.
    ASSIGN_OR_RETURN(StoredSnapshot stored, read_snapshot(snapshot));
    if (std::equal(stored.manifest.begin(), stored.manifest.end(), bytes.begin(), bytes.end()))
      return Status::ok();
    return Status::invalid_argument("namespace " + name_ + ": snapshot " + std::string(snapshot) +
                                    " already exists with other contents");
  }
  // A gc that condemned its packs after the check read the snapshots at
  // least kS3GcMinSettleMs later, and so sees this one, unless publishing
  // took that long: then look again.
  if (mono_ms() - checked_ms >= kS3CommitRecheckMs) return recheck_after_publish(snapshot, packs);
  return Status::ok();
}

}  // namespace ferry
