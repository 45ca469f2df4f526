// testing.cc: see testing.h.
#include "tests/testing/testing.h"

#include <gtest/gtest.h>

#include <malloc.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

namespace ferry::testing {

namespace fs = std::filesystem;

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base && *base ? base : "/tmp") + "/ferry-test-XXXXXX";
  char* made = ::mkdtemp(tmpl.data());
  if (!made) {
    std::perror("mkdtemp");
    std::abort();
  }
  path_ = made;
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

std::uint64_t test_seed() {
  std::uint64_t seed;
  if (const char* s = std::getenv("FERRY_TEST_SEED")) {
    seed = std::strtoull(s, nullptr, 0);
  } else {
    seed = static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  }
  ::testing::Test::RecordProperty("seed", std::to_string(seed));
  std::fprintf(stderr, "[ferry] seed %llu (replay with FERRY_TEST_SEED=%llu)\n",
               static_cast<unsigned long long>(seed), static_cast<unsigned long long>(seed));
  return seed;
}

std::vector<std::byte> random_bytes(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::byte> out(n);
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    std::uint64_t v = rng();
    std::memcpy(out.data() + i, &v, 8);
  }
  for (; i < n; ++i) out[i] = static_cast<std::byte>(rng());
  return out;
}

static std::uint16_t to_f16(float f) {
  // Round-to-nearest-even float -> IEEE half, for test data only.
  std::uint32_t x;
  std::memcpy(&x, &f, 4);
  std::uint32_t sign = (x >> 16) & 0x8000;
  std::int32_t exp = static_cast<std::int32_t>((x >> 23) & 0xff) - 127 + 15;
  std::uint32_t mant = x & 0x7fffff;
  if (((x >> 23) & 0xff) == 0xff) return static_cast<std::uint16_t>(sign | 0x7c00 | (mant ? 0x200 : 0));
  if (exp >= 31) return static_cast<std::uint16_t>(sign | 0x7c00);
  if (exp <= 0) {
    if (exp < -10) return static_cast<std::uint16_t>(sign);
    mant |= 0x800000;
    std::uint32_t shift = static_cast<std::uint32_t>(14 - exp);
    std::uint32_t half = mant >> shift;
    std::uint32_t rem = mant & ((1u << shift) - 1);
    std::uint32_t mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half & 1))) ++half;
    return static_cast<std::uint16_t>(sign | half);
  }
  std::uint32_t half = sign | (static_cast<std::uint32_t>(exp) << 10) | (mant >> 13);
  std::uint32_t rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (half & 1))) ++half;
  return static_cast<std::uint16_t>(half);
}

void write_bf16_safetensors(const fs::path& p, const std::vector<std::byte>& bf16, int tensors) {
  const std::size_t bytes = bf16.size() / static_cast<std::size_t>(tensors) / 2 * 2;
  std::string header = "{";
  for (int i = 0; i < tensors; ++i) {
    header += (i ? ",\"layer" : "\"layer") + std::to_string(i) + "\":{\"dtype\":\"BF16\",\"shape\":[" +
              std::to_string(bytes / 2) + "],\"data_offsets\":[" + std::to_string(i * bytes) + "," +
              std::to_string((i + 1) * bytes) + "]}";
  }
  header += "}";
  header.resize(4096 - 8, ' ');
  std::vector<std::byte> out(8 + header.size());
  for (int i = 0; i < 8; ++i) out[i] = static_cast<std::byte>(header.size() >> (8 * i));
  std::memcpy(out.data() + 8, header.data(), header.size());
  out.insert(out.end(), bf16.begin(), bf16.begin() + static_cast<std::ptrdiff_t>(bytes * tensors));
  write_file(p, out);
}

void drift_bf16(std::vector<std::byte>& bf16, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  for (std::size_t i = 0; i + 1 < bf16.size(); i += 2) {
    auto v = static_cast<std::uint16_t>(std::to_integer<unsigned>(bf16[i]) |
                                        (std::to_integer<unsigned>(bf16[i + 1]) << 8));
    v = static_cast<std::uint16_t>(v + static_cast<int>(rng() % 5) - 2);
    bf16[i] = std::byte(v & 0xff);
    bf16[i + 1] = std::byte(v >> 8);
  }
}

std::vector<std::byte> normal_floats(std::size_t count, int width, bool bf16, double sigma,
                                     std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.0f, static_cast<float>(sigma));
  std::vector<std::byte> out(count * static_cast<std::size_t>(width));
  for (std::size_t i = 0; i < count; ++i) {
    float f = dist(rng);
    if (width == 4) {
      std::memcpy(out.data() + 4 * i, &f, 4);
    } else {
      std::uint16_t h;
      if (bf16) {
        std::uint32_t x;
        std::memcpy(&x, &f, 4);
        h = static_cast<std::uint16_t>((x + 0x7fff + ((x >> 16) & 1)) >> 16);
      } else {
        h = to_f16(f);
      }
      std::memcpy(out.data() + 2 * i, &h, 2);
    }
  }
  return out;
}

std::string hex_of(std::span<const std::byte> bytes) {
  static const char* d = "0123456789abcdef";
  std::string s;
  s.reserve(2 * bytes.size());
  for (std::byte x : bytes) {
    s += d[std::to_integer<int>(x) >> 4];
    s += d[std::to_integer<int>(x) & 15];
  }
  return s;
}

void expect_golden_file(const std::string& rel_path, const std::string& now, const std::string& what) {
  const char* src = std::getenv("FERRY_SOURCE_DIR");
  if (src == nullptr) GTEST_SKIP() << "FERRY_SOURCE_DIR not set (run through ctest)";
  const fs::path path = fs::path(src) / rel_path;
  if (std::getenv("FERRY_UPDATE_GOLDEN") != nullptr) {
    std::ofstream(path) << now;
    GTEST_SKIP() << "rewrote " << path;
  }
  std::ifstream in(path);
  ASSERT_TRUE(in) << path << " missing; FERRY_UPDATE_GOLDEN=1 writes it";
  std::stringstream want;
  want << in.rdbuf();
  std::istringstream a(want.str()), b(now);
  std::string la, lb;
  while (std::getline(a, la) && std::getline(b, lb)) {
    EXPECT_EQ(la, lb) << what << " changed: a format change must update " << path << " deliberately";
  }
  EXPECT_EQ(want.str(), now) << what << " changed: update " << path << " deliberately";
}

std::vector<std::byte> read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + p.string());
  std::vector<std::byte> data(fs::file_size(p));
  in.read(reinterpret_cast<char*>(data.data()), static_cast<std::streamsize>(data.size()));
  return data;
}

void write_file(const fs::path& p, const std::vector<std::byte>& data) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
  if (!out) throw std::runtime_error("cannot write " + p.string());
}

fs::path corpus_dir() {
  const char* d = std::getenv("FERRY_CORPUS_DIR");
  if (!d || !*d) return {};
  fs::path p(d);
  return fs::exists(p / "corpus.tsv") ? p : fs::path();
}

std::vector<CorpusFile> corpus_files() {
  std::vector<CorpusFile> files;
  fs::path dir = corpus_dir();
  if (dir.empty()) return files;
  std::ifstream in(dir / "corpus.tsv");
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    std::istringstream row(line);
    CorpusFile f;
    std::string bytes, sha;
    std::getline(row, f.name, '\t');
    std::getline(row, bytes, '\t');
    std::getline(row, sha, '\t');
    std::getline(row, f.dtype, '\t');
    f.path = dir / f.name;
    if (!f.name.empty()) files.push_back(f);
  }
  return files;
}

std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

CommandRun run_command(const std::string& program, const std::string& args) {
  const std::string cmd = shell_quote(program) + " " + args + " 2>&1";
  CommandRun r;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf;
  std::size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  const int status = ::pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

bool wait_until(const std::function<bool()>& pred, int timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return pred();
}

double metric_value(const std::string& text, const std::string& series) {
  std::size_t at = 0;
  while ((at = text.find(series + " ", at)) != std::string::npos) {
    if (at == 0 || text[at - 1] == '\n') return std::stod(text.substr(at + series.size() + 1));
    at += series.size();
  }
  return -1;
}

void large_blocks_from_mmap() { mallopt(M_MMAP_THRESHOLD, 256 << 10); }

long minor_faults() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  return ru.ru_minflt;
}

}  // namespace ferry::testing
