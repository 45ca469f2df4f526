// testing.h: small helpers shared by ferry's tests: scratch directories,
// seeded random data (the seed is printed, so a failure can be replayed),
// whole-file I/O and the location of the real-weights corpus.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <random>
#include <span>
#include <string>
#include <vector>

namespace ferry::testing {

// A fresh directory under $TMPDIR, removed with everything in it on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

// The seed for this test: $FERRY_TEST_SEED if set, else time-based; printed
// through a googletest RecordProperty and to stderr so failures replay.
std::uint64_t test_seed();

std::vector<std::byte> random_bytes(std::size_t n, std::uint64_t seed);
// n values drawn from N(0, sigma), encoded as BF16, F16 or F32 (width 2 or 4;
// `bf16` picks BF16 over F16 for width 2).
std::vector<std::byte> normal_floats(std::size_t count, int width, bool bf16, double sigma,
                                     std::uint64_t seed);

// One training step's drift of 16-bit floats in place: every element's bits
// move by -2..2 (a later checkpoint that codes well as a delta frame).
void drift_bf16(std::vector<std::byte>& bf16, std::uint64_t seed);

// A safetensors file of `tensors` equal BF16 tensors ("layer0", ...) that
// split `bf16` between them; tensor data starts at 4 KiB.
void write_bf16_safetensors(const std::filesystem::path& p, const std::vector<std::byte>& bf16, int tensors);

// Lower-case hex of the bytes, two digits each.
std::string hex_of(std::span<const std::byte> bytes);

// Golden vectors: compares `now` with the checked-in file at `rel_path`
// (relative to the source tree; $FERRY_SOURCE_DIR, set by ctest) line by
// line, naming `what` changed. FERRY_UPDATE_GOLDEN=1 rewrites the file and
// skips instead: a format change is a deliberate act. Call it last in a test.
void expect_golden_file(const std::string& rel_path, const std::string& now, const std::string& what);

std::vector<std::byte> read_file(const std::filesystem::path& p);
void write_file(const std::filesystem::path& p, const std::vector<std::byte>& data);

// The corpus laid by ../shared/corpus/fetch-corpus.sh (scripts/test.sh sets
// FERRY_CORPUS_DIR). Empty when unknown; tests then GTEST_SKIP with a reason.
std::filesystem::path corpus_dir();
struct CorpusFile {
  std::string name;
  std::string dtype;  // corpus.tsv's dtype column: fp16, fp32, bf16, mixed, ...
  std::filesystem::path path;
};
std::vector<CorpusFile> corpus_files();  // rows of corpus.tsv

// A command run through the shell, for tests of the real binaries.
struct CommandRun {
  int code = -1;    // exit status; -1 when it did not exit normally
  std::string out;  // stdout and stderr together
};
// `s` quoted for /bin/sh.
std::string shell_quote(const std::string& s);
// Runs `program ARGS 2>&1` (args already shell-quoted where needed).
CommandRun run_command(const std::string& program, const std::string& args);

// Polls `pred` every 50 ms until it holds or timeout_ms passes.
bool wait_until(const std::function<bool()>& pred, int timeout_ms);

// The value of the series line starting with `series` in a Prometheus text
// scrape (e.g. `ferry_agent_rpo_warning{ckpt_job="llama"}`), or -1 when absent.
double metric_value(const std::string& text, const std::string& series);

// For tests that count page faults to show buffers are kept: from now on
// large blocks always come fresh from mmap and go back with munmap, so that
// glibc's heap (which otherwise raises its threshold and reuses memory an
// earlier test freed) cannot stand in for the buffers kept.
void large_blocks_from_mmap();
// Minor page faults of this process so far.
long minor_faults();

}  // namespace ferry::testing
