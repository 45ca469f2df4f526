// list_command.cc: `ferry list --from=HOST:PORT [--job=J] [--json]`: the
// snapshots that the DR receiver holds for this host (the namespace its
// certificate names), oldest first, with time, job, step, files and bytes;
// with --job only that job's.
#include <cstdio>
#include <ctime>

#include "replication/restore.h"
#include "store/s3_store.h"
#include "tools/cli.h"
#include "tools/s3_commands.h"

namespace ferry::cli {
namespace {

bool FLAGS_manifests = true;

void define_list(CLI::App& app) {
  app.add_option(
      "--from", settings().from,
      with_env_help(app, "from", "the receiver HOST:PORT, or s3://BUCKET/PREFIX to read a bucket"));
  add_namespace(app, "with --from=s3://...: the namespace (default: this machine's host name)");
  add_s3(app, false);
  add_tls(app);
  app.add_flag("--manifests,!--nomanifests", FLAGS_manifests,
               "fetch each snapshot's manifest to show its job and step (default on)");
  add_job(app, "list only this job's snapshots (reads every manifest)");
  add_json(app, "print one JSON object per snapshot, one line each (docs/OPERATIONS.md)");
}

std::string format_time(std::int64_t unix_seconds) {
  std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%SZ", &tm);
  return buf;
}

int run_list(const std::vector<std::string>&) {
  if (Status st = apply_s3_flags(); !st) return usage_error(st.message());
  if (settings().from.empty()) return usage_error("list needs --from=HOST:PORT or --from=s3://BUCKET/PREFIX");
  if (is_s3_url(settings().from)) return list_bucket();  // straight from the bucket, no receiver
  auto tls = tls_from_flags("list");
  if (!tls) return usage_error(tls.status().message());
  replication::RemoteOptions remote;
  remote.address = settings().from;
  remote.tls = *tls;
  const std::string& job = settings().job;
  auto snaps = replication::list_remote(remote, FLAGS_manifests || !job.empty());
  if (!snaps) return fail(snaps.status());
  std::vector<const replication::RemoteSnapshot*> shown;
  for (const replication::RemoteSnapshot& s : *snaps) {
    if (job.empty() || (s.have_manifest && s.job == job)) shown.push_back(&s);
  }
  if (settings().json) {
    for (const replication::RemoteSnapshot* s : shown) {
      nlohmann::json j = {{"type", "snapshot"},
                          {"snapshot", s->info.name},
                          {"created_unix_seconds", s->info.created_unix_seconds},
                          {"files", s->info.file_count},
                          {"chunks", s->info.chunk_count},
                          {"logical_bytes", s->info.logical_bytes}};
      j["job"] = s->have_manifest ? nlohmann::json(s->job) : nlohmann::json();
      j["step"] = s->have_manifest ? nlohmann::json(s->step) : nlohmann::json();
      if (s->have_manifest) {
        j["host"] = s->host;
        j["source_dir"] = s->origin.source_dir;
        j["kind"] = std::string(snapshot_kind_name(s->origin.kind));
        j["base_snapshot"] = s->origin.base_snapshot;
        j["chain_depth"] = s->origin.chain_depth;
      }
      print_json_line(j);
    }
    return kExitOk;
  }
  if (shown.empty()) {
    std::printf("no snapshots for this host%s at %s\n", job.empty() ? "" : (" of job " + job).c_str(),
                settings().from.c_str());
    return kExitOk;
  }
  std::printf("%-32s %-21s %-20s %10s %7s %8s %12s %-5s %s\n", "SNAPSHOT", "CREATED", "JOB", "STEP", "FILES",
              "CHUNKS", "BYTES", "KIND", "BASE");
  for (const replication::RemoteSnapshot* s : shown) {
    std::string step = s->have_manifest ? std::to_string(s->step) : "-";
    const std::string kind = s->have_manifest ? std::string(snapshot_kind_name(s->origin.kind)) : "-";
    std::printf("%-32s %-21s %-20s %10s %7u %8u %12s %-5s %s\n", s->info.name.c_str(),
                format_time(s->info.created_unix_seconds).c_str(), s->have_manifest ? s->job.c_str() : "-",
                step.c_str(), s->info.file_count, s->info.chunk_count,
                format_bytes(s->info.logical_bytes).c_str(), kind.c_str(),
                s->origin.base_snapshot.empty() ? "-" : s->origin.base_snapshot.c_str());
  }
  return kExitOk;
}

Registrar registrar({"list",
                     "list --from=HOST:PORT --ca=ca.pem --cert=host.pem --key=host.key [--job=J] [--json] "
                     "[--nomanifests]",
                     "list this host's snapshots at a DR receiver", define_list, run_list});

}  // namespace
}  // namespace ferry::cli
