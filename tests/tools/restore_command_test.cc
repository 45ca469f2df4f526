// restore_command_test.cc: runs the built `ferry` binary (FERRY_BIN) as a
// user would: `ferry restore FILE.ferry --to=DIR` gives back every byte;
// `--to=cuda:0` restores into GPU memory where a GPU is usable and otherwise
// fails with exit code 1 and "no usable GPU"; bad usage (no --to, --from with
// --store, --store without --namespace, an unknown scheme, a bad device)
// exits with 2 and one clear line.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "tests/testing/testing.h"
#include "tests/tools/ferry_cli.h"
#include "tools/exit_codes.h"

namespace ferry {
namespace {

namespace fs = std::filesystem;

using cli_test::CliRun;
using cli_test::ferry;
using cli_test::quote;

class RestoreCommandTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::uint64_t seed = testing::test_seed();
    fs::create_directories(in_ / "shards");
    testing::write_file(in_ / "shards" / "w.bin", testing::normal_floats(300'000, 2, true, 0.02, seed));
    testing::write_file(in_ / "opt.bin", testing::normal_floats(70'000, 4, false, 1e-3, seed + 1));
    testing::write_file(in_ / "empty", {});
    archive_ = (dir_ / "c.ferry").string();
    CliRun pack = ferry("pack " + quote(in_.string()) + " -o " + quote(archive_) + " --threads=2");
    ASSERT_EQ(pack.code, 0) << pack.out;
  }
  testing::TempDir dir_;
  fs::path in_ = dir_ / "ckpt";
  std::string archive_;
};

TEST_F(RestoreCommandTest, AnArchiveRestoresToADirectory) {
  const fs::path out = dir_ / "out";
  CliRun r = ferry("restore " + quote(archive_) + " --to=" + quote(out.string()) + " --threads=2");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("restored"), std::string::npos) << r.out;
  for (const char* rel : {"shards/w.bin", "opt.bin", "empty"}) {
    EXPECT_TRUE(testing::read_file(out / rel) == testing::read_file(in_ / rel)) << rel;
  }
  CliRun v = ferry("restore " + quote(archive_) + " --verify_only");
  EXPECT_EQ(v.code, 0) << v.out;
  EXPECT_NE(v.out.find("verified"), std::string::npos) << v.out;
}

TEST_F(RestoreCommandTest, ToCudaRestoresIntoGpuMemoryOrSaysWhyNot) {
  CliRun r = ferry("restore " + quote(archive_) + " --to=cuda:0 --threads=2");
  if (r.code == 0) {
    EXPECT_NE(r.out.find("onto cuda:0"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("every chunk verified"), std::string::npos) << r.out;
    return;
  }
  // No GPU here now: Unavailable, which base/retry.h counts as retryable.
  EXPECT_EQ(r.code, cli::kExitRetryable) << r.out;
  EXPECT_NE(r.out.find("cuda:0: no usable GPU: "), std::string::npos) << r.out;
}

// A restore that stops after some files came back whole: exit 5 (partial),
// saying how many; not the exit code of a failure that restored nothing.
TEST_F(RestoreCommandTest, ARestoreThatStopsHalfWayIsPartial) {
  const fs::path out = dir_ / "out";
  // A directory where the last file (in manifest order) must go.
  fs::create_directories(out / "shards" / "w.bin");
  CliRun r = ferry("restore " + quote(archive_) + " --to=" + quote(out.string()) + " --threads=1 --json");
  EXPECT_EQ(r.code, cli::kExitPartial) << r.out;
  EXPECT_NE(r.out.find("2 of 3 files restored"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"exit\":\"partial\""), std::string::npos) << r.out;
  EXPECT_TRUE(testing::read_file(out / "opt.bin") == testing::read_file(in_ / "opt.bin"));
}

TEST_F(RestoreCommandTest, UsageErrorsExitWithTwo) {
  for (const std::string& args : std::vector<std::string>{
           "restore " + quote(archive_), "restore snap --from=127.0.0.1:1 --store=/tmp/s --to=/tmp/x",
           "restore snap --store=/tmp/s --to=/tmp/x", "restore s3://bucket/x --to=/tmp/x",
           "restore " + quote(archive_) + " --to=cuda:x", std::string("restore")}) {
    CliRun r = ferry(args);
    EXPECT_EQ(r.code, 2) << args << ": " << r.out;
    EXPECT_NE(r.out.find("ferry: "), std::string::npos) << args << ": " << r.out;
  }
}

}  // namespace
}  // namespace ferry
