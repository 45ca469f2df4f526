// metrics.cc: see metrics.h. The text format is Prometheus exposition format
// 0.0.4: https://prometheus.io/docs/instrumenting/exposition_formats/
#include "base/metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

#include "base/build_info.h"
#include "base/status.h"

namespace ferry {
namespace {

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

HistogramCounts::HistogramCounts(std::span<const double> b)
    : bounds(b.begin(), b.end()), buckets(b.size() + 1, 0) {}

void HistogramCounts::observe(double v) {
  if (std::isnan(v)) return;
  const auto at = std::lower_bound(bounds.begin(), bounds.end(), v) - bounds.begin();
  ++buckets[static_cast<std::size_t>(at)];
  sum += v;
  ++count;
}

void Histogram::observe(double v) {
  std::lock_guard lock(mu_);
  counts_.observe(v);
}

HistogramCounts Histogram::counts() const {
  std::lock_guard lock(mu_);
  return counts_;
}

Metrics::Metrics() = default;

void describe_build_info(Metrics& m) {
  m.describe("ferry_build_info", "gauge", "1, labelled with the version and build of ferry that answers");
  const BuildInfo& b = build_info();
  m.set("ferry_build_info",
        {{"version", std::string(b.version)},
         {"commit", std::string(b.git_commit)},
         {"build_type", std::string(b.build_type)},
         {"cuda", b.cuda ? "on" : "off"}},
        1);
}

Metrics::Family& Metrics::family_locked(std::string_view name) {
  auto it = families_.find(name);
  if (it != families_.end()) return it->second;
  FERRY_CHECK(valid_name(name, true));
  return families_.emplace(std::string(name), Family{}).first->second;
}

void Metrics::describe(std::string_view name, std::string_view type, std::string_view help) {
  FERRY_CHECK(type == "counter" || type == "gauge" || type == "histogram");
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
  series_count_ -= it->second.buckets.erase(key);
}

void Metrics::describe_histogram(std::string_view name, std::string_view help,
                                 std::span<const double> bounds) {
  FERRY_CHECK(std::is_sorted(bounds.begin(), bounds.end()) && !bounds.empty());
  describe(name, "histogram", help);
  std::lock_guard lock(mu_);
  family_locked(name).bounds.assign(bounds.begin(), bounds.end());
}

HistogramCounts* Metrics::histogram_locked(std::string_view name, const Labels& labels) {
  Labels key = normalise(labels);
  Family& f = family_locked(name);
  FERRY_CHECK(f.type == "histogram");  // described first, with its bounds
  auto it = f.buckets.find(key);
  if (it != f.buckets.end()) return &it->second;
  if (series_count_ >= kMaxMetricSeries) return nullptr;
  ++series_count_;
  return &f.buckets.emplace(std::move(key), HistogramCounts(f.bounds)).first->second;
}

void Metrics::observe(std::string_view name, const Labels& labels, double v) {
  std::lock_guard lock(mu_);
  if (HistogramCounts* h = histogram_locked(name, labels)) h->observe(v);
}

void Metrics::set_histogram(std::string_view name, const Labels& labels, const HistogramCounts& counts) {
  std::lock_guard lock(mu_);
  if (HistogramCounts* h = histogram_locked(name, labels)) *h = counts;
}

void Metrics::remove_labelled(std::string_view key, std::string_view value) {
  std::lock_guard lock(mu_);
  auto has = [&](const Labels& labels) {
    return std::any_of(labels.begin(), labels.end(),
                       [&](const auto& kv) { return kv.first == key && kv.second == value; });
  };
  for (auto& [name, f] : families_) {
    series_count_ -= std::erase_if(f.series, [&](const auto& s) { return has(s.first); });
    series_count_ -= std::erase_if(f.buckets, [&](const auto& s) { return has(s.first); });
  }
}

std::vector<std::string> Metrics::label_values(std::string_view name, std::string_view key) const {
  std::vector<std::string> out;
  std::lock_guard lock(mu_);
  auto it = families_.find(name);
  if (it == families_.end()) return out;
  auto collect = [&](const Labels& labels) {
    for (const auto& [k, v] : labels) {
      if (k == key && std::find(out.begin(), out.end(), v) == out.end()) out.push_back(v);
    }
  };
  for (const auto& s : it->second.series) collect(s.first);
  for (const auto& s : it->second.buckets) collect(s.first);
  return out;
}

void Metrics::add_collector(Collector c) {
  std::lock_guard lock(collectors_mu_);
  collectors_.push_back(std::move(c));
}

double Metrics::value(std::string_view name, const Labels& labels) const {
  Labels key = normalise(labels);
  std::lock_guard lock(mu_);
  auto it = families_.find(name);
  if (it == families_.end()) return 0;
  auto s = it->second.series.find(key);
  return s == it->second.series.end() ? 0 : s->second;
}

// One sample line: name{labels[,extra]} value.
static void render_sample(std::string& out, std::string_view name, const Labels& labels,
                          const std::string& extra, double v) {
  out += name;
  if (!labels.empty() || !extra.empty()) {
    out += '{';
    for (std::size_t i = 0; i < labels.size(); ++i) {
      if (i) out += ',';
      out += labels[i].first + "=\"" + escape_label_value(labels[i].second) + "\"";
    }
    if (!extra.empty()) out += (labels.empty() ? "" : ",") + extra;
    out += '}';
  }
  out += ' ';
  out += format_value(v);
  out += '\n';
}

std::string Metrics::render() {
  {
    std::lock_guard lock(collectors_mu_);
    for (const Collector& c : collectors_) c(*this);
  }
  std::string out;
  std::lock_guard lock(mu_);
  for (const auto& [name, f] : families_) {
    if (!f.help.empty()) out += "# HELP " + name + " " + escape_help(f.help) + "\n";
    out += "# TYPE " + name + " " + f.type + "\n";
    for (const auto& [labels, v] : f.series) render_sample(out, name, labels, "", v);
    for (const auto& [labels, h] : f.buckets) {
      // Buckets are cumulative in the text format, ending with le="+Inf".
      std::uint64_t cumulative = 0;
      for (std::size_t i = 0; i < h.buckets.size(); ++i) {
        cumulative += h.buckets[i];
        const std::string le = i < h.bounds.size() ? format_value(h.bounds[i]) : "+Inf";
        render_sample(out, name + "_bucket", labels, "le=\"" + le + "\"", static_cast<double>(cumulative));
      }
      render_sample(out, name + "_sum", labels, "", h.sum);
      render_sample(out, name + "_count", labels, "", static_cast<double>(h.count));
    }
  }
  return out;
}

}  // namespace ferry
