// delta_bench.cc: `ferry-bench delta`: delta frames on a real training run.
// The bench trains a small byte-level transformer on the CPU with PyTorch
// (real text: Python's own library sources; AdamW, bf16 autocast), writes
// checkpoints at chosen steps as one safetensors file per tensor class
// (bf16 weights, fp32 master weights, Adam exp_avg and exp_avg_sq), and then
// measures, per class and for spacings of 10 and 100 steps while
// pretraining and fine-tuning: the ratio alone, the ratio as delta (what
// DeltaEncoder writes: per chunk the smaller of delta and standalone), the
// order-0 byte-plane bounds of the chunk alone, of its XOR with the base and
// of the folded difference (the transform ferry uses) computed in the same
// run, encode and decode GB/s of one core, ZipNN's delta compression (XOR,
// then its codec) on the same pairs, the whole checkpoints against what the
// per-class bounds predict, and the wire bytes of the series with and
// without deltas.
#include <gflags/gflags.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "bench/bench.h"
#include "codec/chunker.h"
#include "codec/delta_codec.h"
#include "codec/safetensors.h"
#include "codec/tree_hash.h"

DECLARE_string(json_out);      // bench/main.cc
DECLARE_string(zipnn_python);  // bench/codec_bench.cc
DECLARE_double(min_seconds);   // bench/codec_bench.cc
DECLARE_uint64(chunk_size);    // bench/codec_bench.cc
DEFINE_string(python, "python3", "a Python with torch and safetensors, to train the run");
DEFINE_string(run_dir, "",
              "where the run's checkpoints go (default: a temporary folder); reused when complete");
DEFINE_int32(d_model, 192, "model width");
DEFINE_int32(layers, 4, "transformer blocks");
DEFINE_int32(pretrain_steps, 300, "steps at --pretrain_lr");
DEFINE_int32(finetune_steps, 100, "steps at --finetune_lr after pretraining (at least 100)");
DEFINE_double(pretrain_lr, 3e-4, "AdamW learning rate while pretraining");
DEFINE_double(finetune_lr, 1e-5, "AdamW learning rate while fine-tuning");
DEFINE_int32(train_threads, 2, "torch threads for training");

namespace fs = std::filesystem;

namespace ferry::bench {
namespace {

// The training run. Checkpoints are what a training job keeps: the model in
// bf16 (a safetensors export) and the optimizer's fp32 state.
constexpr const char* kTrainScript = R"(import argparse, glob, os, time
import torch, torch.nn as nn
from safetensors.torch import save_file
ap = argparse.ArgumentParser()
for k, t, d in [("out", str, None), ("d_model", int, 192), ("layers", int, 4), ("seq", int, 64),
                ("batch", int, 8), ("pretrain_steps", int, 300), ("finetune_steps", int, 100),
                ("pretrain_lr", float, 3e-4), ("finetune_lr", float, 1e-5), ("save", str, ""),
                ("threads", int, 2)]:
    ap.add_argument("--" + k, type=t, default=d)
a = ap.parse_args()
torch.manual_seed(0); torch.set_num_threads(a.threads)
src = sorted(glob.glob(os.path.join(os.path.dirname(os.__file__), "*.py")))
text = b"".join(open(p, "rb").read() for p in src)[: 8 << 20]
data = torch.frombuffer(bytearray(text), dtype=torch.uint8).long()
class Block(nn.Module):
    def __init__(s, d):
        super().__init__()
        s.ln1, s.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        s.attn = nn.MultiheadAttention(d, max(1, d // 64), batch_first=True)
        s.ff = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))
    def forward(s, x, mask):
        h = s.ln1(x)
        x = x + s.attn(h, h, h, attn_mask=mask, need_weights=False)[0]
        return x + s.ff(s.ln2(x))
class LM(nn.Module):
    def __init__(s, d, L, T):
        super().__init__()
        s.emb, s.pos = nn.Embedding(256, d), nn.Parameter(torch.zeros(T, d))
        s.blocks = nn.ModuleList(Block(d) for _ in range(L))
        s.ln, s.head = nn.LayerNorm(d), nn.Linear(d, 256)
        s.register_buffer("mask", torch.triu(torch.full((T, T), float("-inf")), 1), persistent=False)
    def forward(s, idx):
        x = s.emb(idx) + s.pos[: idx.shape[1]]
        for b in s.blocks: x = b(x, s.mask)
        return s.head(s.ln(x))
model = LM(a.d_model, a.layers, a.seq)
opt = torch.optim.AdamW(model.parameters(), lr=a.pretrain_lr, weight_decay=0.1)
saves = {int(x) for x in a.save.split(",") if x}
for step in range(1, a.pretrain_steps + a.finetune_steps + 1):
    if step == a.pretrain_steps + 1:
        for g in opt.param_groups: g["lr"] = a.finetune_lr
    ix = torch.randint(0, len(data) - a.seq - 1, (a.batch,))
    xb = torch.stack([data[i : i + a.seq] for i in ix]); yb = torch.stack([data[i + 1 : i + a.seq + 1] for i in ix])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = nn.functional.cross_entropy(model(xb).float().view(-1, 256), yb.view(-1))
    opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
    if step in saves:
        d = os.path.join(a.out, "step-%d" % step); os.makedirs(d + ".tmp", exist_ok=True)
        ps, st = dict(model.named_parameters()), opt.state
        save_file({n: p.detach().to(torch.bfloat16).contiguous() for n, p in ps.items()}, d + ".tmp/bf16_weights.safetensors")
        save_file({n: p.detach().clone() for n, p in ps.items()}, d + ".tmp/fp32_master.safetensors")
        save_file({n: st[p]["exp_avg"].clone() for n, p in ps.items()}, d + ".tmp/exp_avg.safetensors")
        save_file({n: st[p]["exp_avg_sq"].clone() for n, p in ps.items()}, d + ".tmp/exp_avg_sq.safetensors")
        os.rename(d + ".tmp", d)
        print("step %d loss %.3f" % (step, loss.item()), flush=True)
print("params %d" % sum(p.numel() for p in model.parameters()), flush=True)
)";

// ZipNN 0.5.x delta compression, one thread, on the tensor bytes of a file
// against the same bytes of its base (ZipNN XORs them, then codes the
// result): compressed size and CPU seconds of one compress and one
// decompress, timed as the codec bench times ZipNN (after a first call,
// repeated until min_seconds, inputs copied outside the clock).
// After kZipnnPerCallPy.
constexpr const char* kZipnnDeltaScript = R"(from zipnn import ZipNN
cur, base, off, dtype, min_s = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], float(sys.argv[5])
data = open(cur, 'rb').read()[off:]; ref = open(base, 'rb').read()[off:]
z = ZipNN(bytearray_dtype=dtype, input_format='byte', threads=1, delta_compressed_type='byte')
c = z.compress(bytearray(data), delta_second_data=bytearray(ref))
assert bytes(z.decompress(c, delta_second_data=bytearray(ref))) == data, 'zipnn delta round trip differs'
te = per_call(lambda x, y: z.compress(x, delta_second_data=y), lambda: (bytearray(data), bytearray(ref)))
td = per_call(lambda x, y: z.decompress(x, delta_second_data=y), lambda: (c, bytearray(ref)))
print(len(c), te, td)
)";

struct TensorClass {
  const char* name;
  const char* file;
  int width;
  const char* zipnn_dtype;
};
constexpr TensorClass kClasses[] = {{"bf16 weights", "bf16_weights.safetensors", 2, "bfloat16"},
                                    {"fp32 master", "fp32_master.safetensors", 4, "float32"},
                                    {"exp_avg", "exp_avg.safetensors", 4, "float32"},
                                    {"exp_avg_sq", "exp_avg_sq.safetensors", 4, "float32"}};

// Order-0 entropy, in bytes, of each byte plane of width-w elements after
// the float codec's rotation by one bit (the tail at one byte a byte).
double order0_planes_bytes(std::span<const std::byte> v, int w) {
  const std::size_t n = v.size() / static_cast<std::size_t>(w);
  std::vector<std::array<std::uint64_t, 256>> counts(static_cast<std::size_t>(w));
  for (auto& c : counts) c.fill(0);
  for (std::size_t i = 0; i < n; ++i) {
    std::uint32_t x = 0;
    for (int k = 0; k < w; ++k) x |= static_cast<std::uint32_t>(v[i * w + k]) << (8 * k);
    const int bits = 8 * w;
    x = ((x << 1) | (x >> (bits - 1))) & (bits == 32 ? 0xffffffffu : ((1u << bits) - 1));
    for (int k = 0; k < w; ++k) ++counts[k][(x >> (8 * k)) & 0xff];
  }
  double bits = 0;
  for (auto& c : counts)
    for (std::uint64_t k : c)
      if (k) bits -= static_cast<double>(k) * std::log2(static_cast<double>(k) / static_cast<double>(n));
  return bits / 8 + static_cast<double>(v.size() - n * w);
}

std::vector<std::byte> read_all(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::vector<char> c((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::byte> v(c.size());
  std::memcpy(v.data(), c.data(), c.size());
  return v;
}

// One class of one checkpoint against its base.
struct ClassResult {
  std::uint64_t raw = 0;          // bytes of the file
  std::uint64_t alone = 0;        // frames coded alone
  std::uint64_t alone_dedup = 0;  // frames coded alone, less the chunks equal to their base
  std::uint64_t delta = 0;        // frames as DeltaEncoder writes them (chunks equal to their base: 0)
  std::uint64_t delta_chunks = 0, chunks = 0;
  double bound_alone = 0, bound_xor = 0, bound_diff = 0;  // order-0 bytes
  double bound_alone_dedup = 0;                           // bound_alone less the chunks equal to their base
  double bound_best = 0;                    // per chunk the best of the three (chunks equal to their base: 0)
  double encode_gbps = 0, decode_gbps = 0;  // one core, ids known; 0 when not timed
  double decode_verify_gbps = 0;            // decode + the chunk id recomputed
  std::optional<double> zipnn_ratio;
  double zipnn_encode_gbps = 0, zipnn_decode_gbps = 0;

  double best_bound() const { return bound_best; }
};

struct Checkpoint {
  std::vector<std::byte> bytes;
  std::vector<ChunkPlan> plan;
  std::uint64_t data_offset = 0;
};

Result<Checkpoint> load(const fs::path& path) {
  Checkpoint c;
  c.bytes = read_all(path);
  ASSIGN_OR_RETURN(SafetensorsLayout layout, read_safetensors_layout(path));
  c.plan = plan_chunks(c.bytes.size(), &layout, FLAGS_chunk_size);
  c.data_offset = layout.data_offset;
  return c;
}

void run_zipnn(const fs::path& cur, const fs::path& base, const Checkpoint& c, const TensorClass& k,
               ClassResult& r) {
  if (FLAGS_zipnn_python.empty()) return;
  const fs::path script = fs::temp_directory_path() / "ferry-bench-zipnn-delta.py";
  std::ofstream(script) << kZipnnPerCallPy << kZipnnDeltaScript;
  const std::string cmd = FLAGS_zipnn_python + " " + script.string() + " '" + cur.string() + "' '" +
                          base.string() + "' " + std::to_string(c.data_offset) + " " + k.zipnn_dtype + " " +
                          std::to_string(FLAGS_min_seconds) + " 2>/dev/null";
  FILE* f = popen(cmd.c_str(), "r");
  if (f == nullptr) return;
  unsigned long long size = 0;
  double te = 0, td = 0;
  const int got = std::fscanf(f, "%llu %lf %lf", &size, &te, &td);
  if (pclose(f) != 0 || got != 3 || size == 0) {
    std::fprintf(stderr, "ferry-bench delta: zipnn failed on %s\n", cur.c_str());
    return;
  }
  const double bytes = static_cast<double>(c.bytes.size() - c.data_offset);
  r.zipnn_ratio = bytes / static_cast<double>(size);
  r.zipnn_encode_gbps = te > 0 ? bytes / 1e9 / te : 0;
  r.zipnn_decode_gbps = td > 0 ? bytes / 1e9 / td : 0;
}

Result<ClassResult> measure_class(const fs::path& cur_path, const fs::path& base_path, const TensorClass& k,
                                  bool timed) {
  ASSIGN_OR_RETURN(Checkpoint cur, load(cur_path));
  ASSIGN_OR_RETURN(Checkpoint base, load(base_path));
  if (cur.plan != base.plan)
    return Status::invalid_argument(cur_path.string() + ": layout differs from its base");
  ClassResult r;
  r.raw = cur.bytes.size();
  DeltaEncoder enc;
  ChunkEncoder alone_enc;
  std::vector<std::byte> frame, xr;
  std::vector<std::vector<std::byte>> frames;
  std::vector<Digest> ids, base_ids;
  auto chunk_of = [&](const Checkpoint& c, const ChunkPlan& p) {
    return std::span<const std::byte>(c.bytes).subspan(p.offset, p.length);
  };
  for (const ChunkPlan& p : cur.plan) {
    auto a = chunk_of(cur, p), b = chunk_of(base, p);
    ids.push_back(chunk_id(a));
    base_ids.push_back(chunk_id(b));
    const EncodeOptions opts{.trial = p.trial};
    const std::uint32_t alone = alone_enc.encode_with_id(a, p.dtype, ids.back(), frame, opts).frame_bytes;
    EncodedChunk e = enc.encode(a, p.dtype, ids.back(), b, base_ids.back(), frame, opts);
    r.alone += alone;
    // A chunk equal to its base (the safetensors header) is already at the
    // target: dedup sends nothing, with or without deltas.
    const bool same = ids.back() == base_ids.back();
    r.alone_dedup += same ? 0 : alone;
    r.delta += same ? 0 : e.frame_bytes;
    r.delta_chunks += is_delta_codec(e.codec) ? 1 : 0;
    ++r.chunks;
    frames.push_back(frame);
    // Bounds over the tensor bytes at the class's width; a header chunk is
    // bytes and counted at its coded size in all three.
    const int w = p.dtype == DType::kBytes ? 1 : k.width;
    xr.resize(a.size());
    const double alone_bound = order0_planes_bytes(a, w);
    r.bound_alone += alone_bound;
    if (same) continue;  // nothing to send as a delta
    r.bound_alone_dedup += alone_bound;
    for (std::size_t i = 0; i < a.size(); ++i) xr[i] = a[i] ^ b[i];
    const double xor_bound = order0_planes_bytes(xr, w);
    r.bound_xor += xor_bound;
    delta_transform(a, b, w, xr);
    const double diff_bound = order0_planes_bytes(xr, w);
    r.bound_diff += diff_bound;
    r.bound_best += std::min({alone_bound, xor_bound, diff_bound});
  }
  if (timed) {
    // Into a frame buffer of frame_room_bytes, as the CPU engine codes into
    // the packer's: what a push does, with no copy of the frame.
    std::size_t room_bytes = 0;
    for (const ChunkPlan& p : cur.plan) room_bytes = std::max(room_bytes, frame_room_bytes(p.length));
    std::vector<std::byte> room(room_bytes);
    const double enc_s = cpu_seconds_per_run(FLAGS_min_seconds, [&] {
      for (std::size_t i = 0; i < cur.plan.size(); ++i) {
        const ChunkPlan& p = cur.plan[i];
        enc.encode_into(chunk_of(cur, p), p.dtype, ids[i], chunk_of(base, p), base_ids[i], room,
                        {.trial = p.trial});
      }
    });
    DeltaDecoder dec;
    std::vector<std::byte> out;
    const double dec_s = cpu_seconds_per_run(FLAGS_min_seconds, [&] {
      for (std::size_t i = 0; i < cur.plan.size(); ++i) {
        const ChunkPlan& p = cur.plan[i];
        out.resize(p.length);
        Status st = dec.decode(frames[i], chunk_of(base, p), out, &ids[i]);
        FERRY_CHECK(st.is_ok());
      }
    });
    const double hash_s = cpu_seconds_per_run(FLAGS_min_seconds, [&] {
      for (const ChunkPlan& p : cur.plan) FERRY_CHECK(chunk_id(chunk_of(cur, p)) != Digest{});
    });
    r.encode_gbps = static_cast<double>(r.raw) / 1e9 / enc_s;
    r.decode_gbps = static_cast<double>(r.raw) / 1e9 / std::max(dec_s - hash_s, 1e-9);
    r.decode_verify_gbps = static_cast<double>(r.raw) / 1e9 / dec_s;
    run_zipnn(cur_path, base_path, cur, k, r);
  }
  return r;
}

struct PairSpec {
  const char* phase;
  int spacing;
  int step, base_step;
};

int train(const fs::path& run, const std::vector<int>& steps) {
  bool complete = true;
  for (int s : steps) complete = complete && fs::exists(run / ("step-" + std::to_string(s)));
  if (complete) {
    std::printf("reusing the run in %s\n", run.c_str());
    return 0;
  }
  const fs::path script = fs::temp_directory_path() / "ferry-bench-delta-train.py";
  std::ofstream(script) << kTrainScript;
  std::string save;
  for (int s : steps) save += (save.empty() ? "" : ",") + std::to_string(s);
  char lr[64];
  std::snprintf(lr, sizeof lr, " --pretrain_lr %g --finetune_lr %g", FLAGS_pretrain_lr, FLAGS_finetune_lr);
  const std::string cmd = FLAGS_python + " " + script.string() + " --out '" + run.string() + "' --d_model " +
                          std::to_string(FLAGS_d_model) + " --layers " + std::to_string(FLAGS_layers) +
                          " --pretrain_steps " + std::to_string(FLAGS_pretrain_steps) + " --finetune_steps " +
                          std::to_string(FLAGS_finetune_steps) + lr + " --threads " +
                          std::to_string(FLAGS_train_threads) + " --save " + save;
  std::printf("training: %s\n", cmd.c_str());
  std::fflush(stdout);
  return std::system(cmd.c_str()) == 0 ? 0 : 1;
}

}  // namespace

FERRY_BENCH(delta, "delta frames on a real training run made here (PyTorch on the CPU)") {
  (void)args;
  if (FLAGS_finetune_steps < 100 || FLAGS_pretrain_steps < 200) {
    std::fprintf(stderr, "ferry-bench delta: needs --pretrain_steps >= 200 and --finetune_steps >= 100\n");
    return 2;
  }
  const int P = FLAGS_pretrain_steps, F = P + FLAGS_finetune_steps;
  const std::vector<PairSpec> table = {{"pretrain", 100, P, P - 100},
                                       {"pretrain", 10, P, P - 10},
                                       {"finetune", 100, F, F - 100},
                                       {"finetune", 10, F, F - 10}};
  // The series pushed one after another (each against the one before).
  std::vector<int> series = {P - 100, P - 10, P, F - 10, F};
  if (F - 100 != P) series.insert(series.begin() + 3, F - 100);
  std::vector<int> steps = series;
  std::sort(steps.begin(), steps.end());
  steps.erase(std::unique(steps.begin(), steps.end()), steps.end());

  const fs::path run =
      FLAGS_run_dir.empty() ? fs::temp_directory_path() / "ferry-bench-delta-run" : fs::path(FLAGS_run_dir);
  if (train(run, steps) != 0) {
    std::fprintf(stderr, "ferry-bench delta: training failed (torch and safetensors in %s?)\n",
                 FLAGS_python.c_str());
    return 1;
  }
  auto dir = [&](int step) { return run / ("step-" + std::to_string(step)); };
  std::printf(
      "\nrun: byte-level transformer d_model %d, %d layers, AdamW, bf16 autocast, %d steps at lr %g "
      "then %d at lr %g; chunks of %llu bytes\n",
      FLAGS_d_model, FLAGS_layers, P, FLAGS_pretrain_lr, F - P, FLAGS_finetune_lr,
      static_cast<unsigned long long>(FLAGS_chunk_size));
  std::printf(
      "ratios are raw bytes / coded bytes; bounds are order-0 byte-plane entropies of each chunk;\n"
      "delta = per chunk the smaller of delta and standalone (chunks as delta / all; a chunk equal to its "
      "base\n"
      "is deduplicated and costs nothing); GB/s of one core with chunk ids known: enc = the choice and\n"
      "the codings it makes, dec = rebuild, dec+v = rebuild and recompute the chunk id; zipnn = ZipNN's\n"
      "delta (XOR) on the same tensor bytes, one thread\n\n");
  std::printf("%-9s %4s  %-13s %6s %6s %6s %6s %6s  %5s %5s %5s %5s %7s %6s %6s  %s\n", "phase", "k", "class",
              "alone", "delta", "b.alon", "b.xor", "b.diff", "nd", "enc", "dec", "dec+v", "zipnn", "z.enc",
              "z.dec", "target");
  nlohmann::json rows = nlohmann::json::array();
  int misses = 0;
  for (const PairSpec& ps : table) {
    std::uint64_t wraw = 0, walone = 0, wdelta = 0;
    double wpred = 0, wpred_alone = 0;
    for (const TensorClass& k : kClasses) {
      auto r =
          measure_class(dir(ps.step) / k.file, dir(ps.base_step) / k.file, k, /*timed=*/ps.spacing == 100);
      if (!r.is_ok()) {
        std::fprintf(stderr, "ferry-bench delta: %s\n", r.status().to_string().c_str());
        return 1;
      }
      const double raw = static_cast<double>(r->raw);
      const double ratio_alone = raw / static_cast<double>(r->alone);
      const double ratio_delta = raw / static_cast<double>(r->delta);
      const double best = raw / r->best_bound();
      std::string target = "ok";
      if (ratio_delta < 0.97 * best) target = "MISS bound";
      if (r->delta > r->alone_dedup) target = "MISS alone";
      if (r->zipnn_ratio && ratio_delta < *r->zipnn_ratio) target = "MISS zipnn";
      if (r->encode_gbps > 0 && (r->encode_gbps < 1.0 || r->decode_gbps < 1.5)) target += " (speed)";
      if (target != "ok") ++misses;
      char zr[16] = "-", ze[16] = "-", zd[16] = "-", es[16] = "-", ds[16] = "-", dv[16] = "-";
      if (r->zipnn_ratio) {
        std::snprintf(zr, sizeof zr, "%.3f", *r->zipnn_ratio);
        std::snprintf(ze, sizeof ze, "%.2f", r->zipnn_encode_gbps);
        std::snprintf(zd, sizeof zd, "%.2f", r->zipnn_decode_gbps);
      }
      if (r->encode_gbps > 0) {
        std::snprintf(es, sizeof es, "%.2f", r->encode_gbps);
        std::snprintf(ds, sizeof ds, "%.2f", r->decode_gbps);
        std::snprintf(dv, sizeof dv, "%.2f", r->decode_verify_gbps);
      }
      std::printf("%-9s %4d  %-13s %6.3f %6.3f %6.3f %6.3f %6.3f  %2llu/%-2llu %5s %5s %5s %7s %6s %6s  %s\n",
                  ps.phase, ps.spacing, k.name, ratio_alone, ratio_delta, raw / r->bound_alone,
                  raw / r->bound_xor, raw / r->bound_diff, static_cast<unsigned long long>(r->delta_chunks),
                  static_cast<unsigned long long>(r->chunks), es, ds, dv, zr, ze, zd, target.c_str());
      rows.push_back({{"phase", ps.phase},
                      {"spacing", ps.spacing},
                      {"class", k.name},
                      {"raw", r->raw},
                      {"alone", r->alone},
                      {"delta", r->delta},
                      {"bound_alone", r->bound_alone},
                      {"bound_xor", r->bound_xor},
                      {"bound_diff", r->bound_diff},
                      {"encode_gbps", r->encode_gbps},
                      {"decode_gbps", r->decode_gbps},
                      {"zipnn_ratio", r->zipnn_ratio.value_or(0)}});
      if (k.width == 4) {  // the training state: fp32 master weights and Adam moments
        wraw += r->raw;
        walone += r->alone_dedup;
        wdelta += r->delta;
        wpred += r->best_bound();
        wpred_alone += r->bound_alone_dedup;
      }
      if (k.width == 2 && ps.spacing == 100) {
        const double got = static_cast<double>(r->alone_dedup) / static_cast<double>(r->delta);
        const double want = r->bound_alone_dedup / r->best_bound();
        std::printf(
            "%-9s %4d  bf16 checkpoint: %.3fx fewer bytes than without deltas; the bounds predict %.3fx "
            "(%s)\n",
            ps.phase, ps.spacing, got, want, got >= 0.97 * want ? "ok" : "MISS");
        if (got < 0.97 * want) ++misses;
      }
    }
    const double saved = 1 - static_cast<double>(wdelta) / static_cast<double>(walone);
    const double predicted = 1 - wpred / wpred_alone;
    const double got_ratio = static_cast<double>(wraw) / static_cast<double>(wdelta);
    const double want_ratio = static_cast<double>(wraw) / wpred;
    std::printf(
        "%-9s %4d  training state (fp32 + Adam): %.3fx as delta, %.1f%% fewer bytes than alone; the "
        "bounds predict %.3fx, %.1f%% (%s)\n",
        ps.phase, ps.spacing, got_ratio, 100 * saved, want_ratio, 100 * predicted,
        got_ratio >= 0.97 * want_ratio ? "ok" : "MISS");
    if (got_ratio < 0.97 * want_ratio) ++misses;
  }

  // Wire bytes of the series: every checkpoint pushed after the one before,
  // without deltas and as deltas against it.
  std::uint64_t wire_alone = 0, wire_delta = 0;
  for (std::size_t i = 0; i < series.size(); ++i) {
    for (const TensorClass& k : kClasses) {
      if (i == 0) {
        auto r = measure_class(dir(series[0]) / k.file, dir(series[0]) / k.file, k, false);
        if (!r.is_ok()) return 1;
        wire_alone += r->alone;
        wire_delta += r->alone;  // the first snapshot has no base
        continue;
      }
      auto r = measure_class(dir(series[i]) / k.file, dir(series[i - 1]) / k.file, k, false);
      if (!r.is_ok()) return 1;
      wire_alone += r->alone_dedup;
      wire_delta += r->delta;
    }
  }
  std::string names;
  for (int s : series) names += (names.empty() ? "" : ", ") + std::to_string(s);
  std::printf(
      "\nseries of steps %s, each pushed against the one before: %.2f MB of frames without deltas, "
      "%.2f MB with (%.1f%% fewer)\n",
      names.c_str(), static_cast<double>(wire_alone) / 1e6, static_cast<double>(wire_delta) / 1e6,
      100 * (1 - static_cast<double>(wire_delta) / static_cast<double>(wire_alone)));
  std::printf("%s\n",
              misses == 0 ? "all targets met" : (std::to_string(misses) + " target(s) missed").c_str());
  if (!FLAGS_json_out.empty()) {
    std::ofstream(FLAGS_json_out) << nlohmann::json{
        {"bench", "delta"},
        {"rows", rows},
        {"wire_alone", wire_alone},
        {"wire_delta", wire_delta}}.dump(2);
  }
  return 0;
}

}  // namespace ferry::bench
