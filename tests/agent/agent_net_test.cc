// agent_net_test.cc: the agent end to end over real mTLS on loopback, with
// real receivers (tests/replication/receiver_fixture.h) and real files:
// half-written checkpoints wait, a checkpoint changed while read is retried
// and committed as its final content, a target going down grows the queue
// and raises the RPO warning (status and /metrics) which clears once it is
// back and drained, failover to a second target and back, status over the
// control socket, /metrics agreeing with the pushes, and bad configurations
// refused by the real ferry-agent binary with the setting named.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <csignal>
#include <cstring>
#include <mutex>
#include <nlohmann/json.hpp>

#include "agent/agent.h"
#include "agent/control.h"
#include "agent/metrics.h"
#include "base/build_info.h"
#include "base/clock.h"
#include "tests/agent/agent_fixture.h"
#include "tests/replication/ferry_child.h"
#include "tests/replication/receiver_fixture.h"

namespace ferry::agent {
namespace {

namespace fs = std::filesystem;
using namespace ferry::agent::testing;
using ferry::replication::testing::ReceiverSite;

constexpr int kCommitMs = 30'000;

class AgentNetTest : public ::testing::Test {
 protected:
  AgentNetTest()
      : log_(LogFormat::kText, [this](std::string_view l) {
          std::lock_guard lock(mu_);
          lines_.emplace_back(l);
        }) {}

  void SetUp() override {
    fs::create_directories(dir_ / "ckpt/llama");
    c_.watch = {{dir_ / "ckpt/llama", "llama"}};
    c_.targets = {a_.receiver().address().to_string()};
    c_.ca = a_.certs.set.ca_cert.string();
    c_.cert = a_.certs.set.host_cert("alpha").string();
    c_.key = a_.certs.set.host_key("alpha").string();
    c_.state_dir = dir_ / "state";
    c_.control_socket = dir_ / "ctl.sock";
    c_.metrics_listen = "127.0.0.1:0";
    c_.nice = 0;
    c_.io_class = "best-effort";
    c_.engine = "cpu";
    c_.skip_superseded = false;
    c_.rescan_interval_s = 0.5;
    c_.probe_interval_s = 0.2;
    c_.target_down_after = 2;
    c_.target_up_after = 1;
    c_.shutdown_grace_s = 5;
  }
  void TearDown() override {
    if (agent_) agent_->shutdown(0);
    if (HasFailure()) {
      std::lock_guard lock(mu_);
      for (const auto& l : lines_) std::fprintf(stderr, "agent log: %s\n", l.c_str());
    }
  }

  void start() {
    auto a = Agent::start(c_, log_);
    ASSERT_TRUE(a.is_ok()) << a.status().to_string();
    agent_ = std::move(a).value();
  }
  // Options for a second receiver on a new port that the agent trusts as it
  // trusts a_ (a_'s CA and receiver certificate).
  replication::ReceiverOptions second_receiver_options() {
    replication::ReceiverOptions ro;
    ro.listen = "127.0.0.1:0";
    ro.tls.ca_file = a_.certs.set.ca_cert;
    ro.tls.cert_file = a_.certs.set.receiver_cert;
    ro.tls.key_file = a_.certs.set.receiver_key;
    return ro;
  }
  replication::RemoteOptions remote(const ReceiverSite& site) {
    replication::RemoteOptions r;
    r.address = const_cast<ReceiverSite&>(site).receiver().address().to_string();
    r.tls = c_.tls();
    return r;
  }
  bool log_has(const std::string& needle) {
    std::lock_guard lock(mu_);
    for (const auto& l : lines_) {
      if (l.find(needle) != std::string::npos) return true;
    }
    return false;
  }
  std::size_t log_count(const std::string& needle) {
    std::lock_guard lock(mu_);
    std::size_t n = 0;
    for (const auto& l : lines_) n += l.find(needle) != std::string::npos;
    return n;
  }
  nlohmann::json job_status(const std::string& job = "llama") {
    auto s = agent_->status_json();
    for (const auto& j : s["jobs"]) {
      if (j["job"] == job) return j;
    }
    return {};
  }
  bool committed_at(const ReceiverSite& site, const std::string& name) {
    auto names = remote_names(remote(site));
    return std::find(names.begin(), names.end(), name) != names.end();
  }

  ferry::testing::TempDir dir_;
  ReceiverSite a_;
  AgentConfig c_;
  std::mutex mu_;
  std::vector<std::string> lines_;
  Logger log_;
  std::unique_ptr<Agent> agent_;
};

TEST_F(AgentNetTest, HalfWrittenCheckpointWaitsUntilComplete) {
  start();
  const fs::path ck = dir_ / "ckpt/llama/step-100";
  fs::create_directories(ck);
  // Shards appear one by one, slowly; no .metadata yet.
  for (int i = 0; i < 3; ++i) {
    ferry::testing::write_file(ck / ("__" + std::to_string(i) + "_0.distcp"),
                               ferry::testing::normal_floats(100'000, 2, true, 0.02, 40 + i));
    std::this_thread::sleep_for(std::chrono::milliseconds(400));
  }
  EXPECT_FALSE(log_has("checkpoint_submitted"));
  EXPECT_TRUE(agent_->status_json()["queue"].empty());
  EXPECT_TRUE(remote_names(remote(a_)).empty());
  ferry::testing::write_file(ck / ".metadata", ferry::testing::random_bytes(500, 9));
  ASSERT_TRUE(wait_until([&] { return committed_at(a_, "llama-step-100"); }, kCommitMs));
  EXPECT_TRUE(restores_identical(remote(a_), "llama-step-100", ck));
  EXPECT_TRUE(wait_until([&] { return job_status()["newest_committed_step"] == 100; }, 5000));
}

TEST_F(AgentNetTest, CheckpointChangedWhileReadIsRetriedAndCommittedAsFinal) {
  c_.bandwidth_mbps = 1.5;  // a ~2.4 MB checkpoint takes over a second to send
  c_.streams = 1;
  start();
  const fs::path ck = dir_ / "ckpt/llama/step-200";
  write_checkpoint(ck, 7, 800'000);
  ASSERT_TRUE(wait_until([&] { return log_has("checkpoint_submitted"); }, 10'000));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  // The trainer rewrites one shard while the agent reads and sends.
  ferry::testing::write_file(ck / "__1_0.distcp",
                             ferry::testing::normal_floats(800'000 / 3, 4, false, 1e-3, 99));
  ASSERT_TRUE(wait_until([&] { return committed_at(a_, "llama-step-200"); }, 60'000));
  // Recognised by its code (Aborted, Detail::kSourceChanged), whether the
  // packer saw the size move or the check before COMMIT saw the file
  // rewritten: the retry is filed as a changed checkpoint, not a failed push.
  EXPECT_TRUE(log_has("checkpoint_retry") && log_has("kind=checkpoint_changed"))
      << "the change was not recognised by its code";
  EXPECT_TRUE(restores_identical(remote(a_), "llama-step-200", ck));
  EXPECT_EQ(log_count("checkpoint_committed"), 1u);
}

TEST_F(AgentNetTest, TargetDownGrowsQueueAndWarnsThenDrainsAndClears) {
  start();
  write_checkpoint(dir_ / "ckpt/llama/step-1", 1, 50'000);
  // Committed as the agent knows it (the receiver lists the snapshot before
  // the agent has read the COMMIT reply; stopping it then would leave step-1
  // in the queue beside steps 2 and 3).
  ASSERT_TRUE(wait_until([&] { return committed_at(a_, "llama-step-1") && job_status()["committed"] == 1; },
                         kCommitMs));
  a_.receiver().stop();
  ASSERT_TRUE(wait_until([&] { return agent_->status_json()["targets"][0]["up"] == false; }, 10'000));
  EXPECT_TRUE(log_has("target_down"));
  write_checkpoint(dir_ / "ckpt/llama/step-2", 2, 50'000);
  write_checkpoint(dir_ / "ckpt/llama/step-3", 3, 50'000);
  ASSERT_TRUE(wait_until([&] { return agent_->status_json()["queue"].size() == 2; }, 10'000));
  ASSERT_TRUE(wait_until([&] { return job_status()["warning"] == true; }, 5000));
  auto js = job_status();
  EXPECT_NE(js["warning_text"].get<std::string>().find("all targets down"), std::string::npos) << js.dump();
  EXPECT_GT(js["backlog_bytes"].get<std::uint64_t>(), 0u);
  EXPECT_EQ(js["forecast_rpo_seconds"].get<double>(), -1.0);  // cannot drain
  const std::string m = scrape_metrics(agent_->metrics_port());
  EXPECT_EQ(metric_value(m, "ferry_agent_rpo_warning{ckpt_job=\"llama\"}"), 1) << m;
  // The outage is counted as it happens: every failed probe is an error.
  EXPECT_GT(metric_value(m, "ferry_agent_errors_total{kind=\"probe\"}"), 0) << m;
  EXPECT_EQ(metric_value(m, "ferry_agent_queue_depth"), 2) << m;
  EXPECT_EQ(metric_value(m, "ferry_agent_target_up{target=\"" + a_.receiver().address().to_string() + "\"}"),
            0)
      << m;
  EXPECT_EQ(log_count("rpo_warning_raised"), 1u);

  ASSERT_TRUE(a_.restart().is_ok());
  ASSERT_TRUE(wait_until([&] { return committed_at(a_, "llama-step-2") && committed_at(a_, "llama-step-3"); },
                         kCommitMs));
  ASSERT_TRUE(wait_until([&] { return job_status()["warning"] == false; }, 5000)) << job_status().dump();
  // The receiver lists a snapshot before the agent has read the COMMIT reply.
  EXPECT_TRUE(wait_until([&] { return agent_->status_json()["queue"].empty(); }, 5000));
  EXPECT_EQ(
      metric_value(scrape_metrics(agent_->metrics_port()), "ferry_agent_rpo_warning{ckpt_job=\"llama\"}"), 0);
  EXPECT_EQ(log_count("rpo_warning_raised"), 1u);
  EXPECT_EQ(log_count("rpo_warning_cleared"), 1u);
  EXPECT_TRUE(log_has("target_up"));
  for (const char* s : {"llama-step-1", "llama-step-2", "llama-step-3"}) {
    EXPECT_TRUE(restores_identical(remote(a_), s, dir_ / "ckpt/llama" / std::string(s).substr(6)));
  }
}

TEST_F(AgentNetTest, FailoverToSecondTargetAndBack) {
  ReceiverSite b;
  // Both receivers trust the same CA only if they share certificates: b
  // gets a's set.
  ASSERT_TRUE(b.receiver().address().to_string() != a_.receiver().address().to_string());
  b.receiver().stop();
  replication::ReceiverOptions ro = second_receiver_options();
  replication::Receiver second(b.store(), ro);
  ASSERT_TRUE(second.start().is_ok());
  c_.targets = {a_.receiver().address().to_string(), second.address().to_string()};
  start();
  auto remote_b = remote(a_);
  remote_b.address = second.address().to_string();

  write_checkpoint(dir_ / "ckpt/llama/step-10", 10, 50'000);
  ASSERT_TRUE(wait_until([&] { return committed_at(a_, "llama-step-10"); }, kCommitMs));
  a_.receiver().stop();
  ASSERT_TRUE(wait_until([&] { return agent_->status_json()["targets"][0]["up"] == false; }, 10'000));
  write_checkpoint(dir_ / "ckpt/llama/step-20", 20, 50'000);
  auto names_b = [&] { return remote_names(remote_b); };
  ASSERT_TRUE(wait_until(
      [&] {
        auto n = names_b();
        return std::find(n.begin(), n.end(), "llama-step-20") != n.end();
      },
      kCommitMs));
  EXPECT_TRUE(restores_identical(remote_b, "llama-step-20", dir_ / "ckpt/llama/step-20"));
  EXPECT_EQ(job_status()["warning"], false);  // a healthy target kept it moving

  ASSERT_TRUE(a_.restart().is_ok());
  ASSERT_TRUE(wait_until([&] { return agent_->status_json()["targets"][0]["up"] == true; }, 10'000));
  write_checkpoint(dir_ / "ckpt/llama/step-30", 30, 50'000);
  ASSERT_TRUE(wait_until([&] { return committed_at(a_, "llama-step-30"); }, kCommitMs));
  auto n = names_b();
  EXPECT_EQ(std::find(n.begin(), n.end(), "llama-step-30"), n.end()) << "back on the first target";
  EXPECT_TRUE(restores_identical(remote(a_), "llama-step-30", dir_ / "ckpt/llama/step-30"));
  second.stop();
}

TEST_F(AgentNetTest, ControlSocketStatusSubmitPauseResume) {
  start();
  auto s = control_call(c_.control_socket, "status", nlohmann::json::object());
  ASSERT_TRUE(s.is_ok()) << s.status().to_string();
  EXPECT_EQ((*s)["ok"], true);
  EXPECT_EQ((*s)["engine"].get<std::string>().substr(0, 3), "cpu");
  EXPECT_EQ((*s)["engine_reason"], "forced (--engine=cpu)");
  ASSERT_EQ((*s)["jobs"].size(), 1u);
  EXPECT_EQ((*s)["jobs"][0]["job"], "llama");
  EXPECT_EQ((*s)["jobs"][0]["rpo_target_seconds"], c_.rpo_target_s);
  EXPECT_EQ((*s)["targets"][0]["address"], a_.receiver().address().to_string());

  auto paused = control_call(c_.control_socket, "pause", {{"job", ""}});
  ASSERT_TRUE(paused.is_ok());
  EXPECT_EQ((*paused)["ok"], true);
  // A directory outside any watched root, without completion mark: submit
  // takes it as it is.
  const fs::path other = dir_ / "elsewhere/run-7";
  write_checkpoint(other, 70, 30'000);
  fs::remove(other / ".metadata");
  auto sub = control_call(c_.control_socket, "submit", {{"dir", other.string()}, {"job", "side"}});
  ASSERT_TRUE(sub.is_ok());
  ASSERT_EQ((*sub)["ok"], true) << sub->dump();
  EXPECT_GT((*sub)["id"].get<std::uint64_t>(), 0u);
  auto again = control_call(c_.control_socket, "submit", {{"dir", other.string()}, {"job", "side"}});
  ASSERT_TRUE(again.is_ok());
  EXPECT_EQ((*again)["ok"], false);
  auto bad = control_call(c_.control_socket, "submit", {{"dir", (dir_ / "nope").string()}});
  ASSERT_TRUE(bad.is_ok());
  EXPECT_EQ((*bad)["ok"], false);
  EXPECT_NE((*bad)["error"].get<std::string>().find("no such directory"), std::string::npos);

  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  s = control_call(c_.control_socket, "status", nlohmann::json::object());
  ASSERT_TRUE(s.is_ok());
  EXPECT_EQ((*s)["paused"], true);
  ASSERT_EQ((*s)["queue"].size(), 1u);
  EXPECT_EQ((*s)["queue"][0]["state"], "queued");
  EXPECT_EQ((*s)["queue"][0]["job"], "side");
  EXPECT_TRUE(remote_names(remote(a_)).empty());

  ASSERT_TRUE(control_call(c_.control_socket, "resume", {{"job", ""}}).is_ok());
  ASSERT_TRUE(wait_until([&] { return committed_at(a_, "side-run-7"); }, kCommitMs));
  EXPECT_TRUE(restores_identical(remote(a_), "side-run-7", other));
  s = control_call(c_.control_socket, "status", nlohmann::json::object());
  ASSERT_TRUE(s.is_ok());
  bool found = false;
  for (const auto& j : (*s)["jobs"]) {
    if (j["job"] != "side") continue;
    found = true;
    EXPECT_EQ(j["newest_committed_snapshot"], "side-run-7");
    EXPECT_GE(j["rpo_seconds"].get<double>(), 0.0);
    EXPECT_EQ(j["committed"], 1);
  }
  EXPECT_TRUE(found) << s->dump();
  auto unknown = control_call(c_.control_socket, "launch", nlohmann::json::object());
  ASSERT_TRUE(unknown.is_ok());
  EXPECT_EQ((*unknown)["ok"], false);
}

TEST_F(AgentNetTest, MetricsAgreeWithThePushes) {
  start();
  // Before any checkpoint: every counter is there at 0, and the job has no
  // last-commit time (its DR copy's age is unknown, not 0).
  std::string m = scrape_metrics(agent_->metrics_port());
  for (const char* kind : {"push", "read", "checkpoint_changed", "target_down", "journal", "probe"})
    EXPECT_EQ(metric_value(m, std::string("ferry_agent_errors_total{kind=\"") + kind + "\"}"), 0) << m;
  for (const char* state : {"committed", "skipped", "failed"})
    EXPECT_EQ(metric_value(m, std::string("ferry_agent_checkpoints_finished_total{state=\"") + state + "\"}"),
              0)
        << m;
  EXPECT_EQ(metric_value(m, "ferry_agent_checkpoints_submitted_total"), 0) << m;
  EXPECT_EQ(metric_value(m, "ferry_agent_push_duration_seconds_count"), 0) << m;
  EXPECT_EQ(metric_value(m, "ferry_agent_rpo_warning{ckpt_job=\"llama\"}"), 0) << m;
  EXPECT_EQ(metric_value(m, "ferry_agent_last_commit_timestamp_seconds{ckpt_job=\"llama\"}"), -1) << m;
  EXPECT_EQ(metric_value(m, "ferry_agent_rpo_target_seconds"), c_.rpo_target_s) << m;
  EXPECT_EQ(metric_value(m, "ferry_build_info{build_type=\"" + std::string(build_info().build_type) +
                                "\",commit=\"" + std::string(build_info().git_commit) + "\",cuda=\"" +
                                (build_info().cuda ? "on" : "off") + "\",version=\"" +
                                std::string(build_info().version) + "\"}"),
            1)
      << m;
  for (int i = 1; i <= 3; ++i)
    write_checkpoint(dir_ / "ckpt/llama" / ("step-" + std::to_string(i)), 100 + i, 60'000);
  ASSERT_TRUE(wait_until([&] { return log_count("checkpoint_committed") == 3; }, kCommitMs));
  // The sender's own counters, as each commit logged them.
  double logical = 0, wire = 0;
  {
    std::lock_guard lock(mu_);
    for (const auto& l : lines_) {
      if (l.find("checkpoint_committed") == std::string::npos) continue;
      logical += std::stod(l.substr(l.find("logical_bytes=") + 14));
      wire += std::stod(l.substr(l.find("wire_bytes=") + 11));
    }
  }
  std::uint64_t on_disk = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir_ / "ckpt/llama")) {
    if (e.is_regular_file()) on_disk += e.file_size();
  }
  EXPECT_EQ(logical, static_cast<double>(on_disk));
  ASSERT_TRUE(wait_until(
      [&] {
        m = scrape_metrics(agent_->metrics_port());
        return metric_value(m, "ferry_agent_checkpoints_finished_total{state=\"committed\"}") == 3;
      },
      5000))
      << m;
  EXPECT_EQ(metric_value(m, "ferry_agent_logical_bytes_total"), logical) << m;
  EXPECT_EQ(metric_value(m, "ferry_agent_wire_bytes_total"), wire) << m;
  EXPECT_EQ(metric_value(m, "ferry_agent_checkpoints_submitted_total"), 3) << m;
  EXPECT_EQ(metric_value(m, "ferry_agent_checkpoints_finished_total{state=\"failed\"}"), 0) << m;
  EXPECT_EQ(metric_value(m, "ferry_agent_push_duration_seconds_count"), 3) << m;
  EXPECT_EQ(metric_value(m, "ferry_agent_push_duration_seconds_bucket{le=\"+Inf\"}"), 3) << m;
  EXPECT_GE(metric_value(m, "ferry_agent_journal_fsync_duration_seconds_count"), 9)
      << m;  // 3 records per job
  // The newest commit's own time (the checkpoint's), for age in PromQL.
  const double last = metric_value(m, "ferry_agent_last_commit_timestamp_seconds{ckpt_job=\"llama\"}");
  const double now_s = static_cast<double>(wall_ns()) / 1e9;
  EXPECT_GT(last, now_s - 600) << m;
  EXPECT_LE(last, now_s) << m;
  // Rates and ratios are left to PromQL: no gauge freezes at its last value.
  EXPECT_EQ(m.find("\nferry_agent_throughput"), std::string::npos) << m;
  EXPECT_EQ(m.find("\nferry_agent_compression_ratio"), std::string::npos) << m;
  // No label of ours is named job or instance (Prometheus's own).
  for (const char* label : {"{job=", ",job=", "{instance=", ",instance="})
    EXPECT_EQ(m.find(label), std::string::npos) << label << "\n" << m;
  EXPECT_EQ(metric_value(m, "ferry_agent_engine_info{engine=\"cpu\",reason=\"forced (--engine=cpu)\"}"), 1)
      << m;
  auto s = agent_->status_json();
  EXPECT_EQ(s["logical_bytes"].get<double>(), logical);
  EXPECT_EQ(s["wire_bytes"].get<double>(), wire);
}

TEST_F(AgentNetTest, RemovedJobLeavesStatusAndMetrics) {
  fs::create_directories(dir_ / "ckpt/gpt");
  c_.watch.push_back({dir_ / "ckpt/gpt", "gpt"});
  start();
  write_checkpoint(dir_ / "ckpt/gpt/step-1", 7, 50'000);
  ASSERT_TRUE(wait_until([&] { return committed_at(a_, "gpt-step-1"); }, kCommitMs));
  ASSERT_TRUE(wait_until(
      [&] {
        return metric_value(scrape_metrics(agent_->metrics_port()),
                            "ferry_agent_last_commit_timestamp_seconds{ckpt_job=\"gpt\"}") > 0;
      },
      5000));
  // The gpt root is removed: its job leaves status and every series of it
  // goes, so no alert stays raised for a job that is gone.
  AgentConfig next = c_;
  next.watch.pop_back();
  ASSERT_TRUE(agent_->reload(next).is_ok());
  std::string m;
  ASSERT_TRUE(wait_until(
      [&] {
        m = scrape_metrics(agent_->metrics_port());
        return m.find("ckpt_job=\"gpt\"") == std::string::npos;
      },
      5000))
      << m;
  EXPECT_TRUE(job_status("gpt").is_null()) << agent_->status_json().dump();
  EXPECT_FALSE(job_status("llama").is_null());
  EXPECT_EQ(metric_value(m, "ferry_agent_rpo_warning{ckpt_job=\"llama\"}"), 0) << m;
}

TEST_F(AgentNetTest, FanOutCommitsAtEveryTargetAndADownOneCatchesUp) {
  ReceiverSite b;
  b.receiver().stop();
  replication::ReceiverOptions ro = second_receiver_options();
  auto second = std::make_unique<replication::Receiver>(b.store(), ro);
  ASSERT_TRUE(second->start().is_ok());
  const std::string b_address = second->address().to_string();
  c_.targets = {a_.receiver().address().to_string(), b_address};
  c_.fan_out = true;
  start();
  auto remote_b = remote(a_);
  remote_b.address = b_address;
  auto at_b = [&](const std::string& name) {
    auto n = remote_names(remote_b);
    return std::find(n.begin(), n.end(), name) != n.end();
  };
  write_checkpoint(dir_ / "ckpt/llama/step-1", 11, 40'000);
  ASSERT_TRUE(
      wait_until([&] { return committed_at(a_, "llama-step-1") && at_b("llama-step-1"); }, kCommitMs));
  // The second site goes down: the first still gets the next checkpoint,
  // the second's part waits.
  second->stop();
  ASSERT_TRUE(wait_until([&] { return agent_->status_json()["targets"][1]["up"] == false; }, 10'000));
  write_checkpoint(dir_ / "ckpt/llama/step-2", 12, 40'000);
  ASSERT_TRUE(wait_until([&] { return committed_at(a_, "llama-step-2"); }, kCommitMs));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_EQ(agent_->status_json()["queue"].size(), 1u) << "the down site's part is still owed";
  ro.listen = b_address;
  second = std::make_unique<replication::Receiver>(b.store(), ro);
  ASSERT_TRUE(second->start().is_ok());
  ASSERT_TRUE(wait_until([&] { return at_b("llama-step-2"); }, kCommitMs));
  ASSERT_TRUE(wait_until([&] { return agent_->status_json()["queue"].empty(); }, 10'000));
  EXPECT_TRUE(restores_identical(remote_b, "llama-step-2", dir_ / "ckpt/llama/step-2"));
  EXPECT_TRUE(restores_identical(remote(a_), "llama-step-2", dir_ / "ckpt/llama/step-2"));
  EXPECT_EQ(job_status()["committed"], 2);
  second->stop();
}

// The binary under signals: SIGHUP applies a new flag file (a new root) and
// refuses a bad one naming the flag; SIGTERM during a push cancels it after
// the grace period, exits 0, and the next start finishes it.
TEST_F(AgentNetTest, SighupReloadsAndSigtermResumesNextStart) {
  fs::create_directories(dir_ / "ckpt/gpt");
  const fs::path flagfile = dir_ / "agent.flags";
  auto write_flags = [&](const std::string& watch, const std::string& extra) {
    std::string f =
        "--watch=" + watch + "\n--targets=" + a_.receiver().address().to_string() + "\n--ca=" + c_.ca +
        "\n--cert=" + c_.cert + "\n--key=" + c_.key + "\n--state_dir=" + (dir_ / "state3").string() +
        "\n--control_socket=" + (dir_ / "ctl3.sock").string() +
        "\n--metrics_listen=\n--nice=0\n--io_class=best-effort\n--engine=cpu\n--rescan_interval_s=0.5\n" +
        extra;
    std::vector<std::byte> bytes(f.size());
    std::memcpy(bytes.data(), f.data(), f.size());
    ferry::testing::write_file(flagfile, bytes);
  };
  auto log_text = [&] {
    auto bytes = ferry::testing::read_file(dir_ / "agent3.log");
    return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  };
  const std::string llama = (dir_ / "ckpt/llama").string(), gpt = (dir_ / "ckpt/gpt").string();
  write_flags(llama + "=llama", "");
  auto child = ferry::testing::ChildProcess::spawn({FERRY_AGENT_BIN, "--flagfile=" + flagfile.string()},
                                                   dir_ / "agent3.log");
  ASSERT_TRUE(child.is_ok());
  ASSERT_TRUE(child->wait_for_line("ferry-agent: ready", 20'000).is_ok()) << log_text();

  write_flags(llama + "=llama," + gpt + "=gpt", "");
  ::kill(child->pid(), SIGHUP);
  ASSERT_TRUE(wait_until([&] { return log_text().find("config_reloaded") != std::string::npos; }, 10'000));
  write_checkpoint(dir_ / "ckpt/gpt/step-5", 5, 40'000);
  ASSERT_TRUE(wait_until([&] { return committed_at(a_, "gpt-step-5"); }, kCommitMs)) << log_text();

  write_flags(llama + "=llama," + gpt + "=gpt", "--max_jobs=-1\n");
  ::kill(child->pid(), SIGHUP);
  ASSERT_TRUE(wait_until([&] { return log_text().find("reload_refused") != std::string::npos; }, 10'000));
  EXPECT_NE(log_text().find("--max_jobs=-1"), std::string::npos) << log_text();
  // A typo in the reloaded file is refused too, naming the file and line
  // (the 13th: the base file has 12 lines).
  write_flags(llama + "=llama," + gpt + "=gpt", "--rpo_taget_s=5\n");
  ::kill(child->pid(), SIGHUP);
  ASSERT_TRUE(wait_until(
      [&] {
        return log_text().find(flagfile.string() + ":13: unknown setting --rpo_taget_s") != std::string::npos;
      },
      10'000))
      << log_text();

  // A slow push (bandwidth cap from the flag file), cut by SIGTERM.
  write_flags(llama + "=llama," + gpt + "=gpt", "--bandwidth_mbps=0.3\n--shutdown_grace_s=0.5\n");
  ::kill(child->pid(), SIGHUP);
  ASSERT_TRUE(wait_until(
      [&] {
        std::string t = log_text();
        std::size_t n = 0;
        for (std::size_t at = 0; (at = t.find("config_reloaded", at)) != std::string::npos; ++at) ++n;
        return n == 2;
      },
      10'000));
  write_checkpoint(dir_ / "ckpt/llama/step-9", 9, 600'000);
  ASSERT_TRUE(
      wait_until([&] { return log_text().find("snapshot=llama-step-9") != std::string::npos; }, 10'000));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const auto t0 = std::chrono::steady_clock::now();
  const int st = child->kill_and_wait(SIGTERM);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << log_text();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10));
  EXPECT_NE(log_text().find("cancelled_in_flight=1"), std::string::npos) << log_text();
  EXPECT_FALSE(committed_at(a_, "llama-step-9"));

  write_flags(llama + "=llama," + gpt + "=gpt", "");
  auto again = ferry::testing::ChildProcess::spawn({FERRY_AGENT_BIN, "--flagfile=" + flagfile.string()},
                                                   dir_ / "agent3.log");
  ASSERT_TRUE(again.is_ok());
  ASSERT_TRUE(again->wait_for_line("ferry-agent: ready", 20'000).is_ok()) << log_text();
  ASSERT_TRUE(wait_until([&] { return committed_at(a_, "llama-step-9"); }, kCommitMs)) << log_text();
  EXPECT_TRUE(restores_identical(remote(a_), "llama-step-9", dir_ / "ckpt/llama/step-9"));
  EXPECT_EQ(again->kill_and_wait(SIGTERM), 0);
}

// The real binary, as an operator meets it: each bad setting is refused at
// start (exit code 2 for a bad setting, 1 for an unreachable site) with the
// flag named on stderr.
TEST_F(AgentNetTest, BadConfigurationsAreRefusedNamingTheSetting) {
  auto run = [&](std::vector<std::string> extra, int& code) {
    std::vector<std::string> argv = {FERRY_AGENT_BIN,
                                     "--watch=" + (dir_ / "ckpt/llama").string(),
                                     "--targets=" + a_.receiver().address().to_string(),
                                     "--ca=" + c_.ca,
                                     "--cert=" + c_.cert,
                                     "--key=" + c_.key,
                                     "--state_dir=" + (dir_ / "state2").string(),
                                     "--control_socket=" + (dir_ / "ctl2.sock").string(),
                                     "--metrics_listen=",
                                     "--nice=0"};
    for (auto& e : extra) argv.push_back(e);
    fs::remove(dir_ / "agent.err");
    auto child = ferry::testing::ChildProcess::spawn(argv, dir_ / "agent.err");
    EXPECT_TRUE(child.is_ok());
    int st = child->wait();
    code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    auto bytes = ferry::testing::read_file(dir_ / "agent.err");
    return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  };
  struct Case {
    std::vector<std::string> flags;
    std::string needle;
    int code;
  };
  const std::vector<Case> cases = {
      {{"--watch=" + (dir_ / "missing").string()},
       "--watch=" + (dir_ / "missing").string() + ": no such directory",
       2},
      {{"--targets=127.0.0.1"}, "--targets=127.0.0.1", 2},
      {{"--cert=" + (dir_ / "none.pem").string()},
       "--cert=" + (dir_ / "none.pem").string() + ": no such file",
       2},
      {{"--bandwidth_mbps=-3"}, "--bandwidth_mbps=", 2},
      {{"--max_jobs=-1"}, "--max_jobs=-1", 2},
      {{"--rpo_taget_s=60"}, "unknown setting --rpo_taget_s; did you mean --rpo_target_s?", 2},
      {{"--targets=127.0.0.1:1"}, "--targets: no target is reachable: 127.0.0.1:1", 1},
  };
  for (const auto& c : cases) {
    int code = 0;
    std::string err = run(c.flags, code);
    EXPECT_EQ(code, c.code) << err;
    EXPECT_NE(err.find(c.needle), std::string::npos) << "want '" << c.needle << "' in: " << err;
  }
}

}  // namespace
}  // namespace ferry::agent
