// manifest.h: the snapshot manifest (docs/FORMAT.md section 5). One manifest
// describes one checkpoint: who made it (host, job, step, time) and, per
// file, its path, size, mode, mtime, file root, tensor layout where known and
// its chunks in order. It is written last, so its presence means every chunk
// it names is stored. Manifests arrive from disk and from the network, so
// parse_manifest treats its input as hostile: every count and length is
// checked against a named limit before anything is allocated, paths are
// confined to the snapshot (no absolute paths, no ".."), and the chunks of a
// file must tile it exactly.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "codec/dtype.h"
#include "codec/frame.h"
#include "codec/tree_hash.h"

namespace ferry {

inline constexpr std::uint8_t kManifestMagic[4] = {0x46, 0x52, 0x59, 0x4d};  // "FRYM"
// Version 2 adds the snapshot's origin (SnapshotOrigin) after the files; a
// writer emits version 1, byte for byte as before, when the origin is unset.
inline constexpr std::uint8_t kManifestVersion = 2;
inline constexpr std::uint8_t kManifestVersionWithoutOrigin = 1;
inline constexpr std::size_t kManifestHeaderBytes = 24;

// Limits on a manifest (a 70B checkpoint has ~200k chunks of 4 MiB, about
// 16 MB of manifest; these leave room without letting a hostile length
// allocate gigabytes).
inline constexpr std::uint64_t kMaxManifestBodyBytes = 512u << 20;
inline constexpr std::uint32_t kMaxManifestFiles = 1u << 20;
inline constexpr std::uint32_t kMaxFileChunks = 1u << 24;  // 64 TiB at 4 MiB chunks
inline constexpr std::uint32_t kMaxFileTensors = 1u << 20;
inline constexpr std::size_t kMaxPathBytes = 4096;  // PATH_MAX on Linux
inline constexpr std::size_t kMaxTensorNameBytes = 4096;
inline constexpr std::size_t kMaxDTypeNameBytes = 32;
inline constexpr std::size_t kMaxHostBytes = 255;  // HOST_NAME_MAX is 64; leave room for FQDNs
inline constexpr std::size_t kMaxJobBytes = 1024;
// A base snapshot's name (the store's snapshot names: store/chunk_store.h).
inline constexpr std::size_t kMaxBaseSnapshotBytes = 128;

enum class LayoutKind : std::uint8_t {
  kUnknown = 0,
  kSafetensors = 1,
};
std::string_view layout_name(LayoutKind k);  // "unknown", "safetensors"

struct ManifestTensor {
  std::string name;
  std::string dtype;                 // the layout's own name ("BF16", "F32", "I64", ...)
  std::vector<std::uint64_t> shape;  // at most kMaxTensorRank dimensions
  std::uint64_t begin = 0;           // absolute byte offsets in the file, begin <= end <= size
  std::uint64_t end = 0;
};

struct ManifestChunk {
  std::uint64_t offset = 0;  // in the file; chunks are consecutive and tile it
  std::uint32_t length = 0;  // 1 .. kMaxChunkBytes
  Digest id{};
  Digest base_id{};  // a delta frame's base chunk (codec ids 16-18, FORMAT.md 3.1); all zero otherwise
  DType dtype = DType::kBytes;
  std::uint8_t codec = 0;         // frame codec id (codec/frame.h)
  std::uint32_t frame_bytes = 0;  // the whole frame: 88-byte header + payload
};

struct ManifestFile {
  std::string path;  // relative, '/'-separated; see validate_relative_path
  std::uint64_t size = 0;
  std::uint32_t mode = 0;     // permission bits only (& 07777)
  std::int64_t mtime_ns = 0;  // nanoseconds since the Unix epoch
  Digest root{};              // Merkle root over all the file's leaf hashes
  LayoutKind layout = LayoutKind::kUnknown;
  std::vector<ManifestTensor> tensors;
  std::vector<ManifestChunk> chunks;
};

// Whether a snapshot's chunks may be delta frames (docs/FORMAT.md 3.1, 5).
enum class SnapshotKind : std::uint8_t {
  kUnrecorded = 0,  // a version 1 manifest, or one packed without a push (`ferry pack`)
  kKey = 1,         // pushed without a delta base: restore reads one frame per chunk it coded
  kDelta = 2,       // pushed with a delta base and at least one chunk listed as a delta frame
};
std::string_view snapshot_kind_name(SnapshotKind k);  // "-", "key", "delta"

// Where a pushed snapshot came from and what it was coded against, so that a
// later push of the same job can find its delta base at the target
// (codec/delta_chain.h). Informational for restore: each delta chunk names
// its own base chunk by id.
struct SnapshotOrigin {
  // The absolute path of the directory (or file) pushed, on `Manifest::host`;
  // empty when not recorded.
  std::string source_dir;
  SnapshotKind kind = SnapshotKind::kUnrecorded;
  // kDelta: the snapshot at the same target whose source directory gave the
  // bases ("" when the base directory matched no snapshot there).
  std::string base_snapshot;
  // kDelta: 1 + the base snapshot's depth (a key has 0), at most
  // kMaxDeltaChainSnapshots (codec/limits.h); kKey and kUnrecorded: 0.
  std::uint8_t chain_depth = 0;

  bool recorded() const { return !source_dir.empty() || kind != SnapshotKind::kUnrecorded; }
  bool operator==(const SnapshotOrigin&) const = default;
};

struct Manifest {
  std::string host;
  std::string job;
  std::uint64_t step = 0;
  std::int64_t created_ns = 0;      // nanoseconds since the Unix epoch
  std::vector<ManifestFile> files;  // strictly ascending by path (bytewise)
  SnapshotOrigin origin;            // version 2 only; default in a version 1 manifest

  std::uint64_t logical_bytes() const;
  // Sum of every chunk's frame_bytes: what the snapshot's frames take,
  // whether or not this push sent them.
  std::uint64_t frame_bytes() const;
  // True when some chunk is listed as a delta frame.
  bool has_delta_chunks() const;
  std::size_t chunk_count() const;
};

// Every chunk of a manifest in file order, numbered from 0, as the readers
// that fetch frames ahead of a restore count them. The manifest must
// outlive it.
class ChunksInOrder {
 public:
  explicit ChunksInOrder(const Manifest& m);
  std::size_t size() const { return chunks_.size(); }
  const ManifestChunk& operator[](std::size_t i) const { return *chunks_[i]; }
  // The number of chunk `chunk` of file `file`.
  std::size_t index(std::size_t file, std::size_t chunk) const { return first_[file] + chunk; }

 private:
  std::vector<const ManifestChunk*> chunks_;
  std::vector<std::size_t> first_;  // per file: the number of its first chunk
};

// True when chunks of these lengths (in file order) are all one power-of-two
// number of 4 KiB leaves, except the last, which may be shorter (or when
// there is one chunk). Each chunk
// id is then a complete subtree of the file's Merkle tree, so the file root
// is merkle_root(chunk ids) (docs/FORMAT.md section 2) and neither packing
// nor verifying needs the file's leaf hashes all at once.
bool root_composes_from_chunk_ids(std::span<const std::uint32_t> chunk_lengths);

// OK when `path` is a relative path that stays inside the snapshot: not empty,
// at most kMaxPathBytes, no leading '/', no NUL, and no empty, "." or ".."
// component. InvalidArgument naming the path otherwise.
Status validate_relative_path(std::string_view path);

// Checks everything parse_manifest checks, on an in-memory manifest (a writer
// calls it before serialising, so it never writes what a reader would refuse).
Status validate_manifest(const Manifest& m);

// Serialises `m` (which must pass validate_manifest) into bytes.
std::vector<std::byte> serialize_manifest(const Manifest& m);

// Parses and fully validates a manifest. Any defect is Corruption, or
// Unsupported for a newer version; never a crash, whatever the input.
Result<Manifest> parse_manifest(std::span<const std::byte> bytes);

// OK when `frame`'s header parses and agrees with its manifest entry `c`
// (raw bytes, codec); else Corruption, as a frame that disagrees with its
// manifest is damage in the snapshot, not a caller's mistake. A reader
// checks this before it decodes into a buffer sized from `c`.
Status check_frame_header(std::span<const std::byte> frame, const ManifestChunk& c);

}  // namespace ferry
