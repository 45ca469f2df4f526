// fuzz_s3_xml.cc: libFuzzer target for the S3 replies ferry parses
// (store/s3_xml.h), which come from the network: a ListObjectsV2 page, an
// <Error> body, and one element's text. Nothing may crash or read out of
// bounds; a parsed page must be self-consistent.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "store/s3_xml.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view xml(reinterpret_cast<const char*>(data), size);
  auto page = ferry::parse_list_objects_v2(xml);
  if (page.is_ok() && page->truncated && page->next_continuation_token.empty()) std::abort();
  (void)ferry::parse_s3_error(xml);
  auto key = ferry::xml_element_text(xml, "Key");
  if (key.is_ok() && key->has_value() && (*key)->size() > size) std::abort();
  return 0;
}
