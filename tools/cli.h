// cli.h: what the `ferry` subcommands share: the subcommand registry, the
// settings several subcommands take (each subcommand binds only those it
// uses, so any other flag is a usage error), settings from the environment
// and a config file, exit codes (tools/exit_codes.h), JSON output, and the
// progress line printed on stderr while long work runs.
#pragma once

#include <CLI/CLI.hpp>

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
#include "base/status.h"
#include "codec/engine.h"
#include "codec/packer.h"
#include "replication/tls.h"
#include "tools/exit_codes.h"

namespace ferry::cli {

// The settings shared by several subcommands. Only the options a
// subcommand adds (add_* below) can be set for it; the rest keep these
// defaults.
struct Settings {
  std::vector<std::string> args;  // positional arguments
  std::string output;             // -o: pack's archive, unpack's directory
  int threads = 0;                // 0: one per CPU
  bool progress = true;
  bool json = false;
  std::string socket;  // the agent's control socket
  // mTLS files (serve, push, list, restore).
  std::string ca, cert, key;
  std::string crl;   // optional CRL file
  std::string name;  // push: the snapshot name
  // push: the receivers HOST:PORT[,...]; restore: DIR or cuda:N.
  std::string to;
  std::string from;   // list, restore: the receiver HOST:PORT
  std::string store;  // the receiver's store directory
  std::string ns;     // --namespace
  std::string engine = "auto";
  std::string job;
  bool exact_modes = false;
  int streams = 4;
  std::uint64_t chunk_size = 0;  // set from codec/chunker.h's default
  std::uint64_t step = 0;
  int zstd_level = 0;  // set from codec/packer.h's default
  // s3:// stores (add_s3): each, when given, sets the variable the S3
  // client reads (store/s3_client.h s3_config_from_environment) for this
  // command, so that every path to the bucket (restore's frame sources
  // included) sees the same settings.
  std::string s3_endpoints;        // AWS_ENDPOINT_URL: URL[,URL...]
  std::string s3_profile;          // AWS_PROFILE
  std::string s3_ca;               // AWS_CA_BUNDLE
  std::string s3_addressing;       // FERRY_S3_ADDRESSING: path or virtual
  std::uint64_t s3_pack_size = 0;  // StoreOptions::object_pack_target_bytes; 0: its default
};
Settings& settings();

// A subcommand gets its positional arguments (flags already parsed).
using CommandMain = std::function<int(const std::vector<std::string>& args)>;

struct Command {
  const char* name;
  const char* usage;  // "pack FILE|DIR -o OUT.ferry [--chunk_size=N] ...": overview and man SYNOPSIS
  const char* summary;
  // Adds the subcommand's flags and positional arguments to its CLI::App.
  std::function<void(CLI::App&)> define;
  CommandMain run;
};

struct Registrar {
  explicit Registrar(Command c);
};
// Sorted by name.
const std::vector<Command>& commands();

// Adders for the shared settings. `help` replaces the generic text where a
// subcommand gives the setting its own meaning.
void add_args(CLI::App& app, const std::string& name, const std::string& help, int expected = -1);
void add_output(CLI::App& app, const std::string& help);
void add_threads(CLI::App& app);
void add_progress(CLI::App& app);
void add_json(CLI::App& app, const std::string& help);
void add_socket(CLI::App& app);
void add_tls(CLI::App& app);
void add_store(CLI::App& app, const std::string& help);
void add_namespace(CLI::App& app, const std::string& help);
void add_engine(CLI::App& app);
void add_job(CLI::App& app, const std::string& help);
void add_exact_modes(CLI::App& app);
void add_streams(CLI::App& app);
void add_chunking(CLI::App& app);  // --chunk_size, --zstd_level, --step
// --s3_endpoints, --s3_profile, --s3_ca, --s3_addressing; with `packs`
// (commands that write packs) --s3_pack_size too.
void add_s3(CLI::App& app, bool packs);
// Puts the --s3_* flags given into the environment of this process (see
// Settings); InvalidArgument for a bad --s3_addressing or --s3_pack_size.
Status apply_s3_flags();

// `help` with " [env NAME]" when `option` has an environment variable for
// the subcommand `app`.
std::string with_env_help(const CLI::App& app, const std::string& option, const std::string& help);

// The environment variable that sets `option` for `command`, or nullptr.
const char* env_variable(const std::string& command, const std::string& option);

// The config file the command reads when --config is not given: the first
// of $FERRY_CONFIG, ${XDG_CONFIG_HOME:-~/.config}/ferry/ferry.conf and
// /etc/ferry/ferry.conf that exists; "" when none does.
std::string default_config_file();

// Fills every option of `sub` (the subcommand being run) that the command
// line did not set: from its environment variable, else from the config
// file `config_file` ("" for none): its top-level `name = value` lines, or
// those of its `[SUBCOMMAND]` section, which win. A setting the file names
// that no subcommand has, or that its section's subcommand lacks, is an
// InvalidArgument naming FILE:LINE; so is a bad value, naming its origin.
Status apply_settings(const CLI::App& root, CLI::App& sub, const std::string& config_file);

// The subcommand of `root` named `name`, or nullptr.
const CLI::App* find_subcommand(const CLI::App& root, const std::string& name);

// Where a setting of the running subcommand came from: "command line", the
// environment variable's name, "FILE:LINE" of the config file, or "" (its
// default).
std::string setting_origin(const std::string& name);

// Prints "ferry: <message>" on stderr and returns kExitUsage.
int usage_error(std::string_view message);
// Prints "ferry: <status>" on stderr (or, with --json, a JSON error object
// on stdout) and returns exit_code_for(status).
int fail(const Status& status);
// Like fail, with the exit code given (kExitPartial, ...).
int fail_with(const Status& status, int code);
// Like fail_with, printing `line` instead of the status's own text.
int fail_message(const Status& status, const std::string& line, int code);

// Prints one JSON object on one line on stdout and flushes it.
void print_json_line(const nlohmann::json& j);

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
// --engine=gpu without a usable GPU. Only subcommands that code frames call
// it, so only they print the engine notice.
Result<std::unique_ptr<CodecEngine>> engine_from_flags(ThreadPool& pool, int zstd_level);

// Sends `command` with `args` to the agent on --socket (agent/control.h) and
// returns its {"ok":true,...} answer. Otherwise prints one line on stderr
// (no agent listening, permission denied, or the agent's own error) and
// stores the exit code in *exit_code.
std::optional<nlohmann::json> ask_agent(const std::string& command, const nlohmann::json& args,
                                        int* exit_code);

using ferry::format_bytes;  // base/human_size.h: "37.4 MB"

// Throttled progress on stderr: nothing during the first second, then one
// line refreshed in place (a terminal) or a line every few seconds (a log).
// With --json it prints a JSON line on stdout instead (docs/OPERATIONS.md,
// "JSON output"), at the log rate.
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
