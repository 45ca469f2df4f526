// ferry_child.h: runs the built `ferry` binary (or any command) as a child
// process for tests that must kill it (kill -9 of the receiver) or run it
// inside a network namespace. Its stdout comes back through a pipe, read a
// line at a time; its stderr goes to a log file kept for failure messages.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "base/unique_fd.h"

extern char** environ;

namespace ferry::testing {

class ChildProcess {
 public:
  // Starts argv[0] (searched in PATH) with `argv`; stderr is appended to
  // `stderr_log`.
  static Result<ChildProcess> spawn(const std::vector<std::string>& argv,
                                    const std::filesystem::path& stderr_log) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return Status::from_errno(errno, "pipe");
    UniqueFd read_end(fds[0]), write_end(fds[1]);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, write_end.get(), 1);
    posix_spawn_file_actions_addopen(&actions, 2, stderr_log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    pid_t pid = -1;
    int rc = ::posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) return Status::from_errno(rc, "spawn " + argv[0]);
    return ChildProcess(pid, std::move(read_end));
  }

  ChildProcess(ChildProcess&& o) noexcept
      : pid_(std::exchange(o.pid_, -1)), out_(std::move(o.out_)), buffered_(std::move(o.buffered_)) {}
  ChildProcess& operator=(ChildProcess&&) = delete;
  ~ChildProcess() { kill_and_wait(SIGKILL); }

  pid_t pid() const { return pid_; }

  // Reads stdout until a line containing `needle`; returns that line.
  // Unavailable when the child closes stdout first, Timeout after timeout_ms.
  Result<std::string> wait_for_line(std::string_view needle, int timeout_ms) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
      for (std::size_t nl; (nl = buffered_.find('\n')) != std::string::npos;) {
        std::string line = buffered_.substr(0, nl);
        buffered_.erase(0, nl + 1);
        if (line.find(needle) != std::string::npos) return line;
      }
      auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0)
        return Status::timeout("no line with '" + std::string(needle) + "' from the child");
      pollfd p{out_.get(), POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      char buf[4096];
      ssize_t n = ::read(out_.get(), buf, sizeof(buf));
      if (n <= 0) return Status::unavailable("the child closed stdout before '" + std::string(needle) + "'");
      buffered_.append(buf, static_cast<std::size_t>(n));
    }
  }

  // Sends `sig` and reaps the child; returns its wait status (-1 when none).
  int kill_and_wait(int sig) {
    if (pid_ <= 0) return -1;
    ::kill(pid_, sig);
    return wait();
  }
  int wait() {
    if (pid_ <= 0) return -1;
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
    return status;
  }

 private:
  ChildProcess(pid_t pid, UniqueFd out) : pid_(pid), out_(std::move(out)) {}

  pid_t pid_ = -1;
  UniqueFd out_;
  std::string buffered_;
};

// The port in `ferry serve`'s "listening on HOST:PORT (...)" line; 0 if none.
inline std::uint16_t port_of_listening_line(const std::string& line) {
  auto at = line.find("listening on ");
  if (at == std::string::npos) return 0;
  std::string addr = line.substr(at + 13, line.find(' ', at + 13) - (at + 13));
  auto colon = addr.rfind(':');
  if (colon == std::string::npos) return 0;
  return static_cast<std::uint16_t>(std::stoi(addr.substr(colon + 1)));
}

}  // namespace ferry::testing
