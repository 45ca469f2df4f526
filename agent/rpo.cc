// rpo.cc: the RPO forecast and its warning (see rpo.h).
#include "agent/rpo.h"

#include "base/human_size.h"

#include <cmath>
#include <cstdio>

namespace ferry::agent {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

std::string seconds_text(double s) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), s < 10 ? "%.1f s" : "%.0f s", s);
  return buf;
}

std::string rate_text(double bytes_per_s) {
  return format_bytes(static_cast<std::uint64_t>(bytes_per_s)) + "/s";
}

}  // namespace

RpoForecast forecast_rpo(const RpoInputs& in) {
  RpoForecast f;
  std::optional<std::int64_t> since = in.newest_committed_ns ? in.newest_committed_ns
                                      : in.oldest_pending_ns ? in.oldest_pending_ns
                                                             : in.oldest_incomplete_ns;
  f.rpo_seconds = since ? std::max(0.0, static_cast<double>(in.now_ns - *since) / 1e9) : kNaN;
  const bool rpo_known = !std::isnan(f.rpo_seconds);
  const bool can_drain = in.any_target_up && in.throughput_bytes_per_s > 0;
  if (in.backlog_bytes == 0) {
    f.drain_seconds = 0;
  } else if (!can_drain) {
    f.drain_seconds = kInf;
  } else {
    f.drain_seconds = static_cast<double>(in.backlog_bytes) / in.throughput_bytes_per_s;
  }
  f.forecast_rpo_seconds = f.rpo_seconds + f.drain_seconds;
  // No throughput measured yet with a target up: the drain time is unknown,
  // not proven endless.
  const bool drain_unknown = in.backlog_bytes > 0 && in.any_target_up && in.throughput_bytes_per_s <= 0;

  const std::string backlog = "backlog " + format_bytes(in.backlog_bytes);
  const std::string at =
      in.any_target_up ? " at " + rate_text(in.throughput_bytes_per_s) : " at 0 B/s (all targets down)";
  if (in.backlog_bytes > 0 && !drain_unknown && f.forecast_rpo_seconds > in.rpo_target_s) {
    f.breach_expected = true;
    f.reason = backlog + at + ": RPO " + seconds_text(in.rpo_target_s) + " will be breached";
    if (std::isfinite(f.forecast_rpo_seconds))
      f.reason += " (forecast " + seconds_text(f.forecast_rpo_seconds) + ")";
  } else if (in.backlog_bytes > 0 && !drain_unknown && in.checkpoint_interval_s > 0 &&
             f.drain_seconds > in.checkpoint_interval_s) {
    f.breach_expected = true;
    f.reason = backlog + at + " drains in " + seconds_text(f.drain_seconds) +
               ", longer than the checkpoint interval " + seconds_text(in.checkpoint_interval_s) +
               ": the backlog grows without bound";
  } else if (in.backlog_bytes > 0 && f.rpo_seconds > in.rpo_target_s) {
    f.breach_expected = true;
    f.reason = "RPO " + seconds_text(f.rpo_seconds) + " exceeds the target " + seconds_text(in.rpo_target_s);
  } else if (in.stuck_dirs > 0 && f.rpo_seconds > in.rpo_target_s) {
    f.breach_expected = true;
    f.reason = "RPO " + seconds_text(f.rpo_seconds) + " exceeds the target " + seconds_text(in.rpo_target_s) +
               ": " + std::to_string(in.stuck_dirs) + " checkpoint director" +
               (in.stuck_dirs == 1 ? "y" : "ies") + " never became complete";
    if (!in.stuck_detail.empty()) f.reason += " (" + in.stuck_detail + ")";
  }
  f.healthy = in.waiting_bytes == 0 && !f.breach_expected && (!rpo_known || f.rpo_seconds < in.rpo_target_s);
  return f;
}

RpoWarning::Change RpoWarning::update(const RpoForecast& f) {
  if (!active_ && f.breach_expected) {
    active_ = true;
    text_ = f.reason;
    return Change::kRaised;
  }
  if (active_ && f.healthy) {
    active_ = false;
    text_.clear();
    return Change::kCleared;
  }
  // While raised, the text follows the latest reason (the numbers change).
  if (active_ && f.breach_expected) text_ = f.reason;
  return Change::kNone;
}

void ThroughputEstimate::add(std::uint64_t bytes, double seconds) {
  if (seconds <= 0 || bytes == 0) return;
  const double sample = static_cast<double>(bytes) / seconds;
  rate_ = rate_ == 0 ? sample : kThroughputEwmaWeight * sample + (1 - kThroughputEwmaWeight) * rate_;
}

void IntervalEstimate::observe(std::int64_t checkpoint_ns) {
  if (last_ns_ && checkpoint_ns > *last_ns_) {
    const double sample = static_cast<double>(checkpoint_ns - *last_ns_) / 1e9;
    if (sample < kMinLearnedIntervalS) return;  // keeps last_ns_: the burst's first one
    interval_s_ =
        interval_s_ == 0 ? sample : kIntervalEwmaWeight * sample + (1 - kIntervalEwmaWeight) * interval_s_;
  }
  if (!last_ns_ || checkpoint_ns > *last_ns_) last_ns_ = checkpoint_ns;
}

}  // namespace ferry::agent
