// restore_command.cc: `ferry restore SNAPSHOT --from=HOST:PORT --to=DIR`:
// fetches one of this host's snapshots from the DR receiver over parallel
// streams, verifies every chunk and file and writes each file atomically.
#include <cstdio>

#include "codec/thread_pool.h"
#include "replication/restore.h"
#include "tools/cli.h"

DEFINE_bool(verify_only, false, "restore: fetch and verify every chunk, write nothing");

namespace ferry::cli {
namespace {

int run_restore(const std::vector<std::string>& args) {
  if (args.size() != 1) return usage_error("restore needs exactly one SNAPSHOT");
  if (FLAGS_from.empty()) return usage_error("restore needs --from=HOST:PORT");
  if (FLAGS_to.empty() && !FLAGS_verify_only) return usage_error("restore needs --to=DIR");
  auto tls = tls_from_flags("restore");
  if (!tls) return usage_error(tls.status().message());
  if (FLAGS_streams <= 0 || static_cast<std::size_t>(FLAGS_streams) > replication::kMaxRestoreStreams) {
    return usage_error("--streams must be 1.." + std::to_string(replication::kMaxRestoreStreams));
  }
  if (FLAGS_threads < 0) return usage_error("--threads must be >= 0");

  replication::RemoteOptions remote;
  remote.address = FLAGS_from;
  remote.tls = *tls;
  ThreadPool pool(static_cast<std::size_t>(FLAGS_threads));
  ProgressLine progress(FLAGS_verify_only ? "verify" : "restore");
  replication::RestoreOptions options;
  options.streams = static_cast<std::size_t>(FLAGS_streams);
  options.pool = &pool;
  options.verify_only = FLAGS_verify_only;
  if (FLAGS_progress) {
    options.progress = [&](const UnpackProgress& p) { progress.update(p.logical_done, p.logical_total, p.frame_bytes); };
  }
  auto report = replication::restore_snapshot(remote, args[0], FLAGS_to, options);
  progress.finish();
  if (!report) return fail(report.status());
  const double s = report->seconds;
  std::printf("%s %s: %zu files, %s (%s on the wire, %.2fx) from %s%s%s in %.2f s (%.3f GB/s, %zu streams)\n",
              FLAGS_verify_only ? "verified" : "restored", args[0].c_str(), report->files,
              format_bytes(report->logical_bytes).c_str(), format_bytes(report->wire_bytes_in).c_str(),
              report->wire_bytes_in ? static_cast<double>(report->logical_bytes) / report->wire_bytes_in : 0.0,
              FLAGS_from.c_str(), FLAGS_verify_only ? "" : " into ", FLAGS_verify_only ? "" : FLAGS_to.c_str(), s,
              s > 0 ? static_cast<double>(report->logical_bytes) / s / 1e9 : 0.0, options.streams);
  return kExitOk;
}

Registrar registrar({"restore",
                     "restore SNAPSHOT --from=HOST:PORT --to=DIR --ca=ca.pem --cert=host.pem --key=host.key "
                     "[--streams=4] [--verify_only]",
                     "fetch a snapshot from a DR receiver, verified, written atomically", run_restore});

}  // namespace
}  // namespace ferry::cli
