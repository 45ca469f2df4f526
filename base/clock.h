// clock.h: the clocks ferry reads, in one place. Wall time (Unix epoch) is
// for what is recorded and shown: manifests, the journal, log lines, RPO.
// Monotonic time is for durations, deadlines and rates, which must not jump
// when an operator or NTP sets the wall clock. CPU time is for the cost
// figures the bench reports.
#pragma once

#include <cstdint>

namespace ferry {

inline constexpr std::int64_t kNanosPerSecond = 1'000'000'000;
inline constexpr std::int64_t kNanosPerMilli = 1'000'000;

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
