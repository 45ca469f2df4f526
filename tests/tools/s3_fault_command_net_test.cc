// s3_fault_command_net_test.cc: `ferry push/list/restore/scrub` on s3://
// stores when things go wrong, against a real Ceph cluster
// (scripts/ceph-dev.sh): 503 SlowDown, 500 and resets injected by a relay
// on a seeded schedule (retried, nothing committed partially), an outage
// that outlasts the retries (no snapshot; the next push sends only what is
// missing), a radosgw killed -9 mid-push (--s3_endpoints: the push finishes
// through the other), wrong credentials and a missing bucket (named, not
// retried), and packs truncated or corrupted in the bucket (named by scrub,
// refused by restore).
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "base/clock.h"
#include "tests/testing/ceph_dev.h"
#include "tests/testing/s3_fault_relay.h"
#include "tests/tools/s3_command_fixture.h"

namespace ferry {
namespace {

namespace fs = std::filesystem;
using cli_test::expect_same_tree;
using cli_test::ferry;
using cli_test::kHost;
using cli_test::quote;
using cli_test::write_checkpoint;
using testing::S3FaultRelay;
using testing::S3FaultSchedule;

constexpr char kPack1MiB[] = " --s3_pack_size=1048576";

// About 8 MiB of weights: eight or so 1 MiB packs.
void write_big_checkpoint(const fs::path& dir, std::uint64_t seed) {
  fs::create_directories(dir);
  for (int i = 0; i < 4; ++i) {
    testing::write_file(
        dir / ("w" + std::to_string(i) + ".bin"),
        testing::normal_floats(1'000'000, 2, true, 0.02, seed + static_cast<std::uint64_t>(i)));
  }
}

class S3FaultCommandTest : public cli_test::S3CommandTest {
 protected:
  std::string ns() const { return std::string(" --namespace=") + kHost; }
  std::string host_prefix() const { return std::string("dr/") + kHost + "/"; }
  std::unique_ptr<S3Client> client() const {
    return std::move(S3Client::create(testing::ceph_s3_config(*ceph_)).value());
  }
  std::vector<S3Object> objects(const std::string& under) const {
    auto list = client()->list(bucket_, host_prefix() + under);
    EXPECT_TRUE(list.is_ok()) << list.status().to_string();
    return list.is_ok() ? *list : std::vector<S3Object>{};
  }
  std::uint64_t bytes_under(const std::string& under) const {
    std::uint64_t sum = 0;
    for (const S3Object& o : objects(under)) sum += o.size;
    return sum;
  }
  std::string gateway1_target() const { return ceph_->endpoint1.substr(std::string("http://").size()); }
};

// The relay answers about one request in three itself (503 SlowDown, 500
// InternalError, or a reset part-way through a body) before letting the rest
// through: the push retries each with backoff and completes, and the
// bucket holds whole packs and one whole snapshot.
TEST_F(S3FaultCommandTest, SlowDownsErrorsAndResetsAreRetriedAndThePushCompletes) {
  S3FaultSchedule schedule;
  // Seed 3 draws every kind of fault, 5 in all, among the first 20 requests
  // (the draws of request i depend on the seed and i only).
  schedule.seed = 3;
  schedule.slow_down_probability = 0.15;
  schedule.internal_error_probability = 0.1;
  schedule.reset_probability = 0.1;
  schedule.max_faults = 12;
  S3FaultRelay relay(gateway1_target(), schedule);
  ASSERT_TRUE(relay.start().is_ok());
  write_big_checkpoint(dir_ / "ck", 1);
  const std::int64_t t0 = mono_ms();
  auto push = ferry("push " + quote((dir_ / "ck").string()) + " --name=faulted --to=" + url() + ns() +
                    kPack1MiB + " --s3_endpoints=" + relay.endpoint());
  ASSERT_EQ(push.code, 0) << push.out;
  const testing::S3RelayCounters c = relay.counters();
  EXPECT_GE(c.slow_downs, 1u);
  EXPECT_GE(c.internal_errors, 1u);
  EXPECT_GE(c.resets, 1u);
  EXPECT_GE(c.slow_downs + c.internal_errors + c.resets, 5u);
  EXPECT_LT(mono_ms() - t0, 60'000);
  auto scrub = ferry("scrub --store=" + url());
  EXPECT_EQ(scrub.code, 0) << scrub.out;
  auto restore = ferry("restore faulted --from=" + url() + ns() + " --to=" + quote((dir_ / "out").string()) +
                       " --s3_endpoints=" + relay.endpoint());
  ASSERT_EQ(restore.code, 0) << restore.out;
  expect_same_tree(dir_ / "ck", dir_ / "out");
}

// Every request from the 8th on is refused (an outage longer than the
// retries): the push fails, no snapshot is visible, and what reached the
// bucket is whole. The next push, once the gateway answers again, skips the
// chunks of the packs that were stored and uploads exactly the objects that
// are new.
TEST_F(S3FaultCommandTest, AnOutageCommitsNothingAndTheResumedPushSendsOnlyWhatIsMissing) {
  S3FaultSchedule outage;
  outage.fail_from_request = 8;
  S3FaultRelay relay(gateway1_target(), outage);
  ASSERT_TRUE(relay.start().is_ok());
  write_big_checkpoint(dir_ / "ck", 2);
  const std::string push_cmd = "push " + quote((dir_ / "ck").string()) + " --name=resumed --to=" + url() +
                               ns() + kPack1MiB + " --s3_endpoints=" + relay.endpoint();
  auto failed = ferry(push_cmd);
  ASSERT_NE(failed.code, 0) << failed.out;
  EXPECT_NE(failed.out.find("SlowDown"), std::string::npos) << failed.out;
  EXPECT_TRUE(objects("snapshots/").empty()) << "a failed push commits no snapshot";
  auto list = ferry("list --from=" + url() + ns());
  ASSERT_EQ(list.code, 0) << list.out;
  EXPECT_NE(list.out.find("no snapshots"), std::string::npos) << list.out;
  const auto packs_before = objects("packs/");
  ASSERT_GE(packs_before.size(), 1u) << "the outage began after the first packs";
  auto scrub = ferry("scrub --store=" + url());
  EXPECT_EQ(scrub.code, 0) << scrub.out;
  const std::uint64_t stored_before = bytes_under("");

  relay.set_schedule({});
  const std::uint64_t put_bytes_before = relay.counters().put_body_bytes_forwarded;
  auto resumed = ferry(push_cmd);
  ASSERT_EQ(resumed.code, 0) << resumed.out;
  EXPECT_EQ(resumed.out.find("chunks_skipped=0 "), std::string::npos) << resumed.out;
  const std::uint64_t sent = relay.counters().put_body_bytes_forwarded - put_bytes_before;
  // Every byte the resumed push uploaded is a new object: no pack stored by
  // the failed push went again.
  EXPECT_EQ(sent, bytes_under("") - stored_before);
  auto restore = ferry("restore resumed --from=" + url() + ns() + " --to=" + quote((dir_ / "out").string()));
  ASSERT_EQ(restore.code, 0) << restore.out;
  expect_same_tree(dir_ / "ck", dir_ / "out");
}

// --s3_endpoints names a gateway of the test's own and gateway 2; the first
// is killed -9 once the push has stored a pack through it. The push
// finishes through gateway 2 and the snapshot restores whole.
TEST_F(S3FaultCommandTest, AGatewayKilledMidPushTheHostFinishesThroughTheOther) {
  const testing::OwnGateway victim = testing::add_gateway(*ceph_);
  ASSERT_FALSE(victim.url.empty()) << victim.error;
  write_big_checkpoint(dir_ / "ck", 3);
  std::atomic<bool> stop{false}, killed{false};
  std::thread killer([&] {
    auto c = client();
    while (!stop.load()) {
      auto packs = c->list(bucket_, host_prefix() + "packs/");
      if (packs.is_ok() && !packs->empty()) {
        killed = testing::kill_gateway(*ceph_, victim.n);
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  });
  auto push = ferry("push " + quote((dir_ / "ck").string()) + " --name=failover --to=" + url() + ns() +
                    kPack1MiB + " --s3_endpoints=" + victim.url + "," + ceph_->endpoint2);
  stop = true;
  killer.join();
  ASSERT_EQ(push.code, 0) << push.out;
  ASSERT_TRUE(killed.load()) << "the push ended before a pack was stored";
  auto restore = ferry("restore failover --from=" + url() + ns() + " --to=" + quote((dir_ / "out").string()) +
                       " --s3_endpoints=" + victim.url + "," + ceph_->endpoint2);
  ASSERT_EQ(restore.code, 0) << restore.out;
  expect_same_tree(dir_ / "ck", dir_ / "out");
}

// Wrong keys and a missing bucket are named and sent once: the relay sees
// one request each.
TEST_F(S3FaultCommandTest, WrongKeysAndAMissingBucketAreNamedAndNotRetried) {
  S3FaultRelay relay(gateway1_target(), {});
  ASSERT_TRUE(relay.start().is_ok());
  write_checkpoint(dir_ / "ck", 4);
  setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret", 1);
  auto denied = ferry("push " + quote((dir_ / "ck").string()) + " --to=" + url() + ns() +
                      " --s3_endpoints=" + relay.endpoint());
  EXPECT_EQ(denied.code, 1) << denied.out;
  EXPECT_NE(denied.out.find("SignatureDoesNotMatch"), std::string::npos) << denied.out;
  EXPECT_NE(denied.out.find(bucket_), std::string::npos) << denied.out;
  EXPECT_EQ(relay.counters().requests, 1u);
  use_gateway(1);
  const std::string missing = testing::unique_bucket();
  auto absent = ferry("push " + quote((dir_ / "ck").string()) + " --to=s3://" + missing + "/dr" + ns() +
                      " --s3_endpoints=" + relay.endpoint());
  EXPECT_NE(absent.code, 0) << absent.out;
  EXPECT_NE(absent.out.find("the bucket " + missing + " does not exist"), std::string::npos) << absent.out;
  EXPECT_EQ(relay.counters().requests, 2u);
}

// One pack cut short and another with a flipped byte, in the bucket: scrub
// names both packs and the chunks in them, and restore refuses the snapshot
// naming a chunk.
TEST_F(S3FaultCommandTest, TruncatedAndCorruptedPacksAreNamedByScrubAndRefusedByRestore) {
  write_big_checkpoint(dir_ / "ck", 5);
  auto push =
      ferry("push " + quote((dir_ / "ck").string()) + " --name=damaged --to=" + url() + ns() + kPack1MiB);
  ASSERT_EQ(push.code, 0) << push.out;
  const auto packs = objects("packs/");
  ASSERT_GE(packs.size(), 3u);
  auto c = client();
  auto cut = c->get(bucket_, packs[0].key).value();
  cut.resize(cut.size() / 2);
  ASSERT_TRUE(c->put(bucket_, packs[0].key, cut).is_ok());
  auto flipped = c->get(bucket_, packs[1].key).value();
  flipped[flipped.size() / 3] ^= std::byte{0x10};
  ASSERT_TRUE(c->put(bucket_, packs[1].key, flipped).is_ok());

  // Restore first: scrub takes the bad chunks out of the index.
  auto restore = ferry("restore damaged --from=" + url() + ns() + " --to=" + quote((dir_ / "out").string()));
  EXPECT_NE(restore.code, 0) << restore.out;
  EXPECT_NE(restore.out.find("chunk "), std::string::npos) << restore.out;

  auto scrub = ferry("scrub --store=" + url());
  EXPECT_NE(scrub.code, 0) << scrub.out;
  EXPECT_NE(scrub.out.find("DAMAGED"), std::string::npos) << scrub.out;
  EXPECT_NE(scrub.out.find(packs[0].key), std::string::npos) << scrub.out;
  EXPECT_NE(scrub.out.find(packs[1].key), std::string::npos) << scrub.out;
  EXPECT_NE(scrub.out.find("BAD chunk "), std::string::npos) << scrub.out;
  EXPECT_NE(scrub.out.find("damaged"), std::string::npos) << "names the snapshots hit: " << scrub.out;
}

}  // namespace
}  // namespace ferry
