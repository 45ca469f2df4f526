// agent_flags.cc: the settings table and the command-line and flag-file
// parser (see agent_flags.h).
#include "agent/agent_flags.h"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>

namespace ferry::agent {
namespace {

namespace fs = std::filesystem;

// An unknown setting within this many edits of a known one is named as the
// likely meant one.
constexpr std::size_t kMaxTypoEdits = 2;
// --help wraps its descriptions at this width (columns).
constexpr std::size_t kHelpWidth = 100;

// One setting. `set` parses a value into the configuration and returns ""
// or why the value is bad; `show` prints the configuration's value (the
// default, in --help).
struct Setting {
  const char* section;  // non-null: a heading printed before this setting in --help
  const char* name;
  const char* value;  // "N", "HOST:PORT", ...; nullptr for a bool
  const char* help;
  std::string (*set)(AgentConfig&, std::string_view);
  std::string (*show)(const AgentConfig&);
};

std::string shown(const std::string& s) { return s.empty() ? "\"\"" : s; }

template <auto Member>
std::string set_string(AgentConfig& c, std::string_view v) {
  c.*Member = std::string(v);
  return "";
}
template <auto Member>
std::string show_string(const AgentConfig& c) {
  return shown(std::string(c.*Member));
}

template <auto Member>
std::string set_int(AgentConfig& c, std::string_view v) {
  int x = 0;
  auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), x);
  if (v.empty() || ec != std::errc() || end != v.data() + v.size()) return "not an integer";
  c.*Member = x;
  return "";
}
template <auto Member>
std::string show_int(const AgentConfig& c) {
  return std::to_string(c.*Member);
}

template <auto Member>
std::string set_double(AgentConfig& c, std::string_view v) {
  const std::string text(v);
  char* end = nullptr;
  errno = 0;
  const double x = std::strtod(text.c_str(), &end);
  if (text.empty() || end != text.c_str() + text.size() || errno == ERANGE || !std::isfinite(x)) {
    return "not a number";
  }
  c.*Member = x;
  return "";
}
template <auto Member>
std::string show_double(const AgentConfig& c) {
  std::ostringstream out;
  out << c.*Member;
  return out.str();
}

// gflags' spellings, so existing flag files keep their meaning.
std::optional<bool> parse_bool(std::string_view v) {
  std::string s(v);
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char ch) { return std::tolower(ch); });
  if (s == "true" || s == "t" || s == "yes" || s == "y" || s == "1") return true;
  if (s == "false" || s == "f" || s == "no" || s == "n" || s == "0") return false;
  return std::nullopt;
}
template <auto Member>
std::string set_bool(AgentConfig& c, std::string_view v) {
  auto b = parse_bool(v);
  if (!b) return "not true or false";
  c.*Member = *b;
  return "";
}
template <auto Member>
std::string show_bool(const AgentConfig& c) {
  return c.*Member ? "true" : "false";
}

// The list settings (--watch, --targets): parsed whole by config.h's parser.
template <auto Parse, auto Member>
std::string set_list(AgentConfig& c, std::string_view v) {
  auto parsed = Parse(v);
  if (!parsed) return parsed.status().message();
  c.*Member = std::move(parsed).value();
  return "";
}
template <auto Member, auto Item>
std::string show_list(const AgentConfig& c) {
  std::string out;
  for (const auto& item : c.*Member) out += (out.empty() ? "" : ",") + Item(item);
  return shown(out);
}
std::string watch_item(const WatchSpec& w) { return w.path.string() + "=" + w.job; }
std::string target_item(const std::string& t) { return t; }
std::string set_state_dir(AgentConfig& c, std::string_view v) {
  c.state_dir = std::string(v);
  return "";
}
std::string show_state_dir(const AgentConfig& c) { return shown(c.state_dir.string()); }
std::string set_control_socket(AgentConfig& c, std::string_view v) {
  c.control_socket = std::string(v);
  return "";
}
std::string show_control_socket(const AgentConfig& c) { return shown(c.control_socket.string()); }

using C = AgentConfig;

// Every setting, in the order --help lists them (and the example flag file).
const Setting kSettings[] = {
    {"What to replicate", "watch", "ROOT[=JOB],...",
     "checkpoint roots; each immediate subdirectory is one checkpoint of JOB (default: the root's name). "
     "Required",
     set_list<parse_watch_list, &C::watch>, show_list<&C::watch, watch_item>},
    {nullptr, "marker_file", "NAME",
     "a directory is also complete once this file appears in it, besides a DCP .metadata, a safetensors "
     "index with every shard, or `ferry submit`",
     set_string<&C::marker_file>, show_string<&C::marker_file>},
    {nullptr, "marker_only", nullptr,
     "only the marker counts (for trainers that add files after .metadata or the index); needs "
     "--marker_file",
     set_bool<&C::marker_only>, show_bool<&C::marker_only>},
    {"Where to", "targets", "HOST:PORT|s3://BUCKET/PREFIX,...",
     "DR receivers (`ferry serve`) or buckets written straight (credentials from AWS_* or ~/.aws), in "
     "failover order. Required",
     set_list<parse_target_list, &C::targets>, show_list<&C::targets, target_item>},
    {nullptr, "namespace", "NS", "the namespace (key prefix) under s3:// targets (default: the host name)",
     set_string<&C::ns>, show_string<&C::ns>},
    {nullptr, "fan_out", nullptr, "send every checkpoint to every target instead of the first healthy one",
     set_bool<&C::fan_out>, show_bool<&C::fan_out>},
    {nullptr, "delta", "key|previous|off",
     "delta snapshots: key codes each checkpoint against the job's newest key (full) snapshot whose "
     "directory is still here (a restore reads at most two frames per chunk); previous against the newest "
     "such snapshot (chains up to 7 deep); off sends every checkpoint whole",
     set_string<&C::delta>, show_string<&C::delta>},
    {nullptr, "key_every", "N", "a key (full) snapshot every N checkpoints of a job (1: always)",
     set_int<&C::key_every>, show_int<&C::key_every>},
    {nullptr, "delta_min_gain", "FRACTION",
     "a key snapshot when the newest delta snapshot saved less than this fraction of its key's frame bytes",
     set_double<&C::delta_min_gain>, show_double<&C::delta_min_gain>},
    {"Mutual TLS (files made by `ferry certs`)", "ca", "FILE",
     "PEM CA certificate of the deployment. Required with receiver targets", set_string<&C::ca>,
     show_string<&C::ca>},
    {nullptr, "cert", "FILE", "PEM certificate of this host. Required with receiver targets",
     set_string<&C::cert>, show_string<&C::cert>},
    {nullptr, "key", "FILE", "PEM private key of this host (mode 0600). Required with receiver targets",
     set_string<&C::key>, show_string<&C::key>},
    {nullptr, "crl", "FILE",
     "PEM revocation lists of the CA (`ferry certs --revoke`): a receiver certificate on one is refused. "
     "Read at every connection; SIGHUP checks it at once",
     set_string<&C::crl>, show_string<&C::crl>},
    {"The agent's own things", "state_dir", "DIR", "directory of the journal (keep it on a local disk)",
     set_state_dir, show_state_dir},
    {nullptr, "control_socket", "PATH", "unix socket for ferry status, submit, pause and resume",
     set_control_socket, show_control_socket},
    {nullptr, "metrics_listen", "HOST:PORT", "serves Prometheus /metrics (\"\": off)",
     set_string<&C::metrics_listen>, show_string<&C::metrics_listen>},
    {"Staying out of training's way", "max_jobs", "N", "checkpoints replicated at the same time",
     set_int<&C::max_jobs>, show_int<&C::max_jobs>},
    {nullptr, "streams", "N", "parallel TLS streams per push (s3:// targets: packs uploading at once)",
     set_int<&C::streams>, show_int<&C::streams>},
    {nullptr, "threads", "N", "CPU threads for hashing and compression", set_int<&C::threads>,
     show_int<&C::threads>},
    {nullptr, "bandwidth_mbps", "MB/S",
     "cap on MB/s sent over all streams, and uploaded to s3:// targets (0: none)",
     set_double<&C::bandwidth_mbps>, show_double<&C::bandwidth_mbps>},
    {nullptr, "engine", "auto|cpu|gpu", "codec engine: auto (the GPU when usable), cpu (never the GPU), gpu",
     set_string<&C::engine>, show_string<&C::engine>},
    {nullptr, "gpu_memory_mb", "MB", "device memory the GPU engine may hold", set_int<&C::gpu_memory_mb>,
     show_int<&C::gpu_memory_mb>},
    {nullptr, "pinned_memory_mb", "MB", "pinned host memory the GPU engine may hold",
     set_int<&C::pinned_memory_mb>, show_int<&C::pinned_memory_mb>},
    {nullptr, "nice", "0-19", "CPU nice increment the agent adds to its own at start", set_int<&C::nice>,
     show_int<&C::nice>},
    {nullptr, "io_class", "idle|best-effort", "I/O priority class (best-effort at its lowest level)",
     set_string<&C::io_class>, show_string<&C::io_class>},
    {"RPO and scheduling", "rpo_target_s", "SECONDS",
     "warn before the DR copy's age is forecast to pass this", set_double<&C::rpo_target_s>,
     show_double<&C::rpo_target_s>},
    {nullptr, "checkpoint_interval_s", "SECONDS", "expected seconds between checkpoints (0: learned)",
     set_double<&C::checkpoint_interval_s>, show_double<&C::checkpoint_interval_s>},
    {nullptr, "skip_superseded", nullptr,
     "when behind, replicate the newest checkpoint and skip older queued ones", set_bool<&C::skip_superseded>,
     show_bool<&C::skip_superseded>},
    {nullptr, "rescan_interval_s", "SECONDS", "full rescan of the roots, the safety net behind inotify",
     set_double<&C::rescan_interval_s>, show_double<&C::rescan_interval_s>},
    {nullptr, "incomplete_grace_s", "SECONDS",
     "a checkpoint directory not complete this long after it was first seen is logged "
     "(checkpoint_incomplete, once per root) and shown by `ferry status`",
     set_double<&C::incomplete_grace_s>, show_double<&C::incomplete_grace_s>},
    {"Target health", "probe_interval_s", "SECONDS", "seconds between target health probes",
     set_double<&C::probe_interval_s>, show_double<&C::probe_interval_s>},
    {nullptr, "target_down_after", "N", "failed probes in a row before a target is down",
     set_int<&C::target_down_after>, show_int<&C::target_down_after>},
    {nullptr, "target_up_after", "N", "good probes in a row before a down target is up",
     set_int<&C::target_up_after>, show_int<&C::target_up_after>},
    {"Shutdown and logs", "shutdown_grace_s", "SECONDS",
     "at SIGTERM, how long in-flight pushes may finish before they are cancelled",
     set_double<&C::shutdown_grace_s>, show_double<&C::shutdown_grace_s>},
    {nullptr, "log_format", "text|json", "log lines as text or one JSON object per line",
     set_string<&C::log_format>, show_string<&C::log_format>},
};

const Setting* find_setting(std::string_view name) {
  for (const Setting& s : kSettings) {
    if (name == s.name) return &s;
  }
  return nullptr;
}

// Levenshtein distance, for "did you mean".
std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diag = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

std::string unknown_setting(std::string_view name) {
  std::string out = "unknown setting --" + std::string(name);
  const Setting* best = nullptr;
  std::size_t best_distance = kMaxTypoEdits + 1;
  for (const Setting& s : kSettings) {
    const std::size_t d = edit_distance(name, s.name);
    if (d < best_distance) {
      best = &s;
      best_distance = d;
    }
  }
  if (best) return out + "; did you mean --" + best->name + "?";
  return out + " (ferry-agent --help lists every setting)";
}

// `text` broken into lines of at most kHelpWidth columns, each indented.
std::string wrapped(std::string_view text, std::size_t indent) {
  std::string out, line(indent, ' ');
  std::size_t at = 0;
  while (at < text.size()) {
    std::size_t end = text.find(' ', at);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view word = text.substr(at, end - at);
    if (line.size() > indent && line.size() + 1 + word.size() > kHelpWidth) {
      out += line + "\n";
      line.assign(indent, ' ');
    }
    if (line.size() > indent) line += ' ';
    line += word;
    at = end + 1;
  }
  return out + line + "\n";
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

class Parser {
 public:
  explicit Parser(AgentArgs& out) : out_(out) {}

  // One argument of the command line (at args[i]; may consume args[i+1]).
  void command_line(std::span<const std::string> args, std::size_t& i) {
    const std::string& arg = args[i];
    if (arg.size() < 2 || arg[0] != '-') {
      error("", "unexpected argument '" + arg + "' (every setting is a --flag)");
      return;
    }
    auto [name, value, has_value] = split_flag_argument(arg);
    if (!has_value && (name == "help" || name == "h")) {
      out_.help = true;
      return;
    }
    if (!has_value && name == "version") {
      out_.version = true;
      return;
    }
    if (!has_value && name == "validate") {
      out_.validate = true;
      return;
    }
    if (!has_value && name == "man") {
      out_.man = true;
      return;
    }
    if (has_value && name == "completion") {
      out_.completion = std::string(value);
      return;
    }
    const Setting* s = find_setting(name);
    const bool is_flagfile = name == "flagfile";
    if (!has_value && (is_flagfile || (s && s->value))) {
      // gflags' "--flag value" form.
      if (i + 1 >= args.size()) {
        error("", "--" + std::string(name) + " needs a value");
        return;
      }
      value = args[++i];
      has_value = true;
    }
    if (is_flagfile) {
      out_.flagfiles.emplace_back(value);
      read_flagfile(fs::path(std::string(value)), 1, "");
      return;
    }
    apply("", name, value, has_value);
  }

 private:
  void error(const std::string& where, const std::string& what) {
    out_.errors.push_back(where.empty() ? what : where + ": " + what);
  }

  // Sets `name` (with `value` when has_value; a bool without one is true,
  // and "no" + a bool's name is false).
  void apply(const std::string& where, std::string_view name, std::string_view value, bool has_value) {
    const Setting* s = find_setting(name);
    if (!s && !has_value && name.starts_with("no")) {
      const Setting* negated = find_setting(name.substr(2));
      if (negated && !negated->value) {
        s = negated;
        value = "false";
        has_value = true;
      }
    }
    if (!s) {
      error(where, unknown_setting(name));
      return;
    }
    if (!has_value) {
      if (s->value) {
        error(where,
              "--" + std::string(name) + " needs a value (--" + std::string(name) + "=" + s->value + ")");
        return;
      }
      value = "true";
    }
    const std::string why = s->set(out_.config, value);
    if (!why.empty()) {
      // parse_watch_list and parse_target_list name the setting themselves.
      const std::string prefix = "--" + std::string(s->name);
      error(where, why.starts_with(prefix) ? why : prefix + "=" + std::string(value) + ": " + why);
      return;
    }
    out_.origin[s->name] = where;
  }

  // Reads the flag file `path`, named at `named_at` ("" for the command
  // line, else the FILE:LINE of the --flagfile line that includes it).
  void read_flagfile(const fs::path& path, int depth, const std::string& named_at) {
    const std::string flag = "--flagfile=" + path.string();
    if (depth > kMaxFlagfileDepth) {
      error(named_at, flag + ": flag files nest deeper than " + std::to_string(kMaxFlagfileDepth) +
                          " (does one name itself?)");
      return;
    }
    std::error_code ec;
    const auto size = fs::file_size(path, ec);
    if (ec) {
      error(named_at, flag + ": cannot read: " + ec.message());
      return;
    }
    if (size > kMaxFlagfileBytes) {
      error(named_at, flag + ": " + std::to_string(size) + " bytes, more than the limit of " +
                          std::to_string(kMaxFlagfileBytes));
      return;
    }
    std::ifstream in(path, std::ios::binary);
    if (!in) {
      error(named_at, flag + ": cannot read: " + std::strerror(errno));
      return;
    }
    std::string line;
    for (int number = 1; std::getline(in, line); ++number) {
      const std::string where = path.string() + ":" + std::to_string(number);
      const std::string_view text = trim(line);
      if (text.empty() || text.front() == '#') continue;
      if (text.size() < 2 || text.front() != '-') {
        error(where, "expected --setting=value, not '" + std::string(text) + "'");
        continue;
      }
      const auto [name, value, has_value] = split_flag_argument(text);
      if (name.find_first_of(" \t") != std::string_view::npos) {
        error(where, "expected --setting=value, not '" + std::string(text) + "'");
        continue;
      }
      if (name == "flagfile" && has_value) {
        // Relative to the file that names it, so a file can be moved with its includes.
        fs::path next(std::string{value});
        if (next.is_relative()) next = path.parent_path() / next;
        read_flagfile(next, depth + 1, where);
        continue;
      }
      if (name == "help" || name == "h" || name == "version" || name == "validate") {
        error(where, "--" + std::string(name) + " belongs on the command line, not in a flag file");
        continue;
      }
      apply(where, name, value, has_value);
    }
  }

  AgentArgs& out_;
};

}  // namespace

FlagArgument split_flag_argument(std::string_view arg) {
  FlagArgument out;
  const std::string_view body = arg.substr(arg.starts_with("--") ? 2 : arg.starts_with("-") ? 1 : 0);
  out.name = body;
  if (auto eq = body.find('='); eq != std::string_view::npos) {
    out.name = body.substr(0, eq);
    out.value = body.substr(eq + 1);
    out.has_value = true;
  }
  return out;
}

AgentArgs parse_agent_args(std::span<const std::string> args) {
  AgentArgs out;
  Parser parser(out);
  for (std::size_t i = 0; i < args.size(); ++i) parser.command_line(args, i);
  return out;
}

std::vector<std::string> config_problems(const AgentArgs& args) {
  std::vector<std::string> out = args.errors;
  // A setting whose value was refused already keeps its default; checking
  // that default again would only repeat the problem in other words.
  std::set<std::string> refused;
  for (const std::string& e : args.errors) {
    const auto at = e.find("--");
    if (at == std::string::npos) continue;
    const auto end = e.find_first_of("=: ", at);
    refused.insert(e.substr(at + 2, end == std::string::npos ? std::string::npos : end - at - 2));
  }
  for (const Status& st : validate_all(args.config)) {
    const std::string& m = st.message();
    std::string name;
    if (m.starts_with("--")) {
      const auto end = m.find_first_of("=: ", 2);
      name = m.substr(2, end == std::string::npos ? std::string::npos : end - 2);
    }
    if (!name.empty() && refused.count(name)) continue;
    auto origin = args.origin.find(name);
    const bool from_file = origin != args.origin.end() && !origin->second.empty();
    std::string line = from_file ? origin->second + ": " + m : m;
    if (std::find(out.begin(), out.end(), line) == out.end()) out.push_back(std::move(line));
  }
  return out;
}

std::string agent_flags_help() {
  const AgentConfig defaults;
  std::string out =
      "usage: ferry-agent --watch=ROOT[=JOB] --targets=HOST:PORT --ca=CA --cert=CERT --key=KEY "
      "[--setting=value "
      "...]\n"
      "       ferry-agent --flagfile=/etc/ferry/agent.flags [--validate]\n"
      "       ferry-agent --help | --version\n"
      "\n"
      "The per-host agent: replicates every complete checkpoint under the watched roots to the DR "
      "receivers.\n"
      "Settings come from the command line and from flag files (--flagfile=FILE: one --setting=value per\n"
      "line, # comments; a later setting overrides an earlier one). An unknown setting or a bad value is an\n"
      "error naming it (and the file and line): exit status 2. Booleans take --name, --noname or\n"
      "--name=true|false. docs/OPERATIONS.md explains each setting.\n"
      "\n"
      "Modes\n"
      "  --validate\n"
      "      check the configuration and probe every target, then exit: 0 when all is well, 2 with every\n"
      "      problem on its own line\n"
      "  --version\n"
      "      version, git commit, build options and the codec engine this host would use\n"
      "  --flagfile=FILE\n"
      "      read settings from FILE (SIGHUP reads it again and applies it live)\n"
      "  --man, --completion=bash\n"
      "      print the man page (roff) or a bash completion script for these settings\n";
  for (const Setting& s : kSettings) {
    if (s.section) out += std::string("\n") + s.section + "\n";
    out += std::string("  --") + s.name + (s.value ? std::string("=") + s.value : std::string()) +
           "  (default: " + s.show(defaults) + ")\n" + wrapped(s.help, 6);
  }
  out +=
      "\nExit status: 0 stopped by SIGTERM or SIGINT (or --help, --version, a good --validate); 1 cannot\n"
      "start (no target reachable, the journal locked); 2 the configuration is wrong (not retried by the\n"
      "systemd unit).\n";
  return out;
}

std::vector<SettingDoc> agent_setting_docs() {
  const AgentConfig defaults;
  std::vector<SettingDoc> out;
  for (const Setting& s : kSettings) {
    out.push_back({s.section ? s.section : "", s.name, s.value ? s.value : "",
                   std::string(s.help) + " (default: " + s.show(defaults) + ")"});
  }
  out.push_back(
      {"Modes", "validate", "",
       "check the configuration and probe every target, then exit: 0 when all is well, 2 with every "
       "problem on its own line"});
  out.push_back(
      {"", "version", "", "version, git commit, build options and the codec engine this host would use"});
  out.push_back(
      {"", "flagfile", "FILE", "read settings from FILE (SIGHUP reads it again and applies it live)"});
  out.push_back({"", "man", "", "print this man page (roff)"});
  out.push_back({"", "completion", "SHELL", "print a completion script (bash)"});
  return out;
}

}  // namespace ferry::agent
