// push_command.cc: `ferry push FILE|DIR --to=HOST:PORT[,HOST:PORT]`: sends a
// checkpoint to a DR receiver (replication/sender.h) over mutually
// authenticated TLS, only the chunks the receiver lacks, and commits it as
// one snapshot. Prints a progress line while it runs and one report line per
// target that committed; the last line is also machine-readable
// ("key=value" pairs) for scripts.
#include <cstdio>
#include <filesystem>
#include <sstream>

#include "base/thread_pool.h"
#include "codec/chunker.h"
#include "codec/packer.h"
#include "replication/sender.h"
#include "store/s3_store.h"
#include "tools/cli.h"
#include "tools/s3_commands.h"

namespace ferry::cli {
namespace {

std::uint64_t FLAGS_bwlimit = 0;
std::uint64_t FLAGS_window_mb = replication::kDefaultStreamWindowBytes >> 20;
int FLAGS_retries = 8;
bool FLAGS_fan_out = false;
std::int64_t FLAGS_s3_object_lock_days = 0;
std::string FLAGS_delta_from;
std::string FLAGS_delta = std::string(delta_mode_name(DeltaPolicy{}.mode));
std::uint32_t FLAGS_key_every = kDefaultKeyEvery;
double FLAGS_delta_min_gain = kDefaultDeltaMinGain;

void define_push(CLI::App& app) {
  add_args(app, "FILE|DIR", "the checkpoint file or directory", 1);
  app.add_option(
      "--to", settings().to,
      with_env_help(app, "to",
                    "the receivers HOST:PORT[,HOST:PORT...], in failover order, or s3://BUCKET/PREFIX "
                    "to write a bucket directly"));
  add_namespace(app, "with --to=s3://...: the namespace (default: this machine's host name)");
  add_s3(app, true);
  app.add_option(
      "--s3_object_lock_days", FLAGS_s3_object_lock_days,
      "with --to=s3://...: retain every object written for N days with S3 Object Lock (COMPLIANCE; "
      "the bucket must have been made with Object Lock)");
  add_tls(app);
  add_streams(app);
  app.add_option("--name", settings().name,
                 "snapshot name (default: <job or directory name>-<step or UTC time>)");
  add_job(app, "training job name recorded in the manifest and the snapshot name");
  add_chunking(app);
  app.add_option("--bwlimit", FLAGS_bwlimit,
                 "bandwidth cap in bytes per second over all streams, or over the uploads into an s3:// "
                 "store (0: none)");
  app.add_option("--window_mb", FLAGS_window_mb,
                 "MiB of unacknowledged data in flight per stream (size it to bandwidth x RTT / streams)")
      ->capture_default_str();
  app.add_option("--retries", FLAGS_retries, "connection attempts after a break before a target is given up")
      ->capture_default_str();
  app.add_flag("--fan_out", FLAGS_fan_out,
               "send the snapshot to every target in --to, not only the first that works");
  app.add_option("--delta_from", FLAGS_delta_from,
                 "an earlier checkpoint directory of the same job, still on this host, whose snapshot the "
                 "target holds: chunks go as delta frames against it where smaller (docs/FORMAT.md 3.1)");
  app.add_option("--delta", FLAGS_delta,
                 "without --delta_from, the delta base found at the target: key (the job's newest key "
                 "snapshot whose directory is still on this host; a restore reads at most two frames per "
                 "chunk), previous (the newest such snapshot; chains up to 7 deep) or off")
      ->capture_default_str();
  app.add_option("--key_every", FLAGS_key_every,
                 "push a key (full) snapshot every N snapshots of the job (1: always)")
      ->capture_default_str();
  app.add_option(
         "--delta_min_gain", FLAGS_delta_min_gain,
         "push a key snapshot when the newest delta snapshot saved less than this fraction of its key "
         "snapshot's frame bytes")
      ->capture_default_str();
  add_engine(app);
  add_threads(app);
  add_progress(app);
  add_json(app,
           "print one JSON object per target that committed, and JSON progress lines (docs/OPERATIONS.md)");
}

Result<DeltaPolicy> delta_policy_from_flags() {
  DeltaPolicy p;
  ASSIGN_OR_RETURN(p.mode, parse_delta_mode(FLAGS_delta));
  p.key_every = FLAGS_key_every;
  p.min_gain = FLAGS_delta_min_gain;
  RETURN_IF_ERROR(validate_delta_policy(p));
  if (p.mode == DeltaMode::kOff && !FLAGS_delta_from.empty())
    return Status::invalid_argument("--delta=off and --delta_from contradict each other");
  return p;
}

std::vector<std::string> split_targets(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

double ratio(std::uint64_t a, std::uint64_t b) {
  return b ? static_cast<double>(a) / static_cast<double>(b) : 0.0;
}

void print_report_json(const replication::PushReport& r) {
  print_json_line({{"type", "push"},
                   {"snapshot", r.snapshot},
                   {"target", r.target},
                   {"files", r.files},
                   {"logical_bytes", r.logical_bytes},
                   {"frame_bytes_sent", r.frame_bytes_sent},
                   {"wire_bytes", r.wire_bytes_sent},
                   {"chunks", r.chunks_total},
                   {"chunks_skipped", r.chunks_skipped},
                   {"delta_chunks", r.delta_chunks},
                   {"delta_logical_bytes", r.delta_logical_bytes},
                   {"delta_frame_bytes", r.delta_frame_bytes},
                   {"kind", std::string(snapshot_kind_name(r.origin.kind))},
                   {"base_snapshot", r.origin.base_snapshot},
                   {"chain_depth", r.origin.chain_depth},
                   {"delta_reason", r.delta_reason},
                   {"retries", r.retries},
                   {"failovers", r.failovers},
                   {"seconds", r.seconds},
                   {"frame_memory_bytes", r.frame_memory_bytes}});
}

void print_report(const replication::PushReport& r) {
  const double gbps = r.seconds > 0 ? static_cast<double>(r.logical_bytes) / r.seconds / 1e9 : 0.0;
  if (!r.delta_reason.empty()) std::printf("%s: %s\n", r.snapshot.c_str(), r.delta_reason.c_str());
  std::printf(
      "pushed %s to %s: %llu files, %s logical, %s on the wire (ratio %.3f), %llu of %llu chunks "
      "already there, %llu retries, %.2f s, %.3f GB/s\n",
      r.snapshot.c_str(), r.target.c_str(), static_cast<unsigned long long>(r.files),
      format_bytes(r.logical_bytes).c_str(), format_bytes(r.wire_bytes_sent).c_str(),
      ratio(r.logical_bytes, r.wire_bytes_sent), static_cast<unsigned long long>(r.chunks_skipped),
      static_cast<unsigned long long>(r.chunks_total), static_cast<unsigned long long>(r.retries), r.seconds,
      gbps);
  std::printf(
      "push-report snapshot=%s target=%s files=%llu logical_bytes=%llu frame_bytes_sent=%llu "
      "wire_bytes=%llu chunks=%llu chunks_skipped=%llu delta_chunks=%llu retries=%llu failovers=%llu "
      "seconds=%.3f frame_memory_bytes=%llu kind=%s base=%s chain_depth=%u delta_logical_bytes=%llu "
      "delta_frame_bytes=%llu\n",
      r.snapshot.c_str(), r.target.c_str(), static_cast<unsigned long long>(r.files),
      static_cast<unsigned long long>(r.logical_bytes), static_cast<unsigned long long>(r.frame_bytes_sent),
      static_cast<unsigned long long>(r.wire_bytes_sent), static_cast<unsigned long long>(r.chunks_total),
      static_cast<unsigned long long>(r.chunks_skipped), static_cast<unsigned long long>(r.delta_chunks),
      static_cast<unsigned long long>(r.retries), static_cast<unsigned long long>(r.failovers), r.seconds,
      static_cast<unsigned long long>(r.frame_memory_bytes),
      std::string(snapshot_kind_name(r.origin.kind)).c_str(),
      r.origin.base_snapshot.empty() ? "-" : r.origin.base_snapshot.c_str(), unsigned{r.origin.chain_depth},
      static_cast<unsigned long long>(r.delta_logical_bytes),
      static_cast<unsigned long long>(r.delta_frame_bytes));
}

int run_push(const std::vector<std::string>& args) {
  if (Status st = apply_s3_flags(); !st) return usage_error(st.message());
  if (args.size() != 1)
    return usage_error("push needs exactly one FILE or DIR (got " + std::to_string(args.size()) + ")");
  if (FLAGS_s3_object_lock_days != 0 && !is_s3_url(settings().to))
    return usage_error("--s3_object_lock_days needs --to=s3://BUCKET/PREFIX");
  auto delta = delta_policy_from_flags();
  if (!delta) return usage_error(delta.status().message());
  if (!FLAGS_delta_from.empty()) {
    if (!std::filesystem::is_directory(FLAGS_delta_from))
      return usage_error("--delta_from=" + FLAGS_delta_from + " is not a directory");
    if (!std::filesystem::is_directory(args[0]))
      return usage_error("--delta_from needs a checkpoint directory to push, not a file");
  }
  if (is_s3_url(settings().to))  // straight into the bucket, no receiver
    return push_to_bucket(args[0], FLAGS_s3_object_lock_days, *delta, FLAGS_delta_from, FLAGS_bwlimit);
  auto targets = split_targets(settings().to);
  if (targets.empty()) return usage_error("push needs --to=HOST:PORT[,HOST:PORT...]");
  auto tls = tls_from_flags("push");
  if (!tls) return usage_error(tls.status().message());
  if (settings().streams < 1 || settings().streams > replication::kMaxPushStreams) {
    return usage_error("--streams must be 1.." + std::to_string(replication::kMaxPushStreams));
  }
  if (settings().threads < 0) return usage_error("--threads must be >= 0");
  if (FLAGS_window_mb < 1) return usage_error("--window_mb must be >= 1");
  if (Status st = check_chunk_bytes(settings().chunk_size); !st) return fail(st);

  auto sources = pack_sources(args[0]);
  if (!sources) return fail(sources.status());

  ThreadPool pool(static_cast<std::size_t>(settings().threads));
  replication::PushOptions opts;
  opts.targets = targets;
  opts.tls = *tls;
  opts.streams = settings().streams;
  opts.snapshot = settings().name;
  opts.source_name = std::filesystem::absolute(args[0]).lexically_normal().filename().string();
  if (opts.source_name.empty()) {
    opts.source_name =
        std::filesystem::absolute(args[0]).lexically_normal().parent_path().filename().string();
  }
  opts.job = settings().job;
  opts.step = settings().step;
  opts.chunk_bytes = settings().chunk_size;
  opts.zstd_level = settings().zstd_level;
  opts.pool = &pool;
  opts.delta = *delta;
  if (!FLAGS_delta_from.empty())
    opts.delta_from = std::filesystem::absolute(FLAGS_delta_from).lexically_normal();
  // A directory records where it came from, the key to later pushes' bases.
  if (std::filesystem::is_directory(args[0]))
    opts.source_dir = std::filesystem::absolute(args[0]).lexically_normal();
  auto engine = engine_from_flags(pool, settings().zstd_level);
  if (!engine) return fail(engine.status());
  opts.engine = engine->get();
  opts.stream_window_bytes = FLAGS_window_mb << 20;
  opts.bandwidth_bytes_per_s = FLAGS_bwlimit;
  opts.retry.max_attempts = FLAGS_retries;
  opts.fan_out = FLAGS_fan_out;
  ProgressLine progress("push");
  opts.progress = [&](const replication::PushProgress& p) {
    progress.update(p.logical_done, p.logical_total, p.frame_bytes_acked);
  };
  auto reports = replication::push(*sources, opts);
  progress.finish();
  if (!reports) return fail(reports.status());
  for (const auto& r : *reports) settings().json ? print_report_json(r) : print_report(r);
  return kExitOk;
}

Registrar registrar(
    {"push",
     "push FILE|DIR --to=HOST:PORT[,HOST:PORT] --ca=CA.pem --cert=HOST.pem --key=HOST.key "
     "[--streams=4] [--name=SNAPSHOT] [--job=J] [--step=N] [--bwlimit=BYTES_PER_S] "
     "[--chunk_size=N] [--window_mb=32] [--fan_out] [--delta=key|previous|off] [--key_every=10] "
     "[--delta_min_gain=0.05] [--delta_from=EARLIER_DIR] [--engine=auto|cpu|gpu]",
     "send a checkpoint to a DR receiver (only missing chunks) and commit it as a snapshot", define_push,
     run_push});

}  // namespace
}  // namespace ferry::cli
