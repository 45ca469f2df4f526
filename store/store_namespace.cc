// store_namespace.cc: see store_namespace.h. Recovery, appends, syncs, reads
// and snapshot files; gc and scrub live in store_gc.cc and store_scrub.cc.
#include "store/store_namespace.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <system_error>

#include "base/clock.h"
#include "codec/frame.h"
#include "codec/limits.h"
#include "store/durable_dirs.h"
#include "store/pack_file.h"
#include "store/snapshot_file.h"
#include "store/store_checks.h"
#include "store/store_index.h"

namespace ferry {
namespace {

constexpr char kIndexFile[] = "index";
constexpr std::string_view kManifestSuffix = ".manifest";
// A snapshot file: a commit record and a manifest of the largest size.
constexpr std::uint64_t kMaxSnapshotFileBytes =
    kCommitRecordBytes + kManifestHeaderBytes + kMaxManifestBodyBytes;

// The whole file, refused past `limit` bytes; `mtime_ns`, when given, gets
// its modification time.
Result<std::vector<std::byte>> read_whole(const std::filesystem::path& path, std::uint64_t limit,
                                          std::int64_t* mtime_ns = nullptr) {
  ASSIGN_OR_RETURN(UniqueFd fd, open_fd(path, O_RDONLY));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return Status::from_errno(errno, "stat " + path.string());
  if (mtime_ns != nullptr) {
    *mtime_ns = add_ns_saturated(seconds_to_ns_saturated(st.st_mtim.tv_sec), st.st_mtim.tv_nsec);
  }
  if (static_cast<std::uint64_t>(st.st_size) > limit) {
    return Status::exhausted(path.string() + ": " + std::to_string(st.st_size) +
                             " bytes, more than the limit of " + std::to_string(limit));
  }
  std::vector<std::byte> bytes(static_cast<std::size_t>(st.st_size));
  RETURN_IF_ERROR(pread_exact(fd.get(), bytes, 0, path));
  return bytes;
}

// Appends the whole record (framing + frame) at `offset` with one pwritev,
// through the page cache (not O_DIRECT, not io_uring: docs/BENCHMARKS.md,
// "ferry's own files").
Status write_record(int fd, const std::filesystem::path& path, std::uint64_t offset,
                    const RecordFraming& framing, std::span<const std::byte> frame) {
  iovec iov[3] = {{const_cast<std::byte*>(framing.header.data()), framing.header.size()},
                  {const_cast<std::byte*>(frame.data()), frame.size()},
                  {const_cast<std::byte*>(framing.trailer.data()), framing.trailer.size()}};
  const std::uint64_t total = record_bytes(frame.size());
  ssize_t n;
  do {
    n = ::pwritev(fd, iov, 3, static_cast<off_t>(offset));
  } while (n < 0 && errno == EINTR);
  if (n < 0)
    return Status::from_errno(errno, "write " + path.string() + " at offset " + std::to_string(offset));
  if (static_cast<std::uint64_t>(n) == total) return Status::ok();
  // A short write (a full disk, a signal): finish piece by piece.
  std::vector<std::byte> rest;
  rest.reserve(total);
  rest.insert(rest.end(), framing.header.begin(), framing.header.end());
  rest.insert(rest.end(), frame.begin(), frame.end());
  rest.insert(rest.end(), framing.trailer.begin(), framing.trailer.end());
  return pwrite_all(fd, std::span(rest).subspan(static_cast<std::size_t>(n)),
                    offset + static_cast<std::uint64_t>(n), path);
}

}  // namespace

std::size_t DigestHash::operator()(const Digest& d) const noexcept {
  std::size_t h;
  std::memcpy(&h, d.data(), sizeof h);  // ids are SHA-256 output: already uniform
  return h;
}

StoreNamespace::StoreNamespace(const std::filesystem::path& dir, std::string name,
                               const StoreOptions& options)
    : dir_(dir), packs_dir_(dir / "packs"), snapshots_dir_(dir / "snapshots"), name_(std::move(name)),
      options_(options) {}

Result<std::unique_ptr<StoreNamespace>> StoreNamespace::open(const std::filesystem::path& dir,
                                                             std::string name, const StoreOptions& options) {
  std::unique_ptr<StoreNamespace> ns(new StoreNamespace(dir, std::move(name), options));
  RETURN_IF_ERROR(ns->recover().with_context("namespace " + ns->name_));
  return ns;
}

StoreNamespace::~StoreNamespace() {
  std::unique_lock lock(maintenance_);
  Status st = sync_held();
  if (st) st = write_index();
  if (!st) log("closing: " + st.to_string());
}

void StoreNamespace::log(const std::string& message) const {
  const std::string line = "namespace " + name_ + ": " + message;
  if (options_.log) {
    options_.log(line);
  } else {
    std::fprintf(stderr, "ferry store: %s\n", line.c_str());
  }
}

std::filesystem::path StoreNamespace::pack_path(std::uint32_t number) const {
  return packs_dir_ / pack_file_name(number);
}

std::filesystem::path StoreNamespace::snapshot_path(std::string_view snapshot) const {
  return snapshots_dir_ / (std::string(snapshot) + std::string(kManifestSuffix));
}

Status StoreNamespace::recover() {
  RETURN_IF_ERROR(create_directories());
  ASSIGN_OR_RETURN(std::vector<std::uint32_t> numbers, clear_temporaries_and_list_packs());
  RETURN_IF_ERROR(count_snapshots());
  // The index, if usable. Anything wrong with it only costs a rescan.
  bool changed = false;
  const StoreIndex loaded = load_index(!numbers.empty(), changed);
  std::map<std::uint32_t, std::uint64_t> covered;
  for (const IndexPack& p : loaded.packs) covered[p.number] = p.covered_bytes;
  for (const auto& [number, bytes] : covered) {
    if (!std::binary_search(numbers.begin(), numbers.end(), number)) {
      log("index names pack " + pack_file_name(number) + ", which is gone: its entries are dropped");
      changed = true;
    }
  }
  for (std::uint32_t n : numbers) {
    auto it = covered.find(n);
    ASSIGN_OR_RETURN(bool trusted, recover_pack(n, it == covered.end() ? 0 : it->second, changed));
    if (!trusted) covered.erase(n);
  }
  // Entries of packs whose coverage held; recover_pack dropped the others.
  for (const IndexEntry& e : loaded.entries) {
    auto pk = packs_.find(e.pack);
    if (pk == packs_.end() || covered.count(e.pack) == 0) continue;
    index_.try_emplace(e.id, Location{e.pack, e.offset, e.frame_bytes, true});
  }
  next_pack_ = numbers.empty() ? 1 : numbers.back() + 1;
  if (!numbers.empty() && packs_[numbers.back()].size < options_.pack_target_bytes) {
    ASSIGN_OR_RETURN(UniqueFd fd, open_fd(pack_path(numbers.back()), O_RDWR));
    current_fd_ = std::make_shared<UniqueFd>(std::move(fd));
    current_ = numbers.back();
    has_current_ = true;
  }
  if (changed) RETURN_IF_ERROR(write_index());
  return Status::ok();
}

// Each directory is durable in its parent before anything is written inside
// it: the first chunks acknowledged in a new namespace must not vanish with
// a directory entry the crash took.
Status StoreNamespace::create_directories() {
  for (const auto& d : {dir_, packs_dir_, snapshots_dir_}) {
    RETURN_IF_ERROR(create_directories_durably(d, options_.directory_made_durable));
  }
  return Status::ok();
}

// Temporaries of interrupted commits, index writes and gc rewrites.
Result<std::vector<std::uint32_t>> StoreNamespace::clear_temporaries_and_list_packs() {
  std::vector<std::uint32_t> numbers;
  std::error_code ec;
  for (const auto& d : {dir_, packs_dir_, snapshots_dir_}) {
    for (const auto& e : std::filesystem::directory_iterator(d, ec)) {
      const std::string fname = e.path().filename().string();
      if (fname.find(kTempFileMarker) != std::string::npos) {
        std::filesystem::remove(e.path(), ec);
        log("removed interrupted temporary file " + e.path().string());
      } else if (d == packs_dir_) {
        if (auto n = parse_pack_file_name(fname)) numbers.push_back(*n);
      }
    }
    if (ec) return Status::io_error("list " + d.string() + ": " + ec.message());
  }
  std::sort(numbers.begin(), numbers.end());
  return numbers;
}

StoreIndex StoreNamespace::load_index(bool packs_exist, bool& changed) {
  std::error_code ec;
  const auto index_path = dir_ / kIndexFile;
  if (!std::filesystem::exists(index_path, ec)) {
    if (packs_exist) {
      log("index missing: rebuilding it from the packs");
      changed = true;
    }
    return {};
  }
  auto bytes = read_whole(index_path, ~std::uint64_t{0});
  Result<StoreIndex> parsed = bytes ? parse_index(*bytes) : Result<StoreIndex>(bytes.status());
  if (parsed) return std::move(*parsed);
  log("index unusable (" + parsed.status().to_string() + "): rebuilding it from the packs");
  changed = true;
  return {};
}

// What the quota and the snapshot limit count of the snapshot files.
Status StoreNamespace::count_snapshots() {
  std::uint64_t count = 0, bytes = 0;
  for (const std::string& name : snapshot_names()) {
    const auto path = snapshot_path(name);
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return Status::from_errno(errno, "stat " + path.string());
    ++count;
    bytes += static_cast<std::uint64_t>(st.st_size);
  }
  std::lock_guard lock(mu_);
  snapshot_count_ = count;
  snapshot_bytes_ = bytes;
  return Status::ok();
}

// Scans one pack past `covered` (0: the index does not cover it), truncates
// a torn tail and adds the records found. False when the index's coverage of
// this pack cannot be trusted (its entries must then be ignored).
Result<bool> StoreNamespace::recover_pack(std::uint32_t number, std::uint64_t covered, bool& changed) {
  const auto path = pack_path(number);
  ASSIGN_OR_RETURN(UniqueFd fd, open_fd(path, O_RDWR));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return Status::from_errno(errno, "stat " + path.string());
  const auto size = static_cast<std::uint64_t>(st.st_size);
  if (size < kPackHeaderBytes) {
    // Created, then killed before its header was written: start it afresh.
    const auto header = pack_header();
    if (::ftruncate(fd.get(), 0) != 0) return Status::from_errno(errno, "truncate " + path.string());
    RETURN_IF_ERROR(pwrite_all(fd.get(), header, 0, path));
    RETURN_IF_ERROR(fsync_fd(fd.get(), path));
    log("pack " + path.string() + " had a torn header (" + std::to_string(size) + " bytes): rewritten");
    packs_[number] = Pack{kPackHeaderBytes, kPackHeaderBytes};
    stored_bytes_ += kPackHeaderBytes;
    changed = true;
    return false;
  }
  std::byte header[kPackHeaderBytes];
  RETURN_IF_ERROR(pread_exact(fd.get(), header, 0, path));
  RETURN_IF_ERROR(check_pack_header(header, path));
  std::uint64_t from = kPackHeaderBytes;
  if (covered != 0) {
    if (covered > size) {
      log("index covers " + std::to_string(covered) + " bytes of " + path.string() + ", which has " +
          std::to_string(size) + ": rescanning the pack");
      // Forget what the index said about this pack.
      covered = 0;
      changed = true;
    } else {
      from = covered;
    }
  }
  ASSIGN_OR_RETURN(PackScan scan, scan_pack(fd.get(), path, from));
  if (from < size) changed = true;
  for (const auto& [begin, end] : scan.damaged) {
    log("damaged bytes [" + std::to_string(begin) + ", " + std::to_string(end) + ") in " + path.string() +
        ": kept for scrub to report");
  }
  for (const PackRecord& r : scan.records) {
    index_.try_emplace(r.id, Location{number, r.offset, r.frame_bytes, true});
  }
  std::uint64_t end = size;
  if (scan.valid_end < size) {
    if (::ftruncate(fd.get(), static_cast<off_t>(scan.valid_end)) != 0) {
      return Status::from_errno(errno, "truncate " + path.string());
    }
    log("truncated " + std::to_string(size - scan.valid_end) + " bytes of torn tail of " + path.string() +
        " at offset " + std::to_string(scan.valid_end));
    end = scan.valid_end;
  }
  // What was found on disk may sit only in the page cache (the writer was
  // killed before its sync): make it durable before anyone relies on it.
  if (from < size) RETURN_IF_ERROR(fsync_fd(fd.get(), path));
  packs_[number] = Pack{end, end};
  stored_bytes_ += end;
  return covered != 0;
}

bool StoreNamespace::holds(const Digest& id) {
  std::shared_lock m(maintenance_);
  std::lock_guard lock(mu_);
  return index_.count(id) != 0;
}

Result<std::vector<bool>> StoreNamespace::have(std::span<const Digest> ids) {
  std::shared_lock m(maintenance_);
  std::lock_guard lock(mu_);
  std::vector<bool> out(ids.size());
  for (std::size_t i = 0; i < ids.size(); ++i) {
    auto it = index_.find(ids[i]);
    out[i] = it != index_.end() && it->second.durable;
  }
  return out;
}

Status StoreNamespace::ensure_current_locked(std::uint64_t record, bool& index_due) {
  if (has_current_) {
    const Pack& cur = packs_[current_];
    if (cur.size <= kPackHeaderBytes || cur.size + record <= options_.pack_target_bytes) {
      return Status::ok();
    }
    // Close the full pack durably now, so only the open pack needs syncs.
    RETURN_IF_ERROR(fsync_fd(current_fd_->get(), pack_path(current_)));
    packs_[current_].synced_bytes = packs_[current_].size;
    has_current_ = false;
    current_fd_.reset();
    index_due = true;
  }
  const std::uint32_t number = next_pack_;
  const auto path = pack_path(number);
  ASSIGN_OR_RETURN(UniqueFd fd, open_fd(path, O_RDWR | O_CREAT | O_EXCL));
  const auto header = pack_header();
  RETURN_IF_ERROR(pwrite_all(fd.get(), header, 0, path));
  ++next_pack_;
  packs_[number] = Pack{kPackHeaderBytes, 0};
  stored_bytes_ += kPackHeaderBytes;
  current_fd_ = std::make_shared<UniqueFd>(std::move(fd));
  current_ = number;
  has_current_ = true;
  packs_dir_dirty_ = true;
  return Status::ok();
}

Result<PutResult> StoreNamespace::put(std::span<const std::byte> frame, const FrameHeader& verified) {
  const Digest& id = verified.chunk_id;
  const RecordFraming framing = frame_record(frame, verified);
  const std::uint64_t record = record_bytes(frame.size());
  bool index_due = false;
  {
    std::shared_lock m(maintenance_);
    std::lock_guard lock(mu_);
    if (index_.count(id) != 0) return PutResult{id, false, frame.size()};
    RETURN_IF_ERROR(check_quota_locked("chunk " + to_hex(id), record));
    RETURN_IF_ERROR(ensure_current_locked(record, index_due));
    Pack& cur = packs_[current_];
    const auto path = pack_path(current_);
    Status st = write_record(current_fd_->get(), path, cur.size, framing, frame);
    if (!st) {
      // Leave no partial record behind for the next append to follow.
      if (::ftruncate(current_fd_->get(), static_cast<off_t>(cur.size)) != 0) {
        has_current_ = false;  // start a new pack next time
        current_fd_.reset();
      }
      return st;
    }
    index_.emplace(id, Location{current_, cur.size, static_cast<std::uint32_t>(frame.size()), false});
    pending_.push_back(id);
    cur.size += record;
    stored_bytes_ += record;
  }
  if (index_due) {
    Status st = write_index();
    if (!st) log("index write after closing a pack: " + st.to_string());
  }
  return PutResult{id, true, frame.size()};
}

Status StoreNamespace::sync() {
  std::shared_lock m(maintenance_);
  return sync_held();
}

Status StoreNamespace::sync_held() {
  std::vector<Digest> ids;
  std::shared_ptr<UniqueFd> fd;
  std::uint32_t pack = 0;
  std::uint64_t size = 0;
  bool dir_dirty = false;
  {
    std::lock_guard lock(mu_);
    ids.swap(pending_);
    if (has_current_) {
      fd = current_fd_;
      pack = current_;
      size = packs_[current_].size;
    }
    std::swap(dir_dirty, packs_dir_dirty_);
  }
  // fsync outside the lock: other connections keep appending meanwhile.
  Status st = fd ? fsync_fd(fd->get(), pack_path(pack)) : Status::ok();
  if (st && dir_dirty) st = fsync_dir(packs_dir_);
  std::lock_guard lock(mu_);
  if (!st) {
    // After a failed fsync the kernel may have dropped the pages: forget
    // these chunks so that they are sent and written again.
    for (const Digest& id : ids) {
      auto it = index_.find(id);
      if (it != index_.end() && !it->second.durable) index_.erase(it);
    }
    packs_dir_dirty_ = packs_dir_dirty_ || dir_dirty;
    has_current_ = false;
    current_fd_.reset();
    return st.with_context("namespace " + name_ + ": sync");
  }
  for (const Digest& id : ids) {
    auto it = index_.find(id);
    if (it != index_.end()) it->second.durable = true;
  }
  if (fd) {
    Pack& p = packs_[pack];
    p.synced_bytes = std::max(p.synced_bytes, size);
  }
  return Status::ok();
}

Status StoreNamespace::write_index() {
  std::lock_guard writer(index_write_mu_);
  StoreIndex idx;
  {
    std::lock_guard lock(mu_);
    std::map<std::uint32_t, std::uint64_t> covered;
    for (const auto& [number, p] : packs_) {
      covered[number] = std::max<std::uint64_t>(p.synced_bytes, kPackHeaderBytes);
      idx.packs.push_back({number, covered[number]});
    }
    idx.entries.reserve(index_.size());
    for (const auto& [id, loc] : index_) {
      // Every record inside a pack's synced prefix is on disk, whether or
      // not a sync has reported it yet; leaving one out would hide it, since
      // recovery does not rescan what the index covers.
      if (loc.offset + record_bytes(loc.frame_bytes) > covered[loc.pack]) continue;
      idx.entries.push_back({id, loc.pack, loc.offset, loc.frame_bytes});
    }
  }
  const std::vector<std::byte> bytes = serialize_index(idx);
  ASSIGN_OR_RETURN(AtomicFile out, AtomicFile::create(dir_ / kIndexFile));
  RETURN_IF_ERROR(pwrite_all(out.fd(), bytes, 0, out.temp_path()));
  return out.commit();
}

Result<std::vector<std::byte>> StoreNamespace::get(const Digest& id) {
  std::shared_lock m(maintenance_);
  return get_held(id);
}

Result<std::vector<std::byte>> StoreNamespace::get_held(const Digest& id) {
  Location loc;
  {
    std::lock_guard lock(mu_);
    auto it = index_.find(id);
    if (it == index_.end()) return Status::not_found("namespace " + name_ + ": no chunk " + to_hex(id));
    loc = it->second;
  }
  const auto path = pack_path(loc.pack);
  ASSIGN_OR_RETURN(UniqueFd fd, open_fd(path, O_RDONLY));
  std::vector<std::byte> frame;
  RETURN_IF_ERROR(
      read_record(fd.get(), path, loc.offset, loc.frame_bytes, frame).with_context("chunk " + to_hex(id)));
  ASSIGN_OR_RETURN(FrameHeader h, parse_frame_header(frame));
  if (h.chunk_id != id) {
    return Status::corruption(path.string() + " at offset " + std::to_string(loc.offset) + ": holds chunk " +
                              to_hex(h.chunk_id) + ", the index says " + to_hex(id));
  }
  return frame;
}

Result<std::vector<std::optional<FrameFacts>>> StoreNamespace::frame_facts(std::span<const Digest> ids) {
  std::shared_lock maint(maintenance_);
  return frame_facts_held(ids);
}

Result<std::vector<std::optional<FrameFacts>>> StoreNamespace::frame_facts_held(std::span<const Digest> ids,
                                                                                bool skip_damaged) {
  std::vector<std::optional<Location>> where(ids.size());
  {
    std::lock_guard lock(mu_);
    for (std::size_t i = 0; i < ids.size(); ++i) {
      if (auto it = index_.find(ids[i]); it != index_.end()) where[i] = it->second;
    }
  }
  std::vector<std::optional<FrameFacts>> out(ids.size());
  std::map<std::uint32_t, UniqueFd> fds;
  std::array<std::byte, kRecordHeaderBytes + kFrameHeaderBytes> head;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (!where[i]) continue;
    const Location& loc = *where[i];
    const auto path = pack_path(loc.pack);
    auto fd = fds.find(loc.pack);
    if (fd == fds.end()) {
      ASSIGN_OR_RETURN(UniqueFd opened, open_fd(path, O_RDONLY));
      fd = fds.emplace(loc.pack, std::move(opened)).first;
    }
    Result<FrameHeader> h = Status::ok();
    Status read = pread_exact(fd->second.get(), head, loc.offset, path);
    if (read) h = parse_frame_header_only(std::span(head).subspan(kRecordHeaderBytes));
    if (read && h && h->chunk_id != ids[i]) {
      h = Status::corruption(path.string() + " at offset " + std::to_string(loc.offset) + ": holds chunk " +
                             to_hex(h->chunk_id) + ", the index says " + to_hex(ids[i]));
    }
    if (!read) h = read;
    if (!h) {
      if (skip_damaged) continue;
      return h.status().with_context("chunk " + to_hex(ids[i]));
    }
    out[i] = FrameFacts{static_cast<std::uint8_t>(h->codec), loc.frame_bytes, h->base_id};
  }
  return out;
}

Status StoreNamespace::check_quota_locked(std::string_view what, std::uint64_t bytes) const {
  const std::uint64_t stored = stored_bytes_ + snapshot_bytes_;
  if (options_.quota_bytes == 0 || stored + bytes <= options_.quota_bytes) return Status::ok();
  return Status::exhausted("namespace " + name_ + ": quota exceeded: " + std::to_string(stored) +
                           " bytes stored + " + std::to_string(bytes) + " for " + std::string(what) +
                           " > quota " + std::to_string(options_.quota_bytes));
}

Status StoreNamespace::check_chunks_durable(std::string_view snapshot, const Manifest& m) {
  std::lock_guard lock(mu_);
  std::size_t missing = 0;
  std::string first;
  for (const ManifestFile& f : m.files) {
    for (const ManifestChunk& c : f.chunks) {
      auto it = index_.find(c.id);
      if (it != index_.end() && it->second.durable) continue;
      if (missing++ == 0)
        first = to_hex(c.id) + " (" + f.path + " at offset " + std::to_string(c.offset) + ")";
    }
  }
  if (missing == 0) return Status::ok();
  return Status::not_found("namespace " + name_ + ": snapshot " + std::string(snapshot) + " names " +
                           std::to_string(missing) + " chunks the store lacks, first " + first);
}

Status StoreNamespace::reserve_snapshot(std::string_view snapshot, std::uint64_t file_bytes) {
  std::lock_guard lock(mu_);
  if (snapshot_count_ >= options_.max_snapshots) {
    return Status::exhausted("namespace " + name_ + ": snapshot " + std::string(snapshot) +
                             " refused: the namespace holds " + std::to_string(snapshot_count_) +
                             " snapshots, its limit; prune older ones");
  }
  RETURN_IF_ERROR(check_quota_locked("snapshot " + std::string(snapshot), file_bytes));
  ++snapshot_count_;
  snapshot_bytes_ += file_bytes;
  return Status::ok();
}

void StoreNamespace::release_snapshot(std::uint64_t file_bytes) {
  std::lock_guard lock(mu_);
  snapshot_count_ -= std::min<std::uint64_t>(snapshot_count_, 1);
  snapshot_bytes_ -= std::min(snapshot_bytes_, file_bytes);
}

Status StoreNamespace::commit(std::string_view snapshot, std::span<const std::byte> bytes,
                              const Manifest& m) {
  // The receiver's clock, not the host's, dates the snapshot for retention;
  // a created time far ahead of it is a host's clock gone wrong or a lie.
  const std::int64_t now_ns = wall_ns();
  RETURN_IF_ERROR(check_created_time(name_, snapshot, m.created_ns, now_ns));
  std::shared_lock maint(maintenance_);
  RETURN_IF_ERROR(sync_held());
  RETURN_IF_ERROR(check_chunks_durable(snapshot, m));
  std::lock_guard commit_lock(commit_mu_);
  const auto path = snapshot_path(snapshot);
  std::error_code ec;
  if (std::filesystem::exists(path, ec)) {
    ASSIGN_OR_RETURN(StoredSnapshot existing, read_snapshot(snapshot));
    if (std::equal(existing.manifest.begin(), existing.manifest.end(), bytes.begin(), bytes.end())) {
      return Status::ok();
    }
    return Status::invalid_argument("namespace " + name_ + ": snapshot " + std::string(snapshot) +
                                    " already exists with other contents");
  }
  const std::vector<std::byte> file = serialize_snapshot_file(now_ns, bytes);
  RETURN_IF_ERROR(reserve_snapshot(snapshot, file.size()));
  Result<AtomicFile> out = AtomicFile::create(path);
  Status st = out ? pwrite_all(out->fd(), file, 0, out->temp_path()) : out.status();
  if (st) st = out->commit();
  if (!st) release_snapshot(file.size());
  return st;
}

std::vector<std::string> StoreNamespace::snapshot_names() const {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(snapshots_dir_, ec)) {
    const std::string fname = e.path().filename().string();
    if (fname.find(kTempFileMarker) != std::string::npos || fname.size() <= kManifestSuffix.size() ||
        !fname.ends_with(kManifestSuffix)) {
      continue;
    }
    names.push_back(fname.substr(0, fname.size() - kManifestSuffix.size()));
  }
  std::sort(names.begin(), names.end());
  return names;
}

Result<StoreNamespace::StoredSnapshot> StoreNamespace::read_snapshot(std::string_view snapshot) {
  const auto path = snapshot_path(snapshot);
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    return Status::not_found("namespace " + name_ + ": no snapshot " + std::string(snapshot));
  }
  StoredSnapshot out;
  ASSIGN_OR_RETURN(std::vector<std::byte> bytes, read_whole(path, kMaxSnapshotFileBytes, &out.committed_ns));
  ASSIGN_OR_RETURN(SnapshotFile file, parse_snapshot_file(bytes, path));
  if (file.committed_ns) out.committed_ns = *file.committed_ns;
  const std::size_t record_size = bytes.size() - file.manifest.size();
  bytes.erase(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(record_size));
  out.manifest = std::move(bytes);
  return out;
}

Result<std::vector<std::byte>> StoreNamespace::read_manifest(std::string_view snapshot) {
  ASSIGN_OR_RETURN(StoredSnapshot s, read_snapshot(snapshot));
  return std::move(s.manifest);
}

Result<std::vector<SnapshotInfo>> StoreNamespace::list() {
  std::vector<SnapshotInfo> out;
  for (const std::string& name : snapshot_names()) {
    auto stored = read_snapshot(name);
    if (!stored) {
      if (stored.status().code() == Code::kNotFound) continue;  // removed meanwhile
      log("snapshot " + name + ": " + stored.status().to_string());
      continue;
    }
    auto m = parse_manifest(stored->manifest);
    if (!m) {
      log("snapshot " + name + " is unreadable (scrub reports it): " + m.status().to_string());
      continue;
    }
    out.push_back(snapshot_info(name, *m, stored->committed_ns, stored->manifest.size()));
  }
  sort_snapshots(out);
  return out;
}

Result<std::vector<std::pair<std::string, Manifest>>> StoreNamespace::load_manifests() {
  std::vector<std::pair<std::string, Manifest>> out;
  for (const std::string& name : snapshot_names()) {
    auto bytes = read_manifest(name);
    if (!bytes) return bytes.status().with_context("snapshot " + name);
    auto m = parse_manifest(*bytes);
    if (!m) return m.status().with_context("snapshot " + name);
    out.emplace_back(name, std::move(*m));
  }
  return out;
}

Status StoreNamespace::remove(std::span<const std::string> snapshots) {
  std::shared_lock maint(maintenance_);
  std::lock_guard commit_lock(commit_mu_);
  for (const std::string& s : snapshots) {
    const auto path = snapshot_path(s);
    struct stat st {};
    const bool sized = ::stat(path.c_str(), &st) == 0;
    if (::unlink(path.c_str()) != 0) {
      if (errno == ENOENT) return Status::not_found("namespace " + name_ + ": no snapshot " + s);
      return Status::from_errno(errno, "remove " + path.string());
    }
    release_snapshot(sized ? static_cast<std::uint64_t>(st.st_size) : 0);
  }
  return fsync_dir(snapshots_dir_);
}

StoreUsage StoreNamespace::usage() {
  StoreUsage u;
  u.quota_bytes = options_.quota_bytes;
  std::lock_guard lock(mu_);
  u.stored_bytes = stored_bytes_ + snapshot_bytes_;
  u.snapshot_bytes = snapshot_bytes_;
  u.snapshots = snapshot_count_;
  u.chunks = index_.size();
  return u;
}

}  // namespace ferry
