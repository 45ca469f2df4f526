// cli.cc: see cli.h.
#include "tools/cli.h"

#include <unistd.h>

#include <cstdio>

#include "agent/control.h"
#include "base/clock.h"
#include "codec/chunker.h"
#include "cuda/gpu_engine.h"
#include "store/store_limits.h"

namespace ferry::cli {
namespace {

inline constexpr double kProgressDelaySeconds = 1.0;
inline constexpr double kTtyRefreshSeconds = 0.25;
inline constexpr double kLogRefreshSeconds = 5.0;

std::vector<Command>& registry() {
  static std::vector<Command> r;
  return r;
}

// The environment variable of a setting, for the subcommands listed (all
// that take the option when `commands` is null). docs/OPERATIONS.md
// ("Configuration of the ferry command") lists them.
struct EnvSetting {
  const char* option;
  const char* env;
  const char* commands;  // comma-separated, or nullptr
};
constexpr EnvSetting kEnvSettings[] = {
    {"ca", "FERRY_CA", nullptr},
    {"cert", "FERRY_CERT", nullptr},
    {"key", "FERRY_KEY", nullptr},
    {"crl", "FERRY_CRL", nullptr},
    {"to", "FERRY_TARGET", "push"},
    {"from", "FERRY_TARGET", "list,restore"},
    {"store", "FERRY_STORE", "serve,scrub,prune"},
    {"namespace", "FERRY_NAMESPACE", "scrub,prune"},
    {"socket", "FERRY_SOCKET", nullptr},
    {"engine", "FERRY_ENGINE", nullptr},
    {"threads", "FERRY_THREADS", nullptr},
    {"streams", "FERRY_STREAMS", nullptr},
};

bool listed(const char* commands, const std::string& command) {
  if (commands == nullptr) return true;
  const std::string list = std::string(",") + commands + ",";
  return list.find("," + command + ",") != std::string::npos;
}

}  // namespace

const char* env_variable(const std::string& command, const std::string& option) {
  for (const EnvSetting& e : kEnvSettings) {
    if (option == e.option && listed(e.commands, command)) return e.env;
  }
  return nullptr;
}

std::string with_env_help(const CLI::App& app, const std::string& option, const std::string& help) {
  const char* env = env_variable(app.get_name(), option);
  return env ? help + " [env " + env + "]" : help;
}

Settings& settings() {
  static Settings s = [] {
    Settings d;
    d.socket = agent::kDefaultControlSocket;
    d.chunk_size = kDefaultChunkBytes;
    d.zstd_level = kDefaultZstdLevel;
    return d;
  }();
  return s;
}

Registrar::Registrar(Command c) {
  auto& r = registry();
  auto at = std::lower_bound(r.begin(), r.end(), c, [](const Command& a, const Command& b) {
    return std::string_view(a.name) < b.name;
  });
  r.insert(at, std::move(c));
}
const std::vector<Command>& commands() { return registry(); }

void add_args(CLI::App& app, const std::string& name, const std::string& help, int expected) {
  auto* opt = app.add_option(name, settings().args, help);
  if (expected > 0) opt->expected(expected);
}
void add_output(CLI::App& app, const std::string& help) {
  app.add_option("-o,--output", settings().output, help);
}
void add_threads(CLI::App& app) {
  app.add_option("--threads", settings().threads,
                 with_env_help(app, "threads", "worker threads for coding and hashing (0: one per CPU)"));
}
void add_progress(CLI::App& app) {
  app.add_flag("--progress,!--noprogress", settings().progress,
               "show a progress line on stderr when work takes more than a second (default on)");
}
void add_json(CLI::App& app, const std::string& help) { app.add_flag("--json", settings().json, help); }
void add_socket(CLI::App& app) {
  app.add_option("--socket", settings().socket,
                 with_env_help(app, "socket", "the control socket of the running ferry-agent"))
      ->capture_default_str();
}
void add_tls(CLI::App& app) {
  app.add_option("--ca", settings().ca,
                 with_env_help(app, "ca", "PEM file of the CA both sides' certificates chain to"));
  app.add_option("--cert", settings().cert,
                 with_env_help(app, "cert", "PEM file of this side's certificate"));
  app.add_option("--key", settings().key, with_env_help(app, "key", "PEM file of this side's private key"));
  app.add_option("--crl", settings().crl,
                 with_env_help(app, "crl",
                               "PEM certificate revocation lists of the CA (`ferry certs --revoke`): a peer "
                               "certificate on one is refused"));
}
void add_store(CLI::App& app, const std::string& help) {
  app.add_option("--store", settings().store, with_env_help(app, "store", help));
}
void add_namespace(CLI::App& app, const std::string& help) {
  app.add_option("--namespace", settings().ns, with_env_help(app, "namespace", help));
}
void add_engine(CLI::App& app) {
  app.add_option(
         "--engine", settings().engine,
         with_env_help(app, "engine",
                       "codec engine: auto (the GPU when one is usable), cpu, or gpu (fail without one)"))
      ->capture_default_str();
}
void add_job(CLI::App& app, const std::string& help) { app.add_option("--job", settings().job, help); }
void add_exact_modes(CLI::App& app) {
  app.add_flag("--exact_modes", settings().exact_modes,
               "give files their recorded mode exactly, setuid, setgid, sticky and group or other write "
               "included (default: mode & 0755)");
}
void add_streams(CLI::App& app) {
  app.add_option("--streams", settings().streams,
                 with_env_help(app, "streams",
                               "parallel TLS streams; for an s3:// store, packs uploading at once (push) or "
                               "frames fetched ahead, GETs in flight (restore)"))
      ->capture_default_str();
}
void add_chunking(CLI::App& app) {
  app.add_option("--chunk_size", settings().chunk_size,
                 "chunk size in bytes: a power of two times 4096, from 4 KiB to 64 MiB")
      ->capture_default_str();
  app.add_option("--zstd_level", settings().zstd_level, "zstd level for chunks that are not floats")
      ->capture_default_str();
  app.add_option("--step", settings().step, "training step recorded in the manifest");
}

void add_s3(CLI::App& app, bool packs) {
  app.add_option("--s3_endpoints", settings().s3_endpoints,
                 "with s3:// stores: the S3 endpoints, URL[,URL...], each request tried at the next when one "
                 "cannot be reached (sets AWS_ENDPOINT_URL; default: it, else AWS's regional endpoint)");
  app.add_option("--s3_profile", settings().s3_profile,
                 "with s3:// stores: the profile of ~/.aws/credentials and ~/.aws/config (sets AWS_PROFILE)");
  app.add_option(
      "--s3_ca", settings().s3_ca,
      "with s3:// stores: PEM file of a private CA for https endpoints (sets AWS_CA_BUNDLE; TLS is "
      "always verified)");
  app.add_option("--s3_addressing", settings().s3_addressing,
                 "with s3:// stores: path (http://HOST/BUCKET/KEY) or virtual (http://BUCKET.HOST/KEY) "
                 "(sets FERRY_S3_ADDRESSING; default: virtual for AWS, path for other endpoints)");
  if (packs) {
    app.add_option(
        "--s3_pack_size", settings().s3_pack_size,
        "with s3:// stores: bytes of a pack object before it is sealed and uploaded, 1 MiB to 1 GiB "
        "(default 32 MiB)");
  }
}

Status apply_s3_flags() {
  const Settings& s = settings();
  if (!s.s3_addressing.empty() && s.s3_addressing != "path" && s.s3_addressing != "virtual") {
    return Status::invalid_argument("--s3_addressing=" + s.s3_addressing + ": must be path or virtual");
  }
  if (s.s3_pack_size != 0 &&
      (s.s3_pack_size < kS3MinPackTargetBytes || s.s3_pack_size > kS3MaxPackTargetBytes)) {
    return Status::invalid_argument("--s3_pack_size=" + std::to_string(s.s3_pack_size) + ": must be from " +
                                    std::to_string(kS3MinPackTargetBytes) + " to " +
                                    std::to_string(kS3MaxPackTargetBytes) + " bytes");
  }
  const std::pair<const std::string*, const char*> vars[] = {{&s.s3_endpoints, "AWS_ENDPOINT_URL"},
                                                             {&s.s3_profile, "AWS_PROFILE"},
                                                             {&s.s3_ca, "AWS_CA_BUNDLE"},
                                                             {&s.s3_addressing, "FERRY_S3_ADDRESSING"}};
  for (const auto& [value, name] : vars) {
    if (value->empty()) continue;
    if (::setenv(name, value->c_str(), 1) != 0)
      return Status::internal(std::string("setenv ") + name + " failed");
  }
  // A profile named on the command line beats the keys in the environment,
  // as with the AWS CLI's --profile.
  if (!s.s3_profile.empty()) {
    ::unsetenv("AWS_ACCESS_KEY_ID");
    ::unsetenv("AWS_SECRET_ACCESS_KEY");
    ::unsetenv("AWS_SESSION_TOKEN");
  }
  return Status::ok();
}

int usage_error(std::string_view message) {
  std::fprintf(stderr, "ferry: %.*s\n", static_cast<int>(message.size()), message.data());
  return kExitUsage;
}

int fail_with(const Status& status, int code) { return fail_message(status, status.to_string(), code); }

int fail_message(const Status& status, const std::string& line, int code) {
  std::fprintf(stderr, "ferry: %s\n", line.c_str());
  if (settings().json) {
    print_json_line({{"type", "error"},
                     {"code", std::string(code_name(status.code()))},
                     {"message", line},
                     {"exit_code", code},
                     {"exit", std::string(exit_code_name(code))}});
  }
  return code;
}

int fail(const Status& status) { return fail_with(status, exit_code_for(status)); }

void print_json_line(const nlohmann::json& j) {
  std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  std::fflush(stdout);
}

Result<replication::TlsConfig> tls_from_flags(std::string_view command) {
  const Settings& s = settings();
  if (s.ca.empty() || s.cert.empty() || s.key.empty()) {
    return Status::invalid_argument(std::string(command) +
                                    " needs --ca, --cert and --key (or FERRY_CA, FERRY_CERT, FERRY_KEY; "
                                    "make them with `ferry certs`)");
  }
  replication::TlsConfig tls;
  tls.ca_file = s.ca;
  tls.cert_file = s.cert;
  tls.key_file = s.key;
  tls.crl_file = s.crl;
  return tls;
}

Result<std::vector<PackSource>> pack_sources(const std::string& path) {
  std::vector<std::string> notices;
  auto sources = list_pack_sources(path, &notices);
  for (const auto& n : notices) std::fprintf(stderr, "ferry: %s\n", n.c_str());
  return sources;
}

Result<std::unique_ptr<CodecEngine>> engine_from_flags(ThreadPool& pool, int zstd_level) {
  auto choice = parse_engine_choice(settings().engine);
  if (!choice) return choice.status().with_context("--engine");
  CpuEngineOptions cpu;
  cpu.pool = &pool;
  cpu.zstd_level = zstd_level;
  return choose_engine(*choice, GpuOptions{}, cpu);
}

std::optional<nlohmann::json> ask_agent(const std::string& command, const nlohmann::json& args,
                                        int* exit_code) {
  auto r = agent::control_call(settings().socket, command, args);
  if (!r) {
    std::string hint;
    if (r.status().code() == Code::kUnavailable) {
      hint = " (is ferry-agent running? --socket=PATH)";
    } else if (r.status().code() == Code::kPermissionDenied) {
      hint = " (run as the agent's user or root)";
    }
    *exit_code = fail_message(r.status(), r.status().message() + hint, exit_code_for(r.status()));
    return std::nullopt;
  }
  if (!r->value("ok", false)) {
    const nlohmann::json& e = (*r)["error"];
    const std::string why = "the agent refused " + command + ": " +
                            (e.is_string() ? e.get<std::string>() : std::string("no reason given"));
    *exit_code = fail_message(Status::invalid_argument(why), why, kExitFailure);
    return std::nullopt;
  }
  *exit_code = kExitOk;
  return std::move(*r);
}

ProgressLine::ProgressLine(std::string verb)
    : verb_(std::move(verb)), start_(mono_seconds()), tty_(::isatty(STDERR_FILENO) == 1) {}

ProgressLine::~ProgressLine() { finish(); }

void ProgressLine::update(std::uint64_t done, std::uint64_t total, std::uint64_t stored) {
  if (!settings().progress) return;
  const bool json = settings().json;
  double now = mono_seconds();
  double elapsed = now - start_;
  if (elapsed < kProgressDelaySeconds) return;
  if (printed_ && now - last_ < (tty_ && !json ? kTtyRefreshSeconds : kLogRefreshSeconds)) return;
  last_ = now;
  double gbps = static_cast<double>(done) / elapsed / 1e9;
  double ratio = stored ? static_cast<double>(done) / static_cast<double>(stored) : 0.0;
  if (json) {
    print_json_line({{"type", "progress"},
                     {"verb", verb_},
                     {"done_bytes", done},
                     {"total_bytes", total},
                     {"stored_bytes", stored},
                     {"seconds", elapsed},
                     {"gb_per_s", gbps},
                     {"ratio", ratio}});
    return;
  }
  printed_ = true;
  std::fprintf(stderr, "%s%s: %s / %s  %.2f GB/s  ratio %.3f%s", tty_ ? "\r" : "", verb_.c_str(),
               format_bytes(done).c_str(), format_bytes(total).c_str(), gbps, ratio, tty_ ? "\033[K" : "\n");
  std::fflush(stderr);
}

void ProgressLine::finish() {
  if (printed_ && tty_) std::fputc('\n', stderr);
  printed_ = false;
}

}  // namespace ferry::cli
