// restore_bench.cc: `ferry-bench restore`: a checkpoint from disk into GPU
// memory, ferry against the loaders people use, in one run on one GPU. A bf16
// safetensors checkpoint with transformer shapes and N(0, 0.02) values is
// generated with torch (python3), packed by ferry into a .ferry archive, then
// loaded onto cuda:0 by:
//   ferry        restore_to_device (compressed frames cross PCIe, GPU decode
//                and verification);
//   safetensors  safetensors.torch.load_file(path, device="cuda:0");
//   torch.load   torch.load(same tensors as .pt, mmap=True, map_location="cuda:0");
//   ceiling      the uncompressed ceiling: the same safetensors file read by 16
//                threads with pread into pinned memory, each overlapping its
//                host-to-device copies with its next read.
// Each warm (from the page cache) and, as root, cold (after
// `echo 3 > /proc/sys/vm/drop_caches`). GB/s are the checkpoint's logical
// bytes over wall time; the Python loaders are timed inside the interpreter
// (after imports, with a final torch.cuda.synchronize()). Without a GPU it
// says so and exits 0.
#include <fcntl.h>
#include <gflags/gflags.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "base/posix_file.h"
#include "base/thread_pool.h"
#include "bench/bench.h"
#include "codec/archive.h"
#include "codec/packer.h"
#include "cuda/gpu_engine.h"
#include "cuda/gpu_memory.h"
#include "replication/device_restore.h"
#include "replication/frame_sources.h"

DEFINE_double(restore_gb, 6.4, "ferry-bench restore: checkpoint size to generate, GB");
DEFINE_string(restore_work, "", "ferry-bench restore: working directory (default $TMPDIR or /tmp)");
DEFINE_string(restore_python, "python3", "ferry-bench restore: the Python with torch and safetensors");
DEFINE_int32(restore_threads, 16, "ferry-bench restore: reader threads of the ceiling and of ferry");
DEFINE_bool(restore_cold, true, "ferry-bench restore: also run cold rows (needs root for drop_caches)");
DECLARE_string(json_out);

namespace ferry::bench {
namespace {

namespace fs = std::filesystem;

// Per thread of the ceiling: two pinned buffers of this size, alternating.
constexpr std::size_t kCeilingBlockBytes = 16u << 20;

// Generates model.safetensors and model.pt (the same tensors) under `dir`:
// a Llama-like stack of bf16 layers until `gb` is reached.
constexpr const char* kGenerateScript = R"PY(
import sys, torch
from safetensors.torch import save_file
out, gb = sys.argv[1], float(sys.argv[2])
hidden, inter, vocab = 4096, 14336, 32000
g = torch.Generator(device="cuda").manual_seed(1234)
def w(*shape):
    return (torch.randn(*shape, generator=g, device="cuda", dtype=torch.float32) * 0.02).to(torch.bfloat16).cpu()
t = {"model.embed_tokens.weight": w(vocab, hidden)}
total, i = t["model.embed_tokens.weight"].numel() * 2, 0
while total < gb * 1e9:
    p = f"model.layers.{i}."
    for name, shape in [("self_attn.q_proj.weight", (hidden, hidden)), ("self_attn.k_proj.weight", (1024, hidden)),
                        ("self_attn.v_proj.weight", (1024, hidden)), ("self_attn.o_proj.weight", (hidden, hidden)),
                        ("mlp.gate_proj.weight", (inter, hidden)), ("mlp.up_proj.weight", (inter, hidden)),
                        ("mlp.down_proj.weight", (hidden, inter)), ("input_layernorm.weight", (hidden,)),
                        ("post_attention_layernorm.weight", (hidden,))]:
        t[p + name] = w(*shape)
        total += t[p + name].numel() * 2
    i += 1
save_file(t, out + "/model.safetensors")
torch.save(t, out + "/model.pt")
print(f"generated {len(t)} tensors, {total} bytes, {i} layers")
)PY";

constexpr const char* kSafetensorsScript = R"PY(
import sys, time, torch
from safetensors.torch import load_file
torch.cuda.init(); torch.zeros(1, device="cuda:0"); torch.cuda.synchronize()
t0 = time.perf_counter()
d = load_file(sys.argv[1], device="cuda:0")
torch.cuda.synchronize()
print("seconds=%.6f" % (time.perf_counter() - t0))
)PY";

constexpr const char* kTorchLoadScript = R"PY(
import sys, time, torch
torch.cuda.init(); torch.zeros(1, device="cuda:0"); torch.cuda.synchronize()
t0 = time.perf_counter()
d = torch.load(sys.argv[1], mmap=True, map_location="cuda:0", weights_only=True)
torch.cuda.synchronize()
print("seconds=%.6f" % (time.perf_counter() - t0))
)PY";

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// Runs `python -c script args...`; the last "seconds=" line, or a negative
// number (the output is printed) when it failed.
double run_python(const std::string& script, const std::vector<std::string>& args, std::string* output) {
  std::string cmd = shell_quote(FLAGS_restore_python) + " -c " + shell_quote(script);
  for (const std::string& a : args) cmd += " " + shell_quote(a);
  cmd += " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return -1;
  std::string out;
  char buf[4096];
  while (std::fgets(buf, sizeof buf, p)) out += buf;
  const int rc = ::pclose(p);
  if (output) *output = out;
  const auto at = out.rfind("seconds=");
  if (rc != 0 || at == std::string::npos) {
    std::fprintf(stderr, "restore bench: python failed (rc %d):\n%s\n", rc, out.c_str());
    return -1;
  }
  return std::atof(out.c_str() + at + 8);
}

bool drop_caches() {
  ::sync();
  std::ofstream f("/proc/sys/vm/drop_caches");
  f << "3\n";
  f.flush();
  return f.good();
}

void warm_cache(const fs::path& path) {
  auto fd = open_fd(path, O_RDONLY);
  if (!fd) return;
  std::vector<std::byte> buf(64u << 20);
  while (::read(fd->get(), buf.data(), buf.size()) > 0) {
  }
}

// The uncompressed ceiling: `threads` threads, each reading its share of
// the file in blocks with pread into two pinned buffers and copying each to
// the device on its own stream while it reads the next.
Result<double> ceiling_seconds(const fs::path& path, int threads) {
  const std::uint64_t size = fs::file_size(path);
  ASSIGN_OR_RETURN(std::shared_ptr<std::byte> device, gpu_allocate_shared(size, 0));
  ASSIGN_OR_RETURN(UniqueFd fd, open_fd(path, O_RDONLY));
  struct Worker {
    GpuStream stream;
    std::shared_ptr<std::byte> pinned[2];
  };
  std::vector<Worker> workers(static_cast<std::size_t>(threads));
  for (Worker& w : workers) {
    ASSIGN_OR_RETURN(w.stream, GpuStream::create(0));
    for (auto& b : w.pinned) {
      ASSIGN_OR_RETURN(b, pinned_allocate_shared(kCeilingBlockBytes));
    }
  }
  std::atomic<std::uint64_t> next{0};
  std::vector<Status> status(workers.size());
  const double start = mono_seconds();
  std::vector<std::thread> pool;
  for (std::size_t t = 0; t < workers.size(); ++t) {
    pool.emplace_back([&, t] {
      Worker& w = workers[t];
      Status st = gpu_set_device(0);
      int which = 0;
      while (st.is_ok()) {
        const std::uint64_t at = next.fetch_add(kCeilingBlockBytes);
        if (at >= size) break;
        const std::size_t n =
            static_cast<std::size_t>(std::min<std::uint64_t>(kCeilingBlockBytes, size - at));
        // The copy queued from this buffer two blocks ago must be done first.
        if (which == 0) st = w.stream.synchronize();
        if (!st) break;
        st = pread_exact(fd.get(), std::span<std::byte>(w.pinned[which].get(), n), at, path);
        if (st) st = w.stream.copy_to_device_async(device.get() + at, w.pinned[which].get(), n);
        which ^= 1;
      }
      if (st) st = w.stream.synchronize();
      status[t] = st;
    });
  }
  for (std::thread& th : pool) th.join();
  const double s = mono_seconds() - start;
  for (const Status& st : status) RETURN_IF_ERROR(st);
  return s;
}

Result<double> ferry_seconds(const fs::path& archive, int threads, std::string* engine) {
  ThreadPool pool(static_cast<std::size_t>(threads));
  ASSIGN_OR_RETURN(std::unique_ptr<FrameSource> source, replication::open_frame_source(archive.string()));
  replication::DeviceRestoreOptions o;
  o.device = {replication::Device::Kind::kCuda, 0};
  o.pool = &pool;
  ASSIGN_OR_RETURN(replication::DeviceRestoreResult r, replication::restore_to_device(*source, o));
  *engine = r.report.engine;
  return r.report.seconds;
}

struct Row {
  std::string name;
  double warm = -1, cold = -1;  // seconds; negative: not run or failed
};

}  // namespace

FERRY_BENCH(restore, "checkpoint into GPU memory: ferry vs safetensors, torch.load and the pread ceiling") {
  (void)args;
  const std::string why = gpu_unavailable_reason(0);
  if (!why.empty()) {
    std::printf("restore: skipped: no usable GPU: %s (GPU figures count only when measured on a GPU)\n",
                why.c_str());
    return 0;
  }
  fs::path work = FLAGS_restore_work.empty() ? fs::temp_directory_path() : fs::path(FLAGS_restore_work);
  work /= "ferry-restore-bench";
  fs::create_directories(work);
  const fs::path st_path = work / "model.safetensors", pt_path = work / "model.pt",
                 archive = work / "model.ferry";
  if (!fs::exists(st_path) || !fs::exists(pt_path)) {
    std::string out;
    const double t0 = mono_seconds();
    run_python(std::string(kGenerateScript) + "\nprint('seconds=0')",
               {work.string(), std::to_string(FLAGS_restore_gb)}, &out);
    std::printf("restore: %s (%.1f s)\n", out.substr(0, out.find('\n')).c_str(), mono_seconds() - t0);
    if (!fs::exists(st_path)) return 1;
  }
  const std::uint64_t bytes = fs::file_size(st_path);
  if (!fs::exists(archive)) {
    ThreadPool pool(static_cast<std::size_t>(FLAGS_restore_threads));
    auto engine = choose_engine(EngineChoice::kAuto, GpuOptions{}, CpuEngineOptions{&pool});
    auto sources = list_pack_sources(st_path);
    auto writer = ArchiveWriter::create(archive);
    if (!engine || !sources || !writer) {
      std::fprintf(stderr, "restore: cannot pack: %s\n",
                   (!engine    ? engine.status()
                    : !sources ? sources.status()
                               : writer.status())
                       .to_string()
                       .c_str());
      return 1;
    }
    PackOptions po;
    po.pool = &pool;
    po.engine = engine->get();
    const double t0 = mono_seconds();
    auto m = pack_files(*sources, po, *writer);
    Status st = m ? writer->finish(*m) : m.status();
    if (!st) {
      std::fprintf(stderr, "restore: pack failed: %s\n", st.to_string().c_str());
      return 1;
    }
    std::printf("restore: packed in %.1f s\n", mono_seconds() - t0);
  }
  const double ratio = static_cast<double>(bytes) / static_cast<double>(fs::file_size(archive));
  const bool cold = FLAGS_restore_cold && ::geteuid() == 0;
  std::string engine;

  std::vector<Row> rows = {{"ferry"}, {"safetensors"}, {"torch.load"}, {"ceiling"}};
  for (int pass = 0; pass < (cold ? 2 : 1); ++pass) {
    const bool is_cold = pass == 1;
    for (Row& row : rows) {
      const fs::path& input = row.name == "ferry" ? archive : row.name == "torch.load" ? pt_path : st_path;
      if (is_cold) {
        drop_caches();
      } else {
        warm_cache(input);
      }
      double s = -1;
      if (row.name == "ferry") {
        auto r = ferry_seconds(archive, FLAGS_restore_threads, &engine);
        if (r)
          s = *r;
        else
          std::fprintf(stderr, "restore: ferry: %s\n", r.status().to_string().c_str());
      } else if (row.name == "safetensors") {
        s = run_python(kSafetensorsScript, {st_path.string()}, nullptr);
      } else if (row.name == "torch.load") {
        s = run_python(kTorchLoadScript, {pt_path.string()}, nullptr);
      } else {
        auto r = ceiling_seconds(st_path, FLAGS_restore_threads);
        if (r)
          s = *r;
        else
          std::fprintf(stderr, "restore: ceiling: %s\n", r.status().to_string().c_str());
      }
      (is_cold ? row.cold : row.warm) = s;
    }
  }
  auto gbps = [&](double s) { return s > 0 ? static_cast<double>(bytes) / s / 1e9 : 0.0; };
  std::printf("\nrestore: %.2f GB bf16 safetensors onto cuda:0, archive ratio %.3f, engine %s\n",
              static_cast<double>(bytes) / 1e9, ratio, engine.c_str());
  std::printf("%-12s %12s %12s\n", "loader", "warm GB/s", cold ? "cold GB/s" : "cold (root)");
  for (const Row& r : rows) std::printf("%-12s %12.2f %12.2f\n", r.name.c_str(), gbps(r.warm), gbps(r.cold));
  auto x = [&](const Row& a, const Row& b, bool c) {
    const double sa = c ? a.cold : a.warm, sb = c ? b.cold : b.warm;
    return sa > 0 && sb > 0 ? sb / sa : 0.0;
  };
  std::printf("ferry / ceiling: warm %.2fx (target >= 1.2x), cold %.2fx\n", x(rows[0], rows[3], false),
              x(rows[0], rows[3], true));
  std::printf("ferry / safetensors: warm %.2fx (target >= 5x), cold %.2fx (target >= 1.3x)\n",
              x(rows[0], rows[1], false), x(rows[0], rows[1], true));
  if (!FLAGS_json_out.empty()) {
    std::ofstream j(FLAGS_json_out);
    j << "{\"bench\":\"restore\",\"bytes\":" << bytes << ",\"ratio\":" << ratio << ",\"engine\":\"" << engine
      << "\",\"rows\":[";
    for (std::size_t i = 0; i < rows.size(); ++i) {
      j << (i ? "," : "") << "{\"loader\":\"" << rows[i].name << "\",\"warm_gbps\":" << gbps(rows[i].warm)
        << ",\"cold_gbps\":" << gbps(rows[i].cold) << "}";
    }
    j << "]}\n";
  }
  return 0;
}

}  // namespace ferry::bench
