// store_scrub.cc: scrub of one namespace of the local store
// (StoreNamespace::scrub; docs/FORMAT.md section 7.5). Every record of every
// pack is re-read and fully decoded (CRCs and the chunk id recomputed); every
// snapshot's manifest is parsed and its chunks looked up. A bad chunk is
// reported with the snapshots that name it and leaves the index, so the next
// push of any of those snapshots uploads it again and heals the store.
#include <fcntl.h>

#include <set>
#include <unordered_map>

#include "codec/chunk_codec.h"
#include "codec/delta_codec.h"
#include "store/pack_file.h"
#include "store/scrub_snapshot.h"
#include "store/store_namespace.h"

namespace ferry {

// What one scrub of a namespace has found so far.
struct StoreNamespace::ScrubTally {
  ScrubReport& report;
  const std::string& ns;
  std::size_t first_bad = report.bad_chunks.size();               // this namespace's bad chunks start here
  std::unordered_map<Digest, std::size_t, DigestHash> bad_by_id;  // -> index in report.bad_chunks
  std::vector<std::pair<Digest, Location>> to_forget;             // index entries to drop
  ChunkDecoder decoder;
  std::vector<std::byte> frame, raw;  // reused buffers

  void add_bad(const Digest& id, std::string where, std::string error) {
    report.bad_chunks.push_back({ns, id, std::move(where), std::move(error), {}});
    bad_by_id.try_emplace(id, report.bad_chunks.size() - 1);
  }
};

Status StoreNamespace::scrub(ScrubReport& report) {
  std::shared_lock maint(maintenance_);
  ++report.namespaces;
  std::vector<std::pair<std::uint32_t, std::uint64_t>> packs;
  std::map<std::uint32_t, std::map<std::uint64_t, Digest>> indexed;  // pack -> offset -> id
  {
    std::lock_guard lock(mu_);
    for (const auto& [number, p] : packs_) packs.emplace_back(number, p.size);
    for (const auto& [id, loc] : index_) indexed[loc.pack][loc.offset] = id;
  }
  ScrubTally tally{report, name_};
  for (const auto& [number, size] : packs) RETURN_IF_ERROR(scrub_pack(number, size, indexed[number], tally));
  scrub_snapshots(tally);
  if (tally.to_forget.empty()) return Status::ok();
  forget_bad_chunks(tally);
  log("scrub found " + std::to_string(report.bad_chunks.size() - tally.first_bad) +
      " bad chunks; they left the index and will be accepted again from the next push");
  maint.unlock();
  return write_index();
}

// Decodes every good record of one pack; reports the bad ones, indexed
// records that are no longer good, and damaged bytes.
Status StoreNamespace::scrub_pack(std::uint32_t number, std::uint64_t size,
                                  const std::map<std::uint64_t, Digest>& in_index, ScrubTally& tally) {
  ScrubReport& report = tally.report;
  const auto path = pack_path(number);
  auto where = [&](std::uint64_t offset) { return path.string() + " at offset " + std::to_string(offset); };
  auto span = [&](std::uint64_t begin, std::uint64_t end) {
    return path.string() + " bytes [" + std::to_string(begin) + ", " + std::to_string(end) + ")";
  };
  ASSIGN_OR_RETURN(UniqueFd fd, open_fd(path, O_RDONLY));
  ASSIGN_OR_RETURN(PackScan scan, scan_pack(fd.get(), path, kPackHeaderBytes, size));
  std::set<std::uint64_t> good, found;
  for (const PackRecord& r : scan.records) {
    ++report.chunks_checked;
    report.bytes_checked += record_bytes(r.frame_bytes);
    found.insert(r.offset);
    Status st = read_record(fd.get(), path, r.offset, r.frame_bytes, tally.frame);
    // A delta frame is checked by rebuilding it from its base (fetched from
    // this namespace), so a damaged or missing base shows on its dependants.
    Result<FrameHeader> h = st ? parse_frame_header(tally.frame) : Result<FrameHeader>(st);
    if (!h) {
      st = h.status();
    } else if (h->chunk_id != r.id) {
      st = Status::corruption("record of chunk " + to_hex(r.id) + " holds chunk " + to_hex(h->chunk_id));
    } else if (is_delta_codec(h->codec)) {
      st = rebuild_chunk(
          *h, tally.frame, [this](const Digest& id) { return get_held(id); }, tally.raw);
    } else {
      st = tally.decoder.decode(tally.frame, tally.raw, &r.id);
    }
    if (st) {
      good.insert(r.offset);
    } else {
      tally.add_bad(r.id, where(r.offset), st.to_string());
    }
  }
  for (const auto& [offset, id] : in_index) {
    if (good.count(offset) != 0) continue;
    if (found.count(offset) == 0)
      tally.add_bad(id, where(offset), "Corruption: the record is damaged (framing or CRC)");
    tally.to_forget.push_back({id, Location{number, offset, 0, false}});
  }
  auto holds_indexed = [&](std::uint64_t begin, std::uint64_t end) {
    auto it = in_index.lower_bound(begin);
    return it != in_index.end() && it->first < end;
  };
  for (const auto& [begin, end] : scan.damaged) {
    if (holds_indexed(begin, end)) continue;  // reported by id above
    tally.add_bad(Digest{}, span(begin, end), "Corruption: damaged bytes that hold no indexed chunk");
  }
  if (scan.valid_end < scan.file_bytes && !holds_indexed(scan.valid_end, scan.file_bytes)) {
    tally.add_bad(Digest{}, span(scan.valid_end, scan.file_bytes),
                  "Corruption: damaged bytes at the end of the pack");
  }
  return Status::ok();
}

// Snapshots: which ones each bad chunk affects, and any missing chunks.
void StoreNamespace::scrub_snapshots(ScrubTally& tally) {
  for (const std::string& snapshot : snapshot_names()) {
    scrub_snapshot(tally.report, name_, snapshot, read_manifest(snapshot), tally.bad_by_id,
                   [&](const Digest& id) {
                     std::lock_guard lock(mu_);
                     return index_.count(id) != 0;
                   });
  }
}

void StoreNamespace::forget_bad_chunks(const ScrubTally& tally) {
  std::lock_guard lock(mu_);
  for (const auto& [id, where] : tally.to_forget) {
    auto it = index_.find(id);
    if (it != index_.end() && it->second.pack == where.pack && it->second.offset == where.offset) {
      index_.erase(it);
    }
  }
}

}  // namespace ferry
