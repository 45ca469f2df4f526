// pause_command.cc: `ferry pause [--job=NAME]` and `ferry resume [--job=NAME]`:
// stop and restart replication in the running ferry-agent, for one job or
// (without --job) for all. Paused work stays queued in the agent's journal.
#include <cstdio>

#include "tools/cli.h"

namespace ferry::cli {
namespace {

void define_pause_or_resume(CLI::App& app) {
  add_job(app, "the job to pause or resume (default: every job)");
  add_socket(app);
}

int pause_or_resume(const std::string& command) {
  int code = kExitOk;
  auto answer = ask_agent(command, {{"job", settings().job}}, &code);
  if (!answer) return code;
  const char* done = command == "pause" ? "paused" : "resumed";
  if (settings().job.empty())
    std::printf("%s replication of every job\n", done);
  else
    std::printf("%s replication of job %s\n", done, settings().job.c_str());
  return kExitOk;
}

Registrar pause_registrar({"pause", "pause [--job=NAME] [--socket=PATH]",
                           "pause the running agent's replication (all jobs or one)", define_pause_or_resume,
                           [](const std::vector<std::string>&) { return pause_or_resume("pause"); }});
Registrar resume_registrar({"resume", "resume [--job=NAME] [--socket=PATH]",
                            "resume the running agent's replication (all jobs or one)",
                            define_pause_or_resume,
                            [](const std::vector<std::string>&) { return pause_or_resume("resume"); }});

}  // namespace
}  // namespace ferry::cli
