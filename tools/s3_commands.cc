// s3_commands.cc: see s3_commands.h.
#include "tools/s3_commands.h"

#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <filesystem>

#include "base/clock.h"
#include "base/thread_pool.h"
#include "codec/chunker.h"
#include "replication/sender.h"
#include "store/open_store.h"
#include "store/store_push.h"
#include "tools/cli.h"

namespace ferry::cli {

std::string namespace_or_host() {
  if (!settings().ns.empty()) return settings().ns;
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0) return {};
  return host;
}

int push_to_bucket(const std::string& path, std::int64_t object_lock_days, const DeltaPolicy& delta,
                   const std::string& delta_from, std::uint64_t bwlimit) {
  const std::string ns = namespace_or_host();
  if (Status st = validate_namespace(ns); !st) return usage_error("--namespace: " + st.message());
  if (settings().threads < 0) return usage_error("--threads must be >= 0");
  if (settings().streams < 1 || settings().streams > replication::kMaxPushStreams) {
    return usage_error("--streams must be 1.." + std::to_string(replication::kMaxPushStreams));
  }
  if (Status st = check_chunk_bytes(settings().chunk_size); !st) return fail(st);
  auto sources = pack_sources(path);
  if (!sources) return fail(sources.status());
  StoreOptions store_options;
  // Packs uploading at once, as the agent's --streams sets for s3:// targets.
  store_options.object_uploads = static_cast<std::size_t>(settings().streams);
  if (settings().s3_pack_size != 0) store_options.object_pack_target_bytes = settings().s3_pack_size;
  store_options.object_lock_days = object_lock_days;
  store_options.object_upload_bytes_per_s = bwlimit;
  auto store = open_store(settings().to, store_options);
  if (!store) return fail(store.status());
  ThreadPool pool(static_cast<std::size_t>(settings().threads));
  auto engine = engine_from_flags(pool, settings().zstd_level);
  if (!engine) return fail(engine.status());
  const std::int64_t now = wall_ns();
  replication::PushOptions naming;
  naming.job = settings().job;
  naming.step = settings().step;
  naming.source_name = std::filesystem::absolute(path).lexically_normal().filename().string();
  if (naming.source_name.empty()) {
    naming.source_name = std::filesystem::absolute(path).lexically_normal().parent_path().filename().string();
  }
  const std::string snapshot =
      settings().name.empty() ? replication::default_snapshot_name(naming, now) : settings().name;
  PackOptions pack;
  pack.chunk_bytes = settings().chunk_size;
  pack.zstd_level = settings().zstd_level;
  pack.pool = &pool;
  pack.engine = engine->get();
  pack.job = settings().job;
  pack.step = settings().step;
  pack.created_ns = now;
  if (std::filesystem::is_directory(path)) {
    ChainQuery query;
    query.job = settings().job;
    query.source_dir = std::filesystem::absolute(path).lexically_normal();
    query.delta_from = delta_from.empty() ? "" : std::filesystem::absolute(delta_from).lexically_normal();
    DeltaChoice choice = choose_store_delta_base(**store, ns, delta, query);
    pack.delta_from = choice.base_dir;
    pack.origin = choice.origin;
    std::fprintf(stderr, "%s\n", choice.reason.c_str());
  }
  ProgressLine progress("push");
  pack.progress = [&](const PackProgress& p) {
    progress.update(p.logical_done, p.logical_total, p.frame_bytes);
  };
  auto r = push_to_store(**store, ns, *sources, pack, snapshot);
  progress.finish();
  if (!r) return fail(r.status());
  std::printf(
      "pushed %s to %s namespace %s: %llu files, %s logical, %s stored, %llu of %llu chunks already there, "
      "%.2f s\n",
      r->snapshot.c_str(), settings().to.c_str(), ns.c_str(), static_cast<unsigned long long>(r->files),
      format_bytes(r->logical_bytes).c_str(), format_bytes(r->frame_bytes_stored).c_str(),
      static_cast<unsigned long long>(r->chunks_skipped), static_cast<unsigned long long>(r->chunks_total),
      r->seconds);
  std::printf(
      "push-report snapshot=%s target=%s namespace=%s files=%llu logical_bytes=%llu frame_bytes_stored=%llu "
      "chunks=%llu chunks_skipped=%llu kind=%s base=%s delta_chunks=%llu delta_logical_bytes=%llu "
      "delta_frame_bytes=%llu seconds=%.3f\n",
      r->snapshot.c_str(), settings().to.c_str(), ns.c_str(), static_cast<unsigned long long>(r->files),
      static_cast<unsigned long long>(r->logical_bytes),
      static_cast<unsigned long long>(r->frame_bytes_stored),
      static_cast<unsigned long long>(r->chunks_total), static_cast<unsigned long long>(r->chunks_skipped),
      std::string(snapshot_kind_name(r->origin.kind)).c_str(),
      r->origin.base_snapshot.empty() ? "-" : r->origin.base_snapshot.c_str(),
      static_cast<unsigned long long>(r->delta_chunks),
      static_cast<unsigned long long>(r->delta_logical_bytes),
      static_cast<unsigned long long>(r->delta_frame_bytes), r->seconds);
  return kExitOk;
}

int list_bucket() {
  const std::string ns = namespace_or_host();
  if (Status st = validate_namespace(ns); !st) return usage_error("--namespace: " + st.message());
  auto store = open_store(settings().from);
  if (!store) return fail(store.status());
  auto snaps = (*store)->list(ns);
  if (!snaps) return fail(snaps.status());
  if (snaps->empty()) {
    std::printf("no snapshots for namespace %s at %s\n", ns.c_str(), settings().from.c_str());
    return kExitOk;
  }
  std::printf("%-32s %-21s %-20s %10s %7s %8s %12s %-5s %s\n", "SNAPSHOT", "CREATED", "JOB", "STEP", "FILES",
              "CHUNKS", "BYTES", "KIND", "BASE");
  for (const SnapshotInfo& s : *snaps) {
    std::time_t t = static_cast<std::time_t>(s.created_ns / 1'000'000'000);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char created[32];
    std::strftime(created, sizeof created, "%Y-%m-%d %H:%M:%SZ", &tm);
    std::printf("%-32s %-21s %-20s %10llu %7llu %8llu %12s %-5s %s\n", s.name.c_str(), created, s.job.c_str(),
                static_cast<unsigned long long>(s.step), static_cast<unsigned long long>(s.files),
                static_cast<unsigned long long>(s.chunks), format_bytes(s.logical_bytes).c_str(),
                std::string(snapshot_kind_name(s.origin.kind)).c_str(),
                s.origin.base_snapshot.empty() ? "-" : s.origin.base_snapshot.c_str());
  }
  return kExitOk;
}

}  // namespace ferry::cli
