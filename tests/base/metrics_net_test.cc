// metrics_net_test.cc: the metrics registry renders Prometheus text format
// 0.0.4 (HELP/TYPE lines, escaped labels, sorted stable output, cumulative
// histogram buckets), and a real MetricsServer on loopback is scraped by a
// real HTTP client and by a raw socket GET; the values parse back equal to
// what was set.
#include "base/metrics.h"

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

#include "base/build_info.h"
#include "base/metrics_server.h"

#ifdef FERRY_HAVE_HTTPLIB
#include <httplib.h>
#endif

namespace ferry {
namespace {

// Names as a component would define them.
constexpr std::string_view kLogical = "ferry_test_logical_bytes_total";
constexpr std::string_view kWire = "ferry_test_wire_bytes_total";
constexpr std::string_view kJobs = "ferry_test_jobs_total";
constexpr std::string_view kErrors = "ferry_test_errors_total";
constexpr std::string_view kQueueDepth = "ferry_test_queue_depth";
constexpr std::string_view kRpo = "ferry_test_rpo_seconds";
constexpr std::string_view kTargetUp = "ferry_test_target_up";
constexpr std::string_view kRatio = "ferry_test_ratio";

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
  m.describe(kLogical, "counter", "logical bytes");
  m.describe(kWire, "counter", "wire bytes");
  m.describe(kJobs, "counter", "jobs by state");
  m.describe(kQueueDepth, "gauge", "queue depth");
  m.add(kLogical, {}, 1'000'000);
  m.add(kLogical, {}, 234'567);
  m.add(kWire, {}, 800'000);
  m.add(kJobs, {{"state", "committed"}}, 3);
  m.add(kJobs, {{"state", "failed"}}, 1);
  m.set(kQueueDepth, {}, 2);
  m.set(kRpo, {{"ckpt_job", "llama"}}, 42.5);
  m.set(kRpo, {{"ckpt_job", "gpt"}}, 0);
  m.set(kTargetUp, {{"target", "dr1:7000"}}, 1);
  m.set(kTargetUp, {{"target", "dr2:7000"}}, 0);
  m.set("ferry_test_rate", {}, 1.5e8);
  m.set(kRatio, {}, 1.54321);
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
  m.set(kRpo, {{"ckpt_job", "we\"ird\\job\nname"}}, 1);
  EXPECT_NE(m.render().find("ferry_test_rpo_seconds{ckpt_job=\"we\\\"ird\\\\job\\nname\"} 1\n"),
            std::string::npos)
      << m.render();
  // A render is still one sample per line.
  EXPECT_EQ(parse_samples(m.render()).size(), 1u);
}

TEST(MetricsTest, CountersOnlyGoUpAndGaugesAreSet) {
  Metrics m;
  m.add(kErrors, {{"kind", "network"}}, 2);
  m.add(kErrors, {{"kind", "network"}}, -5);  // ignored
  m.add(kErrors, {{"kind", "network"}}, 1);
  EXPECT_EQ(m.value(kErrors, {{"kind", "network"}}), 3);
  m.set(kQueueDepth, {}, 5);
  m.set(kQueueDepth, {}, 1);
  EXPECT_EQ(m.value(kQueueDepth, {}), 1);
  EXPECT_EQ(m.value(kQueueDepth, {{"other", "x"}}), 0);
  m.remove(kQueueDepth, {});
  EXPECT_EQ(m.render().find("\nferry_test_queue_depth "), std::string::npos);
}

TEST(MetricsTest, HistogramsRenderCumulativeBucketsSumAndCount) {
  Metrics m;
  const double bounds[] = {0.25, 0.5, 1};
  m.describe_histogram("ferry_test_fsync_seconds", "fsync latency", bounds);
  for (double v : {0.125, 0.25, 0.375, 0.75, 7.0}) m.observe("ferry_test_fsync_seconds", {}, v);
  EXPECT_EQ(m.render(),
            "# HELP ferry_test_fsync_seconds fsync latency\n"
            "# TYPE ferry_test_fsync_seconds histogram\n"
            "ferry_test_fsync_seconds_bucket{le=\"0.25\"} 2\n"
            "ferry_test_fsync_seconds_bucket{le=\"0.5\"} 3\n"
            "ferry_test_fsync_seconds_bucket{le=\"1\"} 4\n"
            "ferry_test_fsync_seconds_bucket{le=\"+Inf\"} 5\n"
            "ferry_test_fsync_seconds_sum 8.5\n"
            "ferry_test_fsync_seconds_count 5\n");
  // Counts kept elsewhere (a Histogram) copy in with their labels.
  Histogram h(bounds);
  h.observe(0.2);
  m.set_histogram("ferry_test_fsync_seconds", {{"ns", "a"}}, h.counts());
  EXPECT_NE(m.render().find("ferry_test_fsync_seconds_bucket{ns=\"a\",le=\"1\"} 1\n"), std::string::npos)
      << m.render();
}

TEST(MetricsTest, RemoveLabelledDropsEverySeriesOfThatValue) {
  Metrics m;
  fill_sample(m);
  m.set(kQueueDepth, {{"ckpt_job", "llama"}}, 3);
  EXPECT_EQ(m.label_values(kRpo, "ckpt_job"), (std::vector<std::string>{"gpt", "llama"}));
  m.remove_labelled("ckpt_job", "llama");
  const std::string text = m.render();
  EXPECT_EQ(text.find("llama"), std::string::npos) << text;
  EXPECT_NE(text.find("ferry_test_rpo_seconds{ckpt_job=\"gpt\"} 0\n"), std::string::npos) << text;
  EXPECT_EQ(m.label_values(kRpo, "ckpt_job"), (std::vector<std::string>{"gpt"}));
}

TEST(MetricsTest, CollectorsRunAtEachRender) {
  Metrics m;
  int calls = 0;
  m.add_collector([&calls](Metrics& into) { into.set("ferry_test_calls", {}, ++calls); });
  EXPECT_NE(m.render().find("ferry_test_calls 1\n"), std::string::npos);
  EXPECT_NE(m.render().find("ferry_test_calls 2\n"), std::string::npos);
}

TEST(MetricsTest, BuildInfoNamesTheVersion) {
  Metrics m;
  describe_build_info(m);
  const std::string text = m.render();
  EXPECT_NE(text.find("# TYPE ferry_build_info gauge\n"), std::string::npos) << text;
  EXPECT_NE(text.find("version=\"" + std::string(build_info().version) + "\""), std::string::npos) << text;
}

TEST(MetricsTest, ConcurrentAddsAreCounted) {
  Metrics m;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&m] {
      for (int i = 0; i < 10'000; ++i) m.add(kWire, {}, 3);
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(m.value(kWire, {}), 4 * 10'000 * 3);
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
  EXPECT_EQ(samples["ferry_test_logical_bytes_total"], m.value(kLogical, {}));
  EXPECT_EQ(samples["ferry_test_logical_bytes_total"], 1'234'567);
  EXPECT_EQ(samples["ferry_test_wire_bytes_total"], 800'000);
  EXPECT_EQ(samples["ferry_test_jobs_total{state=\"committed\"}"], 3);
  EXPECT_EQ(samples["ferry_test_jobs_total{state=\"failed\"}"], 1);
  EXPECT_EQ(samples["ferry_test_rpo_seconds{ckpt_job=\"llama\"}"], 42.5);
  EXPECT_EQ(samples["ferry_test_target_up{target=\"dr1:7000\"}"], 1);
  EXPECT_EQ(samples["ferry_test_target_up{target=\"dr2:7000\"}"], 0);
  EXPECT_EQ(samples["ferry_test_rate"], 1.5e8);
  EXPECT_EQ(samples["ferry_test_ratio"], 1.54321);
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
  m.add(kLogical, {}, 1000);
  m.set(kQueueDepth, {}, 0);
  res = client.Get("/metrics");
  ASSERT_TRUE(res);
  auto samples = parse_samples(res->body);
  EXPECT_EQ(samples["ferry_test_logical_bytes_total"], 1'235'567);
  EXPECT_EQ(samples["ferry_test_queue_depth"], 0);

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
}  // namespace ferry
