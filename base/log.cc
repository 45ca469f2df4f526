// log.cc: structured log lines (see log.h).
#include "base/log.h"
#include "base/clock.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <nlohmann/json.hpp>

namespace ferry {
namespace {

std::string iso_time(std::int64_t time_ns) {
  std::time_t secs = static_cast<std::time_t>(time_ns / 1'000'000'000);
  int ms = static_cast<int>((time_ns / 1'000'000) % 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[40];
  std::size_t n = std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(buf + n, sizeof(buf) - n, ".%03dZ", ms);
  return buf;
}

// A text value is quoted when it would not survive splitting on spaces and
// '=' (so "error=connection refused" stays one field).
std::string text_value(std::string_view v) {
  bool plain = !v.empty();
  for (char c : v) {
    if (c == ' ' || c == '"' || c == '=' || c == '\n' || c == '\t' || c == '\\') plain = false;
  }
  if (plain) return std::string(v);
  std::string out = "\"";
  for (char c : v) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  out += '"';
  return out;
}

}  // namespace

std::string_view level_name(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "DEBUG";
    case LogLevel::kInfo:
      return "INFO";
    case LogLevel::kWarn:
      return "WARN";
    case LogLevel::kError:
      return "ERROR";
  }
  return "INFO";
}

Result<LogFormat> parse_log_format(std::string_view name) {
  if (name == "text") return LogFormat::kText;
  if (name == "json") return LogFormat::kJson;
  return Status::invalid_argument("--log_format=" + std::string(name) + ": expected text or json");
}

LogField field(std::string key, std::string value) { return {std::move(key), std::move(value)}; }
LogField field(std::string key, std::string_view value) { return {std::move(key), std::string(value)}; }
LogField field(std::string key, const char* value) { return {std::move(key), std::string(value)}; }
LogField field(std::string key, double value) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.6g", value);
  return {std::move(key), buf};
}
LogField field(std::string key, std::int64_t value) { return {std::move(key), std::to_string(value)}; }
LogField field(std::string key, std::uint64_t value) { return {std::move(key), std::to_string(value)}; }
LogField field(std::string key, int value) { return {std::move(key), std::to_string(value)}; }
LogField field(std::string key, bool value) { return {std::move(key), value ? "true" : "false"}; }

std::string format_log_line(LogFormat format, std::int64_t time_ns, LogLevel level, std::string_view event,
                            const LogFields& fields) {
  if (format == LogFormat::kJson) {
    nlohmann::ordered_json j;
    j["time"] = iso_time(time_ns);
    j["level"] = level_name(level);
    j["event"] = event;
    for (const auto& [k, v] : fields) j[k] = v;
    // Invalid UTF-8 (a path's bytes) is replaced rather than thrown on.
    return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }
  std::string line = iso_time(time_ns);
  line += ' ';
  line += level_name(level);
  line += ' ';
  line += event;
  for (const auto& [k, v] : fields) {
    line += ' ';
    line += k;
    line += '=';
    line += text_value(v);
  }
  return line;
}

Logger::Logger(LogFormat format, Sink sink) : format_(format), sink_(std::move(sink)) {}

void Logger::set_format(LogFormat format) {
  std::lock_guard lock(mu_);
  format_ = format;
}

void Logger::log(LogLevel level, std::string_view event, const LogFields& fields) {
  std::lock_guard lock(mu_);
  std::string line = format_log_line(format_, wall_ns(), level, event, fields);
  if (sink_) {
    sink_(line);
    return;
  }
  line += '\n';
  // One write per line so lines from several processes never interleave.
  (void)!::write(STDERR_FILENO, line.data(), line.size());
}

}  // namespace ferry
