// frame_sources.cc: see frame_sources.h. Opens the three kinds of frame
// source behind one location string; each source owns what it reads from
// (the archive, the store, the remote streams).
#include "replication/frame_sources.h"

#include <fcntl.h>

#include <filesystem>
#include <system_error>
#include <utility>

#include "base/posix_file.h"
#include "codec/archive.h"
#include "codec/manifest.h"
#include "replication/device_restore.h"
#include "replication/read_ahead.h"
#include "store/chunk_store.h"
#include "store/open_store.h"
#include "store/s3_store.h"

namespace ferry::replication {
namespace {

Status bad_location(std::string_view location, std::string_view why) {
  return Status::invalid_argument("source \"" + std::string(location) + "\": " + std::string(why) +
                                  " (expected PATH.ferry, store:DIR/NAMESPACE/SNAPSHOT, "
                                  "s3://BUCKET[/PREFIX]/NAMESPACE/SNAPSHOT or ferry://HOST:PORT/SNAPSHOT)");
}

class OwnedArchiveSource final : public DirectFrameSource {
 public:
  OwnedArchiveSource(ArchiveReader archive, UniqueFd fd) : archive_(std::move(archive)), fd_(std::move(fd)) {}
  const Manifest& manifest() const override { return archive_.manifest(); }
  std::string describe() const override { return archive_.path().string(); }
  Status read_frame(std::size_t file, std::size_t chunk, std::vector<std::byte>& out) const override {
    return archive_.read_frame(file, chunk, out);
  }
  Status read_frame_into(std::size_t file, std::size_t chunk, std::span<std::byte> out) const override {
    if (out.size() != manifest().files[file].chunks[chunk].frame_bytes) {
      return Status::internal("read_frame_into: buffer is not the frame's size");
    }
    return pread_exact(fd_.get(), out, archive_.frame_offset(file, chunk), archive_.path());
  }

 private:
  ArchiveReader archive_;
  UniqueFd fd_;  // the reader's own is private; pread needs no shared offset
};

class StoreFrameSource final : public FrameSource {
 public:
  // `fetchers` threads read frames ahead of the reader (read_ahead.h); 0:
  // the reader's threads fetch what they decode.
  StoreFrameSource(std::unique_ptr<ChunkStore> store, SourceLocation where, Manifest manifest,
                   std::size_t fetchers)
      : store_(std::move(store)), where_(std::move(where)), manifest_(std::move(manifest)),
        chunks_(manifest_) {
    if (fetchers > 0) {
      read_ahead_ = std::make_unique<ReadAhead>(
          chunks_.size(), fetchers, kReadAheadChunksPerFetcher * fetchers,
          [this](std::size_t i, LentBytes& lent) { return store_->lend(where_.ns, chunks_[i].id, lent); });
    }
  }
  const Manifest& manifest() const override { return manifest_; }
  std::string describe() const override {
    return "store " + where_.path + " namespace " + where_.ns + " snapshot " + where_.snapshot;
  }
  Status read_frame(std::size_t file, std::size_t chunk, std::vector<std::byte>& out) const override {
    if (!read_ahead_) return read_chunk_frame(manifest_.files[file].chunks[chunk].id, out);
    LentBytes lent;
    RETURN_IF_ERROR(read_ahead_->take(chunks_.index(file, chunk), lent));
    out.assign(lent.bytes.begin(), lent.bytes.end());
    return Status::ok();
  }
  Result<bool> lend_frame(std::size_t file, std::size_t chunk, LentBytes& lent) const override {
    // In place in the store's read window (an S3 store): the decoder reads
    // the frame where the GET put it.
    if (read_ahead_)
      RETURN_IF_ERROR(read_ahead_->take(chunks_.index(file, chunk), lent));
    else
      RETURN_IF_ERROR(store_->lend(where_.ns, manifest_.files[file].chunks[chunk].id, lent));
    return true;
  }
  Status read_chunk_frame(const Digest& id, std::vector<std::byte>& out) const override {
    // Into the caller's buffer: the unpacker reuses one per slot, so that
    // each frame lands in memory already faulted in.
    return store_->get_into(where_.ns, id, out);
  }

 private:
  std::unique_ptr<ChunkStore> store_;
  SourceLocation where_;
  Manifest manifest_;
  const ChunksInOrder chunks_;
  std::unique_ptr<ReadAhead> read_ahead_;  // last: its fetchers use the members above
};

}  // namespace

Result<SourceLocation> parse_source_location(std::string_view location) {
  SourceLocation out;
  if (location.empty()) return bad_location(location, "empty");
  if (location.starts_with(kRemoteLocationPrefix)) {
    std::string_view rest = location.substr(kRemoteLocationPrefix.size());
    const auto slash = rest.find('/');
    if (slash == std::string_view::npos || slash == 0) return bad_location(location, "no HOST:PORT/SNAPSHOT");
    out.kind = SourceLocation::Kind::kRemote;
    out.address = std::string(rest.substr(0, slash));
    out.snapshot = std::string(rest.substr(slash + 1));
    if (out.address.find(':') == std::string::npos) return bad_location(location, "the address has no port");
    RETURN_IF_ERROR(
        validate_snapshot_name(out.snapshot).with_context("source \"" + std::string(location) + "\""));
    return out;
  }
  if (location.starts_with(kStoreLocationPrefix)) {
    std::string_view rest = location.substr(kStoreLocationPrefix.size());
    while (rest.size() > 1 && rest.back() == '/') rest.remove_suffix(1);
    const auto last = rest.rfind('/');
    if (last == std::string_view::npos) return bad_location(location, "no NAMESPACE/SNAPSHOT");
    const auto mid = rest.substr(0, last).rfind('/');
    if (mid == std::string_view::npos || mid == 0) return bad_location(location, "no DIR/NAMESPACE/SNAPSHOT");
    out.kind = SourceLocation::Kind::kStore;
    out.path = std::string(rest.substr(0, mid));
    out.ns = std::string(rest.substr(mid + 1, last - mid - 1));
    out.snapshot = std::string(rest.substr(last + 1));
    const std::string ctx = "source \"" + std::string(location) + "\"";
    RETURN_IF_ERROR(validate_namespace(out.ns).with_context(ctx));
    RETURN_IF_ERROR(validate_snapshot_name(out.snapshot).with_context(ctx));
    return out;
  }
  if (is_s3_url(location)) {
    // A bucket read straight: the store s3://BUCKET[/PREFIX], then the
    // namespace and the snapshot, as `ferry restore --from=s3://` names them.
    std::string_view rest = location;
    while (rest.size() > 1 && rest.back() == '/') rest.remove_suffix(1);
    const auto last = rest.rfind('/');
    const auto mid = last == std::string_view::npos ? last : rest.substr(0, last).rfind('/');
    if (mid == std::string_view::npos || mid < 5)
      return bad_location(location, "no BUCKET/NAMESPACE/SNAPSHOT");
    out.kind = SourceLocation::Kind::kStore;
    out.path = std::string(rest.substr(0, mid));
    out.ns = std::string(rest.substr(mid + 1, last - mid - 1));
    out.snapshot = std::string(rest.substr(last + 1));
    const std::string ctx = "source \"" + std::string(location) + "\"";
    RETURN_IF_ERROR(parse_s3_url(out.path).status().with_context(ctx));
    RETURN_IF_ERROR(validate_namespace(out.ns).with_context(ctx));
    RETURN_IF_ERROR(validate_snapshot_name(out.snapshot).with_context(ctx));
    return out;
  }
  if (location.find("://") != std::string_view::npos) return bad_location(location, "unknown scheme");
  out.kind = SourceLocation::Kind::kArchive;
  out.path = std::string(location);
  return out;
}

Result<std::unique_ptr<FrameSource>> open_frame_source(std::string_view location,
                                                       const SourceOptions& options) {
  ASSIGN_OR_RETURN(SourceLocation where, parse_source_location(location));
  switch (where.kind) {
    case SourceLocation::Kind::kArchive: {
      ASSIGN_OR_RETURN(ArchiveReader archive, ArchiveReader::open(where.path));
      ASSIGN_OR_RETURN(UniqueFd fd, open_fd(where.path, O_RDONLY | O_CLOEXEC));
      return std::unique_ptr<FrameSource>(
          std::make_unique<OwnedArchiveSource>(std::move(archive), std::move(fd)));
    }
    case SourceLocation::Kind::kStore: {
      // Opening a local store creates it when absent; a restore must not.
      std::error_code ec;
      if (!is_s3_url(where.path) && !std::filesystem::is_directory(where.path, ec)) {
        return Status::not_found("store " + where.path + ": no such directory");
      }
      ASSIGN_OR_RETURN(std::unique_ptr<ChunkStore> store, open_store(where.path));
      auto bytes = store->manifest(where.ns, where.snapshot);
      if (!bytes) {
        return bytes.status().with_context("store " + where.path + " namespace " + where.ns + " snapshot " +
                                           where.snapshot);
      }
      auto manifest = parse_manifest(*bytes);
      if (!manifest) {
        return manifest.status().with_context("store " + where.path + ": manifest of " + where.ns + "/" +
                                              where.snapshot);
      }
      return std::unique_ptr<FrameSource>(std::make_unique<StoreFrameSource>(
          std::move(store), std::move(where), std::move(*manifest), options.streams));
    }
    case SourceLocation::Kind::kRemote: {
      RemoteOptions remote;
      remote.address = where.address;
      remote.tls = options.tls;
      return open_remote_frame_source(remote, where.snapshot, options.streams, kSourceWindowChunks);
    }
  }
  return Status::internal("unknown source kind");
}

}  // namespace ferry::replication
