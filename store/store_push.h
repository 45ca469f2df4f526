// store_push.h: a checkpoint packed straight into a ChunkStore, with no
// receiver in between: `ferry push --to=s3://BUCKET/PREFIX` from a training
// host, where the namespace is a key prefix and the bucket's credentials are
// the access control. The store is asked first which chunks it holds (only
// the others are sent), verifies every frame it is given, and publishes the
// snapshot only after every chunk is durable (chunk_store.h).
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>

#include "base/status.h"
#include "codec/delta_chain.h"
#include "codec/packer.h"
#include "store/chunk_store.h"

namespace ferry {

struct StorePushReport {
  std::string snapshot;
  std::uint64_t files = 0;
  std::uint64_t logical_bytes = 0;
  std::uint64_t chunks_total = 0;
  std::uint64_t chunks_skipped = 0;  // the store held them already
  std::uint64_t frame_bytes_stored = 0;
  std::uint64_t delta_chunks = 0;         // chunks stored as delta frames
  std::uint64_t delta_logical_bytes = 0;  // their bytes
  std::uint64_t delta_frame_bytes = 0;    // their delta frames' bytes
  // Delta frames the store refused because their base was removed after it
  // said it held it (a gc at that instant): stored in full instead, and
  // still counted in delta_chunks.
  std::uint64_t deltas_sent_in_full = 0;
  SnapshotOrigin origin;  // as committed (PackOptions::origin, a delta without deltas a key)
  double seconds = 0;
};

// The delta base of a push into namespace `ns` of `store`, chosen from its
// snapshots (codec/delta_chain.h; the store's list gives each one's origin).
// `query.host` empty: manifest_host_name(). The caller sets
// PackOptions::delta_from to base_dir and PackOptions::origin to origin.
DeltaChoice choose_store_delta_base(ChunkStore& store, std::string_view ns, const DeltaPolicy& policy,
                                    ChainQuery query);

// What a caller may add to a push (the agent: a checkpoint changed while
// read is not committed; a shutdown stops the push between chunks).
struct StorePushHooks {
  std::function<Status()> before_commit;  // an error refuses the commit
  std::function<bool()> should_stop;      // true: Aborted at the next chunk
};

// Packs `sources` into `ns` of `store` and commits them as `snapshot`
// (validated first). `pack.need` is set here. A commit that finds chunks
// missing (gc deleted their pack meanwhile) packs again, sending only those,
// up to kStorePushCommitAttempts times in all.
Result<StorePushReport> push_to_store(ChunkStore& store, std::string_view ns,
                                      std::span<const PackSource> sources, PackOptions pack,
                                      std::string_view snapshot, const StorePushHooks& hooks = {});

}  // namespace ferry
