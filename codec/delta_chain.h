// delta_chain.h: which earlier snapshot a push codes its delta frames
// against (docs/FORMAT.md 3.1 and 5, docs/OPERATIONS.md "Delta snapshots").
// The rule needs nothing but the target's snapshots of the job, newest
// first, and whether their source directories are still on this host:
//
//   --delta=key (default): against the job's newest key snapshot, so a
//     restore reads at most two frames per chunk (the delta and its base);
//   --delta=previous: against the job's newest snapshot whose directory is
//     still here, a chain at most kMaxDeltaChainSnapshots deep;
//   --delta=off: never.
//
// A key snapshot (no base) is pushed instead when there is no usable base,
// every key_every snapshots of the job, and when the newest delta snapshot
// saved less than min_gain of its key's frame bytes. The same function
// serves the sender (receiver targets), pushes into a bucket and the agent;
// the caller lists the snapshots (replication/delta_base_choice.h,
// store/store_push.cc).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "base/status.h"
#include "codec/manifest.h"

namespace ferry {

enum class DeltaMode : std::uint8_t { kOff = 0, kKey = 1, kPrevious = 2 };
std::string_view delta_mode_name(DeltaMode m);  // "off", "key", "previous"
// Parses "off", "key" or "previous"; InvalidArgument naming the value otherwise.
Result<DeltaMode> parse_delta_mode(std::string_view s);

// Defaults of `--key_every` and `--delta_min_gain` (docs/OPERATIONS.md).
inline constexpr std::uint32_t kDefaultKeyEvery = 10;
inline constexpr double kDefaultDeltaMinGain = 0.05;
// Snapshots of the target read (manifests fetched) while looking for a base;
// beyond this a key snapshot is pushed, so one push never reads a whole
// store's manifests.
inline constexpr int kMaxDeltaBaseLookups = 64;

struct DeltaPolicy {
  DeltaMode mode = DeltaMode::kKey;
  // A key snapshot every key_every snapshots of a job (1: every snapshot).
  std::uint32_t key_every = kDefaultKeyEvery;
  // A key when the newest delta snapshot saved less than this fraction of its
  // key snapshot's frame bytes (1 - delta frame bytes / key frame bytes).
  double min_gain = kDefaultDeltaMinGain;
};
// InvalidArgument unless key_every >= 1 and 0 <= min_gain <= 1.
Status validate_delta_policy(const DeltaPolicy& p);

// One snapshot at the target, as the chooser needs it (from its manifest).
struct ChainSnapshot {
  std::string name;
  std::string host;
  std::string job;
  SnapshotOrigin origin;
  std::uint64_t frame_bytes = 0;  // Manifest::frame_bytes
};

// The chooser's view of snapshot `name` with manifest `m`.
ChainSnapshot chain_snapshot_of(std::string name, const Manifest& m);

// What is pushed, and how to find it.
struct ChainQuery {
  std::string host;  // this machine's host name (the manifests' host)
  std::string job;
  std::filesystem::path source_dir;  // absolute: the directory being pushed
  // An explicit base directory (`--delta_from`): its snapshot is looked up
  // only to record its name and depth. Empty: chosen by the policy.
  std::filesystem::path delta_from;
  // Whether a snapshot's source directory is still on this host. Empty:
  // std::filesystem::is_directory.
  std::function<bool(const std::filesystem::path&)> dir_present;
};

// The target's snapshots, newest first, one per call; nullopt after the last.
using NextSnapshot = std::function<Result<std::optional<ChainSnapshot>>()>;

struct DeltaChoice {
  std::filesystem::path base_dir;  // PackOptions::delta_from; empty: a key snapshot
  // For the new manifest: source_dir, kind (kDelta or kKey; the packer makes
  // a delta without any delta chunk a key), base_snapshot, chain_depth.
  SnapshotOrigin origin;
  std::string reason;  // one line for logs: why this base, or why a key
  bool delta() const { return !base_dir.empty(); }
};

// Chooses the base of a push. Reads `next` only as far as needed (at most
// kMaxDeltaBaseLookups snapshots). Never fails: an error from `next` means a
// key snapshot, with the error in the reason.
DeltaChoice choose_delta_base(const DeltaPolicy& policy, const ChainQuery& query, const NextSnapshot& next);

}  // namespace ferry
