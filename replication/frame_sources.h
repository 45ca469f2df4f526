// frame_sources.h: where a restore's frames come from, named by one string:
// "PATH.ferry" (a local archive, read with pread from many threads),
// "store:DIR/NAMESPACE/SNAPSHOT" (a receiver's local store, read in place;
// the store's lock means the receiver must not be running on it),
// "s3://BUCKET[/PREFIX]/NAMESPACE/SNAPSHOT" (a bucket, read straight: the
// same as "store:s3://BUCKET[/PREFIX]/NAMESPACE/SNAPSHOT") or
// "ferry://HOST:PORT/SNAPSHOT" (a DR receiver over mTLS with parallel
// streams). open_frame_source opens one; parse_source_location only parses,
// so that the CLI and tests can check a location first.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "base/status.h"
#include "codec/unpacker.h"
#include "replication/restore.h"
#include "replication/tls.h"

namespace ferry::replication {

inline constexpr std::string_view kStoreLocationPrefix = "store:";
inline constexpr std::string_view kRemoteLocationPrefix = "ferry://";
// A remote source fetches at most this many chunks ahead of the first frame
// its reader has not taken (plus a batch per stream), so a reader must ask
// for chunks within this window of it (restore_to_device does).
inline constexpr std::size_t kSourceWindowChunks = 64;

struct SourceLocation {
  enum class Kind : std::uint8_t { kArchive, kStore, kRemote } kind = Kind::kArchive;
  std::string path;      // kArchive: the archive; kStore: the store's directory
  std::string ns;        // kStore: the namespace
  std::string snapshot;  // kStore, kRemote
  std::string address;   // kRemote: HOST:PORT
};

// A source that can also read a frame straight into the caller's memory (a
// pinned staging slot), saving a copy through a vector: a local archive
// does, with one pread. `out` is exactly the manifest's frame_bytes.
class DirectFrameSource : public FrameSource {
 public:
  virtual Status read_frame_into(std::size_t file, std::size_t chunk, std::span<std::byte> out) const = 0;
};

// Parses a location (syntax only: nothing is opened). InvalidArgument naming
// the text and the expected forms otherwise.
Result<SourceLocation> parse_source_location(std::string_view location);

// Where a snapshot comes from: "PATH.ferry" (a local archive),
// "store:DIR/NAMESPACE/SNAPSHOT" (a receiver's local store),
// "s3://BUCKET[/PREFIX]/NAMESPACE/SNAPSHOT" (a bucket; credentials from the
// AWS_* environment or ~/.aws),
// "ferry://HOST:PORT/SNAPSHOT" (a DR receiver over mTLS; tls from the options).
// A store source's fetchers each read at most this many chunks ahead of the
// first frame the reader has not taken (read_ahead.h).
inline constexpr std::size_t kReadAheadChunksPerFetcher = 4;

struct SourceOptions {
  TlsConfig tls;
  // A receiver: its parallel mTLS streams; a store (an s3:// bucket above
  // all): the threads that fetch frames ahead of the decoding threads, so
  // the GETs in flight.
  std::size_t streams = kDefaultRestoreStreams;
};
Result<std::unique_ptr<FrameSource>> open_frame_source(std::string_view location,
                                                       const SourceOptions& options = {});

}  // namespace ferry::replication
