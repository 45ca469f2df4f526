// s3_xml_test.cc: the S3 reply parser on replies as radosgw and AWS write
// them, and on damaged ones (which must be refused, never crash).
#include "store/s3_xml.h"

#include <gtest/gtest.h>

namespace ferry {
namespace {

constexpr char kPage[] =
    R"(<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">)"
    R"(<Name>bk1</Name><Prefix>k</Prefix><MaxKeys>2</MaxKeys><IsTruncated>true</IsTruncated>)"
    R"(<Contents><Key>a&amp;b/c&#x41;&#66;</Key><LastModified>2026-12-06T21:35:26.000Z</LastModified>)"
    R"(<ETag>&quot;b1946ac92492d2347c6235b4d2611184&quot;</ETag><Size>6</Size></Contents>)"
    R"(<Contents><Key>k2</Key><Size>18446744073709551615</Size></Contents>)"
    R"(<CommonPrefixes><Prefix>ns/</Prefix></CommonPrefixes><KeyCount>2</KeyCount>)"
    R"(<NextContinuationToken>1ueG/X+=</NextContinuationToken></ListBucketResult>)";

TEST(S3XmlTest, ParsesAListPage) {
  auto page = parse_list_objects_v2(kPage);
  ASSERT_TRUE(page.is_ok()) << page.status().to_string();
  ASSERT_EQ(page->objects.size(), 2u);
  EXPECT_EQ(page->objects[0].key, "a&b/cAB");
  EXPECT_EQ(page->objects[0].size, 6u);
  EXPECT_EQ(page->objects[0].etag, "b1946ac92492d2347c6235b4d2611184");
  EXPECT_EQ(page->objects[0].last_modified_ns, 1'796'592'926'000'000'000LL);
  EXPECT_EQ(page->objects[1].key, "k2");
  EXPECT_EQ(page->objects[1].size, 18446744073709551615ull);
  ASSERT_EQ(page->common_prefixes.size(), 1u);
  EXPECT_EQ(page->common_prefixes[0], "ns/");
  EXPECT_TRUE(page->truncated);
  EXPECT_EQ(page->next_continuation_token, "1ueG/X+=");
}

TEST(S3XmlTest, AnEmptyPageHasNoObjects) {
  auto page = parse_list_objects_v2(
      "<ListBucketResult><Name>b</Name><KeyCount>0</KeyCount><IsTruncated>false</IsTruncated></"
      "ListBucketResult>");
  ASSERT_TRUE(page.is_ok());
  EXPECT_TRUE(page->objects.empty());
  EXPECT_FALSE(page->truncated);
}

TEST(S3XmlTest, RefusesDamagedReplies) {
  const char* bad[] = {
      "",                                                                          // nothing
      "<Error><Code>x</Code></Error>",                                             // not a listing
      "<ListBucketResult><Contents><Key>a</Key>",                                  // cut short
      "<ListBucketResult><Contents><Size>1</Size></Contents></ListBucketResult>",  // no key
      "<ListBucketResult><Contents><Key>a</Key><Size>-1</Size></Contents></ListBucketResult>",  // size
      "<ListBucketResult><Contents><Key>a</Key><Size>99999999999999999999</Size></Contents></"
      "ListBucketResult>",
      "<ListBucketResult><Contents><Key>&bogus;</Key><Size>1</Size></Contents></ListBucketResult>",
      "<ListBucketResult><Contents><Key>&#0;</Key><Size>1</Size></Contents></ListBucketResult>",
      "<ListBucketResult><Contents><Key>&#xD800;</Key><Size>1</Size></Contents></ListBucketResult>",
      "<ListBucketResult><Contents><Key>&amp</Key><Size>1</Size></Contents></ListBucketResult>",
      "<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>",  // no token
      "<ListBucketResult><Contents><Key><b>x</b></Key><Size>1</Size></Contents></ListBucketResult>",
  };
  for (const char* xml : bad) {
    auto page = parse_list_objects_v2(xml);
    EXPECT_FALSE(page.is_ok()) << xml;
    if (!page.is_ok()) {
      EXPECT_EQ(page.status().code(), Code::kCorruption) << xml;
    }
  }
}

TEST(S3XmlTest, DoesNotTakeOneElementForAnotherThatStartsAlike) {
  auto text = xml_element_text("<KeyCount>3</KeyCount><Key>k</Key>", "Key");
  ASSERT_TRUE(text.is_ok());
  ASSERT_TRUE(text->has_value());
  EXPECT_EQ(**text, "k");
}

TEST(S3XmlTest, ReadsTimes) {
  EXPECT_EQ(parse_s3_time("1970-01-01T00:00:00Z"), 0);
  EXPECT_EQ(parse_s3_time("2000-03-01T00:00:01.5Z"), 951'868'801'500'000'000LL);
  for (const char* bad : {"", "2026-12-06 21:35:26Z", "2026-13-06T21:35:26Z", "2026-12-06T21:35:26", "x",
                          "9999-12-31T23:59:59Z", "1969-12-31T23:59:59Z"}) {
    EXPECT_FALSE(parse_s3_time(bad).has_value()) << bad;
  }
}

TEST(S3XmlTest, ReadsErrorBodies) {
  S3ErrorBody e = parse_s3_error(
      R"(<?xml version="1.0"?><Error><Code>SlowDown</Code><Message>reduce &lt;rate&gt;</Message></Error>)");
  EXPECT_EQ(e.code, "SlowDown");
  EXPECT_EQ(e.message, "reduce <rate>");
  EXPECT_TRUE(parse_s3_error("not xml at all").code.empty());
  EXPECT_TRUE(parse_s3_error("<Error><Code>unterminated").code.empty());
}

}  // namespace
}  // namespace ferry
