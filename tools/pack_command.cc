// pack_command.cc: `ferry pack FILE|DIR -o OUT.ferry`: packs one file or every
// regular file below a directory into a `.ferry` archive (written to a
// temporary name, fsynced and renamed), then prints a one-line summary.
#include <cstdio>

#include "base/thread_pool.h"
#include "codec/archive.h"
#include "codec/chunker.h"
#include "codec/packer.h"
#include "tools/cli.h"

namespace ferry::cli {
namespace {

std::int64_t FLAGS_created_ns = -1;

void define_pack(CLI::App& app) {
  add_args(app, "FILE|DIR", "the file or directory to pack", 1);
  add_output(app, "the archive to write");
  add_chunking(app);
  add_job(app, "training job name recorded in the manifest");
  app.add_option("--created_ns", FLAGS_created_ns,
                 "creation time recorded in the manifest, ns since the epoch (-1: now); set it for "
                 "byte-identical archives from identical input");
  add_engine(app);
  add_threads(app);
  add_progress(app);
}

int run_pack(const std::vector<std::string>& args) {
  if (args.size() != 1)
    return usage_error("pack needs exactly one FILE or DIR (got " + std::to_string(args.size()) + ")");
  if (settings().output.empty()) return usage_error("pack needs -o OUT.ferry");
  if (settings().threads < 0) return usage_error("--threads must be >= 0");
  if (Status st = check_chunk_bytes(settings().chunk_size); !st) return fail(st);

  auto sources = pack_sources(args[0]);
  if (!sources) return fail(sources.status());

  ThreadPool pool(static_cast<std::size_t>(settings().threads));
  auto engine = engine_from_flags(pool, settings().zstd_level);
  if (!engine) return fail(engine.status());
  auto writer = ArchiveWriter::create(settings().output);
  if (!writer) return fail(writer.status());

  const double start = mono_seconds();
  ProgressLine progress("pack");
  PackOptions opts;
  opts.chunk_bytes = settings().chunk_size;
  opts.zstd_level = settings().zstd_level;
  opts.pool = &pool;
  opts.engine = engine->get();
  opts.job = settings().job;
  opts.step = settings().step;
  if (FLAGS_created_ns >= 0) opts.created_ns = FLAGS_created_ns;
  opts.progress = [&](const PackProgress& p) {
    progress.update(p.logical_done, p.logical_total, p.frame_bytes);
  };
  auto manifest = pack_files(*sources, opts, *writer);
  if (!manifest) return fail(manifest.status());
  if (Status st = writer->finish(*manifest); !st) return fail(st);
  progress.finish();

  const double seconds = mono_seconds() - start;
  const std::uint64_t logical = manifest->logical_bytes();
  const std::uint64_t archive = writer->bytes_written();
  std::printf(
      "packed %zu files, %s -> %s (ratio %.3f) in %.2f s, %.3f GB/s; %zu chunks, %llu deduplicated -> %s\n",
      manifest->files.size(), format_bytes(logical).c_str(), format_bytes(archive).c_str(),
      archive ? static_cast<double>(logical) / static_cast<double>(archive) : 0.0, seconds,
      seconds > 0 ? static_cast<double>(logical) / seconds / 1e9 : 0.0, manifest->chunk_count(),
      static_cast<unsigned long long>(writer->frames_deduplicated()), settings().output.c_str());
  return kExitOk;
}

Registrar registrar(
    {"pack", "pack FILE|DIR -o OUT.ferry [--chunk_size=N] [--job=J] [--step=N] [--engine=auto|cpu|gpu]",
     "chunk, compress and hash files into a .ferry archive", define_pack, run_pack});

}  // namespace
}  // namespace ferry::cli
