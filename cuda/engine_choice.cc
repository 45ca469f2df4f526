// engine_choice.cc: picks the codec engine at run time: the GPU engine when
// one is usable and it codes a small reference batch exactly as the CPU
// engine does (a safety net for the first GPU, driver or build a host runs
// on), else the CPU engine, or as forced. Records which engine and why for
// `ferry status` and the agent's metrics, and logs the choice once.
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <optional>

#include "codec/dtype.h"
#include "codec/tree_hash.h"
#include "cuda/gpu_engine.h"

namespace ferry {
namespace {

constexpr const char* kReasonForced = "forced (--engine=cpu)";
constexpr const char* kReasonPassed = "GPU reference check passed";
constexpr const char* kReasonNoGpu = "no usable GPU: ";
constexpr const char* kReasonFailed = "GPU reference check failed: ";

std::mutex selection_mu;
std::optional<EngineSelection> selection_last;

void record(const EngineSelection& s, EngineSelection* out) {
  {
    std::lock_guard lock(selection_mu);
    selection_last = s;
  }
  if (out) *out = s;
  static std::atomic<bool> logged{false};
  if (!logged.exchange(true))
    std::fprintf(stderr, "ferry: codec engine: %s: %s\n", s.description.c_str(), s.reason.c_str());
}

struct ReferenceChunk {
  DType dtype;
  std::vector<std::byte> data;
  std::vector<std::byte> base = {};  // a delta base: coded against it (FORMAT.md 3.1)
  Digest base_id = {};
};

// xorshift64: the reference data is the same on every host.
struct ReferenceRng {
  std::uint64_t x;
  std::uint64_t next() {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
  }
  float uniform() { return static_cast<float>(next() >> 40) / static_cast<float>(1u << 24); }
};

// N(0, 0.02)-like floats (Irwin-Hall sum of four uniforms), times `scale`,
// as bf16, fp16, fp32 or fp8 (the top byte of bf16) bytes; `bytes` may cut
// the last one.
std::vector<std::byte> reference_floats(DType dtype, std::size_t bytes, std::uint64_t seed,
                                        float scale = 1.0f) {
  std::vector<std::byte> out(bytes);
  ReferenceRng rng{seed * 0x9e3779b97f4a7c15ull + 1};
  const std::size_t w = element_bytes(dtype);
  for (std::size_t at = 0; at < bytes; at += w) {
    const float v = (rng.uniform() + rng.uniform() + rng.uniform() + rng.uniform() - 2.0f) * 0.035f * scale;
    std::uint32_t f;
    std::memcpy(&f, &v, 4);
    std::uint32_t e = f >> (32 - 8 * w);  // fp32, bf16, fp8
    if (dtype == DType::kF16) {
      const int exp = static_cast<int>((f >> 23) & 0xff) - 127 + 15;
      e = (f >> 16 & 0x8000u) |
          (exp <= 0 ? 0u : (static_cast<std::uint32_t>(exp) << 10) | (f >> 13 & 0x3ffu));
    }
    for (std::size_t k = 0; k < w && at + k < bytes; ++k) out[at + k] = static_cast<std::byte>(e >> (8 * k));
  }
  return out;
}

std::vector<std::byte> reference_noise(std::size_t bytes, std::uint64_t seed) {
  std::vector<std::byte> out(bytes);
  ReferenceRng rng{seed * 0x9e3779b97f4a7c15ull + 1};
  for (std::byte& b : out) b = static_cast<std::byte>(rng.next() >> 56);
  return out;
}

// Three tensors of different scales in one chunk of 3 * `third` bytes.
std::vector<std::byte> reference_mixed(DType dtype, std::size_t third, std::uint64_t seed) {
  std::vector<std::byte> out;
  for (float scale : {1.0f, 150.0f, 0.02f}) {
    const std::vector<std::byte> part = reference_floats(dtype, third, seed++, scale);
    out.insert(out.end(), part.begin(), part.end());
  }
  return out;
}

// `base` a few training steps later: each element moved by -3..4 units in
// its last place (widths 2 and 4; a tail byte by one).
std::vector<std::byte> reference_stepped(const std::vector<std::byte>& base, std::size_t w,
                                         std::uint64_t seed) {
  std::vector<std::byte> out = base;
  ReferenceRng rng{seed * 0x9e3779b97f4a7c15ull + 1};
  for (std::size_t at = 0; at + w <= out.size(); at += w) {
    std::uint32_t v = 0;
    for (std::size_t k = 0; k < w; ++k) v |= static_cast<std::uint32_t>(out[at + k]) << (8 * k);
    v += static_cast<std::uint32_t>(static_cast<int>(rng.next() >> 61) - 3);
    for (std::size_t k = 0; k < w; ++k) out[at + k] = static_cast<std::byte>(v >> (8 * k));
  }
  if (out.size() % w) out.back() = static_cast<std::byte>(static_cast<std::uint8_t>(out.back()) + 1);
  return out;
}

ReferenceChunk reference_delta(DType dtype, std::size_t bytes, std::uint64_t seed) {
  ReferenceChunk c{dtype, {}, reference_floats(dtype, bytes, seed)};
  c.data = reference_stepped(c.base, element_bytes(dtype), seed + 1);
  c.base_id = chunk_id(c.base);
  return c;
}

// Every path of the float codec once: coded and raw planes over two blocks
// (of either payload version), several tables per plane, tails, a chunk
// that stays raw, chunks smaller than one element; and delta frames.
std::vector<ReferenceChunk> reference_chunks() {
  std::vector<ReferenceChunk> c;
  c.push_back({DType::kBF16, reference_floats(DType::kBF16, 64u << 10, 1)});
  c.push_back({DType::kF16, reference_floats(DType::kF16, (16u << 10) + 1, 2)});
  c.push_back({DType::kF32, reference_floats(DType::kF32, 20003, 3)});
  c.push_back({DType::kF8E4M3, reference_floats(DType::kF8E4M3, 4096, 4)});
  c.push_back({DType::kBF16, reference_noise(8192, 5)});  // no plane shrinks: stored raw
  c.push_back({DType::kBF16, reference_floats(DType::kBF16, 1, 6)});
  c.push_back({DType::kF32, reference_floats(DType::kF32, 3, 7)});
  c.push_back({DType::kBF16, reference_mixed(DType::kBF16, 56u << 10, 8)});  // 86016 elements
  // Delta frames: coded both ways (no larger than the sample) and judged
  // on the sample, with a tail.
  c.push_back(reference_delta(DType::kBF16, 32u << 10, 9));
  c.push_back(reference_delta(DType::kF32, (96u << 10) + 3, 11));
  return c;
}

std::string describe(std::size_t i, const ReferenceChunk& c) {
  return "reference chunk " + std::to_string(i) + " (" + std::string(dtype_name(c.dtype)) + ", " +
         std::to_string(c.data.size()) + " bytes)";
}

// Encodes every chunk with `engine`: frames sized to what was written.
Result<std::vector<std::vector<std::byte>>> encode_all(CodecEngine& engine,
                                                       const std::vector<ReferenceChunk>& chunks,
                                                       std::vector<EncodedChunk>& results) {
  std::vector<std::vector<std::byte>> frames(chunks.size());
  std::vector<EncodeJob> jobs;
  for (std::size_t i = 0; i < chunks.size(); ++i) {
    frames[i].resize(max_frame_bytes(chunks[i].data.size()));
    const bool delta = !chunks[i].base.empty();
    jobs.push_back({chunks[i].data, chunks[i].dtype, false, frames[i], nullptr, chunks[i].base,
                    delta ? &chunks[i].base_id : nullptr});
  }
  results.assign(chunks.size(), {});
  RETURN_IF_ERROR(engine.encode(jobs, results).with_context(std::string(engine.kind()) + " encode"));
  for (std::size_t i = 0; i < chunks.size(); ++i) frames[i].resize(results[i].frame_bytes);
  return frames;
}

// Decodes every frame with `engine` and compares with the chunks.
Status decode_all(CodecEngine& engine, const std::vector<std::vector<std::byte>>& frames,
                  const std::vector<ReferenceChunk>& chunks, const char* whose) {
  std::vector<std::vector<std::byte>> outs(chunks.size());
  std::vector<DecodeJob> jobs;
  for (std::size_t i = 0; i < chunks.size(); ++i) {
    outs[i].resize(chunks[i].data.size());
    jobs.push_back({frames[i], outs[i], std::nullopt, {}, chunks[i].base});
  }
  std::vector<Status> st(chunks.size());
  const std::string what = std::string(engine.kind()) + " decode of the " + whose + " frame of ";
  RETURN_IF_ERROR(engine.decode(jobs, st).with_context(std::string(engine.kind()) + " decode"));
  for (std::size_t i = 0; i < chunks.size(); ++i) {
    if (!st[i].is_ok()) return Status::internal(what + describe(i, chunks[i]) + ": " + st[i].to_string());
    if (outs[i] != chunks[i].data)
      return Status::internal(what + describe(i, chunks[i]) + " gives other bytes");
  }
  return Status::ok();
}

}  // namespace

Status check_engine_matches_cpu(CodecEngine& engine, CodecEngine& cpu) {
  const std::vector<ReferenceChunk> chunks = reference_chunks();
  std::vector<EncodedChunk> re, rc;
  ASSIGN_OR_RETURN(auto fe, encode_all(engine, chunks, re));
  ASSIGN_OR_RETURN(auto fc, encode_all(cpu, chunks, rc));
  for (std::size_t i = 0; i < chunks.size(); ++i) {
    const std::string what = describe(i, chunks[i]) + ": ";
    if (re[i].id != rc[i].id)
      return Status::internal(what + "chunk id " + to_hex(re[i].id) + ", the cpu engine's " +
                              to_hex(rc[i].id));
    if (re[i].codec != rc[i].codec || re[i].base_id != rc[i].base_id)
      return Status::internal(what + std::string(codec_name(re[i].codec)) + ", the cpu engine's " +
                              std::string(codec_name(rc[i].codec)));
    if (fe[i].size() != fc[i].size())
      return Status::internal(what + "frame of " + std::to_string(fe[i].size()) +
                              " bytes, the cpu engine's " + std::to_string(fc[i].size()));
    const auto diff = std::mismatch(fe[i].begin(), fe[i].end(), fc[i].begin());
    if (diff.first != fe[i].end())
      return Status::internal(what + "frames differ from byte " + std::to_string(diff.first - fe[i].begin()));
  }
  RETURN_IF_ERROR(decode_all(engine, fc, chunks, "cpu engine's"));
  return decode_all(cpu, fe, chunks, std::string(engine.kind()).c_str());
}

Result<EngineChoice> parse_engine_choice(const std::string& s) {
  if (s == "auto") return EngineChoice::kAuto;
  if (s == "cpu") return EngineChoice::kCpu;
  if (s == "gpu") return EngineChoice::kGpu;
  return Status::invalid_argument("engine '" + s + "': expected auto, cpu or gpu");
}

Result<std::unique_ptr<CodecEngine>> choose_engine_with(EngineChoice choice, const GpuEngineFactory& make_gpu,
                                                        const CpuEngineOptions& cpu,
                                                        EngineSelection* selection) {
  if (choice == EngineChoice::kCpu) {
    auto e = make_cpu_engine(cpu);
    record({"cpu", kReasonForced, e->description()}, selection);
    return e;
  }
  auto g = make_gpu();
  std::string why;
  if (g.is_ok()) {
    auto reference = make_cpu_engine(gpu_reference_options(cpu));
    Status st = check_engine_matches_cpu(*g.value(), *reference);
    if (st.is_ok()) {
      record({"gpu", kReasonPassed, g.value()->description()}, selection);
      return std::move(g).value();
    }
    if (choice == EngineChoice::kGpu) return st.with_context("--engine=gpu: GPU reference check failed");
    why = kReasonFailed + st.message();
  } else {
    if (choice == EngineChoice::kGpu) return g.status().with_context("--engine=gpu");
    why = kReasonNoGpu + g.status().message();
  }
  auto e = make_cpu_engine(cpu);
  record({"cpu", why, e->description()}, selection);
  return e;
}

Result<std::unique_ptr<CodecEngine>> choose_engine(EngineChoice choice, const GpuOptions& gpu,
                                                   const CpuEngineOptions& cpu, EngineSelection* selection) {
  return choose_engine_with(
      choice, [&gpu] { return make_gpu_engine(gpu); }, cpu, selection);
}

std::optional<EngineSelection> last_engine_selection() {
  std::lock_guard lock(selection_mu);
  return selection_last;
}

}  // namespace ferry
