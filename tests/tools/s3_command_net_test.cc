// s3_command_net_test.cc: the `ferry` binary over a real Ceph cluster
// (scripts/ceph-dev.sh): two `ferry serve --store=s3://...` receivers over
// one bucket taking pushes at once, each serving what the other stored; and
// a host pushing straight into the bucket (`ferry push --to=s3://...`, no
// receiver), listing and restoring from it, while a receiver serves the
// same bucket; a receiver's spool; the bandwidth cap of a direct push.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <optional>
#include <thread>

#include "tests/testing/ceph_dev.h"
#include "tests/testing/link_simulator.h"
#include "tests/testing/s3_fault_relay.h"
#include "tests/tools/s3_command_fixture.h"

namespace ferry {
namespace {

namespace fs = std::filesystem;

using cli_test::expect_same_tree;
using cli_test::ferry;
using cli_test::kHost;
using cli_test::quote;
using cli_test::S3CommandTest;
using cli_test::write_checkpoint;

TEST_F(S3CommandTest, TwoReceiversOverOneBucketTakePushesAtOnce) {
  const std::uint16_t a = start_serve(1), b = start_serve(2);
  ASSERT_NE(a, 0);
  ASSERT_NE(b, 0);
  write_checkpoint(dir_ / "ck1", 1);
  write_checkpoint(dir_ / "ck2", 2);
  testing::CommandRun r1, r2;
  std::thread t([&] {
    r1 = ferry("push " + quote((dir_ / "ck1").string()) + " --name=one --to=127.0.0.1:" + std::to_string(a) +
               tls_flags());
  });
  r2 = ferry("push " + quote((dir_ / "ck2").string()) + " --name=two --to=127.0.0.1:" + std::to_string(b) +
             tls_flags());
  t.join();
  ASSERT_EQ(r1.code, 0) << r1.out;
  ASSERT_EQ(r2.code, 0) << r2.out;
  // Each receiver lists and restores what the other took.
  auto list = ferry("list --from=127.0.0.1:" + std::to_string(a) + tls_flags());
  ASSERT_EQ(list.code, 0) << list.out;
  EXPECT_NE(list.out.find("one"), std::string::npos) << list.out;
  EXPECT_NE(list.out.find("two"), std::string::npos) << list.out;
  auto restore = ferry("restore two --from=127.0.0.1:" + std::to_string(a) +
                       " --to=" + quote((dir_ / "out2").string()) + tls_flags());
  ASSERT_EQ(restore.code, 0) << restore.out;
  expect_same_tree(dir_ / "ck2", dir_ / "out2");
  restore = ferry("restore one --from=127.0.0.1:" + std::to_string(b) +
                  " --to=" + quote((dir_ / "out1").string()) + tls_flags());
  ASSERT_EQ(restore.code, 0) << restore.out;
  expect_same_tree(dir_ / "ck1", dir_ / "out1");
}

// A receiver with a spool (--s3_spool) acknowledges each group commit from
// its disk and leaves the bucket with packs of --s3_pack_size, however
// small the sender's window makes the group commits; the snapshot
// restores through it, and the spool is empty after the commit.
TEST_F(S3CommandTest, AReceiverWithASpoolUploadsFullPacks) {
  const fs::path spool = dir_ / "spool";
  const std::uint16_t port = start_serve(1, {"--s3_pack_size=1048576", "--s3_spool=" + spool.string()});
  ASSERT_NE(port, 0);
  fs::create_directories(dir_ / "ck");
  testing::write_file(dir_ / "ck" / "w.bin", testing::normal_floats(3'000'000, 2, true, 0.02, 7));
  const std::string at = " --to=127.0.0.1:" + std::to_string(port) + tls_flags();
  auto push = ferry("push " + quote((dir_ / "ck").string()) +
                    " --name=spooled --window_mb=1 --chunk_size=131072" + at);
  ASSERT_EQ(push.code, 0) << push.out;
  auto client = S3Client::create(testing::ceph_s3_config(*ceph_));
  ASSERT_TRUE(client.is_ok());
  auto packs = (*client)->list(bucket_, "dr/" + std::string(kHost) + "/packs/");
  ASSERT_TRUE(packs.is_ok()) << packs.status().to_string();
  std::string sizes;
  for (const S3Object& o : *packs) sizes += " " + std::to_string(o.size);
  ASSERT_GE(packs->size(), 3u) << "pack sizes:" << sizes << "\n" << push.out;
  int small = 0;
  for (const S3Object& o : *packs) small += o.size < (1u << 20);
  EXPECT_LE(small, 1) << "only the pack the commit sealed may be smaller than the target";
  for (const auto& e : fs::recursive_directory_iterator(spool)) {
    EXPECT_NE(e.path().extension(), ".spool") << e.path() << " outlived the commit";
  }
  auto restore = ferry("restore spooled --to=" + quote((dir_ / "out").string()) +
                       " --from=127.0.0.1:" + std::to_string(port) + tls_flags());
  ASSERT_EQ(restore.code, 0) << restore.out;
  expect_same_tree(dir_ / "ck", dir_ / "out");
}

// --bwlimit reaches the bucket's uploads: a cap too small for them is
// refused, naming the least.
TEST_F(S3CommandTest, APushToABucketTakesTheBandwidthCap) {
  write_checkpoint(dir_ / "ck", 5);
  const std::string ns = std::string(" --namespace=") + kHost;
  auto push = ferry("push " + quote((dir_ / "ck").string()) + " --bwlimit=1000 --to=" + url() + ns);
  EXPECT_NE(push.code, 0) << push.out;
  EXPECT_NE(push.out.find("S3 upload cap of 1000 bytes/s is below the least"), std::string::npos) << push.out;
  auto capped = ferry("push " + quote((dir_ / "ck").string()) + " --bwlimit=4000000 --to=" + url() + ns);
  EXPECT_EQ(capped.code, 0) << capped.out;
}

// --streams sets the packs a push straight into a bucket uploads at once,
// as it does for the agent. The relay counts the PUTs it forwards at one
// moment; a link of 100 ms round trip behind it makes each upload outlast
// the puts that fill the next 1 MiB pack. A sync's own upload may add one.
TEST_F(S3CommandTest, StreamsSetThePacksAPushUploadsAtOnce) {
  fs::create_directories(dir_ / "ck");
  testing::write_file(dir_ / "ck" / "w.bin", testing::random_bytes(8u << 20, 4));
  testing::LinkOptions far;
  far.target = ceph_->endpoint1.substr(std::string("http://").size());
  far.delay_ms = 50;
  testing::LinkSimulator link(far);
  ASSERT_TRUE(link.start().is_ok());
  for (int streams : {1, 4}) {
    SCOPED_TRACE("--streams=" + std::to_string(streams));
    testing::S3FaultRelay relay(link.address(), {});
    ASSERT_TRUE(relay.start().is_ok());
    auto push = ferry("push " + quote((dir_ / "ck").string()) + " --name=s" + std::to_string(streams) +
                      " --streams=" + std::to_string(streams) +
                      " --s3_pack_size=1048576 --chunk_size=131072 --s3_endpoints=" + relay.endpoint() +
                      " --namespace=streams-" + std::to_string(streams) + " --to=" + url());
    ASSERT_EQ(push.code, 0) << push.out;
    const std::uint64_t most = relay.counters().max_puts_in_flight;
    EXPECT_LE(most, static_cast<std::uint64_t>(streams) + 1);
    if (streams > 1) {
      EXPECT_GE(most, static_cast<std::uint64_t>(streams)) << "puts outran the uploads";
    }
  }
  auto bad = ferry("push " + quote((dir_ / "ck").string()) + " --streams=0 --to=" + url());
  EXPECT_NE(bad.code, 0);
  EXPECT_NE(bad.out.find("--streams must be 1.."), std::string::npos) << bad.out;
}

TEST_F(S3CommandTest, AHostPushesStraightToTheBucketAndRestoresFromIt) {
  write_checkpoint(dir_ / "ck", 3);
  const std::string ns = std::string(" --namespace=") + kHost;
  auto push = ferry("push " + quote((dir_ / "ck").string()) + " --name=direct --to=" + url() + ns);
  ASSERT_EQ(push.code, 0) << push.out;
  EXPECT_NE(push.out.find("chunks_skipped=0"), std::string::npos) << push.out;
  // Again: the bucket holds every chunk, nothing is stored twice.
  auto again = ferry("push " + quote((dir_ / "ck").string()) + " --name=direct2 --to=" + url() + ns);
  ASSERT_EQ(again.code, 0) << again.out;
  EXPECT_NE(again.out.find("frame_bytes_stored=0"), std::string::npos) << again.out;
  auto list = ferry("list --from=" + url() + ns);
  ASSERT_EQ(list.code, 0) << list.out;
  EXPECT_NE(list.out.find("direct2"), std::string::npos) << list.out;
  auto restore =
      ferry("restore direct --from=" + url() + ns + " --threads=8 --to=" + quote((dir_ / "out").string()));
  ASSERT_EQ(restore.code, 0) << restore.out;
  expect_same_tree(dir_ / "ck", dir_ / "out");
  // A receiver over the same bucket serves the host's snapshot (its
  // certificate names the same namespace).
  const std::uint16_t port = start_serve(2);
  ASSERT_NE(port, 0);
  auto served = ferry("restore direct --from=127.0.0.1:" + std::to_string(port) +
                      " --to=" + quote((dir_ / "out-served").string()) + tls_flags());
  ASSERT_EQ(served.code, 0) << served.out;
  expect_same_tree(dir_ / "ck", dir_ / "out-served");
  // An operator's scrub of the bucket finds it whole.
  auto scrub = ferry("scrub --store=" + url());
  EXPECT_EQ(scrub.code, 0) << scrub.out;
  // Wrong keys: a clear error, exit 1.
  setenv("AWS_SECRET_ACCESS_KEY", "wrong", 1);
  auto denied = ferry("list --from=" + url() + ns);
  EXPECT_EQ(denied.code, 1) << denied.out;
  EXPECT_NE(denied.out.find("SignatureDoesNotMatch"), std::string::npos) << denied.out;
}

// Without --delta_from, a push into the bucket finds its delta base in the
// namespace's own snapshots (their manifests record the directory each was
// pushed from): the second checkpoint of a job goes as a delta of the
// first, `ferry list` says so, and it restores byte for byte.
TEST_F(S3CommandTest, ASecondCheckpointGoesAsADeltaOfTheFirst) {
  std::vector<std::byte> weights = testing::normal_floats(3u << 17, 2, true, 0.02, 21);
  const std::string ns = std::string(" --namespace=") + kHost + " --job=llama";
  std::vector<std::string> outs;
  for (int step = 1; step <= 3; ++step) {
    testing::drift_bf16(weights, static_cast<std::uint64_t>(step));
    const std::filesystem::path d = dir_ / ("step-" + std::to_string(step));
    std::filesystem::create_directories(d);
    testing::write_bf16_safetensors(d / "model.safetensors", weights, 3);
    auto push =
        ferry("push " + quote(d.string()) + " --to=" + url() + ns + (step == 3 ? " --delta=off" : ""));
    ASSERT_EQ(push.code, 0) << push.out;
    outs.push_back(push.out);
  }
  EXPECT_NE(outs[0].find("kind=key base=-"), std::string::npos) << outs[0];
  EXPECT_NE(outs[1].find("kind=delta base=llama-step-1"), std::string::npos) << outs[1];
  EXPECT_EQ(outs[1].find("delta_chunks=0"), std::string::npos) << outs[1];
  EXPECT_NE(outs[2].find("kind=key base=-"), std::string::npos) << "--delta=off\n" << outs[2];
  auto list = ferry("list --from=" + url() + std::string(" --namespace=") + kHost);
  ASSERT_EQ(list.code, 0) << list.out;
  EXPECT_NE(list.out.find("delta llama-step-1"), std::string::npos) << list.out;
  auto restore = ferry("restore llama-step-2 --from=" + url() + std::string(" --namespace=") + kHost +
                       " --to=" + quote((dir_ / "out").string()));
  ASSERT_EQ(restore.code, 0) << restore.out;
  expect_same_tree(dir_ / "step-2", dir_ / "out");
}

// --s3_object_lock_days: retention on every object a push writes. A bucket
// made with Object Lock takes it (a locked pack version cannot be deleted,
// s3_gc_net_test.cc); a bucket without it refuses the push, which fails
// naming the gateway's error; the flag needs an s3:// target.
TEST_F(S3CommandTest, PushWithObjectLockRetention) {
  write_checkpoint(dir_ / "ck", 5);
  auto client = S3Client::create(testing::ceph_s3_config(*ceph_));
  ASSERT_TRUE(client.is_ok());
  const std::string locked = testing::unique_bucket();
  S3Request make;
  make.method = S3Request::Method::kPut;
  make.bucket = locked;
  make.headers = {{"x-amz-bucket-object-lock-enabled", "true"}};
  S3Request* mp = &make;
  (*client)->run(std::span(&mp, 1));
  ASSERT_TRUE(make.status.is_ok()) << make.status.to_string();
  const std::string ns = std::string(" --namespace=") + kHost;
  auto push = ferry("push " + quote((dir_ / "ck").string()) +
                    " --name=kept --s3_object_lock_days=1 --to=s3://" + locked + "/dr" + ns);
  ASSERT_EQ(push.code, 0) << push.out;
  auto restore =
      ferry("restore kept --from=s3://" + locked + "/dr" + ns + " --to=" + quote((dir_ / "out").string()));
  ASSERT_EQ(restore.code, 0) << restore.out;
  expect_same_tree(dir_ / "ck", dir_ / "out");

  auto refused =
      ferry("push " + quote((dir_ / "ck").string()) + " --name=x --s3_object_lock_days=1 --to=" + url() + ns);
  EXPECT_NE(refused.code, 0) << refused.out;
  EXPECT_NE(refused.out.find(bucket_), std::string::npos) << refused.out;
  auto usage = ferry("push " + quote((dir_ / "ck").string()) + " --s3_object_lock_days=1 --to=127.0.0.1:1");
  EXPECT_EQ(usage.code, 2) << usage.out;
  EXPECT_NE(usage.out.find("--s3_object_lock_days needs --to=s3://"), std::string::npos) << usage.out;
}

}  // namespace
}  // namespace ferry
