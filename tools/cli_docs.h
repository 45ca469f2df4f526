// cli_docs.h: shell completion and man pages, generated from a plain
// description of a program's flags. `ferry` describes itself from its
// CLI11 definitions (tools/main.cc) and `ferry-agent` from its settings
// table (agent/agent_flags.h), so what a user can complete and read is what
// the parser accepts. No CLI11 here: both binaries link this file.
#pragma once

#include <string>
#include <vector>

namespace ferry::cli {

struct FlagDoc {
  std::string name;   // "--ca" (the long name, with dashes)
  std::string alias;  // "-o", "--noprogress" or ""
  std::string value;  // "FILE", "N", ...; "" for a flag that takes no value
  std::string help;
};

struct CommandDoc {
  std::string name;
  std::string usage;  // "push FILE|DIR --to=HOST:PORT ..."
  std::string summary;
  std::vector<FlagDoc> flags;
};

struct ProgramDoc {
  std::string program;      // "ferry"
  std::string summary;      // one line, for NAME
  std::string synopsis;     // "ferry SUBCOMMAND [ARGS] [--flags]"
  std::string description;  // paragraphs separated by blank lines
  std::string version;
  std::vector<FlagDoc> flags;  // the program's own (no subcommand)
  std::vector<CommandDoc> commands;
  // Extra man sections, in order: {"ENVIRONMENT", text}, ... Text lines
  // starting with "  " are kept as they are (a table).
  std::vector<std::pair<std::string, std::string>> sections;
};

// A bash completion script: subcommand names, then each subcommand's
// flags ("--name=" for those with a value), files otherwise.
std::string bash_completion(const ProgramDoc& doc);

// The man page (section 1) in roff (man(7) macros).
std::string man_page(const ProgramDoc& doc);

}  // namespace ferry::cli
