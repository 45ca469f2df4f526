// delta_base_choice.h: a push's delta base at a receiver (codec/delta_chain.h
// decides; this reads the receiver's snapshots for it). LIST gives names and
// whole-second creation times; the manifests (GET_MANIFEST) give each
// snapshot's host, job, origin and frame bytes, and are fetched newest first
// only as far as the choice needs them, each once per process (what a
// manifest says is kept, up to kMaxCachedChainSnapshots snapshots).
#pragma once

#include <cstdint>
#include <string>

#include "codec/delta_chain.h"
#include "replication/connection.h"

namespace ferry::replication {

// The receiver's snapshots of this host's namespace, newest first (by the
// manifests' created_ns, ties by name), over `request` (a connection's
// request/reply after HELLO at protocol `version`). A snapshot removed
// between LIST and GET_MANIFEST is passed over.
NextSnapshot receiver_snapshots_newest_first(std::uint16_t version, Requester request, std::string peer);

}  // namespace ferry::replication
