// s3_command_fixture.h: what the tests of the `ferry` binary over a real
// Ceph cluster share: a bucket of their own, certificates, AWS_* variables
// pointing at one gateway, `ferry serve --store=s3://...` children, and
// checkpoints to push and compare.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <string>
#include <vector>

#include "replication/cert_gen.h"
#include "store/s3_client.h"
#include "tests/replication/ferry_child.h"
#include "tests/testing/ceph_dev.h"
#include "tests/testing/testing.h"
#include "tests/tools/ferry_cli.h"

namespace ferry::cli_test {

namespace fs = std::filesystem;
using testing::ChildProcess;

constexpr char kHost[] = "host-a";
constexpr int kServeStartMs = 30'000;

// A checkpoint of a few files: BF16 weights and opaque bytes.
inline void write_checkpoint(const fs::path& dir, std::uint64_t seed) {
  fs::create_directories(dir / "shards");
  testing::write_file(dir / "shards" / "w0.bin", testing::normal_floats(600'000, 2, true, 0.02, seed));
  testing::write_file(dir / "shards" / "w1.bin", testing::normal_floats(300'000, 4, false, 0.1, seed + 1));
  testing::write_file(dir / "meta.json", testing::random_bytes(5000, seed + 2));
}

inline void expect_same_tree(const fs::path& a, const fs::path& b) {
  for (const auto& e : fs::recursive_directory_iterator(a)) {
    if (!e.is_regular_file()) continue;
    const fs::path rel = fs::relative(e.path(), a);
    ASSERT_TRUE(fs::exists(b / rel)) << rel;
    EXPECT_EQ(testing::read_file(e.path()), testing::read_file(b / rel)) << rel;
  }
}

class S3CommandTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string skip;
    ceph_ = testing::ceph_cluster(skip);
    if (ceph_ == nullptr) GTEST_SKIP() << skip;
    auto client = S3Client::create(testing::ceph_s3_config(*ceph_));
    ASSERT_TRUE(client.is_ok());
    ASSERT_TRUE((*client)->create_bucket(bucket_).is_ok());
    replication::CertSetOptions co;
    co.hosts = {kHost};
    auto certs = replication::create_cert_set(dir_ / "certs", co);
    ASSERT_TRUE(certs.is_ok()) << certs.status().to_string();
    certs_ = *certs;
    use_gateway(1);
    unsetenv("AWS_PROFILE");
  }

  // The AWS_* variables the children inherit, pointing at gateway `n`.
  void use_gateway(int n) {
    setenv("AWS_ACCESS_KEY_ID", ceph_->access_key.c_str(), 1);
    setenv("AWS_SECRET_ACCESS_KEY", ceph_->secret_key.c_str(), 1);
    setenv("AWS_REGION", ceph_->region.c_str(), 1);
    setenv("AWS_ENDPOINT_URL", (n == 1 ? ceph_->endpoint1 : ceph_->endpoint2).c_str(), 1);
  }

  std::string url() const { return "s3://" + bucket_ + "/dr"; }
  std::string tls_flags() const {
    return " --ca=" + quote(certs_.ca_cert.string()) + " --cert=" + quote(certs_.host_cert(kHost).string()) +
           " --key=" + quote(certs_.host_key(kHost).string());
  }

  // `ferry serve --store=s3://...` through gateway `gateway`, with `extra`
  // flags; its port.
  std::uint16_t start_serve(int gateway, const std::vector<std::string>& extra = {}) {
    use_gateway(gateway);
    std::vector<std::string> argv = {FERRY_BIN,
                                     "serve",
                                     "--store=" + url(),
                                     "--ca=" + certs_.ca_cert.string(),
                                     "--cert=" + certs_.receiver_cert.string(),
                                     "--key=" + certs_.receiver_key.string(),
                                     "--listen=127.0.0.1:0"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    auto child = ChildProcess::spawn(argv, dir_ / ("serve" + std::to_string(gateway) + ".log"));
    EXPECT_TRUE(child.is_ok()) << child.status().to_string();
    if (!child.is_ok()) return 0;
    auto line = child->wait_for_line("listening on", kServeStartMs);
    EXPECT_TRUE(line.is_ok()) << line.status().to_string();
    if (!line.is_ok()) return 0;
    serves_.push_back(std::move(child).value());
    use_gateway(1);
    return testing::port_of_listening_line(*line);
  }

  const testing::CephCluster* ceph_ = nullptr;
  testing::TempDir dir_;
  std::string bucket_ = testing::unique_bucket();
  replication::CertSet certs_;
  std::vector<ChildProcess> serves_;
};

}  // namespace ferry::cli_test
