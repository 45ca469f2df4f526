// local_store.cc: the ChunkStore on the local filesystem: name checks, frame
// verification before anything is stored, permissions (append-only mode),
// retention, and one StoreNamespace per namespace, opened on first use.
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
#include "store/retention.h"
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

// A frame whose header fails its own checks names no chunk by itself (its
// id field is not yet trusted); the refusal still says which chunk the
// frame claims to carry, so that whoever sent it can tell which one.
Status name_claimed_chunk(const Status& st, std::span<const std::byte> frame) {
  Digest claimed{};
  if (!claimed_chunk_id(frame, claimed) || st.message().find(to_hex(claimed)) != std::string::npos) return st;
  return st.with_context("frame claiming chunk " + to_hex(claimed) + " (unverified)");
}

class LocalStore final : public ChunkStore {
 public:
  LocalStore(std::filesystem::path root, StoreOptions options, UniqueFd lock)
      : root_(std::move(root)), options_(std::move(options)), lock_(std::move(lock)) {}

  Result<std::vector<bool>> have(std::string_view ns, std::span<const Digest> ids) override {
    ASSIGN_OR_RETURN(StoreNamespace * n, open(ns));
    return n->have(ids);
  }

  // Each byte of the frame is checked once: one CRC pass (header and
  // payload, parse_frame_header), one decode and one tree hash of the
  // decoded chunk (decode_verified); the pack record's CRC is then derived
  // from the two CRCs already checked (frame_record), not computed again.
  Result<PutResult> put(std::string_view ns, std::span<const std::byte> frame,
                        const Digest* expected_id) override {
    RETURN_IF_ERROR(validate_namespace(ns));
    if (frame.size() > kMaxFrameBytes) {
      return Status::exhausted("frame of " + std::to_string(frame.size()) + " bytes exceeds the limit of " +
                               std::to_string(kMaxFrameBytes));
    }
    Result<FrameHeader> parsed = parse_frame_header(frame);
    if (!parsed) return name_claimed_chunk(parsed.status(), frame);
    const FrameHeader& header = *parsed;
    if (expected_id != nullptr && header.chunk_id != *expected_id) {
      return Status::corruption("frame carries chunk " + to_hex(header.chunk_id) + ", expected " +
                                to_hex(*expected_id));
    }
    ASSIGN_OR_RETURN(StoreNamespace * n, open(ns));
    // Skip the decode for a chunk already held; put() checks again under its lock.
    ASSIGN_OR_RETURN(auto held, n->have(std::span(&header.chunk_id, 1)));
    if (held[0]) return PutResult{header.chunk_id, false, frame.size()};
    // Full verification (decode + id) outside every lock; scratch per thread.
    thread_local ChunkDecoder decoder;
    thread_local std::vector<std::byte> scratch;
    scratch.resize(header.raw_bytes);
    Status st = decoder.decode_verified(header, frame, scratch);
    if (scratch.capacity() > kDefaultChunkBytes) std::vector<std::byte>().swap(scratch);
    RETURN_IF_ERROR(st);
    return n->put(frame, header);
  }

  Status sync(std::string_view ns) override {
    ASSIGN_OR_RETURN(StoreNamespace * n, open(ns));
    return n->sync();
  }

  Result<std::vector<std::byte>> get(std::string_view ns, const Digest& id) override {
    ASSIGN_OR_RETURN(StoreNamespace * n, open(ns));
    return n->get(id);
  }

  Status commit_snapshot(std::string_view ns, std::string_view name,
                         std::span<const std::byte> manifest_bytes) override {
    RETURN_IF_ERROR(validate_namespace(ns));
    RETURN_IF_ERROR(validate_snapshot_name(name));
    ASSIGN_OR_RETURN(Manifest m, parse_manifest(manifest_bytes));
    ASSIGN_OR_RETURN(StoreNamespace * n, open(ns));
    return n->commit(name, manifest_bytes, m);
  }

  Result<std::vector<SnapshotInfo>> list(std::string_view ns) override {
    ASSIGN_OR_RETURN(StoreNamespace * n, open(ns));
    return n->list();
  }

  Result<std::vector<std::byte>> manifest(std::string_view ns, std::string_view name) override {
    RETURN_IF_ERROR(validate_snapshot_name(name));
    ASSIGN_OR_RETURN(StoreNamespace * n, open(ns));
    return n->read_manifest(name);
  }

  Status remove_snapshot(std::string_view ns, std::string_view name, Actor actor) override {
    RETURN_IF_ERROR(may_delete(ns, actor));
    RETURN_IF_ERROR(validate_snapshot_name(name));
    ASSIGN_OR_RETURN(StoreNamespace * n, open(ns));
    std::string s(name);
    return n->remove(std::span(&s, 1));
  }

  Result<PruneReport> prune(std::string_view ns, const RetentionPolicy& policy, std::int64_t now_ns,
                            Actor actor) override {
    RETURN_IF_ERROR(may_delete(ns, actor));
    if (policy.empty()) {
      return Status::invalid_argument(
          "retention needs keep_last, keep_within, keep_daily, keep_weekly or keep_monthly: an empty policy "
          "would delete every snapshot");
    }
    ASSIGN_OR_RETURN(StoreNamespace * n, open(ns));
    ASSIGN_OR_RETURN(auto snapshots, n->list());
    PruneReport report = select_retention(snapshots, policy, now_ns);
    if (!report.removed.empty()) RETURN_IF_ERROR(n->remove(report.removed));
    return report;
  }

  Result<GcReport> gc(std::string_view ns, Actor actor) override {
    RETURN_IF_ERROR(may_delete(ns, actor));
    ASSIGN_OR_RETURN(StoreNamespace * n, open(ns));
    return n->gc();
  }

  Result<ScrubReport> scrub(std::string_view ns) override {
    std::vector<std::string> names;
    if (ns.empty()) {
      ASSIGN_OR_RETURN(names, namespaces());
    } else {
      names.emplace_back(ns);
    }
    ScrubReport report;
    for (const std::string& name : names) {
      ASSIGN_OR_RETURN(StoreNamespace * n, open(name));
      RETURN_IF_ERROR(n->scrub(report));
    }
    return report;
  }

  Result<StoreUsage> usage(std::string_view ns) override {
    ASSIGN_OR_RETURN(StoreNamespace * n, open(ns));
    return n->usage();
  }

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
  Status may_delete(std::string_view ns, Actor actor) const {
    RETURN_IF_ERROR(validate_namespace(ns));
    if (options_.append_only && actor == Actor::kHost) {
      return Status::permission_denied("namespace " + std::string(ns) +
                                       ": the store is append-only; hosts may not delete or prune snapshots");
    }
    return Status::ok();
  }

  Result<StoreNamespace*> open(std::string_view ns) {
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
  const StoreOptions options_;
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
