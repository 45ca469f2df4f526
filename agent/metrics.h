// metrics.h: the agent's counters and gauges, and the HTTP endpoint that
// serves them. Metrics is a small thread-safe registry keyed by name and
// label set, rendered in the Prometheus text exposition format 0.0.4 (HELP
// and TYPE lines, escaped label values, stable sorted output) so any
// Prometheus-compatible scraper reads it. MetricsServer answers GET /metrics
// on HOST:PORT (cpp-httplib) and 404 on every other path.
#pragma once

#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/status.h"

namespace ferry::agent {

// Label name/value pairs. Order does not matter: a series is identified by
// its labels sorted by name.
using Labels = std::vector<std::pair<std::string, std::string>>;

// Bounds that keep a misbehaving caller from growing the registry (and each
// scrape) without limit.
inline constexpr std::size_t kMaxMetricSeries = 10'000;
inline constexpr std::size_t kMaxMetricLabelValueBytes = 1024;

// The metric names the agent exports (Prometheus conventions: base units,
// counters end in _total).
inline constexpr std::string_view kMetricLogicalBytes = "ferry_agent_logical_bytes_total";
inline constexpr std::string_view kMetricWireBytes = "ferry_agent_wire_bytes_total";
inline constexpr std::string_view kMetricJobs = "ferry_agent_jobs_total";      // {state=}
inline constexpr std::string_view kMetricErrors = "ferry_agent_errors_total";  // {kind=}
inline constexpr std::string_view kMetricQueueDepth = "ferry_agent_queue_depth";
inline constexpr std::string_view kMetricRpoSeconds = "ferry_agent_rpo_seconds";                   // {job=}
inline constexpr std::string_view kMetricRpoForecastSeconds = "ferry_agent_rpo_forecast_seconds";  // {job=}
inline constexpr std::string_view kMetricRpoWarning = "ferry_agent_rpo_warning";                   // {job=}
inline constexpr std::string_view kMetricBacklogBytes = "ferry_agent_backlog_bytes";               // {job=}
inline constexpr std::string_view kMetricIncompleteCheckpoints =
    "ferry_agent_incomplete_checkpoints";                                     // {job=}
inline constexpr std::string_view kMetricTargetUp = "ferry_agent_target_up";  // {target=}
inline constexpr std::string_view kMetricThroughput = "ferry_agent_throughput_bytes_per_second";
inline constexpr std::string_view kMetricCompressionRatio = "ferry_agent_compression_ratio";
inline constexpr std::string_view kMetricPaused = "ferry_agent_paused";
inline constexpr std::string_view kMetricEngineInfo = "ferry_agent_engine_info";  // {engine=, reason=}

// Thread-safe registry. add() is for counters (a negative delta is ignored:
// counters never go down), set() for gauges. A metric used before describe()
// renders as "untyped" with no HELP line.
class Metrics {
 public:
  Metrics();
  // Describes every metric named above (counter or gauge, with help text).
  void describe_agent_metrics();

  void describe(std::string_view name, std::string_view type /* counter|gauge */, std::string_view help);
  void add(std::string_view name, const Labels& labels, double v);
  void set(std::string_view name, const Labels& labels, double v);
  // Drops one series (e.g. a job that no longer exists); no-op if absent.
  void remove(std::string_view name, const Labels& labels);
  // 0 when the series does not exist.
  double value(std::string_view name, const Labels& labels) const;
  // The whole registry in text format 0.0.4, families sorted by name, series
  // sorted by their labels.
  std::string render() const;

 private:
  struct Family {
    std::string type = "untyped";
    std::string help;
    std::map<Labels, double> series;  // labels sorted by name
  };
  Family& family_locked(std::string_view name);
  // The series `labels` of `name` (created when under kMaxMetricSeries),
  // or nullptr when the cap refuses a new one. Caller holds mu_.
  double* series_locked(std::string_view name, const Labels& labels);

  mutable std::mutex mu_;
  std::map<std::string, Family, std::less<>> families_;
  std::size_t series_count_ = 0;
};

// Escapes a label value for the text format: backslash, double quote and
// newline become \\, \" and \n.
std::string escape_label_value(std::string_view v);

// Serves GET /metrics from a Metrics it does not own (which must outlive it).
class MetricsServer {
 public:
  // listen: "HOST:PORT" ("[::1]:PORT" for IPv6); port 0 picks a free port.
  static Result<std::unique_ptr<MetricsServer>> start(const std::string& listen, const Metrics& metrics);
  ~MetricsServer();  // stops serving and joins the server thread
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  int port() const { return port_; }

  struct Impl;

 private:
  explicit MetricsServer(std::unique_ptr<Impl> impl, int port);
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
};

}  // namespace ferry::agent
