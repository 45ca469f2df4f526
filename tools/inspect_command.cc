// inspect_command.cc: `ferry inspect ARCHIVE [--json] [--notensors]`: what an
// archive holds and how well each part compressed. Per file, and per tensor
// where the layout is known: name, dtype, bytes, stored bytes (a tensor's
// share of its chunks' frame bytes, in proportion to its overlap with each
// chunk), ratio and codec; then a total line. Reads only the manifest.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <map>

#include "codec/archive.h"
#include "codec/frame.h"
#include "tools/cli.h"

namespace ferry::cli {
namespace {

bool FLAGS_tensors = true;

void define_inspect(CLI::App& app) {
  add_args(app, "ARCHIVE", "the .ferry archive", 1);
  add_json(app, "print machine-readable JSON instead of a table");
  app.add_flag("--tensors,!--notensors", FLAGS_tensors,
               "list the tensors of files whose layout is known (default on)");
}

struct Share {
  double stored = 0;  // frame bytes attributed
  std::string codec;  // codec of the chunk holding most of the bytes
};

std::string codec_label(std::uint8_t id) {
  return codec_known(id) ? std::string(codec_name(static_cast<Codec>(id))) : "codec" + std::to_string(id);
}

// The stored share of [begin, end) within a file's chunks (sorted, tiling).
Share share_of(const ManifestFile& f, std::uint64_t begin, std::uint64_t end) {
  Share s;
  auto it = std::upper_bound(f.chunks.begin(), f.chunks.end(), begin,
                             [](std::uint64_t b, const ManifestChunk& c) { return b < c.offset + c.length; });
  std::uint64_t best = 0;
  for (; it != f.chunks.end() && it->offset < end; ++it) {
    std::uint64_t lo = std::max(begin, it->offset), hi = std::min(end, it->offset + it->length);
    if (hi <= lo) continue;
    s.stored += static_cast<double>(it->frame_bytes) * static_cast<double>(hi - lo) / it->length;
    if (hi - lo > best) {
      best = hi - lo;
      s.codec = codec_label(it->codec);
    }
  }
  return s;
}

double ratio(std::uint64_t bytes, double stored) {
  return stored > 0 ? static_cast<double>(bytes) / stored : 0.0;
}

std::string file_codecs(const ManifestFile& f) {
  std::map<std::string, std::uint64_t> by_codec;
  for (const auto& c : f.chunks) by_codec[codec_label(c.codec)] += c.length;
  std::vector<std::pair<std::uint64_t, std::string>> sorted;
  for (auto& [name, bytes] : by_codec) sorted.emplace_back(bytes, name);
  std::sort(sorted.rbegin(), sorted.rend());
  std::string out;
  for (auto& [bytes, name] : sorted) out += (out.empty() ? "" : "+") + name;
  return out.empty() ? "-" : out;
}

std::uint64_t frame_total(const ManifestFile& f) {
  std::uint64_t t = 0;
  for (const auto& c : f.chunks) t += c.frame_bytes;
  return t;
}

int print_json(const ArchiveReader& a) {
  const Manifest& m = a.manifest();
  nlohmann::json j;
  j["archive"] = a.path().string();
  j["host"] = m.host;
  j["job"] = m.job;
  j["step"] = m.step;
  j["created_ns"] = m.created_ns;
  j["archive_bytes"] = a.archive_bytes();
  j["logical_bytes"] = m.logical_bytes();
  j["stored_frame_bytes"] = a.stored_frame_bytes();
  j["chunks"] = m.chunk_count();
  j["files"] = nlohmann::json::array();
  for (const auto& f : m.files) {
    nlohmann::json jf;
    std::uint64_t stored = frame_total(f);
    jf["path"] = f.path;
    jf["bytes"] = f.size;
    jf["stored_bytes"] = stored;
    jf["ratio"] = ratio(f.size, static_cast<double>(stored));
    jf["codec"] = file_codecs(f);
    jf["mode"] = f.mode;
    jf["root"] = to_hex(f.root);
    jf["layout"] = std::string(layout_name(f.layout));
    jf["chunks"] = f.chunks.size();
    if (FLAGS_tensors) {
      jf["tensors"] = nlohmann::json::array();
      for (const auto& t : f.tensors) {
        Share s = share_of(f, t.begin, t.end);
        jf["tensors"].push_back({{"name", t.name},
                                 {"dtype", t.dtype},
                                 {"shape", t.shape},
                                 {"bytes", t.end - t.begin},
                                 {"stored_bytes", s.stored},
                                 {"ratio", ratio(t.end - t.begin, s.stored)},
                                 {"codec", s.codec}});
      }
    }
    j["files"].push_back(std::move(jf));
  }
  std::printf("%s\n", j.dump(2).c_str());
  return kExitOk;
}

int run_inspect(const std::vector<std::string>& args) {
  if (args.size() != 1) return usage_error("inspect needs exactly one ARCHIVE");
  auto archive = ArchiveReader::open(args[0]);
  if (!archive) return fail(archive.status());
  if (settings().json) return print_json(*archive);
  const Manifest& m = archive->manifest();
  std::printf("archive %s: host %s, job \"%s\", step %llu\n", args[0].c_str(), m.host.c_str(), m.job.c_str(),
              static_cast<unsigned long long>(m.step));
  std::printf("%-52s %-9s %14s %14s %7s  %s\n", "name", "dtype", "bytes", "stored", "ratio", "codec");
  for (const auto& f : m.files) {
    std::uint64_t stored = frame_total(f);
    std::printf("%-52s %-9s %14llu %14llu %7.3f  %s\n", f.path.c_str(),
                f.layout == LayoutKind::kSafetensors ? "(st)" : "-", static_cast<unsigned long long>(f.size),
                static_cast<unsigned long long>(stored), ratio(f.size, static_cast<double>(stored)),
                file_codecs(f).c_str());
    if (!FLAGS_tensors) continue;
    for (const auto& t : f.tensors) {
      Share s = share_of(f, t.begin, t.end);
      std::string name = "  " + t.name;
      std::printf("%-52s %-9s %14llu %14.0f %7.3f  %s\n", name.c_str(), t.dtype.c_str(),
                  static_cast<unsigned long long>(t.end - t.begin), s.stored,
                  ratio(t.end - t.begin, s.stored), s.codec.c_str());
    }
  }
  std::printf(
      "total: %zu files, %zu chunks, %llu bytes -> %llu frame bytes stored, archive %llu bytes, ratio %.3f\n",
      m.files.size(), m.chunk_count(), static_cast<unsigned long long>(m.logical_bytes()),
      static_cast<unsigned long long>(archive->stored_frame_bytes()),
      static_cast<unsigned long long>(archive->archive_bytes()),
      ratio(m.logical_bytes(), static_cast<double>(archive->archive_bytes())));
  return kExitOk;
}

Registrar registrar({"inspect", "inspect ARCHIVE [--json] [--notensors]",
                     "per file and tensor: dtype, bytes, stored bytes, ratio, codec", define_inspect,
                     run_inspect});

}  // namespace
}  // namespace ferry::cli
