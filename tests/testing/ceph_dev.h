// ceph_dev.h: the real Ceph cluster (scripts/ceph-dev.sh: one mon, one OSD,
// two radosgw on 127.0.0.1) that the S3 tests run against. Under ctest, a
// setup test starts one cluster for the whole run and names its env file in
// $FERRY_CEPH_ENV (tests/CMakeLists.txt); a test binary run by hand starts
// its own, once per process, and stops it at exit. Tests use their own
// buckets (unique_bucket()), so they share the cluster safely.
#pragma once

#include <optional>
#include <string>

#include "store/s3_client.h"

namespace ferry::testing {

struct CephCluster {
  std::string dir;  // the cluster's directory (pid files in dir/run)
  std::string endpoint1, endpoint2;
  std::string access_key, secret_key, region;
};

// The running cluster, or nullptr with `skip_reason` set (no Ceph packages,
// or the cluster would not start: the reason says which, with its log).
const CephCluster* ceph_cluster(std::string& skip_reason);

// Use inside a TEST: the cluster, or GTEST_SKIP with the reason.
#define FERRY_REQUIRE_CEPH(var)                                                          \
  std::string var##_skip;                                                                \
  const ::ferry::testing::CephCluster* var = ::ferry::testing::ceph_cluster(var##_skip); \
  if (var == nullptr) GTEST_SKIP() << var##_skip

// A client configuration for the cluster: both gateways (gateway 1 first),
// no private CA, short backoff so that fault tests run quickly.
S3Config ceph_s3_config(const CephCluster& c);
// "ferry-test-<random>": a fresh bucket name.
std::string unique_bucket();
// Runs scripts/ceph-dev.sh with `args` ("restart-rgw DIR 1"); its exit code.
int ceph_dev(const std::string& args);
// A gateway of one test's own, for it to kill or to serve TLS.
struct OwnGateway {
  int n = 0;          // its number (3-99), for kill_gateway
  std::string url;    // its endpoint; empty when it did not start
  std::string error;  // why not, when url is empty
};
// Starts a gateway under a number no other test of the cluster has taken:
// tests run in processes of their own against one cluster, and two that
// picked the same number would start two gateways of one name (one pid
// file, one admin socket). With a PEM certificate and key it serves S3
// over TLS (an https:// URL), else plain http.
OwnGateway add_gateway(const CephCluster& c, const std::string& cert_file = "",
                       const std::string& key_file = "");
// A new S3 user `uid` of the cluster and its keys.
std::optional<S3Credentials> add_user(const CephCluster& c, const std::string& uid);
// kill -9 of gateway `n` of the cluster; true when it was running.
bool kill_gateway(const CephCluster& c, int n);

}  // namespace ferry::testing
