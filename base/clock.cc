// clock.cc: see clock.h.
#include "base/clock.h"

#include <sys/resource.h>
#include <time.h>

namespace ferry {
namespace {

std::int64_t read_ns(clockid_t clock) {
  timespec ts{};
  ::clock_gettime(clock, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * kNanosPerSecond + ts.tv_nsec;
}

}  // namespace

std::int64_t wall_ns() { return read_ns(CLOCK_REALTIME); }
std::int64_t mono_ns() { return read_ns(CLOCK_MONOTONIC); }

double process_cpu_seconds() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  auto secs = [](const timeval& t) { return static_cast<double>(t.tv_sec) + t.tv_usec / 1e6; };
  return secs(ru.ru_utime) + secs(ru.ru_stime);
}

double thread_cpu_seconds() { return static_cast<double>(read_ns(CLOCK_THREAD_CPUTIME_ID)) / 1e9; }

}  // namespace ferry
