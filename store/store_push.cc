// store_push.cc: see store_push.h.
#include "store/store_push.h"

#include "base/clock.h"
#include "codec/chunk_codec.h"
#include "codec/delta_codec.h"
#include "codec/frame_rebuilder.h"
#include "codec/manifest.h"
#include "store/store_limits.h"

namespace ferry {
namespace {

class StoreSink final : public FrameSink {
 public:
  StoreSink(ChunkStore& store, std::string_view ns, const StorePushHooks& hooks,
            std::span<const PackSource> sources, int zstd_level)
      : store_(store), ns_(ns), hooks_(hooks), sources_(sources), rebuilder_(zstd_level) {}
  Status put_frame(const ManifestFile& file, const ManifestChunk& chunk,
                   std::span<const std::byte> frame) override {
    if (hooks_.should_stop && hooks_.should_stop())
      return Status::aborted("push to namespace " + ns_ + " stopped");
    Result<PutResult> put = store_.put(ns_, frame, &chunk.id);
    if (!put && put.status().code() == Code::kNotFound && is_delta_codec(static_cast<Codec>(chunk.codec))) {
      // The delta's base was removed after the store said it held it (a
      // gc at that instant): the chunk goes in full, and the commit lists
      // the frame stored (docs/FORMAT.md 5, "frame facts").
      ASSIGN_OR_RETURN(std::span<const std::byte> full, standalone_frame(file, chunk));
      put = store_.put(ns_, full, &chunk.id);
      ++deltas_sent_in_full_;
    }
    if (!put) return put.status();
    if (put->stored) stored_bytes_ += put->frame_bytes;
    return Status::ok();
  }
  std::uint64_t stored_bytes() const { return stored_bytes_; }
  std::uint64_t deltas_sent_in_full() const { return deltas_sent_in_full_; }

 private:
  // `chunk` of `file` read again from its source and coded alone, as the
  // sender does for a receiver that lost the base (codec/frame_rebuilder.h).
  Result<std::span<const std::byte>> standalone_frame(const ManifestFile& file, const ManifestChunk& chunk) {
    const PackSource* src = find_pack_source(sources_, file.path);
    if (src == nullptr) return Status::internal("no source for " + file.path + " in the push");
    ChunkOrigin origin = chunk_origin(src->path, file, chunk);
    frame_.resize(frame_room_bytes(chunk.length));
    RETURN_IF_ERROR(rebuilder_.rebuild_standalone(origin, frame_));
    return std::span<const std::byte>(frame_);
  }

  ChunkStore& store_;
  const std::string ns_;
  const StorePushHooks& hooks_;
  std::span<const PackSource> sources_;  // ascending by rel_path
  std::uint64_t stored_bytes_ = 0;
  std::uint64_t deltas_sent_in_full_ = 0;
  FrameRebuilder rebuilder_;
  std::vector<std::byte> frame_;
};

}  // namespace

DeltaChoice choose_store_delta_base(ChunkStore& store, std::string_view ns, const DeltaPolicy& policy,
                                    ChainQuery query) {
  if (query.host.empty()) query.host = manifest_host_name();
  std::optional<Result<std::vector<SnapshotInfo>>> listed;  // read once, on the first call
  std::size_t left = 0;
  NextSnapshot next = [&]() -> Result<std::optional<ChainSnapshot>> {
    if (!listed) {
      listed = store.list(ns);  // oldest first
      if (*listed) left = (*listed)->size();
    }
    if (!*listed) return listed->status();
    if (left == 0) return std::optional<ChainSnapshot>();
    const SnapshotInfo& s = (**listed)[--left];
    return std::optional<ChainSnapshot>(ChainSnapshot{s.name, s.host, s.job, s.origin, s.frame_bytes});
  };
  return choose_delta_base(policy, query, next);
}

Result<StorePushReport> push_to_store(ChunkStore& store, std::string_view ns,
                                      std::span<const PackSource> sources, PackOptions pack,
                                      std::string_view snapshot, const StorePushHooks& hooks) {
  RETURN_IF_ERROR(validate_namespace(ns));
  RETURN_IF_ERROR(validate_snapshot_name(snapshot));
  const double start = mono_seconds();
  StorePushReport report;
  report.snapshot = std::string(snapshot);
  pack.need = [&](std::span<const Digest> ids) -> Result<std::vector<bool>> {
    ASSIGN_OR_RETURN(std::vector<bool> have, store.have(ns, ids));
    for (std::size_t i = 0; i < have.size(); ++i) {
      have[i] = !have[i];
      if (!have[i]) ++report.chunks_skipped;
    }
    return have;
  };
  StoreSink sink(store, ns, hooks, sources, pack.zstd_level);
  auto progress = pack.progress;
  pack.progress = [&](const PackProgress& p) {
    report.delta_chunks = p.delta_chunks;
    report.delta_logical_bytes = p.delta_logical_bytes;
    report.delta_frame_bytes = p.delta_frame_bytes;
    if (progress) progress(p);
  };
  Manifest m;
  for (int attempt = 1;; ++attempt) {
    ASSIGN_OR_RETURN(m, pack_files(sources, pack, sink));
    RETURN_IF_ERROR(store.sync(ns));
    if (hooks.before_commit) RETURN_IF_ERROR(hooks.before_commit());
    Status committed = store.commit_snapshot(ns, snapshot, serialize_manifest(m));
    // NotFound: chunks the store said it held are gone (gc deleted their
    // pack meanwhile, docs/FORMAT.md 9.5); have/need now answers without
    // them, so packing again sends exactly those.
    if (committed.code() != Code::kNotFound || attempt == kStorePushCommitAttempts) {
      RETURN_IF_ERROR(committed);
      break;
    }
    report.chunks_skipped = 0;
  }
  report.files = m.files.size();
  report.logical_bytes = m.logical_bytes();
  report.chunks_total = m.chunk_count();
  report.frame_bytes_stored = sink.stored_bytes();
  report.deltas_sent_in_full = sink.deltas_sent_in_full();
  report.origin = m.origin;
  report.seconds = mono_seconds() - start;
  return report;
}

}  // namespace ferry
