// prometheus_scrape_net_test.cc: a real Prometheus (the `prometheus` binary,
// started here on loopback with a temporary configuration and storage
// directory and a short scrape interval) scrapes a real agent and a real
// receiver (`ferry serve --metrics_listen`) while a checkpoint replicates,
// and its HTTP API is asked for a few series: they arrive under the
// scrape's own job/instance labels with no exported_job clash, counters
// count, the receiver's store and fsync histogram are there. Skipped, with
// the reason, where no prometheus binary is installed.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>

#include "agent/agent.h"
#include "replication/cert_gen.h"
#include "tests/agent/agent_fixture.h"
#include "tests/replication/ferry_child.h"

namespace ferry::agent {
namespace {

using ferry::testing::ChildProcess;
using testing::wait_until;
using testing::write_checkpoint;
namespace fs = std::filesystem;

constexpr int kStartMs = 20'000;
constexpr int kScrapeWaitMs = 30'000;
constexpr int kCommitMs = 30'000;

// The prometheus binary on PATH (or Debian's place), or "".
std::string find_prometheus() {
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "";
  dirs += ":/usr/bin:/usr/local/bin";
  for (std::size_t at = 0; at <= dirs.size();) {
    std::size_t end = dirs.find(':', at);
    if (end == std::string::npos) end = dirs.size();
    fs::path p = fs::path(dirs.substr(at, end - at)) / "prometheus";
    if (!p.parent_path().empty() && ::access(p.c_str(), X_OK) == 0) return p.string();
    at = end + 1;
  }
  return "";
}

// A loopback port free right now (Prometheus takes no port 0 we could read back).
int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  int port = -1;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
    port = ntohs(a.sin_port);
  ::close(fd);
  return port;
}

class PrometheusScrapeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    prometheus_ = find_prometheus();
    if (prometheus_.empty())
      GTEST_SKIP() << "no prometheus binary installed (Debian: apt install prometheus)";
    replication::CertSetOptions co;
    co.hosts = {"alpha"};
    auto certs = replication::create_cert_set(dir_.path() / "certs", co);
    ASSERT_TRUE(certs.is_ok()) << certs.status().to_string();
    certs_ = *certs;
    fs::create_directories(dir_.path() / "store");
    auto serve = ChildProcess::spawn(
        {FERRY_BIN, "serve", "--store=" + (dir_.path() / "store").string(), "--ca=" + certs_.ca_cert.string(),
         "--cert=" + certs_.receiver_cert.string(), "--key=" + certs_.receiver_key.string(),
         "--listen=127.0.0.1:0", "--metrics_listen=127.0.0.1:0"},
        dir_.path() / "serve.log");
    ASSERT_TRUE(serve.is_ok()) << serve.status().to_string();
    serve_.emplace(std::move(serve).value());
    auto metrics_line = serve_->wait_for_line("metrics on", kStartMs);
    ASSERT_TRUE(metrics_line.is_ok()) << metrics_line.status().to_string();
    receiver_metrics_ = metrics_line->substr(metrics_line->find("http://") + 7);
    receiver_metrics_ = receiver_metrics_.substr(0, receiver_metrics_.find('/'));
    auto line = serve_->wait_for_line("listening on", kStartMs);
    ASSERT_TRUE(line.is_ok()) << line.status().to_string();
    receiver_ = "127.0.0.1:" + std::to_string(ferry::testing::port_of_listening_line(*line));
  }

  void TearDown() override {
    if (agent_) agent_->shutdown(0);
    if (prom_) prom_->kill_and_wait(SIGTERM);
    if (HasFailure()) {
      for (const char* f : {"prometheus.log", "serve.log"}) {
        std::ifstream in(dir_.path() / f);
        std::string l;
        while (std::getline(in, l)) std::fprintf(stderr, "%s: %s\n", f, l.c_str());
      }
    }
  }

  void start_agent() {
    fs::create_directories(dir_.path() / "ckpt/llama");
    AgentConfig c;
    c.watch = {{dir_.path() / "ckpt/llama", "llama"}};
    c.targets = {receiver_};
    c.ca = certs_.ca_cert.string();
    c.cert = certs_.host_cert("alpha").string();
    c.key = certs_.host_key("alpha").string();
    c.state_dir = dir_.path() / "state";
    c.control_socket = dir_.path() / "ctl.sock";
    c.metrics_listen = "127.0.0.1:0";
    c.nice = 0;
    c.io_class = "best-effort";
    c.engine = "cpu";
    c.rescan_interval_s = 0.5;
    c.probe_interval_s = 0.5;
    auto a = Agent::start(c, log_);
    ASSERT_TRUE(a.is_ok()) << a.status().to_string();
    agent_ = std::move(a).value();
  }

  void start_prometheus() {
    const fs::path config = dir_.path() / "prometheus.yml";
    std::ofstream(config) << "global:\n  scrape_interval: 500ms\n  evaluation_interval: 1s\n"
                          << "scrape_configs:\n"
                          << "  - job_name: ferry-agent\n    static_configs:\n      - targets: ['127.0.0.1:"
                          << agent_->metrics_port() << "']\n"
                          << "  - job_name: ferry-receiver\n    static_configs:\n      - targets: ['"
                          << receiver_metrics_ << "']\n";
    prom_port_ = free_port();
    ASSERT_GT(prom_port_, 0);
    auto p = ChildProcess::spawn({prometheus_, "--config.file=" + config.string(),
                                  "--storage.tsdb.path=" + (dir_.path() / "tsdb").string(),
                                  "--web.listen-address=127.0.0.1:" + std::to_string(prom_port_)},
                                 dir_.path() / "prometheus.log");
    ASSERT_TRUE(p.is_ok()) << p.status().to_string();
    prom_.emplace(std::move(p).value());
    ASSERT_TRUE(wait_until(
        [&] {
          httplib::Client cli("127.0.0.1", prom_port_);
          auto r = cli.Get("/-/ready");
          return r && r->status == 200;
        },
        kStartMs))
        << "prometheus did not become ready";
  }

  // The result vector of an instant query (empty on any error).
  nlohmann::json query(const std::string& promql) {
    httplib::Client cli("127.0.0.1", prom_port_);
    auto r = cli.Get("/api/v1/query", httplib::Params{{"query", promql}}, httplib::Headers{});
    if (!r || r->status != 200) return nlohmann::json::array();
    auto j = nlohmann::json::parse(r->body, nullptr, false);
    if (j.is_discarded() || j["status"] != "success") return nlohmann::json::array();
    return j["data"]["result"];
  }
  // The one sample's value of `promql` once it is there, else NaN.
  double value_of(const std::string& promql) {
    auto r = query(promql);
    if (r.size() != 1) return std::nan("");
    return std::stod(r[0]["value"][1].get<std::string>());
  }

  ferry::testing::TempDir dir_;
  replication::CertSet certs_;
  std::string prometheus_, receiver_, receiver_metrics_;
  std::optional<ChildProcess> serve_, prom_;
  int prom_port_ = 0;
  Logger log_{LogFormat::kText, [](std::string_view) {}};
  std::unique_ptr<Agent> agent_;
};

TEST_F(PrometheusScrapeTest, ScrapesAgentAndReceiver) {
  start_agent();
  write_checkpoint(dir_.path() / "ckpt/llama/step-10", 10, 60'000);
  start_prometheus();
  // Both targets up, under the scrape's own job label.
  ASSERT_TRUE(wait_until([&] { return value_of("up{job=\"ferry-agent\"}") == 1; }, kScrapeWaitMs))
      << query("up").dump();
  ASSERT_TRUE(wait_until([&] { return value_of("up{job=\"ferry-receiver\"}") == 1; }, kScrapeWaitMs))
      << query("up").dump();
  // The checkpoint's commit, as both sides count it.
  ASSERT_TRUE(wait_until(
      [&] {
        return value_of("ferry_agent_checkpoints_finished_total{job=\"ferry-agent\",state=\"committed\"}") ==
                   1 &&
               value_of("ferry_receiver_snapshots_committed_total{job=\"ferry-receiver\"}") == 1;
      },
      kCommitMs + kScrapeWaitMs))
      << query("{__name__=~\"ferry_.*(committed|finished).*\"}").dump();
  // The job's label is ckpt_job; nothing was renamed to exported_job.
  auto last = query("ferry_agent_last_commit_timestamp_seconds");
  ASSERT_EQ(last.size(), 1u) << last.dump();
  EXPECT_EQ(last[0]["metric"]["ckpt_job"], "llama") << last.dump();
  EXPECT_EQ(last[0]["metric"]["job"], "ferry-agent") << last.dump();
  EXPECT_TRUE(query("{exported_job!=\"\"}").empty()) << query("{exported_job!=\"\"}").dump();
  EXPECT_TRUE(query("{exported_instance!=\"\"}").empty());
  // The age of the DR copy, computed in PromQL, is a sane number of seconds.
  const double age = value_of("time() - ferry_agent_last_commit_timestamp_seconds");
  EXPECT_GE(age, 0);
  EXPECT_LT(age, 600);
  // Counters from 0, histograms, build info, store usage.
  EXPECT_EQ(value_of("ferry_agent_errors_total{kind=\"push\"}"), 0);
  EXPECT_EQ(value_of("ferry_agent_push_duration_seconds_count"), 1);
  ASSERT_TRUE(
      wait_until([&] { return value_of("ferry_receiver_fsync_duration_seconds_count") > 0; }, kScrapeWaitMs));
  EXPECT_GT(value_of("ferry_receiver_chunks_stored_total"), 0);
  EXPECT_GT(value_of("ferry_receiver_store_bytes{namespace=\"alpha\"}"), 0);
  EXPECT_EQ(query("ferry_build_info").size(), 2u) << query("ferry_build_info").dump();
  EXPECT_EQ(value_of("ferry_receiver_refusals_total{reason=\"tls_handshake\"}"), 0);
}

}  // namespace
}  // namespace ferry::agent
