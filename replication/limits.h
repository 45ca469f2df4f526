// limits.h: every limit and default of the replication layer (wire protocol,
// TLS, connections), in one place. Decoders check every length against these
// before allocating; a limit that is not written down is a denial of service
// waiting to happen. docs/PROTOCOL.md repeats them with their reasons.
#pragma once

#include <cstddef>
#include <cstdint>

#include "codec/limits.h"

namespace ferry::replication {

// Protocol versions this build speaks (HELLO / HELLO_OK negotiate the highest
// common one).
inline constexpr std::uint16_t kMinProtocolVersion = 1;
inline constexpr std::uint16_t kMaxProtocolVersion = 2;
// Version 2 pages LIST (a cursor in LIST and LIST_REPLY) and says how many
// snapshots a REMOVED left unnamed.
inline constexpr std::uint16_t kPagedListVersion = 2;

// Message framing: [u32 body length][u8 type][body].
inline constexpr std::size_t kMessageHeaderBytes = 5;
// Hard cap on one message body, whatever a peer announces: a whole manifest
// (codec/manifest.h allows 512 MiB) plus the snapshot name and request id.
inline constexpr std::size_t kMaxMessageBodyBytes = (512u << 20) + (64u << 10);
// What a receiver announces by default in HELLO_OK: one maximal frame in a PUT
// or CHUNK plus room, and manifests of checkpoints up to ~5 TB at 4 MiB chunks.
inline constexpr std::size_t kDefaultMaxMessageBytes = 128u << 20;
// The smallest limit a peer may announce: a PUT of one maximal frame must fit.
inline constexpr std::size_t kMinAnnouncedMessageBytes = kMaxFrameBytes + 64;

// Field sizes the decoders count with (docs/PROTOCOL.md section 3).
// Every request and reply but HELLO, HELLO_OK and BYE begins with a u64
// request id; PUT and CHUNK are a request id, then the frame.
inline constexpr std::size_t kRequestIdBytes = 8;
// The smallest SnapshotInfo in a LIST_REPLY: a u16 name length and a 1-byte
// name, created (i64), logical_bytes (u64), file_count and chunk_count (u32).
// A snapshot count must fit in the bytes that follow at this size each, so a
// hostile count cannot make a decoder allocate.
inline constexpr std::size_t kMinSnapshotInfoBytes = 2 + 1 + 8 + 8 + 4 + 4;
// The smallest snapshot name in a REMOVED: a u16 length and 1 byte (the
// same bound on its name count).
inline constexpr std::size_t kMinNameFieldBytes = 2 + 1;

// Field limits.
inline constexpr std::size_t kMaxSoftwareBytes = 64;       // HELLO client software
inline constexpr std::size_t kMaxNamespaceBytes = 64;      // host identity [A-Za-z0-9._-]
inline constexpr std::size_t kMaxSnapshotNameBytes = 128;  // [A-Za-z0-9._-], not "." or ".."
inline constexpr std::size_t kMaxErrorMessageBytes = 4096;
inline constexpr std::size_t kMaxQueryIds = 65536;            // QUERY: 2 MiB of ids
inline constexpr std::size_t kMaxGetChunkIds = 4096;          // GET_CHUNK
inline constexpr std::size_t kMaxListedSnapshots = 1u << 20;  // LIST_REPLY
inline constexpr std::size_t kMaxRemovedNames = 1u << 20;     // REMOVED
// A LIST cursor (version 2): opaque to the client, printable ASCII.
inline constexpr std::size_t kMaxListCursorBytes = 192;

// What a COMMIT body holds besides its manifest (a request id, a snapshot
// name and its length: at most 8 + 2 + 128 bytes), rounded up: a sender
// refuses a manifest that would not fit the receiver's message limit with
// it, rather than have the receiver drop the connection.
inline constexpr std::size_t kCommitFieldsReserveBytes = 1024;
static_assert(kCommitFieldsReserveBytes >= kRequestIdBytes + 2 + kMaxSnapshotNameBytes);

// Flow control a receiver announces by default: PUTs in flight per connection
// before the sender must wait for an acknowledgement. 64 x 4 MiB = 256 MiB per
// stream covers 1 Gbit/s at 2 s RTT, or 10 Gbit/s at 200 ms.
inline constexpr std::uint32_t kDefaultMaxInflightPuts = 64;
inline constexpr std::uint32_t kMaxInflightPuts = 4096;

// TLS and connections.
// Ciphertext moves in buffers this large: few system calls per GB, so the
// cost of the transport is close to that of AES-GCM alone.
inline constexpr std::size_t kCipherBufferBytes = 256u << 10;
// Plaintext handed to SSL_write at once (bounds the memory BIO's growth).
inline constexpr std::size_t kPlainWriteSliceBytes = 256u << 10;
// A message body buffer grows as bytes arrive, in steps of at most this, so a
// peer announcing a large body costs memory only as it actually sends it.
inline constexpr std::size_t kBodyGrowStepBytes = 8u << 20;
// The largest frame buffer a connection keeps for reuse (Connection::recycle):
// frames of the default chunk size and a little over, not the 64 MiB limit.
inline constexpr std::size_t kMaxSpareBodyBytes = 2 * kDefaultChunkBytes;
// The fixed-size fields before a frame that a connection reads apart.
inline constexpr std::size_t kMaxBulkLeadBytes = 16;
inline constexpr int kDefaultHandshakeTimeoutMs = 15'000;
inline constexpr int kDefaultIoTimeoutMs = 60'000;
inline constexpr int kDefaultConnectTimeoutMs = 10'000;
// How long a receiver's accept loop waits after accept() failed for want of
// resources (EMFILE, ENFILE, ENOMEM) before it tries again: served clients
// go on meanwhile, and the loop does not spin on the error.
inline constexpr int kAcceptRetryDelayMs = 100;
// Receiver connections (receiver.h). Only authenticated connections count
// against --max_connections: a peer without a certificate never holds a
// served slot. Handshakes in progress have their own budget; when it is full
// the oldest pending handshake is dropped for the new one, so a flood of
// connections that never finish TLS cannot lock a real host out, even one
// behind the same address.
inline constexpr std::size_t kMaxPendingHandshakes = 64;
// How long the receiver gives a peer to finish the TLS handshake (and then
// to send HELLO): a real host needs milliseconds, a WAN round trip or two.
inline constexpr int kDefaultReceiverHandshakeTimeoutMs = 5'000;
// Authenticated connections one namespace (host certificate) may hold at
// once (--max_connections_per_namespace): an agent uses its streams (4 by
// default) plus a control connection per target; restore as many streams.
inline constexpr std::size_t kDefaultMaxConnectionsPerNamespace = 16;
// A restore fetches the bases of delta frames (docs/FORMAT.md 3.1) on at
// most this many connections besides its streams, so that it stays within
// the receiver's default per-namespace budget above.
inline constexpr std::size_t kMaxBaseFetchConnections = 4;
// Snapshots whose chain facts (replication/delta_base_choice.h) a process
// keeps, so that the next push's base choice fetches no manifest twice: a
// few hundred bytes each.
inline constexpr std::size_t kMaxCachedChainSnapshots = 4096;
// How often the receiver checks whether its CRL file changed, and reloads
// its TLS files when it did (--crl_reload_s); SIGHUP reloads at once.
inline constexpr int kDefaultCrlReloadIntervalMs = 60'000;
// Certificate revocation lists made by `ferry certs --revoke`: valid as long
// as a CA by default (a CRL past its nextUpdate refuses every peer).
inline constexpr int kDefaultCrlDays = 3650;
// The largest CRL file a process loads.
inline constexpr std::size_t kMaxCrlFileBytes = 64u << 20;

// Replies that name snapshots (LIST_REPLY pages; protocol version 2) hold at
// most this many, and at most kMaxListPageBytes of body: a namespace with
// many snapshots is listed over several requests, never in one message whose
// size a host controls.
inline constexpr std::size_t kMaxListPageSnapshots = 4096;
inline constexpr std::size_t kMaxListPageBytes = 1u << 20;
// REMOVED names at most this many snapshots (the counts freed stay exact):
// a prune of more says how many it left unnamed (protocol version 2).
inline constexpr std::size_t kMaxRemovedNamesInReply = 4096;

// Queue depth of the per-connection engine (a send and a recv at most, plus
// a cancel); small rings keep many connections cheap.
inline constexpr unsigned kConnectionQueueDepth = 8;

// Restore into memory (device_restore.h, restore_plan.h).
// GPU engines (each with its own stream and arena) decoding windows at once:
// one window's copy over PCIe overlaps another's decode.
inline constexpr std::size_t kRestoreGpuLanes = 2;
// Staging slots per lane: one being read while one decodes.
inline constexpr std::size_t kRestoreSlotsPerLane = 2;
// Pinned memory of each lane's GPU engine: its frames are already in device
// memory, so the pool only ever holds frame headers it has to copy back.
inline constexpr std::size_t kRestoreEnginePinnedBytes = 1u << 20;

// Certificates made by `ferry certs`.
inline constexpr int kDefaultCertDays = 825;
inline constexpr int kDefaultCaDays = 3650;

}  // namespace ferry::replication
