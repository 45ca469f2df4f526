// dlpack_tensor.h: hands a restored tensor (replication/device_restore.h)
// over through DLPack without a copy. The DLManagedTensor holds a reference
// to the tensor's allocation, so the memory lives as long as the consumer
// (a torch.Tensor) keeps the DLPack tensor, and its deleter drops that
// reference. Written against DLPack 0.6 (Debian's libdlpack-dev), which
// PyTorch still reads through the unversioned "dltensor" capsule.
#pragma once

#include <dlpack/dlpack.h>

#include <string>
#include <string_view>

#include "base/status.h"
#include "replication/device_restore.h"

namespace ferry::python {

// How a safetensors dtype crosses DLPack. DLPack 0.6 has no bool and no
// 8-bit float codes, so those cross as uint8 and the Python side views them
// as `view` (a torch dtype name: "bool", "float8_e4m3fn", "float8_e5m2"),
// which reinterprets the same memory.
struct DlpackType {
  DLDataType type{};
  std::string view;  // empty: the DLPack type is the tensor's own
};

// The DLPack type for a safetensors dtype name ("BF16", "F32", "BOOL", ...);
// Unsupported naming the tensor and the dtype for the rest.
Result<DlpackType> dlpack_type(std::string_view dtype, std::string_view tensor_name);

// A DLManagedTensor over `tensor`'s memory that keeps tensor.owner alive
// until its deleter runs. The caller hands it to exactly one consumer (or
// calls its deleter).
Result<DLManagedTensor*> make_managed_tensor(const replication::RestoredTensor& tensor);

}  // namespace ferry::python
