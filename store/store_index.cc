// store_index.cc: see store_index.h.
#include "store/store_index.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <unordered_set>

#include "base/crc32c.h"
#include "codec/limits.h"
#include "store/pack_file.h"

namespace ferry {
namespace {

template <typename T>
void put_le(std::vector<std::byte>& out, T v) {
  const std::size_t at = out.size();
  out.resize(at + sizeof v);
  std::memcpy(out.data() + at, &v, sizeof v);  // little-endian host
}

template <typename T>
T get_le(const std::byte* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

struct DigestHash {
  std::size_t operator()(const Digest& d) const {
    std::size_t h;
    std::memcpy(&h, d.data(), sizeof h);
    return h;
  }
};

}  // namespace

std::vector<std::byte> serialize_index(const StoreIndex& index) {
  std::vector<std::byte> out;
  out.reserve(kIndexHeaderBytes + index.packs.size() * kIndexPackBytes +
              index.entries.size() * kIndexEntryBytes + 4);
  for (std::uint8_t b : kIndexMagic) out.push_back(std::byte{b});
  out.push_back(std::byte{kIndexVersion});
  out.resize(8);  // reserved
  put_le<std::uint32_t>(out, static_cast<std::uint32_t>(index.packs.size()));
  put_le<std::uint32_t>(out, 0);  // reserved
  put_le<std::uint64_t>(out, index.entries.size());
  for (const IndexPack& p : index.packs) {
    put_le<std::uint32_t>(out, p.number);
    put_le<std::uint64_t>(out, p.covered_bytes);
  }
  for (const IndexEntry& e : index.entries) {
    const std::size_t at = out.size();
    out.resize(at + kDigestBytes);
    std::memcpy(out.data() + at, e.id.data(), kDigestBytes);
    put_le<std::uint32_t>(out, e.pack);
    put_le<std::uint64_t>(out, e.offset);
    put_le<std::uint32_t>(out, e.frame_bytes);
  }
  put_le<std::uint32_t>(out, mask_crc(crc32c(out)));
  return out;
}

Result<StoreIndex> parse_index(std::span<const std::byte> bytes) {
  auto bad = [](const std::string& why) { return Status::corruption("store index: " + why); };
  if (bytes.size() < kIndexHeaderBytes + 4) return bad("too short");
  if (std::memcmp(bytes.data(), kIndexMagic, 4) != 0) return bad("bad magic");
  const std::size_t body = bytes.size() - 4;
  if (mask_crc(crc32c(bytes.first(body))) != get_le<std::uint32_t>(bytes.data() + body)) {
    return bad("CRC mismatch");
  }
  if (bytes[4] != std::byte{kIndexVersion}) return bad("unknown version");
  if (bytes[5] != std::byte{0} || bytes[6] != std::byte{0} || bytes[7] != std::byte{0} ||
      get_le<std::uint32_t>(bytes.data() + 12) != 0) {
    return bad("reserved bytes are not zero");
  }
  const std::uint64_t pack_count = get_le<std::uint32_t>(bytes.data() + 8);
  const std::uint64_t entry_count = get_le<std::uint64_t>(bytes.data() + 16);
  // Counts are checked against the bytes present before anything is sized.
  const std::uint64_t avail = body - kIndexHeaderBytes;
  if (pack_count > avail / kIndexPackBytes) return bad("pack count exceeds the file");
  if (entry_count > (avail - pack_count * kIndexPackBytes) / kIndexEntryBytes ||
      pack_count * kIndexPackBytes + entry_count * kIndexEntryBytes != avail) {
    return bad("length does not match its counts");
  }
  StoreIndex index;
  index.packs.resize(pack_count);
  const std::byte* p = bytes.data() + kIndexHeaderBytes;
  for (IndexPack& pk : index.packs) {
    pk.number = get_le<std::uint32_t>(p);
    pk.covered_bytes = get_le<std::uint64_t>(p + 4);
    p += kIndexPackBytes;
    if (pk.covered_bytes < kPackHeaderBytes)
      return bad("pack " + std::to_string(pk.number) + " covers less than its header");
  }
  for (std::size_t i = 1; i < index.packs.size(); ++i) {
    if (index.packs[i].number <= index.packs[i - 1].number) return bad("packs out of order");
  }
  index.entries.resize(entry_count);
  std::unordered_set<Digest, DigestHash> seen;
  seen.reserve(entry_count);
  for (IndexEntry& e : index.entries) {
    std::memcpy(e.id.data(), p, kDigestBytes);
    e.pack = get_le<std::uint32_t>(p + 32);
    e.offset = get_le<std::uint64_t>(p + 36);
    e.frame_bytes = get_le<std::uint32_t>(p + 44);
    p += kIndexEntryBytes;
    auto it = std::lower_bound(index.packs.begin(), index.packs.end(), e.pack,
                               [](const IndexPack& a, std::uint32_t n) { return a.number < n; });
    if (it == index.packs.end() || it->number != e.pack) return bad("entry names an unknown pack");
    if (e.frame_bytes < kFrameHeaderBytes || e.frame_bytes > kMaxFrameBytes || e.offset < kPackHeaderBytes ||
        e.offset > it->covered_bytes || record_bytes(e.frame_bytes) > it->covered_bytes - e.offset) {
      return bad("entry " + to_hex(e.id) + " lies outside its pack's covered bytes");
    }
    if (!seen.insert(e.id).second) return bad("chunk " + to_hex(e.id) + " listed twice");
  }
  return index;
}

}  // namespace ferry
