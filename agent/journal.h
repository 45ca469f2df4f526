// journal.h: the agent's durable write-ahead journal. Every state change of a
// replication job (submitted, started, committed, skipped, failed) is appended
// as one CRC-checked record and fdatasync'ed before the agent acts on it, so a
// restarted agent knows exactly which checkpoints are still owed to the DR
// site. A torn or damaged tail (a crash mid-append) is cut at open, keeping
// every whole record before it. Format: docs/FORMAT.md section 8.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "base/posix_file.h"
#include "base/status.h"

namespace ferry {

// File header: 8 magic bytes then a u32 version (docs/FORMAT.md 8.1).
inline constexpr char kJournalMagic[8] = {'F', 'E', 'R', 'R', 'Y', 'J', 'N', 'L'};
// Version 2 adds the delta base to records (JournalRecord::delta_*); a
// version 1 journal is read and its header rewritten to 2 at open.
inline constexpr std::uint32_t kJournalVersion = 2;
inline constexpr std::uint32_t kJournalVersionWithoutDelta = 1;
inline constexpr std::size_t kJournalHeaderBytes = 12;
// Each record: [u32 body length][u32 masked CRC32C of the body][body].
inline constexpr std::size_t kJournalRecordHeaderBytes = 8;
// A record body never exceeds this; a longer length field marks the record
// as damaged (and append refuses to write one).
inline constexpr std::size_t kMaxJournalRecordBytes = 64u << 10;
// Any one string field (job, path, snapshot, target, detail).
inline constexpr std::size_t kMaxJournalFieldBytes = 16u << 10;

enum class JobState : std::uint8_t {
  kSubmitted = 1,
  kStarted = 2,
  kCommitted = 3,
  kSkipped = 4,
  kFailed = 5,
};

std::string_view job_state_name(JobState s);

struct JournalRecord {
  std::uint64_t job_id = 0;
  JobState state = JobState::kSubmitted;
  std::int64_t time_ns = 0;     // wall clock (CLOCK_REALTIME) of the change
  std::string job;              // job name
  std::string path;             // checkpoint directory
  std::string snapshot;         // DR snapshot name, fixed at submit
  std::string target;           // kCommitted/kFailed: HOST:PORT
  std::int64_t created_ns = 0;  // manifest created time pinned at submit
  std::uint64_t step = 0;
  std::uint64_t logical_bytes = 0;
  std::string detail;  // free text: error, skip reason
  // The delta base the push of this snapshot chose at delta_target (a
  // restarted agent pushes it against the same base, so the snapshot's
  // manifest comes out the same and frames already sent are not sent again).
  // delta_target empty: none chosen yet (a version 1 record).
  std::string delta_target;
  std::string delta_base_dir;       // PackOptions::delta_from; empty: a key snapshot
  std::string delta_base_snapshot;  // SnapshotOrigin::base_snapshot
  std::uint8_t delta_kind = 0;      // SnapshotOrigin::kind (codec/manifest.h)
  std::uint8_t delta_chain_depth = 0;

  bool operator==(const JournalRecord&) const = default;
};

// The body bytes of one record (no length/CRC header); exposed for tests and
// the fuzz target. A record without a delta target is encoded as in version
// 1; decode reads both, and refuses other trailing bytes, unknown states and
// over-long fields with Corruption.
std::vector<std::byte> encode_journal_record(const JournalRecord& r);
Result<JournalRecord> decode_journal_record(std::span<const std::byte> body);

class Journal {
 public:
  // Opens (creating it, and its header, when absent) the journal at `path`.
  // Reads every record; a torn or CRC-bad tail is cut (truncated) and
  // reported by recovered_notice(). A file whose header is not a ferry
  // journal is refused with Corruption rather than overwritten.
  static Result<std::unique_ptr<Journal>> open(const std::filesystem::path& path);

  Journal(const Journal&) = delete;
  Journal& operator=(const Journal&) = delete;

  // Every valid record found at open, in file order.
  const std::vector<JournalRecord>& recovered() const { return recovered_; }
  // "" or e.g. "journal /x/journal: cut 37 torn bytes at offset 4096 (...)".
  std::string recovered_notice() const { return notice_; }

  // Appends one record; durable (fdatasync) when it returns OK. Thread-safe.
  // A record whose body exceeds kMaxJournalRecordBytes is refused.
  Status append(const JournalRecord& r);

  // Atomically replaces the journal with exactly `live` (temp file + fsync +
  // rename + directory fsync); a crash at any point leaves either the old or
  // the new journal whole. Thread-safe with append.
  Status compact(std::span<const JournalRecord> live);

  // 1 + the largest job_id recovered or appended (1 for an empty journal).
  std::uint64_t next_job_id() const;

  // Called with the seconds each append's fdatasync took (the agent's fsync
  // latency histogram). REQUIRES: set before appends run on other threads.
  void set_fsync_observer(std::function<void(double seconds)> observer) { on_fsync_ = std::move(observer); }

  const std::filesystem::path& path() const { return path_; }
  // Bytes in the file now (header included).
  std::uint64_t size_bytes() const;

 private:
  // What open() found after the header: the whole records, the largest job
  // id among them, where the last whole record ends, and why the scan
  // stopped before the end of the file ("" when it did not).
  struct ScanResult {
    std::vector<JournalRecord> records;
    std::uint64_t max_id = 0;
    std::uint64_t end = 0;
    std::string why;
  };

  Journal() = default;
  // The steps of open(): the whole file (bounded by its size limit); the
  // header of a new (or torn-header) journal; the check of an existing
  // header; the record scan; the cut of a torn tail at `end`.
  Result<std::vector<std::byte>> read_whole() const;
  Status write_header(std::span<const std::byte> existing);
  static Status check_header(std::span<const std::byte> data, const std::filesystem::path& path);
  static ScanResult scan_records(std::span<const std::byte> data);
  Status cut_tail(std::uint64_t size, std::uint64_t end, const std::string& why);

  std::filesystem::path path_;
  mutable std::mutex mu_;
  UniqueFd fd_;
  std::uint64_t end_ = 0;  // append offset
  std::uint64_t max_id_ = 0;
  Status broken_;  // set when an fdatasync failed; appends then refuse
  std::vector<JournalRecord> recovered_;
  std::string notice_;
  std::function<void(double)> on_fsync_;
};

// The fold: each job's latest record, and every target where it committed
// (a fan-out job commits at several).
struct JobStatus {
  JournalRecord latest;
  std::vector<std::string> committed_targets;
};
std::map<std::uint64_t, JobStatus> fold_journal(std::span<const JournalRecord> records);

}  // namespace ferry
