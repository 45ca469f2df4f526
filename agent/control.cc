// control.cc: see control.h. One accept thread and at most
// kMaxControlConnections connection threads; every wait is a poll() that also
// watches a stop eventfd, so the destructor unblocks all of them at once.
#include "agent/control.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <exception>
#include <list>
#include <mutex>
#include <system_error>
#include <thread>

#include "base/unique_fd.h"

namespace ferry::agent {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr int kListenBacklog = 16;
// How long start() waits for an existing socket's owner to answer a connect.
constexpr int kLiveProbeTimeoutMs = 1'000;
constexpr std::size_t kReadChunkBytes = 4096;

nlohmann::json error_response(const std::string& message) {
  return nlohmann::json{{"ok", false}, {"error", message}};
}

// One line of JSON; invalid UTF-8 in strings (a job or path named by bytes)
// is replaced rather than thrown about.
std::string to_line(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

int remaining_ms(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return left.count() < 0 ? 0 : static_cast<int>(left.count());
}

Result<sockaddr_un> unix_address(const fs::path& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const std::string& s = path.native();
  if (s.empty() || s.size() >= sizeof(addr.sun_path)) {
    return Status::invalid_argument("control socket path '" + s + "': must be 1 to " +
                                    std::to_string(sizeof(addr.sun_path) - 1) + " bytes");
  }
  std::memcpy(addr.sun_path, s.data(), s.size());
  return addr;
}

// Waits until fd is ready for `events` or stop_fd fires. Returns 1 ready,
// 0 timed out, -1 stopped or failed.
int wait_fd(int fd, short events, int stop_fd, int timeout_ms) {
  pollfd fds[2] = {{fd, events, 0}, {stop_fd, POLLIN, 0}};
  int n = stop_fd >= 0 ? 2 : 1;
  for (;;) {
    int rc = ::poll(fds, n, timeout_ms);
    if (rc < 0 && errno == EINTR) continue;
    if (rc < 0) return -1;
    if (rc == 0) return 0;
    if (n == 2 && fds[1].revents) return -1;
    return 1;
  }
}

// Writes all of `data` before the deadline. False when the peer went away,
// the deadline passed or the server is stopping.
bool write_all(int fd, std::string_view data, int stop_fd, Clock::time_point deadline) {
  while (!data.empty()) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      data.remove_prefix(static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (wait_fd(fd, POLLOUT, stop_fd, remaining_ms(deadline)) != 1) return false;
      continue;
    }
    return false;
  }
  return true;
}

enum class LineRead { kLine, kEof, kTooLong, kTimeout, kError };

// Reads up to and including the next '\n' into `line` (without it), keeping
// whatever follows in `buf` for the next call.
LineRead read_line(int fd, std::string& buf, std::string& line, std::size_t max_bytes, int stop_fd,
                   Clock::time_point deadline) {
  for (;;) {
    auto nl = buf.find('\n');
    if (nl != std::string::npos) {
      if (nl > max_bytes) return LineRead::kTooLong;
      line = buf.substr(0, nl);
      buf.erase(0, nl + 1);
      return LineRead::kLine;
    }
    if (buf.size() > max_bytes) return LineRead::kTooLong;
    int w = wait_fd(fd, POLLIN, stop_fd, remaining_ms(deadline));
    if (w == 0) return LineRead::kTimeout;
    if (w < 0) return LineRead::kError;
    char chunk[kReadChunkBytes];
    ssize_t n = ::recv(fd, chunk, sizeof(chunk), MSG_DONTWAIT);
    if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
    if (n < 0) return LineRead::kError;
    if (n == 0) return LineRead::kEof;
    buf.append(chunk, static_cast<std::size_t>(n));
  }
}

// Runs the handler on one parsed request; never throws.
nlohmann::json dispatch(const ControlHandler& handler, const std::string& line) {
  nlohmann::json req = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (req.is_discarded()) return error_response("malformed request: not valid JSON");
  if (!req.is_object() || !req.contains("command") || !req["command"].is_string()) {
    return error_response("malformed request: want {\"command\":\"...\",\"args\":{...}}");
  }
  nlohmann::json args = req.value("args", nlohmann::json::object());
  if (args.is_null()) args = nlohmann::json::object();
  if (!args.is_object()) return error_response("malformed request: \"args\" must be an object");
  try {
    nlohmann::json resp = handler(req["command"].get<std::string>(), args);
    if (!resp.is_object()) return error_response("internal: handler answered a non-object");
    if (!resp.contains("ok")) resp["ok"] = true;
    return resp;
  } catch (const std::exception& e) {
    // The handler reads user JSON (args), where a wrong type throws.
    return error_response(std::string("internal: ") + e.what());
  }
}

}  // namespace

struct ControlServer::Impl {
  fs::path path;
  ControlHandler handler;
  UniqueFd listen_fd;
  UniqueFd stop_fd;  // eventfd: readable once the server stops
  uid_t owner_uid = 0;
  dev_t socket_dev = 0;
  ino_t socket_ino = 0;

  std::mutex mu;
  std::condition_variable slot_freed;
  struct Conn {
    std::thread thread;
    bool done = false;
  };
  std::list<Conn> conns;  // guarded by mu
  bool stopping = false;  // guarded by mu
  std::thread accept_thread;

  void accept_loop();
  void serve(UniqueFd fd);
  // Joins connection threads that have finished. REQUIRES: mu held.
  void reap_locked();
};

void ControlServer::Impl::reap_locked() {
  for (auto it = conns.begin(); it != conns.end();) {
    if (it->done) {
      it->thread.join();
      it = conns.erase(it);
    } else {
      ++it;
    }
  }
}

void ControlServer::Impl::accept_loop() {
  for (;;) {
    {
      std::unique_lock lock(mu);
      reap_locked();
      slot_freed.wait(lock, [&] {
        reap_locked();
        return stopping || conns.size() < static_cast<std::size_t>(kMaxControlConnections);
      });
      if (stopping) return;
    }
    if (wait_fd(listen_fd.get(), POLLIN, stop_fd.get(), -1) != 1) return;
    int fd = ::accept4(listen_fd.get(), nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == ECONNABORTED) continue;
      // EMFILE and the like: back off instead of spinning.
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      continue;
    }
    std::lock_guard lock(mu);
    conns.emplace_back();
    Conn* c = &conns.back();
    try {
      c->thread = std::thread([this, c, conn = UniqueFd(fd)]() mutable {
        serve(std::move(conn));
        std::lock_guard l(mu);
        c->done = true;
        slot_freed.notify_all();
      });
    } catch (const std::system_error&) {
      conns.pop_back();  // no thread to spare: the connection (closed) is dropped
    }
  }
}

void ControlServer::Impl::serve(UniqueFd fd) {
  const int stop = stop_fd.get();
  ucred cred{};
  socklen_t len = sizeof(cred);
  if (::getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return;
  if (cred.uid != 0 && cred.uid != owner_uid) {
    auto deadline = Clock::now() + std::chrono::milliseconds(kControlConnectionTimeoutMs);
    write_all(fd.get(),
              to_line(error_response("permission denied: uid " + std::to_string(cred.uid) +
                                     " is not the agent's owner")),
              stop, deadline);
    ::shutdown(fd.get(), SHUT_RDWR);
    return;
  }
  std::string buf;
  std::string line;
  for (;;) {
    auto deadline = Clock::now() + std::chrono::milliseconds(kControlConnectionTimeoutMs);
    LineRead r = read_line(fd.get(), buf, line, kMaxControlRequestBytes, stop, deadline);
    if (r == LineRead::kTooLong) {
      write_all(fd.get(),
                to_line(error_response("request refused: longer than " +
                                       std::to_string(kMaxControlRequestBytes) + " bytes")),
                stop, deadline);
      ::shutdown(fd.get(), SHUT_RDWR);
      return;
    }
    if (r != LineRead::kLine) return;  // EOF, idle timeout, stop or error
    nlohmann::json resp = dispatch(handler, line);
    if (!write_all(fd.get(), to_line(resp), stop, deadline)) return;
  }
}

ControlServer::ControlServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

ControlServer::~ControlServer() {
  {
    std::lock_guard lock(impl_->mu);
    impl_->stopping = true;
  }
  std::uint64_t one = 1;
  // An eventfd write of 1 cannot fail short of a bug; the poll loops see it.
  [[maybe_unused]] ssize_t n = ::write(impl_->stop_fd.get(), &one, sizeof(one));
  impl_->slot_freed.notify_all();
  if (impl_->accept_thread.joinable()) impl_->accept_thread.join();
  {
    std::unique_lock lock(impl_->mu);
    impl_->slot_freed.wait(lock, [&] {
      for (const auto& c : impl_->conns) {
        if (!c.done) return false;
      }
      return true;
    });
    impl_->reap_locked();
  }
  // Remove the socket file only if it is still the one this server bound.
  struct stat st {};
  if (::lstat(impl_->path.c_str(), &st) == 0 && st.st_dev == impl_->socket_dev &&
      st.st_ino == impl_->socket_ino) {
    ::unlink(impl_->path.c_str());
  }
}

const fs::path& ControlServer::socket_path() const { return impl_->path; }

Result<std::unique_ptr<ControlServer>> ControlServer::start(const fs::path& socket_path,
                                                            ControlHandler handler) {
  ASSIGN_OR_RETURN(sockaddr_un addr, unix_address(socket_path));
  const std::string where = "control socket " + socket_path.string();

  struct stat st {};
  if (::lstat(socket_path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return Status::invalid_argument(where + ": exists and is not a socket; not replacing it");
    }
    // A live agent answers a connect; a dead one's file refuses it.
    auto probe = control_call(socket_path, "status", nlohmann::json::object(), kLiveProbeTimeoutMs);
    if (probe.is_ok()) return Status::unavailable(where + ": another agent is listening on it");
    if (probe.status().code() != Code::kUnavailable) {
      return Status::unavailable(where +
                                 ": in use, and its owner cannot be asked: " + probe.status().message());
    }
    if (::unlink(socket_path.c_str()) != 0 && errno != ENOENT) {
      return Status::from_errno(errno, where + ": cannot remove the stale socket");
    }
  }

  auto impl = std::make_unique<Impl>();
  impl->path = socket_path;
  impl->handler = std::move(handler);
  impl->owner_uid = ::geteuid();
  impl->stop_fd = UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!impl->stop_fd.valid()) return Status::from_errno(errno, where + ": eventfd");
  impl->listen_fd = UniqueFd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!impl->listen_fd.valid()) return Status::from_errno(errno, where + ": socket");

  // Created owner-only from the start (umask), and chmod in case the
  // filesystem ignored it: no window where another user could connect.
  mode_t old_mask = ::umask(0177);
  int rc = ::bind(impl->listen_fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr));
  int bind_errno = errno;
  ::umask(old_mask);
  if (rc != 0) return Status::from_errno(bind_errno, where + ": bind");
  if (::chmod(socket_path.c_str(), 0600) != 0 || ::lstat(socket_path.c_str(), &st) != 0) {
    int err = errno;
    ::unlink(socket_path.c_str());
    return Status::from_errno(err, where + ": chmod 0600");
  }
  impl->socket_dev = st.st_dev;
  impl->socket_ino = st.st_ino;
  if (::listen(impl->listen_fd.get(), kListenBacklog) != 0) {
    int err = errno;
    ::unlink(socket_path.c_str());
    return Status::from_errno(err, where + ": listen");
  }
  Impl* raw = impl.get();
  impl->accept_thread = std::thread([raw] { raw->accept_loop(); });
  return std::unique_ptr<ControlServer>(new ControlServer(std::move(impl)));
}

Result<nlohmann::json> control_call(const fs::path& socket_path, const std::string& command,
                                    const nlohmann::json& args, int timeout_ms) {
  ASSIGN_OR_RETURN(sockaddr_un addr, unix_address(socket_path));
  const std::string where = socket_path.string();
  auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);

  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return Status::from_errno(errno, "control socket: socket");
  // A blocking unix connect waits while the listen backlog is full; the send
  // timeout bounds that wait (Linux applies SO_SNDTIMEO to connect).
  timeval tv{};
  tv.tv_sec = timeout_ms / 1000;
  tv.tv_usec = (timeout_ms % 1000) * 1000;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    int err = errno;
    if (err == EAGAIN || err == EINPROGRESS) {
      return Status::timeout("agent on " + where + " did not accept a connection within " +
                             std::to_string(timeout_ms) + " ms");
    }
    if (err == EACCES || err == EPERM) {
      return Status::permission_denied("cannot connect to " + where + ": " + std::strerror(err) +
                                       " (the control socket is owner-only)");
    }
    return Status::unavailable("no agent listening on " + where + ": " + std::strerror(err));
  }
  std::string request = to_line(nlohmann::json{{"command", command}, {"args", args}});
  // A refusing server answers before reading, then closes: a failed send is
  // not the end, the answer may already be waiting.
  bool sent = write_all(fd.get(), request, -1, deadline);
  std::string buf;
  std::string line;
  LineRead r = read_line(fd.get(), buf, line, kMaxControlResponseBytes, -1, deadline);
  switch (r) {
    case LineRead::kLine:
      break;
    case LineRead::kTimeout:
      return Status::timeout("agent on " + where + " did not answer '" + command + "' within " +
                             std::to_string(timeout_ms) + " ms");
    case LineRead::kTooLong:
      return Status::exhausted("agent on " + where + " answered more than " +
                               std::to_string(kMaxControlResponseBytes) + " bytes");
    case LineRead::kEof:
    case LineRead::kError:
      return Status::unavailable("agent on " + where + " closed the connection" +
                                 (sent ? "" : " before the request was sent"));
  }
  nlohmann::json resp = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (resp.is_discarded() || !resp.is_object()) {
    return Status::corruption("agent on " + where + " answered something that is not a JSON object");
  }
  return resp;
}

}  // namespace ferry::agent
