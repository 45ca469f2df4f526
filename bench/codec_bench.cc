// codec_bench.cc: `ferry-bench codec`. For every file of the real-weights
// corpus: ferry's compression ratio and single-core encode and decode
// throughput (chunked as `ferry pack` chunks it: on tensor boundaries for
// safetensors, by trial otherwise), beside libzstd at levels 1 and 3 on the
// same chunks, `zstd -3` of the whole file, the order-0 bound of the chosen
// byte planes, and ZipNN (one thread, over the whole file; run through
// --zipnn_python when given), in the same run; then totals per dtype class.
// Prints a table and writes JSON.
#include <gflags/gflags.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bench/bench.h"
#include "codec/chunk_codec.h"
#include "codec/chunker.h"
#include "codec/safetensors.h"
#include "codec/zstd_codec.h"

DEFINE_string(corpus, "", "corpus folder laid by shared/corpus/fetch-corpus.sh (with corpus.tsv)");
DECLARE_string(json_out);  // bench/main.cc
DEFINE_double(min_seconds, 0.3, "repeat each measurement until it has run this long");
DEFINE_uint64(chunk_size, 4u << 20, "chunk size in bytes");
DEFINE_string(zipnn_python, "",
              "a Python with the zipnn package (pip install zipnn): ZipNN's ratio and 1-thread speeds beside "
              "ferry's; empty skips ZipNN");

namespace ferry::bench {
namespace {

namespace fs = std::filesystem;

struct CorpusRow {
  std::string name, dtype;
};

std::vector<CorpusRow> read_corpus_tsv(const fs::path& dir) {
  std::vector<CorpusRow> rows;
  std::ifstream in(dir / "corpus.tsv");
  std::string line;
  std::getline(in, line);
  while (std::getline(in, line)) {
    std::vector<std::string> cols;
    std::size_t start = 0;
    for (std::size_t tab; (tab = line.find('\t', start)) != std::string::npos; start = tab + 1)
      cols.push_back(line.substr(start, tab - start));
    cols.push_back(line.substr(start));
    if (cols.size() >= 4) rows.push_back({cols[0], cols[3]});
  }
  return rows;
}

// CPU seconds per run of fn, measured for at least --min_seconds.
template <typename Fn>
double time_per_run(Fn&& fn) {
  return cpu_seconds_per_run(FLAGS_min_seconds, fn);
}

struct Measure {
  double ratio = 0, encode_gbps = 0, decode_gbps = 0;
};

nlohmann::json to_json(const Measure& m) {
  return {{"ratio", m.ratio}, {"encode_gbps", m.encode_gbps}, {"decode_gbps", m.decode_gbps}};
}

struct FileResult {
  std::string name, dtype;
  std::uint64_t bytes = 0;
  std::map<Codec, std::uint64_t> codec_bytes;  // logical bytes per chosen codec
  Measure ferry;        // the codec alone (chunk ids computed beforehand, decode without verify)
  Measure ferry_frame;  // frames as `ferry pack` makes them: + tree hash; decode + verify
  Measure zstd1, zstd3;
  double zstd3_file_ratio = 0;  // `zstd -3` of the whole file (one frame, libzstd level 3)
  double order0_ratio = 0;      // bytes / the order-0 entropy of each chunk's byte planes
  std::optional<Measure> zipnn;
};

// Order-0 entropy in bytes of `n` symbols with these counts.
double order0_bytes(const std::uint64_t counts[256], std::uint64_t n) {
  double bits = 0;
  for (int s = 0; s < 256; ++s)
    if (counts[s]) bits -= static_cast<double>(counts[s]) * std::log2(static_cast<double>(counts[s]) / n);
  return bits / 8;
}

// The order-0 bound of a chunk coded with `codec`: each byte plane of its
// element width (1 for zstd and raw) at its own order-0 entropy, one table
// per plane (what a version 1 payload aims at; version 2 can go below it).
double chunk_order0_bytes(std::span<const std::byte> chunk, Codec codec) {
  const std::size_t w = std::max(1, codec_element_width(codec));
  const std::size_t n = chunk.size() / w;
  double total = static_cast<double>(chunk.size() % w);
  for (std::size_t p = 0; p < w; ++p) {
    std::uint64_t counts[256] = {};
    for (std::size_t i = 0; i < n; ++i) ++counts[static_cast<std::uint8_t>(chunk[i * w + p])];
    total += order0_bytes(counts, n);
  }
  return total;
}

// ZipNN 0.5.x, one thread, over the whole file as bytes of the corpus
// dtype, as its README uses it: the compressed size and process CPU seconds
// of one compress and one decompress. Timed as ferry is: after a first call
// of each (ZipNN's first call on a file runs 1.5-3x slower than the next
// ones, faulting in its buffers), repeated until min_seconds and at least
// three times, with the input copied outside the clock (compress changes
// its input).
// After kZipnnPerCallPy.
constexpr const char* kZipnnScript = R"(from zipnn import ZipNN
path, dtype, min_s = sys.argv[1], sys.argv[2], float(sys.argv[3])
data = open(path, 'rb').read()
z = ZipNN(bytearray_dtype=dtype, input_format='byte', threads=1)
c = z.compress(bytearray(data))
assert bytes(z.decompress(c)) == data, 'zipnn round trip differs'
te = per_call(z.compress, lambda: (bytearray(data),))
td = per_call(z.decompress, lambda: (c,))
print(len(c), te, td)
)";

std::optional<Measure> run_zipnn(const fs::path& path, const std::string& dtype, std::uint64_t bytes) {
  if (FLAGS_zipnn_python.empty()) return std::nullopt;
  // uint8-quantised and mixed files as float32 bytes: ZipNN's byte input
  // takes only float dtypes.
  const std::string zdtype = dtype == "fp16" ? "float16" : dtype == "bf16" ? "bfloat16" : "float32";
  const fs::path script = fs::temp_directory_path() / "ferry-bench-zipnn.py";
  std::ofstream(script) << kZipnnPerCallPy << kZipnnScript;
  const std::string cmd = FLAGS_zipnn_python + " " + script.string() + " '" + path.string() + "' " + zdtype +
                          " " + std::to_string(FLAGS_min_seconds) + " 2>/dev/null";
  FILE* f = popen(cmd.c_str(), "r");
  if (f == nullptr) return std::nullopt;
  unsigned long long size = 0;
  double te = 0, td = 0;
  const int got = std::fscanf(f, "%llu %lf %lf", &size, &te, &td);
  if (pclose(f) != 0 || got != 3 || size == 0) {
    std::fprintf(stderr, "ferry-bench codec: zipnn failed on %s\n", path.c_str());
    return std::nullopt;
  }
  const double gb = static_cast<double>(bytes) / 1e9;
  return Measure{static_cast<double>(bytes) / size, te > 0 ? gb / te : 0, td > 0 ? gb / td : 0};
}

// Decodes a frame's payload without recomputing the chunk id: the codec's
// own cost, to set beside zstd, which verifies nothing either.
Status decode_payload_only(std::span<const std::byte> frame, std::span<std::byte> out, FloatDecoder& fd,
                           ZstdDecompressor& zd) {
  ASSIGN_OR_RETURN(FrameHeader h, parse_frame_header(frame));
  auto payload = frame.subspan(kFrameHeaderBytes);
  switch (h.codec) {
    case Codec::kRaw:
      std::copy(payload.begin(), payload.end(), out.begin());
      return Status::ok();
    case Codec::kZstd:
      return zd.decompress(payload, out);
    default:
      return fd.decode(payload, codec_element_width(h.codec), out);
  }
}

Result<std::vector<std::byte>> read_whole(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::error_code ec;
  auto size = fs::file_size(path, ec);
  if (!in || ec) return Status::io_error("cannot read " + path.string());
  std::vector<std::byte> data(size);
  in.read(reinterpret_cast<char*>(data.data()), static_cast<std::streamsize>(size));
  if (!in) return Status::io_error("short read of " + path.string());
  return data;
}

Result<FileResult> bench_file(const fs::path& path, const CorpusRow& row) {
  ASSIGN_OR_RETURN(std::vector<std::byte> data, read_whole(path));
  FileResult r{row.name, row.dtype, data.size()};
  std::optional<SafetensorsLayout> layout;
  if (looks_like_safetensors(path)) {
    auto parsed = parse_safetensors(data, data.size());
    if (!parsed.is_ok()) return parsed.status().with_context(path.string());
    layout = std::move(parsed).value();
  }
  std::vector<ChunkPlan> plan = plan_chunks(data.size(), layout ? &*layout : nullptr, FLAGS_chunk_size);
  auto chunk_span = [&](const ChunkPlan& c) {
    return std::span<const std::byte>(data).subspan(c.offset, c.length);
  };
  const double gb = static_cast<double>(data.size()) / 1e9;

  // ferry: one thread, the same encoder the packer uses per chunk.
  ChunkEncoder encoder;
  std::vector<std::vector<std::byte>> frames(plan.size());
  std::vector<Digest> ids(plan.size());
  for (std::size_t i = 0; i < plan.size(); ++i) ids[i] = chunk_id(chunk_span(plan[i]));
  std::uint64_t frame_total = 0;
  auto encode_all = [&](bool hash) {
    frame_total = 0;
    for (std::size_t i = 0; i < plan.size(); ++i) {
      EncodeOptions opts;
      opts.trial = plan[i].trial;
      EncodedChunk e =
          hash ? encoder.encode(chunk_span(plan[i]), plan[i].dtype, frames[i], opts)
               : encoder.encode_with_id(chunk_span(plan[i]), plan[i].dtype, ids[i], frames[i], opts);
      frame_total += e.frame_bytes;
    }
  };
  double enc = time_per_run([&] { encode_all(false); });
  double enc_hash = time_per_run([&] { encode_all(true); });
  for (std::size_t i = 0; i < plan.size(); ++i) {
    ASSIGN_OR_RETURN(FrameHeader h, parse_frame_header(frames[i]));
    r.codec_bytes[h.codec] += plan[i].length;
  }
  ChunkDecoder decoder;
  FloatDecoder float_decoder;
  ZstdDecompressor zd;
  std::vector<std::byte> out(data.size());
  Status bad;
  auto out_span = [&](const ChunkPlan& c) { return std::span<std::byte>(out).subspan(c.offset, c.length); };
  double dec = time_per_run([&] {
    for (std::size_t i = 0; i < plan.size(); ++i) {
      Status st = decode_payload_only(frames[i], out_span(plan[i]), float_decoder, zd);
      if (!st.is_ok()) bad = st;
    }
  });
  RETURN_IF_ERROR(bad);
  if (out != data) return Status::internal(path.string() + ": decoded bytes differ from the input");
  std::fill(out.begin(), out.end(), std::byte{0});
  double dec_verify = time_per_run([&] {
    for (std::size_t i = 0; i < plan.size(); ++i) {
      Status st = decoder.decode(frames[i], out_span(plan[i]), &ids[i]);
      if (!st.is_ok()) bad = st;
    }
  });
  RETURN_IF_ERROR(bad);
  if (out != data) return Status::internal(path.string() + ": verified bytes differ from the input");
  double ratio = frame_total ? static_cast<double>(data.size()) / frame_total : 0;
  r.ferry = {ratio, gb / enc, gb / dec};
  r.ferry_frame = {ratio, gb / enc_hash, gb / dec_verify};

  // Baseline: libzstd on the same chunks, same buffers, same thread.
  ZstdCompressor zc;
  for (int level : {1, 3}) {
    std::vector<std::vector<std::byte>> z(plan.size());
    std::uint64_t ztotal = 0;
    Status zst;
    double zenc = time_per_run([&] {
      ztotal = 0;
      for (std::size_t i = 0; i < plan.size(); ++i) {
        Status st = zc.compress(chunk_span(plan[i]), level, z[i]);
        if (!st.is_ok()) zst = st;
        ztotal += z[i].size();
      }
    });
    double zdec = time_per_run([&] {
      for (std::size_t i = 0; i < plan.size(); ++i) {
        Status st = zd.decompress(z[i], std::span<std::byte>(out).subspan(plan[i].offset, plan[i].length));
        if (!st.is_ok()) zst = st;
      }
    });
    RETURN_IF_ERROR(zst);
    Measure m{static_cast<double>(data.size()) / ztotal, gb / zenc, gb / zdec};
    (level == 1 ? r.zstd1 : r.zstd3) = m;
  }
  std::vector<std::byte> whole;
  RETURN_IF_ERROR(zc.compress(data, 3, whole));
  r.zstd3_file_ratio = static_cast<double>(data.size()) / whole.size();
  double order0 = 0;
  for (std::size_t i = 0; i < plan.size(); ++i) {
    ASSIGN_OR_RETURN(FrameHeader h, parse_frame_header(frames[i]));
    order0 += chunk_order0_bytes(chunk_span(plan[i]), h.codec);
  }
  r.order0_ratio = order0 > 0 ? static_cast<double>(data.size()) / order0 : 0;
  r.zipnn = run_zipnn(path, row.dtype, data.size());
  return r;
}

}  // namespace

FERRY_BENCH(codec, "per corpus file: ferry ratio and 1-core encode/decode GB/s beside zstd -1/-3") {
  (void)args;
  fs::path dir = FLAGS_corpus.empty()
                     ? fs::path(std::getenv("FERRY_CORPUS_DIR") ? std::getenv("FERRY_CORPUS_DIR") : "")
                     : fs::path(FLAGS_corpus);
  if (dir.empty() || !fs::exists(dir / "corpus.tsv")) {
    std::fprintf(stderr,
                 "ferry-bench codec: no corpus: pass --corpus=DIR (lay it with "
                 "shared/corpus/fetch-corpus.sh DIR [--small])\n");
    return 2;
  }
  if (Status st = check_chunk_bytes(FLAGS_chunk_size); !st.is_ok()) {
    std::fprintf(stderr, "ferry-bench codec: --chunk_size: %s\n", st.to_string().c_str());
    return 2;
  }
  std::printf(
      "ferry-bench codec: %s, chunk %llu bytes, one thread, GB/s of logical bytes per CPU-second\n"
      "  enc/dec: the codec alone; +hash/+vrfy: with the chunk's tree hash, as ferry pack/verify run\n",
      dir.c_str(), static_cast<unsigned long long>(FLAGS_chunk_size));
  std::printf(
      "%-28s %-5s %9s | %6s %5s %5s %5s %5s | %6s %5s %5s | %6s %5s %5s | %6s %6s | %6s %5s %5s | %s\n",
      "file", "dtype", "bytes", "ferry", "enc", "dec", "+hash", "+vrfy", "zstd1", "enc", "dec", "zstd3",
      "enc", "dec", "z3file", "order0", "zipnn", "enc", "dec", "target");
  nlohmann::json results = nlohmann::json::array();
  int failures = 0;
  std::uint64_t all_bytes = 0;
  double all_ferry = 0, all_z3 = 0;  // compressed bytes
  struct ClassTotal {
    int files = 0;
    std::uint64_t bytes = 0, zipnn_bytes = 0;
    double ferry = 0, zstd3_file = 0, zipnn = 0, ferry_where_zipnn = 0;  // compressed bytes
  };
  std::map<std::string, ClassTotal> classes;
  for (const CorpusRow& row : read_corpus_tsv(dir)) {
    auto res = bench_file(dir / row.name, row);
    if (!res.is_ok()) {
      std::fprintf(stderr, "ferry-bench codec: %s\n", res.status().to_string().c_str());
      return 1;
    }
    const FileResult& r = *res;
    // Targets (docs/BENCHMARKS.md): never larger than `zstd -3` of the
    // whole file; where ZipNN ran, a ratio at least ZipNN's and encode and
    // decode at least twice its speed, one core each.
    std::string missed;
    auto miss = [&](const char* what) { missed += std::string(missed.empty() ? "MISSED(" : ",") + what; };
    if (r.ferry.ratio < r.zstd3_file_ratio) miss("zstd-3");
    if (r.zipnn && r.ferry.ratio < r.zipnn->ratio) miss("zipnn ratio");
    if (r.zipnn &&
        (r.ferry.encode_gbps < 2 * r.zipnn->encode_gbps || r.ferry.decode_gbps < 2 * r.zipnn->decode_gbps))
      miss("2x zipnn speed");
    const std::string verdict = missed.empty() ? "met" : missed + ")";
    failures += verdict != "met";
    const Measure z = r.zipnn.value_or(Measure{});
    std::printf(
        "%-28.28s %-5s %9llu | %6.3f %5.2f %5.2f %5.2f %5.2f | %6.3f %5.2f %5.2f | %6.3f %5.2f %5.2f | %6.3f "
        "%6.3f | "
        "%6.3f %5.2f %5.2f | %s\n",
        r.name.c_str(), r.dtype.c_str(), static_cast<unsigned long long>(r.bytes), r.ferry.ratio,
        r.ferry.encode_gbps, r.ferry.decode_gbps, r.ferry_frame.encode_gbps, r.ferry_frame.decode_gbps,
        r.zstd1.ratio, r.zstd1.encode_gbps, r.zstd1.decode_gbps, r.zstd3.ratio, r.zstd3.encode_gbps,
        r.zstd3.decode_gbps, r.zstd3_file_ratio, r.order0_ratio, z.ratio, z.encode_gbps, z.decode_gbps,
        verdict.c_str());
    ClassTotal& c = classes[r.dtype];
    c.files += 1;
    c.bytes += r.bytes;
    c.ferry += r.bytes / r.ferry.ratio;
    c.zstd3_file += r.bytes / r.zstd3_file_ratio;
    if (r.zipnn) {
      c.zipnn_bytes += r.bytes;
      c.zipnn += r.bytes / r.zipnn->ratio;
      c.ferry_where_zipnn += r.bytes / r.ferry.ratio;
    }
    all_bytes += r.bytes;
    all_ferry += r.bytes / r.ferry.ratio;
    all_z3 += r.bytes / r.zstd3.ratio;
    nlohmann::json codecs = nlohmann::json::object();
    for (auto& [c, b] : r.codec_bytes) codecs[std::string(codec_name(c))] = b;
    results.push_back({{"file", r.name},
                       {"dtype", r.dtype},
                       {"bytes", r.bytes},
                       {"ferry", to_json(r.ferry)},
                       {"ferry_with_hash", to_json(r.ferry_frame)},
                       {"zstd1", to_json(r.zstd1)},
                       {"zstd3", to_json(r.zstd3)},
                       {"zstd3_file_ratio", r.zstd3_file_ratio},
                       {"order0_ratio", r.order0_ratio},
                       {"zipnn", r.zipnn ? to_json(*r.zipnn) : nlohmann::json()},
                       {"codec_bytes", codecs},
                       {"target", verdict}});
  }
  std::printf("TOTAL %llu bytes: ferry ratio %.3f, zstd -3 ratio %.3f; files missing a target: %d\n",
              static_cast<unsigned long long>(all_bytes), all_bytes / all_ferry, all_bytes / all_z3,
              failures);
  // Per class: ferry against zstd -3 of each file and, where it ran, ZipNN
  // (target: 1.02x ZipNN's ratio on each class total).
  nlohmann::json class_json = nlohmann::json::object();
  for (const auto& [dtype, c] : classes) {
    const double vs_zipnn = c.zipnn > 0 ? c.zipnn / c.ferry_where_zipnn : 0;
    std::printf(
        "CLASS %-5s %2d files %10llu bytes: ferry %.4f, zstd -3 %.4f, zipnn %.4f (ferry %.4fx zipnn)%s\n",
        dtype.c_str(), c.files, static_cast<unsigned long long>(c.bytes), c.bytes / c.ferry,
        c.bytes / c.zstd3_file, c.zipnn > 0 ? c.zipnn_bytes / c.zipnn : 0.0, vs_zipnn,
        c.zipnn > 0 && vs_zipnn < 1.02 ? " MISSED(1.02x zipnn)" : "");
    class_json[dtype] = {{"files", c.files},
                         {"bytes", c.bytes},
                         {"ferry_ratio", c.bytes / c.ferry},
                         {"zstd3_file_ratio", c.bytes / c.zstd3_file},
                         {"zipnn_ratio", c.zipnn > 0 ? c.zipnn_bytes / c.zipnn : 0.0},
                         {"ferry_vs_zipnn", vs_zipnn}};
  }
  if (!FLAGS_json_out.empty()) {
    std::ofstream(FLAGS_json_out) << nlohmann::json{{"bench", "codec"},
                                                    {"chunk_bytes", FLAGS_chunk_size},
                                                    {"files", results},
                                                    {"classes", class_json}}
                                         .dump(2)
                                  << "\n";
  }
  return 0;
}

}  // namespace ferry::bench
