// submit_command.cc: `ferry submit DIR [--job=NAME]`: hands a finished
// checkpoint directory to the running ferry-agent, which journals it and
// replicates it like one it found itself. The path is sent absolute, since
// the agent does not share the caller's working directory.
#include <cstdio>
#include <filesystem>
#include <system_error>

#include "tools/cli.h"

namespace ferry::cli {
namespace {

void define_submit(CLI::App& app) {
  add_args(app, "DIR", "the checkpoint directory", 1);
  add_job(app, "the job to file it under (default: the watched root's job, or the parent directory's name)");
  add_socket(app);
}

int run_submit(const std::vector<std::string>& args) {
  if (args.size() != 1) return usage_error("submit needs exactly one checkpoint DIR");
  std::error_code ec;
  std::filesystem::path dir = std::filesystem::absolute(args[0], ec).lexically_normal();
  if (ec) return usage_error("submit " + args[0] + ": " + ec.message());
  if (!std::filesystem::is_directory(dir, ec)) {
    return usage_error("submit " + dir.string() + ": not a directory");
  }
  // "step-300/" normalises to "step-300/" with an empty last part; drop it.
  if (dir.has_parent_path() && dir.filename().empty()) dir = dir.parent_path();
  int code = kExitOk;
  auto answer = ask_agent("submit", {{"dir", dir.string()}, {"job", settings().job}}, &code);
  if (!answer) return code;
  std::string id = answer->contains("id") ? answer->at("id").dump() : "?";
  std::printf("submitted %s%s (id %s)\n", dir.c_str(),
              settings().job.empty() ? "" : (" as job " + settings().job).c_str(), id.c_str());
  return kExitOk;
}

Registrar registrar({"submit", "submit DIR [--job=NAME] [--socket=PATH]",
                     "have the running agent replicate a checkpoint directory", define_submit, run_submit});

}  // namespace
}  // namespace ferry::cli
