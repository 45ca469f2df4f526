// control.h: the agent's control socket, through which `ferry status`,
// `ferry submit`, `ferry pause` and `ferry resume` talk to a running agent.
// A unix stream socket created mode 0600; every connection's peer uid
// (SO_PEERCRED) must be root or the agent's effective uid, anyone else is
// answered with a permission-denied error and closed. The protocol is one
// JSON object per line each way:
//   request  {"command":"status"|"submit"|"pause"|"resume","args":{...}}
//   response {"ok":true,...} or {"ok":false,"error":"..."}
#pragma once

#include <cstddef>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "base/status.h"

namespace ferry::agent {

// Longest request line the server reads; a longer one is refused.
inline constexpr std::size_t kMaxControlRequestBytes = 64 * 1024;
// Longest response line the client reads (status carries the queue).
inline constexpr std::size_t kMaxControlResponseBytes = 16 * 1024 * 1024;
// A connection that sends no complete request for this long is closed.
inline constexpr int kControlConnectionTimeoutMs = 10'000;
// Connections served at the same time; more wait in the listen backlog.
inline constexpr int kMaxControlConnections = 8;
// Where the agent listens unless told otherwise.
inline constexpr const char* kDefaultControlSocket = "/run/ferry-agent/control.sock";

// Answers one request. Called from a connection thread, possibly from several
// at once: it must be thread-safe. Returns the whole response object; the
// server adds "ok":true when the handler leaves "ok" out. A handler should not
// throw; if it does, the client gets {"ok":false,"error":"internal: ..."}.
using ControlHandler = std::function<nlohmann::json(const std::string& command, const nlohmann::json& args)>;

class ControlServer {
 public:
  // Binds socket_path (its directory must exist). A stale socket file left by
  // a dead agent is replaced; one that a live agent answers on is refused.
  static Result<std::unique_ptr<ControlServer>> start(const std::filesystem::path& socket_path,
                                                      ControlHandler handler);
  // Stops accepting, closes open connections, joins every thread and removes
  // the socket file.
  ~ControlServer();
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  const std::filesystem::path& socket_path() const;

  struct Impl;

 private:
  explicit ControlServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Sends one request and returns the response object (which may say
// "ok":false: the caller reads "error"). A transport failure (no socket, no
// agent, timeout, unparseable answer) is a Status; no agent listening is
// kUnavailable with the path in the message.
Result<nlohmann::json> control_call(const std::filesystem::path& socket_path, const std::string& command,
                                    const nlohmann::json& args, int timeout_ms = 10'000);

}  // namespace ferry::agent
