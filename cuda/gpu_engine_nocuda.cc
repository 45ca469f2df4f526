// gpu_engine_nocuda.cc: make_gpu_engine for builds without CUDA (compiled
// only when FERRY_HAVE_CUDA is off; cuda/CMakeLists.txt): there is never a
// GPU engine, and the reason says how to get one.
#include "cuda/gpu_engine.h"

namespace ferry {

std::string gpu_unavailable_reason(int) {
  return "this ferry was built without CUDA (configure with nvcc present, FERRY_CUDA=ON)";
}

Result<std::uint64_t> gpu_context_reserve_bytes(int device) {
  return Status::unavailable(gpu_unavailable_reason(device));
}

Result<std::unique_ptr<CodecEngine>> make_gpu_engine(const GpuOptions& opts) {
  return Status::unavailable(gpu_unavailable_reason(opts.device));
}

}  // namespace ferry
