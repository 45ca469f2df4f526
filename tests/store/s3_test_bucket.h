// s3_test_bucket.h: what the S3 store tests share: a bucket of their own on
// the test Ceph cluster (tests/testing/ceph_dev.h) and stores over it,
// opened through either gateway (or any endpoint, such as a relay), with
// small packs and a silent log unless the test asks otherwise.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "store/s3_client.h"
#include "store/s3_store.h"
#include "store/store_options.h"
#include "tests/testing/ceph_dev.h"

namespace ferry::testing {

struct S3TestBucket {
  const CephCluster& ceph;
  std::string name = unique_bucket();
  std::unique_ptr<S3Client> client;

  explicit S3TestBucket(const CephCluster& c) : ceph(c) {
    auto created = S3Client::create(ceph_s3_config(ceph));
    client = std::move(*created);
    EXPECT_TRUE(client->create_bucket(name).is_ok());
  }
  std::string url() const { return "s3://" + name + "/dr"; }
  // Through gateway 1 or 2, or the endpoint `via` when given.
  std::unique_ptr<ChunkStore> open(int gateway = 1, StoreOptions options = {},
                                   const std::string& via = {}) const {
    S3Config cfg = ceph_s3_config(ceph);
    cfg.endpoints = {gateway == 1 ? ceph.endpoint1 : ceph.endpoint2};
    if (!via.empty()) cfg.endpoints = {via};
    if (options.object_pack_target_bytes == kDefaultObjectPackTargetBytes)
      options.object_pack_target_bytes = 1 << 20;
    if (!options.log) options.log = [](std::string_view) {};
    auto s = open_s3_store(url(), cfg, options);
    EXPECT_TRUE(s.is_ok()) << s.status().to_string();
    return s.is_ok() ? std::move(*s) : nullptr;
  }
  // The objects under "dr/<under>".
  std::vector<S3Object> objects(const std::string& under) const {
    auto list = client->list(name, "dr/" + under);
    EXPECT_TRUE(list.is_ok()) << list.status().to_string();
    return list.is_ok() ? *list : std::vector<S3Object>{};
  }
};

}  // namespace ferry::testing
