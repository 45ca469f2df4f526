// snapshot_name_test.cc: the one naming rule of `ferry push --job` and
// ferry-agent (replication/snapshot_name.h): checkpoints of one job with the
// same step in different directories (a DCP directory and a safetensors
// export) get different names; push names a directory as the agent does.
#include "replication/snapshot_name.h"

#include <gtest/gtest.h>

#include <string>

#include "replication/limits.h"
#include "replication/protocol.h"
#include "replication/sender.h"

namespace ferry::replication {
namespace {

TEST(SnapshotNameTest, CheckpointKindsOfOneStepDoNotCollide) {
  const std::string dcp = checkpoint_snapshot_name("llama", "step-100", 100);
  const std::string st = checkpoint_snapshot_name("llama", "step-100-safetensors", 100);
  EXPECT_EQ(dcp, "llama-step-100");
  EXPECT_EQ(st, "llama-step-100-safetensors");
  EXPECT_NE(dcp, st);
  // A directory name that does not carry the step gets it appended.
  EXPECT_EQ(checkpoint_snapshot_name("llama", "export", 100), "llama-export-step100");
  EXPECT_EQ(checkpoint_snapshot_name("llama", "hf", 0), "llama-hf");
  EXPECT_EQ(checkpoint_snapshot_name("", "", 7), "step7");
  EXPECT_EQ(checkpoint_snapshot_name("", "", 0), "snapshot");
  EXPECT_EQ(checkpoint_snapshot_name("my job", "ck/ü", 0), "my_job-ck___");
}

TEST(SnapshotNameTest, LongJobsShortenKeepingTheDirectoryAndStep) {
  const std::string name = checkpoint_snapshot_name(std::string(300, 'j'), "step-100-safetensors", 100);
  EXPECT_EQ(name.size(), kMaxSnapshotNameBytes);
  EXPECT_TRUE(name.ends_with("-step-100-safetensors")) << name;
  EXPECT_TRUE(validate_snapshot_name(name).is_ok());
}

TEST(SnapshotNameTest, PushNamesADirectoryAsTheAgentDoes) {
  PushOptions o;
  o.job = "llama";
  o.source_name = "step-100";
  EXPECT_EQ(default_snapshot_name(o, 0), checkpoint_snapshot_name("llama", "step-100", 0));
  o.step = 100;
  EXPECT_EQ(default_snapshot_name(o, 0), "llama-step-100");
  o.source_name = "step-100-safetensors";
  EXPECT_EQ(default_snapshot_name(o, 0), "llama-step-100-safetensors");
  // No job: the time tells repeated pushes apart.
  o.job.clear();
  EXPECT_EQ(default_snapshot_name(o, 0), "step-100-safetensors-19700101T000000Z");
}

}  // namespace
}  // namespace ferry::replication
