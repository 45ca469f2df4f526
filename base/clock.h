// clock.h: the clocks ferry reads, in one place. Wall time (Unix epoch) is
// for what is recorded and shown: manifests, the journal, log lines, RPO.
// Monotonic time is for durations, deadlines and rates, which must not jump
// when an operator or NTP sets the wall clock. CPU time is for the cost
// figures the bench reports.
#pragma once

#include <cstdint>
#include <limits>

namespace ferry {

inline constexpr std::int64_t kNanosPerSecond = 1'000'000'000;
inline constexpr std::int64_t kNanosPerMilli = 1'000'000;

// Seconds as nanoseconds, and a sum of nanoseconds, saturated at the int64
// range instead of overflowing: durations come from flags, the network and
// file metadata, and may be any size.
inline constexpr std::int64_t kMinNs = std::numeric_limits<std::int64_t>::min();
inline constexpr std::int64_t kMaxNs = std::numeric_limits<std::int64_t>::max();
constexpr std::int64_t seconds_to_ns_saturated(std::int64_t seconds) {
  std::int64_t ns = 0;
  if (__builtin_mul_overflow(seconds, kNanosPerSecond, &ns)) return seconds < 0 ? kMinNs : kMaxNs;
  return ns;
}
constexpr std::int64_t add_ns_saturated(std::int64_t a, std::int64_t b) {
  std::int64_t sum = 0;
  if (__builtin_add_overflow(a, b, &sum)) return b < 0 ? kMinNs : kMaxNs;
  return sum;
}

// Wall clock, nanoseconds since the Unix epoch.
std::int64_t wall_ns();

// Monotonic clock since an arbitrary epoch.
std::int64_t mono_ns();
inline std::int64_t mono_ms() { return mono_ns() / kNanosPerMilli; }
inline double mono_seconds() { return static_cast<double>(mono_ns()) / 1e9; }

// CPU seconds (user + system) used so far by this process, and by the
// calling thread.
double process_cpu_seconds();
double thread_cpu_seconds();

}  // namespace ferry
