// local_store.cc: the ChunkStore on the local filesystem: the store's lock,
// and one StoreNamespace per namespace, opened on first use; name checks,
// frame verification, permissions and retention are NamespacedStore's
// (namespaced_store.h).
#include "store/local_store.h"

#include <fcntl.h>
#include <sys/file.h>

#include <algorithm>
#include <cerrno>
#include <map>
#include <mutex>
#include <set>
#include <system_error>

#include "base/posix_file.h"
#include "codec/chunk_codec.h"
#include "codec/frame.h"
#include "codec/limits.h"
#include "codec/manifest.h"
#include "store/durable_dirs.h"
#include "store/namespaced_store.h"
#include "store/retention.h"
#include "store/store_checks.h"
#include "store/store_namespace.h"

namespace ferry {
namespace {

constexpr char kStoreLockFile[] = "LOCK";

bool name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
         c == '-';
}

Status validate_name(std::string_view what, std::string_view v, std::size_t max_bytes) {
  if (v.empty() || v.size() > max_bytes || v == "." || v == ".." ||
      !std::all_of(v.begin(), v.end(), name_char)) {
    std::string shown(v.substr(0, std::min<std::size_t>(v.size(), 80)));
    for (char& c : shown) {
      if (!name_char(c)) c = '?';
    }
    return Status::invalid_argument("invalid " + std::string(what) + " \"" + shown + "\": must be 1-" +
                                    std::to_string(max_bytes) + " characters of [A-Za-z0-9._-], not . or ..");
  }
  return Status::ok();
}

class LocalStore final : public NamespacedStore<StoreNamespace> {
 public:
  LocalStore(std::filesystem::path root, StoreOptions options, UniqueFd lock)
      : NamespacedStore(std::move(options)), root_(std::move(root)), lock_(std::move(lock)) {}

  Result<std::vector<std::string>> namespaces() override {
    std::set<std::string> names;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(root_, ec)) {
      const std::string name = e.path().filename().string();
      if (e.is_directory(ec) && validate_namespace(name)) names.insert(name);
    }
    if (ec) return Status::io_error("list " + root_.string() + ": " + ec.message());
    std::lock_guard lock(mu_);
    for (const auto& [name, n] : open_) names.insert(name);
    return std::vector<std::string>(names.begin(), names.end());
  }

 private:
  Result<StoreNamespace*> open(std::string_view ns) override {
    RETURN_IF_ERROR(validate_namespace(ns));
    std::lock_guard lock(mu_);
    auto it = open_.find(ns);
    if (it != open_.end()) return it->second.get();
    ASSIGN_OR_RETURN(auto n, StoreNamespace::open(root_ / std::string(ns), std::string(ns), options_));
    StoreNamespace* raw = n.get();
    open_.emplace(std::string(ns), std::move(n));
    return raw;
  }

  const std::filesystem::path root_;
  UniqueFd lock_;  // flock held for the store's lifetime
  std::mutex mu_;
  std::map<std::string, std::unique_ptr<StoreNamespace>, std::less<>> open_;
};

}  // namespace

Status validate_namespace(std::string_view ns) { return validate_name("namespace", ns, kMaxNamespaceBytes); }

Status validate_snapshot_name(std::string_view name) {
  RETURN_IF_ERROR(validate_name("snapshot name", name, kMaxSnapshotNameBytes));
  if (name.find(kTempFileMarker) != std::string_view::npos) {
    return Status::invalid_argument("invalid snapshot name \"" + std::string(name) + "\": \"" +
                                    std::string(kTempFileMarker) +
                                    "\" is reserved for the store's temporary files");
  }
  return Status::ok();
}

Result<std::unique_ptr<ChunkStore>> open_local_store(const std::filesystem::path& root,
                                                     const StoreOptions& options) {
  RETURN_IF_ERROR(create_directories_durably(root, options.directory_made_durable));
  if (options.pack_target_bytes < 1u << 20) {
    return Status::invalid_argument("pack target size must be at least 1 MiB");
  }
  // One process per store: a second one's recovery would take the first
  // one's append in progress for a torn tail and cut it.
  const auto lock_path = root / kStoreLockFile;
  ASSIGN_OR_RETURN(UniqueFd lock, open_fd(lock_path, O_RDWR | O_CREAT));
  if (::flock(lock.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) {
      return Status::unavailable("store " + root.string() +
                                 " is in use by another process (a running ferry serve?); stop it first");
    }
    return Status::from_errno(errno, "lock " + lock_path.string());
  }
  return std::unique_ptr<ChunkStore>(new LocalStore(root, options, std::move(lock)));
}

}  // namespace ferry
