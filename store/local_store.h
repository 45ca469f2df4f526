// local_store.h: the ChunkStore on the receiver's local filesystem
// (docs/FORMAT.md section 7). Per namespace: append-only pack files of
// CRC-framed records, an advisory index (rebuilt from the packs whenever it is
// missing, damaged or stale), and one manifest file per snapshot, published by
// atomic rename. Opening a store recovers from a crash: a torn record at the
// tail of a pack is truncated and reported through StoreOptions::log.
#pragma once

#include <filesystem>
#include <memory>

#include "base/status.h"
#include "store/chunk_store.h"
#include "store/store_options.h"

namespace ferry {

// Opens (creating `root` when absent) a local store. Namespaces are opened
// and recovered lazily, on first use.
Result<std::unique_ptr<ChunkStore>> open_local_store(const std::filesystem::path& root,
                                                     const StoreOptions& options = {});

}  // namespace ferry
