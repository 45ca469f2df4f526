// device_guard.h: makes a device current for a scope and puts the calling
// thread's previous device back when the scope ends (RAII), so that ferry
// never leaves the current device of a thread it does not own changed (a
// PyTorch thread, a caller of restore_to_device with cuda:N). Written over a
// two-call device API so host-only tests check it without a GPU; the CUDA
// instance is gpu::DeviceGuard (cuda/device_arena.h).
#pragma once

#include <utility>

#include "base/status.h"

namespace ferry::gpu {

// Api: static Status current(int* device); static Status set(int device).
template <typename Api>
class BasicDeviceGuard {
 public:
  // `device` made current; the previous device comes back when the guard
  // goes. No switch (and no restore) when it is current already.
  static Result<BasicDeviceGuard> enter(int device) {
    int previous = 0;
    RETURN_IF_ERROR(Api::current(&previous));
    BasicDeviceGuard g;
    if (previous == device) return Result<BasicDeviceGuard>(std::move(g));
    RETURN_IF_ERROR(Api::set(device));
    g.previous_ = previous;
    g.restore_ = true;
    return Result<BasicDeviceGuard>(std::move(g));
  }

  BasicDeviceGuard(BasicDeviceGuard&& o) noexcept
      : previous_(o.previous_), restore_(std::exchange(o.restore_, false)) {}
  BasicDeviceGuard& operator=(BasicDeviceGuard&&) = delete;
  BasicDeviceGuard(const BasicDeviceGuard&) = delete;
  ~BasicDeviceGuard() {
    if (restore_) (void)Api::set(previous_);  // the caller's device existed: setting it back cannot fail
  }

 private:
  BasicDeviceGuard() = default;
  int previous_ = 0;
  bool restore_ = false;
};

}  // namespace ferry::gpu
