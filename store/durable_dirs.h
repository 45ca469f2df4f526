// durable_dirs.h: directory creation that survives a crash. A new directory
// is only an entry in its parent until the parent is fsynced; a store that
// acknowledged chunks inside a directory the next boot does not find would
// have lied. The store creates every directory on its durable path (the
// store root, ROOT/<ns>, packs/, snapshots/) through this.
#pragma once

#include <filesystem>
#include <functional>

#include "base/status.h"

namespace ferry {

// Told of each directory created, once its parent's fsync has returned.
using DirectoryDurableHook = std::function<void(const std::filesystem::path&)>;

// Creates `dir` and every missing parent, top down: mkdir, then fsync of the
// parent, before the next level. Directories that exist already are left as
// they are. `made_durable` may be null.
Status create_directories_durably(const std::filesystem::path& dir,
                                  const DirectoryDurableHook& made_durable = {});

}  // namespace ferry
