// s3_namespace.cc: see s3_namespace.h. Loading and refreshing the index,
// puts into the open pack, uploads and syncs, reads, snapshot objects; a
// snapshot's commit against a concurrent gc lives in s3_namespace_commit.cc,
// gc and scrub in s3_namespace_maintenance.cc, the spool's side of sync and
// open in s3_namespace_spool.cc.
#include "store/s3_namespace.h"

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <set>
#include <thread>

#include "base/buffer_stash.h"
#include "base/clock.h"
#include "codec/tree_hash.h"
#include "store/pack_file.h"
#include "store/snapshot_file.h"
#include "store/store_checks.h"
#include "store/store_limits.h"

namespace ferry {
namespace {

// The name in "ROOT/packs/<name>.pack" or "ROOT/index/<name>.idx": 64 hex
// digits, or empty for a key of any other shape (ignored).
std::string object_name(std::string_view key, std::string_view dir, std::string_view suffix) {
  if (!key.starts_with(dir) || !key.ends_with(suffix)) return {};
  const std::string_view name = key.substr(dir.size(), key.size() - dir.size() - suffix.size());
  if (name.size() != 64 || name.find_first_not_of("0123456789abcdef") != std::string_view::npos) return {};
  return std::string(name);
}

}  // namespace

S3Namespace::S3Namespace(S3Client& client, std::string bucket, std::string root, std::string name,
                         const StoreOptions& options)
    : client_(client), bucket_(std::move(bucket)), root_(std::move(root)), name_(std::move(name)),
      options_(options), open_(options.object_pack_target_bytes + kS3PackRoomSlackBytes) {}

Result<std::unique_ptr<S3Namespace>> S3Namespace::open(S3Client& client, std::string bucket, std::string root,
                                                       std::string name, const StoreOptions& options) {
  std::unique_ptr<S3Namespace> ns(
      new S3Namespace(client, std::move(bucket), std::move(root), std::move(name), options));
  RETURN_IF_ERROR(ns->refresh(/*repair=*/true).with_context("namespace " + ns->name_));
  if (!options.object_spool_dir.empty()) {
    // One directory per bucket, prefix and namespace: "+" stands for "/",
    // which neither bucket names nor prefixes may hold otherwise.
    std::string dir = ns->bucket_ + "+" + ns->root_.substr(0, ns->root_.size() - 1);
    std::replace(dir.begin(), dir.end(), '/', '+');
    ASSIGN_OR_RETURN(ns->spool_, S3Spool::open(options.object_spool_dir / dir));
    RETURN_IF_ERROR(ns->upload_leftovers().with_context("namespace " + ns->name_));
  }
  return ns;
}

void S3Namespace::log(const std::string& message) const {
  const std::string line = "namespace " + name_ + ": " + message;
  if (options_.log) {
    options_.log(line);
  } else {
    std::fprintf(stderr, "ferry store: %s\n", line.c_str());
  }
}

void S3Namespace::add_pack_locked(const std::string& name, const S3PackIndex& index) {
  packs_[name] = index.pack_bytes;
  pack_chunks_[name] = index.entries;
  const bool condemned = condemned_.count(name) != 0;
  for (const S3PackEntry& e : index.entries) {
    auto [it, added] = index_.try_emplace(e.id, Location{name, e.offset, e.frame_bytes});
    // A chunk stored again while gc deletes its old pack lives in the new one.
    if (!added && !condemned && condemned_.count(it->second.pack) != 0) {
      it->second = Location{name, e.offset, e.frame_bytes};
    }
  }
}

void S3Namespace::relocate_locked(std::unordered_set<Digest, DigestHash> ids) {
  for (const auto& [pack, entries] : pack_chunks_) {
    if (ids.empty()) return;
    if (condemned_.count(pack) != 0) continue;
    for (const S3PackEntry& e : entries) {
      if (ids.erase(e.id) != 0) index_[e.id] = Location{pack, e.offset, e.frame_bytes};
    }
  }
}

void S3Namespace::relocate_condemned_locked() {
  std::unordered_set<Digest, DigestHash> ids;
  for (const std::string& pack : condemned_) {
    auto entries = pack_chunks_.find(pack);
    if (entries == pack_chunks_.end()) continue;
    for (const S3PackEntry& e : entries->second) {
      auto it = index_.find(e.id);
      if (it != index_.end() && it->second.pack == pack) ids.insert(e.id);
    }
  }
  if (!ids.empty()) relocate_locked(std::move(ids));
}

bool S3Namespace::durable_locked(const Digest& id) const {
  auto it = index_.find(id);
  return it != index_.end() && (condemned_.empty() || condemned_.count(it->second.pack) == 0);
}

void S3Namespace::forget_packs_locked(const std::vector<std::string>& names) {
  std::unordered_set<Digest, DigestHash> orphans;
  for (const std::string& name : names) {
    for (const S3PackEntry& e : pack_chunks_[name]) {
      auto it = index_.find(e.id);
      if (it != index_.end() && it->second.pack == name) {
        index_.erase(it);
        facts_.erase(e.id);
        orphans.insert(e.id);
      }
    }
    pack_chunks_.erase(name);
    packs_.erase(name);
    std::erase_if(windows_, [&](const ReadWindow& w) { return w.pack == name; });
  }
  if (!orphans.empty()) relocate_locked(std::move(orphans));
}

Status S3Namespace::refresh(bool repair) {
  const std::int64_t started_ms = mono_ms();
  const std::string index_dir = root_ + "index/", pack_dir = root_ + "packs/";
  // The packs a gc is deleting: their chunks count as absent, so that a push
  // sends them again rather than rely on them (docs/FORMAT.md 9.5).
  ASSIGN_OR_RETURN(auto lock_state, read_s3_lock(client_, bucket_, lock_key()));
  bool newly_condemned = false;
  {
    std::lock_guard lock(mu_);
    std::set<std::string> condemned;
    if (lock_state)
      condemned.insert(lock_state->record.condemned.begin(), lock_state->record.condemned.end());
    newly_condemned = !condemned.empty() && condemned != condemned_;
    condemned_ = std::move(condemned);
  }
  std::set<std::string> known_before;
  {
    std::lock_guard lock(mu_);
    for (const auto& [name, bytes] : packs_) known_before.insert(name);
  }
  ASSIGN_OR_RETURN(std::vector<S3Object> index_objects, client_.list(bucket_, index_dir));
  std::vector<std::string> wanted;
  {
    std::lock_guard lock(mu_);
    std::set<std::string> listed;
    for (const S3Object& o : index_objects) {
      std::string name = object_name(o.key, index_dir, ".idx");
      if (name.empty()) continue;
      listed.insert(name);
      if (packs_.count(name) == 0) wanted.push_back(std::move(name));
    }
    // A pack known before this LIST whose index object is gone was deleted
    // by gc (index object first): its chunks are no longer held. (A pack
    // being repaired is listed again below, with repair.)
    std::vector<std::string> gone;
    for (const std::string& name : known_before) {
      if (listed.count(name) == 0) gone.push_back(name);
    }
    if (!gone.empty()) forget_packs_locked(gone);
  }
  std::vector<S3Request> reqs(wanted.size());
  std::vector<S3Request*> ptrs;
  for (std::size_t i = 0; i < wanted.size(); ++i) {
    reqs[i].bucket = bucket_;
    reqs[i].key = index_key(wanted[i]);
    ptrs.push_back(&reqs[i]);
  }
  client_.run(ptrs);
  for (std::size_t i = 0; i < wanted.size(); ++i) {
    if (!reqs[i].status) {
      if (reqs[i].status.code() == Code::kNotFound) continue;  // collected meanwhile
      return reqs[i].status;
    }
    auto parsed = parse_s3_trailer(reqs[i].reply, reqs[i].key);
    if (!parsed) {
      log(parsed.status().to_string() + (repair ? ": rebuilding it from its pack" : ""));
      continue;
    }
    std::lock_guard lock(mu_);
    add_pack_locked(wanted[i], *parsed);
  }
  if (repair) {
    ASSIGN_OR_RETURN(std::vector<S3Object> pack_objects, client_.list(bucket_, pack_dir));
    for (const S3Object& o : pack_objects) {
      const std::string name = object_name(o.key, pack_dir, ".pack");
      if (name.empty()) continue;
      {
        std::lock_guard lock(mu_);
        if (packs_.count(name) != 0) continue;
      }
      // A pack without a good index object: its writer stopped between the
      // two PUTs, or the index object was damaged. The pack says what it holds.
      std::vector<std::byte> raw;
      auto trailer = read_pack_trailer(name, o.size, raw);
      if (!trailer) {
        log("pack " + o.key + " has no readable trailer (scrub reports it): " + trailer.status().to_string());
        continue;
      }
      // The index object is the pack's trailer, byte for byte (written over
      // a damaged one: the only write that replaces an object).
      RETURN_IF_ERROR(put_object(index_key(name), raw, /*if_absent=*/false).status());
      log("rebuilt the index object of pack " + name + " (" + std::to_string(trailer->entries.size()) +
          " chunks) from its trailer");
      std::lock_guard lock(mu_);
      add_pack_locked(name, *trailer);
    }
  }
  std::lock_guard lock(mu_);
  // Packs a gc rewrote before condemning them: their live chunks are in
  // the new packs listed above.
  if (newly_condemned) relocate_condemned_locked();
  refreshed_ms_ = std::max(refreshed_ms_, started_ms);
  return Status::ok();
}

Result<S3PackIndex> S3Namespace::read_pack_trailer(const std::string& name, std::uint64_t size,
                                                   std::vector<std::byte>& raw) {
  const std::string key = pack_key(name);
  if (size < kPackHeaderBytes + kS3FooterBytes) return Status::corruption(key + ": too short for a pack");
  const std::uint64_t probe = std::min(size, kS3TrailerProbeBytes);
  ASSIGN_OR_RETURN(raw, client_.get_range(bucket_, key, size - probe, probe));
  ASSIGN_OR_RETURN(std::uint64_t need, s3_trailer_bytes(raw, size, key));
  if (need > probe) {
    ASSIGN_OR_RETURN(raw, client_.get_range(bucket_, key, size - need, need));
  } else {
    raw.erase(raw.begin(), raw.end() - static_cast<std::ptrdiff_t>(need));
  }
  ASSIGN_OR_RETURN(S3PackIndex index, parse_s3_trailer(raw, key));
  if (index.pack_bytes != size) {
    return Status::corruption(key + ": " + std::to_string(size) + " bytes, its trailer says " +
                              std::to_string(index.pack_bytes));
  }
  return index;
}

Result<bool> S3Namespace::put_object(const std::string& key, std::span<const std::byte> body, bool if_absent,
                                     const Digest* body_sha256) {
  std::vector<std::pair<std::string, std::string>> headers;
  if (options_.object_lock_days > 0) {
    // Retained in COMPLIANCE mode: no key, not even the bucket owner's, can
    // delete this version before the date (a bucket made with Object Lock).
    const std::int64_t until_s = wall_ns() / kNanosPerSecond + options_.object_lock_days * 86'400;
    const std::time_t t = static_cast<std::time_t>(until_s);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char date[32];
    std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", &tm);
    headers = {{"x-amz-object-lock-mode", "COMPLIANCE"}, {"x-amz-object-lock-retain-until-date", date}};
  }
  S3Request r = client_.put_request(bucket_, key, body, if_absent, {}, std::move(headers), body_sha256);
  if (if_absent && r.http_status == 412) return false;
  RETURN_IF_ERROR(r.status);
  return true;
}

bool S3Namespace::holds(const Digest& id) {
  std::lock_guard lock(mu_);
  return durable_locked(id) || pending_.count(id) != 0;
}

Status S3Namespace::refresh_since(std::int64_t since_ms) {
  std::lock_guard one(refresh_mu_);
  {
    std::lock_guard lock(mu_);
    if (refreshed_ms_ >= since_ms) return Status::ok();
  }
  return refresh(/*repair=*/false).with_context("namespace " + name_);
}

Result<std::vector<bool>> S3Namespace::have(std::span<const Digest> ids) {
  // Other gateways and hosts write to the bucket too: what they made
  // durable is not sent again.
  RETURN_IF_ERROR(refresh_since(mono_ms() - kS3IndexRefreshMs));
  std::lock_guard lock(mu_);
  std::vector<bool> out(ids.size());
  for (std::size_t i = 0; i < ids.size(); ++i) out[i] = durable_locked(ids[i]);
  return out;
}

Result<PutResult> S3Namespace::put(std::span<const std::byte> frame, const FrameHeader& verified) {
  const Digest& id = verified.chunk_id;
  const std::uint64_t record = record_bytes(frame.size());
  std::shared_ptr<Upload> full;
  {
    std::lock_guard lock(mu_);
    if (durable_locked(id) || pending_.count(id) != 0) return PutResult{id, false, frame.size()};
    if (pending_bytes_ + record > kS3MaxPendingBytes) {
      return Status::exhausted("namespace " + name_ + ": " + std::to_string(pending_bytes_) +
                               " bytes wait for the bucket already; chunk " + to_hex(id) +
                               " refused until they are stored");
    }
    if (options_.quota_bytes != 0) {
      std::uint64_t stored = snapshot_bytes_ + pending_bytes_;
      for (const auto& [name, bytes] : packs_) stored += bytes;
      if (stored + record > options_.quota_bytes) {
        return Status::exhausted("namespace " + name_ + ": quota exceeded: " + std::to_string(stored) +
                                 " bytes stored + " + std::to_string(record) + " for chunk " + to_hex(id) +
                                 " > quota " + std::to_string(options_.quota_bytes));
      }
    }
    const std::uint64_t offset = open_.add(frame, verified);
    pending_[id] = Pending{open_seq_, offset, static_cast<std::uint32_t>(frame.size())};
    facts_[id] = FrameFacts{static_cast<std::uint8_t>(verified.codec),
                            static_cast<std::uint32_t>(frame.size()), verified.base_id};
    pending_bytes_ += record;
    if (open_.bytes() >= options_.object_pack_target_bytes) full = seal_locked();
  }
  // A full pack goes to the bucket now, in the background; a failure puts
  // its chunks back in the open pack, for the next sync to carry (and
  // report). sync() waits for it like for any upload in flight.
  if (full) start_upload(full);
  return PutResult{id, true, frame.size()};
}

std::shared_ptr<S3Namespace::Upload> S3Namespace::seal_locked() {
  if (open_.chunks() == 0) return nullptr;
  auto up = std::make_shared<Upload>();
  up->seq = open_seq_++;
  up->entries = open_.entries();
  if (spool_) {
    up->spooled = spooled_bytes_ == open_.bytes();
    up->spool_files = std::move(carried_spool_files_);
    carried_spool_files_.clear();
    up->spool_files.push_back(up->seq);
    spooled_bytes_ = kPackHeaderBytes;
    spool_first_ms_ = 0;
  }
  up->bytes = open_.seal();
  uploads_[up->seq] = up;
  return up;
}

void S3Namespace::upload(const std::shared_ptr<Upload>& up) {
  const Digest digest = sha256(up->bytes);
  const std::string name = to_hex(digest);
  // Named by its bytes: a pack already there holds the same chunks (and the
  // request signs the same hash, computed once).
  Status st = put_object(pack_key(name), up->bytes, /*if_absent=*/true, &digest).status();
  // Its index object likewise: one already there was made from this pack.
  if (st) st = put_object(index_key(name), s3_pack_trailer(up->bytes), /*if_absent=*/true).status();
  // In the bucket now: the spool's copies may go (a file that stays by a
  // failed unlink is uploaded again at the next open, harmlessly).
  if (st && spool_) {
    for (std::uint64_t seq : up->spool_files) {
      if (Status removed = spool_->remove(seq); !removed) log("spool: " + removed.to_string());
    }
  }
  std::lock_guard lock(mu_);
  up->done = true;
  up->status = st;
  uploads_.erase(up->seq);
  if (st) {
    S3PackIndex index;
    index.pack_bytes = up->bytes.size();
    index.entries = up->entries;
    add_pack_locked(name, index);
    for (const S3PackEntry& e : up->entries) {
      auto p = pending_.find(e.id);
      if (p != pending_.end() && p->second.seq == up->seq) {
        pending_bytes_ -= record_bytes(e.frame_bytes);
        pending_.erase(p);
      }
    }
  } else {
    log("pack upload failed, its " + std::to_string(up->entries.size()) +
        " chunks wait for the next sync: " + st.to_string());
    for (const S3PackEntry& e : up->entries) {
      auto p = pending_.find(e.id);
      if (p == pending_.end() || p->second.seq != up->seq) continue;
      const auto record = std::span(up->bytes).subspan(e.offset, record_bytes(e.frame_bytes));
      p->second = Pending{open_seq_, open_.add_record(record, e.id), e.frame_bytes};
    }
    // The chunks stay durable in their spool files until the pack that now
    // carries them is in the bucket.
    carried_spool_files_.insert(carried_spool_files_.end(), up->spool_files.begin(), up->spool_files.end());
  }
  recycle_s3_pack_buffer(std::move(up->bytes));
  cv_.notify_all();
}

S3Namespace::~S3Namespace() {
  if (spool_) {
    bool spooled = false;
    {
      std::lock_guard lock(mu_);
      spooled = open_.chunks() != 0 || !uploads_.empty();
    }
    if (spooled) {
      if (Status st = flush(); !st) log("the spool keeps chunks for the next open: " + st.to_string());
    }
  }
  std::vector<std::pair<std::thread, std::shared_ptr<Upload>>> threads;
  {
    std::lock_guard lock(mu_);
    threads.swap(uploaders_);
  }
  for (auto& [t, up] : threads) t.join();
}

void S3Namespace::start_upload(const std::shared_ptr<Upload>& up) {
  std::vector<std::thread> finished;
  {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return background_uploads_ < options_.object_uploads; });
    ++background_uploads_;
    for (auto it = uploaders_.begin(); it != uploaders_.end();) {
      if (it->second->done) {
        finished.push_back(std::move(it->first));
        it = uploaders_.erase(it);
      } else {
        ++it;
      }
    }
    uploaders_.emplace_back(std::thread([this, up] {
                              upload(up);
                              std::lock_guard g(mu_);
                              --background_uploads_;
                              cv_.notify_all();
                            }),
                            up);
  }
  for (std::thread& t : finished) t.join();
}

Status S3Namespace::flush() {
  std::shared_ptr<Upload> mine;
  std::vector<std::shared_ptr<Upload>> waited;
  {
    std::lock_guard lock(mu_);
    mine = seal_locked();
    // Every put before this call is in a pack sealed by now: wait for them all.
    for (const auto& [seq, up] : uploads_) waited.push_back(up);
  }
  if (mine) upload(mine);
  return wait_uploads(waited);
}

Status S3Namespace::wait_uploads(const std::vector<std::shared_ptr<Upload>>& waited) {
  std::unique_lock lock(mu_);
  cv_.wait(lock,
           [&] { return std::all_of(waited.begin(), waited.end(), [](const auto& u) { return u->done; }); });
  for (const auto& up : waited) {
    if (!up->status) return up->status.with_context("namespace " + name_ + ": sync");
  }
  return Status::ok();
}

Result<std::vector<std::byte>> S3Namespace::get(const Digest& id) {
  std::vector<std::byte> out;
  RETURN_IF_ERROR(get_into(id, out));
  return out;
}

Status S3Namespace::get_into(const Digest& id, std::vector<std::byte>& out) {
  return fetch(id, &out, nullptr);
}

Status S3Namespace::lend(const Digest& id, LentBytes& lent) { return fetch(id, nullptr, &lent); }

namespace {

// The frame into `out`, or lent in a buffer of its own.
void give_copy(std::span<const std::byte> frame, std::vector<std::byte>* out, LentBytes* lent) {
  if (out != nullptr) {
    out->assign(frame.begin(), frame.end());
    return;
  }
  auto copy = std::make_shared<std::vector<std::byte>>(frame.begin(), frame.end());
  lent->bytes = *copy;
  lent->keep = std::move(copy);
}

}  // namespace

Status S3Namespace::fetch(const Digest& id, std::vector<std::byte>* out, LentBytes* lent) {
  // Stored through another gateway since this one last looked? A view
  // taken after this call began answers (concurrent misses share one LIST).
  if (!holds(id)) RETURN_IF_ERROR(refresh_since(mono_ms()));
  for (int pass = 0;; ++pass) {
    Location loc;
    {
      std::lock_guard lock(mu_);
      auto it = index_.find(id);
      if (it == index_.end()) {
        auto p = pending_.find(id);
        if (p == pending_.end()) return Status::not_found("namespace " + name_ + ": no chunk " + to_hex(id));
        std::span<const std::byte> frame;
        if (p->second.seq == open_seq_) {
          frame = open_.frame_at(p->second.offset, p->second.frame_bytes);
        } else {
          const Upload& up = *uploads_.at(p->second.seq);
          frame = std::span(up.bytes).subspan(p->second.offset + kRecordHeaderBytes, p->second.frame_bytes);
        }
        give_copy(frame, out, lent);
        return Status::ok();
      }
      loc = it->second;
    }
    Status st = read_chunk(id, loc, out, lent);
    // The pack is gone: a gc elsewhere rewrote its live chunks into a new
    // pack and deleted it. A view taken now finds them there.
    if (!st && st.code() == Code::kNotFound && pass == 0) {
      RETURN_IF_ERROR(refresh_since(mono_ms()));
      continue;
    }
    return st;
  }
}

Status S3Namespace::read_chunk(const Digest& id, const Location& loc, std::vector<std::byte>* out,
                               LentBytes* lent) {
  const std::string key = pack_key(loc.pack);
  const std::string where = key + " at offset " + std::to_string(loc.offset);
  Status last;
  // A ranged GET carries no checksum of its own: bytes damaged on their way
  // fail the record's check, and a second read tells that from damage at
  // rest. The record is checked where it lies; only its frame is copied.
  for (int attempt = 0; attempt < 2; ++attempt) {
    std::shared_future<WindowBytes> hold;
    std::vector<std::byte> own;
    Result<std::span<const std::byte>> record =
        attempt == 0 ? read_record(loc, hold, own) : read_record_alone(loc, own);
    if (!record) return record.status().with_context("chunk " + to_hex(id));
    auto frame = s3_record_frame(*record, id, where);
    if (frame && lent != nullptr) {
      // Lent where it lies: the window (or the record's own buffer) lives
      // as long as the borrower's share of it.
      lent->bytes = *frame;
      if (hold.valid()) {
        lent->keep = std::make_shared<std::shared_future<WindowBytes>>(std::move(hold));
      } else {
        lent->keep = std::make_shared<std::vector<std::byte>>(std::move(own));  // moving keeps its bytes
      }
      return Status::ok();
    }
    if (frame) {
      out->assign(frame->begin(), frame->end());
      return Status::ok();
    }
    last = frame.status();
  }
  return last.with_context("chunk " + to_hex(id));
}

namespace {

BufferStash<std::vector<std::byte>>& read_window_stash() {
  // Never destroyed: a get on another thread may drop the last reference to
  // a window while the process exits.
  static auto* stash = new BufferStash<std::vector<std::byte>>(kS3KeptReadWindows);
  return *stash;
}

}  // namespace

S3Namespace::WindowBytes::~WindowBytes() {
  if (bytes.capacity() != 0) read_window_stash().keep(std::move(bytes));
}

Result<std::span<const std::byte>> S3Namespace::read_record_alone(const Location& loc,
                                                                  std::vector<std::byte>& own) {
  RETURN_IF_ERROR(
      client_.get_range_into(bucket_, pack_key(loc.pack), loc.offset, record_bytes(loc.frame_bytes), own));
  return std::span<const std::byte>(own);
}

bool S3Namespace::window_of_locked(const Location& loc, std::uint64_t need, std::uint64_t& first,
                                   std::uint64_t& end) const {
  auto it = pack_chunks_.find(loc.pack);
  if (it == pack_chunks_.end()) return false;
  // The pack's records in order (as its index lists them), cut into windows
  // greedily: a window takes records while it stays within
  // kS3ReadAheadBytes, and a record larger than that alone.
  std::uint64_t start = 0, stop = 0;
  bool open = false, found = false;
  for (const S3PackEntry& e : it->second) {
    if (e.offset < stop) return false;  // not in order: no windows to share
    const std::uint64_t e_end = e.offset + record_bytes(e.frame_bytes);
    if (open && e_end - start > kS3ReadAheadBytes) {
      if (found) break;
      open = false;
    }
    if (!open) {
      start = e.offset;
      open = true;
    }
    stop = e_end;
    found |= e.offset == loc.offset;
  }
  if (!found || start > loc.offset || loc.offset + need > stop) return false;
  first = start;
  end = stop;
  return true;
}

Result<std::span<const std::byte>> S3Namespace::read_record(const Location& loc,
                                                            std::shared_future<WindowBytes>& hold,
                                                            std::vector<std::byte>& own) {
  const std::uint64_t need = record_bytes(loc.frame_bytes);
  std::promise<WindowBytes> mine;
  std::uint64_t first = loc.offset, end = 0;
  {
    std::lock_guard lock(mu_);
    for (const ReadWindow& w : windows_) {
      if (w.pack == loc.pack && w.first <= loc.offset && loc.offset + need <= w.end) {
        hold = w.bytes;
        first = w.first;
        break;
      }
    }
    if (!hold.valid()) {
      if (!window_of_locked(loc, need, first, end)) {
        end = loc.offset + std::max(need, kS3ReadAheadBytes);
        if (auto size = packs_.find(loc.pack); size != packs_.end()) {
          end = std::max(loc.offset + need, std::min(end, size->second));
        }
      }
      hold = mine.get_future().share();
      windows_.push_back({loc.pack, first, end, hold});
      if (windows_.size() > kS3MaxReadWindows) windows_.pop_front();
    }
  }
  if (end != 0) {
    WindowBytes w;
    const std::uint64_t length = end - first;
    w.bytes = read_window_stash().take(length, 2 * std::max(length, kS3ReadAheadBytes));
    w.status = client_.get_range_into(bucket_, pack_key(loc.pack), first, length, w.bytes);
    mine.set_value(std::move(w));
  }
  const WindowBytes& window = hold.get();
  // A window that could not be read whole (a pack cut short in the bucket)
  // leaves each record to a read of its own, which names what is wrong.
  if (!window.status || window.bytes.size() < loc.offset - first + need) {
    hold = {};
    return read_record_alone(loc, own);
  }
  return std::span<const std::byte>(window.bytes).subspan(loc.offset - first, need);
}

Result<S3Namespace::StoredSnapshot> S3Namespace::read_snapshot(std::string_view snapshot) {
  const std::string key = snapshot_key(snapshot);
  auto bytes = client_.get(bucket_, key);
  if (!bytes) {
    if (bytes.status().code() == Code::kNotFound) {
      return Status::not_found("namespace " + name_ + ": no snapshot " + std::string(snapshot));
    }
    return bytes.status();
  }
  ASSIGN_OR_RETURN(SnapshotFile file, parse_snapshot_file(*bytes, key));
  if (!file.committed_ns) return Status::corruption(key + ": no commit record");
  StoredSnapshot out;
  out.committed_ns = *file.committed_ns;
  out.manifest.assign(file.manifest.begin(), file.manifest.end());
  return out;
}

Result<std::vector<std::byte>> S3Namespace::read_manifest(std::string_view snapshot) {
  ASSIGN_OR_RETURN(StoredSnapshot s, read_snapshot(snapshot));
  return std::move(s.manifest);
}

Result<std::vector<SnapshotInfo>> S3Namespace::list() {
  ASSIGN_OR_RETURN(auto objects, snapshot_objects());
  std::vector<std::string> names;
  std::vector<S3Request> reqs(objects.size());
  std::vector<S3Request*> ptrs;
  for (const auto& [name, size] : objects) {
    S3Request& r = reqs[names.size()];
    r.bucket = bucket_;
    r.key = snapshot_key(name);
    ptrs.push_back(&r);
    names.push_back(name);
  }
  client_.run(ptrs);
  std::vector<SnapshotInfo> out;
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (!reqs[i].status) {
      if (reqs[i].status.code() == Code::kNotFound) continue;  // removed meanwhile
      return reqs[i].status;
    }
    auto file = parse_snapshot_file(reqs[i].reply, reqs[i].key);
    auto m = file ? parse_manifest(file->manifest) : Result<Manifest>(file.status());
    if (!m || !file->committed_ns) {
      log("snapshot " + names[i] + " is unreadable (scrub reports it): " +
          (m ? std::string("no commit record") : m.status().to_string()));
      continue;
    }
    out.push_back(snapshot_info(names[i], *m, *file->committed_ns, file->manifest.size()));
  }
  sort_snapshots(out);
  return out;
}

Result<std::vector<std::pair<std::string, Manifest>>> S3Namespace::load_manifests() {
  ASSIGN_OR_RETURN(auto objects, snapshot_objects());
  std::vector<std::pair<std::string, Manifest>> out;
  for (const auto& [name, size] : objects) {
    auto bytes = read_manifest(name);
    if (!bytes) {
      if (bytes.status().code() == Code::kNotFound) continue;
      return bytes.status().with_context("snapshot " + name);
    }
    auto m = parse_manifest(*bytes);
    if (!m) return m.status().with_context("snapshot " + name);
    out.emplace_back(name, std::move(*m));
  }
  return out;
}

Status S3Namespace::remove(std::span<const std::string> snapshots) {
  // Deletions in the bucket are gc's and prune's, one at a time.
  ASSIGN_OR_RETURN(std::unique_ptr<S3Lock> held, take_lock("prune"));
  std::lock_guard commit_lock(commit_mu_);
  for (const std::string& s : snapshots) {
    auto size = client_.head(bucket_, snapshot_key(s));
    if (!size) {
      if (size.status().code() == Code::kNotFound)
        return Status::not_found("namespace " + name_ + ": no snapshot " + s);
      return size.status();
    }
    RETURN_IF_ERROR(held->check_held());
    RETURN_IF_ERROR(client_.remove(bucket_, snapshot_key(s)));
    std::lock_guard lock(mu_);
    snapshot_bytes_ -= std::min(snapshot_bytes_, *size);
    snapshot_count_ -= std::min<std::uint64_t>(snapshot_count_, 1);
  }
  return Status::ok();
}

StoreUsage S3Namespace::usage() {
  StoreUsage u;
  u.quota_bytes = options_.quota_bytes;
  std::lock_guard lock(mu_);
  u.stored_bytes = snapshot_bytes_;
  for (const auto& [name, bytes] : packs_) u.stored_bytes += bytes;
  u.snapshot_bytes = snapshot_bytes_;
  u.snapshots = snapshot_count_;
  u.chunks = index_.size();
  return u;
}

}  // namespace ferry
