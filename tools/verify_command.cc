// verify_command.cc: `ferry verify ARCHIVE`: decodes every frame, recomputes
// every chunk id and file root; on failure names the first bad chunk (id,
// file, offset) and exits 1.
#include <cstdio>

#include "base/thread_pool.h"
#include "codec/archive.h"
#include "codec/unpacker.h"
#include "tools/cli.h"

namespace ferry::cli {
namespace {

void define_verify(CLI::App& app) {
  add_args(app, "ARCHIVE", "the .ferry archive", 1);
  add_threads(app);
  add_progress(app);
}

int run_verify(const std::vector<std::string>& args) {
  if (args.size() != 1) return usage_error("verify needs exactly one ARCHIVE");
  if (settings().threads < 0) return usage_error("--threads must be >= 0");
  auto archive = ArchiveReader::open(args[0]);
  if (!archive) return fail(archive.status());
  ThreadPool pool(static_cast<std::size_t>(settings().threads));
  const double start = mono_seconds();
  ProgressLine progress("verify");
  UnpackOptions opts;
  opts.pool = &pool;
  opts.progress = [&](const UnpackProgress& p) {
    progress.update(p.logical_done, p.logical_total, p.frame_bytes);
  };
  Status st = verify_archive(*archive, opts);
  progress.finish();
  if (!st) return fail(st);
  const double seconds = mono_seconds() - start;
  const Manifest& m = archive->manifest();
  std::printf("OK %s: %zu files, %zu chunks, %s verified in %.2f s (%.3f GB/s)\n", args[0].c_str(),
              m.files.size(), m.chunk_count(), format_bytes(m.logical_bytes()).c_str(), seconds,
              seconds > 0 ? static_cast<double>(m.logical_bytes()) / seconds / 1e9 : 0.0);
  return kExitOk;
}

Registrar registrar({"verify", "verify ARCHIVE", "decode everything and check every chunk id and file root",
                     define_verify, run_verify});

}  // namespace
}  // namespace ferry::cli
