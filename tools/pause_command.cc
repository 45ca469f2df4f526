// pause_command.cc: `ferry pause [--job=NAME]` and `ferry resume [--job=NAME]`:
// stop and restart replication in the running ferry-agent, for one job or
// (without --job) for all. Paused work stays queued in the agent's journal.
#include <cstdio>

#include "tools/cli.h"

DECLARE_string(job);  // defined by pack_command.cc

namespace ferry::cli {
namespace {

int pause_or_resume(const std::string& command, const std::vector<std::string>& args) {
  if (!args.empty()) return usage_error(command + " takes no arguments (use --job=NAME for one job)");
  int code = kExitOk;
  auto answer = ask_agent(command, {{"job", FLAGS_job}}, &code);
  if (!answer) return code;
  const char* done = command == "pause" ? "paused" : "resumed";
  if (FLAGS_job.empty())
    std::printf("%s replication of every job\n", done);
  else
    std::printf("%s replication of job %s\n", done, FLAGS_job.c_str());
  return kExitOk;
}

Registrar pause_registrar(
    {"pause", "pause [--job=NAME] [--socket=PATH]", "pause the running agent's replication (all jobs or one)",
     [](const std::vector<std::string>& args) { return pause_or_resume("pause", args); }});
Registrar resume_registrar({"resume", "resume [--job=NAME] [--socket=PATH]",
                            "resume the running agent's replication (all jobs or one)",
                            [](const std::vector<std::string>& args) {
                              return pause_or_resume("resume", args);
                            }});

}  // namespace
}  // namespace ferry::cli
