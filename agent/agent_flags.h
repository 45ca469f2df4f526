// agent_flags.h: ferry-agent's settings as flags. One table names every
// setting (name, value, default, help); the command line and flag files
// (--flagfile=FILE: one --setting=value per line, # comments) are parsed
// against it into an AgentConfig, and --help prints it. An unknown setting,
// a malformed line or a bad value is an error that names the setting, and
// for a flag file the file and line, so a typo never runs silently on a
// default (gflags ignores unknown flags in flag files and exits 1, not 2,
// on the command line; ferry-agent does not use it).
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "agent/config.h"

namespace ferry::agent {

// --flagfile inside a flag file may nest this deep (deeper is a loop).
inline constexpr int kMaxFlagfileDepth = 8;
// A flag file larger than this is refused (real ones are a few kB).
inline constexpr std::uintmax_t kMaxFlagfileBytes = 1u << 20;

struct AgentArgs {
  // The defaults with every setting given applied in order; not validated.
  AgentConfig config;
  bool help = false;       // --help, -h
  bool version = false;    // --version
  bool validate = false;   // --validate: check everything, start nothing
  bool man = false;        // --man: print the man page (roff)
  std::string completion;  // --completion=SHELL: print a completion script
  // The flag files named on the command line, in order (SIGHUP reads them again).
  std::vector<std::string> flagfiles;
  // Where each setting was last given: "FILE:LINE" for a flag file, "" for
  // the command line. Prefixes validation problems with their origin.
  std::map<std::string, std::string> origin;
  // Every problem found while parsing, one line each, naming the setting
  // (and FILE:LINE for a flag file).
  std::vector<std::string> errors;
};

// One "--name=value", "-name=value" or "--name" argument taken apart
// (has_value: there was an '='). Shared by ferry and ferry-agent.
struct FlagArgument {
  std::string_view name;
  std::string_view value;
  bool has_value = false;
};
FlagArgument split_flag_argument(std::string_view arg);

// Parses `args` (argv without argv[0]) in order; a --flagfile is read where
// it appears, so later settings override it. Problems go to `errors`, so
// one pass names every one.
AgentArgs parse_agent_args(std::span<const std::string> args);

// Every problem with the settings: the parse errors, then validate_all's
// (those of a setting that already has a parse error left out), each
// prefixed with the FILE:LINE that set it. Empty when the configuration is
// good. Creates the state directory (as validate does).
std::vector<std::string> config_problems(const AgentArgs& args);

// The --help text: usage, then every setting with its value, default and
// meaning, in sections.
std::string agent_flags_help();

// One setting as the help, the man page and shell completion show it.
struct SettingDoc {
  std::string section;  // non-empty: the heading of a new group
  std::string name;
  std::string value;  // "N", "HOST:PORT", ...; "" for a bool
  std::string help;   // with "(default: X)"
};
// Every setting from the same table the parser reads, in --help order,
// then the modes (--validate, --version, --flagfile, --man, --completion).
std::vector<SettingDoc> agent_setting_docs();

}  // namespace ferry::agent
