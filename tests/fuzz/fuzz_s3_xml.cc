// fuzz_s3_xml.cc: libFuzzer target for what ferry reads from an S3 bucket,
// which the network or whoever holds the bucket may have changed: the XML
// replies (store/s3_xml.h: a ListObjectsV2 page, an <Error> body, one
// element's text), the pack objects and index objects of the S3 backend
// (store/s3_pack.h) and its lock object (store/s3_lock.h). Nothing may
// crash or read out of bounds; what parses must be self-consistent, and a
// lock record must read back as it was written.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string_view>

#include "store/s3_lock.h"
#include "store/s3_pack.h"
#include "store/s3_xml.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view xml(reinterpret_cast<const char*>(data), size);
  auto page = ferry::parse_list_objects_v2(xml);
  if (page.is_ok() && page->truncated && page->next_continuation_token.empty()) std::abort();
  (void)ferry::parse_s3_error(xml);
  (void)ferry::parse_s3_time(xml);
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  auto index = ferry::parse_s3_trailer(bytes, "idx");
  if (index.is_ok() && index->pack_bytes < size) std::abort();
  auto pack = ferry::check_s3_pack(bytes, "pack");
  if (pack.is_ok()) {
    for (const auto& e : pack->good) {
      if (e.offset + e.frame_bytes > size) std::abort();
    }
  }
  auto lock = ferry::parse_s3_lock(bytes, "lock");
  if (lock.is_ok()) {
    (void)ferry::describe_s3_lock(*lock);
    auto again = ferry::parse_s3_lock(ferry::serialize_s3_lock(*lock), "lock");
    if (!again.is_ok() || *again != *lock) std::abort();
  }
  auto key = ferry::xml_element_text(xml, "Key");
  if (key.is_ok() && key->has_value() && (*key)->size() > size) std::abort();
  return 0;
}
