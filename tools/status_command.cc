// status_command.cc: `ferry status [--json] [--socket=PATH]`: asks the running
// ferry-agent for its state over the control socket and prints it for a
// person: per job the newest step committed at the DR site and its age (the
// RPO) against the target, the forecast, warnings, queue and errors; per DR
// target whether it is up; totals. --json prints the agent's answer as is,
// as one line. Exits kExitWarning (6) when it shows a warning.
#include <cmath>
#include <cstdio>
#include <string>

#include "tools/cli.h"

namespace ferry::cli {
namespace {

void define_status(CLI::App& app) {
  add_json(app, "print the agent's answer as one JSON object");
  add_socket(app);
}

using nlohmann::json;

// The agent's answer is read defensively: a field missing or of another type
// (an older or newer agent) prints as "-" instead of failing.
double number(const json& j, const char* key, double fallback = NAN) {
  auto it = j.find(key);
  return it != j.end() && it->is_number() ? it->get<double>() : fallback;
}
std::string text(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}
bool flag(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_boolean() && it->get<bool>();
}
const json& list(const json& j, const char* key) {
  static const json kEmpty = json::array();
  auto it = j.find(key);
  return it != j.end() && it->is_array() ? *it : kEmpty;
}
std::string count(const json& j, const char* key) {
  double v = number(j, key);
  return std::isnan(v) ? "-" : std::to_string(static_cast<long long>(v));
}

// "42s", "5m 03s", "2h 05m", "3d 04h"; "-" when unknown.
std::string format_duration(double seconds) {
  if (std::isnan(seconds) || seconds < 0) return "-";
  if (std::isinf(seconds)) return "never";
  auto s = static_cast<long long>(std::llround(seconds));
  char buf[32];
  if (s < 60)
    std::snprintf(buf, sizeof buf, "%llds", s);
  else if (s < 3600)
    std::snprintf(buf, sizeof buf, "%lldm %02llds", s / 60, s % 60);
  else if (s < 86400)
    std::snprintf(buf, sizeof buf, "%lldh %02lldm", s / 3600, s % 3600 / 60);
  else
    std::snprintf(buf, sizeof buf, "%lldd %02lldh", s / 86400, s % 86400 / 3600);
  return buf;
}

// One line on a job's delta snapshots, once it committed one this run.
void print_delta(const std::string& job, const json& j) {
  auto it = j.find("delta");
  if (it == j.end() || !it->is_object()) return;
  const json& d = *it;
  const std::string kind = text(d, "newest_kind");
  if (kind.empty() || kind == "-") return;
  std::string newest = kind == "delta" ? "delta against " + text(d, "newest_base") : "key";
  const double logical = number(d, "logical_bytes", 0), frames = number(d, "frame_bytes", 0);
  std::string sent = "no chunk sent as a delta yet";
  if (frames > 0) {
    char ratio[32];
    std::snprintf(ratio, sizeof ratio, "%.2fx", logical / frames);
    sent = format_bytes(static_cast<std::uint64_t>(logical)) + " sent as deltas in " +
           format_bytes(static_cast<std::uint64_t>(frames)) + " (delta ratio " + ratio + ", " +
           format_bytes(static_cast<std::uint64_t>(logical - frames)) + " saved)";
  }
  std::printf("  %s: newest snapshot %s; %s\n", job.c_str(), newest.c_str(), sent.c_str());
}

void print_jobs(const json& status) {
  const json& jobs = list(status, "jobs");
  if (jobs.empty()) {
    std::printf("no jobs yet (nothing found under the watched roots or submitted)\n");
    return;
  }
  std::printf("%-20s %10s %-8s %-8s %-9s %6s %9s %9s %7s %6s  %s\n", "JOB", "STEP", "RPO", "TARGET",
              "FORECAST", "QUEUED", "IN-FLIGHT", "COMMITTED", "SKIPPED", "FAILED", "STATE");
  for (const json& j : jobs) {
    // Nothing committed yet: no snapshot name (the step may read 0).
    double step = number(j, "newest_committed_step");
    bool none = std::isnan(step) || (step == 0 && text(j, "newest_committed_snapshot").empty());
    std::string step_text = none ? "none" : std::to_string(static_cast<long long>(step));
    // The agent reports a forecast that cannot drain (no throughput) as -1.
    double forecast = number(j, "forecast_rpo_seconds");
    std::string forecast_text = forecast < 0 ? "stalled" : format_duration(forecast);
    const bool incomplete = j.contains("incomplete") && j["incomplete"].is_object();
    std::string state = flag(j, "warning")  ? "WARNING"
                        : incomplete        ? "INCOMPLETE"
                        : flag(j, "paused") ? "paused"
                                            : "ok";
    if (state != "paused" && flag(j, "paused")) state += ", paused";
    // null: no checkpoint seen yet, so there is no age to tell.
    double rpo = number(j, "rpo_seconds");
    std::string rpo_text = std::isnan(rpo) ? "unknown" : format_duration(rpo);
    std::printf("%-20s %10s %-8s %-8s %-9s %6s %9s %9s %7s %6s  %s\n", text(j, "job").c_str(),
                step_text.c_str(), rpo_text.c_str(), format_duration(number(j, "rpo_target_seconds")).c_str(),
                forecast_text.c_str(), count(j, "queued").c_str(), count(j, "in_flight").c_str(),
                count(j, "committed").c_str(), count(j, "skipped").c_str(), count(j, "failed").c_str(),
                state.c_str());
  }
  // Warnings and errors get whole lines: they are what a person looks for.
  for (const json& j : jobs) {
    std::string job = text(j, "job");
    if (flag(j, "warning")) {
      std::string why = text(j, "warning_text");
      std::printf("WARNING %s: %s\n", job.c_str(),
                  why.empty() ? "the RPO target is breached or forecast to be" : why.c_str());
    }
    if (auto it = j.find("incomplete"); it != j.end() && it->is_object()) {
      const json& ic = *it;
      double n = number(ic, "count", 1);
      std::printf(
          "  %s: %s checkpoint director%s not complete for %s, not replicated; oldest %s waits for: %s\n",
          job.c_str(), count(ic, "count").c_str(), n == 1 ? "y" : "ies",
          format_duration(number(ic, "incomplete_for_seconds")).c_str(), text(ic, "oldest_dir").c_str(),
          text(ic, "waiting_for").c_str());
    }
    double backlog = number(j, "backlog_bytes", 0);
    if (backlog > 0) {
      std::printf("  %s: %s not yet at the DR site\n", job.c_str(),
                  format_bytes(static_cast<std::uint64_t>(backlog)).c_str());
    }
    if (std::string err = text(j, "last_error"); !err.empty()) {
      std::printf("  %s: last error: %s\n", job.c_str(), err.c_str());
    }
    print_delta(job, j);
  }
}

void print_targets(const json& status) {
  const json& targets = list(status, "targets");
  if (targets.empty()) return;
  std::printf("\n%-32s %-5s %s\n", "TARGET", "STATE", "DETAIL");
  for (const json& t : targets) {
    bool up = flag(t, "up");
    std::string detail;
    double failures = number(t, "consecutive_failures", 0);
    if (failures > 0) detail = count(t, "consecutive_failures") + " failed probes in a row";
    if (std::string err = text(t, "last_error"); !err.empty()) {
      detail += (detail.empty() ? "" : ": ") + err;
    }
    if (detail.empty())
      std::printf("%-32s %s\n", text(t, "address").c_str(), up ? "up" : "DOWN");
    else
      std::printf("%-32s %-5s %s\n", text(t, "address").c_str(), up ? "up" : "DOWN", detail.c_str());
  }
}

void print_queue(const json& status) {
  const json& queue = list(status, "queue");
  if (queue.empty()) return;
  std::printf("\n%-6s %-20s %-10s %s\n", "ID", "JOB", "STATE", "DIRECTORY");
  for (const json& q : queue) {
    std::printf("%-6s %-20s %-10s %s\n", count(q, "id").c_str(), text(q, "job").c_str(),
                text(q, "state").c_str(), text(q, "dir").c_str());
  }
}

void print_totals(const json& status) {
  double logical = number(status, "logical_bytes", 0);
  double wire = number(status, "wire_bytes", 0);
  double rate = number(status, "throughput_bytes_per_second", 0);
  std::printf("\nreplicated %s (%s on the wire", format_bytes(static_cast<std::uint64_t>(logical)).c_str(),
              format_bytes(static_cast<std::uint64_t>(wire)).c_str());
  if (wire > 0) std::printf(", ratio %.2f", logical / wire);
  std::printf("), now %s/s\n", format_bytes(static_cast<std::uint64_t>(rate)).c_str());
}

// Whether the status shows anything a person must look at: a job's RPO
// warning, an incomplete checkpoint, a job's error, a target down. Then
// `ferry status` exits kExitWarning, so a cron job or probe can alert.
bool shows_warning(const json& status) {
  for (const json& j : list(status, "jobs")) {
    if (flag(j, "warning") || (j.contains("incomplete") && j["incomplete"].is_object()) ||
        !text(j, "last_error").empty()) {
      return true;
    }
  }
  for (const json& t : list(status, "targets")) {
    if (!flag(t, "up")) return true;
  }
  return false;
}

int run_status(const std::vector<std::string>&) {
  int code = kExitOk;
  auto status = ask_agent("status", json::object(), &code);
  if (!status) return code;
  const int code_shown = shows_warning(*status) ? kExitWarning : kExitOk;
  if (settings().json) {
    print_json_line(*status);
    return code_shown;
  }
  std::string engine = text(*status, "engine");
  const std::string reason = text(*status, "engine_reason");
  if (!reason.empty()) engine += " [" + reason + "]";
  std::printf("ferry-agent: up %s, engine %s, %s\n", format_duration(number(*status, "uptime_s")).c_str(),
              engine.empty() ? "-" : engine.c_str(),
              flag(*status, "paused") ? "PAUSED (ferry resume to continue)" : "replicating");
  print_jobs(*status);
  print_targets(*status);
  print_queue(*status);
  print_totals(*status);
  return code_shown;
}

Registrar registrar({"status", "status [--json] [--socket=PATH]",
                     "the running agent's jobs, RPO, targets and queue", define_status, run_status});

}  // namespace
}  // namespace ferry::cli
