// receiver_metrics.h: the metrics of the DR receiver (`ferry serve
// --metrics_listen`), by the same conventions as the agent's
// (agent/metrics.h): connections, refusals by reason, bytes in and out,
// chunks stored and served, snapshots committed, store usage per namespace
// and the latency of the store syncs behind every acknowledged PUT.
// docs/OPERATIONS.md lists them.
#pragma once

#include <string_view>

#include "base/metrics.h"
#include "replication/receiver.h"
#include "store/chunk_store.h"

namespace ferry::replication {

// Describes the receiver's metrics in `m` (and ferry_build_info) and adds a
// collector that copies `receiver`'s counters and `store`'s usage into `m`
// at every scrape. `receiver` and `store` must outlive `m`'s renders.
void export_receiver_metrics(Metrics& m, const Receiver& receiver, ChunkStore& store);

}  // namespace ferry::replication
