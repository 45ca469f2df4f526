// receiver_metrics_net_test.cc: what `ferry serve --metrics_listen` exports,
// read from a real receiver on loopback while real clients push a tree,
// fail the TLS handshake and break the HELLO: every counter is there at 0
// before anything happens, then counts exactly what happened, with the
// store's usage per namespace and the fsync latency histogram.
#include "replication/receiver_metrics.h"

#include <gtest/gtest.h>

#include <string>

#include "base/build_info.h"
#include "tests/replication/receiver_fixture.h"

namespace ferry::replication {
namespace {

using ferry::testing::metric_value;
using ferry::testing::wait_until;
using testing::ReceiverSite;

TEST(ReceiverMetricsTest, CountsConnectionsChunksCommitsRefusalsAndStore) {
  ReceiverSite site;
  Metrics m;
  export_receiver_metrics(m, site.receiver(), site.store());
  std::string text = m.render();
  for (const char* reason : {"tls_handshake", "connection_limit", "hello"}) {
    EXPECT_EQ(metric_value(text, std::string("ferry_receiver_refusals_total{reason=\"") + reason + "\"}"), 0)
        << text;
  }
  EXPECT_EQ(metric_value(text, "ferry_receiver_chunks_received_total"), 0) << text;
  EXPECT_EQ(metric_value(text, "ferry_receiver_snapshots_committed_total"), 0) << text;
  EXPECT_EQ(metric_value(text, "ferry_receiver_fsync_duration_seconds_count"), 0) << text;
  EXPECT_NE(text.find("ferry_build_info{build_type=\"" + std::string(build_info().build_type)),
            std::string::npos)
      << text;

  ferry::testing::TempDir src;
  testing::make_tree(src.path(), ferry::testing::test_seed());
  auto tree = testing::pack_tree(src.path(), "llama", 1200);
  {
    auto c = site.connect("alpha");
    ASSERT_TRUE(c.is_ok()) << c.status().to_string();
    ASSERT_TRUE(testing::push_by_hand(**c, *tree, "llama-1").is_ok());
    (*c)->close();
  }
  {  // no client certificate: refused at the handshake
    auto c = Connection::connect(site.receiver().address(), site.certs.client_ctx(""));
    if (c.is_ok()) {
      EXPECT_FALSE((*c)->hello("ferry test").is_ok());
    }
  }
  {  // a server's message instead of HELLO
    auto c = Connection::connect(site.receiver().address(), site.certs.client_ctx("beta"));
    ASSERT_TRUE(c.is_ok()) << c.status().to_string();
    ASSERT_TRUE((*c)->send(HelloOk{}).is_ok());
    (void)(*c)->recv(10'000);
  }
  // Refusals and the closed connection's bytes are counted as each
  // connection ends, on the receiver's threads.
  ASSERT_TRUE(wait_until(
      [&] {
        text = m.render();
        return metric_value(text, "ferry_receiver_refusals_total{reason=\"tls_handshake\"}") == 1 &&
               metric_value(text, "ferry_receiver_refusals_total{reason=\"hello\"}") == 1 &&
               metric_value(text, "ferry_receiver_wire_bytes_received_total") > 0;
      },
      10'000))
      << text;
  const double frames = static_cast<double>(tree->frames.size());
  std::uint64_t frame_bytes = 0;
  for (const auto& f : tree->frames) frame_bytes += f.second.size();
  EXPECT_EQ(metric_value(text, "ferry_receiver_chunks_received_total"), frames) << text;
  EXPECT_EQ(metric_value(text, "ferry_receiver_chunk_bytes_received_total"),
            static_cast<double>(frame_bytes));
  EXPECT_EQ(metric_value(text, "ferry_receiver_chunks_stored_total"), frames) << text;
  EXPECT_EQ(metric_value(text, "ferry_receiver_snapshots_committed_total"), 1) << text;
  EXPECT_EQ(metric_value(text, "ferry_receiver_refusals_total{reason=\"connection_limit\"}"), 0) << text;
  EXPECT_GE(metric_value(text, "ferry_receiver_connections_accepted_total"), 3) << text;
  EXPECT_GT(metric_value(text, "ferry_receiver_wire_bytes_received_total"), static_cast<double>(frame_bytes));
  EXPECT_GT(metric_value(text, "ferry_receiver_wire_bytes_sent_total"), 0) << text;
  const double syncs = static_cast<double>(site.receiver().stats().syncs);
  EXPECT_GE(syncs, 1);
  EXPECT_EQ(metric_value(text, "ferry_receiver_fsync_duration_seconds_count"), syncs) << text;
  EXPECT_EQ(metric_value(text, "ferry_receiver_fsync_duration_seconds_bucket{le=\"+Inf\"}"), syncs) << text;
  EXPECT_GT(metric_value(text, "ferry_receiver_store_bytes{namespace=\"alpha\"}"), 0) << text;
  EXPECT_EQ(metric_value(text, "ferry_receiver_store_snapshots{namespace=\"alpha\"}"), 1) << text;
  EXPECT_EQ(metric_value(text, "ferry_receiver_store_chunks{namespace=\"alpha\"}"), frames) << text;
}

}  // namespace
}  // namespace ferry::replication
