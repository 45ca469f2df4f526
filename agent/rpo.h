// rpo.h: the recovery point objective, computed without side effects so it
// can be tested on its own. For one job: rpo_seconds is how old the newest
// checkpoint committed at the DR site is (its own time, the directory's
// mtime at discovery); the forecast adds the time to drain the backlog at
// the current throughput. A warning is raised when the forecast passes the
// RPO target, or when the drain takes longer than the checkpoint interval
// (the backlog then grows without bound), and cleared only once nothing
// waits behind the push in flight and the RPO is back under the target.
// Before any push has finished the throughput is unknown: the forecast is
// then infinite, but only all targets being down (or the RPO itself past
// the target) raises the warning, so a fresh start does not cry wolf.
//
// A job that has never replicated anything has lost everything since its
// first checkpoint: its RPO counts from the oldest checkpoint waiting in the
// queue, else from the oldest checkpoint directory seen that never became
// complete (a missing marker, a half-written set), and is unknown (NaN,
// never 0) while no checkpoint was seen at all. A checkpoint directory
// stuck incomplete past the grace period raises the warning once the RPO
// passes the target, as a backlog does.
#pragma once

#include <cstdint>
#include <limits>
#include <optional>
#include <string>

namespace ferry::agent {

// Weight of the newest sample in the moving averages below.
inline constexpr double kThroughputEwmaWeight = 0.3;
inline constexpr double kIntervalEwmaWeight = 0.3;
// Checkpoints closer together than this are a burst (several written or
// found at once), not the training loop's interval; they are not learned.
inline constexpr double kMinLearnedIntervalS = 1.0;

struct RpoInputs {
  std::int64_t now_ns = 0;
  // Time of the newest checkpoint committed at the DR site, if any.
  std::optional<std::int64_t> newest_committed_ns;
  // Time of the oldest checkpoint still waiting (the exposure when nothing
  // was ever committed).
  std::optional<std::int64_t> oldest_pending_ns;
  // When the oldest checkpoint directory still not complete was first seen
  // (the exposure when nothing was committed or queued either).
  std::optional<std::int64_t> oldest_incomplete_ns;
  // Checkpoint directories not complete after the grace period, and what
  // the oldest of them waits for.
  std::uint64_t stuck_dirs = 0;
  std::string stuck_detail;
  std::uint64_t backlog_bytes = 0;    // queued and in flight
  std::uint64_t waiting_bytes = 0;    // of which queued (no push has them yet)
  double throughput_bytes_per_s = 0;  // 0: none measured yet
  bool any_target_up = true;
  double rpo_target_s = 3600;
  double checkpoint_interval_s = 0;  // 0: unknown
};

struct RpoForecast {
  double rpo_seconds = 0;           // NaN: unknown (no checkpoint seen yet)
  double drain_seconds = 0;         // infinity when it cannot drain
  double forecast_rpo_seconds = 0;  // infinity when it cannot drain
  bool breach_expected = false;     // this forecast alone says "warn"
  // Nothing waits behind the push in flight, no breach is expected and the
  // RPO is under target: what clears a raised warning. (A checkpoint always
  // being in flight is the steady state of an agent that keeps up.)
  bool healthy = true;
  std::string reason;  // why a warning is due, "" otherwise
};

RpoForecast forecast_rpo(const RpoInputs& in);

// The warning with hysteresis: raised by breach_expected, cleared by healthy.
class RpoWarning {
 public:
  enum class Change { kNone, kRaised, kCleared };
  Change update(const RpoForecast& f);
  bool active() const { return active_; }
  const std::string& text() const { return text_; }

 private:
  bool active_ = false;
  std::string text_;
};

// An exponentially weighted moving average of push throughput.
class ThroughputEstimate {
 public:
  void add(std::uint64_t bytes, double seconds);
  double bytes_per_second() const { return rate_; }

 private:
  double rate_ = 0;
};

// The interval between a job's checkpoints, learned from their times when
// not configured.
class IntervalEstimate {
 public:
  void observe(std::int64_t checkpoint_ns);
  double seconds() const { return interval_s_; }

 private:
  std::optional<std::int64_t> last_ns_;
  double interval_s_ = 0;
};

}  // namespace ferry::agent
