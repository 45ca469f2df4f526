// cli_config.cc: settings of the `ferry` command from the environment and a
// config file (cli.h: apply_settings). Precedence: a flag on the command
// line, then the setting's FERRY_* environment variable, then the config
// file (a [SUBCOMMAND] section before its top-level lines), then the
// default. The file is small `name = value` lines; docs/OPERATIONS.md
// ("Configuration of the ferry command") shows one.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>

#include "tools/cli.h"

namespace ferry::cli {
namespace {

namespace fs = std::filesystem;

// A config file larger than this is refused (real ones are a few hundred bytes).
constexpr std::uintmax_t kMaxConfigFileBytes = 1u << 20;

struct ConfigValue {
  std::string value;
  std::string where;  // FILE:LINE
};
struct ConfigFile {
  std::map<std::string, ConfigValue> top;                              // by setting name
  std::map<std::string, std::map<std::string, ConfigValue>> sections;  // by subcommand, setting
};

std::map<std::string, std::string>& origins() {
  static std::map<std::string, std::string> o;
  return o;
}

std::string trim(std::string s) {
  const auto first = s.find_first_not_of(" \t\r");
  if (first == std::string::npos) return "";
  const auto last = s.find_last_not_of(" \t\r");
  return s.substr(first, last - first + 1);
}

// Settings are named as their flags; "chunk-size" reads as "chunk_size".
std::string setting_name(std::string key) {
  for (char& c : key)
    if (c == '-') c = '_';
  return key;
}

// Options a config file or the environment may set: named ones other than
// --help and --config.
bool settable(const CLI::Option* o) {
  const std::string name = o->get_single_name();
  return !o->get_lnames().empty() && name != "help" && name != "config";
}

bool has_setting(const CLI::App& app, const std::string& name) {
  const CLI::Option* o = app.get_option_no_throw("--" + name);
  return o != nullptr && settable(o);
}

Result<ConfigFile> read_config(const CLI::App& root, const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return Status::invalid_argument("config file " + path + " does not exist");
  if (fs::is_regular_file(path, ec) && fs::file_size(path, ec) > kMaxConfigFileBytes) {
    return Status::invalid_argument("config file " + path + " is larger than " +
                                    std::to_string(kMaxConfigFileBytes) + " bytes");
  }
  std::ifstream in(path);
  if (!in) return Status::invalid_argument("config file " + path + ": cannot open it");
  ConfigFile file;
  std::string line, section;
  for (int n = 1; std::getline(in, line); ++n) {
    const std::string where = path + ":" + std::to_string(n);
    line = trim(line);
    if (line.empty() || line[0] == '#' || line[0] == ';') continue;
    if (line.front() == '[') {
      if (line.back() != ']') return Status::invalid_argument(where + ": a section line is [SUBCOMMAND]");
      section = trim(line.substr(1, line.size() - 2));
      const CLI::App* sub = find_subcommand(root, section);
      if (sub == nullptr)
        return Status::invalid_argument(where + ": [" + section + "] is not a ferry subcommand");
      continue;
    }
    const auto eq = line.find('=');
    if (eq == std::string::npos) return Status::invalid_argument(where + ": expected NAME = VALUE");
    const std::string name = setting_name(trim(line.substr(0, eq)));
    std::string value = trim(line.substr(eq + 1));
    if (value.size() >= 2 && (value.front() == '"' || value.front() == '\'') &&
        value.back() == value.front()) {
      value = value.substr(1, value.size() - 2);
    }
    if (section.empty()) {
      bool known = false;
      for (const CLI::App* sub : root.get_subcommands({})) known = known || has_setting(*sub, name);
      if (!known)
        return Status::invalid_argument(where + ": no ferry subcommand has a setting \"" + name + "\"");
      file.top[name] = {value, where};
    } else {
      if (!has_setting(*find_subcommand(root, section), name)) {
        return Status::invalid_argument(where + ": ferry " + section + " has no setting \"" + name + "\"");
      }
      file.sections[section][name] = {value, where};
    }
  }
  return file;
}

Status set_from(CLI::Option* o, const std::string& value, const std::string& origin) {
  try {
    o->add_result(value);
    o->run_callback();
  } catch (const CLI::Error& e) {
    return Status::invalid_argument("invalid value \"" + value + "\" for --" + o->get_single_name() +
                                    " from " + origin + ": " + e.what());
  }
  origins()[o->get_single_name()] = origin;
  return Status::ok();
}

}  // namespace

const CLI::App* find_subcommand(const CLI::App& root, const std::string& name) {
  for (const CLI::App* sub : root.get_subcommands({})) {
    if (sub->get_name() == name) return sub;
  }
  return nullptr;
}

std::string default_config_file() {
  std::vector<std::string> candidates;
  if (const char* e = std::getenv("FERRY_CONFIG"); e && *e) return e;
  if (const char* xdg = std::getenv("XDG_CONFIG_HOME"); xdg && *xdg) {
    candidates.push_back(std::string(xdg) + "/ferry/ferry.conf");
  } else if (const char* home = std::getenv("HOME"); home && *home) {
    candidates.push_back(std::string(home) + "/.config/ferry/ferry.conf");
  }
  candidates.push_back("/etc/ferry/ferry.conf");
  for (const auto& c : candidates) {
    std::error_code ec;
    if (fs::is_regular_file(c, ec)) return c;
  }
  return "";
}

Status apply_settings(const CLI::App& root, CLI::App& sub, const std::string& config_file) {
  ConfigFile file;
  if (!config_file.empty()) {
    auto read = read_config(root, config_file);
    if (!read) return read.status();
    file = std::move(*read);
  }
  const std::string command = sub.get_name();
  for (CLI::Option* o : sub.get_options()) {
    if (!settable(o)) continue;
    const std::string name = o->get_single_name();
    if (o->count() > 0) {
      origins()[name] = "command line";
      continue;
    }
    if (const char* env = env_variable(command, name)) {
      if (const char* v = std::getenv(env); v && *v) {
        RETURN_IF_ERROR(set_from(o, v, env));
        continue;
      }
    }
    const ConfigValue* c = nullptr;
    if (auto s = file.sections.find(command); s != file.sections.end()) {
      if (auto it = s->second.find(name); it != s->second.end()) c = &it->second;
    }
    if (c == nullptr) {
      if (auto it = file.top.find(name); it != file.top.end()) c = &it->second;
    }
    if (c != nullptr) RETURN_IF_ERROR(set_from(o, c->value, c->where));
  }
  return Status::ok();
}

std::string setting_origin(const std::string& name) {
  auto it = origins().find(name);
  return it == origins().end() ? "" : it->second;
}

}  // namespace ferry::cli
