// archive.cc: the `.ferry` container; see archive.h and docs/FORMAT.md
// section 6.
#include "codec/archive.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <unordered_set>

#include "base/crc32c.h"
#include "codec/limits.h"

namespace ferry {
namespace {

void store_le(std::byte* p, std::uint64_t v, int n) {
  for (int i = 0; i < n; ++i) p[i] = std::byte(static_cast<std::uint8_t>(v >> (8 * i)));
}
std::uint64_t load_le(const std::byte* p, int n) {
  std::uint64_t v = 0;
  for (int i = 0; i < n; ++i) v |= std::uint64_t{std::to_integer<std::uint8_t>(p[i])} << (8 * i);
  return v;
}

struct Trailer {
  std::uint64_t manifest_offset = 0;
  std::uint64_t manifest_bytes = 0;
  std::uint64_t index_offset = 0;
  std::uint64_t chunk_count = 0;
  std::uint32_t index_crc = 0;  // masked
};

std::array<std::byte, kArchiveTrailerBytes> encode_trailer(const Trailer& t) {
  std::array<std::byte, kArchiveTrailerBytes> b{};
  store_le(b.data() + 0, t.manifest_offset, 8);
  store_le(b.data() + 8, t.manifest_bytes, 8);
  store_le(b.data() + 16, t.index_offset, 8);
  store_le(b.data() + 24, t.chunk_count, 8);
  store_le(b.data() + 32, t.index_crc, 4);
  store_le(b.data() + 36, 0, 4);  // reserved
  store_le(b.data() + 40, mask_crc(crc32c(std::span<const std::byte>(b.data(), 40))), 4);
  std::memcpy(b.data() + 44, kTrailerMagic, sizeof(kTrailerMagic));
  return b;
}

std::vector<std::byte> encode_index(std::span<const std::uint64_t> offsets) {
  std::vector<std::byte> out(offsets.size() * kFrameIndexEntryBytes);
  for (std::size_t i = 0; i < offsets.size(); ++i) {
    store_le(out.data() + i * kFrameIndexEntryBytes, offsets[i], 8);
  }
  return out;
}

}  // namespace

std::size_t ArchiveWriter::DigestHash::operator()(const Digest& d) const {
  // Chunk ids are SHA-256 outputs: any 8 bytes are already uniform.
  std::size_t h;
  std::memcpy(&h, d.data(), sizeof(h));
  return h;
}

Result<ArchiveWriter> ArchiveWriter::create(const std::filesystem::path& target) {
  ArchiveWriter w;
  ASSIGN_OR_RETURN(w.file_, AtomicFile::create(target));
  std::array<std::byte, kArchiveHeaderBytes> header{};
  std::memcpy(header.data(), kArchiveMagic, sizeof(kArchiveMagic));
  header[4] = std::byte{kArchiveVersion};  // bytes 5..7: flags and reserved, zero
  RETURN_IF_ERROR(w.append(header));
  return w;
}

Status ArchiveWriter::append(std::span<const std::byte> data) {
  RETURN_IF_ERROR(pwrite_all(file_.fd(), data, offset_, file_.temp_path()));
  offset_ += data.size();
  return Status::ok();
}

Status ArchiveWriter::put_frame(const ManifestFile& /*file*/, const ManifestChunk& chunk,
                                std::span<const std::byte> frame) {
  FERRY_CHECK(frame.size() == chunk.frame_bytes);
  auto [it, inserted] = offsets_by_id_.try_emplace(chunk.id, offset_);
  index_.push_back(it->second);
  if (!inserted) {
    ++deduplicated_;
    return Status::ok();
  }
  ++stored_;
  return append(frame);
}

Status ArchiveWriter::finish(const Manifest& manifest) {
  if (manifest.chunk_count() != index_.size()) {
    return Status::internal("archive " + file_.target().string() + ": manifest lists " +
                            std::to_string(manifest.chunk_count()) + " chunks, " +
                            std::to_string(index_.size()) + " frames were written");
  }
  RETURN_IF_ERROR(validate_manifest(manifest));
  Trailer t;
  t.manifest_offset = offset_;
  std::vector<std::byte> m = serialize_manifest(manifest);
  t.manifest_bytes = m.size();
  RETURN_IF_ERROR(append(m));
  t.index_offset = offset_;
  t.chunk_count = index_.size();
  std::vector<std::byte> index = encode_index(index_);
  t.index_crc = mask_crc(crc32c(index));
  RETURN_IF_ERROR(append(index));
  RETURN_IF_ERROR(append(encode_trailer(t)));
  return file_.commit();
}

namespace {

// Checks the header and the trailer and returns the layout the trailer
// describes, proven to fit inside a file of `size` bytes.
Result<Trailer> read_trailer(int fd, const std::filesystem::path& path, std::uint64_t size) {
  const std::string name = path.string();
  auto corrupt = [&](const std::string& what) { return Status::corruption(name + ": " + what); };
  if (size < kArchiveHeaderBytes + kArchiveTrailerBytes) {
    return corrupt("truncated or not a ferry archive (" + std::to_string(size) +
                   " bytes, too short for a header and trailer)");
  }
  std::array<std::byte, kArchiveHeaderBytes> header{};
  RETURN_IF_ERROR(pread_exact(fd, header, 0, path));
  if (std::memcmp(header.data(), kArchiveMagic, sizeof(kArchiveMagic)) != 0) {
    return corrupt("not a ferry archive (bad magic)");
  }
  if (std::to_integer<std::uint8_t>(header[4]) != kArchiveVersion) {
    return Status::unsupported(name + ": archive version " + std::to_string(std::to_integer<int>(header[4])) +
                               " (this build reads " + std::to_string(kArchiveVersion) + ")");
  }
  if (load_le(header.data() + 5, 3) != 0) return corrupt("archive flags or reserved bytes not zero");

  std::array<std::byte, kArchiveTrailerBytes> tb{};
  RETURN_IF_ERROR(pread_exact(fd, tb, size - kArchiveTrailerBytes, path));
  if (std::memcmp(tb.data() + 44, kTrailerMagic, sizeof(kTrailerMagic)) != 0 ||
      mask_crc(crc32c(std::span<const std::byte>(tb.data(), 40))) != load_le(tb.data() + 40, 4)) {
    return corrupt("no valid trailer: the archive is truncated or was not finished");
  }
  Trailer t{load_le(tb.data(), 8), load_le(tb.data() + 8, 8), load_le(tb.data() + 16, 8),
            load_le(tb.data() + 24, 8), static_cast<std::uint32_t>(load_le(tb.data() + 32, 4))};
  const std::uint64_t index_end = size - kArchiveTrailerBytes;
  if (load_le(tb.data() + 36, 4) != 0 || t.manifest_offset < kArchiveHeaderBytes ||
      t.manifest_bytes > kManifestHeaderBytes + kMaxManifestBodyBytes || t.manifest_offset > index_end ||
      t.manifest_bytes > index_end - t.manifest_offset ||
      t.index_offset != t.manifest_offset + t.manifest_bytes ||
      (index_end - t.index_offset) / kFrameIndexEntryBytes != t.chunk_count ||
      (index_end - t.index_offset) % kFrameIndexEntryBytes != 0) {
    return corrupt("trailer describes an impossible layout (manifest at " +
                   std::to_string(t.manifest_offset) + ", " + std::to_string(t.manifest_bytes) + " bytes; " +
                   std::to_string(t.chunk_count) + " index entries)");
  }
  return t;
}

}  // namespace

Result<ArchiveReader> ArchiveReader::open(const std::filesystem::path& path) {
  ArchiveReader r;
  r.path_ = path;
  const std::string name = path.string();
  ASSIGN_OR_RETURN(r.fd_, open_fd(path, O_RDONLY));
  struct stat st {};
  if (::fstat(r.fd_.get(), &st) != 0) return Status::from_errno(errno, "stat " + name);
  if (!S_ISREG(st.st_mode)) return Status::invalid_argument(name + ": not a regular file");
  r.archive_bytes_ = static_cast<std::uint64_t>(st.st_size);
  auto corrupt = [&](const std::string& what) { return Status::corruption(name + ": " + what); };
  ASSIGN_OR_RETURN(const Trailer t, read_trailer(r.fd_.get(), path, r.archive_bytes_));

  std::vector<std::byte> mbytes(t.manifest_bytes);
  RETURN_IF_ERROR(pread_exact(r.fd_.get(), mbytes, t.manifest_offset, path));
  auto parsed = parse_manifest(mbytes);
  if (!parsed) return parsed.status().with_context(name);
  r.manifest_ = std::move(parsed).value();
  if (r.manifest_.chunk_count() != t.chunk_count) {
    return corrupt("frame index has " + std::to_string(t.chunk_count) + " entries, manifest lists " +
                   std::to_string(r.manifest_.chunk_count()) + " chunks");
  }
  RETURN_IF_ERROR(r.load_index(t.index_offset, t.manifest_offset, t.index_crc));
  return r;
}

Status ArchiveReader::load_index(std::uint64_t index_offset, std::uint64_t frames_end,
                                 std::uint32_t index_crc) {
  const std::size_t count = manifest_.chunk_count();
  std::vector<std::byte> ibytes(count * kFrameIndexEntryBytes);
  RETURN_IF_ERROR(pread_exact(fd_.get(), ibytes, index_offset, path_));
  if (mask_crc(crc32c(ibytes)) != index_crc) {
    return Status::corruption(path_.string() + ": frame index CRC mismatch");
  }
  index_.resize(count);
  first_chunk_.reserve(manifest_.files.size());
  std::unordered_set<std::uint64_t> seen;
  std::size_t k = 0;
  for (const auto& f : manifest_.files) {
    first_chunk_.push_back(k);
    for (const auto& c : f.chunks) {
      std::uint64_t off = load_le(ibytes.data() + k * kFrameIndexEntryBytes, 8);
      if (off < kArchiveHeaderBytes || off > frames_end || c.frame_bytes > frames_end - off) {
        return Status::corruption(path_.string() + ": frame of chunk " + to_hex(c.id) + " (" + f.path +
                                  " offset " + std::to_string(c.offset) + ") lies outside the frame region");
      }
      index_[k++] = off;
      if (seen.insert(off).second) stored_frame_bytes_ += c.frame_bytes;
    }
  }
  return Status::ok();
}

std::uint64_t ArchiveReader::frame_offset(std::size_t file, std::size_t chunk) const {
  FERRY_CHECK(file < first_chunk_.size() && chunk < manifest_.files[file].chunks.size());
  return index_[first_chunk_[file] + chunk];
}

Status ArchiveReader::read_frame(std::size_t file, std::size_t chunk, std::vector<std::byte>& out) const {
  out.resize(manifest_.files[file].chunks[chunk].frame_bytes);
  return pread_exact(fd_.get(), out, frame_offset(file, chunk), path_);
}

}  // namespace ferry
