// prune_command.cc: `ferry prune --store=DIR --namespace=NS [--job=J]
// --keep_last=N [--keep_within=DURATION] [--keep_daily=N] [--keep_weekly=N]
// [--keep_monthly=N] [--nogc]`: applies a retention policy to one namespace
// of a receiver's store, each job counted on its own (store/retention.h),
// and then collects the chunks no remaining
// snapshot references. Run by the operator on the receiver's machine, so it
// is allowed even when the receiver serves hosts append-only.
#include <cstdio>
#include <ctime>
#include <set>

#include "store/open_store.h"
#include "store/retention.h"
#include "tools/cli.h"

namespace ferry::cli {
namespace {

std::uint32_t FLAGS_keep_last = 0;
std::uint32_t FLAGS_keep_daily = 0;
std::uint32_t FLAGS_keep_weekly = 0;
std::uint32_t FLAGS_keep_monthly = 0;
std::string FLAGS_keep_within;
bool FLAGS_gc = true;
bool FLAGS_dry_run = false;
std::int64_t FLAGS_gc_grace_s = 3600;
int FLAGS_s3_repack_live_percent = kS3GcRepackLivePercent;

void define_prune(CLI::App& app) {
  add_store(app, "the receiver's store directory");
  add_namespace(app, "the namespace (host) to prune");
  add_s3(app, false);
  add_job(app, "prune only this job's snapshots (default: every job, each counted on its own)");
  app.add_option("--keep_last", FLAGS_keep_last, "keep the newest N snapshots of each job");
  app.add_option("--keep_daily", FLAGS_keep_daily,
                 "keep the newest snapshot of each of the newest N days (UTC)");
  app.add_option("--keep_weekly", FLAGS_keep_weekly,
                 "keep the newest snapshot of each of the newest N weeks");
  app.add_option("--keep_monthly", FLAGS_keep_monthly,
                 "keep the newest snapshot of each of the newest N months");
  app.add_option("--keep_within", FLAGS_keep_within,
                 "also keep snapshots committed within this long, e.g. 36h, 7d, 2w, 90m, 3600s");
  app.add_flag("--gc,!--nogc", FLAGS_gc,
               "afterwards, remove chunks no remaining snapshot references (default on)");
  app.add_flag("--dry_run", FLAGS_dry_run, "say what would be removed, remove nothing");
  app.add_option("--gc_grace_s", FLAGS_gc_grace_s,
                 "gc leaves packs written within this many seconds alone (chunks of a push in flight)")
      ->capture_default_str();
  app.add_option("--s3_repack_live_percent", FLAGS_s3_repack_live_percent,
                 "with s3:// stores: gc rewrites packs whose live chunks are less than this percentage of "
                 "their bytes into new packs (0: it only deletes wholly dead packs)")
      ->capture_default_str();
  add_json(app, "print one JSON object per snapshot decision and one per summary (docs/OPERATIONS.md)");
}

// "90m" -> 5400; plain digits are seconds. -1 on anything else, and on a
// duration too long for int64 seconds.
std::int64_t parse_duration_seconds(const std::string& s) {
  if (s.empty()) return -1;
  std::size_t digits = 0;
  while (digits < s.size() && s[digits] >= '0' && s[digits] <= '9') ++digits;
  if (digits == 0 || digits > 12 || s.size() - digits > 1) return -1;
  const std::int64_t n = std::stoll(s.substr(0, digits));
  const char unit = digits < s.size() ? s[digits] : 's';
  std::int64_t unit_seconds = 0;
  switch (unit) {
    case 's':
      unit_seconds = 1;
      break;
    case 'm':
      unit_seconds = 60;
      break;
    case 'h':
      unit_seconds = 3600;
      break;
    case 'd':
      unit_seconds = 86400;
      break;
    case 'w':
      unit_seconds = 7 * 86400;
      break;
    default:
      return -1;
  }
  std::int64_t seconds = 0;
  if (__builtin_mul_overflow(n, unit_seconds, &seconds)) return -1;
  return seconds;
}

int run_prune(const std::vector<std::string>&) {
  if (Status st = apply_s3_flags(); !st) return usage_error(st.message());
  if (settings().store.empty()) return usage_error("prune needs --store=DIR");
  if (Status st = validate_namespace(settings().ns); !st)
    return usage_error("prune needs --namespace=NS: " + st.message());
  RetentionPolicy policy;
  policy.keep_last = FLAGS_keep_last;
  policy.keep_daily = FLAGS_keep_daily;
  policy.keep_weekly = FLAGS_keep_weekly;
  policy.keep_monthly = FLAGS_keep_monthly;
  policy.job = settings().job;
  if (!FLAGS_keep_within.empty()) {
    policy.keep_within_seconds = parse_duration_seconds(FLAGS_keep_within);
    if (policy.keep_within_seconds <= 0) {
      return usage_error("--keep_within must be a positive duration such as 36h, 7d or 3600s");
    }
  }
  if (policy.empty()) {
    return usage_error(
        "prune needs --keep_last=N, --keep_within=DURATION, --keep_daily=N, --keep_weekly=N or "
        "--keep_monthly=N "
        "(it never removes every snapshot)");
  }
  if (FLAGS_gc_grace_s < 0) return usage_error("--gc_grace_s must be >= 0");
  if (FLAGS_s3_repack_live_percent < 0 || FLAGS_s3_repack_live_percent > 100)
    return usage_error("--s3_repack_live_percent must be from 0 to 100");
  StoreOptions options;
  options.gc_grace_seconds = FLAGS_gc_grace_s;
  options.gc_repack_live_percent = FLAGS_s3_repack_live_percent;
  auto store = open_store(settings().store, options);
  if (!store) return fail(store.status());
  const std::int64_t now_ns = wall_ns();
  const bool json = settings().json;
  if (FLAGS_dry_run) {
    auto list = (*store)->list(settings().ns);
    if (!list) return fail(list.status());
    // The store's own rule (store/retention.h), so the dry run shows what a prune does.
    const PruneReport would = select_retention(*list, policy, now_ns);
    const std::set<std::string> removed(would.removed.begin(), would.removed.end());
    for (const SnapshotInfo& s : *list) {
      const bool gone = removed.count(s.name) != 0;
      if (json) {
        print_json_line({{"type", "snapshot"},
                         {"snapshot", s.name},
                         {"job", s.job},
                         {"action", gone ? "remove" : "keep"},
                         {"dry_run", true}});
      } else {
        std::printf("%s %s\n", gone ? "remove" : "keep  ", s.name.c_str());
      }
    }
    return kExitOk;
  }
  auto report = (*store)->prune(settings().ns, policy, now_ns, Actor::kOperator);
  if (!report) return fail(report.status());
  for (const auto& name : report->removed) {
    if (json) {
      print_json_line({{"type", "snapshot"}, {"snapshot", name}, {"action", "removed"}});
    } else {
      std::printf("removed %s\n", name.c_str());
    }
  }
  if (json) {
    print_json_line({{"type", "prune"},
                     {"namespace", settings().ns},
                     {"job", settings().job},
                     {"kept", report->kept.size()},
                     {"removed", report->removed.size()}});
  } else {
    std::printf("prune %s: kept %zu snapshots, removed %zu\n", settings().ns.c_str(), report->kept.size(),
                report->removed.size());
  }
  if (!FLAGS_gc) return kExitOk;
  auto gc = (*store)->gc(settings().ns, Actor::kOperator);
  // The snapshots are pruned; only the space is not reclaimed yet.
  if (!gc) return fail_with(gc.status(), kExitPartial);
  if (json) {
    print_json_line({{"type", "gc"},
                     {"namespace", settings().ns},
                     {"chunks_removed", gc->chunks_removed},
                     {"chunks_kept", gc->chunks_kept},
                     {"bytes_removed", gc->bytes_removed},
                     {"packs_rewritten", gc->packs_rewritten},
                     {"packs_deleted", gc->packs_deleted}});
    return kExitOk;
  }
  std::printf("gc %s: %llu chunks removed, %llu kept, %s reclaimed (%llu packs rewritten, %llu deleted)\n",
              settings().ns.c_str(), static_cast<unsigned long long>(gc->chunks_removed),
              static_cast<unsigned long long>(gc->chunks_kept), format_bytes(gc->bytes_removed).c_str(),
              static_cast<unsigned long long>(gc->packs_rewritten),
              static_cast<unsigned long long>(gc->packs_deleted));
  return kExitOk;
}

Registrar registrar(
    {"prune",
     "prune --store=DIR --namespace=NS [--job=J] --keep_last=N|--keep_within=DURATION|--keep_daily=N|"
     "--keep_weekly=N|--keep_monthly=N [--nogc] [--dry_run] [--json]",
     "apply retention to a namespace of the receiver's store, then collect garbage", define_prune,
     run_prune});

}  // namespace
}  // namespace ferry::cli
