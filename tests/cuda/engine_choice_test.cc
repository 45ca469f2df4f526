// engine_choice_test.cc: run-time engine choice. Forcing the CPU always
// works; auto falls back to the CPU where no GPU is usable; forcing the GPU
// there is an error that says why.
#include <gtest/gtest.h>

#include "cuda/gpu_engine.h"

namespace ferry {
namespace {

TEST(EngineChoice, ParsesFlag) {
  EXPECT_EQ(*parse_engine_choice("auto"), EngineChoice::kAuto);
  EXPECT_EQ(*parse_engine_choice("gpu"), EngineChoice::kGpu);
  EXPECT_EQ(*parse_engine_choice("cpu"), EngineChoice::kCpu);
  EXPECT_FALSE(parse_engine_choice("tpu").is_ok());
}

TEST(EngineChoice, CpuForcedAndAutoFallback) {
  auto cpu = choose_engine(EngineChoice::kCpu);
  ASSERT_TRUE(cpu.is_ok());
  EXPECT_EQ(cpu.value()->kind(), "cpu");
  auto any = choose_engine(EngineChoice::kAuto);
  ASSERT_TRUE(any.is_ok());
  std::string why = gpu_unavailable_reason(0);
  EXPECT_EQ(any.value()->kind(), why.empty() ? "gpu" : "cpu");
  if (!why.empty()) {
    auto gpu = choose_engine(EngineChoice::kGpu);
    ASSERT_FALSE(gpu.is_ok());
    EXPECT_EQ(gpu.status().code(), Code::kUnavailable) << gpu.status().to_string();
  }
}

}  // namespace
}  // namespace ferry
