// scrub_snapshot.cc: see scrub_snapshot.h.
#include "store/scrub_snapshot.h"

#include <set>

namespace ferry {

void scrub_snapshot(ScrubReport& report, std::string_view ns, const std::string& snapshot,
                    const Result<std::vector<std::byte>>& manifest,
                    const std::unordered_map<Digest, std::size_t, DigestHash>& bad_by_id,
                    const std::function<bool(const Digest&)>& present) {
  ++report.snapshots_checked;
  if (!manifest && manifest.status().code() == Code::kNotFound) return;
  if (!manifest) {
    report.broken_snapshots.push_back({std::string(ns), snapshot, manifest.status().to_string()});
    return;
  }
  auto parsed = parse_manifest(*manifest);
  if (!parsed) {
    report.broken_snapshots.push_back({std::string(ns), snapshot, parsed.status().to_string()});
    return;
  }
  const Manifest& m = *parsed;
  std::set<std::size_t> hit;
  std::size_t missing = 0;
  std::string first_missing;
  for (const ManifestFile& f : m.files) {
    for (const ManifestChunk& c : f.chunks) {
      if (auto b = bad_by_id.find(c.id); b != bad_by_id.end()) {
        hit.insert(b->second);
      } else if (!present(c.id) && missing++ == 0) {
        first_missing = to_hex(c.id) + " (" + f.path + " at offset " + std::to_string(c.offset) + ")";
      }
    }
  }
  for (std::size_t i : hit) report.bad_chunks[i].snapshots.push_back(snapshot);
  if (missing != 0) {
    report.broken_snapshots.push_back(
        {std::string(ns), snapshot,
         std::to_string(missing) + " chunks missing from the store, first " + first_missing});
  }
}

}  // namespace ferry
