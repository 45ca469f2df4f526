// config_test.cc: --watch/--targets parsing and validate() on real files and
// real certificates: every refusal names the setting.
#include "agent/config.h"
#include "cuda/gpu_engine.h"

#include <gtest/gtest.h>

#include "tests/replication/tls_fixture.h"
#include "tests/testing/testing.h"

namespace ferry::agent {
namespace {

namespace fs = std::filesystem;
using ferry::replication::testing::TestCerts;

class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::create_directories(dir_ / "ckpt/llama");
    c_.watch = {{dir_ / "ckpt/llama", "llama"}};
    c_.targets = {"127.0.0.1:7443"};
    c_.ca = certs_.set.ca_cert.string();
    c_.cert = certs_.set.host_cert("alpha").string();
    c_.key = certs_.set.host_key("alpha").string();
    c_.state_dir = dir_ / "state";
    c_.control_socket = dir_ / "ctl.sock";
  }
  void expect_refused(const std::string& needle) {
    Status st = validate(c_);
    EXPECT_FALSE(st.is_ok());
    EXPECT_NE(st.message().find(needle), std::string::npos) << st.to_string();
  }

  ferry::testing::TempDir dir_;
  TestCerts certs_;
  AgentConfig c_;
};

TEST_F(ConfigTest, ParsesWatchList) {
  auto w = parse_watch_list("/ckpt/llama=big, /ckpt/small/");
  ASSERT_TRUE(w.is_ok()) << w.status().to_string();
  ASSERT_EQ(w->size(), 2u);
  EXPECT_EQ((*w)[0].path, "/ckpt/llama");
  EXPECT_EQ((*w)[0].job, "big");
  EXPECT_EQ((*w)[1].path, "/ckpt/small");
  EXPECT_EQ((*w)[1].job, "small");
  EXPECT_FALSE(parse_watch_list("").is_ok());
  EXPECT_FALSE(parse_watch_list("/a,,/b").is_ok());
  auto bad = parse_watch_list("/a=");
  ASSERT_FALSE(bad.is_ok());
  EXPECT_NE(bad.status().message().find("--watch"), std::string::npos);
}

TEST_F(ConfigTest, ParsesTargets) {
  auto t = parse_target_list("dr1:7000,[::1]:7001, 10.0.0.2:7443");
  ASSERT_TRUE(t.is_ok()) << t.status().to_string();
  EXPECT_EQ(*t, (std::vector<std::string>{"dr1:7000", "[::1]:7001", "10.0.0.2:7443"}));
  for (const char* bad :
       {"", "dr1", "dr1:", ":7000", "dr1:0", "dr1:70000", "dr1:7x", "dr1:1,dr1:1", "[::1:7"}) {
    auto r = parse_target_list(bad);
    EXPECT_FALSE(r.is_ok()) << bad;
    EXPECT_NE(r.status().message().find("--targets"), std::string::npos) << r.status().to_string();
  }
}

TEST_F(ConfigTest, ValidConfigPasses) {
  Status st = validate(c_);
  EXPECT_TRUE(st.is_ok()) << st.to_string();
  EXPECT_TRUE(fs::is_directory(c_.state_dir));
  EXPECT_EQ(c_.bandwidth_bytes_per_s(), 0u);
  c_.bandwidth_mbps = 12.5;
  EXPECT_EQ(c_.bandwidth_bytes_per_s(), 12'500'000u);
}

TEST_F(ConfigTest, MissingRootIsNamed) {
  c_.watch.push_back({dir_ / "nope", "x"});
  expect_refused("--watch=" + (dir_ / "nope").string() + ": no such directory");
}

TEST_F(ConfigTest, RootThatIsAFileIsNamed) {
  ferry::testing::write_file(dir_ / "file", {std::byte{1}});
  c_.watch = {{dir_ / "file", "x"}};
  expect_refused("not a directory");
}

TEST_F(ConfigTest, BadTargetIsNamed) {
  c_.targets = {"dr1"};
  expect_refused("--targets=dr1");
}

TEST_F(ConfigTest, MissingCertificateIsNamed) {
  c_.cert = (dir_ / "missing.pem").string();
  expect_refused("--cert=" + c_.cert + ": no such file");
  c_.cert = "";
  expect_refused("--cert is required");
}

TEST_F(ConfigTest, InvalidCertificateIsNamed) {
  ferry::testing::write_file(dir_ / "garbage.pem", ferry::testing::random_bytes(500, 1));
  c_.ca = (dir_ / "garbage.pem").string();
  expect_refused("--ca=" + c_.ca);
  // A key that does not belong to the certificate.
  SetUp();
  c_.key = certs_.set.host_key("beta").string();
  expect_refused("--key=" + c_.key);
}

TEST_F(ConfigTest, CrlIsCheckedAndGoesIntoTheTlsConfig) {
  c_.crl = certs_.set.crl.string();
  EXPECT_TRUE(validate(c_).is_ok());
  EXPECT_EQ(c_.tls().crl_file, c_.crl);
  c_.crl = (dir_ / "missing.pem").string();
  expect_refused("--crl=" + c_.crl + ": no such file");
  c_.crl = c_.cert;  // a certificate, not a CRL
  expect_refused("--crl=" + c_.crl + ": CRL file " + c_.crl + " holds no PEM X509 CRL");
}

TEST_F(ConfigTest, NegativeAndZeroLimitsAreNamed) {
  c_.bandwidth_mbps = -1;
  expect_refused("--bandwidth_mbps=");
  c_.bandwidth_mbps = 0;
  c_.max_jobs = 0;
  expect_refused("--max_jobs=0");
  c_.max_jobs = 1;
  c_.threads = -2;
  expect_refused("--threads=-2");
  c_.threads = 2;
  c_.rpo_target_s = 0;
  expect_refused("--rpo_target_s=");
  c_.rpo_target_s = 60;
  c_.target_down_after = 0;
  expect_refused("--target_down_after=0");
  c_.target_down_after = 1;
  c_.gpu_memory_mb = -5;
  expect_refused("--gpu_memory_mb=-5");
}

TEST_F(ConfigTest, EnumsAreNamed) {
  c_.engine = "tpu";
  expect_refused("--engine=tpu");
  c_.engine = "cpu";
  c_.io_class = "realtime";
  expect_refused("--io_class=realtime");
  c_.io_class = "best-effort";
  c_.log_format = "xml";
  expect_refused("--log_format=xml");
}

TEST_F(ConfigTest, UnwritableStateDirIsNamed) {
  ferry::testing::write_file(dir_ / "blocker", {std::byte{1}});
  c_.state_dir = dir_ / "blocker" / "state";
  expect_refused("--state_dir=");
}

TEST_F(ConfigTest, ValidateAllNamesEveryProblem) {
  c_.watch.push_back({dir_ / "missing", "gone"});
  c_.max_jobs = 0;
  c_.io_class = "realtime";
  c_.marker_only = true;  // without --marker_file
  c_.incomplete_grace_s = 0;
  std::vector<Status> problems = validate_all(c_);
  std::vector<std::string> messages;
  for (const auto& p : problems) messages.push_back(p.message());
  ASSERT_EQ(messages.size(), 5u) << ::testing::PrintToString(messages);
  EXPECT_EQ(messages[0], "--watch=" + (dir_ / "missing").string() + ": no such directory");
  EXPECT_NE(messages[1].find("--marker_only needs --marker_file"), std::string::npos) << messages[1];
  EXPECT_EQ(messages[2], "--max_jobs=0: must be 1..64");
  EXPECT_EQ(messages[3], "--io_class=realtime: expected idle or best-effort");
  EXPECT_NE(messages[4].find("--incomplete_grace_s="), std::string::npos) << messages[4];
  EXPECT_EQ(validate(c_).message(), messages[0]);
  c_.marker_file = "COMMITTED";
  EXPECT_EQ(validate_all(c_).size(), 4u);
}

TEST_F(ConfigTest, DescribeEngineSaysWhatWouldRun) {
  EXPECT_EQ(describe_engine("cpu"), "cpu (--engine=cpu)");
  const std::string why = gpu_unavailable_reason(0);
  if (why.empty()) {
    EXPECT_EQ(describe_engine("auto"), "gpu (GPU 0 is usable)");
    EXPECT_EQ(describe_engine("gpu"), "gpu (GPU 0 is usable)");
  } else {
    EXPECT_EQ(describe_engine("auto"), "cpu (no usable GPU: " + why + ")");
    EXPECT_EQ(describe_engine("gpu"), "none: --engine=gpu, but no GPU is usable: " + why);
  }
}

}  // namespace
}  // namespace ferry::agent
