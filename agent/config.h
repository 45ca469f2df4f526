// config.h: the agent's configuration as one plain struct, how the list
// flags (--watch, --targets) are parsed, and validate(), which checks it
// before the daemon starts and says exactly which setting is wrong
// ("--watch=/x: no such directory"). Flags themselves are defined only in
// the ferry-agent binary; this layer never sees gflags.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "codec/delta_chain.h"
#include "replication/tls.h"

namespace ferry::agent {

// Bounds on the numeric settings (outside them a value is a typo).
inline constexpr int kMaxJobsLimit = 64;
inline constexpr int kMaxThreadsLimit = 1024;
inline constexpr int kMaxNice = 19;
inline constexpr int kMaxTargets = 16;
inline constexpr int kMaxWatchRoots = 256;

// One watched root: a directory whose immediate subdirectories are
// checkpoints of `job` ("" = the root directory's own name).
struct WatchSpec {
  std::filesystem::path path;
  std::string job;
};

struct AgentConfig {
  std::vector<WatchSpec> watch;
  // A directory is also complete once this file appears in it ("" = off);
  // with marker_only, only then (see agent/watcher.h).
  std::string marker_file;
  bool marker_only = false;
  // HOST:PORT of receivers, or s3://BUCKET/PREFIX of a bucket written
  // straight (credentials from the AWS_* environment or ~/.aws), in
  // failover order.
  std::vector<std::string> targets;
  // The namespace (key prefix) under s3:// targets; "": the host name.
  std::string ns;
  bool fan_out = false;
  // Delta snapshots (codec/delta_chain.h, docs/OPERATIONS.md).
  std::string delta = "key";  // key | previous | off
  int key_every = static_cast<int>(kDefaultKeyEvery);
  double delta_min_gain = kDefaultDeltaMinGain;
  std::string ca, cert, key;
  // PEM CRLs of the CA ("" = none): a receiver certificate on one is
  // refused. Read at every connection; SIGHUP checks it at once.
  std::string crl;
  std::filesystem::path state_dir = "/var/lib/ferry-agent";
  std::filesystem::path control_socket = "/run/ferry-agent/control.sock";
  std::string metrics_listen = "127.0.0.1:9464";  // "" = off
  int max_jobs = 1;
  int streams = 4;
  int threads = 2;
  double bandwidth_mbps = 0;  // MB/s (10^6 bytes), 0 = no cap
  std::string engine = "auto";
  int gpu_memory_mb = 1024;
  int pinned_memory_mb = 256;
  int nice = 10;
  std::string io_class = "idle";  // idle | best-effort
  double rpo_target_s = 3600;
  double checkpoint_interval_s = 0;  // 0 = learned
  bool skip_superseded = true;
  double rescan_interval_s = 30;
  // A checkpoint directory still not complete this long after it was first
  // seen is logged (checkpoint_incomplete, once per root) and shown by status.
  double incomplete_grace_s = 600;
  double probe_interval_s = 10;
  int target_down_after = 3;
  int target_up_after = 2;
  double shutdown_grace_s = 30;
  std::string log_format = "text";

  replication::TlsConfig tls() const;
  std::uint64_t bandwidth_bytes_per_s() const;
  // REQUIRES: validate passed (an unknown --delta reads as key).
  DeltaPolicy delta_policy() const;
};

// "ROOT[=JOB],ROOT2[=JOB2]" (each root made absolute). InvalidArgument
// naming --watch for an empty list or item.
Result<std::vector<WatchSpec>> parse_watch_list(std::string_view value);
// "HOST:PORT[,HOST:PORT]" (or s3:// URLs): each checked by check_target_address.
Result<std::vector<std::string>> parse_target_list(std::string_view value);
// HOST:PORT with a non-empty host and a port in 1..65535 ([v6]:PORT too),
// or an s3://BUCKET/PREFIX URL (store/s3_store.h parse_s3_url).
Status check_target_address(std::string_view address);

// Everything that can be checked without the network: roots exist and are
// directories, targets well formed, the certificate files readable and a
// client TLS context builds from them, limits in range, the state directory
// creatable (it is created). Each problem names the flag and its value;
// validate_all returns every one, validate the first.
std::vector<Status> validate_all(const AgentConfig& config);
Status validate(const AgentConfig& config);

// The codec engine `engine` (--engine: auto, cpu, gpu) would run on this
// host, for --version and --validate: "gpu (GPU 0 is usable)", "cpu
// (--engine=cpu)", "cpu (no usable GPU: REASON)", or "none: ..." for gpu
// without a usable GPU. A cheap probe: no engine is made.
std::string describe_engine(const std::string& engine);

}  // namespace ferry::agent
