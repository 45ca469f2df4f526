// io_limits.h: every limit and default of the io/ layer, in one place.
#pragma once

#include <cstddef>

#include "base/limits.h"

namespace ferry::io {

// O_DIRECT alignment of offsets, lengths and buffers: base/limits.h.
inline constexpr std::size_t kDirectAlignBytes = ::ferry::kDirectAlignBytes;

inline constexpr unsigned kDefaultQueueDepth = 64;
inline constexpr unsigned kMaxQueueDepth = 4096;

// The fallback's worker threads: enough to keep a few files and sockets busy
// without taking the host's few free cores from training.
inline constexpr unsigned kDefaultFallbackThreads = 4;
inline constexpr unsigned kMaxFallbackThreads = 64;

// Slots in io_uring's registered file table.
inline constexpr unsigned kRegisteredFileSlots = 256;

// The fallback's socket waiter wakes at least this often to notice
// cancellations and deadlines it was not woken for.
inline constexpr int kFallbackPollSliceMs = 100;

inline constexpr int kListenBacklog = 128;

// io_uring multishot receive: the provided buffer ring shared by the
// engine's sockets. A buffer goes back to the kernel as soon as its bytes
// are copied out, so a few suffice; large ones mean fewer completions per
// GB (on loopback 1 MiB buffers received about twice as fast as 64 KiB ones).
inline constexpr unsigned kRecvRingBuffers = 8;  // a power of two
inline constexpr std::size_t kRecvRingBufferBytes = 1 << 20;
inline constexpr unsigned short kRecvBufferGroup = 0;
// A recv_all with at least this much left to fill, at the head of its
// socket's queue with nothing stashed, goes straight into the caller's
// buffer (one MSG_WAITALL recv) instead of through the ring: one copy
// instead of two for large whole-buffer receives.
inline constexpr std::size_t kDirectRecvMinBytes = 256 << 10;

// io_uring: sends of one socket linked into one chain at most. Longer chains
// gain nothing once the socket buffer is full, and each member takes up to
// two submission entries that must all fit one submit.
inline constexpr unsigned kMaxSendChain = 32;

}  // namespace ferry::io
