// engine_choice_test.cc: run-time engine choice. Forcing the CPU always
// works; auto falls back to the CPU where no GPU is usable, and where a GPU
// engine codes the reference batch differently from the CPU engine (the
// safety net for a host's first GPU), saying why; forcing the GPU there is
// an error that says why. The reference check passes for the GPU kernels
// themselves, run on the host (kernel_emulator.h), and fails for an engine
// that leaves a chunk smaller than one element unwritten or codes a chunk
// with a delta base alone.
#include <gtest/gtest.h>

#include "base/crc32c.h"
#include "cuda/gpu_engine.h"
#include "tests/cuda/kernel_emulator.h"

namespace ferry {
namespace {

TEST(EngineChoice, ParsesFlag) {
  EXPECT_EQ(*parse_engine_choice("auto"), EngineChoice::kAuto);
  EXPECT_EQ(*parse_engine_choice("gpu"), EngineChoice::kGpu);
  EXPECT_EQ(*parse_engine_choice("cpu"), EngineChoice::kCpu);
  EXPECT_FALSE(parse_engine_choice("tpu").is_ok());
}

TEST(EngineChoice, CpuForcedAndAutoFallback) {
  EngineSelection sel;
  auto cpu = choose_engine(EngineChoice::kCpu, {}, {}, &sel);
  ASSERT_TRUE(cpu.is_ok());
  EXPECT_EQ(cpu.value()->kind(), "cpu");
  EXPECT_EQ(sel.engine, "cpu");
  EXPECT_EQ(sel.reason, "forced (--engine=cpu)");
  auto any = choose_engine(EngineChoice::kAuto, {}, {}, &sel);
  ASSERT_TRUE(any.is_ok());
  std::string why = gpu_unavailable_reason(0);
  EXPECT_EQ(any.value()->kind(), why.empty() ? "gpu" : "cpu");
  if (!why.empty()) {
    EXPECT_EQ(sel.reason, "no usable GPU: " + why);
    auto gpu = choose_engine(EngineChoice::kGpu);
    ASSERT_FALSE(gpu.is_ok());
    EXPECT_EQ(gpu.status().code(), Code::kUnavailable) << gpu.status().to_string();
  }
  ASSERT_TRUE(last_engine_selection().has_value());
  EXPECT_EQ(last_engine_selection()->reason, sel.reason);
}

TEST(EngineChoice, TheGpuKernelsPassTheReferenceCheck) {
  gpu::emulator::EmulatedGpuEngine gpu;
  auto cpu = make_cpu_engine(gpu_reference_options());
  Status st = check_engine_matches_cpu(gpu, *cpu);
  EXPECT_TRUE(st.is_ok()) << st.to_string();
}

// The CPU engine's frames, except that a chunk smaller than one element
// gets a payload of arena bytes under a valid CRC (what assemble once did).
class SmallChunksUnwritten final : public CodecEngine {
 public:
  std::string_view kind() const override { return "gpu"; }
  std::string description() const override { return "gpu (defective)"; }
  bool supports(MemorySpace s) const override { return s == MemorySpace::kHost; }
  Status encode(std::span<const EncodeJob> jobs, std::span<EncodedChunk> results, MemorySpace) override {
    RETURN_IF_ERROR(cpu_->encode(jobs, results));
    for (std::size_t i = 0; i < jobs.size(); ++i) {
      if (jobs[i].data.empty() || jobs[i].data.size() >= element_bytes(jobs[i].dtype)) continue;
      std::span<std::byte> frame = jobs[i].frame.first(results[i].frame_bytes);
      FrameHeader h = *parse_frame_header_only(frame);
      for (std::byte& b : frame.subspan(kFrameHeaderBytes)) b = std::byte{gpu::emulator::kUnwritten};
      h.payload_crc = mask_crc(crc32c(frame.subspan(kFrameHeaderBytes)));
      write_frame_header(h, frame.first<kFrameHeaderBytes>());
    }
    return Status::ok();
  }
  Status decode(std::span<const DecodeJob> jobs, std::span<Status> st, MemorySpace) override {
    return cpu_->decode(jobs, st);
  }

 private:
  std::unique_ptr<CodecEngine> cpu_ = make_cpu_engine(gpu_reference_options());
};

TEST(EngineChoice, AGpuEngineThatCodesDifferentlyFallsBackToTheCpuSayingWhy) {
  auto defective = [] {
    return Result<std::unique_ptr<CodecEngine>>(std::make_unique<SmallChunksUnwritten>());
  };
  EngineSelection sel;
  auto e = choose_engine_with(EngineChoice::kAuto, defective, {}, &sel);
  ASSERT_TRUE(e.is_ok()) << e.status().to_string();
  EXPECT_EQ(e.value()->kind(), "cpu");
  EXPECT_EQ(sel.engine, "cpu");
  EXPECT_EQ(sel.reason.rfind("GPU reference check failed: reference chunk ", 0), 0u) << sel.reason;
  EXPECT_NE(sel.reason.find("1 bytes): frames differ"), std::string::npos) << sel.reason;
  EXPECT_EQ(last_engine_selection()->reason, sel.reason);

  auto forced = choose_engine_with(EngineChoice::kGpu, defective, {}, nullptr);
  ASSERT_FALSE(forced.is_ok());
  EXPECT_NE(forced.status().message().find("GPU reference check failed"), std::string::npos)
      << forced.status().to_string();
}

// The CPU engine's frames, except that chunks with a delta base are coded
// alone (what the GPU engine once did): valid frames, but not the CPU
// engine's, which the reference batch's delta chunks catch.
class DeltasCodedAlone final : public CodecEngine {
 public:
  std::string_view kind() const override { return "gpu"; }
  std::string description() const override { return "gpu (no deltas)"; }
  bool supports(MemorySpace s) const override { return s == MemorySpace::kHost; }
  Status encode(std::span<const EncodeJob> jobs, std::span<EncodedChunk> results, MemorySpace) override {
    std::vector<EncodeJob> alone(jobs.begin(), jobs.end());
    for (EncodeJob& j : alone) {
      j.base = {};
      j.base_id = nullptr;
    }
    return cpu_->encode(alone, results);
  }
  Status decode(std::span<const DecodeJob> jobs, std::span<Status> st, MemorySpace) override {
    return cpu_->decode(jobs, st);
  }

 private:
  std::unique_ptr<CodecEngine> cpu_ = make_cpu_engine(gpu_reference_options());
};

TEST(EngineChoice, AGpuEngineThatCodesNoDeltasFailsTheReferenceCheck) {
  DeltasCodedAlone gpu;
  auto cpu = make_cpu_engine(gpu_reference_options());
  Status st = check_engine_matches_cpu(gpu, *cpu);
  ASSERT_EQ(st.code(), Code::kInternal) << st.to_string();
  EXPECT_NE(st.message().find("planes16v2, the cpu engine's delta16"), std::string::npos) << st.message();
}

TEST(EngineChoice, AGpuEngineThatPassesIsChosenSayingSo) {
  auto emulated = [] {
    return Result<std::unique_ptr<CodecEngine>>(std::make_unique<gpu::emulator::EmulatedGpuEngine>());
  };
  EngineSelection sel;
  auto e = choose_engine_with(EngineChoice::kAuto, emulated, {}, &sel);
  ASSERT_TRUE(e.is_ok());
  EXPECT_EQ(e.value()->kind(), "gpu");
  EXPECT_EQ(sel.engine, "gpu");
  EXPECT_EQ(sel.reason, "GPU reference check passed");
  EXPECT_EQ(sel.description, "gpu (host emulation of the kernels)");
}

}  // namespace
}  // namespace ferry
