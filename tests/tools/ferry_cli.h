// ferry_cli.h: what the tool tests share to run the built `ferry` binary
// (FERRY_BIN, set by tests/CMakeLists.txt for the tools layer).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/testing/testing.h"

namespace ferry::cli_test {

using CliRun = testing::CommandRun;

inline std::string quote(const std::string& s) { return testing::shell_quote(s); }

// Runs `ferry ARGS` (args already shell-quoted where needed) and captures output.
inline CliRun ferry(const std::string& args) { return testing::run_command(FERRY_BIN, args); }

// The JSON objects of a command's --json output, one per line; lines that
// are not JSON objects (notices on stderr) are skipped.
inline std::vector<nlohmann::json> json_lines(const std::string& out) {
  std::vector<nlohmann::json> v;
  std::size_t at = 0;
  while (at < out.size()) {
    std::size_t end = out.find('\n', at);
    if (end == std::string::npos) end = out.size();
    const std::string line = out.substr(at, end - at);
    if (line.starts_with("{")) v.push_back(nlohmann::json::parse(line));
    at = end + 1;
  }
  return v;
}

}  // namespace ferry::cli_test
