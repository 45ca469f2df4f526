// namespaced_store.h: what every ChunkStore backend does the same way before
// one call to the object that holds a namespace: name checks, frame
// verification outside every lock (store_checks.h), the append-only rule and
// retention. A backend derives from NamespacedStore<N> and supplies open(ns)
// and namespaces(); N (StoreNamespace for the local store, S3Namespace for
// S3) offers holds, have, put, sync, get, frame_facts, commit, list, read_manifest,
// remove, gc, scrub and usage.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "codec/delta_codec.h"
#include "codec/manifest.h"
#include "store/chunk_store.h"
#include "store/retention.h"
#include "store/store_checks.h"
#include "store/store_options.h"

namespace ferry {

template <class N>
class NamespacedStore : public ChunkStore {
 public:
  explicit NamespacedStore(StoreOptions options) : options_(std::move(options)) {}

  Result<std::vector<bool>> have(std::string_view ns, std::span<const Digest> ids) override {
    ASSIGN_OR_RETURN(N * n, open(ns));
    return n->have(ids);
  }

  // Each byte of the frame is checked once (store_checks.h), and a chunk
  // already held is not decoded at all; the namespace's put checks again
  // under its lock.
  Result<PutResult> put(std::string_view ns, std::span<const std::byte> frame,
                        const Digest* expected_id) override {
    RETURN_IF_ERROR(validate_namespace(ns));
    ASSIGN_OR_RETURN(FrameHeader header, check_put_frame(frame, expected_id));
    ASSIGN_OR_RETURN(N * n, open(ns));
    if (n->holds(header.chunk_id)) return PutResult{header.chunk_id, false, frame.size()};
    if (is_delta_codec(header.codec)) {
      // A delta is accepted only against a base held here, and only once
      // it rebuilds to its own id.
      if (!n->holds(header.base_id)) return refuse_missing_base(ns, header);
      std::vector<std::byte> rebuilt;
      RETURN_IF_ERROR(rebuild_chunk(
          header, frame, [n](const Digest& id) { return n->get(id); }, rebuilt));
      return n->put(frame, header);
    }
    RETURN_IF_ERROR(verify_put_frame(header, frame));
    return n->put(frame, header);
  }

  Status sync(std::string_view ns) override {
    ASSIGN_OR_RETURN(N * n, open(ns));
    return n->sync();
  }

  Result<std::vector<std::byte>> get(std::string_view ns, const Digest& id) override {
    ASSIGN_OR_RETURN(N * n, open(ns));
    return n->get(id);
  }

  Status lend(std::string_view ns, const Digest& id, LentBytes& lent) override {
    if constexpr (requires(N * n) { n->lend(id, lent); }) {
      ASSIGN_OR_RETURN(N * n, open(ns));
      return n->lend(id, lent);
    } else {
      return ChunkStore::lend(ns, id, lent);
    }
  }

  Status get_into(std::string_view ns, const Digest& id, std::vector<std::byte>& out) override {
    ASSIGN_OR_RETURN(N * n, open(ns));
    if constexpr (requires { n->get_into(id, out); }) {
      return n->get_into(id, out);
    } else {
      ASSIGN_OR_RETURN(out, n->get(id));
      return Status::ok();
    }
  }

  Status commit_snapshot(std::string_view ns, std::string_view name,
                         std::span<const std::byte> manifest_bytes) override {
    RETURN_IF_ERROR(validate_namespace(ns));
    RETURN_IF_ERROR(validate_snapshot_name(name));
    ASSIGN_OR_RETURN(Manifest m, parse_manifest(manifest_bytes));
    ASSIGN_OR_RETURN(N * n, open(ns));
    // The manifest states the frames held here (store_checks.h), so that
    // restore, scrub and gc read what is stored, whatever the host coded.
    ASSIGN_OR_RETURN(bool restated, restate_frame_facts(
                                        m, [n](std::span<const Digest> ids) { return n->frame_facts(ids); }));
    if (!restated) return n->commit(name, manifest_bytes, m);
    return n->commit(name, serialize_manifest(m), m);
  }

  Result<std::vector<SnapshotInfo>> list(std::string_view ns) override {
    ASSIGN_OR_RETURN(N * n, open(ns));
    return n->list();
  }

  Result<std::vector<std::byte>> manifest(std::string_view ns, std::string_view name) override {
    RETURN_IF_ERROR(validate_snapshot_name(name));
    ASSIGN_OR_RETURN(N * n, open(ns));
    return n->read_manifest(name);
  }

  Status remove_snapshot(std::string_view ns, std::string_view name, Actor actor) override {
    RETURN_IF_ERROR(check_may_delete(ns, actor, options_.append_only));
    RETURN_IF_ERROR(validate_snapshot_name(name));
    ASSIGN_OR_RETURN(N * n, open(ns));
    std::string s(name);
    return n->remove(std::span(&s, 1));
  }

  Result<PruneReport> prune(std::string_view ns, const RetentionPolicy& policy, std::int64_t now_ns,
                            Actor actor) override {
    RETURN_IF_ERROR(check_may_delete(ns, actor, options_.append_only));
    if (policy.empty()) {
      return Status::invalid_argument(
          "retention needs keep_last, keep_within, keep_daily, keep_weekly or keep_monthly: an empty policy "
          "would delete every snapshot");
    }
    ASSIGN_OR_RETURN(N * n, open(ns));
    ASSIGN_OR_RETURN(auto snapshots, n->list());
    PruneReport report = select_retention(snapshots, policy, now_ns);
    if (!report.removed.empty()) RETURN_IF_ERROR(n->remove(report.removed));
    return report;
  }

  Result<GcReport> gc(std::string_view ns, Actor actor) override {
    RETURN_IF_ERROR(check_may_delete(ns, actor, options_.append_only));
    ASSIGN_OR_RETURN(N * n, open(ns));
    return n->gc();
  }

  Result<ScrubReport> scrub(std::string_view ns) override {
    std::vector<std::string> names;
    if (ns.empty()) {
      ASSIGN_OR_RETURN(names, namespaces());
    } else {
      names.emplace_back(ns);
    }
    ScrubReport report;
    for (const std::string& name : names) {
      ASSIGN_OR_RETURN(N * n, open(name));
      RETURN_IF_ERROR(n->scrub(report));
    }
    return report;
  }

  Result<StoreUsage> usage(std::string_view ns) override {
    ASSIGN_OR_RETURN(N * n, open(ns));
    return n->usage();
  }

 protected:
  // The namespace's object, opened (and recovered or loaded) on first use.
  // REQUIRES: nothing; checks the name itself.
  virtual Result<N*> open(std::string_view ns) = 0;

  const StoreOptions options_;
};

}  // namespace ferry
