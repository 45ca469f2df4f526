// cuda_check.h: the checked-call macro around every CUDA runtime call and
// kernel launch in cuda/: a failure becomes a ferry Status (Unavailable for
// a missing device, Internal otherwise) naming the call and CUDA's text.
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "base/status.h"

namespace ferry::gpu {

inline Status cuda_status(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return Status::ok();
  std::string msg = std::string(what) + ": " + cudaGetErrorString(err);
  if (err == cudaErrorNoDevice || err == cudaErrorInsufficientDriver || err == cudaErrorInvalidDevice)
    return Status::unavailable(msg);
  if (err == cudaErrorMemoryAllocation) return Status::exhausted(msg);
  return Status::internal(msg);
}

}  // namespace ferry::gpu

// Returns the Status of a failed CUDA call from the enclosing function.
#define CUDA_RETURN_IF_ERROR(call) RETURN_IF_ERROR(::ferry::gpu::cuda_status((call), #call))
// After a kernel launch: launch configuration errors surface here.
#define CUDA_RETURN_IF_LAUNCH_ERROR(name) \
  RETURN_IF_ERROR(::ferry::gpu::cuda_status(cudaGetLastError(), "launch " name))
