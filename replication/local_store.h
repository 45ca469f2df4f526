// local_store.h: the ChunkStore on the receiver's local filesystem
// (docs/FORMAT.md section 7). Per namespace: append-only pack files of
// CRC-framed records, an advisory index (rebuilt from the packs whenever it is
// missing, damaged or stale), and one manifest file per snapshot, published by
// atomic rename. Opening a store recovers from a crash: a torn record at the
// tail of a pack is truncated and reported through StoreOptions::log.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string_view>

#include "codec/status.h"
#include "replication/chunk_store.h"

namespace ferry {

// A pack is closed and a new one started once it reaches this size.
inline constexpr std::uint64_t kDefaultPackTargetBytes = 256ull << 20;

struct StoreOptions {
  // Hosts (Actor::kHost) may not remove snapshots, prune or gc.
  bool append_only = false;
  // Per-namespace limit on stored bytes; 0: none.
  std::uint64_t quota_bytes = 0;
  std::uint64_t pack_target_bytes = kDefaultPackTargetBytes;
  // gc leaves packs written within this many seconds alone, so the chunks of
  // a push still in flight (stored, not yet named by a committed snapshot)
  // are not collected under it.
  std::int64_t gc_grace_seconds = 3600;
  // Recovery and gc notes ("truncated 123 bytes of torn tail at ..."). Null:
  // printed on stderr as "ferry store: ...".
  std::function<void(std::string_view)> log;
};

// Opens (creating `root` when absent) a local store. Namespaces are opened
// and recovered lazily, on first use.
Result<std::unique_ptr<ChunkStore>> open_local_store(const std::filesystem::path& root,
                                                     const StoreOptions& options = {});

}  // namespace ferry
