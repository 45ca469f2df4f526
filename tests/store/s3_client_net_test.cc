// s3_client_net_test.cc: the S3 client against a real Ceph cluster
// (scripts/ceph-dev.sh: radosgw 16, two gateways over one cluster): round
// trips through both gateways, conditional writes racing, ranged reads,
// paginated listings, parallel requests, failover to the second gateway,
// the errors users meet (wrong keys, a missing bucket), virtual-host
// addressing, and the upload cap.
#include <gtest/gtest.h>

#include <set>

#include "base/clock.h"
#include "store/s3_client.h"
#include "tests/testing/ceph_dev.h"
#include "tests/testing/link_simulator.h"
#include "tests/testing/testing.h"

namespace ferry {
namespace {

using testing::ceph_s3_config;
using testing::random_bytes;
using testing::unique_bucket;

std::unique_ptr<S3Client> client_for(S3Config cfg) {
  auto c = S3Client::create(std::move(cfg));
  EXPECT_TRUE(c.is_ok()) << c.status().to_string();
  return c.is_ok() ? std::move(*c) : nullptr;
}

// With an upload cap, a PUT's body leaves at that pace (the bucket's burst
// of a quarter second aside); without one, the same PUT takes far less.
TEST(S3ClientNetTest, UploadsKeepToTheCap) {
  FERRY_REQUIRE_CEPH(ceph);
  S3Config capped = ceph_s3_config(*ceph);
  capped.max_upload_bytes_per_s = 1'000'000;
  auto slow = client_for(capped), fast = client_for(ceph_s3_config(*ceph));
  const std::string bucket = unique_bucket();
  ASSERT_TRUE(fast->create_bucket(bucket).is_ok());
  const auto body = random_bytes(2'000'000, testing::test_seed());
  double t0 = mono_seconds();
  ASSERT_TRUE(fast->put(bucket, "fast", body).is_ok());
  const double fast_s = mono_seconds() - t0;
  t0 = mono_seconds();
  ASSERT_TRUE(slow->put(bucket, "slow", body).is_ok());
  const double slow_s = mono_seconds() - t0;
  EXPECT_GE(slow_s, 1.6) << "2 MB at 1 MB/s, less a 250 KB burst";
  EXPECT_LT(fast_s, 1.0);
  EXPECT_EQ(slow->get(bucket, "slow").value(), body);
}

TEST(S3ClientNetTest, RoundTripThroughBothGateways) {
  FERRY_REQUIRE_CEPH(ceph);
  S3Config one = ceph_s3_config(*ceph), two = one;
  one.endpoints = {ceph->endpoint1};
  two.endpoints = {ceph->endpoint2};
  auto a = client_for(one), b = client_for(two);
  const std::string bucket = unique_bucket();
  ASSERT_TRUE(a->create_bucket(bucket).is_ok());
  ASSERT_TRUE(a->create_bucket(bucket).is_ok()) << "creating an own bucket again is OK";
  const auto body = random_bytes(3 << 20, testing::test_seed());
  auto put = a->put(bucket, "dir/obj one", body);
  ASSERT_TRUE(put.is_ok()) << put.status().to_string();
  EXPECT_TRUE(*put);
  auto got = b->get(bucket, "dir/obj one");
  ASSERT_TRUE(got.is_ok()) << got.status().to_string();
  EXPECT_EQ(*got, body);
  auto size = b->head(bucket, "dir/obj one");
  ASSERT_TRUE(size.is_ok()) << size.status().to_string();
  EXPECT_EQ(*size, body.size());
  ASSERT_TRUE(b->remove(bucket, "dir/obj one").is_ok());
  EXPECT_EQ(a->get(bucket, "dir/obj one").status().code(), Code::kNotFound);
  EXPECT_EQ(a->head(bucket, "dir/obj one").status().code(), Code::kNotFound);
  EXPECT_TRUE(a->remove(bucket, "dir/obj one").is_ok()) << "deleting an absent key is OK";
  const S3Stats s = a->stats();
  EXPECT_GE(s.bytes_sent, body.size());
  EXPECT_EQ(s.retries, 0u);
}

TEST(S3ClientNetTest, RangedGetReturnsExactlyTheBytesAsked) {
  FERRY_REQUIRE_CEPH(ceph);
  auto c = client_for(ceph_s3_config(*ceph));
  const std::string bucket = unique_bucket();
  ASSERT_TRUE(c->create_bucket(bucket).is_ok());
  const auto body = random_bytes(1 << 20, 7);
  ASSERT_TRUE(c->put(bucket, "k", body).is_ok());
  for (auto [first, length] :
       {std::pair<std::uint64_t, std::uint64_t>{0, 1}, {12345, 54321}, {(1 << 20) - 9, 9}}) {
    auto got = c->get_range(bucket, "k", first, length);
    ASSERT_TRUE(got.is_ok()) << got.status().to_string();
    EXPECT_TRUE(std::equal(got->begin(), got->end(), body.begin() + static_cast<std::ptrdiff_t>(first)));
    EXPECT_EQ(got->size(), length);
  }
  // A range past the end is refused, not silently shortened.
  EXPECT_FALSE(c->get_range(bucket, "k", (1 << 20) - 4, 8).is_ok());
}

// A ranged GET's reply is sized once for its range (not grown by doubling
// as it arrives), and get_range_into keeps a buffer the caller hands in:
// the bytes land in its memory, with no new allocation.
TEST(S3ClientNetTest, RangedGetsFillABufferSizedOnceOrTheCallersOwn) {
  FERRY_REQUIRE_CEPH(ceph);
  auto c = client_for(ceph_s3_config(*ceph));
  const std::string bucket = unique_bucket();
  ASSERT_TRUE(c->create_bucket(bucket).is_ok());
  const auto body = random_bytes(3 << 20, 8);
  ASSERT_TRUE(c->put(bucket, "k", body).is_ok());
  const std::uint64_t length = (2 << 20) + 12345;
  auto got = c->get_range(bucket, "k", 1000, length);
  ASSERT_TRUE(got.is_ok()) << got.status().to_string();
  EXPECT_EQ(got->size(), length);
  EXPECT_EQ(got->capacity(), length);
  std::vector<std::byte> mine;
  mine.reserve(3 << 20);
  const std::byte* const kept = mine.data();
  for (std::uint64_t first : {0ull, 777ull}) {
    ASSERT_TRUE(c->get_range_into(bucket, "k", first, length, mine).is_ok());
    EXPECT_EQ(mine.data(), kept);
    ASSERT_EQ(mine.size(), length);
    EXPECT_TRUE(std::equal(mine.begin(), mine.end(), body.begin() + static_cast<std::ptrdiff_t>(first)));
  }
  // Past the end: refused, and the buffer is still the caller's.
  EXPECT_FALSE(c->get_range_into(bucket, "k", (3 << 20) - 4, 8, mine).is_ok());
  EXPECT_EQ(mine.data(), kept);
}

// A PUT may carry its body's SHA-256 when the caller has it (a pack is
// named by it), so it is not hashed twice: the gateway checks it against
// the body, so a wrong one is refused and nothing is stored.
TEST(S3ClientNetTest, AGivenBodyHashIsSignedAndCheckedByTheGateway) {
  FERRY_REQUIRE_CEPH(ceph);
  auto c = client_for(ceph_s3_config(*ceph));
  const std::string bucket = unique_bucket();
  ASSERT_TRUE(c->create_bucket(bucket).is_ok());
  const auto body = random_bytes(1 << 20, 11);
  Digest wrong = sha256(body);
  wrong[0] ^= 1;
  S3Request refused = c->put_request(bucket, "k", body, /*if_absent=*/false, {}, {}, &wrong);
  EXPECT_FALSE(refused.status.is_ok());
  EXPECT_EQ(refused.http_status, 400) << refused.status.to_string();
  EXPECT_EQ(c->get(bucket, "k").status().code(), Code::kNotFound);

  const Digest right = sha256(body);
  S3Request stored = c->put_request(bucket, "k", body, /*if_absent=*/false, {}, {}, &right);
  ASSERT_TRUE(stored.status.is_ok()) << stored.status.to_string();
  auto got = c->get(bucket, "k");
  ASSERT_TRUE(got.is_ok()) << got.status().to_string();
  EXPECT_EQ(*got, body);
}

TEST(S3ClientNetTest, ConditionalPutsRacingOnOneKeyHaveOneWinner) {
  FERRY_REQUIRE_CEPH(ceph);
  auto c = client_for(ceph_s3_config(*ceph));
  const std::string bucket = unique_bucket();
  ASSERT_TRUE(c->create_bucket(bucket).is_ok());
  constexpr int kRacers = 12;
  std::vector<std::vector<std::byte>> bodies;
  std::vector<S3Request> reqs(kRacers);
  std::vector<S3Request*> ptrs;
  for (int i = 0; i < kRacers; ++i) bodies.push_back(random_bytes(4096, static_cast<std::uint64_t>(i)));
  for (int i = 0; i < kRacers; ++i) {
    reqs[i].method = S3Request::Method::kPut;
    reqs[i].bucket = bucket;
    reqs[i].key = "snapshot";
    reqs[i].body = bodies[i];
    reqs[i].if_none_match = true;
    ptrs.push_back(&reqs[i]);
  }
  c->run(ptrs);
  int won = -1, refused = 0;
  for (int i = 0; i < kRacers; ++i) {
    if (reqs[i].status.is_ok()) {
      EXPECT_EQ(won, -1) << "two conditional PUTs both created the key";
      won = i;
    } else {
      EXPECT_EQ(reqs[i].http_status, 412) << reqs[i].status.to_string();
      ++refused;
    }
  }
  ASSERT_NE(won, -1);
  EXPECT_EQ(refused, kRacers - 1);
  auto got = c->get(bucket, "snapshot");
  ASSERT_TRUE(got.is_ok());
  EXPECT_EQ(*got, bodies[won]) << "the object holds the winner's bytes";
  auto again = c->put(bucket, "snapshot", bodies[0], /*if_absent=*/true);
  ASSERT_TRUE(again.is_ok());
  EXPECT_FALSE(*again);
}

// If-Match on a PUT (the lock object's refresh and takeover): it replaces
// the object only while its ETag is the one named, and of swaps racing on
// one ETag exactly one wins.
TEST(S3ClientNetTest, CompareAndSwapPutsReplaceOnlyTheETagTheyName) {
  FERRY_REQUIRE_CEPH(ceph);
  auto c = client_for(ceph_s3_config(*ceph));
  const std::string bucket = unique_bucket();
  ASSERT_TRUE(c->create_bucket(bucket).is_ok());
  const auto first = random_bytes(512, 1);
  ASSERT_TRUE(c->put(bucket, "lock", first).is_ok());
  S3Request head;
  head.method = S3Request::Method::kHead;
  head.bucket = bucket;
  head.key = "lock";
  S3Request* hp = &head;
  c->run(std::span(&hp, 1));
  ASSERT_TRUE(head.status.is_ok());
  ASSERT_FALSE(head.etag.empty());

  constexpr int kRacers = 8;
  std::vector<std::vector<std::byte>> bodies;
  std::vector<S3Request> reqs(kRacers);
  std::vector<S3Request*> ptrs;
  for (int i = 0; i < kRacers; ++i) bodies.push_back(random_bytes(512, 100 + static_cast<std::uint64_t>(i)));
  for (int i = 0; i < kRacers; ++i) {
    reqs[i].method = S3Request::Method::kPut;
    reqs[i].bucket = bucket;
    reqs[i].key = "lock";
    reqs[i].body = bodies[i];
    reqs[i].if_match = head.etag;
    ptrs.push_back(&reqs[i]);
  }
  c->run(ptrs);
  int won = -1;
  for (int i = 0; i < kRacers; ++i) {
    if (reqs[i].status.is_ok()) {
      EXPECT_EQ(won, -1) << "two swaps on one ETag both replaced the object";
      won = i;
    } else {
      EXPECT_EQ(reqs[i].http_status, 412) << reqs[i].status.to_string();
    }
  }
  ASSERT_NE(won, -1);
  EXPECT_EQ(c->get(bucket, "lock").value(), bodies[won]);
  // The winner's ETag swaps again; the first one no longer does.
  S3Request again;
  again.method = S3Request::Method::kPut;
  again.bucket = bucket;
  again.key = "lock";
  again.body = first;
  again.if_match = head.etag;
  S3Request* ap = &again;
  c->run(std::span(&ap, 1));
  EXPECT_EQ(again.http_status, 412);
  again.if_match = reqs[won].etag;
  c->run(std::span(&ap, 1));
  EXPECT_TRUE(again.status.is_ok()) << again.status.to_string();
  EXPECT_EQ(c->get(bucket, "lock").value(), first);
}

TEST(S3ClientNetTest, ListingPaginatesAndGroupsByDelimiter) {
  FERRY_REQUIRE_CEPH(ceph);
  auto c = client_for(ceph_s3_config(*ceph));
  const std::string bucket = unique_bucket();
  ASSERT_TRUE(c->create_bucket(bucket).is_ok());
  const std::vector<std::byte> body(10, std::byte{1});
  std::vector<S3Request> reqs(25);
  std::vector<S3Request*> ptrs;
  std::set<std::string> keys;
  for (int i = 0; i < 25; ++i) {
    reqs[i].method = S3Request::Method::kPut;
    reqs[i].bucket = bucket;
    reqs[i].key = (i < 20 ? "p/a/" : "p/b/") + std::to_string(1000 + i);
    reqs[i].body = body;
    keys.insert(reqs[i].key);
    ptrs.push_back(&reqs[i]);
  }
  c->run(ptrs);
  for (const S3Request& r : reqs) ASSERT_TRUE(r.status.is_ok()) << r.status.to_string();
  auto first = c->list_page(bucket, "p/", "", "", 10);
  ASSERT_TRUE(first.is_ok()) << first.status().to_string();
  EXPECT_EQ(first->objects.size(), 10u);
  EXPECT_TRUE(first->truncated);
  auto all = c->list(bucket, "p/");
  ASSERT_TRUE(all.is_ok()) << all.status().to_string();
  std::set<std::string> listed;
  for (const S3Object& o : *all) {
    listed.insert(o.key);
    EXPECT_EQ(o.size, 10u);
  }
  EXPECT_EQ(listed, keys);
  auto grouped = c->list_page(bucket, "p/", "/", "");
  ASSERT_TRUE(grouped.is_ok());
  EXPECT_EQ(grouped->common_prefixes, (std::vector<std::string>{"p/a/", "p/b/"}));
  EXPECT_TRUE(grouped->objects.empty());
}

TEST(S3ClientNetTest, ManyParallelRequestsInOneRun) {
  FERRY_REQUIRE_CEPH(ceph);
  S3Config cfg = ceph_s3_config(*ceph);
  cfg.max_parallel = 8;
  auto c = client_for(cfg);
  const std::string bucket = unique_bucket();
  ASSERT_TRUE(c->create_bucket(bucket).is_ok());
  const auto body = random_bytes(256 << 10, 3);
  ASSERT_TRUE(c->put(bucket, "pack", body).is_ok());
  constexpr int kGets = 32;
  std::vector<S3Request> reqs(kGets);
  std::vector<S3Request*> ptrs;
  for (int i = 0; i < kGets; ++i) {
    reqs[i].bucket = bucket;
    reqs[i].key = "pack";
    reqs[i].range = {static_cast<std::uint64_t>(i) * 8192, static_cast<std::uint64_t>(i) * 8192 + 8191};
    ptrs.push_back(&reqs[i]);
  }
  c->run(ptrs);
  for (int i = 0; i < kGets; ++i) {
    ASSERT_TRUE(reqs[i].status.is_ok()) << reqs[i].status.to_string();
    EXPECT_TRUE(std::equal(reqs[i].reply.begin(), reqs[i].reply.end(), body.begin() + i * 8192));
    EXPECT_EQ(reqs[i].reply.size(), 8192u);
  }
}

TEST(S3ClientNetTest, AnUnreachableEndpointFailsOverToTheNext) {
  FERRY_REQUIRE_CEPH(ceph);
  S3Config cfg = ceph_s3_config(*ceph);
  // Port 1 on loopback: nothing listens, the connection is refused at once.
  cfg.endpoints = {"http://127.0.0.1:1", ceph->endpoint2};
  auto c = client_for(cfg);
  const std::string bucket = unique_bucket();
  ASSERT_TRUE(c->create_bucket(bucket).is_ok());
  ASSERT_TRUE(c->put(bucket, "k", random_bytes(100, 1)).is_ok());
  EXPECT_GE(c->stats().retries, 1u);
  const std::uint64_t retries = c->stats().retries;
  ASSERT_TRUE(c->get(bucket, "k").is_ok());
  EXPECT_EQ(c->stats().retries, retries) << "later requests go to the endpoint that answered";
}

// Resets and cut connections through a relay: every request is retried on a
// new connection until it succeeds, and what the gateway holds is whole.
TEST(S3ClientNetTest, ResetsAndCutConnectionsAreRetried) {
  FERRY_REQUIRE_CEPH(ceph);
  testing::LinkOptions link_options;
  link_options.target = ceph->endpoint1.substr(std::string("http://").size());
  link_options.faults.seed = testing::test_seed();
  // Every faulted connection breaks (the client keeps one connection for
  // many requests, so a fault left to chance might never strike).
  link_options.faults.reset_probability = 1;
  link_options.faults.truncate_probability = 0.5;
  link_options.faults.fault_after_max_bytes = 512 << 10;
  link_options.faults.max_faulted_connections = 4;
  testing::LinkSimulator link(link_options);
  ASSERT_TRUE(link.start().is_ok());
  S3Config cfg = ceph_s3_config(*ceph);
  cfg.endpoints = {"http://" + link.address()};
  cfg.max_attempts = 8;
  auto c = client_for(cfg);
  const std::string bucket = unique_bucket();
  ASSERT_TRUE(c->create_bucket(bucket).is_ok());
  const auto body = random_bytes(2 << 20, testing::test_seed());
  for (int i = 0; i < 3; ++i) {
    auto put = c->put(bucket, "k" + std::to_string(i), body);
    ASSERT_TRUE(put.is_ok()) << put.status().to_string();
  }
  for (int i = 0; i < 3; ++i) {
    auto got = c->get(bucket, "k" + std::to_string(i));
    ASSERT_TRUE(got.is_ok()) << got.status().to_string();
    EXPECT_EQ(*got, body);
  }
  const testing::LinkCounters counters = link.counters();
  EXPECT_GE(counters.resets + counters.truncations, 1u);
  EXPECT_GE(c->stats().retries, 1u);
}

TEST(S3ClientNetTest, WrongKeysAndMissingBucketsAreNamedNotRetried) {
  FERRY_REQUIRE_CEPH(ceph);
  S3Config cfg = ceph_s3_config(*ceph);
  cfg.credentials.secret_access_key = "not-the-secret";
  auto bad = client_for(cfg);
  S3Request r;
  r.bucket = unique_bucket();
  r.key = "k";
  S3Request* p = &r;
  bad->run(std::span(&p, 1));
  EXPECT_EQ(r.status.code(), Code::kPermissionDenied) << r.status.to_string();
  EXPECT_NE(r.status.message().find("SignatureDoesNotMatch"), std::string::npos) << r.status.to_string();
  EXPECT_EQ(r.attempts, 1);

  auto good = client_for(ceph_s3_config(*ceph));
  const std::string missing = unique_bucket();
  auto got = good->get(missing, "k");
  EXPECT_EQ(got.status().code(), Code::kNotFound);
  EXPECT_NE(got.status().message().find("the bucket " + missing + " does not exist"), std::string::npos)
      << got.status().to_string();
  EXPECT_EQ(good->put(missing, "k", random_bytes(10, 1)).status().code(), Code::kNotFound);
}

// Virtual-host addressing (http://BUCKET.localhost:PORT/KEY; radosgw knows
// its name from `rgw dns name`): the same round trip and listing as path
// style, and the objects are the same ones.
TEST(S3ClientNetTest, VirtualHostAddressingReachesTheSameBucket) {
  FERRY_REQUIRE_CEPH(ceph);
  S3Config path = ceph_s3_config(*ceph);
  S3Config virt = path;
  virt.path_style = false;
  virt.endpoints = {"http://localhost:" + ceph->endpoint1.substr(ceph->endpoint1.rfind(':') + 1)};
  auto p = client_for(path);
  auto v = client_for(virt);
  const std::string bucket = unique_bucket();
  ASSERT_TRUE(v->create_bucket(bucket).is_ok());
  const auto body = random_bytes(100'000, 21);
  ASSERT_TRUE(v->put(bucket, "dir/k", body).is_ok());
  EXPECT_EQ(p->get(bucket, "dir/k").value(), body);
  ASSERT_TRUE(p->put(bucket, "dir/k2", body).is_ok());
  auto listed = v->list(bucket, "dir/");
  ASSERT_TRUE(listed.is_ok()) << listed.status().to_string();
  ASSERT_EQ(listed->size(), 2u);
  EXPECT_EQ((*listed)[1].key, "dir/k2");
  EXPECT_EQ(v->get_range(bucket, "dir/k2", 10, 5).value(),
            std::vector<std::byte>(body.begin() + 10, body.begin() + 15));
  // An address cannot carry a bucket name.
  virt.endpoints = {ceph->endpoint1};
  EXPECT_EQ(S3Client::create(virt).status().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace ferry
