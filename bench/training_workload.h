// training_workload.h: the stand-in training job of `ferry-bench agent`:
// per step, STREAM-triad passes over arrays far beyond the caches (memory
// bandwidth bound) and multiplies of small cache-resident matrices (compute
// bound); a fixed amount of work per step, so that runs compare by time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace ferry::bench {

// Side of the square float matrices multiplied in each step.
inline constexpr int kMatrixDim = 128;

// One worker thread's arrays and its share of the work per step.
struct WorkerState {
  std::vector<double> a, b, c;
  std::vector<float> x, y, z;
  int triad_passes = 2;
  int matmul_reps = 4;
  double sink = 0;  // keeps the compiler from dropping the work
};

// Three arrays of `elems` doubles and the matrices, filled from `seed`.
void init_worker(WorkerState& w, std::size_t elems, std::uint64_t seed, int triad_passes, int matmul_reps);

// One training step of one worker.
void training_step(WorkerState& w, int step);

struct WorkloadTime {
  double wall_seconds = 0;
  // The workers' own CPU seconds, summed. Time spent descheduled (by the
  // agent or by anything else on a shared machine) is not in it; what the
  // agent costs through memory bandwidth and caches is.
  double cpu_seconds = 0;
};

// Runs `steps` steps on every worker at once, one thread each.
WorkloadTime run_workload(std::vector<WorkerState>& workers, int steps);

// The 1-minute load average, to show how busy the machine was.
double load_average();

}  // namespace ferry::bench
