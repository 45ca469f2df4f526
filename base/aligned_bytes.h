// aligned_bytes.h: a byte buffer for O_DIRECT transfers, reused from one
// transfer to the next. Its start is aligned to kDirectAlignBytes and its
// capacity is a multiple of it, so a read of the last, partial block of a file
// can ask for the whole block (padded()). It grows without clearing: every
// byte handed out is overwritten (by a read or by a codec) before it is read,
// and zeroing it first would cost a pass over memory per chunk.
#pragma once

#include <cstddef>
#include <memory>
#include <new>
#include <span>
#include <utility>

#include "base/limits.h"

namespace ferry {

// n rounded up to a multiple of kDirectAlignBytes.
constexpr std::size_t round_up_to_direct_align(std::size_t n) {
  return (n + kDirectAlignBytes - 1) / kDirectAlignBytes * kDirectAlignBytes;
}

class AlignedBytes {
 public:
  AlignedBytes() = default;
  // A moved-from buffer is empty (no capacity), ready to grow again.
  AlignedBytes(AlignedBytes&& o) noexcept
      : data_(std::move(o.data_)), capacity_(std::exchange(o.capacity_, 0)),
        size_(std::exchange(o.size_, 0)) {}
  AlignedBytes& operator=(AlignedBytes&& o) noexcept {
    data_ = std::move(o.data_);
    capacity_ = std::exchange(o.capacity_, 0);
    size_ = std::exchange(o.size_, 0);
    return *this;
  }

  // The first n bytes, with capacity for round_up_to_direct_align(n); the
  // previous contents are not kept when it must grow.
  std::span<std::byte> take(std::size_t n) {
    std::size_t padded = round_up_to_direct_align(n);
    if (padded > capacity_) {
      data_.reset(static_cast<std::byte*>(::operator new[](padded, std::align_val_t{kDirectAlignBytes})));
      capacity_ = padded;
    }
    size_ = n;
    return view();
  }
  std::span<std::byte> view() const { return {data_.get(), size_}; }
  // view() extended to the next kDirectAlignBytes boundary.
  std::span<std::byte> padded() const { return {data_.get(), round_up_to_direct_align(size_)}; }
  std::size_t size() const { return size_; }
  // The whole allocation (BufferStash).
  std::byte* data() const { return data_.get(); }
  std::size_t capacity() const { return capacity_; }

 private:
  struct Free {
    void operator()(std::byte* p) const { ::operator delete[](p, std::align_val_t{kDirectAlignBytes}); }
  };
  std::unique_ptr<std::byte[], Free> data_;
  std::size_t capacity_ = 0;
  std::size_t size_ = 0;
};

}  // namespace ferry
