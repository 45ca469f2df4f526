// journal.cc: see journal.h. Records are appended with one pwrite at the
// known end of the file and fdatasync'ed; open() scans from the header and
// cuts the file at the first record that is torn or fails its CRC, so the
// journal always ends on a whole record.
#include "agent/journal.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <utility>

#include "base/crc32c.h"
#include "codec/byte_writer.h"

namespace ferry {
namespace {

// The whole journal is read at open; compaction keeps it far below this.
constexpr std::uint64_t kMaxJournalFileBytes = 1ull << 30;
// Where compact() writes the replacement before renaming it into place; a
// leftover from a crash is removed at open (the journal itself is whole).
constexpr const char* kCompactSuffix = ".compact-tmp";

std::uint32_t get_u32(const std::byte* p) {
  std::uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | std::to_integer<std::uint32_t>(p[i]);
  return v;
}

// Reads the body fields in order; every read checks the remaining length.
class BodyReader {
 public:
  explicit BodyReader(std::span<const std::byte> b) : b_(b) {}
  bool ok() const { return ok_; }
  bool at_end() const { return pos_ == b_.size(); }
  std::uint64_t le(int n) {
    if (!ok_ || b_.size() - pos_ < static_cast<std::size_t>(n)) {
      ok_ = false;
      return 0;
    }
    std::uint64_t v = 0;
    for (int i = n - 1; i >= 0; --i) v = (v << 8) | std::to_integer<std::uint64_t>(b_[pos_ + i]);
    pos_ += n;
    return v;
  }
  std::string str16() {
    std::size_t n = static_cast<std::size_t>(le(2));
    if (!ok_ || n > kMaxJournalFieldBytes || b_.size() - pos_ < n) {
      ok_ = false;
      return {};
    }
    std::string s(reinterpret_cast<const char*>(b_.data() + pos_), n);
    pos_ += n;
    return s;
  }

 private:
  std::span<const std::byte> b_;
  std::size_t pos_ = 0;
  bool ok_ = true;
};

std::vector<std::byte> file_header() {
  std::vector<std::byte> h;
  ByteWriter w(h);
  w.bytes(kJournalMagic, sizeof(kJournalMagic));
  w.u32(kJournalVersion);
  return h;
}

// [u32 length][u32 masked crc][body] for one record.
Result<std::vector<std::byte>> frame_record(const JournalRecord& r) {
  for (const std::string* f : {&r.job, &r.path, &r.snapshot, &r.target, &r.detail, &r.delta_target,
                               &r.delta_base_dir, &r.delta_base_snapshot}) {
    if (f->size() > kMaxJournalFieldBytes) {
      return Status::invalid_argument("journal record for job id " + std::to_string(r.job_id) +
                                      ": a field of " + std::to_string(f->size()) +
                                      " bytes exceeds the limit of " + std::to_string(kMaxJournalFieldBytes));
    }
  }
  std::vector<std::byte> body = encode_journal_record(r);
  if (body.size() > kMaxJournalRecordBytes) {
    return Status::invalid_argument("journal record for job id " + std::to_string(r.job_id) + " is " +
                                    std::to_string(body.size()) + " bytes, over the limit of " +
                                    std::to_string(kMaxJournalRecordBytes));
  }
  std::vector<std::byte> out;
  out.reserve(kJournalRecordHeaderBytes + body.size());
  ByteWriter w(out);
  w.u32(static_cast<std::uint32_t>(body.size()));
  w.u32(mask_crc(crc32c(body)));
  w.raw(body);
  return out;
}

Status fdatasync_fd(int fd, const std::filesystem::path& path) {
  while (::fdatasync(fd) != 0) {
    if (errno != EINTR) return Status::from_errno(errno, "fdatasync " + path.string());
  }
  return Status::ok();
}

// An exclusive advisory lock: two agents on one state directory would
// interleave records and each believe it owns every job.
Status lock_fd(int fd, const std::filesystem::path& path) {
  while (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno == EINTR) continue;
    if (errno == EWOULDBLOCK) {
      return Status::unavailable("journal " + path.string() +
                                 " is locked by another process (is another ferry-agent using "
                                 "this state directory?)");
    }
    return Status::from_errno(errno, "flock " + path.string());
  }
  return Status::ok();
}

}  // namespace

std::string_view job_state_name(JobState s) {
  switch (s) {
    case JobState::kSubmitted:
      return "submitted";
    case JobState::kStarted:
      return "started";
    case JobState::kCommitted:
      return "committed";
    case JobState::kSkipped:
      return "skipped";
    case JobState::kFailed:
      return "failed";
  }
  return "unknown";
}

std::vector<std::byte> encode_journal_record(const JournalRecord& r) {
  std::vector<std::byte> b;
  ByteWriter w(b);
  auto str16 = [&w](const std::string& s) {
    // Longer fields are refused before encoding (frame_record); clamping
    // here only keeps the prefix honest for direct callers.
    w.str16(std::string_view(s).substr(0, std::min<std::size_t>(s.size(), 0xffff)));
  };
  w.u64(r.job_id);
  w.u8(static_cast<std::uint8_t>(r.state));
  w.i64(r.time_ns);
  str16(r.job);
  str16(r.path);
  str16(r.snapshot);
  str16(r.target);
  w.i64(r.created_ns);
  w.u64(r.step);
  w.u64(r.logical_bytes);
  str16(r.detail);
  if (!r.delta_target.empty()) {
    str16(r.delta_target);
    str16(r.delta_base_dir);
    str16(r.delta_base_snapshot);
    w.u8(r.delta_kind);
    w.u8(r.delta_chain_depth);
  }
  return b;
}

Result<JournalRecord> decode_journal_record(std::span<const std::byte> body) {
  BodyReader in(body);
  JournalRecord r;
  r.job_id = in.le(8);
  const auto state = static_cast<std::uint8_t>(in.le(1));
  r.time_ns = static_cast<std::int64_t>(in.le(8));
  r.job = in.str16();
  r.path = in.str16();
  r.snapshot = in.str16();
  r.target = in.str16();
  r.created_ns = static_cast<std::int64_t>(in.le(8));
  r.step = in.le(8);
  r.logical_bytes = in.le(8);
  r.detail = in.str16();
  if (in.ok() && !in.at_end()) {  // version 2: the delta base
    r.delta_target = in.str16();
    r.delta_base_dir = in.str16();
    r.delta_base_snapshot = in.str16();
    r.delta_kind = static_cast<std::uint8_t>(in.le(1));
    r.delta_chain_depth = static_cast<std::uint8_t>(in.le(1));
    if (in.ok() && (r.delta_target.empty() || r.delta_kind > 2))
      return Status::corruption("journal record has a delta base without a target or of unknown kind");
  }
  if (!in.ok()) return Status::corruption("journal record body is truncated or has an over-long field");
  if (!in.at_end()) return Status::corruption("journal record body has trailing bytes");
  if (state < static_cast<std::uint8_t>(JobState::kSubmitted) ||
      state > static_cast<std::uint8_t>(JobState::kFailed)) {
    return Status::corruption("journal record has unknown job state " + std::to_string(state));
  }
  r.state = static_cast<JobState>(state);
  return r;
}

Result<std::unique_ptr<Journal>> Journal::open(const std::filesystem::path& path) {
  std::unique_ptr<Journal> j(new Journal());
  j->path_ = path;
  ASSIGN_OR_RETURN(j->fd_, open_fd(path, O_RDWR | O_CREAT, 0600));
  RETURN_IF_ERROR(lock_fd(j->fd_.get(), path));
  // Only the lock holder may remove what a crashed compaction left: another
  // agent's compaction in progress is not ours to touch.
  std::error_code ec;
  std::filesystem::remove(path.string() + kCompactSuffix, ec);
  ASSIGN_OR_RETURN(std::vector<std::byte> data, j->read_whole());
  if (data.size() < kJournalHeaderBytes) {
    RETURN_IF_ERROR(j->write_header(data));
    return j;
  }
  RETURN_IF_ERROR(check_header(data, path));
  if (get_u32(data.data() + sizeof(kJournalMagic)) != kJournalVersion) {
    // Version 1: its records read as they are; the header says 2 from now on,
    // so an agent from before (which would take a version 2 record for a
    // torn one and cut it) refuses the journal instead.
    const std::vector<std::byte> header = file_header();
    RETURN_IF_ERROR(pwrite_all(j->fd_.get(), header, 0, path));
    RETURN_IF_ERROR(fsync_fd(j->fd_.get(), path));
    j->notice_ = "journal " + path.string() + ": version 1 read and its header rewritten to version 2";
  }
  ScanResult scan = scan_records(data);
  j->recovered_ = std::move(scan.records);
  j->max_id_ = scan.max_id;
  if (scan.end < data.size()) RETURN_IF_ERROR(j->cut_tail(data.size(), scan.end, scan.why));
  j->end_ = scan.end;
  return j;
}

Result<std::vector<std::byte>> Journal::read_whole() const {
  struct stat st {};
  if (::fstat(fd_.get(), &st) != 0) return Status::from_errno(errno, "fstat " + path_.string());
  if (!S_ISREG(st.st_mode))
    return Status::invalid_argument("journal " + path_.string() + " is not a regular file");
  const auto size = static_cast<std::uint64_t>(st.st_size);
  if (size > kMaxJournalFileBytes) {
    return Status::exhausted("journal " + path_.string() + " is " + std::to_string(size) +
                             " bytes, over the limit of " + std::to_string(kMaxJournalFileBytes));
  }
  std::vector<std::byte> data(size);
  RETURN_IF_ERROR(pread_exact(fd_.get(), data, 0, path_));
  return data;
}

Status Journal::write_header(std::span<const std::byte> existing) {
  // Empty, or a crash while the header of a new journal was written: only
  // a prefix of our own header may be replaced; anything else is not ours.
  const std::vector<std::byte> header = file_header();
  if (!std::equal(existing.begin(), existing.end(), header.begin())) {
    return Status::corruption("journal " + path_.string() + ": not a ferry journal (bad magic)");
  }
  RETURN_IF_ERROR(pwrite_all(fd_.get(), header, 0, path_));
  RETURN_IF_ERROR(fsync_fd(fd_.get(), path_));
  RETURN_IF_ERROR(fsync_dir(path_.parent_path().empty() ? "." : path_.parent_path()));
  if (!existing.empty()) {
    notice_ = "journal " + path_.string() + ": completed a torn header of " +
              std::to_string(existing.size()) + " bytes";
  }
  end_ = kJournalHeaderBytes;
  return Status::ok();
}

Status Journal::check_header(std::span<const std::byte> data, const std::filesystem::path& path) {
  if (std::memcmp(data.data(), kJournalMagic, sizeof(kJournalMagic)) != 0) {
    return Status::corruption("journal " + path.string() + ": not a ferry journal (bad magic)");
  }
  const std::uint32_t version = get_u32(data.data() + sizeof(kJournalMagic));
  if (version != kJournalVersion && version != kJournalVersionWithoutDelta) {
    return Status::unsupported("journal " + path.string() + ": version " + std::to_string(version) +
                               " (this build reads versions " + std::to_string(kJournalVersionWithoutDelta) +
                               " and " + std::to_string(kJournalVersion) + ")");
  }
  return Status::ok();
}

Journal::ScanResult Journal::scan_records(std::span<const std::byte> data) {
  ScanResult out;
  const std::uint64_t size = data.size();
  std::uint64_t off = kJournalHeaderBytes;
  while (off < size) {
    const std::uint64_t left = size - off;
    if (left < kJournalRecordHeaderBytes) {
      out.why = "torn record header";
      break;
    }
    const std::uint32_t len = get_u32(data.data() + off);
    const std::uint32_t crc = unmask_crc(get_u32(data.data() + off + 4));
    if (len > kMaxJournalRecordBytes) {
      out.why = "record length " + std::to_string(len) + " over the limit";
      break;
    }
    if (left - kJournalRecordHeaderBytes < len) {
      out.why = "torn record body";
      break;
    }
    std::span<const std::byte> body(data.data() + off + kJournalRecordHeaderBytes, len);
    if (crc32c(body) != crc) {
      out.why = "record CRC mismatch";
      break;
    }
    auto rec = decode_journal_record(body);
    if (!rec.is_ok()) {
      out.why = rec.status().message();
      break;
    }
    out.max_id = std::max(out.max_id, rec->job_id);
    out.records.push_back(std::move(rec).value());
    off += kJournalRecordHeaderBytes + len;
  }
  out.end = off;
  return out;
}

Status Journal::cut_tail(std::uint64_t size, std::uint64_t end, const std::string& why) {
  // Records are appended in order and each is durable before the next is
  // written, so everything from the first bad one on is the tail of a
  // crash (or damage): cut it, keep every record before it.
  if (::ftruncate(fd_.get(), static_cast<off_t>(end)) != 0) {
    return Status::from_errno(errno, "truncate journal " + path_.string());
  }
  RETURN_IF_ERROR(fsync_fd(fd_.get(), path_));
  notice_ = "journal " + path_.string() + ": cut " + std::to_string(size - end) + " torn bytes at offset " +
            std::to_string(end) + " (" + why + "; " + std::to_string(recovered_.size()) + " records kept)";
  return Status::ok();
}

Status Journal::append(const JournalRecord& r) {
  ASSIGN_OR_RETURN(std::vector<std::byte> rec, frame_record(r));
  std::lock_guard lock(mu_);
  if (!broken_.is_ok()) return broken_;
  // A failed write leaves end_ where it was, so the next append overwrites
  // the partial bytes; a failed fdatasync leaves the page cache in an
  // unknown state, so the journal refuses further appends instead.
  RETURN_IF_ERROR(pwrite_all(fd_.get(), rec, end_, path_));
  const auto t0 = std::chrono::steady_clock::now();
  Status synced = fdatasync_fd(fd_.get(), path_);
  if (on_fsync_) on_fsync_(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  if (Status st = std::move(synced); !st.is_ok()) {
    broken_ = st.with_context("journal unusable until the agent restarts");
    return broken_;
  }
  end_ += rec.size();
  max_id_ = std::max(max_id_, r.job_id);
  return Status::ok();
}

Status Journal::compact(std::span<const JournalRecord> live) {
  std::vector<std::byte> out = file_header();
  for (const JournalRecord& r : live) {
    ASSIGN_OR_RETURN(std::vector<std::byte> rec, frame_record(r));
    out.insert(out.end(), rec.begin(), rec.end());
  }
  std::lock_guard lock(mu_);
  if (!broken_.is_ok()) return broken_;
  const std::filesystem::path temp = path_.string() + kCompactSuffix;
  ASSIGN_OR_RETURN(UniqueFd fd, open_fd(temp, O_RDWR | O_CREAT | O_TRUNC, 0600));
  // The replacement is locked before it takes the journal's name, so no
  // other process can slip in between rename and lock.
  RETURN_IF_ERROR(lock_fd(fd.get(), temp));
  Status st = pwrite_all(fd.get(), out, 0, temp);
  if (st.is_ok()) st = fsync_fd(fd.get(), temp);
  if (st.is_ok() && ::rename(temp.c_str(), path_.c_str()) != 0) {
    st = Status::from_errno(errno, "rename " + temp.string() + " to " + path_.string());
  }
  if (!st.is_ok()) {
    std::error_code ec;
    std::filesystem::remove(temp, ec);
    return st;  // the old journal is untouched and stays in use
  }
  // The new journal has its name; from here on appends go to it even if
  // the directory fsync fails (the rename is then merely not yet durable).
  fd_ = std::move(fd);
  end_ = out.size();
  for (const JournalRecord& r : live) max_id_ = std::max(max_id_, r.job_id);
  return fsync_dir(path_.parent_path().empty() ? "." : path_.parent_path());
}

std::uint64_t Journal::next_job_id() const {
  std::lock_guard lock(mu_);
  return max_id_ + 1;
}

std::uint64_t Journal::size_bytes() const {
  std::lock_guard lock(mu_);
  return end_;
}

std::map<std::uint64_t, JobStatus> fold_journal(std::span<const JournalRecord> records) {
  std::map<std::uint64_t, JobStatus> jobs;
  for (const JournalRecord& r : records) {
    JobStatus& s = jobs[r.job_id];
    s.latest = r;
    if (r.state == JobState::kCommitted && !r.target.empty() &&
        std::find(s.committed_targets.begin(), s.committed_targets.end(), r.target) ==
            s.committed_targets.end()) {
      s.committed_targets.push_back(r.target);
    }
  }
  return jobs;
}

}  // namespace ferry
