// main.cc: the `ferry` command. `ferry SUBCOMMAND [ARGS] [--flags]`, `ferry
// help [SUBCOMMAND]`, `ferry --version`, `ferry completion bash`, `ferry
// man`. Each subcommand (tools/<name>_command.cc) defines its own flags with
// CLI11, so a flag it does not use is a usage error naming the flag, and
// `ferry SUBCOMMAND --help`, the completion script and the man page all come
// from those definitions. Settings the command line leaves out come from
// FERRY_* environment variables and then the config file (cli_config.cc).
#include <CLI/CLI.hpp>

#include <cstdio>
#include <string>
#include <vector>

#include "agent/config.h"
#include "base/build_info.h"
#include "tools/cli.h"
#include "tools/cli_docs.h"

namespace {

using namespace ferry::cli;

constexpr const char* kSynopsis = "ferry SUBCOMMAND [ARGS] [--flags]";
constexpr const char* kSettingsHelp =
    "settings: a flag on the command line wins over its FERRY_* environment variable (shown with the\n"
    "flag), which wins over the config file (--config FILE or FERRY_CONFIG; else the first of\n"
    "${XDG_CONFIG_HOME:-~/.config}/ferry/ferry.conf and /etc/ferry/ferry.conf that exists), which wins\n"
    "over the default. The file holds `name = value` lines, top-level for every subcommand that takes\n"
    "the setting and under [SUBCOMMAND] for one.\n";

std::string footer() { return std::string("\n") + std::string(exit_codes_help()) + kSettingsHelp; }

std::string version_text() {
  return "ferry " + std::string(ferry::build_info().version) + "\n" + ferry::build_info_lines() + "engine " +
         ferry::agent::describe_engine("auto") + "\n";
}

std::vector<FlagDoc> flag_docs(const CLI::App& app) {
  std::vector<FlagDoc> out;
  for (const CLI::Option* o : app.get_options()) {
    if (o->get_lnames().empty() || o->get_single_name() == "help") continue;
    FlagDoc f;
    f.name = "--" + o->get_lnames()[0];
    if (o->get_lnames().size() > 1) f.alias = "--" + o->get_lnames()[1];
    if (!o->get_snames().empty()) f.alias = "-" + o->get_snames()[0];
    if (o->get_type_size() != 0) f.value = o->get_type_name();
    f.help = o->get_description();
    out.push_back(std::move(f));
  }
  return out;
}

ProgramDoc describe(const CLI::App& app) {
  ProgramDoc doc;
  doc.program = "ferry";
  doc.summary = "replicate model checkpoints to a disaster-recovery site and restore them";
  doc.synopsis = kSynopsis;
  doc.version = std::string(ferry::build_info().version);
  doc.description =
      "ferry packs, verifies and restores checkpoint archives, replicates checkpoints over mutual TLS to a\n"
      "DR receiver (ferry serve) sending only the chunks it lacks, restores snapshots as files or into GPU\n"
      "memory, maintains the receiver's store (scrub, prune) and talks to the running ferry-agent (status,\n"
      "submit, pause, resume).";
  doc.flags = flag_docs(app);
  for (const Command& c : commands()) {
    const CLI::App* sub = find_subcommand(app, c.name);
    doc.commands.push_back({c.name, c.usage, c.summary, flag_docs(*sub)});
  }
  for (const CLI::App* sub : app.get_subcommands({})) {
    bool registered = false;
    for (const Command& c : commands()) registered = registered || sub->get_name() == c.name;
    if (!registered)
      doc.commands.push_back({sub->get_name(), sub->get_name(), sub->get_description(), flag_docs(*sub)});
  }
  std::string env;
  for (const Command& c : commands()) {
    for (const CLI::Option* o : find_subcommand(app, c.name)->get_options()) {
      if (o->get_lnames().empty()) continue;
      if (const char* e = env_variable(c.name, o->get_lnames()[0])) {
        env += std::string("  ") + e + "  " + c.name + " --" + o->get_lnames()[0] + "\n";
      }
    }
  }
  doc.sections.push_back(
      {"ENVIRONMENT", env + "  FERRY_CONFIG  the config file (see FILES)\n\n" + kSettingsHelp});
  doc.sections.push_back(
      {"FILES", "  ~/.config/ferry/ferry.conf, /etc/ferry/ferry.conf  settings (name = value)"});
  doc.sections.push_back({"EXIT STATUS", std::string(exit_codes_help())});
  return doc;
}

void print_overview(FILE* out) {
  std::fprintf(out, "usage: %s\n\n", kSynopsis);
  for (const auto& c : commands()) std::fprintf(out, "  %-10s %s\n", c.name, c.summary);
  std::fprintf(
      out,
      "  %-10s %s\n  %-10s %s\n  %-10s %s\n\n"
      "ferry --version: version, git commit, build options and the codec engine this host would use\n"
      "ferry SUBCOMMAND --help (or ferry help SUBCOMMAND): its arguments and flags\n%s",
      "help", "show a subcommand's arguments and flags", "completion",
      "print a shell completion script (bash)", "man", "print the man page (roff)", footer().c_str());
}

// One line for a CLI11 parse error, naming the subcommand and what was wrong.
int parse_error(const CLI::App& app, const CLI::ParseError& e) {
  std::vector<const CLI::App*> parsed;
  for (const CLI::App* sub : app.get_subcommands()) parsed.push_back(sub);
  std::string what = e.what();
  if (dynamic_cast<const CLI::ExtrasError*>(&e) != nullptr) {
    const auto colon = what.find(": ");
    const std::string extras = colon == std::string::npos ? what : what.substr(colon + 2);
    if (parsed.empty()) return usage_error("unknown subcommand \"" + extras + "\" (see ferry help)");
    const std::string name = parsed[0]->get_name();
    return usage_error(name + ": unknown flag or unexpected argument " + extras + " (see ferry help " + name +
                       ")");
  }
  if (parsed.empty()) return usage_error(what + " (see ferry help)");
  const std::string name = parsed[0]->get_name();
  return usage_error(name + ": " + what + " (see ferry help " + name + ")");
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ferry: replicate model checkpoints to a disaster-recovery site and restore them"};
  app.name("ferry");
  app.footer(footer());
  bool version = false;
  app.add_flag("--version", version, "print the version, git commit, build options and codec engine");
  std::string config_file;
  for (const Command& c : commands()) {
    CLI::App* sub = app.add_subcommand(c.name, c.summary);
    c.define(*sub);
    sub->add_option("--config", config_file, "read settings from FILE (see below)");
    sub->footer(footer());
  }
  std::string topic, shell;
  CLI::App* help = app.add_subcommand("help", "show a subcommand's arguments and flags");
  help->add_option("SUBCOMMAND", topic, "the subcommand");
  CLI::App* completion = app.add_subcommand("completion", "print a shell completion script (bash)");
  completion->add_option("SHELL", shell, "bash")->required();
  CLI::App* man = app.add_subcommand("man", "print the man page (roff) of ferry");
  app.require_subcommand(0, 1);

  if (argc < 2) {
    print_overview(stderr);
    return kExitUsage;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    return parse_error(app, e);
  }
  if (version) {
    std::fputs(version_text().c_str(), stdout);
    return kExitOk;
  }
  if (help->parsed()) {
    if (topic.empty()) {
      print_overview(stdout);
      return kExitOk;
    }
    const CLI::App* sub = find_subcommand(app, topic);
    if (sub == nullptr) return usage_error("help: unknown subcommand \"" + topic + "\" (see ferry help)");
    std::fputs(sub->help("ferry").c_str(), stdout);
    return kExitOk;
  }
  if (completion->parsed()) {
    if (shell != "bash") return usage_error("completion: only bash is supported (got \"" + shell + "\")");
    std::fputs(bash_completion(describe(app)).c_str(), stdout);
    return kExitOk;
  }
  if (man->parsed()) {
    std::fputs(man_page(describe(app)).c_str(), stdout);
    return kExitOk;
  }
  for (const Command& c : commands()) {
    CLI::App* sub = app.get_subcommand(c.name);
    if (!sub->parsed()) continue;
    const std::string file = config_file.empty() ? default_config_file() : config_file;
    if (ferry::Status st = apply_settings(app, *sub, file); !st)
      return usage_error(c.name + (": " + st.message()));
    return c.run(settings().args);
  }
  print_overview(stderr);
  return kExitUsage;
}
