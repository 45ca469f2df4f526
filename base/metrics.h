// metrics.h: a small thread-safe registry of counters, gauges and histograms
// keyed by name and label set, rendered in the Prometheus text exposition
// format 0.0.4 (HELP and TYPE lines, escaped label values, stable sorted
// output) so any Prometheus-compatible scraper reads it. The agent and the
// receiver (`ferry serve`) each fill one; base/metrics_server.h serves it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ferry {

// Label name/value pairs. Order does not matter: a series is identified by
// its labels sorted by name.
using Labels = std::vector<std::pair<std::string, std::string>>;

// Bounds that keep a misbehaving caller from growing the registry (and each
// scrape) without limit.
inline constexpr std::size_t kMaxMetricSeries = 10'000;
inline constexpr std::size_t kMaxMetricLabelValueBytes = 1024;

// Bucket upper bounds in seconds: for fsync latency (0.5 ms to 10 s) and for
// whole operations such as a checkpoint's push (0.1 s to 1 h).
inline constexpr double kLatencyBucketsSeconds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                    0.1,    0.25,  0.5,    1,     2.5,  5,     10};
inline constexpr double kDurationBucketsSeconds[] = {0.1, 0.25, 0.5, 1,   2.5, 5,    10,
                                                     30,  60,   120, 300, 600, 1800, 3600};

// One histogram's counts: buckets[i] counts observations <= bounds[i] and
// above bounds[i-1]; the last bucket (+Inf) those above every bound.
struct HistogramCounts {
  std::vector<double> bounds;
  std::vector<std::uint64_t> buckets;  // bounds.size() + 1
  double sum = 0;
  std::uint64_t count = 0;

  explicit HistogramCounts(std::span<const double> b = {});
  void observe(double v);
};

// A histogram kept outside a registry (a component that must not know the
// registry, such as the receiver); a collector copies it in. Thread-safe.
class Histogram {
 public:
  explicit Histogram(std::span<const double> bounds) : counts_(bounds) {}
  void observe(double v);
  HistogramCounts counts() const;

 private:
  mutable std::mutex mu_;
  HistogramCounts counts_;
};

// Thread-safe registry. add() is for counters (a negative delta is ignored:
// counters never go down), set() for gauges, observe() for histograms. A
// metric used before it is described renders as "untyped" with no HELP line.
class Metrics {
 public:
  // Runs at every render, before the registry is read: copies figures kept
  // elsewhere into it (with set(), set_histogram(), remove()).
  using Collector = std::function<void(Metrics&)>;

  Metrics();

  void describe(std::string_view name, std::string_view type /* counter|gauge */, std::string_view help);
  void describe_histogram(std::string_view name, std::string_view help, std::span<const double> bounds);
  void add(std::string_view name, const Labels& labels, double v);
  void set(std::string_view name, const Labels& labels, double v);
  // One observation into histogram `name` (described first).
  void observe(std::string_view name, const Labels& labels, double v);
  // Replaces a histogram series with counts kept elsewhere.
  void set_histogram(std::string_view name, const Labels& labels, const HistogramCounts& counts);
  // Drops one series (e.g. a target no longer configured); no-op if absent.
  void remove(std::string_view name, const Labels& labels);
  // Drops every series, in every family, that has label `key` = `value`.
  void remove_labelled(std::string_view key, std::string_view value);
  // The values of label `key` among the series of `name`.
  std::vector<std::string> label_values(std::string_view name, std::string_view key) const;
  // 0 when the series does not exist.
  double value(std::string_view name, const Labels& labels) const;
  void add_collector(Collector c);
  // The whole registry in text format 0.0.4, families sorted by name, series
  // sorted by their labels (collectors run first).
  std::string render();

 private:
  struct Family {
    std::string type = "untyped";
    std::string help;
    std::vector<double> bounds;                 // histograms
    std::map<Labels, double> series;            // labels sorted by name
    std::map<Labels, HistogramCounts> buckets;  // histograms
  };
  Family& family_locked(std::string_view name);
  // The series `labels` of `name` (created when under kMaxMetricSeries),
  // or nullptr when the cap refuses a new one. Caller holds mu_.
  double* series_locked(std::string_view name, const Labels& labels);
  HistogramCounts* histogram_locked(std::string_view name, const Labels& labels);

  mutable std::mutex mu_;
  std::map<std::string, Family, std::less<>> families_;
  std::size_t series_count_ = 0;
  std::mutex collectors_mu_;  // held while collectors run: one render collects at a time
  std::vector<Collector> collectors_;
};

// Escapes a label value for the text format: backslash, double quote and
// newline become \\, \" and \n.
std::string escape_label_value(std::string_view v);

// ferry_build_info{version,commit,build_type,cuda} 1: which build answers.
void describe_build_info(Metrics& m);

}  // namespace ferry
