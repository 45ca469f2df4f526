// control_net_test.cc: the agent's control socket with real unix sockets:
// status and submit round trips through a handler, the 64 KiB request bound,
// malformed JSON answered while others are still served, owner-only access
// (mode 0600, and a client running as another uid refused even when the
// file mode would let it in), stale socket files replaced, a live agent's
// socket never taken over, and a prompt shutdown with idle clients.
#include "agent/control.h"

#include <grp.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tests/testing/testing.h"

namespace ferry::agent {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

json realistic_status() {
  return json::parse(R"json({"ok":true,"paused":false,"engine":"cpu (2 threads)","uptime_s":12.5,
    "jobs":[{"job":"llama","paused":false,"newest_committed_step":300,
             "newest_committed_snapshot":"llama-300","rpo_seconds":42.0,
             "rpo_target_seconds":3600,"forecast_rpo_seconds":50.0,"warning":false,
             "warning_text":"","backlog_bytes":0,"queued":0,"in_flight":0,"committed":3,
             "skipped":0,"failed":0,"last_error":""}],
    "targets":[{"address":"dr1:7000","up":true,"consecutive_failures":0,"last_error":""}],
    "logical_bytes":123,"wire_bytes":100,"throughput_bytes_per_second":1.5e8,
    "queue":[{"id":7,"job":"llama","dir":"/ckpt/llama/step-300","state":"queued"}]})json");
}

// A handler like the agent's: status, submit (records what it got), pause.
struct FakeAgent {
  std::mutex mu;
  json last_submit;
  std::atomic<int> calls{0};

  ControlHandler handler() {
    return [this](const std::string& command, const json& args) -> json {
      ++calls;
      if (command == "status") return realistic_status();
      if (command == "submit") {
        std::lock_guard lock(mu);
        last_submit = args;
        return json{{"ok", true}, {"id", 7}};
      }
      if (command == "pause") return json{{"job", args.value("job", "")}};  // "ok" added
      if (command == "throw") return json::object().at("missing");
      return json{{"ok", false}, {"error", "unknown command '" + command + "'"}};
    };
  }
};

// Connects a raw client to the socket (for what control_call never sends).
int raw_connect(const fs::path& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Reads until newline or EOF.
std::string raw_read_line(int fd) {
  std::string s;
  char c;
  while (::recv(fd, &c, 1, 0) == 1 && c != '\n') s += c;
  return s;
}

TEST(ControlTest, StatusAndSubmitRoundTrip) {
  testing::TempDir dir;
  FakeAgent agent;
  auto server = ControlServer::start(dir / "control.sock", agent.handler());
  ASSERT_TRUE(server.is_ok()) << server.status().to_string();

  auto status = control_call(dir / "control.sock", "status", json::object());
  ASSERT_TRUE(status.is_ok()) << status.status().to_string();
  EXPECT_EQ(*status, realistic_status());

  auto submit =
      control_call(dir / "control.sock", "submit", json{{"dir", "/ckpt/llama/step-400"}, {"job", "llama"}});
  ASSERT_TRUE(submit.is_ok()) << submit.status().to_string();
  EXPECT_EQ((*submit)["ok"], true);
  EXPECT_EQ((*submit)["id"], 7);
  {
    std::lock_guard lock(agent.mu);
    EXPECT_EQ(agent.last_submit["dir"], "/ckpt/llama/step-400");
    EXPECT_EQ(agent.last_submit["job"], "llama");
  }

  auto pause = control_call(dir / "control.sock", "pause", json{{"job", "llama"}});
  ASSERT_TRUE(pause.is_ok());
  EXPECT_EQ(*pause, (json{{"ok", true}, {"job", "llama"}}));

  auto unknown = control_call(dir / "control.sock", "frobnicate", json::object());
  ASSERT_TRUE(unknown.is_ok());
  EXPECT_EQ((*unknown)["ok"], false);
  EXPECT_EQ((*unknown)["error"], "unknown command 'frobnicate'");

  auto thrown = control_call(dir / "control.sock", "throw", json::object());
  ASSERT_TRUE(thrown.is_ok());
  EXPECT_EQ((*thrown)["ok"], false);
  EXPECT_TRUE((*thrown)["error"].get<std::string>().starts_with("internal: "));
}

TEST(ControlTest, SocketFileIsOwnerOnly) {
  testing::TempDir dir;
  FakeAgent agent;
  auto server = ControlServer::start(dir / "control.sock", agent.handler());
  ASSERT_TRUE(server.is_ok()) << server.status().to_string();
  struct stat st {};
  ASSERT_EQ(::lstat((dir / "control.sock").c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(st.st_uid, ::geteuid());
  // Removed on shutdown.
  server->reset();
  EXPECT_FALSE(fs::exists(fs::symlink_status(dir / "control.sock")));
}

TEST(ControlTest, OversizedRequestIsRefused) {
  testing::TempDir dir;
  FakeAgent agent;
  auto server = ControlServer::start(dir / "control.sock", agent.handler());
  ASSERT_TRUE(server.is_ok());

  // Through the client: a submit whose args are over the bound.
  auto big =
      control_call(dir / "control.sock", "submit", json{{"dir", std::string(kMaxControlRequestBytes, 'x')}});
  ASSERT_TRUE(big.is_ok()) << big.status().to_string();
  EXPECT_EQ((*big)["ok"], false);
  EXPECT_NE((*big)["error"].get<std::string>().find("longer than 65536 bytes"), std::string::npos);

  // A raw client that never sends a newline is cut off at the bound too.
  int fd = raw_connect(dir / "control.sock");
  ASSERT_GE(fd, 0);
  std::string junk(kMaxControlRequestBytes + 4096, '{');
  ::send(fd, junk.data(), junk.size(), MSG_NOSIGNAL);
  json answer = json::parse(raw_read_line(fd), nullptr, false);
  EXPECT_EQ(answer["ok"], false);
  char c;
  EXPECT_LE(::recv(fd, &c, 1, 0), 0);  // closed
  ::close(fd);
  EXPECT_EQ(agent.calls.load(), 0);

  // The server is still serving.
  EXPECT_TRUE(control_call(dir / "control.sock", "status", json::object()).is_ok());
}

TEST(ControlTest, MalformedJsonIsAnsweredAndOthersAreServed) {
  testing::TempDir dir;
  FakeAgent agent;
  auto server = ControlServer::start(dir / "control.sock", agent.handler());
  ASSERT_TRUE(server.is_ok());

  int fd = raw_connect(dir / "control.sock");
  ASSERT_GE(fd, 0);
  // While this client is mid-conversation another is served.
  std::string bad = "{\"command\": \"status\",,}\n";
  ASSERT_EQ(::send(fd, bad.data(), bad.size(), MSG_NOSIGNAL), static_cast<ssize_t>(bad.size()));
  json answer = json::parse(raw_read_line(fd), nullptr, false);
  EXPECT_EQ(answer["ok"], false);
  EXPECT_NE(answer["error"].get<std::string>().find("malformed request"), std::string::npos);
  EXPECT_TRUE(control_call(dir / "control.sock", "status", json::object()).is_ok());

  // Wrong shapes get their own answers; the connection keeps going.
  std::string shapes =
      "[1,2]\n{\"command\":5}\n{\"command\":\"status\",\"args\":[]}\n"
      "{\"command\":\"status\"}\n";
  ASSERT_EQ(::send(fd, shapes.data(), shapes.size(), MSG_NOSIGNAL), static_cast<ssize_t>(shapes.size()));
  for (int i = 0; i < 3; ++i) {
    json a = json::parse(raw_read_line(fd), nullptr, false);
    EXPECT_EQ(a["ok"], false) << a.dump();
  }
  EXPECT_EQ(json::parse(raw_read_line(fd)), realistic_status());
  ::close(fd);
}

TEST(ControlTest, MissingSocketIsUnavailable) {
  testing::TempDir dir;
  auto r = control_call(dir / "nothing.sock", "status", json::object());
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), Code::kUnavailable);
  EXPECT_NE(r.status().message().find("no agent listening on " + (dir / "nothing.sock").string()),
            std::string::npos)
      << r.status().message();
}

TEST(ControlTest, SlowHandlerTimesOutTheClient) {
  testing::TempDir dir;
  auto server = ControlServer::start(dir / "control.sock", [](const std::string&, const json&) {
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    return json::object();
  });
  ASSERT_TRUE(server.is_ok());
  auto r = control_call(dir / "control.sock", "status", json::object(), 100);
  EXPECT_EQ(r.status().code(), Code::kTimeout) << r.status().to_string();
}

TEST(ControlTest, AHungAgentTimesOutTheClient) {
  // A listener that never accepts, its backlog full: even connect must not
  // block past the timeout.
  testing::TempDir dir;
  const fs::path path = dir / "hung.sock";
  int lfd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  ASSERT_EQ(::bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::listen(lfd, 0), 0);
  std::vector<int> queued;
  for (int i = 0; i < 4; ++i) {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      ::close(fd);
      break;
    }
    queued.push_back(fd);
  }
  auto t0 = std::chrono::steady_clock::now();
  auto r = control_call(path, "status", json::object(), 200);
  EXPECT_EQ(r.status().code(), Code::kTimeout) << r.status().to_string();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2));
  for (int fd : queued) ::close(fd);
  ::close(lfd);
}

TEST(ControlTest, StaleSocketIsReplacedLiveOneIsNot) {
  testing::TempDir dir;
  const fs::path path = dir / "control.sock";
  {
    // A socket file left behind by an agent that died: bound, never unlinked.
    int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    ::close(fd);
  }
  FakeAgent agent;
  auto server = ControlServer::start(path, agent.handler());
  ASSERT_TRUE(server.is_ok()) << server.status().to_string();
  EXPECT_TRUE(control_call(path, "status", json::object()).is_ok());

  auto second = ControlServer::start(path, agent.handler());
  ASSERT_FALSE(second.is_ok());
  EXPECT_NE(second.status().message().find("another agent is listening"), std::string::npos)
      << second.status().message();
  EXPECT_TRUE(control_call(path, "status", json::object()).is_ok());  // first still serves

  // Never replaces something that is not a socket.
  testing::write_file(dir / "plain", {});
  EXPECT_EQ(ControlServer::start(dir / "plain", agent.handler()).status().code(), Code::kInvalidArgument);
}

TEST(ControlTest, ShutdownIsPromptWithIdleClients) {
  testing::TempDir dir;
  FakeAgent agent;
  auto server = ControlServer::start(dir / "control.sock", agent.handler());
  ASSERT_TRUE(server.is_ok());
  std::vector<int> fds;
  for (int i = 0; i < kMaxControlConnections + 2; ++i) {
    fds.push_back(raw_connect(dir / "control.sock"));
    ASSERT_GE(fds.back(), 0);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  auto t0 = std::chrono::steady_clock::now();
  server->reset();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2));
  for (int fd : fds) ::close(fd);
}

TEST(ControlTest, ManyConcurrentClientsAreAllServed) {
  testing::TempDir dir;
  FakeAgent agent;
  auto server = ControlServer::start(dir / "control.sock", agent.handler());
  ASSERT_TRUE(server.is_ok());
  constexpr int kClients = 4 * kMaxControlConnections;
  constexpr int kCallsEach = 5;
  std::atomic<int> good{0};
  std::vector<std::thread> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.emplace_back([&, i] {
      for (int k = 0; k < kCallsEach; ++k) {
        auto r = control_call(dir / "control.sock", "submit",
                              json{{"dir", "/ckpt/" + std::to_string(i)}, {"job", ""}});
        if (r.is_ok() && (*r)["id"] == 7) ++good;
      }
    });
  }
  for (auto& t : clients) t.join();
  EXPECT_EQ(good.load(), kClients * kCallsEach);
  EXPECT_EQ(agent.calls.load(), kClients * kCallsEach);
}

// Runs control_call as uid/gid 65534 (nobody) in a child; returns what the
// child saw as one line ("status:<code> <message>" or "json:<response>").
std::string call_as_nobody(const fs::path& path) {
  int pipefd[2];
  if (::pipe(pipefd) != 0) return "pipe failed";
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(pipefd[0]);
    std::string out;
    if (::setgroups(0, nullptr) != 0 || ::setgid(65534) != 0 || ::setuid(65534) != 0) {
      out = "setuid failed";
    } else {
      auto r = control_call(path, "status", json::object(), 5'000);
      out = r.is_ok() ? "json:" + r->dump()
                      : "status:" + std::string(code_name(r.status().code())) + " " + r.status().message();
    }
    [[maybe_unused]] ssize_t n = ::write(pipefd[1], out.data(), out.size());
    ::_exit(0);
  }
  ::close(pipefd[1]);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(pipefd[0], buf, sizeof(buf))) > 0) out.append(buf, static_cast<std::size_t>(n));
  ::close(pipefd[0]);
  int wstatus = 0;
  ::waitpid(pid, &wstatus, 0);
  return out;
}

TEST(ControlTest, OtherUsersAreRefused) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to run a client as another uid (nobody)";
  testing::TempDir dir;
  // The directory lets anyone reach the socket, so only the socket's own
  // protections are tested.
  fs::permissions(dir.path(), fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec);
  const fs::path path = dir / "control.sock";
  FakeAgent agent;
  auto server = ControlServer::start(path, agent.handler());
  ASSERT_TRUE(server.is_ok());

  // Mode 0600: the kernel refuses the connect.
  std::string seen = call_as_nobody(path);
  EXPECT_TRUE(seen.starts_with("status:Permission denied")) << seen;

  // Even with the file opened up, the peer credential check refuses.
  fs::permissions(path, fs::perms::all);
  seen = call_as_nobody(path);
  ASSERT_TRUE(seen.starts_with("json:")) << seen;
  json answer = json::parse(seen.substr(5));
  EXPECT_EQ(answer["ok"], false);
  EXPECT_EQ(answer["error"], "permission denied: uid 65534 is not the agent's owner");
  EXPECT_EQ(agent.calls.load(), 0);

  // Root (the owner here) is still served.
  EXPECT_TRUE(control_call(path, "status", json::object()).is_ok());
}

}  // namespace
}  // namespace ferry::agent
