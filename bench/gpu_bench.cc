// gpu_bench.cc: `ferry-bench gpu`: the codec engines on multi-GB inputs:
// bf16, fp16 and fp32 N(0, 0.02 * f) with one factor f in [0.5, 1.5] per MiB,
// and corpus weights tiled. Per input: ratio, the exponent plane's order-0
// entropy bound, CPU engine encode+hash and decode+verify on all host cores;
// and on a GPU, device-resident encode+hash and decode+verify, each also as
// a fraction of a device-to-device copy measured in the same run, and the
// host-to-host pipeline (host buffers in, frames back in host memory).
// Without a GPU it says why and exits 0 after the CPU part.
#include <gflags/gflags.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "bench/bench.h"
#include "codec/engine.h"
#include "cuda/gpu_engine.h"
#include "cuda/gpu_memory.h"

DEFINE_uint64(gpu_bench_bytes, 2ull << 30, "ferry-bench gpu: bytes per input on the GPU");
DEFINE_uint64(gpu_bench_cpu_bytes, 256ull << 20, "ferry-bench gpu: bytes per input on the CPU engine");
DEFINE_uint64(gpu_bench_chunk_bytes, 4u << 20, "ferry-bench gpu: chunk size");
DEFINE_string(gpu_bench_corpus, "", "ferry-bench gpu: corpus dir (default $FERRY_CORPUS_DIR)");

namespace ferry::bench {
namespace {

using Bytes = std::vector<std::byte>;

std::uint16_t to_half(float f) {
  std::uint32_t x;
  std::memcpy(&x, &f, 4);
  std::uint32_t sign = (x >> 16) & 0x8000;
  std::int32_t e = static_cast<std::int32_t>((x >> 23) & 0xff) - 112;
  if (e <= 0) return static_cast<std::uint16_t>(sign);
  std::uint32_t h = sign | (static_cast<std::uint32_t>(e) << 10) | ((x >> 13) & 0x3ff);
  std::uint32_t rem = x & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) ++h;
  return static_cast<std::uint16_t>(h);
}

// N(0, 0.02 f) with one f in [0.5, 1.5] per MiB.
Bytes scaled_normal(std::size_t bytes, DType t, std::uint64_t seed) {
  Bytes out(bytes);
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> factor(0.5f, 1.5f);
  const std::size_t w = element_bytes(t), mib = 1u << 20;
  for (std::size_t at = 0; at < bytes; at += mib) {
    std::normal_distribution<float> dist(0.0f, 0.02f * factor(rng));
    for (std::size_t i = at; i + w <= std::min(bytes, at + mib); i += w) {
      float f = dist(rng);
      std::uint32_t x;
      std::memcpy(&x, &f, 4);
      if (t == DType::kF32) {
        std::memcpy(&out[i], &x, 4);
      } else {
        auto h =
            t == DType::kBF16 ? static_cast<std::uint16_t>((x + 0x7fff + ((x >> 16) & 1)) >> 16) : to_half(f);
        std::memcpy(&out[i], &h, 2);
      }
    }
  }
  return out;
}

double exponent_bound(const Bytes& d, std::size_t w) {
  std::vector<double> c(256, 0);
  std::size_t n = d.size() / w;
  for (std::size_t i = 0; i < n; ++i) {
    std::uint32_t e = 0;
    std::memcpy(&e, &d[i * w], w);
    std::uint32_t r = w == 2 ? ((e << 1) | (e >> 15)) & 0xffff : (e << 1) | (e >> 31);
    c[(r >> (8 * (w - 1))) & 0xff] += 1;
  }
  double bits = 0;
  for (double v : c)
    if (v > 0) bits -= v * std::log2(v / n);
  return static_cast<double>(d.size()) / (bits / 8 + static_cast<double>(n) * (w - 1));
}

struct CorpusRow {
  std::string name, dtype, path;
};

// Rows of $FERRY_CORPUS_DIR/corpus.tsv (name, bytes, sha256, dtype, ...).
std::vector<CorpusRow> corpus_rows() {
  std::string dir = FLAGS_gpu_bench_corpus;
  if (dir.empty() && std::getenv("FERRY_CORPUS_DIR")) dir = std::getenv("FERRY_CORPUS_DIR");
  std::vector<CorpusRow> rows;
  if (dir.empty()) return rows;
  std::ifstream in(dir + "/corpus.tsv");
  std::string line, bytes, sha;
  std::getline(in, line);
  while (std::getline(in, line)) {
    std::istringstream row(line);
    CorpusRow r;
    std::getline(row, r.name, '\t');
    std::getline(row, bytes, '\t');
    std::getline(row, sha, '\t');
    std::getline(row, r.dtype, '\t');
    r.path = dir + "/" + r.name;
    if (!r.name.empty()) rows.push_back(r);
  }
  return rows;
}

Bytes slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  Bytes b(s.size());
  std::memcpy(b.data(), s.data(), s.size());
  return b;
}

struct Run {
  double ratio = 0, enc_gbps = 0, dec_gbps = 0;
  bool ok = true;
};

// Encodes then decodes `data` in chunks, `space` memory; data/frames/out are
// spans in that memory.
Run run_engine(CodecEngine& e, std::span<const std::byte> data, DType t, std::span<std::byte> frames,
               std::span<std::byte> out, MemorySpace space, std::size_t chunk) {
  const std::size_t k = (data.size() + chunk - 1) / chunk;
  std::vector<EncodeJob> jobs;
  for (std::size_t i = 0; i < k; ++i) {
    std::size_t len = std::min(chunk, data.size() - i * chunk);
    jobs.push_back({data.subspan(i * chunk, len), t, false,
                    frames.subspan(i * max_frame_bytes(chunk), max_frame_bytes(len))});
  }
  std::vector<EncodedChunk> res(k);
  Run r;
  double t0 = mono_seconds();
  Status st = e.encode(jobs, res, space);
  r.enc_gbps = data.size() / (mono_seconds() - t0) / 1e9;
  if (!st.is_ok()) {
    std::printf("  %s encode failed: %s\n", std::string(e.kind()).c_str(), st.to_string().c_str());
    r.ok = false;
    return r;
  }
  std::size_t coded = 0;
  std::vector<DecodeJob> djobs;
  for (std::size_t i = 0; i < k; ++i) {
    coded += res[i].frame_bytes;
    djobs.push_back(
        {jobs[i].frame.first(res[i].frame_bytes), out.subspan(i * chunk, jobs[i].data.size()), res[i].id});
  }
  r.ratio = static_cast<double>(data.size()) / coded;
  std::vector<Status> sts(k);
  t0 = mono_seconds();
  st = e.decode(djobs, sts, space);
  r.dec_gbps = data.size() / (mono_seconds() - t0) / 1e9;
  for (auto& s : sts)
    if (!s.is_ok()) {
      std::printf("  %s decode failed: %s\n", std::string(e.kind()).c_str(), s.to_string().c_str());
      r.ok = false;
      break;
    }
  return r;
}

}  // namespace

FERRY_BENCH(gpu, "codec engines: GPU (device-resident, and host pipeline) beside the CPU engine") {
  (void)args;
  const std::size_t chunk = FLAGS_gpu_bench_chunk_bytes;
  struct Input {
    std::string name;
    DType t;
    Bytes data;
  };
  std::vector<Input> inputs;
  std::size_t gbytes = FLAGS_gpu_bench_bytes;
  std::string why = gpu_unavailable_reason(0);
  if (!why.empty()) {
    std::printf("gpu: no usable GPU (%s): CPU engine only\n", why.c_str());
    gbytes = FLAGS_gpu_bench_cpu_bytes;
  }
  for (auto [name, t] : {std::pair{"bf16 N(0,0.02f)", DType::kBF16},
                         {"fp16 N(0,0.02f)", DType::kF16},
                         {"fp32 N(0,0.02f)", DType::kF32}})
    inputs.push_back({name, t, scaled_normal(gbytes, t, 7)});
  for (const auto& f : corpus_rows()) {
    if (f.dtype != "bf16" && f.dtype != "fp16" && f.dtype != "fp32") continue;
    Bytes one = slurp(f.path);
    if (one.empty()) continue;
    Bytes tiled;
    tiled.reserve(gbytes);
    while (tiled.size() < gbytes) {
      std::size_t take = std::min(one.size(), gbytes - tiled.size());
      tiled.insert(tiled.end(), one.begin(), one.begin() + static_cast<std::ptrdiff_t>(take));
    }
    DType t = f.dtype == "fp32" ? DType::kF32 : f.dtype == "fp16" ? DType::kF16 : DType::kBF16;
    inputs.push_back({"corpus " + f.name + " tiled", t, std::move(tiled)});
  }

  auto cpu = make_cpu_engine();
  std::unique_ptr<CodecEngine> gpu;
  double copy_gbps = 0;
  if (why.empty()) {
    auto g = make_gpu_engine();
    if (!g.is_ok()) {
      std::printf("gpu: engine failed: %s\n", g.status().to_string().c_str());
      return 1;
    }
    gpu = std::move(g).value();
    auto c = gpu_copy_gbps(std::size_t{1} << 30);
    copy_gbps = c.is_ok() ? c.value() : 0;
    std::printf("gpu: %s; device-to-device copy %.0f GB/s (read+write)\n", gpu->description().c_str(),
                copy_gbps);
  }
  std::printf("%-34s %7s %7s | %9s %9s | %9s %9s %6s %6s | %9s %9s\n", "input", "ratio", "bound", "cpu enc",
              "cpu dec", "gpu enc", "gpu dec", "/copy", "/copy", "h2h enc", "h2h dec");
  int rc = 0;
  for (auto& in : inputs) {
    std::size_t cpu_bytes = std::min(in.data.size(), static_cast<std::size_t>(FLAGS_gpu_bench_cpu_bytes));
    std::span<const std::byte> cd(in.data.data(), cpu_bytes);
    std::size_t k = (cpu_bytes + chunk - 1) / chunk;
    Bytes frames(k * max_frame_bytes(chunk)), out(cpu_bytes);
    Run c = run_engine(*cpu, cd, in.t, frames, out, MemorySpace::kHost, chunk);
    double bound = exponent_bound(in.data, element_bytes(in.t));
    Run g, h;
    if (gpu) {
      std::size_t kk = (in.data.size() + chunk - 1) / chunk;
      auto d = GpuBuffer::allocate(in.data.size());
      auto f = GpuBuffer::allocate(kk * max_frame_bytes(chunk));
      auto o = GpuBuffer::allocate(in.data.size());
      if (d.is_ok() && f.is_ok() && o.is_ok() && d->upload(in.data).is_ok()) {
        run_engine(*gpu, d->span(), in.t, f->span(), o->span(), MemorySpace::kDevice, chunk);  // warm
        g = run_engine(*gpu, d->span(), in.t, f->span(), o->span(), MemorySpace::kDevice, chunk);
      }
      Bytes hf(kk * max_frame_bytes(chunk)), ho(in.data.size());
      h = run_engine(*gpu, in.data, in.t, hf, ho, MemorySpace::kHost, chunk);
      if (!g.ok || !h.ok || ho != in.data) rc = 1;
    }
    if (!c.ok) rc = 1;
    std::printf("%-34s %7.3f %7.3f | %9.2f %9.2f | %9.1f %9.1f %6.3f %6.3f | %9.1f %9.1f\n", in.name.c_str(),
                gpu ? g.ratio : c.ratio, bound, c.enc_gbps, c.dec_gbps, g.enc_gbps, g.dec_gbps,
                copy_gbps > 0 ? g.enc_gbps / copy_gbps : 0.0, copy_gbps > 0 ? g.dec_gbps / copy_gbps : 0.0,
                h.enc_gbps, h.dec_gbps);
  }
  std::printf("GB/s are logical (uncompressed) bytes; cpu columns use all host cores on %zu MiB.\n",
              static_cast<std::size_t>(FLAGS_gpu_bench_cpu_bytes >> 20));
  return rc;
}

}  // namespace ferry::bench
