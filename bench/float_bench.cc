// float_bench.cc: `ferry-bench float`: the float codec (byte planes + rANS)
// on 4 MiB chunks of N(0, 0.02) weights in BF16, F16 and F32 and on random
// bytes, single-threaded, beside zstd -1 and -3 on the same buffers in the
// same run. Also prints the exponent plane's order-0 entropy bound, the best
// ratio any order-0 coder of that plane could reach with raw mantissas.
#include <gflags/gflags.h>
#include <zstd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "bench/bench.h"
#include "codec/float_codec.h"

DEFINE_double(float_seconds, 0.5, "ferry-bench float: seconds to time each codec and direction");

namespace ferry::bench {
namespace {

using Bytes = std::vector<std::byte>;
constexpr std::size_t kChunkBytes = 4u << 20;

struct Input {
  std::string name;
  int width;
  Bytes data;
};

std::uint16_t f32_to_f16(float f) {
  // Round to nearest even; the values here are normal or underflow to zero.
  std::uint32_t x;
  std::memcpy(&x, &f, 4);
  std::uint32_t sign = (x >> 16) & 0x8000;
  std::int32_t e = static_cast<std::int32_t>((x >> 23) & 0xff) - 127 + 15;
  if (e <= 0) return static_cast<std::uint16_t>(sign);
  std::uint32_t h = sign | (static_cast<std::uint32_t>(e) << 10) | ((x >> 13) & 0x3ff);
  std::uint32_t rem = x & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) ++h;
  return static_cast<std::uint16_t>(h);
}

Input normal_input(const std::string& name, int width, bool bf16) {
  std::mt19937_64 rng(1234);
  std::normal_distribution<float> dist(0.0f, 0.02f);
  Input in{name, width, Bytes(kChunkBytes)};
  for (std::size_t i = 0; i < kChunkBytes / width; ++i) {
    float f = dist(rng);
    std::uint32_t x;
    std::memcpy(&x, &f, 4);
    if (width == 4) {
      std::memcpy(in.data.data() + 4 * i, &x, 4);
    } else {
      auto h = bf16 ? static_cast<std::uint16_t>((x + 0x7fff + ((x >> 16) & 1)) >> 16) : f32_to_f16(f);
      std::memcpy(in.data.data() + 2 * i, &h, 2);
    }
  }
  return in;
}

Input random_input() {
  std::mt19937_64 rng(99);
  Input in{"random", 2, Bytes(kChunkBytes)};
  for (std::size_t i = 0; i < kChunkBytes; i += 8) {
    std::uint64_t v = rng();
    std::memcpy(in.data.data() + i, &v, 8);
  }
  return in;
}

// Ratio (raw / coded) reachable with the exponent plane coded at its
// order-0 entropy and every mantissa plane raw.
double exponent_bound_ratio(const Input& in) {
  std::size_t w = static_cast<std::size_t>(in.width);
  std::size_t n = in.data.size() / w;
  std::vector<double> counts(256, 0.0);
  for (std::size_t i = 0; i < n; ++i) {
    std::uint32_t e = 0;
    std::memcpy(&e, in.data.data() + w * i, w);
    int bits = 8 * in.width;
    std::uint32_t r = (e << 1) | (e >> (bits - 1));
    counts[(r >> (bits - 8)) & 0xff] += 1;
  }
  double h = 0;
  for (double c : counts)
    if (c > 0) h -= c / n * std::log2(c / n);
  return static_cast<double>(w) / (h / 8 + static_cast<double>(w - 1));
}

// Runs fn repeatedly for about `seconds` of this thread's CPU time; returns
// GB/s of `bytes` per CPU second (on a shared machine, time spent
// descheduled is not the codec's cost).
double gbps(std::size_t bytes, double seconds, const std::function<void()>& fn) {
  fn();  // warm caches and scratch
  int runs = 0;
  double start = thread_cpu_seconds(), t = start;
  while (t - start < seconds || runs < 3) {
    fn();
    ++runs;
    t = thread_cpu_seconds();
  }
  return static_cast<double>(bytes) * runs / (t - start) / 1e9;
}

struct Row {
  double ratio, enc_gbps, dec_gbps;
};

Row bench_ferry(const Input& in, double seconds, bool& ok) {
  FloatEncoder enc;
  FloatDecoder dec;
  Bytes payload, out(in.data.size());
  enc.encode(in.data, in.width, payload);
  ok = dec.decode(payload, in.width, out).is_ok() && out == in.data;
  Row r{};
  r.ratio = static_cast<double>(in.data.size()) / payload.size();
  r.enc_gbps = gbps(in.data.size(), seconds, [&] { enc.encode(in.data, in.width, payload); });
  r.dec_gbps = gbps(in.data.size(), seconds, [&] { (void)dec.decode(payload, in.width, out); });
  return r;
}

Row bench_zstd(const Input& in, int level, double seconds, bool& ok) {
  ZSTD_CCtx* cctx = ZSTD_createCCtx();
  ZSTD_DCtx* dctx = ZSTD_createDCtx();
  Bytes payload(ZSTD_compressBound(in.data.size())), out(in.data.size());
  std::size_t size = 0;
  auto compress = [&] {
    size = ZSTD_compressCCtx(cctx, payload.data(), payload.size(), in.data.data(), in.data.size(), level);
  };
  compress();
  std::size_t got = ZSTD_decompressDCtx(dctx, out.data(), out.size(), payload.data(), size);
  ok = !ZSTD_isError(size) && got == in.data.size() && out == in.data;
  Row r{};
  r.ratio = static_cast<double>(in.data.size()) / size;
  r.enc_gbps = gbps(in.data.size(), seconds, compress);
  r.dec_gbps = gbps(in.data.size(), seconds,
                    [&] { (void)ZSTD_decompressDCtx(dctx, out.data(), out.size(), payload.data(), size); });
  ZSTD_freeCCtx(cctx);
  ZSTD_freeDCtx(dctx);
  return r;
}

}  // namespace
}  // namespace ferry::bench

FERRY_BENCH(float, "float codec (byte planes + rANS) vs zstd -1/-3 on 4 MiB chunks, one core") {
  using namespace ferry::bench;
  if (!args.empty()) {
    std::fprintf(stderr, "ferry-bench float: unexpected argument %s\n", args[0].c_str());
    return 2;
  }
  double seconds = FLAGS_float_seconds;
  std::vector<Input> inputs = {normal_input("bf16", 2, true), normal_input("f16", 2, false),
                               normal_input("f32", 4, false), random_input()};
  std::printf(
      "float codec, 4 MiB chunks of N(0, 0.02) (random: uniform bytes as width 2), "
      "one thread, %.2f CPU s per cell\n",
      seconds);
  std::printf("%-7s %-8s %7s %9s %9s  %s\n", "input", "codec", "ratio", "enc GB/s", "dec GB/s", "notes");
  int failures = 0;
  for (const Input& in : inputs) {
    bool ok = false;
    Row f = bench_ferry(in, seconds, ok);
    failures += !ok;
    char bound[64] = "";
    if (in.name != "random")
      std::snprintf(bound, sizeof bound, "exponent order-0 bound %.4f", exponent_bound_ratio(in));
    std::printf("%-7s %-8s %7.4f %9.3f %9.3f  %s%s\n", in.name.c_str(), "ferry", f.ratio, f.enc_gbps,
                f.dec_gbps, bound, ok ? "" : " ROUND TRIP FAILED");
    for (int level : {1, 3}) {
      Row z = bench_zstd(in, level, seconds, ok);
      failures += !ok;
      std::printf("%-7s zstd -%d  %7.4f %9.3f %9.3f  ferry/zstd ratio %.3f, enc %.2fx, dec %.2fx%s\n",
                  in.name.c_str(), level, z.ratio, z.enc_gbps, z.dec_gbps, f.ratio / z.ratio,
                  f.enc_gbps / z.enc_gbps, f.dec_gbps / z.dec_gbps, ok ? "" : " ROUND TRIP FAILED");
    }
  }
  return failures ? 1 : 0;
}
