// s3_namespace_spool.cc: the S3 namespace's side of a gateway's spool
// (s3_spool.h, docs/FORMAT.md 9.3): sync() writes the open pack's new
// records to the spool instead of sealing it, and opening a namespace
// uploads what an earlier process left there. See s3_namespace.h.
#include <algorithm>

#include "base/clock.h"
#include "store/pack_file.h"
#include "store/s3_namespace.h"
#include "store/store_limits.h"

namespace ferry {

Status S3Namespace::upload_leftovers() {
  std::vector<std::string> notes;
  ASSIGN_OR_RETURN(S3Spool::Leftovers left, spool_->leftovers(notes));
  for (const std::string& n : notes) log("spool: " + n);
  if (left.files.empty()) return Status::ok();
  std::size_t chunks = 0;
  for (std::size_t i = 0; i < left.ids.size(); ++i) {
    std::shared_ptr<Upload> full;
    {
      std::lock_guard lock(mu_);
      if (durable_locked(left.ids[i]) || pending_.count(left.ids[i]) != 0) continue;
      const std::uint64_t offset = open_.add_record(left.records[i], left.ids[i]);
      pending_[left.ids[i]] = Pending{
          open_seq_, offset, static_cast<std::uint32_t>(left.records[i].size() - kRecordOverheadBytes)};
      pending_bytes_ += left.records[i].size();
      ++chunks;
      if (open_.bytes() >= options_.object_pack_target_bytes) full = seal_locked();
    }
    left.records[i] = {};
    if (full) upload(full);
  }
  RETURN_IF_ERROR(flush());
  RETURN_IF_ERROR(spool_->remove_files(left.files));
  log("spool: uploaded " + std::to_string(chunks) + " chunks an earlier run left in " +
      std::to_string(left.files.size()) + " files of " + spool_->dir().string());
  return Status::ok();
}

Status S3Namespace::sync() {
  if (!spool_) return flush();
  std::lock_guard one(spool_mu_);
  std::vector<std::shared_ptr<Upload>> waited;
  std::vector<std::byte> tail;
  std::uint64_t seq = 0, from = 0;
  bool roll = false;
  {
    std::lock_guard lock(mu_);
    // Chunks of a pack sealed (full) before its last records were spooled
    // are durable once it is in the bucket.
    for (const auto& [s, up] : uploads_) {
      if (!up->spooled) waited.push_back(up);
    }
    roll = spool_first_ms_ != 0 && mono_ms() - spool_first_ms_ >= options_.object_spool_max_age_ms;
    if (!roll) {
      seq = open_seq_;
      from = spooled_bytes_;
      const auto records = open_.records_from(from);
      tail.assign(records.begin(), records.end());
    }
  }
  // The open pack has waited long enough: to the bucket, full or not.
  if (roll) return flush();
  if (!tail.empty()) {
    Status st = spool_->write(seq, from, tail);
    if (!st) return st.with_context("namespace " + name_ + ": sync into the spool");
    bool uploaded = false;
    {
      std::lock_guard lock(mu_);
      // Sealed meanwhile (a put filled it): its file keeps these records
      // until it is in the bucket, so they are durable either way.
      if (open_seq_ == seq) {
        spooled_bytes_ = std::max(spooled_bytes_, from + tail.size());
        if (spool_first_ms_ == 0) spool_first_ms_ = mono_ms();
      } else {
        // Or already in the bucket, its file removed before this write made
        // it again: remove it once more, unless a pack on its way (or the
        // open one, after a failed upload) still relies on it.
        auto carries = [seq](const std::vector<std::uint64_t>& files) {
          return std::find(files.begin(), files.end(), seq) != files.end();
        };
        uploaded = !carries(carried_spool_files_) &&
                   std::none_of(uploads_.begin(), uploads_.end(),
                                [&](const auto& u) { return carries(u.second->spool_files); });
      }
    }
    if (uploaded) {
      if (Status removed = spool_->remove(seq); !removed) log("spool: " + removed.to_string());
    }
  }
  return wait_uploads(waited);
}

}  // namespace ferry
