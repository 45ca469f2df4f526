// s3_xml.h: the few S3 XML replies ferry reads (ListObjectsV2 pages and
// <Error> bodies), parsed by hand. Why no XML library: the replies are flat
// (a root, repeated <Contents> blocks, leaf elements of text), ferry needs
// five element names out of them, and a general parser (DTDs, entities,
// namespaces) is a large surface for bytes that come from the network. This
// parser only finds elements by name, never recurses, never allocates beyond
// the input's size and decodes the five predefined entities and numeric
// character references; anything else is refused as Corruption. Fuzzed by
// tests/fuzz/fuzz_s3_xml.cc.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace ferry {

struct S3Object {
  std::string key;
  std::uint64_t size = 0;
  std::string etag;                   // without its quotes
  std::int64_t last_modified_ns = 0;  // 0 when the reply had none
};

struct S3ListPage {
  std::vector<S3Object> objects;
  std::vector<std::string> common_prefixes;  // with a delimiter
  bool truncated = false;
  std::string next_continuation_token;  // set when truncated
};

// A ListObjectsV2 reply (<ListBucketResult>). Corruption when it is not one,
// when an element is unterminated, a size is not a number, an entity unknown,
// or a truncated page names no continuation token.
Result<S3ListPage> parse_list_objects_v2(std::string_view xml);

struct S3ErrorBody {
  std::string code;     // "NoSuchKey", "SlowDown", ...; empty when the body held none
  std::string message;  // may be empty
};
// An <Error> body. Never fails: a body that is not one gives empty fields.
S3ErrorBody parse_s3_error(std::string_view xml);

// "2026-12-06T21:35:26.000Z" (ISO 8601 in UTC, as S3 writes LastModified)
// as ns since the Unix epoch; nullopt for anything else, and for years
// outside 1970-2261 (what int64 nanoseconds hold).
std::optional<std::int64_t> parse_s3_time(std::string_view text);

// The text of the first <name>...</name> inside `xml` (entities decoded);
// nullopt when there is none. Corruption when it is unterminated or holds an
// unknown entity. Exposed for the fuzz target and tests.
Result<std::optional<std::string>> xml_element_text(std::string_view xml, std::string_view name);

}  // namespace ferry
