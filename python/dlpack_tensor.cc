// dlpack_tensor.cc: see dlpack_tensor.h.
#include "python/dlpack_tensor.h"

#include <cstdint>
#include <memory>
#include <vector>

namespace ferry::python {
namespace {

struct TypeEntry {
  std::string_view name;
  DLDataTypeCode code;
  std::uint8_t bits;
  std::string_view view;
};

constexpr TypeEntry kTypes[] = {
    {"BF16", kDLBfloat, 16, ""},
    {"F16", kDLFloat, 16, ""},
    {"F32", kDLFloat, 32, ""},
    {"F64", kDLFloat, 64, ""},
    {"I8", kDLInt, 8, ""},
    {"I16", kDLInt, 16, ""},
    {"I32", kDLInt, 32, ""},
    {"I64", kDLInt, 64, ""},
    {"U8", kDLUInt, 8, ""},
    {"U16", kDLUInt, 16, ""},
    {"U32", kDLUInt, 32, ""},
    {"U64", kDLUInt, 64, ""},
    {"C64", kDLComplex, 64, ""},
    {"BOOL", kDLUInt, 8, "bool"},
    {"F8_E4M3", kDLUInt, 8, "float8_e4m3fn"},
    {"F8_E5M2", kDLUInt, 8, "float8_e5m2"},
};

// Owns everything the DLTensor points at besides the data: the shape and a
// reference to the allocation.
struct ManagerContext {
  DLManagedTensor managed{};
  std::vector<std::int64_t> shape;
  replication::Allocation owner;
};

void delete_managed(DLManagedTensor* self) { delete static_cast<ManagerContext*>(self->manager_ctx); }

// An address for an empty tensor that has no data pointer of its own
// (consumers may reject a null data pointer even with no elements).
alignas(256) std::byte empty_tensor_storage[1];

}  // namespace

Result<DlpackType> dlpack_type(std::string_view dtype, std::string_view tensor_name) {
  for (const TypeEntry& e : kTypes) {
    if (e.name == dtype) {
      DlpackType t;
      t.type.code = static_cast<std::uint8_t>(e.code);
      t.type.bits = e.bits;
      t.type.lanes = 1;
      t.view = std::string(e.view);
      return t;
    }
  }
  return Status::unsupported("tensor \"" + std::string(tensor_name) + "\" has dtype " + std::string(dtype) +
                             ", which ferry cannot hand to PyTorch");
}

Result<DLManagedTensor*> make_managed_tensor(const replication::RestoredTensor& tensor) {
  ASSIGN_OR_RETURN(DlpackType type, dlpack_type(tensor.dtype, tensor.name));
  auto ctx = std::make_unique<ManagerContext>();
  ctx->shape = tensor.shape;
  ctx->owner = tensor.owner;
  DLTensor& t = ctx->managed.dl_tensor;
  if (tensor.data != nullptr) {
    t.data = tensor.data;
  } else if (tensor.owner != nullptr) {
    t.data = tensor.owner.get();  // on the tensor's own device
  } else {
    t.data = empty_tensor_storage;
  }
  if (tensor.device.kind == replication::Device::Kind::kCuda) {
    t.device = DLDevice{kDLCUDA, tensor.device.index};
  } else {
    t.device = DLDevice{kDLCPU, 0};
  }
  t.ndim = static_cast<std::int32_t>(ctx->shape.size());
  t.dtype = type.type;
  t.shape = ctx->shape.empty() ? nullptr : ctx->shape.data();
  t.strides = nullptr;  // compact, row-major
  t.byte_offset = 0;
  ctx->managed.manager_ctx = ctx.get();
  ctx->managed.deleter = delete_managed;
  return &ctx.release()->managed;
}

}  // namespace ferry::python
