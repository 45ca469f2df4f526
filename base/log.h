// log.h: the agent's structured log. Every event is one line with the time,
// the level, the event name and key=value fields, written as text
// ("2026-11-25T01:02:03.456Z INFO job_committed job=llama step=300") or as a
// JSON object per line, so operators can grep it and log shippers parse it.
#pragma once

#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/status.h"

namespace ferry {

enum class LogLevel : int { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };
enum class LogFormat : int { kText = 0, kJson = 1 };

std::string_view level_name(LogLevel level);
// "text" or "json"; InvalidArgument otherwise.
Result<LogFormat> parse_log_format(std::string_view name);

// One field of an event. Numbers are passed already formatted (field() does it).
using LogField = std::pair<std::string, std::string>;
using LogFields = std::vector<LogField>;

LogField field(std::string key, std::string value);
LogField field(std::string key, std::string_view value);
LogField field(std::string key, const char* value);
LogField field(std::string key, double value);
LogField field(std::string key, std::int64_t value);
LogField field(std::string key, std::uint64_t value);
LogField field(std::string key, int value);
LogField field(std::string key, bool value);

// The line (without its newline) for one event at `time_ns` (Unix ns).
std::string format_log_line(LogFormat format, std::int64_t time_ns, LogLevel level, std::string_view event,
                            const LogFields& fields);

// Thread-safe; lines go to the sink (default: stderr, which systemd's journal
// collects), whole lines at a time.
class Logger {
 public:
  using Sink = std::function<void(std::string_view line)>;
  explicit Logger(LogFormat format = LogFormat::kText, Sink sink = {});

  void log(LogLevel level, std::string_view event, const LogFields& fields = {});
  void info(std::string_view event, const LogFields& fields = {}) { log(LogLevel::kInfo, event, fields); }
  void warn(std::string_view event, const LogFields& fields = {}) { log(LogLevel::kWarn, event, fields); }
  void error(std::string_view event, const LogFields& fields = {}) { log(LogLevel::kError, event, fields); }
  void set_format(LogFormat format);

 private:
  std::mutex mu_;
  LogFormat format_;
  Sink sink_;
};

}  // namespace ferry
