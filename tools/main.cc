// main.cc: the `ferry` command. `ferry SUBCOMMAND [args] [--flags]` (or
// `ferry --version`, `ferry help`): picks the
// subcommand registered by tools/<name>_command.cc and parses its flags. Flags
// are set through gflags' SetCommandLineOption rather than
// ParseCommandLineFlags so that a bad flag is a usage error (exit code 2)
// with one clear line, not gflags' own exit.
#include <gflags/gflags.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "agent/agent_flags.h"
#include "agent/config.h"
#include "base/build_info.h"
#include "tools/cli.h"

namespace {

using ferry::cli::commands;
using ferry::cli::usage_error;

void print_usage(FILE* out) {
  std::fprintf(out, "usage: ferry SUBCOMMAND [ARGS] [--flags]\n\n");
  for (const auto& c : commands()) std::fprintf(out, "  %-58s %s\n", c.usage, c.summary);
  std::fprintf(
      out,
      "\nferry --version: version, git commit, build options and the codec engine this host would use\n"
      "common flags: --threads=N (0: one per CPU), --noprogress\n"
      "exit codes: 0 ok, 1 data or system problem (corruption, I/O), 2 usage error\n");
}

bool is_bool_flag(const std::string& name) {
  gflags::CommandLineFlagInfo info;
  return gflags::GetCommandLineFlagInfo(name.c_str(), &info) && info.type == "bool";
}
bool is_flag(const std::string& name) {
  gflags::CommandLineFlagInfo info;
  return gflags::GetCommandLineFlagInfo(name.c_str(), &info);
}

// Splits args into flags (applied) and positionals; returns an exit code on
// a usage error, or -1.
int parse_args(int argc, char** argv, std::vector<std::string>& positional, bool& help) {
  bool flags_done = false;
  for (int i = 0; i < argc; ++i) {
    std::string arg = argv[i];
    if (flags_done || arg.size() < 2 || arg[0] != '-') {
      positional.push_back(arg);
      continue;
    }
    if (arg == "--") {
      flags_done = true;
      continue;
    }
    const auto split = ferry::agent::split_flag_argument(arg);
    std::string name(split.name), value(split.value);
    bool has_value = split.has_value;
    if (name == "help" || name == "h") {
      help = true;
      continue;
    }
    if (!is_flag(name)) {
      if (!has_value && name.rfind("no", 0) == 0 && is_bool_flag(name.substr(2))) {
        name = name.substr(2);
        value = "false";
        has_value = true;
      } else {
        return usage_error("unknown flag " + arg + " (see ferry help)");
      }
    }
    if (!has_value) {
      if (is_bool_flag(name)) {
        value = "true";
      } else if (i + 1 < argc) {
        value = argv[++i];
      } else {
        return usage_error("flag " + arg + " needs a value");
      }
    }
    if (gflags::SetCommandLineOption(name.c_str(), value.c_str()).empty()) {
      return usage_error("invalid value \"" + value + "\" for flag --" + name);
    }
  }
  return -1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    print_usage(stderr);
    return ferry::cli::kExitUsage;
  }
  std::string name = argv[1];
  if (name == "help" || name == "--help" || name == "-h") {
    print_usage(stdout);
    return ferry::cli::kExitOk;
  }
  if (name == "--version") {
    std::printf("ferry %s\n%sengine %s\n", std::string(ferry::build_info().version).c_str(),
                ferry::build_info_lines().c_str(), ferry::agent::describe_engine("auto").c_str());
    return ferry::cli::kExitOk;
  }
  const ferry::cli::Command* cmd = nullptr;
  for (const auto& c : commands()) {
    if (name == c.name) cmd = &c;
  }
  if (!cmd) {
    print_usage(stderr);
    return usage_error("unknown subcommand \"" + name + "\"");
  }
  std::vector<std::string> positional;
  bool help = false;
  if (int rc = parse_args(argc - 2, argv + 2, positional, help); rc >= 0) return rc;
  if (help) {
    std::printf("usage: ferry %s\n  %s\n", cmd->usage, cmd->summary);
    return ferry::cli::kExitOk;
  }
  return cmd->run(positional);
}
