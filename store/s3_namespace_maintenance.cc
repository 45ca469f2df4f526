// s3_namespace_maintenance.cc: gc and scrub of one namespace of the S3
// backend (docs/FORMAT.md section 9.5). gc deletes packs past the grace
// period that hold no chunk a snapshot names (index object first, then the
// pack, so that a kill in between leaves a pack that the next open indexes
// again); packs with some live chunks stay whole (rewriting them is not
// done yet). Scrub reads every pack in full, checks its trailer and records
// and decodes every chunk.
#include <algorithm>
#include <set>
#include <unordered_set>

#include "base/clock.h"
#include "codec/chunk_codec.h"
#include "codec/delta_codec.h"
#include "store/pack_file.h"
#include "store/s3_namespace.h"
#include "store/scrub_snapshot.h"

namespace ferry {

Result<GcReport> S3Namespace::gc() {
  // A snapshot gc cannot read might name any chunk: refuse rather than guess.
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
  RETURN_IF_ERROR(sync());
  RETURN_IF_ERROR(refresh(/*repair=*/true));
  const std::string dir = root_ + "packs/";
  ASSIGN_OR_RETURN(std::vector<S3Object> objects, client_.list(bucket_, dir));
  const std::int64_t cutoff_ns =
      wall_ns() - seconds_to_ns_saturated(std::max<std::int64_t>(options_.gc_grace_seconds, 0));
  GcReport report;
  for (const S3Object& o : objects) {
    if (!o.key.ends_with(".pack")) continue;
    const std::string name = o.key.substr(dir.size(), o.key.size() - dir.size() - 5);
    // Packs written within the grace period may hold a push in flight.
    if (o.last_modified_ns == 0 || o.last_modified_ns > cutoff_ns) continue;
    std::vector<Digest> ids;
    {
      std::lock_guard lock(mu_);
      auto it = pack_chunks_.find(name);
      if (it == pack_chunks_.end()) continue;  // unreadable: scrub reports it
      ids = it->second;
    }
    if (std::any_of(ids.begin(), ids.end(), [&](const Digest& id) { return referenced.count(id) != 0; })) {
      continue;
    }
    RETURN_IF_ERROR(client_.remove(bucket_, index_key(name)));
    RETURN_IF_ERROR(client_.remove(bucket_, pack_key(name)));
    std::lock_guard lock(mu_);
    forget_pack_locked(name);
    ++report.packs_deleted;
    report.chunks_removed += ids.size();
    report.bytes_removed += o.size;
  }
  std::lock_guard lock(mu_);
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
