// receiver_metrics.cc: see receiver_metrics.h.
#include "replication/receiver_metrics.h"

#include <string>

namespace ferry::replication {
namespace {

constexpr std::string_view kAccepted = "ferry_receiver_connections_accepted_total";
constexpr std::string_view kActive = "ferry_receiver_connections_active";
constexpr std::string_view kRefusals = "ferry_receiver_refusals_total";
constexpr std::string_view kWireIn = "ferry_receiver_wire_bytes_received_total";
constexpr std::string_view kWireOut = "ferry_receiver_wire_bytes_sent_total";
constexpr std::string_view kChunksReceived = "ferry_receiver_chunks_received_total";
constexpr std::string_view kChunkBytesReceived = "ferry_receiver_chunk_bytes_received_total";
constexpr std::string_view kChunksStored = "ferry_receiver_chunks_stored_total";
constexpr std::string_view kChunksServed = "ferry_receiver_chunks_served_total";
constexpr std::string_view kCommits = "ferry_receiver_snapshots_committed_total";
constexpr std::string_view kStoreBytes = "ferry_receiver_store_bytes";
constexpr std::string_view kStoreChunks = "ferry_receiver_store_chunks";
constexpr std::string_view kStoreSnapshots = "ferry_receiver_store_snapshots";
constexpr std::string_view kStoreQuota = "ferry_receiver_store_quota_bytes";
constexpr std::string_view kFsync = "ferry_receiver_fsync_duration_seconds";
constexpr std::string_view kNamespaceLabel = "namespace";

void collect(Metrics& m, const Receiver& receiver, ChunkStore& store) {
  const ReceiverStats s = receiver.stats();
  m.set(kAccepted, {}, static_cast<double>(s.connections_accepted));
  m.set(kActive, {}, static_cast<double>(s.connections_active));
  m.set(kRefusals, {{"reason", "tls_handshake"}}, static_cast<double>(s.refused_handshake));
  m.set(kRefusals, {{"reason", "connection_limit"}}, static_cast<double>(s.refused_connection_limit));
  m.set(kRefusals, {{"reason", "hello"}}, static_cast<double>(s.refused_hello));
  m.set(kRefusals, {{"reason", "handshake_dropped"}}, static_cast<double>(s.handshakes_dropped));
  m.set(kWireIn, {}, static_cast<double>(s.wire_bytes_in));
  m.set(kWireOut, {}, static_cast<double>(s.wire_bytes_out));
  m.set(kChunksReceived, {}, static_cast<double>(s.puts));
  m.set(kChunkBytesReceived, {}, static_cast<double>(s.put_bytes));
  m.set(kChunksStored, {}, static_cast<double>(s.chunks_stored));
  m.set(kChunksServed, {}, static_cast<double>(s.chunks_served));
  m.set(kCommits, {}, static_cast<double>(s.commits));
  m.set_histogram(kFsync, {}, s.sync_seconds);
  // Usage per namespace (one per host certificate); a namespace the store
  // cannot answer for keeps its last figures rather than reading 0.
  auto namespaces = store.namespaces();
  if (!namespaces) return;
  for (const auto& ns : *namespaces) {
    auto u = store.usage(ns);
    if (!u) continue;
    const Labels l{{std::string(kNamespaceLabel), ns}};
    m.set(kStoreBytes, l, static_cast<double>(u->stored_bytes));
    m.set(kStoreChunks, l, static_cast<double>(u->chunks));
    m.set(kStoreSnapshots, l, static_cast<double>(u->snapshots));
    m.set(kStoreQuota, l, static_cast<double>(u->quota_bytes));
  }
}

}  // namespace

void export_receiver_metrics(Metrics& m, const Receiver& receiver, ChunkStore& store) {
  describe_build_info(m);
  m.describe(kAccepted, "counter", "TCP connections accepted");
  m.describe(kActive, "gauge", "Connections being served now");
  m.describe(kRefusals, "counter",
             "Connections refused, by reason: tls_handshake (no or bad client certificate, plaintext), "
             "connection_limit (over --max_connections), hello (no or bad HELLO)");
  m.describe(kWireIn, "counter", "TLS bytes received, counted when each connection closes");
  m.describe(kWireOut, "counter", "TLS bytes sent, counted when each connection closes");
  m.describe(kChunksReceived, "counter", "Chunks received (PUT)");
  m.describe(kChunkBytesReceived, "counter", "Frame bytes of the chunks received (PUT)");
  m.describe(kChunksStored, "counter", "Chunks stored that were not already present");
  m.describe(kChunksServed, "counter", "Chunks sent to restores");
  m.describe(kCommits, "counter", "Snapshots committed");
  m.describe(kStoreBytes, "gauge",
             "Bytes stored per namespace: packs and snapshot files (what the quota counts)");
  m.describe(kStoreChunks, "gauge", "Chunks stored per namespace");
  m.describe(kStoreSnapshots, "gauge", "Snapshots stored per namespace");
  m.describe(kStoreQuota, "gauge", "Quota per namespace in bytes (0: none)");
  m.describe_histogram(kFsync, "Seconds each store sync (fsync) behind acknowledged PUTs took",
                       kLatencyBucketsSeconds);
  collect(m, receiver, store);
  m.add_collector([&receiver, &store](Metrics& into) { collect(into, receiver, store); });
}

}  // namespace ferry::replication
