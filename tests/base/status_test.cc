// status_test.cc: Status codes, messages and details: the detail set where
// an error arises survives the context callers add on its way up, stays out
// of the message, and never makes an OK status fail.
#include "base/status.h"

#include <gtest/gtest.h>

namespace ferry {
namespace {

Result<int> fails_with(Status s) { return s; }

Result<int> passes_up(Status s) {
  ASSIGN_OR_RETURN(int v, fails_with(std::move(s)));
  return v;
}

TEST(StatusTest, ADetailSurvivesContextAndPropagation) {
  const Status changed = Status::source_changed("file b.bin changed while it was read (gone)");
  const Status up = passes_up(changed).status().with_context("commit of s1 at 127.0.0.1:7443");
  EXPECT_EQ(up.code(), Code::kAborted);
  EXPECT_EQ(up.detail(), Detail::kSourceChanged);
  EXPECT_EQ(up.message(), "commit of s1 at 127.0.0.1:7443: file b.bin changed while it was read (gone)");
  EXPECT_EQ(up.to_string(), "Aborted: " + up.message());
}

TEST(StatusTest, ADetailIsSetOnACopyAndNeverOnOk) {
  const Status plain = Status::corruption("chunk 1f2e: payload CRC mismatch");
  const Status refused = plain.with_detail(Detail::kRefusedByPeer);
  EXPECT_EQ(plain.detail(), Detail::kNone);
  EXPECT_EQ(refused.detail(), Detail::kRefusedByPeer);
  EXPECT_EQ(refused.code(), Code::kCorruption);
  EXPECT_EQ(refused.message(), plain.message());
  const Status ok = Status::ok().with_detail(Detail::kSourceChanged);
  EXPECT_TRUE(ok.is_ok());
  EXPECT_EQ(ok.detail(), Detail::kNone);
  EXPECT_EQ(Status::aborted("push cancelled").detail(), Detail::kNone);
}

}  // namespace
}  // namespace ferry
