// s3_namespace_maintenance.cc: gc and scrub of one namespace of the S3
// backend (docs/FORMAT.md section 9.5), and the lock object that gc and
// prune take (9.6). gc condemns the packs past the grace period that hold no
// chunk a snapshot names, in its lock object, waits for commits that did not
// see that to publish, reads the snapshots again and deletes the condemned
// packs they do not name (index object first, then the pack, so that a kill
// in between leaves a pack that the next open indexes again). Packs whose
// live chunks are a small part of them are rewritten first: their live
// chunks go into new packs, and they are condemned and deleted like dead
// ones, unless a snapshot committed meanwhile names a chunk that was not
// copied. Scrub reads
// every pack in full, checks its trailer and records and decodes every
// chunk.
#include <algorithm>
#include <set>
#include <thread>
#include <unordered_set>

#include "base/clock.h"
#include "codec/chunk_codec.h"
#include "codec/delta_codec.h"
#include "codec/limits.h"
#include "codec/tree_hash.h"
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

// A pack gc means to delete: wholly dead, or partly live and rewritten.
struct S3Namespace::GcCandidate {
  std::string name;
  std::uint64_t bytes = 0;  // the object's
  std::vector<S3PackEntry> entries;
  bool rewrite = false;            // some chunks live: they go into new packs first
  bool kept = false;               // could not be rewritten: left whole
  std::uint64_t copied_bytes = 0;  // of its records, copied into new packs
};

// What rewriting left: the chunks of rewritten packs that are now in a pack
// this gc does not delete (a new one, or one that held them already).
struct S3Namespace::GcRewrite {
  std::unordered_set<Digest, DigestHash> elsewhere;
  std::uint64_t packs_written = 0;
};

Status S3Namespace::store_rewritten_pack(S3PackBuilder& builder) {
  S3PackIndex index;
  index.entries = builder.entries();
  const std::vector<std::byte> bytes = builder.seal();
  index.pack_bytes = bytes.size();
  const Digest digest = sha256(bytes);
  const std::string name = to_hex(digest);
  // Pack, then index object, both durable before gc condemns the old packs:
  // a writer that reads the condemned list lists the new index objects after.
  RETURN_IF_ERROR(put_object(pack_key(name), bytes, /*if_absent=*/true, &digest).status());
  RETURN_IF_ERROR(put_object(index_key(name), s3_pack_trailer(bytes), /*if_absent=*/true).status());
  std::lock_guard lock(mu_);
  add_pack_locked(name, index);
  return Status::ok();
}

Status S3Namespace::rewrite_live_chunks(std::vector<GcCandidate>& packs,
                                        const std::unordered_set<Digest, DigestHash>& live, GcRewrite& out) {
  // Live chunks that a pack outside the candidates holds too need no copy.
  std::unordered_set<Digest, DigestHash> wanted;
  std::set<std::string> names;
  for (const GcCandidate& c : packs) {
    names.insert(c.name);
    if (!c.rewrite) continue;
    for (const S3PackEntry& e : c.entries) {
      if (live.count(e.id) != 0) wanted.insert(e.id);
    }
  }
  {
    std::lock_guard lock(mu_);
    for (const auto& [pack, entries] : pack_chunks_) {
      if (names.count(pack) != 0) continue;
      for (const S3PackEntry& e : entries) {
        if (wanted.erase(e.id) != 0) out.elsewhere.insert(e.id);
      }
    }
  }
  S3PackBuilder builder;
  for (GcCandidate& c : packs) {
    if (!c.rewrite) continue;
    std::vector<const S3PackEntry*> copy;
    for (const S3PackEntry& e : c.entries) {
      if (wanted.count(e.id) != 0 && out.elsewhere.count(e.id) == 0) copy.push_back(&e);
    }
    if (copy.empty()) continue;  // every live chunk has another home
    const std::string key = pack_key(c.name);
    auto pack = client_.get(bucket_, key);
    if (!pack) {
      if (pack.status().code() != Code::kNotFound) return pack.status().with_context("gc rewriting " + key);
      c.kept = true;  // gone meanwhile: nothing to delete or copy
      continue;
    }
    // Only records that check out are copied; a pack with a damaged live
    // record stays whole, for scrub to report.
    Status damage;
    for (const S3PackEntry* e : copy) {
      const std::uint64_t n = record_bytes(e->frame_bytes);
      if (e->offset + n > pack->size()) {
        damage = Status::corruption(key + ": record of chunk " + to_hex(e->id) + " at offset " +
                                    std::to_string(e->offset) + " lies past the end of the object");
        break;
      }
      auto frame = s3_record_frame(std::span(*pack).subspan(e->offset, n), e->id,
                                   key + " at offset " + std::to_string(e->offset));
      if (!frame) {
        damage = frame.status();
        break;
      }
    }
    if (!damage) {
      log("gc leaves pack " + c.name + " whole: " + damage.to_string());
      c.kept = true;
      continue;
    }
    for (const S3PackEntry* e : copy) {
      if (out.elsewhere.count(e->id) != 0) continue;  // copied from an earlier pack
      const auto record = std::span(*pack).subspan(e->offset, record_bytes(e->frame_bytes));
      builder.add_record(record, e->id);
      out.elsewhere.insert(e->id);
      c.copied_bytes += record.size();
      if (builder.bytes() >= options_.object_pack_target_bytes) {
        RETURN_IF_ERROR(store_rewritten_pack(builder).with_context("gc rewriting " + key));
        ++out.packs_written;
      }
    }
  }
  if (builder.chunks() != 0) {
    RETURN_IF_ERROR(store_rewritten_pack(builder).with_context("gc rewriting packs"));
    ++out.packs_written;
  }
  std::erase_if(packs, [](const GcCandidate& c) { return c.kept; });
  return Status::ok();
}

// Under the lock (docs/FORMAT.md 9.5): the packs past the grace period that
// hold no chunk a snapshot names, and those whose live chunks are fewer
// than gc_repack_live_percent of their bytes once these are copied into new
// packs, are condemned in the lock object; after gc_settle_ms, every commit
// that did not see them condemned has published its snapshot, so the
// snapshots read then decide which to delete.
Result<GcReport> S3Namespace::gc_locked(S3Lock& lock) {
  // A snapshot gc cannot read might name any chunk: refuse rather than guess.
  auto referenced_chunks = [&]() -> Result<std::unordered_set<Digest, DigestHash>> {
    ASSIGN_OR_RETURN(auto manifests, load_manifests());
    std::unordered_set<Digest, DigestHash> referenced;
    std::vector<Digest> bases;
    for (const auto& [name, m] : manifests) {
      for (const ManifestFile& f : m.files) {
        for (const ManifestChunk& c : f.chunks) {
          referenced.insert(c.id);
          if (c.base_id != Digest{}) bases.push_back(c.base_id);  // a kept delta keeps its base
        }
      }
    }
    // A base no kept manifest names as a chunk may itself be a delta (a
    // chain of --delta=previous snapshots): its stored frame says which
    // base it keeps, at most kMaxDeltaChainFrames deep. A chunk a manifest
    // names is listed with its stored frame (commit restates it), so only
    // these bases cost a header read.
    std::vector<Digest> next;
    for (const Digest& b : bases) {
      if (referenced.insert(b).second) next.push_back(b);
    }
    for (int depth = 1; depth < kMaxDeltaChainFrames && !next.empty(); ++depth) {
      ASSIGN_OR_RETURN(auto facts, frame_facts(next));
      std::vector<Digest> more;
      for (const auto& f : facts) {
        if (f && f->base_id != Digest{} && referenced.insert(f->base_id).second) more.push_back(f->base_id);
      }
      next.swap(more);
    }
    return referenced;
  };
  ASSIGN_OR_RETURN(auto referenced, referenced_chunks());
  RETURN_IF_ERROR(flush());
  RETURN_IF_ERROR(refresh(/*repair=*/true));
  const std::string dir = root_ + "packs/";
  ASSIGN_OR_RETURN(std::vector<S3Object> objects, client_.list(bucket_, dir));
  const std::int64_t cutoff_ns =
      wall_ns() - seconds_to_ns_saturated(std::max<std::int64_t>(options_.gc_grace_seconds, 0));
  std::vector<GcCandidate> candidates;
  for (const S3Object& o : objects) {
    if (!o.key.ends_with(".pack") || candidates.size() >= kS3GcMaxCondemnedPacks) continue;
    const std::string name = o.key.substr(dir.size(), o.key.size() - dir.size() - 5);
    // Packs written within the grace period may hold a push in flight.
    if (o.last_modified_ns == 0 || o.last_modified_ns > cutoff_ns) continue;
    GcCandidate c{name, o.size, {}};
    {
      std::lock_guard l(mu_);
      auto it = pack_chunks_.find(name);
      if (it == pack_chunks_.end()) continue;  // unreadable: scrub reports it
      c.entries = it->second;
    }
    std::uint64_t live_bytes = 0, record_total = 0;
    for (const S3PackEntry& e : c.entries) {
      record_total += record_bytes(e.frame_bytes);
      if (referenced.count(e.id) != 0) live_bytes += record_bytes(e.frame_bytes);
    }
    c.rewrite = live_bytes != 0;
    if (c.rewrite &&
        live_bytes * 100 >= record_total * static_cast<std::uint64_t>(options_.gc_repack_live_percent))
      continue;
    candidates.push_back(std::move(c));
  }
  GcRewrite rewritten;
  if (std::any_of(candidates.begin(), candidates.end(), [](const GcCandidate& c) { return c.rewrite; })) {
    RETURN_IF_ERROR(rewrite_live_chunks(candidates, referenced, rewritten));
  }
  GcReport report;
  if (!candidates.empty()) {
    std::vector<std::string> names;
    for (const GcCandidate& c : candidates) names.push_back(c.name);
    RETURN_IF_ERROR(lock.set_condemned(names));
    {
      std::lock_guard l(mu_);
      condemned_.insert(names.begin(), names.end());
      relocate_condemned_locked();
    }
    const std::int64_t settle_until_ms = mono_ms() + std::max(options_.gc_settle_ms, kS3GcMinSettleMs);
    while (mono_ms() < settle_until_ms) {
      RETURN_IF_ERROR(lock.check_held());
      std::this_thread::sleep_for(
          std::chrono::milliseconds(std::min<std::int64_t>(kS3LockPollMs, settle_until_ms - mono_ms() + 1)));
    }
    // Snapshots committed meanwhile keep the packs they name, unless the
    // chunks they name there are in a pack this gc keeps.
    ASSIGN_OR_RETURN(referenced, referenced_chunks());
    std::vector<std::string> deleted;
    Status st;
    for (const GcCandidate& c : candidates) {
      if (std::any_of(c.entries.begin(), c.entries.end(), [&](const S3PackEntry& e) {
            return referenced.count(e.id) != 0 && rewritten.elsewhere.count(e.id) == 0;
          })) {
        ++report.packs_spared;
        continue;
      }
      st = lock.check_held();
      if (st) st = client_.remove(bucket_, index_key(c.name));
      if (st) st = client_.remove(bucket_, pack_key(c.name));
      if (!st) break;
      deleted.push_back(c.name);
      if (c.rewrite) {
        ++report.packs_rewritten;
      } else {
        ++report.packs_deleted;
      }
      for (const S3PackEntry& e : c.entries) report.chunks_removed += rewritten.elsewhere.count(e.id) == 0;
      report.bytes_removed += c.bytes - c.copied_bytes;
    }
    std::lock_guard l(mu_);
    forget_packs_locked(deleted);
    RETURN_IF_ERROR(st);
  }
  if (rewritten.packs_written != 0) {
    log("gc rewrote the live chunks of " + std::to_string(report.packs_rewritten) + " packs into " +
        std::to_string(rewritten.packs_written) + " new ones");
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
        if (auto it = pack_chunks_.find(name); it != pack_chunks_.end()) {
          for (const S3PackEntry& e : it->second) ids.push_back(e.id);
        }
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
