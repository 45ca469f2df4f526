// socket.cc: address parsing/resolution and TCP socket setup.
#include "io/socket.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>

namespace ferry::io {

Result<SocketAddress> SocketAddress::parse(std::string_view host_port) {
  std::string_view host;
  std::string_view port;
  if (!host_port.empty() && host_port.front() == '[') {
    std::size_t close = host_port.find(']');
    if (close == std::string_view::npos || close + 1 >= host_port.size() || host_port[close + 1] != ':') {
      return Status::invalid_argument("address '" + std::string(host_port) + "': expected [v6addr]:port");
    }
    host = host_port.substr(1, close - 1);
    port = host_port.substr(close + 2);
  } else {
    std::size_t colon = host_port.rfind(':');
    if (colon == std::string_view::npos || host_port.find(':') != colon) {
      return Status::invalid_argument("address '" + std::string(host_port) +
                                      "': expected host:port (IPv6 as [addr]:port)");
    }
    host = host_port.substr(0, colon);
    port = host_port.substr(colon + 1);
  }
  unsigned port_num = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), port_num);
  if (port.empty() || ec != std::errc() || end != port.data() + port.size() || port_num > 65535) {
    return Status::invalid_argument("address '" + std::string(host_port) + "': bad port '" +
                                    std::string(port) + "'");
  }
  if (host.empty()) {
    return Status::invalid_argument("address '" + std::string(host_port) + "': empty host");
  }

  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* res = nullptr;
  std::string host_s(host);
  std::string port_s(port);
  int rc = ::getaddrinfo(host_s.c_str(), port_s.c_str(), &hints, &res);
  if (rc != 0) {
    return Status::unavailable("resolve '" + host_s + "': " + ::gai_strerror(rc));
  }
  std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> guard(res, &::freeaddrinfo);
  return from_sockaddr(res->ai_addr, res->ai_addrlen);
}

SocketAddress SocketAddress::from_sockaddr(const sockaddr* sa, socklen_t len) {
  SocketAddress a;
  a.len_ = std::min<socklen_t>(len, sizeof(a.storage_));
  std::memcpy(&a.storage_, sa, a.len_);
  return a;
}

std::uint16_t SocketAddress::port() const {
  if (family() == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&storage_)->sin_port);
  if (family() == AF_INET6) {
    return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_port);
  }
  return 0;
}

std::string SocketAddress::to_string() const {
  char buf[INET6_ADDRSTRLEN] = {};
  if (family() == AF_INET) {
    ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&storage_)->sin_addr, buf, sizeof buf);
    return std::string(buf) + ":" + std::to_string(port());
  }
  if (family() == AF_INET6) {
    ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_addr, buf, sizeof buf);
    return "[" + std::string(buf) + "]:" + std::to_string(port());
  }
  return "(unknown address)";
}

Socket::Socket(UniqueFd fd, std::string name)
    : fd_(std::move(fd)), name_(std::make_unique<std::string>(std::move(name))) {}

Result<Socket> Socket::tcp_for(const SocketAddress& peer) {
  UniqueFd fd(::socket(peer.family(), SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP));
  if (!fd.valid()) return Status::from_errno(errno, "socket for " + peer.to_string());
  return Socket(std::move(fd), peer.to_string());
}

Result<Socket> Socket::listen(const SocketAddress& local, int backlog) {
  UniqueFd fd(::socket(local.family(), SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP));
  if (!fd.valid()) return Status::from_errno(errno, "socket for " + local.to_string());
  int one = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(fd.get(), local.get(), local.size()) != 0) {
    return Status::from_errno(errno, "bind " + local.to_string());
  }
  if (::listen(fd.get(), backlog) != 0) {
    return Status::from_errno(errno, "listen on " + local.to_string());
  }
  Socket s(std::move(fd), "");
  auto bound = s.local_address();
  *s.name_ = "listener " + (bound.is_ok() ? bound->to_string() : local.to_string());
  return s;
}

Socket Socket::adopt(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  std::string name = "(unknown peer)";
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
    name = SocketAddress::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len).to_string();
  }
  return Socket(UniqueFd(fd), std::move(name));
}

Result<SocketAddress> Socket::local_address() const {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd(), reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
    return Status::from_errno(errno, "getsockname for " + name());
  }
  return SocketAddress::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
}

Status Socket::set_no_delay(bool on) const {
  int v = on ? 1 : 0;
  if (::setsockopt(fd(), IPPROTO_TCP, TCP_NODELAY, &v, sizeof v) != 0) {
    return Status::from_errno(errno, "TCP_NODELAY on " + name());
  }
  return Status::ok();
}

Status Socket::set_buffer_bytes(int send_bytes, int recv_bytes) const {
  if (send_bytes > 0 && ::setsockopt(fd(), SOL_SOCKET, SO_SNDBUF, &send_bytes, sizeof send_bytes)) {
    return Status::from_errno(errno, "SO_SNDBUF on " + name());
  }
  if (recv_bytes > 0 && ::setsockopt(fd(), SOL_SOCKET, SO_RCVBUF, &recv_bytes, sizeof recv_bytes)) {
    return Status::from_errno(errno, "SO_RCVBUF on " + name());
  }
  return Status::ok();
}

Status Socket::set_linger_zero() const {
  linger l{1, 0};
  if (::setsockopt(fd(), SOL_SOCKET, SO_LINGER, &l, sizeof l) != 0) {
    return Status::from_errno(errno, "SO_LINGER on " + name());
  }
  return Status::ok();
}

Status Socket::shutdown_write() const {
  if (::shutdown(fd(), SHUT_WR) != 0) return Status::from_errno(errno, "shutdown " + name());
  return Status::ok();
}

}  // namespace ferry::io
