// watcher.h: finding complete checkpoints. A checkpoint is each immediate
// subdirectory of a watched root (root/step-100/...), except hidden ones
// (".step-100.tmp": staging by convention); it is taken only once
// complete (a DCP ".metadata", a safetensors index plus every shard it names,
// or a configured marker file; with marker_only, the marker alone), so a
// half-written checkpoint is never replicated. Watcher follows the roots
// with inotify and a periodic full rescan as a safety net, and keeps the
// directories it has seen that are not complete yet, so that one which
// never completes is reported (on_incomplete) instead of waiting silently.
// file_states/check_unchanged detect a file that changed while it was read.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/status.h"
#include "codec/packer.h"

namespace ferry {

struct WatchRoot {
  std::filesystem::path path;
  std::string job;  // "" = the root directory's name
};

enum class CheckpointKind : std::uint8_t { kDcp, kSafetensorsSet, kMarker, kSubmitted };

std::string_view checkpoint_kind_name(CheckpointKind k);

struct CheckpointCandidate {
  std::filesystem::path dir;
  std::string job;
  CheckpointKind kind = CheckpointKind::kDcp;
  std::uint64_t step = 0;
  std::int64_t mtime_ns = 0;  // the directory's mtime
};

// The last run of digits in `name` ("step-00300" -> 300); 0 if none (or if
// it overflows 64 bits).
std::uint64_t step_from_name(std::string_view name);

// What makes a directory a complete checkpoint. Any one signal suffices:
// the marker file (when named: the writer's own word that it is done), a
// DCP ".metadata", a whole safetensors set. With marker_only, the marker
// is the only signal (for trainers that add files after DCP's .metadata or
// the index, so that only their marker means done).
struct CompletionSignals {
  std::string marker_file;  // "" = no marker
  bool marker_only = false;
};

// Why a directory is not (yet) a complete checkpoint.
struct Incomplete {
  std::string reason;  // for a log line; "" when complete
  // Only still being written (a marker, index or shard not there or not
  // whole yet): routine, where a wrong index is worth a notice.
  bool still_writing = false;
};

// Whether `dir` holds a complete checkpoint, and of which kind: kMarker
// when the marker exists, else kDcp (a non-empty ".metadata"), else
// kSafetensorsSet (every "*.safetensors.index.json" parses and every shard
// its weight_map names exists with a header whose tensors fit the file).
// nullopt = not (yet) complete; when `why` is given it is set to what is
// missing (a bad index is "not complete", never an error). Errors only when
// `dir` itself cannot be read.
Result<std::optional<CheckpointKind>> checkpoint_complete(const std::filesystem::path& dir,
                                                          const CompletionSignals& signals,
                                                          Incomplete* why = nullptr);

// A checkpoint directory seen but not complete (yet).
struct IncompleteCheckpoint {
  std::filesystem::path dir;
  std::string job;
  std::string waiting_for;         // what checkpoint_complete says is missing
  std::int64_t first_seen_ns = 0;  // wall clock: the directory's mtime when first seen, or then
  double incomplete_for_s = 0;     // how long this watcher has seen it incomplete
};

struct WatcherOptions {
  std::vector<WatchRoot> roots;
  CompletionSignals completion;
  int rescan_interval_ms = 30'000;  // full rescan period (safety net)
  // A directory still not complete this long after it was first seen is
  // passed to on_incomplete (checked at each event and rescan, so within a
  // rescan interval after the grace).
  int incomplete_grace_ms = 600'000;
  // Called (from the watcher thread) with a line for each notable event: a
  // bad index, an inotify queue overflow, a watch that could not be added.
  std::function<void(const std::string&)> on_notice;
  // Called (from the watcher thread) for a directory past the grace period,
  // at most once per root until that root has no such directory left. It
  // returns whether it reported it; false (e.g. the directory was handed
  // over by `ferry submit`) lets the next one of the root be passed instead.
  std::function<bool(const IncompleteCheckpoint&)> on_incomplete;
};

class Watcher {
 public:
  // Validates the roots (each must be a readable directory), sets up inotify
  // and starts the watcher thread, which first scans every root. on_complete
  // is called from that thread once per newly complete checkpoint directory.
  static Result<std::unique_ptr<Watcher>> start(const WatcherOptions& options,
                                                std::function<void(const CheckpointCandidate&)> on_complete);
  ~Watcher();  // stops and joins the thread promptly
  Watcher(const Watcher&) = delete;
  Watcher& operator=(const Watcher&) = delete;

  // Asks the thread for a full rescan of every root now (asynchronous).
  void rescan_now();
  // Forgets that `dir` was reported, so it is reported again when (still or
  // again) complete at the next event or rescan.
  void forget(const std::filesystem::path& dir);
  // The directories seen and not complete now, oldest first (thread-safe).
  std::vector<IncompleteCheckpoint> incomplete() const;

  struct Impl;

 private:
  explicit Watcher(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Change detection for "a file that changes while it is read".
struct FileState {
  std::string rel_path;
  std::uint64_t size = 0;
  std::int64_t mtime_ns = 0;
  std::uint64_t inode = 0;
  std::uint64_t dev = 0;
  bool operator==(const FileState&) const = default;
};

// stat(2) of every source, in order; a missing file is NotFound naming it.
Result<std::vector<FileState>> file_states(std::span<const PackSource> sources);
// OK when both lists describe the same files unchanged; else Aborted with
// Detail::kSourceChanged, naming the first file that changed and what (size,
// mtime, inode, appeared, gone).
Status check_unchanged(std::span<const FileState> before, std::span<const FileState> after);

}  // namespace ferry
