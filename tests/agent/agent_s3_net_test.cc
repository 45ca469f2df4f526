// agent_s3_net_test.cc: the agent replicating straight into a bucket of a
// real Ceph cluster (scripts/ceph-dev.sh), with no receiver and no TLS
// files: `--targets=s3://BUCKET/PREFIX`, the namespace a key prefix, the
// credentials from the AWS_* environment. Checkpoints written the way
// trainers write them are committed as snapshots there, the second sending
// only its changed chunks, and each restores byte for byte from the bucket;
// --bandwidth_mbps caps the uploads.
#include <gtest/gtest.h>

#include <cstdlib>
#include <mutex>

#include "agent/agent.h"
#include "codec/chunk_codec.h"
#include "codec/manifest.h"
#include "store/s3_store.h"
#include "tests/agent/agent_fixture.h"
#include "tests/testing/ceph_dev.h"

namespace ferry::agent {
namespace {

namespace fs = std::filesystem;
using namespace ferry::agent::testing;

constexpr int kCommitMs = 60'000;

// Every file of snapshot `name` in `ns`, rebuilt from the store chunk by
// chunk (each decoded and verified against its id).
std::map<std::string, std::vector<std::byte>> restore_files(ChunkStore& store, const std::string& ns,
                                                            const std::string& name) {
  std::map<std::string, std::vector<std::byte>> out;
  auto bytes = store.manifest(ns, name);
  EXPECT_TRUE(bytes.is_ok()) << bytes.status().to_string();
  if (!bytes) return out;
  auto m = parse_manifest(*bytes);
  EXPECT_TRUE(m.is_ok());
  ChunkDecoder decoder;
  std::vector<std::byte> raw;
  for (const ManifestFile& f : m->files) {
    std::vector<std::byte>& file = out[f.path];
    for (const ManifestChunk& c : f.chunks) {
      auto frame = store.get(ns, c.id);
      EXPECT_TRUE(frame.is_ok()) << frame.status().to_string();
      if (!frame) return {};
      EXPECT_TRUE(decoder.decode(*frame, raw, &c.id).is_ok());
      file.insert(file.end(), raw.begin(), raw.end());
    }
  }
  return out;
}

// The agent's log lines, for the test to read.
struct LogLines {
  std::mutex mu;
  std::vector<std::string> lines;
  Logger logger{LogFormat::kText, [this](std::string_view l) {
                  std::lock_guard lock(mu);
                  lines.emplace_back(l);
                }};
};

// Creates `bucket` and points the AWS_* environment at the cluster: the
// agent reads its credentials as every AWS tool does.
void use_ceph(const ferry::testing::CephCluster& ceph, const std::string& bucket) {
  auto client = S3Client::create(ferry::testing::ceph_s3_config(ceph));
  ASSERT_TRUE(client.is_ok());
  ASSERT_TRUE((*client)->create_bucket(bucket).is_ok());
  ::setenv("AWS_ACCESS_KEY_ID", ceph.access_key.c_str(), 1);
  ::setenv("AWS_SECRET_ACCESS_KEY", ceph.secret_key.c_str(), 1);
  ::setenv("AWS_REGION", ceph.region.c_str(), 1);
  ::setenv("AWS_ENDPOINT_URL", ceph.endpoint1.c_str(), 1);
  ::unsetenv("AWS_SESSION_TOKEN");
  ::unsetenv("AWS_PROFILE");
}

// An agent watching DIR/ckpt/llama (job "llama") and writing namespace
// trainer-01 of s3://BUCKET/site-a.
AgentConfig bucket_agent_config(const ferry::testing::TempDir& dir, const std::string& bucket) {
  fs::create_directories(dir.path() / "ckpt/llama");
  AgentConfig c;
  c.watch = {{dir.path() / "ckpt/llama", "llama"}};
  c.targets = {"s3://" + bucket + "/site-a"};
  c.ns = "trainer-01";
  c.state_dir = dir.path() / "state";
  c.control_socket = dir.path() / "ctl.sock";
  c.metrics_listen = "";
  c.nice = 0;
  c.io_class = "best-effort";
  c.engine = "cpu";
  c.skip_superseded = false;
  c.rescan_interval_s = 0.5;
  c.probe_interval_s = 0.5;
  return c;
}

TEST(AgentS3NetTest, ReplicatesStraightToABucketWithNoReceiver) {
  FERRY_REQUIRE_CEPH(ceph);
  const S3Config s3 = ferry::testing::ceph_s3_config(*ceph);
  const std::string bucket = ferry::testing::unique_bucket();
  ASSERT_NO_FATAL_FAILURE(use_ceph(*ceph, bucket));
  ferry::testing::TempDir dir;
  const AgentConfig c = bucket_agent_config(dir, bucket);
  ASSERT_TRUE(validate(c).is_ok()) << "no TLS files are needed for a bucket: " << validate(c).to_string();

  LogLines log;
  auto agent = Agent::start(c, log.logger);
  ASSERT_TRUE(agent.is_ok()) << agent.status().to_string();

  auto store = open_s3_store(c.targets[0], s3);
  ASSERT_TRUE(store.is_ok()) << store.status().to_string();
  auto snapshots = [&] {
    std::vector<std::string> names;
    auto l = (*store)->list("trainer-01");
    if (l) {
      for (const SnapshotInfo& s : *l) names.push_back(s.name);
    }
    return names;
  };

  write_checkpoint(dir.path() / "ckpt/llama/step-100", 11);
  ASSERT_TRUE(wait_until([&] { return snapshots().size() == 1; }, kCommitMs));
  // The second checkpoint shares its first shard with the first.
  fs::create_directories(dir.path() / "ckpt/llama/step-200");
  fs::copy_file(dir.path() / "ckpt/llama/step-100/__0_0.distcp",
                dir.path() / "ckpt/llama/step-200/__0_0.distcp");
  ferry::testing::write_file(dir.path() / "ckpt/llama/step-200/__1_0.distcp",
                             ferry::testing::normal_floats(100'000, 4, false, 1e-3, 99));
  ferry::testing::write_file(dir.path() / "ckpt/llama/step-200/.metadata",
                             ferry::testing::random_bytes(700, 98));
  ASSERT_TRUE(wait_until([&] { return snapshots().size() == 2; }, kCommitMs));
  (*agent)->shutdown(0);

  for (const std::string& name : snapshots()) {
    const fs::path source =
        dir.path() / "ckpt/llama" / (name.find("100") != std::string::npos ? "step-100" : "step-200");
    EXPECT_EQ(restore_files(**store, "trainer-01", name), read_tree(source)) << name;
  }
  // Only the bucket's namespace prefix was written, and the second push
  // skipped the shard it shares with the first.
  std::lock_guard lock(log.mu);
  int committed = 0;
  bool skipped = false;
  for (const std::string& l : log.lines) {
    if (l.find("checkpoint_committed") == std::string::npos) continue;
    ++committed;
    EXPECT_NE(l.find("s3://" + bucket + "/site-a"), std::string::npos) << l;
    skipped |= l.find("chunks_skipped=0") == std::string::npos;
  }
  EXPECT_EQ(committed, 2);
  EXPECT_TRUE(skipped) << "the second checkpoint sent its shared shard again";
  EXPECT_EQ((*store)->namespaces().value(), std::vector<std::string>{"trainer-01"});
}

// --bandwidth_mbps caps the uploads into a bucket as it caps a receiver's
// streams (and --streams sets the packs uploading at once): the push of a
// checkpoint takes at least its bytes over the cap, less the cap's burst
// of a quarter second. A cap too small for uploads is refused up front.
TEST(AgentS3NetTest, TheBandwidthCapAppliesToBucketTargets) {
  FERRY_REQUIRE_CEPH(ceph);
  const std::string bucket = ferry::testing::unique_bucket();
  ASSERT_NO_FATAL_FAILURE(use_ceph(*ceph, bucket));
  ferry::testing::TempDir dir;
  AgentConfig c = bucket_agent_config(dir, bucket);
  c.bandwidth_mbps = 0.5;
  c.streams = 1;
  ASSERT_TRUE(validate(c).is_ok()) << validate(c).to_string();
  LogLines log;
  auto agent = Agent::start(c, log.logger);
  ASSERT_TRUE(agent.is_ok()) << agent.status().to_string();
  write_checkpoint(dir.path() / "ckpt/llama/step-100", 21);
  auto committed = [&] {
    std::lock_guard lock(log.mu);
    for (const std::string& l : log.lines) {
      if (l.find("checkpoint_committed") != std::string::npos) return l;
    }
    return std::string();
  };
  ASSERT_TRUE(wait_until([&] { return !committed().empty(); }, kCommitMs));
  (*agent)->shutdown(0);
  const std::string line = committed();
  auto number = [&](const std::string& key) {
    const auto at = line.find(" " + key + "=");
    return at == std::string::npos ? -1.0 : std::strtod(line.c_str() + at + key.size() + 2, nullptr);
  };
  const double wire_bytes = number("wire_bytes"), seconds = number("seconds");
  ASSERT_GT(wire_bytes, 500'000) << line;
  EXPECT_GE(seconds, (wire_bytes - 125'000) / 500'000 * 0.9) << line;

  c.bandwidth_mbps = 0.01;  // 10 KB/s: an upload would look stalled
  const Status st = validate(c);
  ASSERT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find("--bandwidth_mbps"), std::string::npos) << st.to_string();
}

TEST(AgentS3NetTest, AMalformedBucketUrlIsRefusedNamingIt) {
  AgentConfig c;
  ferry::testing::TempDir dir;
  c.watch = {{dir.path(), "j"}};
  c.targets = {"s3://No_Such/x"};
  c.state_dir = dir.path() / "state";
  Status st = validate(c);
  ASSERT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find("s3://No_Such/x"), std::string::npos) << st.to_string();
  EXPECT_EQ(parse_target_list("s3://ferry-dr/site-a,127.0.0.1:7443").value().size(), 2u);
  EXPECT_FALSE(parse_target_list("s3://ferry-dr/../x").is_ok());
}

}  // namespace
}  // namespace ferry::agent
