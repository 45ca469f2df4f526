// manifest.cc: serialising and parsing the snapshot manifest; see manifest.h
// and docs/FORMAT.md section 5 for the byte layout.
#include "codec/manifest.h"

#include "codec/byte_writer.h"

#include <cstring>
#include <string>

#include "base/crc32c.h"
#include "codec/limits.h"

namespace ferry {
namespace {

inline constexpr std::uint8_t kFirstDeltaCodec = 16;
inline constexpr std::uint8_t kLastDeltaCodec = 18;

// Smallest encodings of the repeated records, used to reject a count that
// cannot fit in the bytes that remain before reserving memory for it.
inline constexpr std::size_t kMinFileRecordBytes = 2 + 8 + 4 + 8 + 32 + 1 + 4 + 4;
inline constexpr std::size_t kMinTensorRecordBytes = 2 + 1 + 1 + 8 + 8;
inline constexpr std::size_t kChunkRecordBytes = 8 + 4 + 32 + 32 + 1 + 1 + 4;

using Writer = ByteWriter;

// Bounds-checked little-endian reader; every getter fails instead of reading
// past the end, and the message says at which body offset.
class Reader {
 public:
  explicit Reader(std::span<const std::byte> in) : in_(in) {}
  std::size_t remaining() const { return in_.size() - pos_; }
  std::size_t pos() const { return pos_; }

  Status need(std::size_t n, std::string_view what) const {
    if (remaining() < n) {
      return Status::corruption("manifest truncated reading " + std::string(what) + " at body offset " +
                                std::to_string(pos_));
    }
    return Status::ok();
  }
  Status u8(std::uint8_t& v, std::string_view what) {
    RETURN_IF_ERROR(need(1, what));
    v = std::to_integer<std::uint8_t>(in_[pos_++]);
    return Status::ok();
  }
  Status u16(std::uint16_t& v, std::string_view what) { return le(v, what); }
  Status u32(std::uint32_t& v, std::string_view what) { return le(v, what); }
  Status u64(std::uint64_t& v, std::string_view what) { return le(v, what); }
  Status i64(std::int64_t& v, std::string_view what) {
    std::uint64_t u = 0;
    RETURN_IF_ERROR(le(u, what));
    v = static_cast<std::int64_t>(u);
    return Status::ok();
  }
  Status str(std::string& s, std::size_t len, std::string_view what) {
    RETURN_IF_ERROR(need(len, what));
    s.assign(reinterpret_cast<const char*>(in_.data() + pos_), len);
    pos_ += len;
    return Status::ok();
  }
  Status str16(std::string& s, std::size_t max_len, std::string_view what) {
    std::uint16_t len = 0;
    RETURN_IF_ERROR(u16(len, what));
    if (len > max_len) {
      return Status::corruption("manifest " + std::string(what) + " length " + std::to_string(len) +
                                " exceeds limit " + std::to_string(max_len));
    }
    return str(s, len, what);
  }
  Status str8(std::string& s, std::size_t max_len, std::string_view what) {
    std::uint8_t len = 0;
    RETURN_IF_ERROR(u8(len, what));
    if (len > max_len) {
      return Status::corruption("manifest " + std::string(what) + " length " + std::to_string(len) +
                                " exceeds limit " + std::to_string(max_len));
    }
    return str(s, len, what);
  }
  Status digest(Digest& d, std::string_view what) {
    RETURN_IF_ERROR(need(d.size(), what));
    std::memcpy(d.data(), in_.data() + pos_, d.size());
    pos_ += d.size();
    return Status::ok();
  }
  // Checks that `count` records of at least `min_bytes` each can still fit.
  Status count_fits(std::uint64_t count, std::size_t min_bytes, std::string_view what) const {
    if (count > remaining() / min_bytes) {
      return Status::corruption("manifest " + std::string(what) + " count " + std::to_string(count) +
                                " does not fit in the " + std::to_string(remaining()) + " bytes left");
    }
    return Status::ok();
  }

 private:
  template <typename T>
  Status le(T& v, std::string_view what) {
    RETURN_IF_ERROR(need(sizeof(T), what));
    std::uint64_t x = 0;
    for (std::size_t i = 0; i < sizeof(T); ++i) {
      x |= std::uint64_t{std::to_integer<std::uint8_t>(in_[pos_ + i])} << (8 * i);
    }
    pos_ += sizeof(T);
    v = static_cast<T>(x);
    return Status::ok();
  }

  std::span<const std::byte> in_;
  std::size_t pos_ = 0;
};

std::uint32_t load_u32(const std::byte* p) {
  std::uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= std::uint32_t{std::to_integer<std::uint8_t>(p[i])} << (8 * i);
  return v;
}
std::uint64_t load_u64(const std::byte* p) {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= std::uint64_t{std::to_integer<std::uint8_t>(p[i])} << (8 * i);
  return v;
}

bool is_zero(const Digest& d) {
  for (auto b : d) {
    if (b) return false;
  }
  return true;
}

bool codec_id_allowed(std::uint8_t id) {
  return codec_known(id) || (id >= kFirstDeltaCodec && id <= kLastDeltaCodec);
}

std::string quoted(std::string_view s) { return "\"" + std::string(s) + "\""; }

// Shared by validate_manifest (writers: InvalidArgument) and parse_manifest
// (readers: Corruption); `code` picks which.
Status check_file(const ManifestFile& f, Code code) {
  auto fail = [&](const std::string& what) {
    return Status(code, "manifest file " + quoted(f.path) + ": " + what);
  };
  Status p = validate_relative_path(f.path);
  if (!p) return Status(code, p.message());
  if (f.mode & ~std::uint32_t{07777}) return fail("mode has bits beyond 07777");
  if (f.layout != LayoutKind::kUnknown && f.layout != LayoutKind::kSafetensors) {
    return fail("unknown layout kind " + std::to_string(static_cast<int>(f.layout)));
  }
  if (f.layout == LayoutKind::kUnknown && !f.tensors.empty()) {
    return fail("tensors listed for a file of unknown layout");
  }
  if (f.tensors.size() > kMaxFileTensors) return fail("too many tensors");
  for (const auto& t : f.tensors) {
    if (t.name.size() > kMaxTensorNameBytes) return fail("tensor name too long");
    if (t.dtype.size() > kMaxDTypeNameBytes) return fail("tensor dtype name too long");
    if (t.shape.size() > kMaxTensorRank) return fail("tensor " + quoted(t.name) + " rank too high");
    if (t.begin > t.end || t.end > f.size) {
      return fail("tensor " + quoted(t.name) + " range [" + std::to_string(t.begin) + ", " +
                  std::to_string(t.end) + ") outside the file");
    }
  }
  if (f.chunks.size() > kMaxFileChunks) return fail("too many chunks");
  std::uint64_t next = 0;
  for (std::size_t i = 0; i < f.chunks.size(); ++i) {
    const ManifestChunk& c = f.chunks[i];
    std::string where = "chunk " + std::to_string(i) + " (offset " + std::to_string(c.offset) + ")";
    if (c.offset != next) {
      return fail(where + (c.offset < next ? " overlaps the previous chunk" : " leaves a gap") +
                  ": expected offset " + std::to_string(next));
    }
    if (c.length == 0 || c.length > kMaxChunkBytes) {
      return fail(where + " length " + std::to_string(c.length) + " out of range");
    }
    if (!dtype_from_byte(static_cast<std::uint8_t>(c.dtype))) return fail(where + " unknown dtype");
    if (!codec_id_allowed(c.codec)) return fail(where + " unknown codec " + std::to_string(c.codec));
    bool delta = c.codec >= kFirstDeltaCodec;
    if (delta == is_zero(c.base_id)) {
      return fail(where + (delta ? " delta codec without a base id" : " base id set without a delta codec"));
    }
    if (c.frame_bytes < kFrameHeaderBytes || c.frame_bytes - kFrameHeaderBytes > std::uint64_t{c.length}) {
      return fail(where + " frame bytes " + std::to_string(c.frame_bytes) + " out of range");
    }
    next = c.offset + c.length;
  }
  if (next != f.size) {
    return fail("chunks cover " + std::to_string(next) + " bytes of a " + std::to_string(f.size) +
                "-byte file");
  }
  return Status::ok();
}

// The origin's rules (docs/FORMAT.md section 5): a source directory is
// absolute, a key has no base, a delta's depth is within the chain limit.
Status check_origin(const SnapshotOrigin& o, Code code) {
  if (o.source_dir.size() > kMaxPathBytes) return Status(code, "manifest source directory too long");
  if (!o.source_dir.empty() && (o.source_dir[0] != '/' || o.source_dir.find('\0') != std::string::npos)) {
    return Status(code, "manifest source directory " + quoted(o.source_dir) + " is not an absolute path");
  }
  if (o.base_snapshot.size() > kMaxBaseSnapshotBytes)
    return Status(code, "manifest base snapshot name too long");
  switch (o.kind) {
    case SnapshotKind::kUnrecorded:
    case SnapshotKind::kKey:
      if (!o.base_snapshot.empty() || o.chain_depth != 0) {
        return Status(code, std::string("manifest of a ") + std::string(snapshot_kind_name(o.kind)) +
                                " snapshot names a base snapshot or a chain depth");
      }
      return Status::ok();
    case SnapshotKind::kDelta:
      if (o.chain_depth < 1 || o.chain_depth > kMaxDeltaChainSnapshots) {
        return Status(code, "manifest delta chain depth " + std::to_string(o.chain_depth) + " outside 1.." +
                                std::to_string(kMaxDeltaChainSnapshots));
      }
      return Status::ok();
  }
  return Status(code, "manifest snapshot kind " + std::to_string(static_cast<int>(o.kind)) + " is unknown");
}

Status check_manifest(const Manifest& m, Code code) {
  if (m.host.size() > kMaxHostBytes) return Status(code, "manifest host name too long");
  if (m.job.size() > kMaxJobBytes) return Status(code, "manifest job name too long");
  RETURN_IF_ERROR(check_origin(m.origin, code));
  if (m.files.size() > kMaxManifestFiles) return Status(code, "manifest has too many files");
  for (std::size_t i = 0; i < m.files.size(); ++i) {
    RETURN_IF_ERROR(check_file(m.files[i], code));
    if (i > 0 && !(m.files[i - 1].path < m.files[i].path)) {
      return Status(code,
                    "manifest files not in strictly ascending path order at " + quoted(m.files[i].path));
    }
  }
  return Status::ok();
}

Status parse_tensor(Reader& r, ManifestTensor& t) {
  RETURN_IF_ERROR(r.str16(t.name, kMaxTensorNameBytes, "tensor name"));
  RETURN_IF_ERROR(r.str8(t.dtype, kMaxDTypeNameBytes, "tensor dtype"));
  std::uint8_t rank = 0;
  RETURN_IF_ERROR(r.u8(rank, "tensor rank"));
  if (rank > kMaxTensorRank) {
    return Status::corruption("manifest tensor " + quoted(t.name) + " rank " + std::to_string(rank) +
                              " exceeds " + std::to_string(kMaxTensorRank));
  }
  t.shape.resize(rank);
  for (auto& d : t.shape) RETURN_IF_ERROR(r.u64(d, "tensor shape"));
  RETURN_IF_ERROR(r.u64(t.begin, "tensor begin"));
  return r.u64(t.end, "tensor end");
}

Status parse_chunk(Reader& r, ManifestChunk& c) {
  RETURN_IF_ERROR(r.u64(c.offset, "chunk offset"));
  RETURN_IF_ERROR(r.u32(c.length, "chunk length"));
  RETURN_IF_ERROR(r.digest(c.id, "chunk id"));
  RETURN_IF_ERROR(r.digest(c.base_id, "chunk base id"));
  std::uint8_t dtype = 0;
  RETURN_IF_ERROR(r.u8(dtype, "chunk dtype"));
  auto dt = dtype_from_byte(dtype);
  if (!dt) return Status::corruption("manifest chunk has unknown dtype " + std::to_string(dtype));
  c.dtype = *dt;
  RETURN_IF_ERROR(r.u8(c.codec, "chunk codec"));
  return r.u32(c.frame_bytes, "chunk frame bytes");
}

Status parse_file(Reader& r, ManifestFile& f) {
  RETURN_IF_ERROR(r.str16(f.path, kMaxPathBytes, "file path"));
  RETURN_IF_ERROR(r.u64(f.size, "file size"));
  RETURN_IF_ERROR(r.u32(f.mode, "file mode"));
  RETURN_IF_ERROR(r.i64(f.mtime_ns, "file mtime"));
  RETURN_IF_ERROR(r.digest(f.root, "file root"));
  std::uint8_t layout = 0;
  RETURN_IF_ERROR(r.u8(layout, "file layout"));
  if (layout > static_cast<std::uint8_t>(LayoutKind::kSafetensors)) {
    return Status::corruption("manifest file " + quoted(f.path) + " has unknown layout kind " +
                              std::to_string(layout));
  }
  f.layout = static_cast<LayoutKind>(layout);

  std::uint32_t tensors = 0;
  RETURN_IF_ERROR(r.u32(tensors, "tensor count"));
  if (tensors > kMaxFileTensors) {
    return Status::corruption("manifest file " + quoted(f.path) + " tensor count " + std::to_string(tensors) +
                              " exceeds " + std::to_string(kMaxFileTensors));
  }
  RETURN_IF_ERROR(r.count_fits(tensors, kMinTensorRecordBytes, "tensor"));
  f.tensors.resize(tensors);
  for (auto& t : f.tensors) RETURN_IF_ERROR(parse_tensor(r, t));

  std::uint32_t chunks = 0;
  RETURN_IF_ERROR(r.u32(chunks, "chunk count"));
  if (chunks > kMaxFileChunks) {
    return Status::corruption("manifest file " + quoted(f.path) + " chunk count " + std::to_string(chunks) +
                              " exceeds " + std::to_string(kMaxFileChunks));
  }
  RETURN_IF_ERROR(r.count_fits(chunks, kChunkRecordBytes, "chunk"));
  f.chunks.resize(chunks);
  for (auto& c : f.chunks) RETURN_IF_ERROR(parse_chunk(r, c));
  return Status::ok();
}

}  // namespace

std::string_view layout_name(LayoutKind k) {
  switch (k) {
    case LayoutKind::kUnknown:
      return "unknown";
    case LayoutKind::kSafetensors:
      return "safetensors";
  }
  return "?";
}

std::uint64_t Manifest::logical_bytes() const {
  std::uint64_t total = 0;
  for (const auto& f : files) total += f.size;
  return total;
}

std::size_t Manifest::chunk_count() const {
  std::size_t total = 0;
  for (const auto& f : files) total += f.chunks.size();
  return total;
}

ChunksInOrder::ChunksInOrder(const Manifest& m) {
  first_.reserve(m.files.size());
  chunks_.reserve(m.chunk_count());
  for (const ManifestFile& f : m.files) {
    first_.push_back(chunks_.size());
    for (const ManifestChunk& c : f.chunks) chunks_.push_back(&c);
  }
}

std::uint64_t Manifest::frame_bytes() const {
  std::uint64_t total = 0;
  for (const auto& f : files) {
    for (const auto& c : f.chunks) total += c.frame_bytes;
  }
  return total;
}

bool Manifest::has_delta_chunks() const {
  for (const auto& f : files) {
    for (const auto& c : f.chunks) {
      if (c.codec >= kFirstDeltaCodec && c.codec <= kLastDeltaCodec) return true;
    }
  }
  return false;
}

std::string_view snapshot_kind_name(SnapshotKind k) {
  switch (k) {
    case SnapshotKind::kUnrecorded:
      return "-";
    case SnapshotKind::kKey:
      return "key";
    case SnapshotKind::kDelta:
      return "delta";
  }
  return "?";
}

bool root_composes_from_chunk_ids(std::span<const std::uint32_t> chunk_lengths) {
  if (chunk_lengths.empty()) return false;
  if (chunk_lengths.size() == 1) return true;  // the one chunk is the whole file
  const std::uint64_t len = chunk_lengths[0];
  const std::uint64_t leaves = len / kLeafBytes;
  if (len % kLeafBytes != 0 || leaves == 0 || (leaves & (leaves - 1)) != 0) return false;
  for (std::size_t i = 0; i + 1 < chunk_lengths.size(); ++i) {
    if (chunk_lengths[i] != len) return false;
  }
  return chunk_lengths.back() <= len;
}

Status validate_relative_path(std::string_view path) {
  auto bad = [&](std::string_view why) {
    std::string shown(path.substr(0, 256));
    for (auto& ch : shown) {
      if (ch == '\0') ch = '?';
    }
    return Status::invalid_argument("unsafe path \"" + shown + "\": " + std::string(why));
  };
  if (path.empty()) return bad("empty");
  if (path.size() > kMaxPathBytes) return bad("longer than " + std::to_string(kMaxPathBytes) + " bytes");
  if (path.find('\0') != std::string_view::npos) return bad("contains NUL");
  if (path.front() == '/') return bad("absolute");
  std::size_t start = 0;
  while (start <= path.size()) {
    std::size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    std::string_view part = path.substr(start, end - start);
    if (part.empty()) return bad("empty component");
    if (part == ".") return bad("\".\" component");
    if (part == "..") return bad("\"..\" component");
    start = end + 1;
  }
  return Status::ok();
}

Status validate_manifest(const Manifest& m) { return check_manifest(m, Code::kInvalidArgument); }

Status check_frame_header(std::span<const std::byte> frame, const ManifestChunk& c) {
  ASSIGN_OR_RETURN(FrameHeader h, parse_frame_header_only(frame));
  if (h.raw_bytes != c.length || static_cast<std::uint8_t>(h.codec) != c.codec) {
    return Status::corruption("frame says " + std::to_string(h.raw_bytes) + " bytes, codec " +
                              std::to_string(static_cast<int>(h.codec)) + "; manifest says " +
                              std::to_string(c.length) + " bytes, codec " + std::to_string(c.codec));
  }
  return Status::ok();
}

std::vector<std::byte> serialize_manifest(const Manifest& m) {
  FERRY_CHECK(validate_manifest(m).is_ok());
  std::vector<std::byte> out(kManifestHeaderBytes);
  Writer w(out);
  w.str16(m.host);
  w.str16(m.job);
  w.u64(m.step);
  w.u64(static_cast<std::uint64_t>(m.created_ns));
  w.u32(static_cast<std::uint32_t>(m.files.size()));
  for (const auto& f : m.files) {
    w.str16(f.path);
    w.u64(f.size);
    w.u32(f.mode);
    w.u64(static_cast<std::uint64_t>(f.mtime_ns));
    w.digest(f.root);
    w.u8(static_cast<std::uint8_t>(f.layout));
    w.u32(static_cast<std::uint32_t>(f.tensors.size()));
    for (const auto& t : f.tensors) {
      w.str16(t.name);
      w.str8(t.dtype);
      w.u8(static_cast<std::uint8_t>(t.shape.size()));
      for (auto d : t.shape) w.u64(d);
      w.u64(t.begin);
      w.u64(t.end);
    }
    w.u32(static_cast<std::uint32_t>(f.chunks.size()));
    for (const auto& c : f.chunks) {
      w.u64(c.offset);
      w.u32(c.length);
      w.digest(c.id);
      w.digest(c.base_id);
      w.u8(static_cast<std::uint8_t>(c.dtype));
      w.u8(c.codec);
      w.u32(c.frame_bytes);
    }
  }
  const bool with_origin = m.origin.recorded();
  if (with_origin) {
    w.str16(m.origin.source_dir);
    w.u8(static_cast<std::uint8_t>(m.origin.kind));
    w.str16(m.origin.base_snapshot);
    w.u8(m.origin.chain_depth);
  }
  std::uint64_t body_bytes = out.size() - kManifestHeaderBytes;
  FERRY_CHECK(body_bytes <= kMaxManifestBodyBytes);
  std::vector<std::byte> header;
  Writer h(header);
  h.bytes(kManifestMagic, sizeof(kManifestMagic));
  h.u8(with_origin ? kManifestVersion : kManifestVersionWithoutOrigin);
  h.u8(0);   // flags
  h.u16(0);  // reserved
  h.u64(body_bytes);
  h.u32(mask_crc(crc32c(std::span<const std::byte>(out).subspan(kManifestHeaderBytes))));
  h.u32(mask_crc(crc32c(header)));
  std::memcpy(out.data(), header.data(), kManifestHeaderBytes);
  return out;
}

Result<Manifest> parse_manifest(std::span<const std::byte> bytes) {
  if (bytes.size() < kManifestHeaderBytes) {
    return Status::corruption("manifest truncated: " + std::to_string(bytes.size()) +
                              " bytes, the header alone is " + std::to_string(kManifestHeaderBytes));
  }
  if (std::memcmp(bytes.data(), kManifestMagic, sizeof(kManifestMagic)) != 0) {
    return Status::corruption("manifest has bad magic (not a ferry manifest)");
  }
  if (mask_crc(crc32c(bytes.first(20))) != load_u32(bytes.data() + 20)) {
    return Status::corruption("manifest header CRC mismatch");
  }
  std::uint8_t version = std::to_integer<std::uint8_t>(bytes[4]);
  if (version != kManifestVersion && version != kManifestVersionWithoutOrigin) {
    return Status::unsupported(
        "manifest version " + std::to_string(version) + " (this build reads versions " +
        std::to_string(kManifestVersionWithoutOrigin) + " and " + std::to_string(kManifestVersion) + ")");
  }
  if (bytes[5] != std::byte{0} || bytes[6] != std::byte{0} || bytes[7] != std::byte{0}) {
    return Status::corruption("manifest flags or reserved bytes are not zero");
  }
  std::uint64_t body_bytes = load_u64(bytes.data() + 8);
  if (body_bytes > kMaxManifestBodyBytes) {
    return Status::corruption("manifest body of " + std::to_string(body_bytes) +
                              " bytes exceeds the limit of " + std::to_string(kMaxManifestBodyBytes));
  }
  if (body_bytes != bytes.size() - kManifestHeaderBytes) {
    return Status::corruption("manifest body is " + std::to_string(bytes.size() - kManifestHeaderBytes) +
                              " bytes, header says " + std::to_string(body_bytes));
  }
  auto body = bytes.subspan(kManifestHeaderBytes);
  if (mask_crc(crc32c(body)) != load_u32(bytes.data() + 16)) {
    return Status::corruption("manifest body CRC mismatch");
  }

  Manifest m;
  Reader r(body);
  RETURN_IF_ERROR(r.str16(m.host, kMaxHostBytes, "host"));
  RETURN_IF_ERROR(r.str16(m.job, kMaxJobBytes, "job"));
  RETURN_IF_ERROR(r.u64(m.step, "step"));
  RETURN_IF_ERROR(r.i64(m.created_ns, "creation time"));
  std::uint32_t files = 0;
  RETURN_IF_ERROR(r.u32(files, "file count"));
  if (files > kMaxManifestFiles) {
    return Status::corruption("manifest file count " + std::to_string(files) + " exceeds " +
                              std::to_string(kMaxManifestFiles));
  }
  RETURN_IF_ERROR(r.count_fits(files, kMinFileRecordBytes, "file"));
  m.files.resize(files);
  for (auto& f : m.files) RETURN_IF_ERROR(parse_file(r, f));
  if (version == kManifestVersion) {
    std::uint8_t kind = 0;
    RETURN_IF_ERROR(r.str16(m.origin.source_dir, kMaxPathBytes, "source directory"));
    RETURN_IF_ERROR(r.u8(kind, "snapshot kind"));
    RETURN_IF_ERROR(r.str16(m.origin.base_snapshot, kMaxBaseSnapshotBytes, "base snapshot"));
    RETURN_IF_ERROR(r.u8(m.origin.chain_depth, "chain depth"));
    m.origin.kind = static_cast<SnapshotKind>(kind);
    // A version 2 manifest always records something (a writer emits version
    // 1 otherwise), so equal snapshots keep serialising to equal bytes.
    if (!m.origin.recorded()) return Status::corruption("manifest version 2 with an empty origin");
  }
  if (r.remaining() != 0) {
    return Status::corruption("manifest has " + std::to_string(r.remaining()) +
                              " unexpected bytes after the last file");
  }
  RETURN_IF_ERROR(check_manifest(m, Code::kCorruption));
  return m;
}

}  // namespace ferry
