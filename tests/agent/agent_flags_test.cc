// agent_flags_test.cc: ferry-agent's settings from the command line and from
// real flag files: every form of a value, the order they apply in, and
// every mistake (an unknown setting, a bad value, a line that is no
// setting, a missing or looping flag file) named with the file and line.
#include "agent/agent_flags.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>

#include "tests/replication/tls_fixture.h"
#include "tests/testing/testing.h"

namespace ferry::agent {
namespace {

namespace fs = std::filesystem;
using ferry::replication::testing::TestCerts;

void write_text(const fs::path& p, const std::string& s) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << s;
  ASSERT_TRUE(out.good()) << p;
}

AgentArgs parse(std::vector<std::string> args) { return parse_agent_args(args); }

std::string joined(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

TEST(AgentFlagsTest, EveryValueFormOnTheCommandLine) {
  AgentArgs a =
      parse({"--watch=/ckpt/llama=big", "--targets", "dr1:7443,dr2:7443", "-max_jobs=3", "--streams", "8",
             "--bandwidth_mbps=12.5", "--fan_out", "--noskip_superseded", "--marker_file=DONE",
             "--marker_only=yes", "--metrics_listen=", "--state_dir=/var/x", "--incomplete_grace_s=60"});
  ASSERT_TRUE(a.errors.empty()) << joined(a.errors);
  const AgentConfig& c = a.config;
  ASSERT_EQ(c.watch.size(), 1u);
  EXPECT_EQ(c.watch[0].path, "/ckpt/llama");
  EXPECT_EQ(c.watch[0].job, "big");
  EXPECT_EQ(c.targets, (std::vector<std::string>{"dr1:7443", "dr2:7443"}));
  EXPECT_EQ(c.max_jobs, 3);
  EXPECT_EQ(c.streams, 8);
  EXPECT_DOUBLE_EQ(c.bandwidth_mbps, 12.5);
  EXPECT_TRUE(c.fan_out);
  EXPECT_FALSE(c.skip_superseded);
  EXPECT_EQ(c.marker_file, "DONE");
  EXPECT_TRUE(c.marker_only);
  EXPECT_EQ(c.metrics_listen, "");
  EXPECT_EQ(c.state_dir, "/var/x");
  EXPECT_DOUBLE_EQ(c.incomplete_grace_s, 60);
  // Untouched settings keep their defaults.
  EXPECT_DOUBLE_EQ(c.rpo_target_s, AgentConfig{}.rpo_target_s);
  EXPECT_FALSE(a.help || a.version || a.validate);
  EXPECT_TRUE(parse({"--help"}).help);
  EXPECT_TRUE(parse({"-h"}).help);
  EXPECT_TRUE(parse({"--version"}).version);
  EXPECT_TRUE(parse({"--validate"}).validate);
}

TEST(AgentFlagsTest, CommandLineMistakesAreNamed) {
  AgentArgs a = parse({"--rpo_taget_s=60", "--frobnicate", "--max_jobs=two", "--fan_out=maybe", "stray",
                       "--nomax_jobs", "--rpo_target_s=inf", "--streams"});
  EXPECT_EQ(a.errors, (std::vector<std::string>{
                          "unknown setting --rpo_taget_s; did you mean --rpo_target_s?",
                          "unknown setting --frobnicate (ferry-agent --help lists every setting)",
                          "--max_jobs=two: not an integer",
                          "--fan_out=maybe: not true or false",
                          "unexpected argument 'stray' (every setting is a --flag)",
                          "unknown setting --nomax_jobs; did you mean --max_jobs?",
                          "--rpo_target_s=inf: not a number",
                          "--streams needs a value",
                      }))
      << joined(a.errors);
  EXPECT_EQ(a.config.max_jobs, AgentConfig{}.max_jobs);  // a refused value leaves the default
}

TEST(AgentFlagsTest, FlagFileLinesCommentsAndOrder) {
  testing::TempDir t;
  const fs::path f = t / "agent.flags";
  write_text(f,
             "# a comment\n"
             "\n"
             "   --max_jobs=4   \n"
             "--nofan_out\r\n"
             "--marker_file=COMMITTED\n"
             "  # indented comment\n"
             "--rpo_target_s=120\n");
  // The command line applies where it stands: before the file it is
  // overridden, after it it wins.
  AgentArgs a = parse({"--max_jobs=2", "--fan_out", "--flagfile=" + f.string(), "--rpo_target_s=60"});
  ASSERT_TRUE(a.errors.empty()) << joined(a.errors);
  EXPECT_EQ(a.config.max_jobs, 4);
  EXPECT_FALSE(a.config.fan_out);
  EXPECT_EQ(a.config.marker_file, "COMMITTED");
  EXPECT_DOUBLE_EQ(a.config.rpo_target_s, 60);
  EXPECT_EQ(a.flagfiles, (std::vector<std::string>{f.string()}));
  EXPECT_EQ(a.origin["max_jobs"], f.string() + ":3");
  EXPECT_EQ(a.origin["rpo_target_s"], "");
}

TEST(AgentFlagsTest, FlagFileMistakesNameFileAndLine) {
  testing::TempDir t;
  const fs::path f = t / "agent.flags";
  write_text(f,
             "--watch=/ckpt\n"
             "--rpo_taget_s=60\n"
             "rpo_target_s=60\n"
             "--max_jobs\n"
             "--max_jobs=3 # three\n"
             "--fan_out=sometimes\n"
             "--help\n"
             "--max jobs=3\n"
             "--flagfile=missing.flags\n");
  AgentArgs a = parse({"--flagfile=" + f.string()});
  const std::string at = f.string() + ":";
  EXPECT_EQ(a.errors, (std::vector<std::string>{
                          at + "2: unknown setting --rpo_taget_s; did you mean --rpo_target_s?",
                          at + "3: expected --setting=value, not 'rpo_target_s=60'",
                          at + "4: --max_jobs needs a value (--max_jobs=N)",
                          at + "5: --max_jobs=3 # three: not an integer",
                          at + "6: --fan_out=sometimes: not true or false",
                          at + "7: --help belongs on the command line, not in a flag file",
                          at + "8: expected --setting=value, not '--max jobs=3'",
                          at + "9: --flagfile=" + (t / "missing.flags").string() +
                              ": cannot read: No such file or directory",
                      }))
      << joined(a.errors);
  EXPECT_EQ(a.config.watch.size(), 1u);  // the good line still applies
}

TEST(AgentFlagsTest, NestedFlagFilesAreRelativeToTheirParentAndLoopsStop) {
  testing::TempDir t;
  fs::create_directories(t / "conf.d");
  write_text(t / "conf.d" / "site.flags", "--streams=7\n");
  write_text(t / "agent.flags", "--flagfile=conf.d/site.flags\n--threads=3\n");
  AgentArgs a = parse({"--flagfile=" + (t / "agent.flags").string()});
  ASSERT_TRUE(a.errors.empty()) << joined(a.errors);
  EXPECT_EQ(a.config.streams, 7);
  EXPECT_EQ(a.config.threads, 3);

  write_text(t / "loop.flags", "--flagfile=loop.flags\n");
  AgentArgs loop = parse({"--flagfile=" + (t / "loop.flags").string()});
  ASSERT_EQ(loop.errors.size(), 1u) << joined(loop.errors);
  EXPECT_NE(loop.errors[0].find("nest deeper than " + std::to_string(kMaxFlagfileDepth)), std::string::npos)
      << loop.errors[0];
}

TEST(AgentFlagsTest, ConfigProblemsCarryTheirOriginAndDoNotRepeat) {
  testing::TempDir t;
  TestCerts certs;
  fs::create_directories(t / "ckpt");
  const fs::path f = t / "agent.flags";
  const std::string good_lines =
      "--watch=" + (t / "ckpt").string() + "\n--targets=127.0.0.1:7443\n--ca=" + certs.set.ca_cert.string() +
      "\n--cert=" + certs.set.host_cert("alpha").string() +
      "\n--key=" + certs.set.host_key("alpha").string() + "\n--state_dir=" + (t / "state").string() + "\n";
  write_text(f, good_lines + "--max_jobs=0\n--threads=lots\n");
  AgentArgs a = parse({"--flagfile=" + f.string(), "--io_class=realtime"});
  EXPECT_EQ(config_problems(a), (std::vector<std::string>{
                                    f.string() + ":8: --threads=lots: not an integer",
                                    f.string() + ":7: --max_jobs=0: must be 1..64",
                                    "--io_class=realtime: expected idle or best-effort",
                                }));
  // A bad line stays a problem even when a later setting overrides it.
  EXPECT_EQ(config_problems(parse({"--flagfile=" + f.string(), "--max_jobs=1", "--threads=1"})),
            (std::vector<std::string>{f.string() + ":8: --threads=lots: not an integer"}));
  // A refused --watch is not reported again as "--watch is required".
  write_text(f, good_lines);
  AgentArgs b = parse({"--flagfile=" + f.string(), "--watch=,"});
  EXPECT_EQ(config_problems(b), (std::vector<std::string>{"--watch=,: empty item"}));
  AgentArgs good = parse({"--flagfile=" + f.string()});
  EXPECT_TRUE(config_problems(good).empty()) << joined(config_problems(good));
}

// The shipped example parses: every line is a setting this agent knows.
TEST(AgentFlagsTest, TheExampleFlagFileParses) {
  const char* source = std::getenv("FERRY_SOURCE_DIR");
  if (source == nullptr) GTEST_SKIP() << "FERRY_SOURCE_DIR is not set (ctest sets it)";
  const fs::path example = fs::path(source) / "packaging" / "ferry-agent.flags.example";
  AgentArgs a = parse({"--flagfile=" + example.string()});
  EXPECT_TRUE(a.errors.empty()) << joined(a.errors);
  EXPECT_EQ(a.config.marker_file, "COMMITTED");
  EXPECT_FALSE(a.config.marker_only);  // the marker is one signal among the others
  EXPECT_EQ(a.config.watch.size(), 2u);
  EXPECT_DOUBLE_EQ(a.config.incomplete_grace_s, AgentConfig{}.incomplete_grace_s);
}

TEST(AgentFlagsTest, HelpListsEverySettingWithItsDefault) {
  const std::string help = agent_flags_help();
  for (const char* want :
       {"usage: ferry-agent ", "  --watch=ROOT[=JOB],...  (default: \"\")",
        "  --marker_file=NAME  (default: \"\")", "  --marker_only  (default: false)",
        "  --rpo_target_s=SECONDS  (default: 3600)", "  --incomplete_grace_s=SECONDS  (default: 600)",
        "  --state_dir=DIR  (default: /var/lib/ferry-agent)", "  --skip_superseded  (default: true)",
        "  --log_format=text|json  (default: text)", "  --validate\n", "  --version\n",
        "  --flagfile=FILE\n"}) {
    EXPECT_NE(help.find(want), std::string::npos) << "missing '" << want << "' in:\n" << help;
  }
  for (std::size_t at = 0, end; at < help.size(); at = end + 1) {
    end = help.find('\n', at);
    if (end == std::string::npos) end = help.size();
    EXPECT_LE(end - at, 112u) << help.substr(at, end - at);
  }
}

}  // namespace
}  // namespace ferry::agent
