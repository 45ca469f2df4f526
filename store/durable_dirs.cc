// durable_dirs.cc: see durable_dirs.h.
#include "store/durable_dirs.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <system_error>
#include <vector>

#include "base/posix_file.h"

namespace ferry {

Status create_directories_durably(const std::filesystem::path& dir,
                                  const DirectoryDurableHook& made_durable) {
  // The missing directories, deepest first.
  std::filesystem::path target = dir.lexically_normal();
  if (!target.has_filename() && target.has_relative_path()) target = target.parent_path();  // "a/b/"
  std::vector<std::filesystem::path> missing;
  std::error_code ec;
  for (std::filesystem::path p = target; !p.empty(); p = p.parent_path()) {
    if (std::filesystem::exists(p, ec)) break;
    if (ec) return Status::io_error("stat " + p.string() + ": " + ec.message());
    missing.push_back(p);
    if (p == p.parent_path()) break;  // the root
  }
  std::reverse(missing.begin(), missing.end());
  for (const std::filesystem::path& p : missing) {
    // EEXIST: created meanwhile by someone else; its parent is synced again
    // here all the same, which costs nothing wrong.
    if (::mkdir(p.c_str(), 0755) != 0 && errno != EEXIST)
      return Status::from_errno(errno, "create " + p.string());
    RETURN_IF_ERROR(fsync_dir(p.parent_path()).with_context("making " + p.string() + " durable"));
    if (made_durable) made_durable(p);
  }
  if (!std::filesystem::is_directory(target, ec))
    return Status::io_error("create " + dir.string() + ": not a directory");
  return Status::ok();
}

}  // namespace ferry
