// engine_choice.cc: picks the codec engine at run time (GPU when usable,
// else CPU, or as forced) and logs the choice once per process.
#include <atomic>
#include <cstdio>

#include "cuda/gpu_engine.h"

namespace ferry {
namespace {

void log_once(const std::string& line) {
  static std::atomic<bool> logged{false};
  if (!logged.exchange(true)) std::fprintf(stderr, "ferry: codec engine: %s\n", line.c_str());
}

}  // namespace

Result<EngineChoice> parse_engine_choice(const std::string& s) {
  if (s == "auto") return EngineChoice::kAuto;
  if (s == "cpu") return EngineChoice::kCpu;
  if (s == "gpu") return EngineChoice::kGpu;
  return Status::invalid_argument("engine '" + s + "': expected auto, cpu or gpu");
}

Result<std::unique_ptr<CodecEngine>> choose_engine(EngineChoice choice, const GpuOptions& gpu,
                                                   const CpuEngineOptions& cpu) {
  if (choice == EngineChoice::kCpu) {
    auto e = make_cpu_engine(cpu);
    log_once(e->description() + ", forced");
    return e;
  }
  auto g = make_gpu_engine(gpu);
  if (g.is_ok()) {
    log_once(g.value()->description());
    return std::move(g).value();
  }
  if (choice == EngineChoice::kGpu) return g.status().with_context("--engine=gpu");
  auto e = make_cpu_engine(cpu);
  log_once("cpu (no usable GPU: " + g.status().message() + ")");
  return e;
}

}  // namespace ferry
