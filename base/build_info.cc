// build_info.cc: see build_info.h. The FERRY_BUILD_* values are compile
// definitions that base/CMakeLists.txt sets on this file alone, and the
// commit a header generated at every build that changes only with it, so a
// new commit recompiles one file.
#include "base/build_info.h"

#include "git_commit.h"  // FERRY_BUILD_GIT_COMMIT, generated at every build

#ifndef FERRY_BUILD_VERSION
#define FERRY_BUILD_VERSION "unknown"
#endif
#ifndef FERRY_BUILD_TYPE
#define FERRY_BUILD_TYPE "unknown"
#endif
#ifndef FERRY_BUILD_CUDA
#define FERRY_BUILD_CUDA 0
#endif
#ifndef FERRY_BUILD_STATIC_DEPS
#define FERRY_BUILD_STATIC_DEPS 0
#endif
#ifndef FERRY_BUILD_SANITIZERS
#define FERRY_BUILD_SANITIZERS ""
#endif

namespace ferry {

const BuildInfo& build_info() {
  static const BuildInfo info{FERRY_BUILD_VERSION,   FERRY_BUILD_GIT_COMMIT,       FERRY_BUILD_TYPE,
                              FERRY_BUILD_CUDA != 0, FERRY_BUILD_STATIC_DEPS != 0, FERRY_BUILD_SANITIZERS};
  return info;
}

std::string build_info_lines() {
  const BuildInfo& b = build_info();
  std::string out = "commit " + std::string(b.git_commit) + "\n";
  out += "build " + std::string(b.build_type) + ", CUDA " + (b.cuda ? "on" : "off") + ", static deps " +
         (b.static_deps ? "on" : "off") + ", sanitizers " +
         (b.sanitizers.empty() ? std::string("none") : std::string(b.sanitizers)) + "\n";
  return out;
}

}  // namespace ferry
