// hash_bench.cc: `ferry-bench hash`: the tree hash (chunk ids over 4 MiB
// chunks) beside OpenSSL's EVP SHA-256 on 8192-byte messages, the same work
// `openssl speed -evp sha256 -bytes 8192` times, on one core in the same
// run; the leaf hashes one at a time (OpenSSL) and two at a time (SHA-NI,
// codec/tree_hash_pair.h); then `openssl speed` itself, the tree hash on a
// thread pool, and
// CRC32C (SSE4.2 three-way and the portable table). Reports best-of-N
// throughput and the ratio to the baseline.
#include <gflags/gflags.h>
#include <openssl/evp.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "base/crc32c.h"
#include "base/thread_pool.h"
#include "bench/bench.h"
#include "codec/limits.h"
#include "codec/tree_hash.h"
#include "codec/tree_hash_pair.h"

DEFINE_uint64(hash_mib, 64, "ferry-bench hash: buffer size in MiB");
DEFINE_int32(hash_reps, 5, "ferry-bench hash: repetitions of each measurement (best is kept)");
DEFINE_int32(hash_threads, 0,
             "ferry-bench hash: threads for the parallel run, caller included (0 = one per core)");
DEFINE_bool(hash_openssl_cli, true, "ferry-bench hash: also run `openssl speed -evp sha256 -bytes 8192`");

namespace ferry::bench {
namespace {

constexpr std::size_t kSpeedMessageBytes = 8192;  // openssl speed's 8192-byte column

// Best-of-reps throughput in bytes per second of fn over `bytes`.
double best_rate(std::size_t bytes, const std::function<void()>& fn) {
  double best = 0;
  for (int r = 0; r < FLAGS_hash_reps; ++r) {
    double t0 = mono_seconds();
    fn();
    double dt = mono_seconds() - t0;
    best = std::max(best, bytes / dt);
  }
  return best;
}

// Parses the 8192-byte column of `openssl speed` ("sha256  1736921.09k");
// returns bytes per second, or 0 if openssl is absent or prints otherwise.
double openssl_cli_rate() {
  FILE* p = popen("openssl speed -evp sha256 -bytes 8192 -seconds 2 2>/dev/null", "r");
  if (p == nullptr) return 0;
  char line[512];
  double rate = 0;
  while (std::fgets(line, sizeof line, p) != nullptr) {
    double k = 0;
    if (std::sscanf(line, "sha256 %lfk", &k) == 1) rate = k * 1000;
  }
  pclose(p);
  return rate;
}

void print_rate(const char* what, double rate, double baseline) {
  std::printf("  %-44s %8.3f GB/s   %5.2fx baseline\n", what, rate / 1e9, rate / baseline);
}

}  // namespace
}  // namespace ferry::bench

FERRY_BENCH(hash, "tree hash and CRC32C vs OpenSSL EVP SHA-256 (openssl speed, 8192-byte blocks)") {
  using namespace ferry;
  using namespace ferry::bench;
  (void)args;
  const std::size_t bytes = FLAGS_hash_mib << 20;
  std::vector<std::byte> buf(bytes);
  std::mt19937_64 rng(42);
  for (std::size_t i = 0; i + 8 <= bytes; i += 8) {
    std::uint64_t v = rng();
    std::memcpy(&buf[i], &v, 8);
  }
  std::printf("ferry-bench hash: %zu MiB buffer, best of %d, %u hardware threads\n",
              static_cast<std::size_t>(FLAGS_hash_mib), FLAGS_hash_reps, std::thread::hardware_concurrency());

  // Baseline: one EVP digest per 8192-byte message, as openssl speed does.
  EVP_MD* md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  std::uint8_t out[32];
  double evp = best_rate(bytes, [&] {
    for (std::size_t off = 0; off + kSpeedMessageBytes <= bytes; off += kSpeedMessageBytes) {
      EVP_DigestInit_ex2(ctx, md, nullptr);
      EVP_DigestUpdate(ctx, &buf[off], kSpeedMessageBytes);
      unsigned int n = 0;
      EVP_DigestFinal_ex(ctx, out, &n);
    }
  });
  EVP_MD_CTX_free(ctx);
  EVP_MD_free(md);
  std::printf("baseline: EVP SHA-256, 8192-byte messages, 1 core: %.3f GB/s\n", evp / 1e9);

  Digest sink{};
  double tree1 = best_rate(bytes, [&] {
    for (std::size_t off = 0; off < bytes; off += kDefaultChunkBytes) {
      sink[0] ^= chunk_id(std::span<const std::byte>(buf).subspan(off, kDefaultChunkBytes))[0];
    }
  });
  print_rate("tree hash, 4 MiB chunks, 1 core", tree1, evp);

  // The leaf hashes alone, one at a time on OpenSSL against two at a time
  // on the SHA extensions (tree_hash_pair.h), which chunk_id uses when it can.
  const std::size_t leaves = bytes / kLeafBytes;
  double single = best_rate(bytes, [&] {
    for (std::size_t i = 0; i < leaves; ++i)
      sink[0] ^= hash_leaf(std::span<const std::byte>(buf).subspan(i * kLeafBytes, kLeafBytes))[0];
  });
  print_rate("leaf hashes, one at a time (OpenSSL), 1 core", single, evp);
  if (tree_hash_pair_available()) {
    double paired = best_rate(bytes, [&] {
      Digest a{}, b{};
      for (std::size_t i = 0; i + 1 < leaves; i += 2) {
        hash_leaf_pair(&buf[i * kLeafBytes], &buf[(i + 1) * kLeafBytes], a, b);
        sink[0] ^= a[0] ^ b[0];
      }
    });
    print_rate("leaf hashes, two at a time (SHA-NI), 1 core", paired, evp);
    std::printf("  %-44s %8.2fx\n", "two at a time / one at a time", paired / single);
  } else {
    std::printf("  leaf hashes, two at a time: this CPU has no SHA extensions (OpenSSL hashes every leaf)\n");
  }

  // parallel_for also runs tasks on the calling thread, so the pool gets one
  // worker fewer than the threads asked for.
  const std::size_t cores = std::max(1u, std::thread::hardware_concurrency());
  const std::size_t threads = FLAGS_hash_threads > 0 ? static_cast<std::size_t>(FLAGS_hash_threads) : cores;
  ThreadPool pool(std::max<std::size_t>(1, threads - 1));
  double treeN = best_rate(bytes, [&] {
    for (std::size_t off = 0; off < bytes; off += kDefaultChunkBytes) {
      sink[0] ^= chunk_id(std::span<const std::byte>(buf).subspan(off, kDefaultChunkBytes), &pool)[0];
    }
  });
  const std::size_t used = std::min(cores, pool.size() + 1);
  std::string label = "tree hash, 4 MiB chunks, " + std::to_string(pool.size() + 1) + " threads";
  print_rate(label.c_str(), treeN, evp);
  label = "  ... per core (" + std::to_string(used) + " cores)";
  print_rate(label.c_str(), treeN / used, evp);

  std::uint32_t crc = 0;
  double crc_hw = best_rate(bytes, [&] { crc ^= crc32c(buf); });
  double crc_sw = best_rate(bytes, [&] { crc ^= crc32c_portable(buf); });
  std::printf("CRC32C, 1 core (vs the SHA-256 baseline, for scale):\n");
  print_rate("crc32c (SSE4.2, three streams)", crc_hw, evp);
  print_rate("crc32c_portable (slice-by-4 table)", crc_sw, evp);

  if (FLAGS_hash_openssl_cli) {
    double cli = openssl_cli_rate();
    if (cli > 0) {
      std::printf("openssl speed -evp sha256 -bytes 8192: %.3f GB/s; tree hash 1 core = %.2fx of it\n",
                  cli / 1e9, tree1 / cli);
    } else {
      std::printf("openssl speed: not available (openssl command missing?)\n");
    }
  }
  std::printf("(checksums %02x %08x)\n", sink[0], crc);
  return 0;
}
