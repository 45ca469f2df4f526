// store_checks.cc: see store_checks.h.
#include "store/store_checks.h"

#include <map>
#include <vector>

#include "base/aligned_bytes.h"
#include "base/clock.h"
#include "codec/chunk_codec.h"
#include "codec/limits.h"
#include "store/store_limits.h"

namespace ferry {
namespace {

// A frame whose header fails its own checks names no chunk by itself (its
// id field is not yet trusted); the refusal still says which chunk the
// frame claims to carry, so that whoever sent it can tell which one.
Status name_claimed_chunk(const Status& st, std::span<const std::byte> frame) {
  Digest claimed{};
  if (!claimed_chunk_id(frame, claimed) || st.message().find(to_hex(claimed)) != std::string::npos) return st;
  return st.with_context("frame claiming chunk " + to_hex(claimed) + " (unverified)");
}

}  // namespace

Result<FrameHeader> check_put_frame(std::span<const std::byte> frame, const Digest* expected_id) {
  if (frame.size() > kMaxFrameBytes) {
    return Status::exhausted("frame of " + std::to_string(frame.size()) + " bytes exceeds the limit of " +
                             std::to_string(kMaxFrameBytes));
  }
  Result<FrameHeader> parsed = parse_frame_header(frame);
  if (!parsed) return name_claimed_chunk(parsed.status(), frame);
  if (expected_id != nullptr && parsed->chunk_id != *expected_id) {
    return Status::corruption("frame carries chunk " + to_hex(parsed->chunk_id) + ", expected " +
                              to_hex(*expected_id));
  }
  return parsed;
}

// Each byte of the frame is checked once: one CRC pass (header and payload,
// check_put_frame), one decode and one tree hash of the decoded chunk here.
Status verify_put_frame(const FrameHeader& header, std::span<const std::byte> frame) {
  thread_local ChunkDecoder decoder;
  // The decoder writes every byte it is given: a buffer that grows without
  // being zeroed (a vector zeroes what it grows by, at every chunk larger
  // than the one before), kept at up to a default chunk for the next PUT.
  thread_local AlignedBytes scratch;
  Status st = decoder.decode_verified(header, frame, scratch.take(header.raw_bytes));
  if (scratch.capacity() > kDefaultChunkBytes) scratch = AlignedBytes();
  return st;
}

Status refuse_missing_base(std::string_view ns, const FrameHeader& delta) {
  return Status::not_found("namespace " + std::string(ns) + ": delta chunk " + to_hex(delta.chunk_id) +
                           " needs base chunk " + to_hex(delta.base_id) + ", which is not held here");
}

Status check_created_time(std::string_view ns, std::string_view snapshot, std::int64_t created_ns,
                          std::int64_t now_ns) {
  if (created_ns <= add_ns_saturated(now_ns, seconds_to_ns_saturated(kMaxCreatedAheadSeconds))) {
    return Status::ok();
  }
  return Status::invalid_argument(
      "namespace " + std::string(ns) + ": snapshot " + std::string(snapshot) + " was created " +
      std::to_string(add_ns_saturated(created_ns, -now_ns) / kNanosPerSecond) +
      " s ahead of the receiver's clock (at most " + std::to_string(kMaxCreatedAheadSeconds) +
      " s allowed): check the host's clock");
}

Status check_may_delete(std::string_view ns, Actor actor, bool append_only) {
  RETURN_IF_ERROR(validate_namespace(ns));
  if (append_only && actor == Actor::kHost) {
    return Status::permission_denied("namespace " + std::string(ns) +
                                     ": the store is append-only; hosts may not delete or prune snapshots");
  }
  return Status::ok();
}

Result<bool> restate_frame_facts(Manifest& m, const StoredFrameFacts& stored) {
  std::map<Digest, std::optional<FrameFacts>> facts;
  std::vector<Digest> ids;
  for (const ManifestFile& f : m.files) {
    for (const ManifestChunk& c : f.chunks) {
      if (facts.emplace(c.id, std::nullopt).second) ids.push_back(c.id);
    }
  }
  ASSIGN_OR_RETURN(std::vector<std::optional<FrameFacts>> got, stored(ids));
  if (got.size() != ids.size()) return Status::internal("restate_frame_facts: one answer per id expected");
  for (std::size_t i = 0; i < ids.size(); ++i) facts[ids[i]] = got[i];
  bool changed = false;
  for (ManifestFile& f : m.files) {
    for (ManifestChunk& c : f.chunks) {
      const std::optional<FrameFacts>& s = facts[c.id];
      if (!s || (s->codec == c.codec && s->base_id == c.base_id && s->frame_bytes == c.frame_bytes)) continue;
      c.codec = s->codec;
      c.base_id = s->base_id;
      c.frame_bytes = s->frame_bytes;
      changed = true;
    }
  }
  return changed;
}

}  // namespace ferry
