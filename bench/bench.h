// bench.h: ferry-bench's subcommand registry and shared reporting helpers.
// Each bench/<name>_bench.cc registers one subcommand with FERRY_BENCH and
// always measures its baseline in the same run, reporting ratios.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "base/clock.h"

namespace ferry::bench {

using BenchMain = std::function<int(const std::vector<std::string>& args)>;

struct Registrar {
  Registrar(const char* name, const char* summary, BenchMain fn);
};

#define FERRY_BENCH(name, summary)                                                  \
  static int bench_##name(const std::vector<std::string>& args);                    \
  static ::ferry::bench::Registrar registrar_##name(#name, summary, &bench_##name); \
  static int bench_##name(const std::vector<std::string>& args)

// Clocks: base/clock.h (mono_seconds, process_cpu_seconds). Single-core
// throughput is measured with thread_cpu_seconds: on a shared machine, time
// the thread spends descheduled is not the code's cost (baselines are
// measured the same way).
using ::ferry::mono_seconds;
using ::ferry::process_cpu_seconds;
using ::ferry::thread_cpu_seconds;

// Runs fn repeatedly for at least min_seconds of this thread's CPU time;
// returns CPU seconds per run.
template <typename Fn>
double cpu_seconds_per_run(double min_seconds, Fn&& fn) {
  int runs = 0;
  const double start = thread_cpu_seconds();
  double elapsed = 0;
  do {
    fn();
    ++runs;
    elapsed = thread_cpu_seconds() - start;
  } while (elapsed < min_seconds);
  return elapsed / runs;
}

// A Python function for the scripts that time ZipNN, prepended to them:
// per_call(fn, make_args) calls fn(*make_args()) for at least min_s CPU
// seconds (a global the script sets) and at least three times, making each
// call's arguments outside the clock (ZipNN's compress changes its input),
// and returns CPU seconds per call. The first call on a file, which runs
// 1.5-3x slower, is the caller's.
inline constexpr const char* kZipnnPerCallPy = R"(import sys, time
def per_call(fn, make_args):
    runs, total = 0, 0.0
    while total < min_s or runs < 3:
        args = make_args()
        t = time.process_time(); fn(*args); total += time.process_time() - t; runs += 1
    return total / runs
)";

}  // namespace ferry::bench
