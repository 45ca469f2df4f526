// metrics_net_test.cc: the agent's metrics registry renders Prometheus text
// format 0.0.4 (HELP/TYPE lines, escaped labels, sorted stable output), and a
// real MetricsServer on loopback is scraped by a real HTTP client and by a
// raw socket GET; the values parse back equal to what was set.
#include "agent/metrics.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#ifdef FERRY_HAVE_HTTPLIB
#include <httplib.h>
#endif

namespace ferry::agent {
namespace {

// Parses the text format back: "name{labels}" -> value, skipping comments.
// Also checks each sample line's shape, so a malformed render fails here.
std::map<std::string, double> parse_samples(const std::string& text) {
  std::map<std::string, double> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    auto sp = line.rfind(' ');
    EXPECT_NE(sp, std::string::npos) << line;
    if (sp == std::string::npos) continue;
    std::string value = line.substr(sp + 1);
    out[line.substr(0, sp)] = value == "+Inf" ? HUGE_VAL : std::strtod(value.c_str(), nullptr);
  }
  return out;
}

void fill_sample(Metrics& m) {
  m.describe_agent_metrics();
  m.add(kMetricLogicalBytes, {}, 1'000'000);
  m.add(kMetricLogicalBytes, {}, 234'567);
  m.add(kMetricWireBytes, {}, 800'000);
  m.add(kMetricJobs, {{"state", "committed"}}, 3);
  m.add(kMetricJobs, {{"state", "failed"}}, 1);
  m.set(kMetricQueueDepth, {}, 2);
  m.set(kMetricRpoSeconds, {{"job", "llama"}}, 42.5);
  m.set(kMetricRpoWarning, {{"job", "llama"}}, 0);
  m.set(kMetricTargetUp, {{"target", "dr1:7000"}}, 1);
  m.set(kMetricTargetUp, {{"target", "dr2:7000"}}, 0);
  m.set(kMetricThroughput, {}, 1.5e8);
  m.set(kMetricCompressionRatio, {}, 1.54321);
}

TEST(MetricsTest, RendersHelpTypeAndSamplesSorted) {
  Metrics m;
  m.describe("ferry_agent_b_total", "counter", "B things\nseen \\ here");
  m.describe("ferry_agent_a", "gauge", "A level");
  m.set("ferry_agent_a", {{"z", "1"}, {"job", "x"}}, 2);
  m.set("ferry_agent_a", {{"job", "w"}, {"z", "1"}}, 0.25);
  m.add("ferry_agent_b_total", {}, 7);
  m.set("ferry_agent_c", {}, -1);
  EXPECT_EQ(m.render(),
            "# HELP ferry_agent_a A level\n"
            "# TYPE ferry_agent_a gauge\n"
            "ferry_agent_a{job=\"w\",z=\"1\"} 0.25\n"
            "ferry_agent_a{job=\"x\",z=\"1\"} 2\n"
            "# HELP ferry_agent_b_total B things\\nseen \\\\ here\n"
            "# TYPE ferry_agent_b_total counter\n"
            "ferry_agent_b_total 7\n"
            "# TYPE ferry_agent_c untyped\n"
            "ferry_agent_c -1\n");
  // Stable: the same registry renders the same bytes.
  EXPECT_EQ(m.render(), m.render());
}

TEST(MetricsTest, EscapesLabelValues) {
  EXPECT_EQ(escape_label_value("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
  Metrics m;
  m.set(kMetricRpoSeconds, {{"job", "we\"ird\\job\nname"}}, 1);
  EXPECT_NE(m.render().find("ferry_agent_rpo_seconds{job=\"we\\\"ird\\\\job\\nname\"} 1\n"),
            std::string::npos)
      << m.render();
  // A render is still one sample per line.
  EXPECT_EQ(parse_samples(m.render()).size(), 1u);
}

TEST(MetricsTest, CountersOnlyGoUpAndGaugesAreSet) {
  Metrics m;
  m.add(kMetricErrors, {{"kind", "network"}}, 2);
  m.add(kMetricErrors, {{"kind", "network"}}, -5);  // ignored
  m.add(kMetricErrors, {{"kind", "network"}}, 1);
  EXPECT_EQ(m.value(kMetricErrors, {{"kind", "network"}}), 3);
  m.set(kMetricQueueDepth, {}, 5);
  m.set(kMetricQueueDepth, {}, 1);
  EXPECT_EQ(m.value(kMetricQueueDepth, {}), 1);
  EXPECT_EQ(m.value(kMetricQueueDepth, {{"other", "x"}}), 0);
  m.remove(kMetricQueueDepth, {});
  EXPECT_EQ(m.render().find("\nferry_agent_queue_depth "), std::string::npos);
}

TEST(MetricsTest, AgentMetricsFollowConventions) {
  Metrics m;
  fill_sample(m);
  std::string text = m.render();
  std::istringstream in(text);
  std::string line;
  int types = 0;
  while (std::getline(in, line)) {
    if (!line.starts_with("# TYPE ")) continue;
    ++types;
    std::istringstream f(line.substr(7));
    std::string name, type;
    f >> name >> type;
    EXPECT_TRUE(name.starts_with("ferry_agent_")) << name;
    if (type == "counter")
      EXPECT_TRUE(name.ends_with("_total")) << name;
    else
      EXPECT_EQ(type, "gauge") << name;
  }
  EXPECT_GE(types, 10);
}

TEST(MetricsTest, ConcurrentAddsAreCounted) {
  Metrics m;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&m] {
      for (int i = 0; i < 10'000; ++i) m.add(kMetricWireBytes, {}, 3);
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(m.value(kMetricWireBytes, {}), 4 * 10'000 * 3);
}

#ifdef FERRY_HAVE_HTTPLIB

// A plain TCP connection to 127.0.0.1:port, or -1.
int connect_loopback(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// The values a scrape parses back equal the registry's.
void expect_scrape_matches(const Metrics& m, const std::string& body) {
  auto samples = parse_samples(body);
  EXPECT_EQ(samples["ferry_agent_logical_bytes_total"], m.value(kMetricLogicalBytes, {}));
  EXPECT_EQ(samples["ferry_agent_logical_bytes_total"], 1'234'567);
  EXPECT_EQ(samples["ferry_agent_wire_bytes_total"], 800'000);
  EXPECT_EQ(samples["ferry_agent_jobs_total{state=\"committed\"}"], 3);
  EXPECT_EQ(samples["ferry_agent_jobs_total{state=\"failed\"}"], 1);
  EXPECT_EQ(samples["ferry_agent_rpo_seconds{job=\"llama\"}"], 42.5);
  EXPECT_EQ(samples["ferry_agent_target_up{target=\"dr1:7000\"}"], 1);
  EXPECT_EQ(samples["ferry_agent_target_up{target=\"dr2:7000\"}"], 0);
  EXPECT_EQ(samples["ferry_agent_throughput_bytes_per_second"], 1.5e8);
  EXPECT_EQ(samples["ferry_agent_compression_ratio"], 1.54321);
  EXPECT_EQ(samples.size(), 11u) << body;
}

TEST(MetricsServerTest, HttpClientScrapesMetrics) {
  Metrics m;
  fill_sample(m);
  auto server = MetricsServer::start("127.0.0.1:0", m);
  ASSERT_TRUE(server.is_ok()) << server.status().to_string();
  int port = (*server)->port();
  ASSERT_GT(port, 0);

  httplib::Client client("127.0.0.1", port);
  auto res = client.Get("/metrics");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->get_header_value("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
  expect_scrape_matches(m, res->body);

  // A later scrape sees later values.
  m.add(kMetricLogicalBytes, {}, 1000);
  m.set(kMetricQueueDepth, {}, 0);
  res = client.Get("/metrics");
  ASSERT_TRUE(res);
  auto samples = parse_samples(res->body);
  EXPECT_EQ(samples["ferry_agent_logical_bytes_total"], 1'235'567);
  EXPECT_EQ(samples["ferry_agent_queue_depth"], 0);

  res = client.Get("/");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 404);
  res = client.Get("/metricsx");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 404);
}

TEST(MetricsServerTest, RawSocketGet) {
  Metrics m;
  fill_sample(m);
  auto server = MetricsServer::start("127.0.0.1:0", m);
  ASSERT_TRUE(server.is_ok()) << server.status().to_string();

  int fd = connect_loopback((*server)->port());
  ASSERT_GE(fd, 0);
  std::string req = "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n";
  ASSERT_EQ(::send(fd, req.data(), req.size(), 0), static_cast<ssize_t>(req.size()));
  std::string reply;
  char buf[4096];
  ssize_t n;
  while ((n = ::recv(fd, buf, sizeof(buf), 0)) > 0) reply.append(buf, static_cast<std::size_t>(n));
  ::close(fd);
  ASSERT_TRUE(reply.starts_with("HTTP/1.1 200")) << reply;
  auto body_at = reply.find("\r\n\r\n");
  ASSERT_NE(body_at, std::string::npos);
  expect_scrape_matches(m, reply.substr(body_at + 4));
}

TEST(MetricsServerTest, BadAddressesAreRefused) {
  Metrics m;
  auto r = MetricsServer::start("127.0.0.1", m);
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  r = MetricsServer::start("127.0.0.1:99999", m);
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  r = MetricsServer::start("127.0.0.1:9x", m);
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);

  auto first = MetricsServer::start("127.0.0.1:0", m);
  ASSERT_TRUE(first.is_ok());
  auto second = MetricsServer::start("127.0.0.1:" + std::to_string((*first)->port()), m);
  EXPECT_FALSE(second.is_ok());
  EXPECT_NE(second.status().message().find("cannot listen on"), std::string::npos);
}

TEST(MetricsServerTest, StopsPromptlyWithAnIdleClientConnected) {
  Metrics m;
  auto server = MetricsServer::start("127.0.0.1:0", m);
  ASSERT_TRUE(server.is_ok()) << server.status().to_string();
  int fd = connect_loopback((*server)->port());
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::send(fd, "GET /met", 8, 0), 8);  // a request that never ends
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  auto t0 = std::chrono::steady_clock::now();
  server->reset();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(4));
  ::close(fd);
}

#else

TEST(MetricsServerTest, NotBuilt) {
  GTEST_SKIP() << "this build has no cpp-httplib (static build): the /metrics endpoint is left out";
}

#endif

}  // namespace
}  // namespace ferry::agent
