// delta_chain.cc: see delta_chain.h.
#include "codec/delta_chain.h"

#include <cstdio>
#include <vector>

#include "codec/limits.h"

namespace ferry {
namespace {

std::string normal(const std::filesystem::path& p) { return p.lexically_normal().string(); }

std::string percent(double f) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f%%", f * 100.0);
  return buf;
}

DeltaChoice key_snapshot(const ChainQuery& q, std::string reason) {
  DeltaChoice c;
  c.origin.source_dir = normal(q.source_dir);
  c.origin.kind = SnapshotKind::kKey;
  c.reason = "key snapshot: " + std::move(reason);
  return c;
}

DeltaChoice delta_against(const ChainQuery& q, const std::filesystem::path& base_dir, std::string base_name,
                          int depth, std::string reason) {
  DeltaChoice c;
  c.base_dir = base_dir;
  c.origin.source_dir = normal(q.source_dir);
  c.origin.kind = SnapshotKind::kDelta;
  c.origin.base_snapshot = std::move(base_name);
  c.origin.chain_depth = static_cast<std::uint8_t>(depth);
  c.reason = std::move(reason);
  return c;
}

int depth_of(const ChainSnapshot& s) {
  return s.origin.kind == SnapshotKind::kDelta ? s.origin.chain_depth : 0;
}

// Reads the job's snapshots (this host, this job) newest first, at most
// kMaxDeltaBaseLookups of all snapshots read.
class JobWalk {
 public:
  JobWalk(const ChainQuery& q, const NextSnapshot& next) : q_(q), next_(next) {}

  // The job's next snapshot; nullopt at the end, past the lookup limit or on
  // an error (error() then says which).
  std::optional<ChainSnapshot> step() {
    while (read_ < kMaxDeltaBaseLookups) {
      ++read_;
      auto s = next_();
      if (!s) {
        error_ = s.status().to_string();
        return std::nullopt;
      }
      if (!s->has_value()) return std::nullopt;
      if ((*s)->host == q_.host && (*s)->job == q_.job) return std::move(**s);
    }
    limited_ = true;
    return std::nullopt;
  }
  // Why the walk found nothing more, for a reason line.
  std::string end_reason() const {
    if (!error_.empty()) return "could not list the target's snapshots: " + error_;
    if (limited_)
      return "none among the target's newest " + std::to_string(kMaxDeltaBaseLookups) + " snapshots";
    return "none at the target";
  }
  bool failed() const { return !error_.empty(); }

  // True when `s` can serve as a base: its directory is recorded, is not the
  // one being pushed (whose old bytes are gone) and is still on this host.
  bool usable(const ChainSnapshot& s) const {
    if (s.origin.source_dir.empty() || normal(s.origin.source_dir) == normal(q_.source_dir)) return false;
    return q_.dir_present ? q_.dir_present(s.origin.source_dir)
                          : std::filesystem::is_directory(s.origin.source_dir);
  }

 private:
  const ChainQuery& q_;
  const NextSnapshot& next_;
  int read_ = 0;
  bool limited_ = false;
  std::string error_;
};

// --delta_from: the snapshot of that directory names the base and depth.
DeltaChoice explicit_base(const ChainQuery& q, JobWalk& walk) {
  const std::string want = normal(q.delta_from);
  while (auto s = walk.step()) {
    if (s->origin.source_dir.empty() || normal(s->origin.source_dir) != want) continue;
    const int depth = depth_of(*s) + 1;
    if (depth > kMaxDeltaChainSnapshots) {
      return key_snapshot(q, "the chain through " + s->name + " would be " + std::to_string(depth) +
                                 " snapshots deep (at most " + std::to_string(kMaxDeltaChainSnapshots) + ")");
    }
    return delta_against(q, q.delta_from, s->name, depth, "delta against " + s->name + " (--delta_from)");
  }
  return delta_against(q, q.delta_from, "", 1,
                       "delta against " + want + " (--delta_from; no snapshot of it found at the target)");
}

}  // namespace

std::string_view delta_mode_name(DeltaMode m) {
  switch (m) {
    case DeltaMode::kOff:
      return "off";
    case DeltaMode::kKey:
      return "key";
    case DeltaMode::kPrevious:
      return "previous";
  }
  return "?";
}

Result<DeltaMode> parse_delta_mode(std::string_view s) {
  for (DeltaMode m : {DeltaMode::kOff, DeltaMode::kKey, DeltaMode::kPrevious}) {
    if (s == delta_mode_name(m)) return m;
  }
  return Status::invalid_argument("delta mode \"" + std::string(s) + "\" is not off, key or previous");
}

ChainSnapshot chain_snapshot_of(std::string name, const Manifest& m) {
  ChainSnapshot s;
  s.name = std::move(name);
  s.host = m.host;
  s.job = m.job;
  s.origin = m.origin;
  s.frame_bytes = m.frame_bytes();
  return s;
}

Status validate_delta_policy(const DeltaPolicy& p) {
  if (p.key_every < 1) return Status::invalid_argument("key_every must be at least 1");
  if (!(p.min_gain >= 0.0 && p.min_gain <= 1.0))
    return Status::invalid_argument("delta_min_gain must be within 0..1");
  return Status::ok();
}

DeltaChoice choose_delta_base(const DeltaPolicy& policy, const ChainQuery& query, const NextSnapshot& next) {
  JobWalk walk(query, next);
  if (!query.delta_from.empty()) return explicit_base(query, walk);
  if (policy.mode == DeltaMode::kOff) return key_snapshot(query, "deltas are off");
  const bool previous = policy.mode == DeltaMode::kPrevious;
  // Newest first: the job's newest snapshot, its newest key, how many delta
  // snapshots came after that key, and (previous) the newest usable base.
  std::optional<ChainSnapshot> newest, key, base;
  std::uint32_t since_key = 0;
  while (!key) {
    std::optional<ChainSnapshot> s = walk.step();
    if (!s) break;
    if (!newest) newest = *s;
    if (previous && !base && walk.usable(*s)) base = *s;
    if (s->origin.kind == SnapshotKind::kDelta) {
      ++since_key;
    } else {
      key = std::move(s);
    }
  }
  if (!key) {
    return key_snapshot(
        query, "no key snapshot of job \"" + query.job + "\" from " + query.host + ": " + walk.end_reason());
  }
  if (since_key + 1 >= policy.key_every) {
    return key_snapshot(query, "snapshot " + std::to_string(since_key + 1) + " after key " + key->name +
                                   " (--key_every=" + std::to_string(policy.key_every) + ")");
  }
  if (newest->origin.kind == SnapshotKind::kDelta && key->frame_bytes > 0) {
    const double gain =
        1.0 - static_cast<double>(newest->frame_bytes) / static_cast<double>(key->frame_bytes);
    if (gain < policy.min_gain) {
      return key_snapshot(query, newest->name + " saved " + percent(gain) + " of key " + key->name +
                                     "'s frame bytes (--delta_min_gain=" + percent(policy.min_gain) + ")");
    }
  }
  if (!previous) {
    if (!walk.usable(*key)) {
      return key_snapshot(query,
                          "the directory of key " + key->name + " (" +
                              (key->origin.source_dir.empty() ? "not recorded" : key->origin.source_dir) +
                              ") is not on this host");
    }
    return delta_against(query, key->origin.source_dir, key->name, 1, "delta against key " + key->name);
  }
  if (!base)
    return key_snapshot(query, "no snapshot of the chain since key " + key->name + " is on this host");
  const int depth = depth_of(*base) + 1;
  if (depth > kMaxDeltaChainSnapshots) {
    return key_snapshot(query, "a delta against " + base->name + " would be " + std::to_string(depth) +
                                   " snapshots deep (at most " + std::to_string(kMaxDeltaChainSnapshots) +
                                   ")");
  }
  return delta_against(query, base->origin.source_dir, base->name, depth,
                       "delta against " + base->name + " (chain depth " + std::to_string(depth) + ")");
}

}  // namespace ferry
