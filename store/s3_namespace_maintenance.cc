// s3_namespace_maintenance.cc: gc and scrub of one namespace of the S3
// backend (docs/FORMAT.md section 9.5), and the lock object that gc and
// prune take (9.6). gc condemns the packs past the grace period that hold no
// chunk a snapshot names, in its lock object, waits for commits that did not
// see that to publish, reads the snapshots again and deletes the condemned
// packs they do not name (index object first, then the pack, so that a kill
// in between leaves a pack that the next open indexes again); packs with
// some live chunks stay whole (rewriting them is not done yet). Scrub reads
// every pack in full, checks its trailer and records and decodes every
// chunk.
#include <algorithm>
#include <set>
#include <thread>
#include <unordered_set>

#include "base/clock.h"
#include "codec/chunk_codec.h"
#include "codec/delta_codec.h"
#include "store/pack_file.h"
#include "store/s3_namespace.h"
#include "store/scrub_snapshot.h"

namespace ferry {

Result<std::unique_ptr<S3Lock>> S3Namespace::take_lock(std::string operation) {
  // Credentials that may not delete (an append-only host's) are refused
  // before anything is locked or deleted: a DELETE of a key that does not
  // exist succeeds only for keys that may delete.
  Status may_delete = client_.remove(bucket_, root_ + "lock.probe");
  if (may_delete.code() == Code::kPermissionDenied) {
    return Status::permission_denied(
        "namespace " + name_ + ": " + operation + " needs credentials that may delete objects under " +
        bucket_ + "/" + root_ + " (s3:DeleteObject), and these may not: " + may_delete.message());
  }
  RETURN_IF_ERROR(may_delete.with_context("namespace " + name_ + ": " + operation));
  // radosgw 16 honours neither If-None-Match nor If-Match in a versioned
  // bucket (as every bucket made with Object Lock is): the lock object could
  // not be exclusive there, so nothing is deleted under it.
  S3Request versioning;
  versioning.bucket = bucket_;
  versioning.query = {{"versioning", ""}};
  S3Request* vp = &versioning;
  client_.run(std::span(&vp, 1));
  RETURN_IF_ERROR(versioning.status.with_context("namespace " + name_ + ": " + operation));
  if (as_text(versioning.reply).find("<Status>Enabled</Status>") != std::string_view::npos) {
    return Status::unsupported("namespace " + name_ + ": " + operation + " refused: bucket " + bucket_ +
                               " is versioned (Object Lock), where conditional writes are not reliable, so "
                               "its lock object cannot be exclusive; let retention and lifecycle rules "
                               "expire old versions instead");
  }
  S3Lock::Options lo;
  lo.operation = std::move(operation);
  lo.expiry_ms = options_.lock_expiry_ms;
  lo.log = [this](const std::string& m) { log(m); };
  auto lock = S3Lock::acquire(client_, bucket_, lock_key(), std::move(lo));
  if (!lock) return lock.status().with_context("namespace " + name_);
  return lock;
}

Result<GcReport> S3Namespace::gc() {
  ASSIGN_OR_RETURN(std::unique_ptr<S3Lock> lock, take_lock("gc"));
  auto report = gc_locked(*lock);
  Status released = lock->release();
  if (!released) log(released.to_string());
  {
    std::lock_guard l(mu_);
    condemned_.clear();
  }
  return report;
}

// Under the lock (docs/FORMAT.md 9.5): the packs past the grace period that
// hold no chunk a snapshot names are condemned in the lock object; after
// gc_settle_ms, every commit that did not see them condemned has published
// its snapshot, so the snapshots read then decide which to delete.
Result<GcReport> S3Namespace::gc_locked(S3Lock& lock) {
  // A snapshot gc cannot read might name any chunk: refuse rather than guess.
  auto referenced_chunks = [&]() -> Result<std::unordered_set<Digest, DigestHash>> {
    ASSIGN_OR_RETURN(auto manifests, load_manifests());
    std::unordered_set<Digest, DigestHash> referenced;
    for (const auto& [name, m] : manifests) {
      for (const ManifestFile& f : m.files) {
        for (const ManifestChunk& c : f.chunks) {
          referenced.insert(c.id);
          if (c.base_id != Digest{}) referenced.insert(c.base_id);  // a kept delta keeps its base
        }
      }
    }
    return referenced;
  };
  auto any_referenced = [](const std::vector<Digest>& ids,
                           const std::unordered_set<Digest, DigestHash>& refs) {
    return std::any_of(ids.begin(), ids.end(), [&](const Digest& id) { return refs.count(id) != 0; });
  };
  ASSIGN_OR_RETURN(auto referenced, referenced_chunks());
  RETURN_IF_ERROR(flush());
  RETURN_IF_ERROR(refresh(/*repair=*/true));
  const std::string dir = root_ + "packs/";
  ASSIGN_OR_RETURN(std::vector<S3Object> objects, client_.list(bucket_, dir));
  const std::int64_t cutoff_ns =
      wall_ns() - seconds_to_ns_saturated(std::max<std::int64_t>(options_.gc_grace_seconds, 0));
  struct Candidate {
    std::string name;
    std::uint64_t bytes = 0;
    std::vector<Digest> ids;
  };
  std::vector<Candidate> candidates;
  for (const S3Object& o : objects) {
    if (!o.key.ends_with(".pack") || candidates.size() >= kS3GcMaxCondemnedPacks) continue;
    const std::string name = o.key.substr(dir.size(), o.key.size() - dir.size() - 5);
    // Packs written within the grace period may hold a push in flight.
    if (o.last_modified_ns == 0 || o.last_modified_ns > cutoff_ns) continue;
    std::vector<Digest> ids;
    {
      std::lock_guard l(mu_);
      auto it = pack_chunks_.find(name);
      if (it == pack_chunks_.end()) continue;  // unreadable: scrub reports it
      ids = it->second;
    }
    if (!any_referenced(ids, referenced)) candidates.push_back({name, o.size, std::move(ids)});
  }
  GcReport report;
  if (!candidates.empty()) {
    std::vector<std::string> names;
    for (const Candidate& c : candidates) names.push_back(c.name);
    RETURN_IF_ERROR(lock.set_condemned(names));
    {
      std::lock_guard l(mu_);
      condemned_.insert(names.begin(), names.end());
    }
    const std::int64_t settle_until_ms = mono_ms() + std::max(options_.gc_settle_ms, kS3GcMinSettleMs);
    while (mono_ms() < settle_until_ms) {
      RETURN_IF_ERROR(lock.check_held());
      std::this_thread::sleep_for(
          std::chrono::milliseconds(std::min<std::int64_t>(kS3LockPollMs, settle_until_ms - mono_ms() + 1)));
    }
    // Snapshots committed meanwhile keep the packs they name.
    ASSIGN_OR_RETURN(referenced, referenced_chunks());
    for (const Candidate& c : candidates) {
      if (any_referenced(c.ids, referenced)) {
        ++report.packs_spared;
        continue;
      }
      RETURN_IF_ERROR(lock.check_held());
      RETURN_IF_ERROR(client_.remove(bucket_, index_key(c.name)));
      RETURN_IF_ERROR(client_.remove(bucket_, pack_key(c.name)));
      std::lock_guard l(mu_);
      forget_pack_locked(c.name);
      ++report.packs_deleted;
      report.chunks_removed += c.ids.size();
      report.bytes_removed += c.bytes;
    }
  }
  std::lock_guard l(mu_);
  report.chunks_kept = index_.size();
  return report;
}

Status S3Namespace::scrub(ScrubReport& report) {
  ++report.namespaces;
  RETURN_IF_ERROR(refresh(/*repair=*/true));
  const std::size_t first_bad = report.bad_chunks.size();
  std::unordered_map<Digest, std::size_t, DigestHash> bad_by_id;
  auto add_bad = [&](const Digest& id, std::string where, std::string error) {
    report.bad_chunks.push_back({name_, id, std::move(where), std::move(error), {}});
    bad_by_id.try_emplace(id, report.bad_chunks.size() - 1);
  };
  const std::string dir = root_ + "packs/";
  ASSIGN_OR_RETURN(std::vector<S3Object> objects, client_.list(bucket_, dir));
  ChunkDecoder decoder;
  std::vector<std::byte> raw;
  std::set<std::string> bad_packs;
  for (const S3Object& o : objects) {
    if (!o.key.ends_with(".pack")) continue;
    const std::string name = o.key.substr(dir.size(), o.key.size() - dir.size() - 5);
    ASSIGN_OR_RETURN(std::vector<std::byte> pack, client_.get(bucket_, o.key));
    report.bytes_checked += pack.size();
    auto check = check_s3_pack(pack, o.key);
    if (!check) {
      // The whole pack is unreadable: each chunk its index object names is bad.
      std::vector<Digest> ids;
      {
        std::lock_guard lock(mu_);
        if (auto it = pack_chunks_.find(name); it != pack_chunks_.end()) ids = it->second;
      }
      if (ids.empty()) add_bad(Digest{}, o.key, check.status().to_string());
      for (const Digest& id : ids) add_bad(id, o.key, check.status().to_string());
      bad_packs.insert(name);
      continue;
    }
    for (const auto& [entry, error] : check->bad) {
      ++report.chunks_checked;
      add_bad(entry.id, o.key + " at offset " + std::to_string(entry.offset), error);
    }
    for (const S3PackEntry& e : check->good) {
      ++report.chunks_checked;
      const auto frame = std::span(pack).subspan(e.offset + kRecordHeaderBytes, e.frame_bytes);
      // A delta frame is checked by rebuilding it from its base.
      Result<FrameHeader> h = parse_frame_header(frame);
      Status st =
          !h ? h.status()
          : h->chunk_id != e.id
              ? Status::corruption("record of chunk " + to_hex(e.id) + " holds chunk " + to_hex(h->chunk_id))
          : is_delta_codec(h->codec) ? rebuild_chunk(
                                           *h, frame, [this](const Digest& id) { return get(id); }, raw)
                                     : decoder.decode(frame, raw, &e.id);
      if (!st) add_bad(e.id, o.key + " at offset " + std::to_string(e.offset), st.to_string());
    }
  }
  // Bad chunks leave the index, so the next push of a snapshot that names
  // them sends them again.
  {
    std::lock_guard lock(mu_);
    for (std::size_t i = first_bad; i < report.bad_chunks.size(); ++i) {
      auto it = index_.find(report.bad_chunks[i].id);
      if (it != index_.end()) index_.erase(it);
    }
  }
  ASSIGN_OR_RETURN(auto snapshots, snapshot_objects());
  for (const auto& [snapshot, size] : snapshots) {
    scrub_snapshot(report, name_, snapshot, read_manifest(snapshot), bad_by_id, [&](const Digest& id) {
      std::lock_guard lock(mu_);
      return index_.count(id) != 0;
    });
  }
  if (report.bad_chunks.size() > first_bad) {
    log("scrub found " + std::to_string(report.bad_chunks.size() - first_bad) +
        " bad chunks; they left the index and will be accepted again from the next push");
  }
  return Status::ok();
}

}  // namespace ferry
