// gpu_memory_cuda.cc: gpu_memory.h over the CUDA runtime (CUDA builds only).
// Calls that name a device make it current only while they run
// (gpu::DeviceGuard): the caller's current device is left as it was.
#include <cuda_runtime.h>

#include <chrono>

#include "cuda/device_arena.h"
#include "cuda/gpu_memory.h"

namespace ferry {

void GpuBuffer::Free::operator()(std::byte* p) const { cudaFree(p); }
GpuBuffer::~GpuBuffer() = default;

Result<GpuBuffer> GpuBuffer::allocate(std::size_t bytes, int device) {
  ASSIGN_OR_RETURN(gpu::DeviceGuard guard, gpu::DeviceGuard::enter(device));
  void* p = nullptr;
  CUDA_RETURN_IF_ERROR(cudaMalloc(&p, bytes == 0 ? 1 : bytes));
  GpuBuffer b;
  b.data_.reset(static_cast<std::byte*>(p));
  b.size_ = bytes;
  return b;
}

Status GpuBuffer::upload(std::span<const std::byte> host, std::size_t offset) {
  if (offset > size_ || host.size() > size_ - offset)
    return Status::invalid_argument("GpuBuffer::upload out of range");
  CUDA_RETURN_IF_ERROR(cudaMemcpy(data_.get() + offset, host.data(), host.size(), cudaMemcpyHostToDevice));
  return Status::ok();
}

Status GpuBuffer::download(std::span<std::byte> host, std::size_t offset) const {
  if (offset > size_ || host.size() > size_ - offset)
    return Status::invalid_argument("GpuBuffer::download out of range");
  CUDA_RETURN_IF_ERROR(cudaMemcpy(host.data(), data_.get() + offset, host.size(), cudaMemcpyDeviceToHost));
  return Status::ok();
}

Result<GpuMemoryInfo> gpu_memory_info(int device) {
  ASSIGN_OR_RETURN(gpu::DeviceGuard guard, gpu::DeviceGuard::enter(device));
  std::size_t free_bytes = 0, total_bytes = 0;
  CUDA_RETURN_IF_ERROR(cudaMemGetInfo(&free_bytes, &total_bytes));
  return GpuMemoryInfo{free_bytes, total_bytes};
}

Status gpu_set_device(int device) {
  CUDA_RETURN_IF_ERROR(cudaSetDevice(device));
  return Status::ok();
}

Result<int> gpu_current_device() {
  int device = 0;
  CUDA_RETURN_IF_ERROR(cudaGetDevice(&device));
  return device;
}

Result<std::shared_ptr<std::byte>> gpu_allocate_shared(std::size_t bytes, int device) {
  ASSIGN_OR_RETURN(gpu::DeviceGuard guard, gpu::DeviceGuard::enter(device));
  void* p = nullptr;
  CUDA_RETURN_IF_ERROR(cudaMalloc(&p, bytes == 0 ? 1 : bytes));
  return std::shared_ptr<std::byte>(static_cast<std::byte*>(p), [](std::byte* q) { cudaFree(q); });
}

Result<std::shared_ptr<std::byte>> pinned_allocate_shared(std::size_t bytes) {
  void* p = nullptr;
  CUDA_RETURN_IF_ERROR(cudaMallocHost(&p, bytes == 0 ? 1 : bytes));
  return std::shared_ptr<std::byte>(static_cast<std::byte*>(p), [](std::byte* q) { cudaFreeHost(q); });
}

Status gpu_copy_to_device(std::byte* device_dst, const std::byte* host_src, std::size_t bytes) {
  CUDA_RETURN_IF_ERROR(cudaMemcpy(device_dst, host_src, bytes, cudaMemcpyHostToDevice));
  return Status::ok();
}

Status gpu_copy_to_host(std::byte* host_dst, const std::byte* device_src, std::size_t bytes) {
  CUDA_RETURN_IF_ERROR(cudaMemcpy(host_dst, device_src, bytes, cudaMemcpyDeviceToHost));
  return Status::ok();
}

void GpuStream::Destroy::operator()(void* s) const { cudaStreamDestroy(static_cast<cudaStream_t>(s)); }
GpuStream::~GpuStream() = default;

Result<GpuStream> GpuStream::create(int device) {
  ASSIGN_OR_RETURN(gpu::DeviceGuard guard, gpu::DeviceGuard::enter(device));
  cudaStream_t s = nullptr;
  CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  GpuStream out;
  out.stream_.reset(s);
  return out;
}

Status GpuStream::copy_to_device_async(std::byte* device_dst, const std::byte* host_src, std::size_t bytes) {
  CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(device_dst, host_src, bytes, cudaMemcpyHostToDevice,
                                       static_cast<cudaStream_t>(stream_.get())));
  return Status::ok();
}

Status GpuStream::synchronize() {
  CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(static_cast<cudaStream_t>(stream_.get())));
  return Status::ok();
}

Result<double> gpu_copy_gbps(std::size_t bytes, int repeats) {
  ASSIGN_OR_RETURN(GpuBuffer a, GpuBuffer::allocate(bytes));
  ASSIGN_OR_RETURN(GpuBuffer b, GpuBuffer::allocate(bytes));
  CUDA_RETURN_IF_ERROR(cudaMemcpy(b.span().data(), a.span().data(), bytes, cudaMemcpyDeviceToDevice));
  CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize());
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < repeats; ++i)
    CUDA_RETURN_IF_ERROR(cudaMemcpy(b.span().data(), a.span().data(), bytes, cudaMemcpyDeviceToDevice));
  CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize());
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return 2.0 * static_cast<double>(bytes) * repeats / s / 1e9;
}

}  // namespace ferry
