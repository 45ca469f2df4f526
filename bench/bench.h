// bench.h: ferry-bench's subcommand registry and shared reporting helpers.
// Each bench/<name>_bench.cc registers one subcommand with FERRY_BENCH and
// always measures its baseline in the same run, reporting ratios.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <vector>

namespace ferry::bench {

using BenchMain = std::function<int(const std::vector<std::string>& args)>;

struct Registrar {
  Registrar(const char* name, const char* summary, BenchMain fn);
};

#define FERRY_BENCH(name, summary)                                                   \
  static int bench_##name(const std::vector<std::string>& args);                     \
  static ::ferry::bench::Registrar registrar_##name(#name, summary, &bench_##name);  \
  static int bench_##name(const std::vector<std::string>& args)

// Monotonic seconds since an arbitrary epoch.
inline double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
// CPU seconds (user + system) consumed by this process so far.
double process_cpu_seconds();
// CPU seconds consumed by the calling thread so far. Single-core throughput
// is measured with this clock: on a shared machine, time the thread spends
// descheduled is not the code's cost (baselines are measured the same way).
double thread_cpu_seconds();

}  // namespace ferry::bench
