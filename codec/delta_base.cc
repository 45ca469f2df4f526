// delta_base.cc: see delta_base.h.
#include "codec/delta_base.h"

#include <sys/stat.h>

#include <vector>

#include "base/direct_file.h"
#include "codec/safetensors.h"

namespace ferry {

std::optional<DeltaBaseFile> pair_delta_base(const std::filesystem::path& from, const ManifestFile& current,
                                             std::span<const ChunkPlan> plan, std::size_t chunk_bytes) {
  DeltaBaseFile base;
  base.path = from / current.path;
  struct stat st {};
  // lstat: a symlink in the earlier checkpoint is not followed.
  if (::lstat(base.path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return std::nullopt;
  base.size = static_cast<std::uint64_t>(st.st_size);
  std::optional<SafetensorsLayout> layout;
  if (current.layout == LayoutKind::kSafetensors) {
    auto parsed = read_safetensors_layout(base.path);
    if (!parsed || parsed->file_bytes != base.size) return std::nullopt;
    // The same tensors at the same offsets: names, dtypes and shapes too, so
    // a renamed or reshaped tensor is never coded against another one.
    if (parsed->tensors.size() != current.tensors.size()) return std::nullopt;
    for (std::size_t i = 0; i < current.tensors.size(); ++i) {
      const auto& a = parsed->tensors[i];
      const ManifestTensor& b = current.tensors[i];
      if (a.name != b.name || a.dtype_name != b.dtype || a.shape != b.shape || a.begin != b.begin ||
          a.end != b.end)
        return std::nullopt;
    }
    layout = std::move(parsed).value();
  } else if (base.size != current.size) {
    return std::nullopt;
  }
  const std::vector<ChunkPlan> base_plan = plan_chunks(base.size, layout ? &*layout : nullptr, chunk_bytes);
  if (!std::equal(base_plan.begin(), base_plan.end(), plan.begin(), plan.end())) return std::nullopt;
  return base;
}

std::optional<Digest> read_delta_base(const DeltaBaseFile& base, const ChunkPlan& p, AlignedBytes& out,
                                      bool direct_io) {
  auto file = DirectReadFile::open(base.path, direct_io, /*follow_symlinks=*/false);
  if (!file) return std::nullopt;
  struct stat st {};
  if (::fstat(file->fd(), &st) != 0 || static_cast<std::uint64_t>(st.st_size) != base.size)
    return std::nullopt;
  out.take(p.length);
  if (!file->read(out.padded(), p.length, p.offset)) return std::nullopt;
  return chunk_id(out.view());
}

}  // namespace ferry
