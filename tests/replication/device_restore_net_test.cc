// device_restore_net_test.cc: restore into memory from a real DR receiver
// over real mTLS on 127.0.0.1 ("ferry://HOST:PORT/SNAPSHOT"): a checkpoint
// of safetensors shards and other files, pushed by hand with frames from the
// real packer, comes back tensor by tensor; through the fault-injecting
// relay (resets, truncations, flipped bytes) a restore ends complete and
// exact, or fails with an error naming what failed; never a wrong byte.
#include <gtest/gtest.h>

#include <cstdio>

#include "base/thread_pool.h"
#include "replication/device_restore.h"
#include "replication/frame_sources.h"
#include "tests/replication/device_restore_fixture.h"
#include "tests/replication/receiver_fixture.h"
#include "tests/testing/link_simulator.h"

namespace ferry::replication {
namespace {

namespace fs = std::filesystem;
using ::ferry::testing::LinkCounters;
using ::ferry::testing::LinkFaults;
using ::ferry::testing::LinkOptions;
using ::ferry::testing::LinkSimulator;
using testing::ReceiverSite;
using testing_restore::expect_restored_equals;

class DeviceRestoreNetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    seed_ = ferry::testing::test_seed();
    testing_restore::make_checkpoint(src_.path(), seed_);
    tree_ = testing::pack_tree(src_.path(), "llm-pretrain", 1200);
    auto c = site_.connect("alpha");
    ASSERT_TRUE(c.is_ok()) << c.status().to_string();
    Status st = testing::push_by_hand(**c, *tree_, "step-1200");
    ASSERT_TRUE(st.is_ok()) << st.to_string();
    (void)(*c)->send(Bye{});
  }

  SourceOptions source_options(std::size_t streams) {
    SourceOptions o;
    o.tls.ca_file = site_.certs.set.ca_cert;
    o.tls.cert_file = site_.certs.set.host_cert("alpha");
    o.tls.key_file = site_.certs.set.host_key("alpha");
    o.streams = streams;
    return o;
  }

  DeviceRestoreOptions restore_options() {
    DeviceRestoreOptions o;
    o.pool = &pool_;
    o.pinned_memory_bytes = 512u << 10;
    return o;
  }

  std::uint64_t seed_ = 0;
  ReceiverSite site_;
  ferry::testing::TempDir src_;
  std::unique_ptr<testing::PackedTree> tree_;
  ThreadPool pool_{3};
};

TEST_F(DeviceRestoreNetTest, ARemoteSnapshotRestoresToHostOverOneOrManyStreams) {
  const std::string where = "ferry://" + site_.receiver().address().to_string() + "/step-1200";
  for (std::size_t streams : {1u, 4u}) {
    auto source = open_frame_source(where, source_options(streams));
    ASSERT_TRUE(source.is_ok()) << source.status().to_string();
    EXPECT_EQ((*source)->manifest().job, "llm-pretrain");
    auto r = restore_to_device(**source, restore_options());
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();
    EXPECT_EQ(expect_restored_equals(*r, src_.path()), 8u) << streams << " streams";
  }
}

TEST_F(DeviceRestoreNetTest, AnUnknownSnapshotOrAMissingCertificateIsAClearError) {
  const std::string addr = site_.receiver().address().to_string();
  auto missing = open_frame_source("ferry://" + addr + "/no-such", source_options(2));
  ASSERT_FALSE(missing.is_ok());
  EXPECT_EQ(missing.status().code(), Code::kNotFound) << missing.status().to_string();
  SourceOptions bad = source_options(2);
  bad.tls.cert_file = (src_.path() / "absent.pem").string();
  auto no_cert = open_frame_source("ferry://" + addr + "/step-1200", bad);
  ASSERT_FALSE(no_cert.is_ok());
  EXPECT_NE(no_cert.status().message().find("absent.pem"), std::string::npos) << no_cert.status().to_string();
}

TEST_F(DeviceRestoreNetTest, ThroughAFaultyLinkARestoreIsExactOrAClearError) {
  int complete = 0;
  for (int run = 0; run < 6; ++run) {
    LinkOptions lo;
    lo.target = site_.receiver().address().to_string();
    lo.faults.seed = seed_ * 100 + static_cast<std::uint64_t>(run);
    lo.faults.reset_probability = 0.4;
    lo.faults.truncate_probability = 0.2;
    lo.faults.flips_per_mib = run % 2 ? 4.0 : 0.0;
    lo.faults.fault_after_max_bytes = 512u << 10;
    lo.faults.max_faulted_connections = 3;
    LinkSimulator link(lo);
    ASSERT_TRUE(link.start().is_ok());
    auto source = open_frame_source("ferry://" + link.address() + "/step-1200", source_options(1 + run % 3));
    Status st = source.status();
    if (source.is_ok()) {
      auto r = restore_to_device(**source, restore_options());
      st = r.status();
      if (r.is_ok()) {
        expect_restored_equals(*r, src_.path());
        ++complete;
      }
    }
    link.stop();
    const LinkCounters c = link.counters();
    std::printf(
        "[faults] run %d (link seed %llu): %s; connections %llu resets %llu truncations %llu flips %llu\n",
        run, static_cast<unsigned long long>(lo.faults.seed),
        st.is_ok() ? "complete" : st.to_string().c_str(), static_cast<unsigned long long>(c.connections),
        static_cast<unsigned long long>(c.resets), static_cast<unsigned long long>(c.truncations),
        static_cast<unsigned long long>(c.flips));
    if (!st.is_ok()) {
      // A clear error: a code a user can act on and a message naming the
      // receiver, the stream or the chunk.
      EXPECT_NE(st.code(), Code::kInternal) << st.to_string();
      const std::string& msg = st.message();
      const bool named = msg.find(link.address()) != std::string::npos ||
                         msg.find("stream") != std::string::npos || msg.find("chunk ") != std::string::npos ||
                         msg.find("127.0.0.1") != std::string::npos;
      EXPECT_TRUE(named) << st.to_string();
    }
  }
  std::printf("[faults] %d of 6 restores complete and exact (FERRY_TEST_SEED=%llu)\n", complete,
              static_cast<unsigned long long>(seed_));
}

}  // namespace
}  // namespace ferry::replication
