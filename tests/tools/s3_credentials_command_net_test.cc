// s3_credentials_command_net_test.cc: the S3 settings users already have,
// through the `ferry` binary against a real Ceph cluster
// (scripts/ceph-dev.sh): profiles of the shared credentials and config
// files (AWS_PROFILE, --s3_profile), virtual-host addressing, TLS verified
// against a private CA (--s3_ca, AWS_CA_BUNDLE) with radosgw serving
// https, and per-host credentials that a bucket policy limits to the host's
// own prefix.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include "tests/testing/ceph_dev.h"
#include "tests/tools/s3_command_fixture.h"

namespace ferry {
namespace {

using cli_test::expect_same_tree;
using cli_test::ferry;
using cli_test::kHost;
using cli_test::quote;
using cli_test::write_checkpoint;

void write_text(const std::filesystem::path& p, const std::string& text) {
  const auto bytes = std::as_bytes(std::span(text));
  testing::write_file(p, std::vector<std::byte>(bytes.begin(), bytes.end()));
}

class S3CredentialsCommandTest : public cli_test::S3CommandTest {
 protected:
  std::string ns(const std::string& host = kHost) const { return " --namespace=" + host; }
  std::string push_cmd(const std::string& name, const std::string& host = kHost) const {
    return "push " + quote((dir_ / "ck").string()) + " --name=" + name + " --to=" + url() + ns(host);
  }
  void clear_aws_environment() {
    for (const char* v : {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                          "AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_REGION", "AWS_CA_BUNDLE"}) {
      unsetenv(v);
    }
  }
  void TearDown() override {
    for (const char* v : {"AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE", "AWS_CA_BUNDLE", "AWS_PROFILE"}) {
      unsetenv(v);
    }
  }
};

// Keys from a named profile (--s3_profile or AWS_PROFILE), with the
// endpoint and region of the config file's profile; the default profile's
// keys are wrong, so a run that read them would fail.
TEST_F(S3CredentialsCommandTest, ProfilesOfTheSharedFilesGiveKeysEndpointAndRegion) {
  write_checkpoint(dir_ / "ck", 1);
  std::filesystem::create_directories(dir_ / "aws");
  write_text(dir_ / "aws" / "credentials",
             "[default]\naws_access_key_id = NOTAKEY\naws_secret_access_key = wrong\n\n[dr]\n"
             "aws_access_key_id = " +
                 ceph_->access_key + "\naws_secret_access_key = " + ceph_->secret_key + "\n");
  write_text(dir_ / "aws" / "config", "[default]\nregion = us-east-1\n\n[profile dr]\nregion = " +
                                          ceph_->region + "\nendpoint_url = " + ceph_->endpoint2 + "\n");
  clear_aws_environment();
  setenv("AWS_SHARED_CREDENTIALS_FILE", (dir_ / "aws" / "credentials").c_str(), 1);
  setenv("AWS_CONFIG_FILE", (dir_ / "aws" / "config").c_str(), 1);
  auto push = ferry(push_cmd("profiled") + " --s3_profile=dr");
  ASSERT_EQ(push.code, 0) << push.out;
  setenv("AWS_PROFILE", "dr", 1);
  auto list = ferry("list --from=" + url() + ns());
  ASSERT_EQ(list.code, 0) << list.out;
  EXPECT_NE(list.out.find("profiled"), std::string::npos) << list.out;
  unsetenv("AWS_PROFILE");
  // The default profile's keys are refused by the gateway (the config's
  // default profile names no endpoint: the one given on the command line).
  auto denied = ferry("list --from=" + url() + ns() + " --s3_endpoints=" + ceph_->endpoint1);
  EXPECT_EQ(denied.code, 1) << denied.out;
  EXPECT_NE(denied.out.find("InvalidAccessKeyId"), std::string::npos) << denied.out;
  // Keys in the environment give way to a profile named on the command line.
  setenv("AWS_ACCESS_KEY_ID", "NOTAKEY", 1);
  setenv("AWS_SECRET_ACCESS_KEY", "wrong", 1);
  auto restore = ferry("restore profiled --from=" + url() + ns() +
                       " --s3_profile=dr --to=" + quote((dir_ / "out").string()));
  ASSERT_EQ(restore.code, 0) << restore.out;
  expect_same_tree(dir_ / "ck", dir_ / "out");
  clear_aws_environment();
  auto missing = ferry("list --from=" + url() + ns() + " --s3_profile=nosuch");
  EXPECT_NE(missing.code, 0) << missing.out;
  EXPECT_NE(missing.out.find("profile \"nosuch\""), std::string::npos) << missing.out;
  auto bad = ferry("list --from=" + url() + ns() + " --s3_addressing=sideways");
  EXPECT_EQ(bad.code, 2) << bad.out;
  EXPECT_NE(bad.out.find("--s3_addressing=sideways"), std::string::npos) << bad.out;
}

// Virtual-host addressing against radosgw (`rgw dns name = localhost`): a
// push sent to BUCKET.localhost is listed and restored through path style.
TEST_F(S3CredentialsCommandTest, VirtualHostAddressingReachesTheSameBucket) {
  write_checkpoint(dir_ / "ck", 2);
  const std::string host_endpoint =
      "http://localhost:" + ceph_->endpoint1.substr(ceph_->endpoint1.rfind(':') + 1);
  auto push = ferry(push_cmd("virtual") + " --s3_addressing=virtual --s3_endpoints=" + host_endpoint);
  ASSERT_EQ(push.code, 0) << push.out;
  auto list = ferry("list --from=" + url() + ns() + " --s3_addressing=path");
  ASSERT_EQ(list.code, 0) << list.out;
  EXPECT_NE(list.out.find("virtual"), std::string::npos) << list.out;
  setenv("FERRY_S3_ADDRESSING", "virtual", 1);
  setenv("AWS_ENDPOINT_URL", host_endpoint.c_str(), 1);
  auto restore = ferry("restore virtual --from=" + url() + ns() + " --to=" + quote((dir_ / "out").string()));
  unsetenv("FERRY_S3_ADDRESSING");
  ASSERT_EQ(restore.code, 0) << restore.out;
  expect_same_tree(dir_ / "ck", dir_ / "out");
  // An address cannot carry the bucket's name.
  auto refused =
      ferry("list --from=" + url() + ns() + " --s3_addressing=virtual --s3_endpoints=" + ceph_->endpoint1);
  EXPECT_NE(refused.code, 0) << refused.out;
  EXPECT_NE(refused.out.find("needs a host name"), std::string::npos) << refused.out;
}

// radosgw serving https with a certificate of a private CA: verified with
// --s3_ca (or AWS_CA_BUNDLE), refused without it, naming the flag.
TEST_F(S3CredentialsCommandTest, TlsIsVerifiedAgainstAPrivateCa) {
  const testing::OwnGateway gateway =
      testing::add_gateway(*ceph_, certs_.receiver_cert.string(), certs_.receiver_key.string());
  ASSERT_FALSE(gateway.url.empty()) << gateway.error;
  const std::string& endpoint = gateway.url;
  write_checkpoint(dir_ / "ck", 3);
  const std::string ca = " --s3_ca=" + quote(certs_.ca_cert.string());
  auto push = ferry(push_cmd("tls") + " --s3_endpoints=" + endpoint + ca);
  ASSERT_EQ(push.code, 0) << push.out;
  auto untrusted = ferry("list --from=" + url() + ns() + " --s3_endpoints=" + endpoint);
  EXPECT_NE(untrusted.code, 0) << untrusted.out;
  EXPECT_NE(untrusted.out.find("TLS verification failed"), std::string::npos) << untrusted.out;
  EXPECT_NE(untrusted.out.find("--s3_ca"), std::string::npos) << untrusted.out;
  setenv("AWS_CA_BUNDLE", certs_.ca_cert.c_str(), 1);
  auto restore = ferry("restore tls --from=" + url() + ns() + " --s3_endpoints=" + endpoint +
                       " --to=" + quote((dir_ / "out").string()));
  ASSERT_EQ(restore.code, 0) << restore.out;
  expect_same_tree(dir_ / "ck", dir_ / "out");
}

// Two hosts with keys of their own, which the bucket's policy limits to
// their own prefix (dr/HOST/): each pushes, lists and restores its own
// namespace and cannot read or write the other's.
TEST_F(S3CredentialsCommandTest, PerHostCredentialsReachOnlyTheirOwnPrefix) {
  const std::string tag = std::to_string(::getpid()) + "-" + bucket_.substr(bucket_.size() - 6);
  auto a = testing::add_user(*ceph_, "host-a-" + tag);
  auto b = testing::add_user(*ceph_, "host-b-" + tag);
  ASSERT_TRUE(a && b) << "could not create the users";
  auto grant = [&](const std::string& uid, const std::string& host) {
    const std::string who = "{\"AWS\":[\"arn:aws:iam:::user/" + uid + "\"]}";
    return "{\"Effect\":\"Allow\",\"Principal\":" + who +
           ",\"Action\":[\"s3:GetObject\",\"s3:PutObject\"],\"Resource\":[\"arn:aws:s3:::" + bucket_ +
           "/dr/" + host + "/*\"]},{\"Effect\":\"Allow\",\"Principal\":" + who +
           ",\"Action\":[\"s3:ListBucket\"],\"Resource\":[\"arn:aws:s3:::" + bucket_ +
           "\"],\"Condition\":{\"StringLike\":{\"s3:prefix\":[\"dr\",\"dr/" + host + "/*\"]}}}";
  };
  const std::string policy = "{\"Version\":\"2012-10-17\",\"Statement\":[" +
                             grant("host-a-" + tag, "host-a") + "," + grant("host-b-" + tag, "host-b") + "]}";
  {
    auto owner = S3Client::create(testing::ceph_s3_config(*ceph_)).value();
    S3Request r;
    r.method = S3Request::Method::kPut;
    r.bucket = bucket_;
    r.query = {{"policy", ""}};
    r.body = std::as_bytes(std::span(policy));
    S3Request* p = &r;
    owner->run(std::span(&p, 1));
    ASSERT_TRUE(r.status.is_ok()) << r.status.to_string();
  }
  auto as = [&](const S3Credentials& c) {
    setenv("AWS_ACCESS_KEY_ID", c.access_key_id.c_str(), 1);
    setenv("AWS_SECRET_ACCESS_KEY", c.secret_access_key.c_str(), 1);
  };
  write_checkpoint(dir_ / "ck", 4);
  as(*a);
  auto own = ferry(push_cmd("mine", "host-a"));
  ASSERT_EQ(own.code, 0) << own.out;
  as(*b);
  ASSERT_EQ(ferry(push_cmd("theirs", "host-b")).code, 0);
  auto foreign_read =
      ferry("restore mine --from=" + url() + ns("host-a") + " --to=" + quote((dir_ / "x").string()));
  EXPECT_NE(foreign_read.code, 0) << foreign_read.out;
  EXPECT_NE(foreign_read.out.find("AccessDenied"), std::string::npos) << foreign_read.out;
  auto foreign_list = ferry("list --from=" + url() + ns("host-a"));
  EXPECT_NE(foreign_list.code, 0) << foreign_list.out;
  EXPECT_NE(foreign_list.out.find("AccessDenied"), std::string::npos) << foreign_list.out;
  as(*a);
  auto foreign_write = ferry(push_cmd("intruder", "host-b"));
  EXPECT_NE(foreign_write.code, 0) << foreign_write.out;
  EXPECT_NE(foreign_write.out.find("AccessDenied"), std::string::npos) << foreign_write.out;
  // Nothing of host-a's reached host-b's prefix, and host-a's own restores.
  use_gateway(1);
  auto owner = S3Client::create(testing::ceph_s3_config(*ceph_)).value();
  auto snaps = owner->list(bucket_, "dr/host-b/snapshots/");
  ASSERT_TRUE(snaps.is_ok());
  ASSERT_EQ(snaps->size(), 1u);
  EXPECT_NE(snaps->at(0).key.find("theirs"), std::string::npos);
  as(*a);
  auto mine =
      ferry("restore mine --from=" + url() + ns("host-a") + " --to=" + quote((dir_ / "out").string()));
  ASSERT_EQ(mine.code, 0) << mine.out;
  expect_same_tree(dir_ / "ck", dir_ / "out");
}

}  // namespace
}  // namespace ferry
