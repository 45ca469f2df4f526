// metrics.cc: see metrics.h. The text format is Prometheus exposition format
// 0.0.4: https://prometheus.io/docs/instrumenting/exposition_formats/
#include "agent/metrics.h"

#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <thread>

#ifdef FERRY_HAVE_HTTPLIB
#include <httplib.h>
#endif

namespace ferry::agent {
namespace {

// Threads that answer scrapes; a scrape is one render() and one write.
constexpr int kMetricsServerThreads = 2;
constexpr int kMetricsKeepAliveSeconds = 1;
constexpr int kMetricsIoTimeoutSeconds = 2;
constexpr const char* kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";

bool valid_name(std::string_view name, bool allow_colon) {
  if (name.empty()) return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (allow_colon && c == ':') ||
              (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

// Labels sorted by name, values cut to the documented bound. Names are chosen
// by ferry's code, so a bad one is a bug.
Labels normalise(const Labels& labels) {
  Labels out = labels;
  for (auto& [k, v] : out) {
    FERRY_CHECK(valid_name(k, false) && !k.starts_with("__"));
    if (v.size() > kMaxMetricLabelValueBytes) v.resize(kMaxMetricLabelValueBytes);
  }
  std::sort(out.begin(), out.end());
  return out;
}

// HELP text escapes only backslash and newline.
std::string escape_help(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

std::string format_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  // Integral values print without an exponent or fraction, the rest with
  // enough digits to read back the same double.
  if (v == std::trunc(v) && std::fabs(v) < 1e15) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%.0f", v);
    return buf;
  }
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  return ec == std::errc() ? std::string(buf, end) : std::string("NaN");
}

}  // namespace

std::string escape_label_value(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

Metrics::Metrics() = default;

void Metrics::describe_agent_metrics() {
  describe(kMetricLogicalBytes, "counter", "Checkpoint bytes replicated (before compression)");
  describe(kMetricWireBytes, "counter", "Bytes sent to DR targets (after compression and dedup)");
  describe(kMetricJobs, "counter", "Checkpoint jobs finished, by final state");
  describe(kMetricErrors, "counter", "Errors seen by the agent, by kind");
  describe(kMetricQueueDepth, "gauge", "Checkpoints queued or in flight");
  describe(kMetricRpoSeconds, "gauge",
           "Age of the newest checkpoint committed at the DR site, per job (before any commit: of the oldest "
           "checkpoint seen; NaN before any is seen)");
  describe(kMetricRpoForecastSeconds, "gauge",
           "Forecast RPO once the current backlog drains at the current throughput, per job");
  describe(kMetricRpoWarning, "gauge", "1 when the job's RPO target is breached or forecast to be");
  describe(kMetricBacklogBytes, "gauge", "Bytes of checkpoints not yet committed, per job");
  describe(
      kMetricIncompleteCheckpoints, "gauge",
      "Checkpoint directories newer than the DR copy still not complete after the grace period, per job");
  describe(kMetricTargetUp, "gauge", "1 when the DR target passes its health probes");
  describe(kMetricThroughput, "gauge", "Recent replication throughput in logical bytes per second");
  describe(kMetricCompressionRatio, "gauge", "Logical bytes over wire bytes since start");
  describe(kMetricPaused, "gauge", "1 when replication is paused for every job");
  describe(kMetricEngineInfo, "gauge", "1 for the codec engine in use (cpu or gpu) and why it was chosen");
}

Metrics::Family& Metrics::family_locked(std::string_view name) {
  auto it = families_.find(name);
  if (it != families_.end()) return it->second;
  FERRY_CHECK(valid_name(name, true));
  return families_.emplace(std::string(name), Family{}).first->second;
}

void Metrics::describe(std::string_view name, std::string_view type, std::string_view help) {
  FERRY_CHECK(type == "counter" || type == "gauge");
  // Prometheus convention: a counter's name says it accumulates.
  FERRY_CHECK(type != "counter" || name.ends_with("_total"));
  std::lock_guard lock(mu_);
  Family& f = family_locked(name);
  f.type = std::string(type);
  f.help = std::string(help);
}

double* Metrics::series_locked(std::string_view name, const Labels& labels) {
  Labels key = normalise(labels);
  Family& f = family_locked(name);
  auto it = f.series.find(key);
  if (it != f.series.end()) return &it->second;
  if (series_count_ >= kMaxMetricSeries) return nullptr;
  ++series_count_;
  return &f.series.emplace(std::move(key), 0.0).first->second;
}

void Metrics::add(std::string_view name, const Labels& labels, double v) {
  if (!(v >= 0)) return;  // counters never go down (and NaN is no delta)
  std::lock_guard lock(mu_);
  if (double* value = series_locked(name, labels)) *value += v;
}

void Metrics::set(std::string_view name, const Labels& labels, double v) {
  std::lock_guard lock(mu_);
  if (double* value = series_locked(name, labels)) *value = v;
}

void Metrics::remove(std::string_view name, const Labels& labels) {
  Labels key = normalise(labels);
  std::lock_guard lock(mu_);
  auto it = families_.find(name);
  if (it == families_.end()) return;
  series_count_ -= it->second.series.erase(key);
}

double Metrics::value(std::string_view name, const Labels& labels) const {
  Labels key = normalise(labels);
  std::lock_guard lock(mu_);
  auto it = families_.find(name);
  if (it == families_.end()) return 0;
  auto s = it->second.series.find(key);
  return s == it->second.series.end() ? 0 : s->second;
}

std::string Metrics::render() const {
  std::string out;
  std::lock_guard lock(mu_);
  for (const auto& [name, f] : families_) {
    if (!f.help.empty()) out += "# HELP " + name + " " + escape_help(f.help) + "\n";
    out += "# TYPE " + name + " " + f.type + "\n";
    for (const auto& [labels, v] : f.series) {
      out += name;
      if (!labels.empty()) {
        out += '{';
        for (std::size_t i = 0; i < labels.size(); ++i) {
          if (i) out += ',';
          out += labels[i].first + "=\"" + escape_label_value(labels[i].second) + "\"";
        }
        out += '}';
      }
      out += ' ';
      out += format_value(v);
      out += '\n';
    }
  }
  return out;
}

// ---- MetricsServer ----

#ifdef FERRY_HAVE_HTTPLIB

struct MetricsServer::Impl {
  httplib::Server server;
  std::thread thread;
};

MetricsServer::MetricsServer(std::unique_ptr<Impl> impl, int port) : impl_(std::move(impl)), port_(port) {}

MetricsServer::~MetricsServer() {
  impl_->server.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

Result<std::unique_ptr<MetricsServer>> MetricsServer::start(const std::string& listen,
                                                            const Metrics& metrics) {
  auto colon = listen.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return Status::invalid_argument("metrics address '" + listen + "': want HOST:PORT");
  }
  std::string host = listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  std::string port_text = listen.substr(colon + 1);
  int port = -1;
  auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || end != port_text.data() + port_text.size() || port < 0 || port > 65535) {
    return Status::invalid_argument("metrics address '" + listen + "': bad port '" + port_text + "'");
  }

  auto impl = std::make_unique<Impl>();
  httplib::Server& s = impl->server;
  s.new_task_queue = [] { return new httplib::ThreadPool(kMetricsServerThreads); };
  // Short timeouts: an idle or slow scraper holds a server thread, and
  // shutdown waits for it.
  s.set_keep_alive_timeout(kMetricsKeepAliveSeconds);
  s.set_read_timeout(kMetricsIoTimeoutSeconds, 0);
  s.set_write_timeout(kMetricsIoTimeoutSeconds, 0);
  // httplib's default adds SO_REUSEPORT, which would let a second agent
  // share the port silently; a taken port must be an error.
  s.set_socket_options([](int sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  s.Get("/metrics", [&metrics](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics.render(), kMetricsContentType);
  });
  s.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (res.status == 404) {
      res.set_content("not found: " + req.path + " (metrics are at /metrics)\n", "text/plain");
    }
  });

  int bound = port;
  if (port == 0) {
    bound = s.bind_to_any_port(host);
    if (bound <= 0) bound = -1;
  } else if (!s.bind_to_port(host, port)) {
    bound = -1;
  }
  if (bound < 0) {
    int err = errno;
    return Status::from_errno(err, "metrics: cannot listen on " + listen);
  }
  auto exited = std::make_shared<std::atomic<bool>>(false);
  impl->thread = std::thread([srv = &s, exited] {
    srv->listen_after_bind();
    exited->store(true);
  });
  // stop() is a no-op until the listener runs; wait for it so the destructor
  // can always unblock it.
  while (!s.is_running()) {
    if (exited->load()) {
      impl->thread.join();
      return Status::internal("metrics: listener on " + listen + " stopped at start");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return std::unique_ptr<MetricsServer>(new MetricsServer(std::move(impl), bound));
}

#else  // a static build without a cpp-httplib archive

struct MetricsServer::Impl {};

MetricsServer::MetricsServer(std::unique_ptr<Impl> impl, int port) : impl_(std::move(impl)), port_(port) {}
MetricsServer::~MetricsServer() = default;

Result<std::unique_ptr<MetricsServer>> MetricsServer::start(const std::string& listen, const Metrics&) {
  return Status::unsupported("metrics endpoint " + listen +
                             ": this ferry-agent was built statically without cpp-httplib; "
                             "use a dynamically linked build or --metrics_listen=\"\"");
}

#endif

}  // namespace ferry::agent
