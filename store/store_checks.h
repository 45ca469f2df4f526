// store_checks.h: the checks every ChunkStore backend makes the same way
// (chunk_store.h's contract): a frame verified in full before anything is
// stored, and deletions refused to hosts of an append-only store.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "codec/frame.h"
#include "codec/manifest.h"
#include "codec/packer.h"
#include "codec/tree_hash.h"
#include "store/chunk_store.h"

namespace ferry {

// The frame's header, checked (size limit, header and payload CRCs) and, when
// given, carrying *expected_id. A refusal names the chunk the frame claims.
Result<FrameHeader> check_put_frame(std::span<const std::byte> frame, const Digest* expected_id);
// Decodes the frame and recomputes its chunk id (per-thread scratch).
// REQUIRES: check_put_frame(frame) returned `header`.
Status verify_put_frame(const FrameHeader& header, std::span<const std::byte> frame);

// InvalidArgument when a manifest's created time lies more than
// kMaxCreatedAheadSeconds ahead of the store's clock `now_ns`: the host's
// clock is wrong, or lying.
Status check_created_time(std::string_view ns, std::string_view snapshot, std::int64_t created_ns,
                          std::int64_t now_ns);

// PermissionDenied for a host (Actor::kHost) when the store is append-only.
Status check_may_delete(std::string_view ns, Actor actor, bool append_only);

// The refusal of a delta frame whose base chunk the namespace does not hold:
// NotFound naming the base and the chunk, so the sender can tell which
// chunk to send in full.
Status refuse_missing_base(std::string_view ns, const FrameHeader& delta);

// The facts of the frames a namespace holds for `ids` (codec, base id, frame
// size, read from each stored frame's header), in order; nullopt for an id
// it does not hold.
using StoredFrameFacts =
    std::function<Result<std::vector<std::optional<FrameFacts>>>(std::span<const Digest> ids)>;

// Rule of docs/FORMAT.md 5 ("frame facts"): a committed manifest lists each
// chunk with the frame the store holds for its id, whatever frame the host
// coded (a chunk the host found held was never sent, and may be stored in
// full where the host would have coded a delta, or against another base).
// Sets every chunk's codec, base_id and frame_bytes from `stored`; a chunk
// the store lacks is left as it is (the commit refuses it). True when any
// entry changed.
Result<bool> restate_frame_facts(Manifest& m, const StoredFrameFacts& stored);

}  // namespace ferry
