// main.cc: `ferry-bench SUBCOMMAND [flags]`. Lists subcommands when called
// without one. Flags are parsed by each subcommand (gflags, after the name).
#include <gflags/gflags.h>
#include <sys/resource.h>

#include <cstdio>
#include <ctime>
#include <map>
#include <string>

#include "bench/bench.h"

// Shared by every subcommand: where to write its results as JSON.
DEFINE_string(json_out, "", "write the results as JSON to this path");

namespace ferry::bench {

namespace {
struct Entry {
  std::string summary;
  BenchMain fn;
};
std::map<std::string, Entry>& registry() {
  static std::map<std::string, Entry> r;
  return r;
}
}  // namespace

Registrar::Registrar(const char* name, const char* summary, BenchMain fn) {
  registry()[name] = {summary, std::move(fn)};
}

}  // namespace ferry::bench

int main(int argc, char** argv) {
  auto& reg = ferry::bench::registry();
  if (argc < 2 || reg.find(argv[1]) == reg.end()) {
    std::fprintf(stderr, "usage: ferry-bench SUBCOMMAND [--flags]\n\nsubcommands:\n");
    for (auto& [name, e] : reg) std::fprintf(stderr, "  %-12s %s\n", name.c_str(), e.summary.c_str());
    return argc < 2 ? 2 : 1;
  }
  std::string name = argv[1];
  // Hand the remaining arguments to gflags as if the subcommand were argv[0].
  argv[1] = argv[0];
  int sub_argc = argc - 1;
  char** sub_argv = argv + 1;
  gflags::SetUsageMessage("ferry-bench " + name);
  gflags::ParseCommandLineFlags(&sub_argc, &sub_argv, true);
  std::vector<std::string> rest(sub_argv + 1, sub_argv + sub_argc);
  return reg[name].fn(rest);
}
