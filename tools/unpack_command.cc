// unpack_command.cc: `ferry unpack ARCHIVE -o DIR`: restores every file of an
// archive, byte-identical with its mode and mtime; each file appears under
// its name only after its bytes were verified and fsynced.
#include <cstdio>

#include "base/thread_pool.h"
#include "codec/archive.h"
#include "codec/unpacker.h"
#include "tools/cli.h"

namespace ferry::cli {
namespace {

void define_unpack(CLI::App& app) {
  add_args(app, "ARCHIVE", "the .ferry archive", 1);
  add_output(app, "the directory to write");
  add_exact_modes(app);
  add_threads(app);
  add_progress(app);
}

int run_unpack(const std::vector<std::string>& args) {
  if (args.size() != 1) return usage_error("unpack needs exactly one ARCHIVE");
  if (settings().output.empty()) return usage_error("unpack needs -o DIR");
  if (settings().threads < 0) return usage_error("--threads must be >= 0");
  auto archive = ArchiveReader::open(args[0]);
  if (!archive) return fail(archive.status());
  ThreadPool pool(static_cast<std::size_t>(settings().threads));
  const double start = mono_seconds();
  ProgressLine progress("unpack");
  UnpackOptions opts;
  opts.pool = &pool;
  opts.exact_modes = settings().exact_modes;
  opts.progress = [&](const UnpackProgress& p) {
    progress.update(p.logical_done, p.logical_total, p.frame_bytes);
  };
  Status st = unpack_archive(*archive, settings().output, opts);
  progress.finish();
  if (!st) return fail(st);
  const double seconds = mono_seconds() - start;
  const Manifest& m = archive->manifest();
  std::printf("unpacked %zu files, %s into %s in %.2f s (%.3f GB/s)\n", m.files.size(),
              format_bytes(m.logical_bytes()).c_str(), settings().output.c_str(), seconds,
              seconds > 0 ? static_cast<double>(m.logical_bytes()) / seconds / 1e9 : 0.0);
  return kExitOk;
}

Registrar registrar({"unpack", "unpack ARCHIVE -o DIR", "restore every file, verified, byte-identical",
                     define_unpack, run_unpack});

}  // namespace
}  // namespace ferry::cli
