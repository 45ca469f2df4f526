// store_gc.cc: garbage collection of one namespace of the local store
// (StoreNamespace::gc; docs/FORMAT.md section 7.4). Chunks that no snapshot
// names leave the index; packs left with nothing referenced are deleted, and
// packs with enough dead bytes are rewritten into a new pack. The order of
// steps keeps every referenced chunk durable in at least one pack at every
// instant, so a kill at any point loses nothing a snapshot needs.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <ctime>
#include <unordered_set>

#include "codec/frame.h"
#include "codec/limits.h"
#include "store/pack_file.h"
#include "store/store_namespace.h"

namespace ferry {
namespace {

// A pack is rewritten when at least 1/kGcRewriteDeadDivisor of it is dead
// bytes: rewriting costs a full copy, so a little garbage is left in place.
constexpr std::uint64_t kGcRewriteDeadDivisor = 4;
constexpr char kGcTempSuffix[] = "gc";

}  // namespace

// What the sweep of the index leaves for the packs past the grace period.
struct StoreNamespace::GcSweep {
  // pack -> (offset, id) of each record a snapshot still names
  std::map<std::uint32_t, std::vector<std::pair<std::uint64_t, Digest>>> live;
  std::map<std::uint32_t, std::uint64_t> live_bytes;
  std::map<std::uint32_t, std::uint64_t> indexed_bytes;  // live or not
  bool dir_dirty = false;                                // a pack was deleted or renamed
  std::vector<std::byte> frame;                          // copy buffer, reused
};

Result<GcReport> StoreNamespace::gc() {
  std::unique_lock maint(maintenance_);
  // A snapshot gc cannot read might name any chunk: refuse rather than guess.
  ASSIGN_OR_RETURN(auto referenced, referenced_chunks());
  RETURN_IF_ERROR(sync_held());
  std::unique_lock lock(mu_);  // index writers take only mu_
  // Close the open pack: new puts go to a fresh one, this one may be moved.
  has_current_ = false;
  current_fd_.reset();

  GcReport report;
  const std::uint64_t stored_before = stored_bytes_;
  ASSIGN_OR_RETURN(std::vector<std::uint32_t> eligible, packs_past_grace_locked());
  GcSweep sweep;
  sweep_unreferenced_locked(referenced, eligible, sweep, report);
  for (std::uint32_t number : eligible) RETURN_IF_ERROR(collect_pack_locked(number, sweep, report));
  if (sweep.dir_dirty) RETURN_IF_ERROR(fsync_dir(packs_dir_));
  report.chunks_kept = index_.size();
  report.bytes_removed = stored_before > stored_bytes_ ? stored_before - stored_bytes_ : 0;
  lock.unlock();
  maint.unlock();
  // Recovery would rebuild the index anyway; writing it saves the rescan.
  RETURN_IF_ERROR(write_index());
  return report;
}

Result<std::unordered_set<Digest, DigestHash>> StoreNamespace::referenced_chunks() {
  ASSIGN_OR_RETURN(auto manifests, load_manifests());
  std::unordered_set<Digest, DigestHash> referenced;
  for (const auto& [name, m] : manifests) {
    for (const ManifestFile& f : m.files) {
      for (const ManifestChunk& c : f.chunks) {
        referenced.insert(c.id);
        if (c.base_id != Digest{}) referenced.insert(c.base_id);
      }
    }
  }
  // The stored frames decide, not only what the manifests say of them (a
  // snapshot committed before manifests stated the held frames may list a
  // delta as a full frame): every named chunk's frame is read, a kept delta
  // keeps its base, and a base that is itself a delta keeps its own, at
  // most kMaxDeltaChainFrames deep.
  std::vector<Digest> next(referenced.begin(), referenced.end());
  for (int depth = 0; depth < kMaxDeltaChainFrames && !next.empty(); ++depth) {
    // Missing or damaged frames give no facts: scrub reports them with
    // their dependants.
    ASSIGN_OR_RETURN(auto facts, frame_facts_held(next, /*skip_damaged=*/true));
    std::vector<Digest> bases;
    for (const auto& f : facts) {
      if (f && f->base_id != Digest{} && referenced.insert(f->base_id).second) bases.push_back(f->base_id);
    }
    next.swap(bases);
  }
  return referenced;
}

// Packs written within the grace period may hold chunks of a push in flight
// (stored, not yet named by a committed snapshot): gc leaves them alone.
Result<std::vector<std::uint32_t>> StoreNamespace::packs_past_grace_locked() const {
  const std::int64_t now_s = static_cast<std::int64_t>(std::time(nullptr));
  // A negative grace would reach into the future: none is the least.
  const std::int64_t cutoff_s = now_s - std::max<std::int64_t>(options_.gc_grace_seconds, 0);
  std::vector<std::uint32_t> eligible;
  for (const auto& [number, pack] : packs_) {
    struct stat st {};
    const auto path = pack_path(number);
    if (::stat(path.c_str(), &st) != 0) return Status::from_errno(errno, "stat " + path.string());
    if (static_cast<std::int64_t>(st.st_mtime) <= cutoff_s) eligible.push_back(number);
  }
  return eligible;
}

// Drops unreferenced chunks of the eligible packs from the index and
// gathers the live ones per pack.
void StoreNamespace::sweep_unreferenced_locked(const std::unordered_set<Digest, DigestHash>& referenced,
                                               const std::vector<std::uint32_t>& eligible, GcSweep& sweep,
                                               GcReport& report) {
  const std::unordered_set<std::uint32_t> swept(eligible.begin(), eligible.end());
  for (auto it = index_.begin(); it != index_.end();) {
    const Location& loc = it->second;
    if (swept.count(loc.pack) == 0) {
      ++it;
      continue;
    }
    sweep.indexed_bytes[loc.pack] += record_bytes(loc.frame_bytes);
    if (referenced.count(it->first) != 0) {
      sweep.live[loc.pack].emplace_back(loc.offset, it->first);
      sweep.live_bytes[loc.pack] += record_bytes(loc.frame_bytes);
      ++it;
    } else {
      ++report.chunks_removed;
      it = index_.erase(it);
    }
  }
}

// Deletes a pack with nothing live, rewrites one with enough dead bytes (or
// bytes no index entry accounts for), leaves the others.
Status StoreNamespace::collect_pack_locked(std::uint32_t number, GcSweep& sweep, GcReport& report) {
  auto lv = sweep.live.find(number);
  if (lv == sweep.live.end()) {
    // Nothing referenced lives here (duplicates and damage included).
    RETURN_IF_ERROR(unlink_pack_locked(number));
    ++report.packs_deleted;
    sweep.dir_dirty = true;
    return Status::ok();
  }
  const std::uint64_t size = packs_[number].size;
  const std::uint64_t dead = size - kPackHeaderBytes - sweep.live_bytes[number];
  // Bytes no index entry accounts for are damage (which scrub keeps
  // reporting until it is gone) or duplicates an interrupted gc left:
  // rare, and always worth a rewrite.
  const bool orphans = sweep.indexed_bytes[number] < size - kPackHeaderBytes;
  if (dead * kGcRewriteDeadDivisor < size && !orphans) return Status::ok();
  ASSIGN_OR_RETURN(bool rewritten, rewrite_pack_locked(number, lv->second, sweep.frame));
  if (rewritten) {
    ++report.packs_rewritten;
    sweep.dir_dirty = true;
  }
  return Status::ok();
}

Status StoreNamespace::unlink_pack_locked(std::uint32_t number) {
  const auto path = pack_path(number);
  if (::unlink(path.c_str()) != 0) return Status::from_errno(errno, "remove " + path.string());
  stored_bytes_ -= packs_[number].size;
  packs_.erase(number);
  return Status::ok();
}

// Copies the live records, in their order, into a new pack under a
// temporary name; it takes the pack's place only once durable.
Result<bool> StoreNamespace::rewrite_pack_locked(std::uint32_t number,
                                                 std::vector<std::pair<std::uint64_t, Digest>>& records,
                                                 std::vector<std::byte>& frame) {
  std::sort(records.begin(), records.end());
  const auto path = pack_path(number);
  const std::uint32_t fresh = next_pack_++;
  const auto fresh_path = pack_path(fresh);
  const auto temp_path = packs_dir_ / (pack_file_name(fresh) + std::string(kTempFileMarker) + kGcTempSuffix);
  ASSIGN_OR_RETURN(UniqueFd in, open_fd(path, O_RDONLY));
  ASSIGN_OR_RETURN(UniqueFd out, open_fd(temp_path, O_RDWR | O_CREAT | O_TRUNC));
  const auto header = pack_header();
  RETURN_IF_ERROR(pwrite_all(out.get(), header, 0, temp_path));
  std::uint64_t at = kPackHeaderBytes;
  std::vector<std::pair<Digest, Location>> moved;
  std::vector<std::byte> rec;
  for (const auto& [offset, id] : records) {
    const Location& loc = index_.at(id);
    if (Status st = read_record(in.get(), path, offset, loc.frame_bytes, frame); !st) {
      // A damaged live record: leave this pack as it is for scrub to report.
      ::unlink(temp_path.c_str());
      log("gc left " + path.string() + " in place: " + st.to_string());
      return false;
    }
    const RecordFraming framing = frame_record(frame);
    rec.clear();
    rec.insert(rec.end(), framing.header.begin(), framing.header.end());
    rec.insert(rec.end(), frame.begin(), frame.end());
    rec.insert(rec.end(), framing.trailer.begin(), framing.trailer.end());
    RETURN_IF_ERROR(pwrite_all(out.get(), rec, at, temp_path));
    moved.push_back({id, Location{fresh, at, loc.frame_bytes, true}});
    at += rec.size();
  }
  RETURN_IF_ERROR(fsync_fd(out.get(), temp_path));
  if (::rename(temp_path.c_str(), fresh_path.c_str()) != 0) {
    return Status::from_errno(errno, "rename " + temp_path.string());
  }
  RETURN_IF_ERROR(fsync_dir(packs_dir_));
  // The copies are durable under their final name: the original may go.
  for (const auto& [id, loc] : moved) index_[id] = loc;
  packs_[fresh] = Pack{at, at};
  stored_bytes_ += at;
  RETURN_IF_ERROR(unlink_pack_locked(number));
  return true;
}

}  // namespace ferry
