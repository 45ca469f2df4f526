// ferry_cli.h: what the tool tests share to run the built `ferry` binary
// (FERRY_BIN, set by tests/CMakeLists.txt for the tools layer).
#pragma once

#include <string>

#include "tests/testing/testing.h"

namespace ferry::cli_test {

using CliRun = testing::CommandRun;

inline std::string quote(const std::string& s) { return testing::shell_quote(s); }

// Runs `ferry ARGS` (args already shell-quoted where needed) and captures output.
inline CliRun ferry(const std::string& args) { return testing::run_command(FERRY_BIN, args); }

}  // namespace ferry::cli_test
