// build_info.h: what this build of ferry is: its version (the CMake project
// version), the git commit it was configured from ("unknown" outside a git
// checkout) and the build options that change what it can do (the GPU
// engine compiled in or not, static dependencies, sanitizers, build type).
// `ferry --version`, `ferry-agent --version` and ferry.__version__ report
// these, so a bug report or an upgrade check names the exact build.
#pragma once

#include <string>
#include <string_view>

namespace ferry {

struct BuildInfo {
  std::string_view version;     // "0.1.0"
  std::string_view git_commit;  // "9e5d9b3" or "unknown"
  std::string_view build_type;  // "RelWithDebInfo"
  bool cuda = false;            // the GPU engine is compiled in
  bool static_deps = false;     // FERRY_STATIC_DEPS
  std::string_view sanitizers;  // "" or "address,undefined"
};

const BuildInfo& build_info();

// The lines `--version` prints after the program's own name and version:
// "commit 9e5d9b3\nbuild RelWithDebInfo, CUDA on, static deps off, sanitizers none\n".
std::string build_info_lines();

}  // namespace ferry
