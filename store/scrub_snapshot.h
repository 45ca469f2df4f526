// scrub_snapshot.h: the part of a scrub that judges one snapshot, the same
// for every backend (docs/FORMAT.md sections 7.5 and 9.5): each bad chunk
// the snapshot names gets the snapshot added to its report entry, and a
// snapshot naming chunks the store lacks is reported broken.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "codec/manifest.h"
#include "store/chunk_store.h"
#include "store/store_namespace.h"  // DigestHash

namespace ferry {

// Judges snapshot `snapshot` of namespace `ns` from its manifest as read
// (`manifest`: the bytes, or why they could not be read; NotFound: removed
// meanwhile, skipped). `bad_by_id`: chunk id -> its entry in
// report.bad_chunks. `present`: whether the store holds a chunk (it takes
// whatever lock it needs).
void scrub_snapshot(ScrubReport& report, std::string_view ns, const std::string& snapshot,
                    const Result<std::vector<std::byte>>& manifest,
                    const std::unordered_map<Digest, std::size_t, DigestHash>& bad_by_id,
                    const std::function<bool(const Digest&)>& present);

}  // namespace ferry
