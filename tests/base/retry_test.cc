// retry_test.cc: the retry rule of base/retry.h, code by code and for each
// detail that changes it: what a new connection may cure inside a push or
// restore, and what the agent retries later by reading the checkpoint again.
#include "base/retry.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <string>

namespace ferry {
namespace {

struct Case {
  Status status;
  bool new_connection;
  bool job_later;
};

std::string describe(const Status& s) {
  const char* d = s.detail() == Detail::kSourceChanged   ? " (source changed)"
                  : s.detail() == Detail::kRefusedByPeer ? " (refused by peer)"
                                                         : "";
  return s.to_string() + d;
}

void expect_rule(const Case& c) {
  EXPECT_EQ(retry_on_new_connection(c.status), c.new_connection) << describe(c.status);
  EXPECT_EQ(retry_job_later(c.status), c.job_later) << describe(c.status);
}

TEST(RetryTest, APeerGoneStalledOrFailingIsRetriedBothWays) {
  expect_rule({Status::unavailable("127.0.0.1:7443 closed the connection"), true, true});
  expect_rule({Status::timeout("no reply from 127.0.0.1:7443 in 30 s"), true, true});
  expect_rule({Status::io_error("send to 127.0.0.1:7443: Broken pipe"), true, true});
  expect_rule({Status::from_errno(ECONNRESET, "recv from 127.0.0.1:7443"), true, true});
  expect_rule({Status::aborted("receiver stopping"), true, true});
}

TEST(RetryTest, BytesGarbledOnTheWayAreRetriedBothWays) {
  expect_rule({Status::corruption("127.0.0.1:7443 answered QUERY with PONG"), true, true});
}

TEST(RetryTest, DamageThePeerFoundInOurBytesIsNotRetried) {
  // A frame the receiver verified and refused: resending it meets the same
  // verdict, and a fault on this host (memory, a bug) must surface.
  const Status refused =
      Status::corruption("receiver: chunk 1f2e: payload CRC mismatch").with_detail(Detail::kRefusedByPeer);
  expect_rule({refused, false, false});
}

TEST(RetryTest, APeerRefusalThatSaysThePeerIsInTroubleIsRetriedLikeABreak) {
  for (const Status& s :
       {Status::unavailable("receiver: stopping"), Status::timeout("receiver: sync stalled"),
        Status::io_error("receiver: write pack: Input/output error"), Status::aborted("receiver: closing")}) {
    expect_rule({s.with_detail(Detail::kRefusedByPeer), true, true});
  }
  expect_rule(
      {Status::exhausted("receiver: namespace host-a over its quota").with_detail(Detail::kRefusedByPeer),
       false, true});
  expect_rule(
      {Status::not_found("receiver: no snapshot step-9").with_detail(Detail::kRefusedByPeer), false, false});
}

TEST(RetryTest, AChangedSourceIsReadAgainLaterNotResent) {
  const Status changed = Status::source_changed("file a.bin changed while it was read (size 4 -> 8)");
  EXPECT_EQ(changed.code(), Code::kAborted);
  EXPECT_EQ(changed.detail(), Detail::kSourceChanged);
  expect_rule({changed, false, true});
}

TEST(RetryTest, LimitsWaitForTheAgentNotForAReconnect) {
  expect_rule({Status::exhausted("receiver at its limit of 64 connections"), false, true});
  expect_rule({Status::from_errno(ENOSPC, "write /srv/ferry/packs/000001.pack"), false, true});
}

TEST(RetryTest, WhatOnlyAPersonCanFixIsNotRetried) {
  expect_rule({Status::invalid_argument("streams must be 1..64"), false, false});
  expect_rule({Status::not_found("/ckpt/step-9: no such directory"), false, false});
  expect_rule({Status::unsupported("receiver speaks protocol versions 3..4 only"), false, false});
  expect_rule({Status::permission_denied("namespace host-a is append-only"), false, false});
  expect_rule({Status::internal("restore ended with 10 of 20 bytes"), false, false});
}

}  // namespace
}  // namespace ferry
