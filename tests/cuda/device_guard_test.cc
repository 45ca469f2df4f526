// device_guard_test.cc: gpu::BasicDeviceGuard (cuda/device_guard.h) over a
// stand-in device API, since the real one needs a GPU: the caller's device
// comes back when the guard goes, nested guards unwind in order, a guard
// for the current device switches nothing, and a failed switch is a Status
// that leaves the current device alone. (device_restore_gpu_test checks the
// CUDA instance on a machine with two GPUs.)
#include "cuda/device_guard.h"

#include <gtest/gtest.h>

#include <vector>

namespace ferry::gpu {
namespace {

struct FakeDevices {
  static inline int current = 0;
  static inline int count = 4;
  static inline std::vector<int> sets;
  static Status current_device(int* d) {
    *d = current;
    return Status::ok();
  }
  static Status set(int d) {
    if (d < 0 || d >= count) return Status::unavailable("no device " + std::to_string(d));
    sets.push_back(d);
    current = d;
    return Status::ok();
  }
  static void reset(int now) {
    current = now;
    sets.clear();
  }
};
struct FakeApi {
  static Status current(int* d) { return FakeDevices::current_device(d); }
  static Status set(int d) { return FakeDevices::set(d); }
};
using Guard = BasicDeviceGuard<FakeApi>;

TEST(DeviceGuard, PutsTheCallersDeviceBack) {
  FakeDevices::reset(0);
  {
    auto g = Guard::enter(2);
    ASSERT_TRUE(g.is_ok());
    EXPECT_EQ(FakeDevices::current, 2);
  }
  EXPECT_EQ(FakeDevices::current, 0);
  EXPECT_EQ(FakeDevices::sets, (std::vector<int>{2, 0}));
}

TEST(DeviceGuard, NestedGuardsUnwindInOrder) {
  FakeDevices::reset(1);
  {
    auto outer = Guard::enter(3);
    ASSERT_TRUE(outer.is_ok());
    {
      auto inner = Guard::enter(0);
      ASSERT_TRUE(inner.is_ok());
      EXPECT_EQ(FakeDevices::current, 0);
    }
    EXPECT_EQ(FakeDevices::current, 3);
  }
  EXPECT_EQ(FakeDevices::current, 1);
}

TEST(DeviceGuard, TheCurrentDeviceIsNotSwitched) {
  FakeDevices::reset(2);
  {
    auto g = Guard::enter(2);
    ASSERT_TRUE(g.is_ok());
  }
  EXPECT_TRUE(FakeDevices::sets.empty());
}

TEST(DeviceGuard, AMovedGuardRestoresOnce) {
  FakeDevices::reset(0);
  {
    auto g = Guard::enter(1);
    ASSERT_TRUE(g.is_ok());
    Guard moved = std::move(g).value();
  }
  EXPECT_EQ(FakeDevices::current, 0);
  EXPECT_EQ(FakeDevices::sets, (std::vector<int>{1, 0}));
}

TEST(DeviceGuard, AFailedSwitchIsAStatusAndChangesNothing) {
  FakeDevices::reset(1);
  auto g = Guard::enter(9);
  ASSERT_FALSE(g.is_ok());
  EXPECT_EQ(g.status().code(), Code::kUnavailable);
  EXPECT_EQ(FakeDevices::current, 1);
}

}  // namespace
}  // namespace ferry::gpu
