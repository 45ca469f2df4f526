// ferry_agent_main.cc: the ferry-agent binary, the per-host daemon that keeps
// the DR copy of every checkpoint current (agent/agent.h). Configuration by
// flags or a flag file (--flagfile; agent/agent_flags.h); an unknown
// setting, a bad value or a failed check at start names the setting (and
// the file and line) and exits 2. --validate checks everything and probes
// the targets without starting; --version and --help print and exit 0.
// Signals are taken by sigwait on the main
// thread, never in an async handler: SIGHUP re-reads the flag file and
// applies it live (a bad one is logged and the running one kept), and
// checks the --crl file (connections read it anew each time);
// SIGTERM/SIGINT stop taking jobs, give in-flight pushes --shutdown_grace_s,
// cancel the rest (the journal resumes them next start) and exit 0.
#include <signal.h>

#include <cstdio>
#include <string>
#include <vector>

#include "agent/agent.h"
#include "agent/agent_flags.h"
#include "agent/config.h"
#include "base/build_info.h"
#include "base/log.h"
#include "replication/tls.h"
#include "tools/cli_docs.h"

namespace {

using namespace ferry;
using namespace ferry::agent;

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

std::string join(const std::vector<std::string>& lines, const char* sep) {
  std::string out;
  for (const auto& l : lines) out += (out.empty() ? "" : sep) + l;
  return out;
}

// What a checkpoint must show before it is replicated, in words.
std::string completion_rule(const AgentConfig& c) {
  if (c.marker_only) return "only the marker file " + c.marker_file + " (or ferry submit)";
  std::string out = "a DCP .metadata, a safetensors index with every shard";
  if (!c.marker_file.empty()) out += ", the marker file " + c.marker_file;
  return out + " or ferry submit";
}

// --validate: every problem on its own line on stderr and exit 2, or a
// summary on stdout and exit 0. Targets are probed (connect, TLS, HELLO)
// whenever the certificate files make a TLS context, whatever else is wrong.
int run_validate(const AgentArgs& args) {
  std::vector<std::string> problems = config_problems(args);
  const AgentConfig& c = args.config;
  if (replication::TlsContext::create(c.tls()).is_ok()) {
    for (const auto& t : c.targets) {
      ferry::Status st = probe_target(t, c.tls());
      if (!st) problems.push_back("--targets: " + t + " is not reachable: " + st.to_string());
    }
  }
  const std::string engine = describe_engine(c.engine);
  if (engine.starts_with("none")) problems.push_back("--engine=" + c.engine + ": " + engine);
  for (const auto& p : problems) std::fprintf(stderr, "ferry-agent: %s\n", p.c_str());
  if (!problems.empty()) return kExitUsage;
  std::printf(
      "ferry-agent: configuration OK: %zu root(s), %zu target(s) reachable, engine %s; a checkpoint is "
      "complete with %s\n",
      c.watch.size(), c.targets.size(), engine.c_str(), completion_rule(c).c_str());
  return kExitOk;
}

// --man and --completion=bash: generated from the settings table the parser
// reads (agent_setting_docs), by the same generator as ferry's.
int print_docs(const AgentArgs& parsed) {
  cli::ProgramDoc doc;
  doc.program = "ferry-agent";
  doc.summary = "keep the DR copy of every checkpoint of this host current";
  doc.synopsis =
      "ferry-agent --watch=ROOT[=JOB] --targets=HOST:PORT --ca=CA --cert=CERT --key=KEY [--setting=value "
      "...]";
  doc.version = std::string(build_info().version);
  doc.description =
      "The per-host agent: replicates every complete checkpoint under the watched roots to the DR "
      "receivers.\n"
      "Settings come from the command line and from flag files (--flagfile=FILE: one --setting=value per\n"
      "line, # comments; a later setting overrides an earlier one). An unknown setting or a bad value is an\n"
      "error naming it (and the file and line). Booleans take --name, --noname or --name=true|false.";
  for (const SettingDoc& s : agent_setting_docs()) doc.flags.push_back({"--" + s.name, "", s.value, s.help});
  doc.sections.push_back(
      {"EXIT STATUS",
       "0 stopped by SIGTERM or SIGINT (or --help, --version, a good --validate); 1 cannot start (no target\n"
       "reachable, the journal locked); 2 the configuration is wrong (not retried by the systemd unit)."});
  doc.sections.push_back({"SEE ALSO", "ferry(1); docs/OPERATIONS.md"});
  if (parsed.man) {
    std::fputs(cli::man_page(doc).c_str(), stdout);
    return kExitOk;
  }
  if (parsed.completion != "bash") {
    std::fprintf(stderr, "ferry-agent: --completion: only bash is supported (got \"%s\")\n",
                 parsed.completion.c_str());
    return kExitUsage;
  }
  std::fputs(cli::bash_completion(doc).c_str(), stdout);
  return kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  AgentArgs parsed = parse_agent_args(args);
  if (parsed.help) {
    std::fputs(agent_flags_help().c_str(), stdout);
    return kExitOk;
  }
  if (parsed.version) {
    std::printf("ferry-agent %s\n%sengine %s\n", std::string(build_info().version).c_str(),
                build_info_lines().c_str(), describe_engine(parsed.config.engine).c_str());
    return kExitOk;
  }
  if (parsed.man || !parsed.completion.empty()) return print_docs(parsed);
  if (parsed.validate) return run_validate(parsed);
  Logger log(parsed.config.log_format == "json" ? LogFormat::kJson : LogFormat::kText);
  if (auto problems = config_problems(parsed); !problems.empty()) {
    for (const auto& p : problems) log.error("config_invalid", {field("error", p)});
    return kExitUsage;
  }
  const AgentConfig* config = &parsed.config;

  // Blocked in every thread (they inherit the mask), taken by sigwait below.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGHUP);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  // A closed stdout or a vanished peer must not kill the daemon.
  signal(SIGPIPE, SIG_IGN);

  auto agent = Agent::start(*config, log);
  if (!agent) {
    log.error("start_failed", {field("error", agent.status().to_string())});
    return agent.status().code() == ferry::Code::kInvalidArgument ? kExitUsage : kExitFailure;
  }
  std::printf("ferry-agent: ready control_socket=%s metrics_port=%d\n", config->control_socket.c_str(),
              (*agent)->metrics_port());
  std::fflush(stdout);

  AgentConfig current = *config;
  for (;;) {
    int sig = 0;
    if (sigwait(&signals, &sig) != 0) continue;
    if (sig == SIGHUP) {
      // The same arguments again: every flag file is read anew, and the
      // command line's own settings apply in their places as at start.
      if (parsed.flagfiles.empty()) {
        // Every connection reads the TLS files anew, so a replaced --crl
        // is in force already; checking it now reports a bad one at once.
        if (!current.crl.empty()) {
          auto ctx = ferry::replication::TlsContext::create(current.tls());
          if (ctx) {
            log.info("crl_reloaded", {field("crl", current.crl)});
          } else {
            log.error("crl_refused", {field("crl", current.crl), field("error", ctx.status().to_string())});
          }
          continue;
        }
        log.warn("reload_skipped", {field("reason", "no --flagfile to read again")});
        continue;
      }
      const std::string flagfile = join(parsed.flagfiles, ",");
      AgentArgs next = parse_agent_args(args);
      if (auto problems = config_problems(next); !problems.empty()) {
        log.error("reload_refused", {field("flagfile", flagfile), field("error", join(problems, "; "))});
        continue;
      }
      if (ferry::Status st = (*agent)->reload(next.config); !st) {
        log.error("reload_refused", {field("error", st.to_string())});
        continue;
      }
      log.set_format(next.config.log_format == "json" ? LogFormat::kJson : LogFormat::kText);
      current = next.config;
      continue;
    }
    log.info("shutdown_requested", {field("signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"),
                                    field("grace_s", current.shutdown_grace_s)});
    (*agent)->shutdown(current.shutdown_grace_s);
    return kExitOk;
  }
}
