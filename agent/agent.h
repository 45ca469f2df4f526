// agent.h: the ferry-agent daemon, wired from its parts: the watcher finds
// complete checkpoints, the journal makes every state change durable before
// it is acted on, the scheduler hands the newest checkpoint to one of
// max_jobs workers, each worker pushes it (replication/sender.h) to the
// healthiest target and journals the commit, the prober keeps target
// health, and a ticker keeps RPO, its warning and the metrics current. The
// control socket (status, submit, pause, resume) and /metrics look in.
//
// Exactly once at the DR site: a checkpoint's snapshot name and manifest
// time are fixed when it is submitted and journaled, so a push repeated
// after a crash rebuilds the identical manifest, which the receiver accepts
// again without a second snapshot.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "agent/config.h"
#include "base/log.h"
#include "base/status.h"

namespace ferry::agent {

// Tuning that is not configuration: how hard the agent retries.
inline constexpr int kPushMaxAttempts = 3;        // per connection, inside one push
inline constexpr int kRetryInitialDelayMs = 500;  // a failed job waits this long, doubling
inline constexpr int kRetryMaxDelayMs = 30'000;
inline constexpr int kRpoTickMs = 500;         // RPO, warning and gauges refresh
inline constexpr int kProbeTimeoutMs = 5'000;  // one probe's connect + HELLO

// Dials `target` with `tls` and completes HELLO within kProbeTimeoutMs: the
// health probe, and what --validate checks each target with.
Status probe_target(const std::string& target, const replication::TlsConfig& tls);

class Agent {
 public:
  // Validates `config`, applies process priorities, opens the journal (and
  // queues again what it left unfinished), probes every target once
  // (refusing to start when none answers, naming each target's error), and
  // starts the metrics server, control socket, watcher and workers.
  static Result<std::unique_ptr<Agent>> start(const AgentConfig& config, Logger& log);
  ~Agent();  // shutdown(0) when not done yet
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  // Stops taking jobs, gives in-flight pushes grace_s to finish, then
  // cancels them (they stay in flight in the journal and resume at the next
  // start) and joins every thread.
  void shutdown(double grace_s);
  // Applies a new configuration (validated by the caller): targets, limits,
  // RPO settings and watch roots change live; a bad one is refused whole.
  Status reload(const AgentConfig& next);

  // The control-socket handler: status, submit, pause, resume.
  nlohmann::json handle_control(const std::string& command, const nlohmann::json& args);
  nlohmann::json status_json();
  Result<std::uint64_t> submit(const std::filesystem::path& dir, const std::string& job);

  int metrics_port() const;

  struct Impl;

 private:
  explicit Agent(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The DR snapshot name for a checkpoint: replication/snapshot_name.h
// ("<job>-<directory name>", e.g. "llama-step-100"), the rule `ferry push
// --job` follows too.
std::string checkpoint_snapshot_name(const std::string& job, const std::filesystem::path& dir,
                                     std::uint64_t step);

// Lowers this process's CPU (nice increment) and I/O priority
// ("idle" or "best-effort" at its lowest level).
Status lower_process_priority(int nice_increment, const std::string& io_class);

}  // namespace ferry::agent
