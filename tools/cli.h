// cli.h: what the `ferry` subcommands share: the subcommand registry, flags
// used by several subcommands, the exit-code policy, human-readable sizes and
// the progress line printed on stderr while long work runs.
#pragma once

#include <gflags/gflags.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>
#include "base/clock.h"
#include "base/human_size.h"
#include "codec/engine.h"

#include "base/clock.h"
#include "base/status.h"
#include "codec/packer.h"
#include "replication/tls.h"
DECLARE_string(o);
DECLARE_int32(threads);
DECLARE_bool(progress);
// The running agent's control socket (status, submit, pause, resume).
DECLARE_string(socket);
// Replication subcommands (serve, push, list, restore) share these: the mTLS
// files and the stream count. --to is HOST:PORT for push and DIR for restore.
DECLARE_string(ca);
DECLARE_string(cert);
DECLARE_string(key);
DECLARE_string(to);
DECLARE_bool(exact_modes);
DECLARE_int32(streams);
// The receiver's store directory (serve and the store's own subcommands) and
// the receiver a restore or list reads from (HOST:PORT).
DECLARE_string(store);
DECLARE_string(from);
// The codec engine of pack and push: auto, cpu or gpu.
DECLARE_string(engine);

namespace ferry::cli {

// Exit codes: 0 success, 1 a data or system problem (corruption, I/O),
// 2 a usage error (bad flags or arguments, missing input).
inline constexpr int kExitOk = 0;
inline constexpr int kExitDataError = 1;
inline constexpr int kExitUsage = 2;

// A subcommand gets its positional arguments (flags already parsed).
using CommandMain = std::function<int(const std::vector<std::string>& args)>;

struct Command {
  const char* name;
  const char* usage;  // "pack FILE|DIR -o OUT.ferry [--chunk_size=N] ..."
  const char* summary;
  CommandMain run;
};

struct Registrar {
  explicit Registrar(Command c);
};
const std::vector<Command>& commands();

// Prints "ferry: <message>" on stderr and returns kExitUsage.
int usage_error(std::string_view message);
// Prints "ferry: <status>" on stderr and returns the exit code for it.
int fail(const Status& status);

// The certificate flags --ca, --cert, --key and --crl (optional) as a TLS
// configuration, or
// InvalidArgument naming `command` when any of them is missing.
Result<replication::TlsConfig> tls_from_flags(std::string_view command);

// What `path` packs (list_pack_sources), with its notices (skipped links and
// special files) printed on stderr.
Result<std::vector<PackSource>> pack_sources(const std::string& path);

// The codec engine --engine asks for (cuda/gpu_engine.h: choose_engine, which
// logs the choice once on stderr); the CPU engine runs on `pool` at
// `zstd_level`. InvalidArgument for a bad --engine value, Unavailable for
// --engine=gpu without a usable GPU.
Result<std::unique_ptr<CodecEngine>> engine_from_flags(ThreadPool& pool, int zstd_level);

// Sends `command` with `args` to the agent on --socket (agent/control.h) and
// returns its {"ok":true,...} answer. Otherwise prints one line on stderr
// (no agent listening, permission denied, or the agent's own error) and
// stores the exit code in *exit_code.
std::optional<nlohmann::json> ask_agent(const std::string& command, const nlohmann::json& args,
                                        int* exit_code);

using ferry::format_bytes;  // base/human_size.h: "37.4 MB"
// Monotonic seconds.

// Throttled progress on stderr: nothing during the first second, then one
// line refreshed in place (a terminal) or a line every few seconds (a log).
class ProgressLine {
 public:
  explicit ProgressLine(std::string verb);
  ~ProgressLine();  // ends the line if one was printed
  // done/total logical bytes; stored: frame bytes so far (ratio done/stored).
  void update(std::uint64_t done, std::uint64_t total, std::uint64_t stored);
  void finish();

 private:
  std::string verb_;
  double start_;
  double last_ = 0;
  bool printed_ = false;
  bool tty_;
};

}  // namespace ferry::cli
