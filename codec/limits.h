// limits.h: every size limit of the chunk and frame formats, in one place.
// Decoders check input against these before trusting a length: a limit that
// is not written down is a denial of service waiting to happen.
#pragma once

#include <cstddef>
#include <cstdint>

namespace ferry {

inline constexpr std::size_t kLeafBytes = 4096;              // Merkle leaf size
inline constexpr std::size_t kDefaultChunkBytes = 4u << 20;  // 4 MiB
inline constexpr std::size_t kMinChunkBytes = kLeafBytes;    // a power of two times 4 KiB
inline constexpr std::size_t kMaxChunkBytes = 64u << 20;     // 64 MiB
inline constexpr std::size_t kFrameHeaderBytes = 88;
// A frame's payload never exceeds its raw size (raw fallback), so this also
// bounds any frame a decoder will accept.
inline constexpr std::size_t kMaxFrameBytes = kFrameHeaderBytes + kMaxChunkBytes;

// Float codec (docs/FORMAT.md, "Float payload").
inline constexpr std::size_t kRansBlockSymbols = 16384;  // one GPU warp owns one block
inline constexpr int kRansLanes = 32;                    // interleaved states per block
inline constexpr int kRansProbBits = 12;                 // frequencies sum to 4096
inline constexpr std::uint32_t kRansProbScale = 1u << kRansProbBits;
inline constexpr std::uint32_t kRansStateLow = 1u << 16;  // L: states live in [L, 2^32)
// Version 2 payloads (docs/FORMAT.md section 4.2): blocks of 65536 symbols
// (the 128 bytes of final states spread over four times as many symbols),
// a table chosen per segment of 16384 symbols from at most 16 per plane.
inline constexpr std::size_t kRansV2BlockSymbols = 65536;
inline constexpr std::size_t kRansV2SegmentSymbols = 16384;
inline constexpr int kRansV2MaxTables = 16;
// FloatEncoder's computed input (a delta's transform) is made and split
// into planes this many bytes at a time: half of a 32 KiB L1 data cache; a
// multiple of 64 elements of every width, as the AVX-512 plane split takes.
inline constexpr std::size_t kFillStretchBytes = 16 * 1024;

// Delta frames (docs/FORMAT.md 3.1): rebuilding one chunk reads at most
// this many frames (the chunk's, its base's, the base's base, ...), so a
// chain of deltas, or a cycle in hostile input, cannot make a restore or a
// scrub read without end.
inline constexpr int kMaxDeltaChainFrames = 8;
// Snapshots in one delta chain (`--delta=previous`): a snapshot at depth d
// is coded against one at depth d - 1, down to a key snapshot at depth 0, so
// rebuilding one of its chunks reads at most d + 1 frames; a push that would
// go deeper pushes a key snapshot instead (codec/delta_chain.h).
inline constexpr int kMaxDeltaChainSnapshots = kMaxDeltaChainFrames - 1;
static_assert(kMaxDeltaChainSnapshots + 1 <= kMaxDeltaChainFrames,
              "a chain of snapshots must stay within what restore follows");

// safetensors: the official format caps the JSON header at 100,000,000 bytes.
inline constexpr std::uint64_t kMaxSafetensorsHeaderBytes = 100'000'000;
inline constexpr std::size_t kMaxTensorRank = 16;

}  // namespace ferry
