// config.cc: parsing and validating the agent's settings (see config.h).
#include "agent/config.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>

#include "cuda/gpu_engine.h"
#include "store/chunk_store.h"
#include "store/s3_store.h"

namespace ferry::agent {
namespace {

namespace fs = std::filesystem;

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  while (true) {
    auto at = s.find(sep);
    out.push_back(s.substr(0, at));
    if (at == std::string_view::npos) break;
    s.remove_prefix(at + 1);
  }
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

Status check_readable_file(const char* flag, const std::string& path) {
  if (path.empty()) return Status::invalid_argument(std::string(flag) + " is required (a PEM file)");
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) {
    return Status::invalid_argument(std::string(flag) + "=" + path + ": no such file");
  }
  if (::access(path.c_str(), R_OK) != 0) {
    return Status::invalid_argument(std::string(flag) + "=" + path +
                                    ": not readable: " + std::strerror(errno));
  }
  return Status::ok();
}

Status check_int(const char* flag, int value, int lo, int hi) {
  if (value < lo || value > hi) {
    return Status::invalid_argument(std::string(flag) + "=" + std::to_string(value) + ": must be " +
                                    std::to_string(lo) + ".." + std::to_string(hi));
  }
  return Status::ok();
}

Status check_positive(const char* flag, double value, bool zero_ok) {
  if (!std::isfinite(value) || value < 0 || (!zero_ok && value == 0)) {
    return Status::invalid_argument(std::string(flag) + "=" + std::to_string(value) + ": must be " +
                                    (zero_ok ? "zero or positive" : "positive"));
  }
  return Status::ok();
}

}  // namespace

replication::TlsConfig AgentConfig::tls() const {
  replication::TlsConfig t;
  t.ca_file = ca;
  t.cert_file = cert;
  t.key_file = key;
  t.crl_file = crl;
  t.role = replication::TlsRole::kClient;
  return t;
}

std::uint64_t AgentConfig::bandwidth_bytes_per_s() const {
  return bandwidth_mbps <= 0 ? 0 : static_cast<std::uint64_t>(bandwidth_mbps * 1e6);
}

Result<std::vector<WatchSpec>> parse_watch_list(std::string_view value) {
  std::vector<WatchSpec> out;
  if (trim(value).empty()) return Status::invalid_argument("--watch is required: ROOT[=JOB][,ROOT2[=JOB2]]");
  for (std::string_view item : split(value, ',')) {
    item = trim(item);
    if (item.empty()) return Status::invalid_argument("--watch=" + std::string(value) + ": empty item");
    WatchSpec w;
    auto eq = item.find('=');
    std::string_view path = item.substr(0, eq);
    if (eq != std::string_view::npos) {
      w.job = std::string(trim(item.substr(eq + 1)));
      if (w.job.empty()) return Status::invalid_argument("--watch=" + std::string(item) + ": empty job name");
    }
    if (path.empty()) return Status::invalid_argument("--watch=" + std::string(item) + ": empty root");
    std::error_code ec;
    fs::path abs = fs::absolute(fs::path(path), ec);
    w.path = ec ? fs::path(path) : abs.lexically_normal();
    if (w.path.has_relative_path() && !w.path.has_filename()) w.path = w.path.parent_path();
    if (w.job.empty()) w.job = w.path.filename().string();
    out.push_back(std::move(w));
  }
  if (out.size() > static_cast<std::size_t>(kMaxWatchRoots)) {
    return Status::invalid_argument("--watch: more than " + std::to_string(kMaxWatchRoots) + " roots");
  }
  return out;
}

Status check_target_address(std::string_view address) {
  if (is_s3_url(address)) return parse_s3_url(address).status().with_context("--targets");
  std::string_view host, port;
  if (!address.empty() && address.front() == '[') {
    auto close = address.find(']');
    if (close == std::string_view::npos || close + 1 >= address.size() || address[close + 1] != ':') {
      return Status::invalid_argument("--targets=" + std::string(address) + ": expected [V6]:PORT");
    }
    host = address.substr(1, close - 1);
    port = address.substr(close + 2);
  } else {
    auto colon = address.rfind(':');
    if (colon == std::string_view::npos) {
      return Status::invalid_argument("--targets=" + std::string(address) + ": expected HOST:PORT");
    }
    host = address.substr(0, colon);
    port = address.substr(colon + 1);
  }
  int p = 0;
  auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
  if (host.empty() || ec != std::errc() || ptr != port.data() + port.size() || p < 1 || p > 65535) {
    return Status::invalid_argument("--targets=" + std::string(address) +
                                    ": expected HOST:PORT with a port in 1..65535");
  }
  return Status::ok();
}

Result<std::vector<std::string>> parse_target_list(std::string_view value) {
  std::vector<std::string> out;
  if (trim(value).empty()) return Status::invalid_argument("--targets is required: HOST:PORT[,HOST:PORT]");
  for (std::string_view item : split(value, ',')) {
    item = trim(item);
    RETURN_IF_ERROR(check_target_address(item));
    for (const auto& t : out) {
      if (t == item) return Status::invalid_argument("--targets: " + std::string(item) + " is named twice");
    }
    out.emplace_back(item);
  }
  if (out.size() > static_cast<std::size_t>(kMaxTargets)) {
    return Status::invalid_argument("--targets: more than " + std::to_string(kMaxTargets) + " targets");
  }
  return out;
}

std::vector<Status> validate_all(const AgentConfig& c) {
  std::vector<Status> problems;
  auto check = [&problems](Status st) {
    if (!st) problems.push_back(std::move(st));
  };
  if (c.watch.empty()) check(Status::invalid_argument("--watch is required: ROOT[=JOB][,ROOT2[=JOB2]]"));
  for (const auto& w : c.watch) {
    std::error_code ec;
    if (!fs::exists(w.path, ec)) {
      check(Status::invalid_argument("--watch=" + w.path.string() + ": no such directory"));
    } else if (!fs::is_directory(w.path, ec)) {
      check(Status::invalid_argument("--watch=" + w.path.string() + ": not a directory"));
    } else if (::access(w.path.c_str(), R_OK | X_OK) != 0) {
      check(
          Status::invalid_argument("--watch=" + w.path.string() + ": not readable: " + std::strerror(errno)));
    }
  }
  if (c.targets.empty()) check(Status::invalid_argument("--targets is required: HOST:PORT[,HOST:PORT]"));
  for (const auto& t : c.targets) check(check_target_address(t));
  if (!c.ns.empty()) check(validate_namespace(c.ns).with_context("--namespace"));
  // TLS is for receivers: an agent that writes only to buckets needs none.
  const bool receivers =
      std::any_of(c.targets.begin(), c.targets.end(), [](const std::string& t) { return !is_s3_url(t); });
  // Uploads into a bucket keep to the cap too, down to the least an upload
  // can go without looking stalled.
  const bool buckets = std::any_of(c.targets.begin(), c.targets.end(), is_s3_url);
  if (buckets && c.bandwidth_bytes_per_s() != 0 && c.bandwidth_bytes_per_s() < kS3MinUploadBytesPerS) {
    check(Status::invalid_argument("--bandwidth_mbps=" + std::to_string(c.bandwidth_mbps) +
                                   ": below the least cap for s3:// targets, " +
                                   std::to_string(kS3MinUploadBytesPerS) + " bytes/s"));
  }
  if (c.marker_file.find('/') != std::string::npos) {
    check(Status::invalid_argument("--marker_file=" + c.marker_file + ": a file name, not a path"));
  }
  if (c.marker_only && c.marker_file.empty()) {
    check(Status::invalid_argument("--marker_only needs --marker_file=NAME (the marker that alone counts)"));
  }
  const std::size_t tls_problems = problems.size();
  if (receivers) {
    check(check_readable_file("--ca", c.ca));
    check(check_readable_file("--cert", c.cert));
    check(check_readable_file("--key", c.key));
  }
  if (!c.crl.empty()) check(check_readable_file("--crl", c.crl));
  if (receivers && problems.size() == tls_problems) {
    // Building the context proves the PEMs parse and the key matches.
    auto ctx = replication::TlsContext::create(c.tls());
    if (!ctx) {
      check(Status::invalid_argument("--ca=" + c.ca + " --cert=" + c.cert + " --key=" + c.key +
                                     (c.crl.empty() ? "" : " --crl=" + c.crl) + ": " +
                                     ctx.status().message()));
    }
  }
  if (auto mode = parse_delta_mode(c.delta); !mode)
    check(Status::invalid_argument("--delta=" + c.delta + ": " + mode.status().message()));
  check(check_int("--key_every", c.key_every, 1, 1 << 20));
  if (!(c.delta_min_gain >= 0 && c.delta_min_gain <= 1))
    check(
        Status::invalid_argument("--delta_min_gain=" + std::to_string(c.delta_min_gain) + ": expected 0..1"));
  check(check_int("--max_jobs", c.max_jobs, 1, kMaxJobsLimit));
  check(check_int("--streams", c.streams, 1, 64));
  check(check_int("--threads", c.threads, 1, kMaxThreadsLimit));
  check(check_positive("--bandwidth_mbps", c.bandwidth_mbps, /*zero_ok=*/true));
  if (c.engine != "auto" && c.engine != "cpu" && c.engine != "gpu") {
    check(Status::invalid_argument("--engine=" + c.engine + ": expected auto, cpu or gpu"));
  }
  check(check_int("--gpu_memory_mb", c.gpu_memory_mb, 1, 1 << 22));
  check(check_int("--pinned_memory_mb", c.pinned_memory_mb, 1, 1 << 20));
  check(check_int("--nice", c.nice, 0, kMaxNice));
  if (c.io_class != "idle" && c.io_class != "best-effort") {
    check(Status::invalid_argument("--io_class=" + c.io_class + ": expected idle or best-effort"));
  }
  check(check_positive("--rpo_target_s", c.rpo_target_s, false));
  check(check_positive("--checkpoint_interval_s", c.checkpoint_interval_s, true));
  check(check_positive("--rescan_interval_s", c.rescan_interval_s, false));
  check(check_positive("--incomplete_grace_s", c.incomplete_grace_s, false));
  check(check_positive("--probe_interval_s", c.probe_interval_s, false));
  check(check_int("--target_down_after", c.target_down_after, 1, 1000));
  check(check_int("--target_up_after", c.target_up_after, 1, 1000));
  check(check_positive("--shutdown_grace_s", c.shutdown_grace_s, true));
  if (c.log_format != "text" && c.log_format != "json") {
    check(Status::invalid_argument("--log_format=" + c.log_format + ": expected text or json"));
  }
  if (c.state_dir.empty()) {
    check(Status::invalid_argument("--state_dir is required"));
  } else {
    std::error_code ec;
    fs::create_directories(c.state_dir, ec);
    if (ec || ::access(c.state_dir.c_str(), W_OK | X_OK) != 0) {
      check(Status::invalid_argument("--state_dir=" + c.state_dir.string() + ": cannot create or write: " +
                                     (ec ? ec.message() : std::string(std::strerror(errno)))));
    }
  }
  if (c.control_socket.empty()) check(Status::invalid_argument("--control_socket is required"));
  if (c.metrics_listen.size() > 0) {
    Status st = check_target_address(c.metrics_listen);
    // Port 0 (ephemeral) is fine for metrics.
    if (!st && c.metrics_listen.substr(c.metrics_listen.rfind(':') + 1) != "0") {
      check(Status::invalid_argument("--metrics_listen=" + c.metrics_listen + ": expected HOST:PORT"));
    }
  }
  return problems;
}

Status validate(const AgentConfig& c) {
  std::vector<Status> problems = validate_all(c);
  return problems.empty() ? Status::ok() : problems.front();
}

DeltaPolicy AgentConfig::delta_policy() const {
  DeltaPolicy p;
  auto mode = parse_delta_mode(delta);
  p.mode = mode ? *mode : DeltaMode::kKey;
  p.key_every = static_cast<std::uint32_t>(std::max(1, key_every));
  p.min_gain = delta_min_gain;
  return p;
}

std::string describe_engine(const std::string& engine) {
  if (engine == "cpu") return "cpu (--engine=cpu)";
  const std::string why = gpu_unavailable_reason(0);
  if (why.empty()) return "gpu (GPU 0 is usable)";
  if (engine == "gpu") return "none: --engine=gpu, but no GPU is usable: " + why;
  return "cpu (no usable GPU: " + why + ")";
}

}  // namespace ferry::agent
