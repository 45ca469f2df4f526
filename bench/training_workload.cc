// training_workload.cc: the stand-in training job of `ferry-bench agent`
// (training_workload.h).
#include "bench/training_workload.h"

#include <algorithm>
#include <fstream>
#include <random>
#include <thread>
#include <utility>

#include "bench/bench.h"

namespace ferry::bench {

void init_worker(WorkerState& w, std::size_t elems, std::uint64_t seed, int triad_passes, int matmul_reps) {
  w.triad_passes = triad_passes;
  w.matmul_reps = matmul_reps;
  w.a.assign(elems, 0.0);
  w.b.resize(elems);
  w.c.resize(elems);
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> d(-1, 1);
  for (std::size_t i = 0; i < elems; ++i) {
    w.b[i] = d(rng);
    w.c[i] = d(rng);
  }
  const std::size_t m = kMatrixDim * kMatrixDim;
  w.x.resize(m);
  w.y.resize(m);
  w.z.assign(m, 0.f);
  for (std::size_t i = 0; i < m; ++i) {
    w.x[i] = static_cast<float>(d(rng));
    w.y[i] = static_cast<float>(d(rng));
  }
}

// One training step: memory-bandwidth bound triads, then compute-bound
// matrix multiplies on cache-resident data.
void training_step(WorkerState& w, int step) {
  const int triad_passes = w.triad_passes, matmul_reps = w.matmul_reps;
  const double s = 1.0 + 1e-9 * step;
  const std::size_t n = w.a.size();
  for (int p = 0; p < triad_passes; ++p) {
    double* a = w.a.data();
    const double* b = w.b.data();
    const double* c = w.c.data();
    for (std::size_t i = 0; i < n; ++i) a[i] = b[i] + s * c[i];
    std::swap(w.a, w.b);
  }
  constexpr int N = kMatrixDim;
  for (int r = 0; r < matmul_reps; ++r) {
    std::fill(w.z.begin(), w.z.end(), 0.f);
    for (int i = 0; i < N; ++i) {
      for (int k = 0; k < N; ++k) {
        const float xik = w.x[i * N + k];
        const float* yk = &w.y[k * N];
        float* zi = &w.z[i * N];
        for (int j = 0; j < N; ++j) zi[j] += xik * yk[j];
      }
    }
    w.sink += w.z[(step + r) % (N * N)];
  }
  w.sink += w.a[static_cast<std::size_t>(step) % n];
}

WorkloadTime run_workload(std::vector<WorkerState>& workers, int steps) {
  const double t0 = mono_seconds();
  std::vector<double> cpu(workers.size());
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < workers.size(); ++i) {
    threads.emplace_back([&, i] {
      const double c0 = thread_cpu_seconds();
      for (int s = 0; s < steps; ++s) training_step(workers[i], s);
      cpu[i] = thread_cpu_seconds() - c0;
    });
  }
  for (auto& t : threads) t.join();
  WorkloadTime t{mono_seconds() - t0, 0};
  for (double c : cpu) t.cpu_seconds += c;
  return t;
}

double load_average() {
  double l = 0;
  std::ifstream("/proc/loadavg") >> l;
  return l;
}

}  // namespace ferry::bench
