// cli.cc: see cli.h.
#include "tools/cli.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>

#include "agent/control.h"
#include "base/clock.h"

#include "cuda/gpu_engine.h"

DEFINE_string(o, "", "output: the archive for pack, the directory for unpack");
DEFINE_int32(threads, 0, "worker threads for coding and hashing (0: one per CPU)");
DEFINE_bool(progress, true, "show a progress line on stderr when work takes more than a second");
DEFINE_string(socket, ferry::agent::kDefaultControlSocket,
              "status, submit, pause, resume: the control socket of the running ferry-agent");
DEFINE_string(ca, "", "PEM file of the CA both sides' certificates chain to (serve, push, list, restore)");
DEFINE_string(cert, "", "PEM file of this side's certificate (serve, push, list, restore)");
DEFINE_string(key, "", "PEM file of this side's private key (serve, push, list, restore)");
DEFINE_string(
    crl, "",
    "PEM certificate revocation lists of the CA (`ferry certs --revoke`): a peer certificate on one "
    "is refused (serve, push, list, restore)");
DEFINE_string(to, "", "push: the receiver HOST:PORT; restore: the directory to write");
DEFINE_bool(exact_modes, false,
            "restore, unpack: give files their recorded mode exactly, setuid, setgid, sticky and group or "
            "other write included (default: mode & 0755)");
DEFINE_int32(streams, 4, "parallel TLS streams to the receiver (push, restore)");
DEFINE_string(store, "", "the receiver's store directory (serve, scrub, prune, gc)");
DEFINE_string(from, "", "the receiver HOST:PORT to read from (list, restore)");
DEFINE_string(engine, "auto",
              "pack, push: codec engine: auto (the GPU when one is usable), cpu, or gpu (fail without one)");

namespace ferry::cli {
namespace {

inline constexpr double kProgressDelaySeconds = 1.0;
inline constexpr double kTtyRefreshSeconds = 0.25;
inline constexpr double kLogRefreshSeconds = 5.0;

std::vector<Command>& registry() {
  static std::vector<Command> r;
  return r;
}

}  // namespace

Registrar::Registrar(Command c) { registry().push_back(std::move(c)); }
const std::vector<Command>& commands() { return registry(); }

int usage_error(std::string_view message) {
  std::fprintf(stderr, "ferry: %.*s\n", static_cast<int>(message.size()), message.data());
  return kExitUsage;
}

int fail(const Status& status) {
  std::fprintf(stderr, "ferry: %s\n", status.to_string().c_str());
  switch (status.code()) {
    case Code::kInvalidArgument:
    case Code::kNotFound:
      return kExitUsage;
    default:
      return kExitDataError;
  }
}

Result<replication::TlsConfig> tls_from_flags(std::string_view command) {
  if (FLAGS_ca.empty() || FLAGS_cert.empty() || FLAGS_key.empty()) {
    return Status::invalid_argument(std::string(command) +
                                    " needs --ca, --cert and --key (make them with `ferry certs`)");
  }
  replication::TlsConfig tls;
  tls.ca_file = FLAGS_ca;
  tls.cert_file = FLAGS_cert;
  tls.key_file = FLAGS_key;
  tls.crl_file = FLAGS_crl;
  return tls;
}

Result<std::vector<PackSource>> pack_sources(const std::string& path) {
  std::vector<std::string> notices;
  auto sources = list_pack_sources(path, &notices);
  for (const auto& n : notices) std::fprintf(stderr, "ferry: %s\n", n.c_str());
  return sources;
}

Result<std::unique_ptr<CodecEngine>> engine_from_flags(ThreadPool& pool, int zstd_level) {
  auto choice = parse_engine_choice(FLAGS_engine);
  if (!choice) return choice.status().with_context("--engine");
  CpuEngineOptions cpu;
  cpu.pool = &pool;
  cpu.zstd_level = zstd_level;
  return choose_engine(*choice, GpuOptions{}, cpu);
}

std::optional<nlohmann::json> ask_agent(const std::string& command, const nlohmann::json& args,
                                        int* exit_code) {
  *exit_code = kExitDataError;
  auto r = agent::control_call(FLAGS_socket, command, args);
  if (!r) {
    std::string hint;
    if (r.status().code() == Code::kUnavailable) {
      hint = " (is ferry-agent running? --socket=PATH)";
    } else if (r.status().code() == Code::kPermissionDenied) {
      hint = " (run as the agent's user or root)";
    }
    std::fprintf(stderr, "ferry: %s%s\n", r.status().message().c_str(), hint.c_str());
    return std::nullopt;
  }
  if (!r->value("ok", false)) {
    const nlohmann::json& e = (*r)["error"];
    std::fprintf(stderr, "ferry: the agent refused %s: %s\n", command.c_str(),
                 e.is_string() ? e.get<std::string>().c_str() : "no reason given");
    return std::nullopt;
  }
  *exit_code = kExitOk;
  return std::move(*r);
}

ProgressLine::ProgressLine(std::string verb)
    : verb_(std::move(verb)), start_(mono_seconds()), tty_(::isatty(STDERR_FILENO) == 1) {}

ProgressLine::~ProgressLine() { finish(); }

void ProgressLine::update(std::uint64_t done, std::uint64_t total, std::uint64_t stored) {
  if (!FLAGS_progress) return;
  double now = mono_seconds();
  double elapsed = now - start_;
  if (elapsed < kProgressDelaySeconds) return;
  if (printed_ && now - last_ < (tty_ ? kTtyRefreshSeconds : kLogRefreshSeconds)) return;
  last_ = now;
  printed_ = true;
  double gbps = static_cast<double>(done) / elapsed / 1e9;
  double ratio = stored ? static_cast<double>(done) / static_cast<double>(stored) : 0.0;
  std::fprintf(stderr, "%s%s: %s / %s  %.2f GB/s  ratio %.3f%s", tty_ ? "\r" : "", verb_.c_str(),
               format_bytes(done).c_str(), format_bytes(total).c_str(), gbps, ratio, tty_ ? "\033[K" : "\n");
  std::fflush(stderr);
}

void ProgressLine::finish() {
  if (printed_ && tty_) std::fputc('\n', stderr);
  printed_ = false;
}

}  // namespace ferry::cli
