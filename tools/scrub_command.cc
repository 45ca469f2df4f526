// scrub_command.cc: `ferry scrub --store=DIR [--namespace=NS]`: re-reads and
// fully verifies every chunk of a receiver's store, checks every snapshot's
// manifest and chunks, and names each bad chunk with the snapshots it
// affects. Exit 0 when everything verifies, 4 (corruption) when anything is
// damaged.
#include <cstdio>

#include "store/open_store.h"
#include "tools/cli.h"

namespace ferry::cli {
namespace {

void define_scrub(CLI::App& app) {
  add_store(app, "the receiver's store directory");
  add_namespace(app, "the namespace (host) to scrub (default: every one)");
  add_s3(app, false);
  add_json(app, "print one JSON object per bad chunk, broken snapshot and the summary (docs/OPERATIONS.md)");
}

int print_json(const ScrubReport& report, double seconds) {
  for (const auto& bad : report.bad_chunks) {
    print_json_line({{"type", "bad_chunk"},
                     {"namespace", bad.ns},
                     {"chunk", to_hex(bad.id)},
                     {"where", bad.where},
                     {"error", bad.error},
                     {"snapshots", bad.snapshots}});
  }
  for (const auto& broken : report.broken_snapshots) {
    print_json_line({{"type", "broken_snapshot"},
                     {"namespace", broken.ns},
                     {"snapshot", broken.name},
                     {"error", broken.error}});
  }
  print_json_line({{"type", "scrub"},
                   {"store", settings().store},
                   {"clean", report.clean()},
                   {"namespaces", report.namespaces},
                   {"chunks_checked", report.chunks_checked},
                   {"bytes_checked", report.bytes_checked},
                   {"snapshots_checked", report.snapshots_checked},
                   {"bad_chunks", report.bad_chunks.size()},
                   {"broken_snapshots", report.broken_snapshots.size()},
                   {"seconds", seconds}});
  return report.clean() ? kExitOk : kExitCorruption;
}

int run_scrub(const std::vector<std::string>&) {
  if (Status st = apply_s3_flags(); !st) return usage_error(st.message());
  if (settings().store.empty()) return usage_error("scrub needs --store=DIR");
  if (!settings().ns.empty()) {
    if (Status st = validate_namespace(settings().ns); !st) return usage_error(st.message());
  }
  auto store = open_store(settings().store);
  if (!store) return fail(store.status());
  const double start = mono_seconds();
  auto report = (*store)->scrub(settings().ns);
  if (!report) return fail(report.status());
  const double seconds = mono_seconds() - start;
  if (settings().json) return print_json(*report, seconds);
  for (const auto& bad : report->bad_chunks) {
    std::string snapshots;
    for (const auto& s : bad.snapshots) snapshots += (snapshots.empty() ? "" : ", ") + s;
    std::printf("BAD chunk %s in namespace %s at %s: %s; affects snapshots: %s\n", to_hex(bad.id).c_str(),
                bad.ns.c_str(), bad.where.c_str(), bad.error.c_str(),
                snapshots.empty() ? "none" : snapshots.c_str());
  }
  for (const auto& broken : report->broken_snapshots) {
    std::printf("BROKEN snapshot %s/%s: %s\n", broken.ns.c_str(), broken.name.c_str(), broken.error.c_str());
  }
  std::printf(
      "%s %s: %llu namespaces, %llu chunks (%s) verified, %llu snapshots checked in %.2f s: %zu bad chunks, "
      "%zu broken snapshots\n",
      report->clean() ? "OK" : "DAMAGED", settings().store.c_str(),
      static_cast<unsigned long long>(report->namespaces),
      static_cast<unsigned long long>(report->chunks_checked), format_bytes(report->bytes_checked).c_str(),
      static_cast<unsigned long long>(report->snapshots_checked), seconds, report->bad_chunks.size(),
      report->broken_snapshots.size());
  if (!report->clean()) {
    std::printf("bad chunks left the index: the next push of an affected snapshot sends them again\n");
  }
  return report->clean() ? kExitOk : kExitCorruption;
}

Registrar registrar({"scrub", "scrub --store=DIR [--namespace=NS]",
                     "re-verify every stored chunk; name bad chunks and the snapshots they affect",
                     define_scrub, run_scrub});

}  // namespace
}  // namespace ferry::cli
