// fuzz_journal.cc: libFuzzer target that opens arbitrary bytes as an agent
// journal. Journal::open must recover (keep whole records, cut the rest) or
// refuse, never crash; what it keeps must re-encode to the same bytes, and
// the journal must accept an append and read back everything after a
// reopen. Byte 0 chooses the mode: bit 0 set = the rest as is (CRCs guard
// the decoder); clear = first put a valid file header in front and reseal
// every record's CRC, so the fuzzer reaches the body decoder.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <vector>

#include "agent/journal.h"
#include "base/crc32c.h"

namespace {

void put_u32(std::vector<std::byte>& b, std::size_t at, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) b[at + i] = std::byte(static_cast<std::uint8_t>(v >> (8 * i)));
}

std::uint32_t get_u32(const std::vector<std::byte>& b, std::size_t at) {
  std::uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | std::to_integer<std::uint32_t>(b[at + i]);
  return v;
}

std::vector<std::byte> reseal(std::span<const std::byte> in) {
  std::vector<std::byte> b(ferry::kJournalHeaderBytes);
  for (std::size_t i = 0; i < sizeof(ferry::kJournalMagic); ++i) b[i] = std::byte(ferry::kJournalMagic[i]);
  put_u32(b, 8, ferry::kJournalVersion);
  b.insert(b.end(), in.begin(), in.end());
  for (std::size_t off = ferry::kJournalHeaderBytes; off + ferry::kJournalRecordHeaderBytes <= b.size();) {
    const std::uint32_t len = get_u32(b, off);
    const std::size_t body = off + ferry::kJournalRecordHeaderBytes;
    if (len > b.size() - body) break;
    put_u32(b, off + 4, ferry::mask_crc(ferry::crc32c(std::span<const std::byte>(b).subspan(body, len))));
    off = body + len;
  }
  return b;
}

const std::filesystem::path& scratch() {
  static const std::filesystem::path dir = [] {
    auto d = std::filesystem::temp_directory_path() / ("fuzz_journal_" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    return d;
  }();
  return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const bool raw = data[0] & 1;
  std::span<const std::byte> rest(reinterpret_cast<const std::byte*>(data + 1), size - 1);
  std::vector<std::byte> bytes = raw ? std::vector<std::byte>(rest.begin(), rest.end()) : reseal(rest);

  // The body decoder alone: what decodes re-encodes to the same bytes.
  if (auto r = ferry::decode_journal_record(rest); r.is_ok()) {
    auto again = ferry::encode_journal_record(*r);
    if (!std::equal(again.begin(), again.end(), rest.begin(), rest.end())) std::abort();
  }

  const auto path = scratch() / "journal";
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  }
  std::vector<ferry::JournalRecord> kept;
  ferry::JournalRecord extra;
  {
    auto j = ferry::Journal::open(path);
    if (!j.is_ok()) return 0;  // refused: not a journal, or a newer version
    kept = (*j)->recovered();
    for (const auto& r : kept) {
      auto back = ferry::decode_journal_record(ferry::encode_journal_record(r));
      if (!back.is_ok() || !(*back == r)) std::abort();
    }
    extra.job_id = 7;
    extra.path = "/ckpt/step-7";
    if (!(*j)->append(extra).is_ok()) std::abort();
  }
  auto j = ferry::Journal::open(path);
  if (!j.is_ok()) std::abort();
  kept.push_back(extra);
  if ((*j)->recovered() != kept || !(*j)->recovered_notice().empty()) std::abort();
  return 0;
}
