// cli_flags_test.cc: the `ferry` command line as a user meets it, run on the
// built binary: each subcommand takes only its own flags (an unused one is a
// usage error naming it), per-subcommand help, --version, settings from
// FERRY_* variables and a config file with the documented precedence
// (flag > environment > file > default), the engine notice only where the
// engine runs, and the exit codes of tools/exit_codes.h.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "tests/testing/testing.h"
#include "tests/tools/ferry_cli.h"
#include "tools/exit_codes.h"

namespace ferry {
namespace {

namespace fs = std::filesystem;

using cli_test::CliRun;
using cli_test::ferry;
using cli_test::quote;

// `ferry ARGS` with `env` ("NAME=value ...", already quoted) in its
// environment and no config file of the user's or the machine's.
CliRun ferry_env(const testing::TempDir& dir, const std::string& env, const std::string& args) {
  return testing::run_command("env",
                              "-u FERRY_CA -u FERRY_CERT -u FERRY_KEY -u FERRY_TARGET -u FERRY_CONFIG "
                              "XDG_CONFIG_HOME=" +
                                  quote(dir / "xdg") + " " + env + " " + FERRY_BIN + " " + args);
}

void write_text(const fs::path& p, const std::string& text) { std::ofstream(p) << text; }

bool has(const CliRun& r, const std::string& s) { return r.out.find(s) != std::string::npos; }

TEST(CliFlagsTest, ASubcommandRefusesFlagsItDoesNotUse) {
  CliRun r = ferry("list --bwlimit=1");
  EXPECT_EQ(r.code, cli::kExitUsage) << r.out;
  EXPECT_TRUE(has(r, "list")) << r.out;
  EXPECT_TRUE(has(r, "--bwlimit=1")) << r.out;
  // The same flag is push's own.
  r = ferry("push ckpt --bwlimit=1");
  EXPECT_EQ(r.code, cli::kExitUsage) << r.out;
  EXPECT_TRUE(has(r, "push needs --to")) << r.out;
  // Store flags on a receiver-side command, certificate flags on a local one.
  EXPECT_EQ(ferry("scrub --store=/nonexistent --to=x").code, cli::kExitUsage);
  EXPECT_EQ(ferry("verify x.ferry --ca=ca.pem").code, cli::kExitUsage);
  EXPECT_EQ(ferry("status --keep_last=3").code, cli::kExitUsage);
  r = ferry("frobnicate");
  EXPECT_EQ(r.code, cli::kExitUsage) << r.out;
  EXPECT_TRUE(has(r, "unknown subcommand \"frobnicate\"")) << r.out;
}

TEST(CliFlagsTest, HelpIsPerSubcommand) {
  CliRun push = ferry("push --help");
  ASSERT_EQ(push.code, 0) << push.out;
  for (const char* f :
       {"--to", "--bwlimit", "--fan_out", "--ca", "--streams", "FERRY_TARGET", "exit codes"}) {
    EXPECT_TRUE(has(push, f)) << f << " in:\n" << push.out;
  }
  CliRun list = ferry("help list");
  ASSERT_EQ(list.code, 0) << list.out;
  EXPECT_TRUE(has(list, "--from")) << list.out;
  EXPECT_FALSE(has(list, "--bwlimit")) << list.out;
  EXPECT_TRUE(has(list, "Usage: ferry list")) << list.out;
  CliRun all = ferry("help");
  ASSERT_EQ(all.code, 0) << all.out;
  for (const char* c : {"push", "restore", "prune", "completion", "man", "3 retryable", "4 corruption"}) {
    EXPECT_TRUE(has(all, c)) << c << " in:\n" << all.out;
  }
  EXPECT_EQ(ferry("help nosuch").code, cli::kExitUsage);
}

TEST(CliFlagsTest, VersionNamesCommitBuildAndEngine) {
  CliRun r = ferry("--version");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_TRUE(r.out.starts_with("ferry ")) << r.out;
  for (const char* s : {"commit ", "build ", "engine "}) EXPECT_TRUE(has(r, s)) << s << " in:\n" << r.out;
}

// The commit is read at every build, not when the build was configured: a
// binary built after a new commit names that commit.
TEST(CliFlagsTest, VersionNamesTheCommitTheSourcesAreAt) {
  const char* src = std::getenv("FERRY_SOURCE_DIR");
  if (src == nullptr) GTEST_SKIP() << "FERRY_SOURCE_DIR not set (run through ctest)";
  testing::CommandRun head =
      testing::run_command("git", "-C " + testing::shell_quote(src) + " rev-parse --short HEAD");
  if (head.code != 0) GTEST_SKIP() << "the sources are not a git checkout: " << head.out;
  while (!head.out.empty() && head.out.back() == '\n') head.out.pop_back();
  CliRun r = ferry("--version");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_TRUE(has(r, "commit " + head.out + "\n")) << "HEAD is " << head.out << "; --version says:\n"
                                                   << r.out;
}

// The certificate paths reach the TLS setup from wherever they were given;
// the error loading a missing CA file names the path that won.
TEST(CliFlagsTest, SettingsComeFromFlagsThenEnvironmentThenConfigFile) {
  testing::TempDir dir;
  const std::string conf = (dir / "ferry.conf").string();
  write_text(conf,
             "# settings\nca = /from-file/ca.pem\ncert = /from-file/c.pem\n"
             "key = /from-file/k.pem\nfrom = 127.0.0.1:1\n\n[list]\nca = \"/from-section/ca.pem\"\n");
  // Nothing given: list says what it needs.
  CliRun r = ferry_env(dir, "", "list --from=127.0.0.1:1");
  EXPECT_EQ(r.code, cli::kExitUsage) << r.out;
  EXPECT_TRUE(has(r, "--ca")) << r.out;
  // The file: its [list] section wins over its top-level line.
  r = ferry_env(dir, "", "list --config " + quote(conf));
  EXPECT_NE(r.code, 0) << r.out;
  EXPECT_TRUE(has(r, "/from-section/ca.pem")) << r.out;
  // The environment wins over the file.
  r = ferry_env(dir, "FERRY_CA=/from-env/ca.pem", "list --config " + quote(conf));
  EXPECT_TRUE(has(r, "/from-env/ca.pem")) << r.out;
  // A flag wins over both.
  r = ferry_env(dir, "FERRY_CA=/from-env/ca.pem", "list --ca=/from-flag/ca.pem --config " + quote(conf));
  EXPECT_TRUE(has(r, "/from-flag/ca.pem")) << r.out;
  // The default location: $XDG_CONFIG_HOME/ferry/ferry.conf.
  fs::create_directories(dir / "xdg" / "ferry");
  fs::copy_file(conf, dir / "xdg" / "ferry" / "ferry.conf");
  r = ferry_env(dir, "", "list");
  EXPECT_TRUE(has(r, "/from-section/ca.pem")) << r.out;
  // FERRY_TARGET names the receiver of list (and push).
  r = ferry_env(dir, "FERRY_TARGET=127.0.0.1:2", "list --ca=/a --cert=/b --key=/c --config=/dev/null");
  EXPECT_FALSE(has(r, "needs --from")) << r.out;
}

// FERRY_TARGET names the usual receiver, but a restore of an archive file
// (or from --store) named on the command line reads that instead.
TEST(CliFlagsTest, FerryTargetYieldsToAnArchiveOnTheCommandLine) {
  testing::TempDir dir;
  testing::write_file(dir / "f.bin", std::vector<std::byte>(10000, std::byte{7}));
  ASSERT_EQ(ferry("pack " + quote(dir / "f.bin") + " -o " + quote(dir / "f.ferry") + " --engine=cpu").code,
            0);
  CliRun r =
      ferry_env(dir, "FERRY_TARGET=127.0.0.1:1",
                "restore " + quote(dir / "f.ferry") + " --to=" + quote(dir / "out") + " --config=/dev/null");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(testing::read_file(dir / "out" / "f.bin"), testing::read_file(dir / "f.bin"));
  // A snapshot name is looked up at FERRY_TARGET (down here: retryable).
  r = ferry_env(dir, "FERRY_TARGET=127.0.0.1:1 FERRY_CA=/a FERRY_CERT=/b FERRY_KEY=/c",
                "restore snap-1 --to=" + quote(dir / "out2") + " --config=/dev/null");
  EXPECT_NE(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("/a"), std::string::npos) << r.out;
}

TEST(CliFlagsTest, AConfigFileTypoIsAUsageErrorNamingTheLine) {
  testing::TempDir dir;
  const std::string conf = (dir / "bad.conf").string();
  write_text(conf, "ca = /x\nbwlimt = 5\n");
  CliRun r = ferry_env(dir, "", "list --config " + quote(conf));
  EXPECT_EQ(r.code, cli::kExitUsage) << r.out;
  EXPECT_TRUE(has(r, conf + ":2")) << r.out;
  EXPECT_TRUE(has(r, "bwlimt")) << r.out;
  write_text(conf, "[list]\nbwlimit = 5\n");
  r = ferry_env(dir, "", "list --config " + quote(conf));
  EXPECT_EQ(r.code, cli::kExitUsage) << r.out;
  EXPECT_TRUE(has(r, "ferry list has no setting \"bwlimit\"")) << r.out;
  // A bad value names where it came from.
  r = ferry_env(dir, "FERRY_STREAMS=many", "restore x.ferry --to=/tmp/x --config=/dev/null");
  EXPECT_EQ(r.code, cli::kExitUsage) << r.out;
  EXPECT_TRUE(has(r, "FERRY_STREAMS")) << r.out;
  EXPECT_EQ(ferry("list --config " + quote(dir / "missing.conf")).code, cli::kExitUsage);
}

TEST(CliFlagsTest, TheEngineNoticeComesOnlyFromCommandsThatCode) {
  testing::TempDir dir;
  testing::write_file(dir / "f.bin", std::vector<std::byte>(10000, std::byte{7}));
  CliRun pack = ferry("pack " + quote(dir / "f.bin") + " -o " + quote(dir / "f.ferry") + " --engine=cpu");
  ASSERT_EQ(pack.code, 0) << pack.out;
  EXPECT_TRUE(has(pack, "codec engine")) << pack.out;
  for (const std::string& args :
       {"verify " + quote(dir / "f.ferry"), "inspect " + quote(dir / "f.ferry"),
        std::string("list --from=127.0.0.1:1"), "status --socket=" + quote(dir / "none.sock"),
        "restore " + quote(dir / "f.ferry") + " --to=" + quote(dir / "out")}) {
    CliRun r = ferry(args);
    EXPECT_FALSE(has(r, "codec engine")) << args << ":\n" << r.out;
  }
}

TEST(CliFlagsTest, AReceiverThatIsDownIsRetryable) {
  testing::TempDir dir;
  CliRun certs = ferry("certs --dir=" + quote(dir / "pki") + " --hosts=h1");
  ASSERT_EQ(certs.code, 0) << certs.out;
  const std::string tls = " --ca=" + quote(dir / "pki" / "ca.pem") +
                          " --cert=" + quote(dir / "pki" / "host-h1.pem") +
                          " --key=" + quote(dir / "pki" / "host-h1.key");
  // Port 1 on loopback: nothing listens, the connection is refused.
  CliRun r = ferry("list --from=127.0.0.1:1" + tls);
  EXPECT_EQ(r.code, cli::kExitRetryable) << r.out;
  testing::write_file(dir / "f.bin", std::vector<std::byte>(10000, std::byte{7}));
  r = ferry("push " + quote(dir / "f.bin") + " --to=127.0.0.1:1 --retries=0 --engine=cpu" + tls);
  EXPECT_EQ(r.code, cli::kExitRetryable) << r.out;
}

}  // namespace
}  // namespace ferry
