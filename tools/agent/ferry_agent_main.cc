// ferry_agent_main.cc: the ferry-agent binary, the per-host daemon that keeps
// the DR copy of every checkpoint current (agent/agent.h). Configuration by
// flags or a flag file (--flagfile); validated at start with the setting
// named on any error (exit 2). Signals are taken by sigwait on the main
// thread, never in an async handler: SIGHUP re-reads the flag file and
// applies it live (a bad one is logged and the running one kept);
// SIGTERM/SIGINT stop taking jobs, give in-flight pushes --shutdown_grace_s,
// cancel the rest (the journal resumes them next start) and exit 0.
#include <gflags/gflags.h>
#include <signal.h>

#include <cstdio>
#include <string>
#include <vector>

#include "agent/agent.h"
#include "agent/config.h"
#include "base/log.h"

DEFINE_string(watch, "", "watched checkpoint roots: ROOT[=JOB][,ROOT2[=JOB2]] (required)");
DEFINE_string(marker_file, "", "a checkpoint is complete once this file appears in it (\"\" = off)");
DEFINE_string(targets, "", "DR receivers HOST:PORT[,HOST:PORT] in failover order (required)");
DEFINE_bool(fan_out, false, "every target gets every checkpoint");
DEFINE_string(ca, "", "PEM CA certificate of the deployment (required)");
DEFINE_string(cert, "", "PEM certificate of this host (required)");
DEFINE_string(key, "", "PEM private key of this host (required)");
DEFINE_string(state_dir, "/var/lib/ferry-agent", "directory of the journal");
DEFINE_string(control_socket, "/run/ferry-agent/control.sock",
              "unix control socket (ferry status/submit/pause/resume)");
DEFINE_string(metrics_listen, "127.0.0.1:9464", "HOST:PORT serving Prometheus /metrics (\"\" = off)");
DEFINE_int32(max_jobs, 1, "checkpoints replicated at the same time");
DEFINE_int32(streams, 4, "parallel TLS streams per push");
DEFINE_int32(threads, 2, "CPU threads for hashing and compression");
DEFINE_double(bandwidth_mbps, 0, "bandwidth cap in MB/s (0: none)");
DEFINE_string(engine, "auto", "codec engine: auto, cpu (CPU-only mode) or gpu");
DEFINE_int32(gpu_memory_mb, 1024, "device memory the GPU engine may hold");
DEFINE_int32(pinned_memory_mb, 256, "pinned host memory the GPU engine may hold");
DEFINE_int32(nice, 10, "CPU nice increment");
DEFINE_string(io_class, "idle", "I/O priority class: idle or best-effort (lowest level)");
DEFINE_double(rpo_target_s, 3600, "RPO target in seconds: warn before it is breached");
DEFINE_double(checkpoint_interval_s, 0, "expected seconds between checkpoints (0: learned)");
DEFINE_bool(skip_superseded, true, "skip an older checkpoint when a newer one of its job is waiting");
DEFINE_double(rescan_interval_s, 30, "full rescan of the roots (safety net behind inotify)");
DEFINE_double(probe_interval_s, 10, "seconds between target health probes");
DEFINE_int32(target_down_after, 3, "failed probes in a row before a target is down");
DEFINE_int32(target_up_after, 2, "good probes in a row before a down target is up");
DEFINE_double(shutdown_grace_s, 30, "seconds in-flight pushes get at SIGTERM before they are cancelled");
DEFINE_string(log_format, "text", "log lines: text or json");

namespace {

using namespace ferry;
using namespace ferry::agent;

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

ferry::Result<AgentConfig> config_from_flags() {
  AgentConfig c;
  auto watch = parse_watch_list(FLAGS_watch);
  if (!watch) return watch.status();
  c.watch = *watch;
  auto targets = parse_target_list(FLAGS_targets);
  if (!targets) return targets.status();
  c.targets = *targets;
  c.marker_file = FLAGS_marker_file;
  c.fan_out = FLAGS_fan_out;
  c.ca = FLAGS_ca;
  c.cert = FLAGS_cert;
  c.key = FLAGS_key;
  c.state_dir = FLAGS_state_dir;
  c.control_socket = FLAGS_control_socket;
  c.metrics_listen = FLAGS_metrics_listen;
  c.max_jobs = FLAGS_max_jobs;
  c.streams = FLAGS_streams;
  c.threads = FLAGS_threads;
  c.bandwidth_mbps = FLAGS_bandwidth_mbps;
  c.engine = FLAGS_engine;
  c.gpu_memory_mb = FLAGS_gpu_memory_mb;
  c.pinned_memory_mb = FLAGS_pinned_memory_mb;
  c.nice = FLAGS_nice;
  c.io_class = FLAGS_io_class;
  c.rpo_target_s = FLAGS_rpo_target_s;
  c.checkpoint_interval_s = FLAGS_checkpoint_interval_s;
  c.skip_superseded = FLAGS_skip_superseded;
  c.rescan_interval_s = FLAGS_rescan_interval_s;
  c.probe_interval_s = FLAGS_probe_interval_s;
  c.target_down_after = FLAGS_target_down_after;
  c.target_up_after = FLAGS_target_up_after;
  c.shutdown_grace_s = FLAGS_shutdown_grace_s;
  c.log_format = FLAGS_log_format;
  if (ferry::Status st = validate(c); !st) return st;
  return c;
}

// Before a reload re-reads the flag file, every flag of this binary goes
// back to its default, so a line removed from the file (or a bad value
// refused last time) does not linger; then the file is read and the
// command line's own flags (other than --flagfile) are applied again on top.
bool reread_flags(const std::string& flagfile, const std::string& argv0,
                  const std::vector<std::string>& args) {
  std::vector<gflags::CommandLineFlagInfo> flags;
  gflags::GetAllFlags(&flags);
  for (const auto& f : flags) {
    if (f.filename == __FILE__) gflags::SetCommandLineOption(f.name.c_str(), f.default_value.c_str());
  }
  if (!gflags::ReadFromFlagsFile(flagfile, argv0.c_str(), /*errors_are_fatal=*/false)) return false;
  for (const auto& a : args) {
    if (a.rfind("--", 0) != 0) continue;
    std::string body = a.substr(2), name = body, value = "true";
    if (auto eq = body.find('='); eq != std::string::npos) {
      name = body.substr(0, eq);
      value = body.substr(eq + 1);
    } else if (name.rfind("no", 0) == 0) {
      gflags::CommandLineFlagInfo info;
      if (!gflags::GetCommandLineFlagInfo(name.c_str(), &info)) {
        name = name.substr(2);
        value = "false";
      }
    }
    if (name == "flagfile") continue;
    gflags::SetCommandLineOption(name.c_str(), value.c_str());
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  gflags::SetUsageMessage(
      "ferry-agent --watch=ROOT[=JOB] --targets=HOST:PORT --ca=CA --cert=CERT --key=KEY [...]");
  const std::vector<std::string> args(argv + 1, argv + argc);
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  const std::string argv0 = argv[0];
  Logger log(FLAGS_log_format == "json" ? LogFormat::kJson : LogFormat::kText);
  if (argc > 1) {
    log.error("bad_arguments", {field("error", std::string("unexpected argument '") + argv[1] +
                                                   "' (all settings are flags)")});
    return kExitUsage;
  }
  auto config = config_from_flags();
  if (!config) {
    log.error("config_invalid", {field("error", config.status().message())});
    return kExitUsage;
  }

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
      std::string flagfile;
      gflags::GetCommandLineOption("flagfile", &flagfile);
      if (flagfile.empty()) {
        log.warn("reload_skipped", {field("reason", "no --flagfile to read again")});
        continue;
      }
      if (!reread_flags(flagfile, argv0, args)) {
        log.error("reload_refused",
                  {field("flagfile", flagfile), field("error", "the flag file does not parse")});
        continue;
      }
      auto next = config_from_flags();
      if (!next) {
        log.error("reload_refused", {field("flagfile", flagfile), field("error", next.status().message())});
        continue;
      }
      if (ferry::Status st = (*agent)->reload(*next); !st) {
        log.error("reload_refused", {field("error", st.to_string())});
        continue;
      }
      log.set_format(next->log_format == "json" ? LogFormat::kJson : LogFormat::kText);
      current = *next;
      continue;
    }
    log.info("shutdown_requested", {field("signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"),
                                    field("grace_s", current.shutdown_grace_s)});
    (*agent)->shutdown(current.shutdown_grace_s);
    return kExitOk;
  }
}
