// s3_config_test.cc: S3 settings from where users keep them: the AWS_*
// variables, ~/.aws/credentials profiles and ~/.aws/config regions.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <fstream>

#include "store/s3_client.h"
#include "tests/testing/testing.h"

namespace ferry {
namespace {

// Sets the AWS variables a test names and clears the others; restores
// nothing (each ctest test is its own process).
void clear_aws_environment(const testing::TempDir& home) {
  for (const char* v :
       {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION",
        "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "FERRY_S3_ADDRESSING",
        "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE", "AWS_CA_BUNDLE"}) {
    unsetenv(v);
  }
  setenv("HOME", home.path().c_str(), 1);
}

TEST(S3ConfigTest, TakesTheEnvironmentFirst) {
  testing::TempDir home;
  clear_aws_environment(home);
  setenv("AWS_ACCESS_KEY_ID", "AKID", 1);
  setenv("AWS_SECRET_ACCESS_KEY", "SECRET", 1);
  setenv("AWS_SESSION_TOKEN", "TOKEN", 1);
  setenv("AWS_REGION", "eu-west-3", 1);
  setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:7480/, http://127.0.0.1:7481", 1);
  setenv("AWS_CA_BUNDLE", "/etc/ferry/ca.pem", 1);
  auto c = s3_config_from_environment();
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  EXPECT_EQ(c->credentials.access_key_id, "AKID");
  EXPECT_EQ(c->credentials.secret_access_key, "SECRET");
  EXPECT_EQ(c->credentials.session_token, "TOKEN");
  EXPECT_EQ(c->region, "eu-west-3");
  EXPECT_EQ(c->endpoints, (std::vector<std::string>{"http://127.0.0.1:7480/", "http://127.0.0.1:7481"}));
  EXPECT_TRUE(c->path_style);
  EXPECT_EQ(c->ca_file, "/etc/ferry/ca.pem");
}

TEST(S3ConfigTest, ReadsProfilesFromTheSharedFiles) {
  testing::TempDir home;
  clear_aws_environment(home);
  std::filesystem::create_directories(home / ".aws");
  std::ofstream(home / ".aws" / "credentials")
      << "[default]\naws_access_key_id = DEF\naws_secret_access_key=DEFS\n"
      << "# a comment\n[dr]\naws_access_key_id = DRKEY\n"
      << "aws_secret_access_key = DRSECRET\naws_session_token = T\n";
  std::ofstream(home / ".aws" / "config")
      << "[default]\nregion = us-west-2\n[profile dr]\nregion = ap-south-1\n";
  auto def = s3_config_from_environment();
  ASSERT_TRUE(def.is_ok()) << def.status().to_string();
  EXPECT_EQ(def->credentials.access_key_id, "DEF");
  EXPECT_EQ(def->region, "us-west-2");
  // No endpoint: AWS's own, addressed virtual-host style.
  EXPECT_EQ(def->endpoints, (std::vector<std::string>{"https://s3.us-west-2.amazonaws.com"}));
  EXPECT_FALSE(def->path_style);

  setenv("AWS_PROFILE", "dr", 1);
  auto dr = s3_config_from_environment();
  ASSERT_TRUE(dr.is_ok()) << dr.status().to_string();
  EXPECT_EQ(dr->credentials.access_key_id, "DRKEY");
  EXPECT_EQ(dr->credentials.secret_access_key, "DRSECRET");
  EXPECT_EQ(dr->credentials.session_token, "T");
  EXPECT_EQ(dr->region, "ap-south-1");
  auto named = s3_config_from_environment("default");
  ASSERT_TRUE(named.is_ok());
  EXPECT_EQ(named->credentials.access_key_id, "DEF");
}

TEST(S3ConfigTest, NoCredentialsIsAClearError) {
  testing::TempDir home;
  clear_aws_environment(home);
  auto c = s3_config_from_environment("missing");
  ASSERT_FALSE(c.is_ok());
  EXPECT_EQ(c.status().code(), Code::kInvalidArgument);
  EXPECT_NE(c.status().message().find("AWS_ACCESS_KEY_ID"), std::string::npos) << c.status().to_string();
  EXPECT_NE(c.status().message().find("\"missing\""), std::string::npos) << c.status().to_string();
}

TEST(S3ConfigTest, EndpointsCaAndAddressingFromProfilesAndVariables) {
  testing::TempDir home;
  clear_aws_environment(home);
  std::filesystem::create_directories(home / ".aws");
  std::ofstream(home / ".aws" / "credentials")
      << "[ceph]\naws_access_key_id = K\naws_secret_access_key = S\n";
  std::ofstream(home / ".aws" / "config")
      << "[profile ceph]\nendpoint_url = http://rgw1:7480,http://rgw2:7480\nca_bundle = /pki/ca.pem\n";
  auto c = s3_config_from_environment("ceph");
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  EXPECT_EQ(c->endpoints, (std::vector<std::string>{"http://rgw1:7480", "http://rgw2:7480"}));
  EXPECT_EQ(c->ca_file, "/pki/ca.pem");
  EXPECT_TRUE(c->path_style);
  // The S3-specific variable beats the general one, which beats the profile.
  setenv("AWS_ENDPOINT_URL", "http://general:1", 1);
  setenv("AWS_ENDPOINT_URL_S3", "http://s3only:2", 1);
  setenv("FERRY_S3_ADDRESSING", "virtual", 1);
  c = s3_config_from_environment("ceph");
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  EXPECT_EQ(c->endpoints, std::vector<std::string>{"http://s3only:2"});
  EXPECT_FALSE(c->path_style);
  setenv("FERRY_S3_ADDRESSING", "diagonal", 1);
  EXPECT_NE(s3_config_from_environment("ceph").status().message().find("FERRY_S3_ADDRESSING=diagonal"),
            std::string::npos);
  unsetenv("FERRY_S3_ADDRESSING");
  // Half a key pair in the environment is named, not silently replaced by
  // a profile's.
  setenv("AWS_ACCESS_KEY_ID", "ONLYKEY", 1);
  auto half = s3_config_from_environment("ceph");
  EXPECT_EQ(half.status().code(), Code::kInvalidArgument);
  EXPECT_NE(half.status().message().find("AWS_SECRET_ACCESS_KEY is not"), std::string::npos)
      << half.status().to_string();
}

TEST(S3ConfigTest, VirtualHostAddressingNeedsAHostName) {
  S3Config cfg;
  cfg.credentials = {"a", "b", ""};
  cfg.path_style = false;
  cfg.endpoints = {"http://127.0.0.1:7480"};
  EXPECT_EQ(S3Client::create(cfg).status().code(), Code::kInvalidArgument);
  cfg.endpoints = {"http://[::1]:7480"};
  EXPECT_EQ(S3Client::create(cfg).status().code(), Code::kInvalidArgument);
  cfg.endpoints = {"http://localhost:7480"};
  EXPECT_TRUE(S3Client::create(cfg).is_ok());
}

TEST(S3ConfigTest, RefusesEndpointsThatAreNotHttp) {
  S3Config cfg;
  cfg.endpoints = {"ftp://example"};
  cfg.credentials = {"a", "b", ""};
  EXPECT_EQ(S3Client::create(cfg).status().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace ferry
