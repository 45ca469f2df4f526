// fuzz_store_index.cc: libFuzzer target for what the receiver store reads
// back from its own disk, which a damaged disk or a hostile operator may have
// changed: the index parser, the pack scanner and the snapshot file parser.
// Byte 0 chooses the mode: bit 2 set = the rest is a snapshot file (commit
// record + manifest); else bit 1 set = a pack file, scanned from its header;
// otherwise an index. Bit 0 set = first reseal the index's or the commit
// record's CRC so the fuzzer reaches the checks behind it. A parsed index or
// commit record must serialise back to the same bytes; every record a scan
// calls good must read back.
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <vector>

#include "base/crc32c.h"
#include "base/posix_file.h"
#include "codec/manifest.h"
#include "store/pack_file.h"
#include "store/snapshot_file.h"
#include "store/store_index.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::uint8_t mode = data[0];
  std::vector<std::byte> b(size - 1);
  if (!b.empty()) std::memcpy(b.data(), data + 1, b.size());
  if (mode & 4) {
    if ((mode & 1) && b.size() >= ferry::kCommitRecordBytes) {
      const std::uint32_t crc = ferry::mask_crc(ferry::crc32c(std::span<const std::byte>(b).first(16)));
      std::memcpy(b.data() + 16, &crc, 4);
    }
    auto file = ferry::parse_snapshot_file(b, "snapshot");
    if (!file.is_ok()) return 0;
    if (file->committed_ns && ferry::serialize_snapshot_file(*file->committed_ns, file->manifest) != b) {
      std::abort();
    }
    (void)ferry::parse_manifest(file->manifest);
    return 0;
  }
  if (mode & 2) {
    ferry::UniqueFd fd(::memfd_create("pack", MFD_CLOEXEC));
    if (!fd.valid() || !ferry::pwrite_all(fd.get(), b, 0, "pack").is_ok()) return 0;
    if (b.size() < ferry::kPackHeaderBytes || !ferry::check_pack_header(b, "pack").is_ok()) return 0;
    auto scan = ferry::scan_pack(fd.get(), "pack", ferry::kPackHeaderBytes);
    if (!scan.is_ok()) return 0;
    std::vector<std::byte> frame;
    for (const auto& r : scan->records) {
      if (!ferry::read_record(fd.get(), "pack", r.offset, r.frame_bytes, frame).is_ok()) std::abort();
    }
    if (scan->valid_end > scan->file_bytes) std::abort();
    return 0;
  }
  if ((mode & 1) && b.size() >= 4) {
    const std::uint32_t crc =
        ferry::mask_crc(ferry::crc32c(std::span<const std::byte>(b).first(b.size() - 4)));
    std::memcpy(b.data() + b.size() - 4, &crc, 4);
  }
  auto index = ferry::parse_index(b);
  if (index.is_ok() && ferry::serialize_index(*index) != b) std::abort();
  return 0;
}
