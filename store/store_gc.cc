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

#include "store/pack_file.h"
#include "store/store_namespace.h"

namespace ferry {
namespace {

// A pack is rewritten when at least 1/kGcRewriteDeadDivisor of it is dead
// bytes: rewriting costs a full copy, so a little garbage is left in place.
constexpr std::uint64_t kGcRewriteDeadDivisor = 4;
constexpr char kGcTempSuffix[] = ".ferry-tmp-gc";

}  // namespace

Result<GcReport> StoreNamespace::gc() {
  std::unique_lock maint(maintenance_);
  // A snapshot gc cannot read might name any chunk: refuse rather than guess.
  ASSIGN_OR_RETURN(auto manifests, load_manifests());
  std::unordered_set<Digest, DigestHash> referenced;
  for (const auto& [name, m] : manifests) {
    for (const ManifestFile& f : m.files) {
      for (const ManifestChunk& c : f.chunks) referenced.insert(c.id);
    }
  }
  RETURN_IF_ERROR(sync_held());
  std::unique_lock lock(mu_);  // index writers take only mu_
  // Close the open pack: new puts go to a fresh one, this one may be moved.
  has_current_ = false;
  current_fd_.reset();

  GcReport report;
  const std::uint64_t stored_before = stored_bytes_;
  const std::int64_t now = static_cast<std::int64_t>(std::time(nullptr));
  std::unordered_set<std::uint32_t> eligible;
  for (const auto& [number, pack] : packs_) {
    struct stat st {};
    const auto path = pack_path(number);
    if (::stat(path.c_str(), &st) != 0) return Status::from_errno(errno, "stat " + path.string());
    if (static_cast<std::int64_t>(st.st_mtime) > now - options_.gc_grace_seconds) continue;
    eligible.insert(number);
  }

  // Drop unreferenced chunks from the index; gather the live ones per pack.
  std::map<std::uint32_t, std::vector<std::pair<std::uint64_t, Digest>>> live;
  std::map<std::uint32_t, std::uint64_t> live_bytes;
  std::map<std::uint32_t, std::uint64_t> indexed_bytes;  // live or not
  for (auto it = index_.begin(); it != index_.end();) {
    const Location& loc = it->second;
    if (eligible.count(loc.pack) == 0) {
      ++it;
      continue;
    }
    indexed_bytes[loc.pack] += record_bytes(loc.frame_bytes);
    if (referenced.count(it->first) != 0) {
      live[loc.pack].emplace_back(loc.offset, it->first);
      live_bytes[loc.pack] += record_bytes(loc.frame_bytes);
      ++it;
    } else {
      ++report.chunks_removed;
      it = index_.erase(it);
    }
  }

  bool dir_dirty = false;
  std::vector<std::byte> frame;
  for (std::uint32_t number : std::vector<std::uint32_t>(eligible.begin(), eligible.end())) {
    const auto path = pack_path(number);
    const std::uint64_t size = packs_[number].size;
    auto lv = live.find(number);
    if (lv == live.end()) {
      // Nothing referenced lives here (duplicates and damage included).
      if (::unlink(path.c_str()) != 0) return Status::from_errno(errno, "remove " + path.string());
      stored_bytes_ -= size;
      packs_.erase(number);
      ++report.packs_deleted;
      dir_dirty = true;
      continue;
    }
    const std::uint64_t dead = size - kPackHeaderBytes - live_bytes[number];
    // Bytes no index entry accounts for are damage (which scrub keeps
    // reporting until it is gone) or duplicates an interrupted gc left:
    // rare, and always worth a rewrite.
    const bool orphans = indexed_bytes[number] < size - kPackHeaderBytes;
    if (dead * kGcRewriteDeadDivisor < size && !orphans) continue;

    // Copy the live records, in their order, into a new pack under a
    // temporary name; it takes the pack's place only once durable.
    auto& records = lv->second;
    std::sort(records.begin(), records.end());
    const std::uint32_t fresh = next_pack_++;
    const auto fresh_path = pack_path(fresh);
    const auto temp_path = packs_dir_ / (pack_file_name(fresh) + kGcTempSuffix);
    ASSIGN_OR_RETURN(UniqueFd in, open_fd(path, O_RDONLY));
    ASSIGN_OR_RETURN(UniqueFd out, open_fd(temp_path, O_RDWR | O_CREAT | O_TRUNC));
    const auto header = pack_header();
    RETURN_IF_ERROR(pwrite_all(out.get(), header, 0, temp_path));
    std::uint64_t at = kPackHeaderBytes;
    std::vector<std::pair<Digest, Location>> moved;
    Status copy_st;
    for (const auto& [offset, id] : records) {
      const Location& loc = index_.at(id);
      copy_st = read_record(in.get(), path, offset, loc.frame_bytes, frame);
      if (!copy_st) break;
      const RecordFraming framing = frame_record(frame);
      std::vector<std::byte> rec;
      rec.reserve(record_bytes(frame.size()));
      rec.insert(rec.end(), framing.header.begin(), framing.header.end());
      rec.insert(rec.end(), frame.begin(), frame.end());
      rec.insert(rec.end(), framing.trailer.begin(), framing.trailer.end());
      RETURN_IF_ERROR(pwrite_all(out.get(), rec, at, temp_path));
      moved.push_back({id, Location{fresh, at, loc.frame_bytes, true}});
      at += rec.size();
    }
    if (!copy_st) {
      // A damaged live record: leave this pack as it is for scrub to report.
      ::unlink(temp_path.c_str());
      log("gc left " + path.string() + " in place: " + copy_st.to_string());
      continue;
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
    if (::unlink(path.c_str()) != 0) return Status::from_errno(errno, "remove " + path.string());
    stored_bytes_ -= size;
    packs_.erase(number);
    ++report.packs_rewritten;
    dir_dirty = true;
  }
  if (dir_dirty) RETURN_IF_ERROR(fsync_dir(packs_dir_));
  report.chunks_kept = index_.size();
  report.bytes_removed = stored_before > stored_bytes_ ? stored_before - stored_bytes_ : 0;
  lock.unlock();
  maint.unlock();
  // Recovery would rebuild the index anyway; writing it saves the rescan.
  RETURN_IF_ERROR(write_index());
  return report;
}

}  // namespace ferry
