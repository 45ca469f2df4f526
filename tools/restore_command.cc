// restore_command.cc: `ferry restore`: brings a snapshot back, from a local
// .ferry archive, a receiver's local store (--store, --namespace) or the DR
// receiver (--from, over parallel mTLS streams), either as files (--to=DIR:
// every chunk and file verified, each file written atomically) or straight
// into GPU memory (--to=cuda:N: compressed frames cross PCIe and the GPU
// decodes and verifies them; replication/device_restore.h). Memory restored
// by this command is freed when it exits, so --to=cuda:N proves and times a
// restore; programs keep the tensors through the C++ API or ferry.load.
#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "base/thread_pool.h"
#include "replication/device_restore.h"
#include "replication/frame_sources.h"
#include "replication/restore.h"
#include "store/s3_store.h"
#include "tools/cli.h"
#include "tools/s3_commands.h"

namespace ferry::cli {
namespace {

bool FLAGS_verify_only = false;

void define_restore(CLI::App& app) {
  add_args(app, "SNAPSHOT|FILE.ferry", "the snapshot (with --from or --store) or a .ferry archive", 1);
  app.add_option("--to", settings().to, "the directory to write, or cuda:N for GPU memory");
  app.add_option("--from", settings().from,
                 with_env_help(app, "from", "the receiver HOST:PORT to read from, or s3://BUCKET/PREFIX"));
  add_tls(app);
  add_store(app, "a receiver's store directory to read from (with --namespace)");
  add_namespace(app, "the namespace (host) in --store (or s3://; default there: this machine's host name)");
  add_s3(app, false);
  add_streams(app);
  add_engine(app);
  app.add_flag("--verify_only", FLAGS_verify_only, "fetch and verify every chunk, write nothing");
  add_json(app, "print the result as one JSON object, and JSON progress lines (docs/OPERATIONS.md)");
  add_exact_modes(app);
  add_threads(app);
  add_progress(app);
}

// --to=cuda or --to=cuda:N names a device; anything else is a directory.
bool names_device(const std::string& to) { return to == "cuda" || to.starts_with("cuda:"); }

// The snapshot's location from the argument and --from / --store.
Result<std::string> location_from_flags(const std::string& arg) {
  // FERRY_TARGET (or the config file) names the usual receiver; it yields
  // to a source the command line names: --store, or an archive file.
  std::error_code ec;
  if (!settings().from.empty() && setting_origin("from") != "command line" &&
      (!settings().store.empty() || std::filesystem::is_regular_file(arg, ec))) {
    settings().from.clear();
  }
  if (!settings().from.empty() && !settings().store.empty()) {
    return Status::invalid_argument("restore takes --from=HOST:PORT or --store=DIR, not both");
  }
  if (is_s3_url(settings().from)) {  // straight from the bucket, no receiver
    return std::string(replication::kStoreLocationPrefix) + settings().from + "/" + namespace_or_host() +
           "/" + arg;
  }
  if (!settings().from.empty())
    return std::string(replication::kRemoteLocationPrefix) + settings().from + "/" + arg;
  if (!settings().store.empty()) {
    if (settings().ns.empty()) return Status::invalid_argument("restore --store=DIR needs --namespace=NS");
    return std::string(replication::kStoreLocationPrefix) + settings().store + "/" + settings().ns + "/" +
           arg;
  }
  return arg;
}

// The result line of --json.
void print_result_json(const std::string& snapshot, std::size_t files, std::uint64_t logical_bytes,
                       std::uint64_t frame_bytes, double seconds, const std::string& into) {
  print_json_line({{"type", "restore"},
                   {"snapshot", snapshot},
                   {"verify_only", FLAGS_verify_only},
                   {"to", into},
                   {"files", files},
                   {"logical_bytes", logical_bytes},
                   {"frame_bytes", frame_bytes},
                   {"seconds", seconds}});
}

// After a failed restore into `dir`: how many of the manifest's files are
// there whole (the unpacker renames a file into place only once verified).
std::size_t files_restored(const Manifest& m, const std::string& dir) {
  std::size_t n = 0;
  for (const ManifestFile& f : m.files) {
    std::error_code ec;
    const std::filesystem::path p = std::filesystem::path(dir) / f.path;
    if (std::filesystem::is_regular_file(p, ec) && std::filesystem::file_size(p, ec) == f.size && !ec) ++n;
  }
  return n;
}

// A failed restore into files: corruption stays corruption (exit 4); any
// other failure after some files were restored is a partial result (exit 5)
// that says how many.
int fail_restore(const Status& st, const Manifest& m) {
  if (st.code() == Code::kCorruption || FLAGS_verify_only) return fail(st);
  const std::size_t done = files_restored(m, settings().to);
  if (done == 0) return fail(st);
  return fail_with(st.with_context(std::to_string(done) + " of " + std::to_string(m.files.size()) +
                                   " files restored into " + settings().to),
                   kExitPartial);
}

void print_progress_to(ProgressLine& line, UnpackProgress p) {
  line.update(p.logical_done, p.logical_total, p.frame_bytes);
}

// From the DR receiver into files: the wire figures come with the report.
int restore_remote_files(const std::string& snapshot, const replication::TlsConfig& tls, ThreadPool& pool) {
  replication::RemoteOptions remote;
  remote.address = settings().from;
  remote.tls = tls;
  ProgressLine progress(FLAGS_verify_only ? "verify" : "restore");
  replication::RestoreOptions options;
  options.streams = static_cast<std::size_t>(settings().streams);
  options.pool = &pool;
  options.verify_only = FLAGS_verify_only;
  options.exact_modes = settings().exact_modes;
  options.progress = [&](const UnpackProgress& p) { print_progress_to(progress, p); };
  auto report = replication::restore_snapshot(remote, snapshot, settings().to, options);
  progress.finish();
  if (!report) return fail(report.status());
  const double s = report->seconds;
  if (settings().json) {
    print_result_json(snapshot, report->files, report->logical_bytes, report->frame_bytes, s,
                      FLAGS_verify_only ? "" : settings().to);
    return kExitOk;
  }
  std::printf(
      "%s %s: %zu files, %s (%s on the wire, %.2fx) from %s%s%s in %.2f s (%.3f GB/s, %zu streams)\n",
      FLAGS_verify_only ? "verified" : "restored", snapshot.c_str(), report->files,
      format_bytes(report->logical_bytes).c_str(), format_bytes(report->wire_bytes_in).c_str(),
      report->wire_bytes_in ? static_cast<double>(report->logical_bytes) / report->wire_bytes_in : 0.0,
      settings().from.c_str(), FLAGS_verify_only ? "" : " into ",
      FLAGS_verify_only ? "" : settings().to.c_str(), s,
      s > 0 ? static_cast<double>(report->logical_bytes) / s / 1e9 : 0.0, options.streams);
  return kExitOk;
}

// An archive or a local store into files.
int restore_local_files(const FrameSource& source, const std::string& what, ThreadPool& pool) {
  const double start = mono_seconds();
  ProgressLine progress(FLAGS_verify_only ? "verify" : "restore");
  UnpackOptions options;
  options.pool = &pool;
  // A remote source serves chunks within its window of the first not taken.
  options.window_chunks = std::min<std::size_t>(2 * pool.size(), replication::kSourceWindowChunks);
  options.progress = [&](const UnpackProgress& p) { print_progress_to(progress, p); };
  options.exact_modes = settings().exact_modes;
  Status st =
      FLAGS_verify_only ? verify_frames(source, options) : unpack_frames(source, settings().to, options);
  progress.finish();
  const Manifest& m = source.manifest();
  if (!st) return fail_restore(st, m);
  const double s = mono_seconds() - start;
  if (settings().json) {
    std::uint64_t frames = 0;
    for (const ManifestFile& f : m.files)
      for (const ManifestChunk& c : f.chunks) frames += c.frame_bytes;
    print_result_json(what, m.files.size(), m.logical_bytes(), frames, s,
                      FLAGS_verify_only ? "" : settings().to);
    return kExitOk;
  }
  std::printf("%s %s: %zu files, %s%s%s in %.2f s (%.3f GB/s)\n", FLAGS_verify_only ? "verified" : "restored",
              what.c_str(), m.files.size(), format_bytes(m.logical_bytes()).c_str(),
              FLAGS_verify_only ? "" : " into ", FLAGS_verify_only ? "" : settings().to.c_str(), s,
              s > 0 ? static_cast<double>(m.logical_bytes()) / s / 1e9 : 0.0);
  return kExitOk;
}

int restore_device(const FrameSource& source, const std::string& what, replication::Device device,
                   ThreadPool& pool) {
  auto engine = parse_engine_choice(settings().engine);
  if (!engine) return usage_error("--engine: " + engine.status().message());
  ProgressLine progress("restore");
  replication::DeviceRestoreOptions options;
  options.device = device;
  options.pool = &pool;
  options.engine = *engine;
  options.progress = [&](const UnpackProgress& p) { print_progress_to(progress, p); };
  auto r = replication::restore_to_device(source, options);
  progress.finish();
  if (!r) return fail(r.status());
  const replication::DeviceRestoreReport& rep = r->report;
  const double s = rep.seconds;
  if (settings().json) {
    print_result_json(what, r->files.size() + rep.tensors, rep.logical_bytes, rep.frame_bytes, s,
                      replication::device_name(device));
    return kExitOk;
  }
  std::printf(
      "restored %s onto %s: %llu tensors, %llu other files (host), %s from %s of frames (%.2fx) "
      "in %.2f s (%.3f GB/s), every chunk verified; engine: %s\n",
      what.c_str(), replication::device_name(device).c_str(), static_cast<unsigned long long>(rep.tensors),
      static_cast<unsigned long long>(r->files.size()), format_bytes(rep.logical_bytes).c_str(),
      format_bytes(rep.frame_bytes).c_str(),
      rep.frame_bytes ? static_cast<double>(rep.logical_bytes) / rep.frame_bytes : 0.0, s,
      s > 0 ? static_cast<double>(rep.logical_bytes) / s / 1e9 : 0.0, rep.engine.c_str());
  return kExitOk;
}

int run_restore(const std::vector<std::string>& args) {
  if (Status st = apply_s3_flags(); !st) return usage_error(st.message());
  if (args.size() != 1) return usage_error("restore needs exactly one SNAPSHOT or FILE.ferry");
  if (settings().to.empty() && !FLAGS_verify_only)
    return usage_error("restore needs --to=DIR or --to=cuda:N");
  if (settings().streams <= 0 ||
      static_cast<std::size_t>(settings().streams) > replication::kMaxRestoreStreams) {
    return usage_error("--streams must be 1.." + std::to_string(replication::kMaxRestoreStreams));
  }
  if (settings().threads < 0) return usage_error("--threads must be >= 0");
  auto location = location_from_flags(args[0]);
  if (!location) return usage_error(location.status().message());
  auto parsed = replication::parse_source_location(*location);
  if (!parsed) return usage_error(parsed.status().message());
  const bool remote = parsed->kind == replication::SourceLocation::Kind::kRemote;
  replication::SourceOptions source_options;
  source_options.streams = static_cast<std::size_t>(settings().streams);
  if (remote) {
    auto tls = tls_from_flags("restore");
    if (!tls) return usage_error(tls.status().message());
    source_options.tls = *tls;
  }
  ThreadPool pool(static_cast<std::size_t>(settings().threads));
  const bool to_device = names_device(settings().to);
  if (remote && !to_device && !settings().from.empty()) {
    return restore_remote_files(parsed->snapshot, source_options.tls, pool);
  }
  auto source = replication::open_frame_source(*location, source_options);
  if (!source) return fail(source.status());
  if (!to_device) return restore_local_files(**source, args[0], pool);
  if (FLAGS_verify_only) return usage_error("--verify_only restores no memory: leave out --to=cuda:N");
  auto device = replication::parse_device(settings().to);
  if (!device) return usage_error(device.status().message());
  return restore_device(**source, args[0], *device, pool);
}

Registrar registrar(
    {"restore",
     "restore SNAPSHOT|FILE.ferry --to=DIR|cuda:N [--from=HOST:PORT --ca=ca.pem --cert=host.pem "
     "--key=host.key | --store=DIR --namespace=NS] [--streams=4] [--engine=auto|cpu|gpu] "
     "[--verify_only]",
     "bring a snapshot back as files or into GPU memory, every chunk verified", define_restore, run_restore});

}  // namespace
}  // namespace ferry::cli
