// gpu_memory_nocuda.cc: gpu_memory.h for builds without CUDA: nothing to
// allocate, every call says so.
#include "cuda/gpu_memory.h"

namespace ferry {
namespace {
Status no_cuda() { return Status::unavailable("this ferry was built without CUDA"); }
}  // namespace

void GpuBuffer::Free::operator()(std::byte*) const {}
GpuBuffer::~GpuBuffer() = default;
Result<GpuBuffer> GpuBuffer::allocate(std::size_t, int) { return no_cuda(); }
Status GpuBuffer::upload(std::span<const std::byte>, std::size_t) { return no_cuda(); }
Status GpuBuffer::download(std::span<std::byte>, std::size_t) const { return no_cuda(); }
Result<double> gpu_copy_gbps(std::size_t, int) { return no_cuda(); }
Result<GpuMemoryInfo> gpu_memory_info(int) { return no_cuda(); }
Status gpu_set_device(int) { return no_cuda(); }
Result<int> gpu_current_device() { return no_cuda(); }
Result<std::shared_ptr<std::byte>> gpu_allocate_shared(std::size_t, int) { return no_cuda(); }
Result<std::shared_ptr<std::byte>> pinned_allocate_shared(std::size_t) { return no_cuda(); }
Status gpu_copy_to_device(std::byte*, const std::byte*, std::size_t) { return no_cuda(); }
Status gpu_copy_to_host(std::byte*, const std::byte*, std::size_t) { return no_cuda(); }
void GpuStream::Destroy::operator()(void*) const {}
GpuStream::~GpuStream() = default;
Result<GpuStream> GpuStream::create(int) { return no_cuda(); }
Status GpuStream::copy_to_device_async(std::byte*, const std::byte*, std::size_t) { return no_cuda(); }
Status GpuStream::synchronize() { return no_cuda(); }

}  // namespace ferry
