// ferry_cli_test.cc: runs the built `ferry` binary (FERRY_BIN) as a user
// would: pack, verify, unpack and byte-compare a directory of corpus files;
// inspect lists the tensors of a safetensors file (table and JSON); a damaged
// archive fails verify with exit code 4 (corruption) naming the file; bad usage gives exit
// code 2 and one clear line; status, submit, pause and resume talk to a
// control socket served by the test (agent/control.h) as to a running agent.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "agent/config.h"
#include "agent/control.h"
#include "base/build_info.h"
#include "tests/replication/ferry_child.h"
#include "tests/testing/testing.h"
#include "tests/tools/ferry_cli.h"
#include "tools/exit_codes.h"

namespace ferry {
namespace {

namespace fs = std::filesystem;

using cli_test::CliRun;
using cli_test::ferry;
using cli_test::quote;

// A directory of corpus files, one of them nested; empty when no corpus.
fs::path corpus_checkpoint(const testing::TempDir& dir) {
  auto files = testing::corpus_files();
  if (files.empty()) return {};
  fs::path in = dir / "ckpt";
  fs::create_directories(in / "shards");
  for (const auto& f : files) {
    bool shard = f.path.extension() == ".safetensors";
    fs::copy_file(f.path, (shard ? in / "shards" : in) / f.name);
  }
  testing::write_file(in / "empty.marker", {});
  return in;
}

TEST(FerryCliTest, PackVerifyUnpackRestoresEveryByte) {
  testing::TempDir dir;
  fs::path in = corpus_checkpoint(dir);
  if (in.empty()) GTEST_SKIP() << "corpus not laid (set FERRY_CORPUS_DIR; see scripts/test.sh)";
  const std::string archive = (dir / "c.ferry").string();

  CliRun pack = ferry("pack " + quote(in) + " -o " + quote(archive) + " --threads=2 --job=test --step=5");
  ASSERT_EQ(pack.code, 0) << pack.out;
  EXPECT_NE(pack.out.find("packed"), std::string::npos) << pack.out;
  EXPECT_NE(pack.out.find("ratio"), std::string::npos) << pack.out;

  CliRun verify = ferry("verify " + quote(archive));
  ASSERT_EQ(verify.code, 0) << verify.out;
  EXPECT_NE(verify.out.find("OK"), std::string::npos) << verify.out;

  CliRun unpack = ferry("unpack " + quote(archive) + " -o " + quote(dir / "out"));
  ASSERT_EQ(unpack.code, 0) << unpack.out;
  std::size_t compared = 0;
  for (const auto& e : fs::recursive_directory_iterator(in)) {
    if (!e.is_regular_file()) continue;
    fs::path rel = fs::relative(e.path(), in);
    ASSERT_TRUE(fs::exists(dir / "out" / rel)) << rel;
    std::string cmd = "cmp -s " + quote(e.path()) + " " + quote(dir / "out" / rel);
    EXPECT_EQ(std::system(cmd.c_str()), 0) << rel;
    ++compared;
  }
  EXPECT_GT(compared, 2u);

  // A flipped byte in the middle of the frames: verify names the file.
  auto bytes = testing::read_file(archive);
  bytes[bytes.size() / 3] ^= std::byte{0x04};
  testing::write_file(dir / "bad.ferry", bytes);
  CliRun bad = ferry("verify " + quote(dir / "bad.ferry"));
  EXPECT_EQ(bad.code, cli::kExitCorruption) << bad.out;
  EXPECT_NE(bad.out.find("Corruption"), std::string::npos) << bad.out;
  EXPECT_NE(bad.out.find("offset"), std::string::npos) << bad.out;
  EXPECT_NE(bad.out.find("chunk"), std::string::npos) << bad.out;

  // Truncated: no valid trailer.
  bytes.resize(bytes.size() - 10);
  testing::write_file(dir / "short.ferry", bytes);
  CliRun trunc = ferry("verify " + quote(dir / "short.ferry"));
  EXPECT_EQ(trunc.code, cli::kExitCorruption) << trunc.out;
  EXPECT_NE(trunc.out.find("short.ferry"), std::string::npos) << trunc.out;
  EXPECT_NE(trunc.out.find("truncated"), std::string::npos) << trunc.out;
}

TEST(FerryCliTest, InspectListsSafetensorsTensors) {
  auto files = testing::corpus_files();
  const testing::CorpusFile* st = nullptr;
  for (const auto& f : files) {
    if (f.path.extension() == ".safetensors") st = &f;
  }
  if (!st) GTEST_SKIP() << "no safetensors file in the corpus (set FERRY_CORPUS_DIR)";
  testing::TempDir dir;
  const std::string archive = (dir / "s.ferry").string();
  CliRun pack = ferry("pack " + quote(st->path) + " -o " + quote(archive));
  ASSERT_EQ(pack.code, 0) << pack.out;

  CliRun table = ferry("inspect " + quote(archive));
  ASSERT_EQ(table.code, 0) << table.out;
  EXPECT_NE(table.out.find(st->name), std::string::npos);
  EXPECT_NE(table.out.find("total:"), std::string::npos);

  CliRun json = ferry("inspect --json " + quote(archive));
  ASSERT_EQ(json.code, 0) << json.out;
  auto j = nlohmann::json::parse(json.out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << json.out.substr(0, 500);
  ASSERT_EQ(j["files"].size(), 1u);
  const auto& tensors = j["files"][0]["tensors"];
  ASSERT_GT(tensors.size(), 0u);
  std::uint64_t tensor_bytes = 0;
  for (const auto& t : tensors) {
    tensor_bytes += t["bytes"].get<std::uint64_t>();
    // Every tensor's name appears in the table too.
    EXPECT_NE(table.out.find(t["name"].get<std::string>()), std::string::npos) << t["name"];
  }
  EXPECT_LE(tensor_bytes, j["files"][0]["bytes"].get<std::uint64_t>());
  EXPECT_EQ(j["files"][0]["layout"], "safetensors");
}

TEST(FerryCliTest, UsageErrorsExitWithTwo) {
  testing::TempDir dir;
  testing::write_file(dir / "f", {std::byte{1}, std::byte{2}});
  for (const std::string& args :
       {std::string(""), std::string("frobnicate"), std::string("pack"), "pack " + quote(dir / "f"),
        "pack " + quote(dir / "f") + " -o " + quote(dir / "x.ferry") + " --chunk_size=5000",
        "pack " + quote(dir / "f") + " -o " + quote(dir / "x.ferry") + " --no_such_flag",
        "pack " + quote(dir / "f") + " -o " + quote(dir / "x.ferry") + " --threads=many",
        "pack " + quote(dir / "missing") + " -o " + quote(dir / "x.ferry"), std::string("verify"),
        std::string("unpack a.ferry")}) {
    CliRun r = ferry(args);
    EXPECT_EQ(r.code, 2) << "ferry " << args << "\n" << r.out;
    EXPECT_NE(r.out.find("ferry"), std::string::npos) << r.out;
  }
  EXPECT_FALSE(fs::exists(dir / "x.ferry"));
  CliRun help = ferry("help");
  EXPECT_EQ(help.code, 0);
  EXPECT_NE(help.out.find("pack"), std::string::npos);
  EXPECT_NE(help.out.find("inspect"), std::string::npos);
}

TEST(FerryCliTest, VersionNamesCommitBuildOptionsAndEngine) {
  CliRun r = ferry("--version");
  ASSERT_EQ(r.code, 0) << r.out;
  const std::string want = "ferry " + std::string(build_info().version) + "\n" + build_info_lines() +
                           "engine " + agent::describe_engine("auto") + "\n";
  EXPECT_EQ(r.out, want);
  EXPECT_NE(r.out.find(build_info().cuda ? "CUDA on" : "CUDA off"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\ncommit "), std::string::npos) << r.out;
}

TEST(FerryCliTest, SmallDirectoryWithoutCorpus) {
  testing::TempDir dir;
  fs::create_directories(dir / "in/sub");
  testing::write_file(dir / "in/sub/a.bin", testing::random_bytes(5u << 20, testing::test_seed()));
  testing::write_file(dir / "in/b", {});
  fs::create_symlink("sub/a.bin", dir / "in/link");
  CliRun pack =
      ferry("pack " + quote(dir / "in") + " -o " + quote(dir / "a.ferry") + " --chunk_size=1048576");
  ASSERT_EQ(pack.code, 0) << pack.out;
  EXPECT_NE(pack.out.find("skipping link"), std::string::npos) << pack.out;
  EXPECT_NE(pack.out.find("packed 2 files"), std::string::npos) << pack.out;
  CliRun unpack = ferry("unpack " + quote(dir / "a.ferry") + " -o " + quote(dir / "out"));
  ASSERT_EQ(unpack.code, 0) << unpack.out;
  EXPECT_EQ(testing::read_file(dir / "in/sub/a.bin"), testing::read_file(dir / "out/sub/a.bin"));
  EXPECT_TRUE(fs::exists(dir / "out/b"));
  EXPECT_FALSE(fs::exists(dir / "out/link"));
}

TEST(FerryCliTest, CertsRevokeAHostAndServeRefusesItAfterSighup) {
  testing::TempDir dir;
  const fs::path pki = dir / "pki";
  CliRun made = ferry("certs --dir=" + quote(pki) + " --hosts=alpha,beta");
  ASSERT_EQ(made.code, 0) << made.out;
  ASSERT_TRUE(fs::exists(pki / "crl.pem"));  // revokes nothing yet
  auto serve = testing::ChildProcess::spawn(
      {FERRY_BIN, "serve", "--store=" + (dir / "store").string(), "--ca=" + (pki / "ca.pem").string(),
       "--cert=" + (pki / "receiver.pem").string(), "--key=" + (pki / "receiver.key").string(),
       "--crl=" + (pki / "crl.pem").string(), "--crl_reload_s=0", "--listen=127.0.0.1:0"},
      dir / "serve.log");
  ASSERT_TRUE(serve.is_ok()) << serve.status().to_string();
  auto line = serve->wait_for_line("listening on", 20'000);
  ASSERT_TRUE(line.is_ok()) << line.status().to_string();
  const std::string from = "127.0.0.1:" + std::to_string(testing::port_of_listening_line(*line));
  auto list = [&](const std::string& host) {
    return ferry("list --from=" + from + " --ca=" + quote(pki / "ca.pem") + " --cert=" +
                 quote(pki / ("host-" + host + ".pem")) + " --key=" + quote(pki / ("host-" + host + ".key")));
  };
  ASSERT_EQ(list("alpha").code, 0) << list("alpha").out;

  CliRun revoked = ferry("certs --dir=" + quote(pki) + " --revoke=alpha");
  ASSERT_EQ(revoked.code, 0) << revoked.out;
  EXPECT_NE(revoked.out.find("CN=alpha serial=0x"), std::string::npos) << revoked.out;
  EXPECT_EQ(list("alpha").code, 0) << "--crl_reload_s=0: the old CRL holds until SIGHUP";
  ASSERT_EQ(::kill(serve->pid(), SIGHUP), 0);
  CliRun refused;
  for (int i = 0; i < 100 && (refused = list("alpha")).code == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_NE(refused.code, 0);
  EXPECT_NE(refused.out.find("revoked"), std::string::npos) << refused.out;
  EXPECT_EQ(list("beta").code, 0) << list("beta").out;
  const auto bytes = testing::read_file(dir / "serve.log");
  const std::string log(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  EXPECT_NE(log.find("certificate revoked"), std::string::npos) << log;
  EXPECT_NE(log.find("CN=alpha serial=0x"), std::string::npos) << log;
}

// ---- status, submit, pause, resume against a control socket served here ----

// A realistic agent status: one healthy job, one behind with a warning and an
// error, one target up and one down, one checkpoint queued.
nlohmann::json agent_status() {
  return nlohmann::json::parse(R"json({"ok":true,"paused":false,"engine":"cpu (2 threads)",
    "engine_reason":"no usable GPU: no CUDA device","uptime_s":3725,
    "jobs":[{"job":"llama","paused":false,"newest_committed_step":300,"newest_committed_snapshot":"llama-300",
             "rpo_seconds":42.0,"rpo_target_seconds":3600,"forecast_rpo_seconds":50.0,"warning":false,
             "warning_text":"","backlog_bytes":0,"queued":0,"in_flight":0,"committed":3,"skipped":0,
             "failed":0,"last_error":""},
            {"job":"mistral","paused":true,"newest_committed_step":1200,"newest_committed_snapshot":"mistral-1200",
             "rpo_seconds":5400.0,"rpo_target_seconds":3600,"forecast_rpo_seconds":7300.0,"warning":true,
             "warning_text":"RPO 1h 30m is over the 1h 00m target","backlog_bytes":2500000000,"queued":2,
             "in_flight":1,"committed":12,"skipped":1,"failed":1,"last_error":"dr2:7000: connection refused"},
            {"job":"gpt","paused":false,"newest_committed_step":0,"newest_committed_snapshot":"",
             "rpo_seconds":610.0,"rpo_target_seconds":3600,"forecast_rpo_seconds":-1,"warning":false,
             "warning_text":"","backlog_bytes":0,"queued":1,"in_flight":0,"committed":0,"skipped":0,
             "failed":0,"last_error":"",
             "incomplete":{"count":2,"oldest_dir":"/ckpt/gpt/step-100","incomplete_for_seconds":605,
                           "waiting_for":"marker /ckpt/gpt/step-100/COMMITTED does not exist yet"}},
            {"job":"vit","paused":false,"newest_committed_step":0,"newest_committed_snapshot":"",
             "rpo_seconds":null,"rpo_target_seconds":3600,"forecast_rpo_seconds":null,"warning":false,
             "warning_text":"","backlog_bytes":0,"queued":0,"in_flight":0,"committed":0,"skipped":0,
             "failed":0,"last_error":"","incomplete":null}],
    "targets":[{"address":"dr1:7000","up":true,"consecutive_failures":0,"last_error":""},
               {"address":"dr2:7000","up":false,"consecutive_failures":3,"last_error":"connection refused"}],
    "logical_bytes":123000000000,"wire_bytes":80000000000,"throughput_bytes_per_second":1.5e8,
    "queue":[{"id":7,"job":"mistral","dir":"/ckpt/mistral/step-1300","state":"queued"}]})json");
}

struct AgentStub {
  std::mutex mu;
  std::vector<std::pair<std::string, nlohmann::json>> calls;
  std::unique_ptr<agent::ControlServer> server;
  fs::path socket;
  nlohmann::json status = agent_status();  // what "status" answers

  explicit AgentStub(const testing::TempDir& dir) : socket(dir / "agent.sock") {
    auto s =
        agent::ControlServer::start(socket, [this](const std::string& command, const nlohmann::json& args) {
          std::lock_guard lock(mu);
          calls.emplace_back(command, args);
          if (command == "status") return status;
          if (command == "submit") {
            if (args.value("job", "") == "nope")
              return nlohmann::json{{"ok", false}, {"error", "no job named nope"}};
            return nlohmann::json{{"ok", true}, {"id", 8}};
          }
          return nlohmann::json{{"ok", true}};
        });
    EXPECT_TRUE(s.is_ok()) << s.status().to_string();
    if (s) server = std::move(*s);
  }
  std::string flag() const { return " --socket=" + quote(socket); }
};

TEST(FerryCliAgentTest, StatusPrintsJobsTargetsAndWarnings) {
  testing::TempDir dir;
  AgentStub agent(dir);
  CliRun r = ferry("status" + agent.flag());
  // It shows warnings (an RPO breach, a target down): exit code 6.
  ASSERT_EQ(r.code, cli::kExitWarning) << r.out;
  for (const char* want :
       {"ferry-agent: up 1h 02m, engine cpu (2 threads) [no usable GPU: no CUDA device], replicating",
        "llama", "42s", "1h 00m", "50s", "mistral", "1h 30m", "2h 01m", "WARNING, paused",
        "WARNING mistral: RPO 1h 30m is over the 1h 00m target", "mistral: 2.5 GB not yet at the DR site",
        "mistral: last error: dr2:7000: connection refused",
        "dr2:7000                         DOWN  3 failed probes in a row: connection refused",
        "/ckpt/mistral/step-1300", "replicated 123.0 GB (80.0 GB on the wire, ratio 1.54), now 150.0 MB/s"}) {
    EXPECT_NE(r.out.find(want), std::string::npos) << "missing '" << want << "' in:\n" << r.out;
  }
  // The healthy job's row says ok and shows its step.
  auto row = r.out.substr(r.out.find("\nllama"));
  row = row.substr(1, row.find('\n', 1));
  EXPECT_NE(row.find(" 300 "), std::string::npos) << row;
  EXPECT_NE(row.find(" ok"), std::string::npos) << row;
  // A job with nothing at the DR site yet, and no throughput to forecast with.
  row = r.out.substr(r.out.find("\ngpt"));
  row = row.substr(1, row.find('\n', 1));
  EXPECT_NE(row.find(" none "), std::string::npos) << row;
  EXPECT_NE(row.find(" stalled "), std::string::npos) << row;
  // Directories that never became complete: not "ok", and said why.
  EXPECT_NE(row.find(" 10m 10s "), std::string::npos) << row;
  EXPECT_NE(row.find(" INCOMPLETE"), std::string::npos) << row;
  EXPECT_NE(
      r.out.find("  gpt: 2 checkpoint directories not complete for 10m 05s, not replicated; oldest "
                 "/ckpt/gpt/step-100 waits for: marker /ckpt/gpt/step-100/COMMITTED does not exist yet"),
      std::string::npos)
      << r.out;
  // Nothing seen yet: the RPO is unknown, not 0.
  row = r.out.substr(r.out.find("\nvit"));
  row = row.substr(1, row.find('\n', 1));
  EXPECT_NE(row.find(" unknown "), std::string::npos) << row;
  EXPECT_NE(row.find(" ok"), std::string::npos) << row;

  CliRun js = ferry("status --json" + agent.flag());
  ASSERT_EQ(js.code, cli::kExitWarning) << js.out;
  EXPECT_EQ(nlohmann::json::parse(js.out), agent_status());
}

TEST(FerryCliAgentTest, SubmitSendsTheAbsoluteDirectory) {
  testing::TempDir dir;
  AgentStub agent(dir);
  fs::create_directories(dir / "ckpt" / "step-400");
  CliRun r = ferry("submit " + quote(dir / "ckpt" / "." / "step-400" / "") + " --job=llama" + agent.flag());
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("(id 8)"), std::string::npos) << r.out;
  {
    std::lock_guard lock(agent.mu);
    ASSERT_EQ(agent.calls.size(), 1u);
    EXPECT_EQ(agent.calls[0].first, "submit");
    EXPECT_EQ(agent.calls[0].second["dir"], (dir / "ckpt" / "step-400").string());
    EXPECT_EQ(agent.calls[0].second["job"], "llama");
  }
  // The agent's refusal is one line and exit code 1.
  r = ferry("submit " + quote(dir / "ckpt" / "step-400") + " --job=nope" + agent.flag());
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find("ferry: the agent refused submit: no job named nope"), std::string::npos) << r.out;
  // Not a directory: a usage error, nothing sent.
  r = ferry("submit " + quote(dir / "missing") + agent.flag());
  EXPECT_EQ(r.code, 2) << r.out;
  std::lock_guard lock(agent.mu);
  EXPECT_EQ(agent.calls.size(), 2u);
}

TEST(FerryCliAgentTest, StatusExitsZeroOnlyWithoutWarnings) {
  testing::TempDir dir;
  AgentStub agent(dir);
  nlohmann::json healthy = agent.status;
  healthy["jobs"] = nlohmann::json::array({agent.status["jobs"][0]});
  for (auto& t : healthy["targets"]) t["up"] = true;
  {
    std::lock_guard lock(agent.mu);
    agent.status = healthy;
  }
  CliRun r = ferry("status" + agent.flag());
  EXPECT_EQ(r.code, 0) << r.out;
  r = ferry("status --json" + agent.flag());
  EXPECT_EQ(r.code, 0) << r.out;
  // A target down is a warning, in JSON too.
  {
    std::lock_guard lock(agent.mu);
    agent.status["targets"][0]["up"] = false;
  }
  EXPECT_EQ(ferry("status" + agent.flag()).code, cli::kExitWarning);
  EXPECT_EQ(ferry("status --json" + agent.flag()).code, cli::kExitWarning);
}

TEST(FerryCliAgentTest, PauseAndResume) {
  testing::TempDir dir;
  AgentStub agent(dir);
  CliRun r = ferry("pause --job=llama" + agent.flag());
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("paused replication of job llama"), std::string::npos) << r.out;
  r = ferry("resume" + agent.flag());
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("resumed replication of every job"), std::string::npos) << r.out;
  EXPECT_EQ(ferry("pause extra" + agent.flag()).code, 2);
  std::lock_guard lock(agent.mu);
  ASSERT_EQ(agent.calls.size(), 2u);
  EXPECT_EQ(agent.calls[0], (std::pair<std::string, nlohmann::json>{"pause", {{"job", "llama"}}}));
  EXPECT_EQ(agent.calls[1], (std::pair<std::string, nlohmann::json>{"resume", {{"job", ""}}}));
}

// No agent listening may pass (it restarts): the retryable exit code.
TEST(FerryCliAgentTest, NoAgentIsAClearRetryableError) {
  testing::TempDir dir;
  const std::string sock = (dir / "none.sock").string();
  for (const char* cmd : {"status", "pause", "resume"}) {
    CliRun r = ferry(std::string(cmd) + " --socket=" + quote(sock));
    EXPECT_EQ(r.code, cli::kExitRetryable) << r.out;
    EXPECT_NE(r.out.find("ferry: no agent listening on " + sock +
                         ": No such file or directory "
                         "(is ferry-agent running? --socket=PATH)"),
              std::string::npos)
        << r.out;
  }
}

}  // namespace
}  // namespace ferry
