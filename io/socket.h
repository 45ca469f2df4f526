// socket.h: TCP sockets for the io engine and the addresses they use.
// SocketAddress parses and resolves HOST:PORT and [v6]:PORT; Socket owns one
// descriptor and remembers its peer's name for error messages.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "base/status.h"
#include "base/unique_fd.h"

namespace ferry::io {

class SocketAddress {
 public:
  SocketAddress() = default;
  // "host:port", "[v6addr]:port" or "v4addr:port"; a host name is resolved
  // (first result, IPv4 or IPv6). Port 0 asks the kernel for one (listen).
  static Result<SocketAddress> parse(std::string_view host_port);
  static SocketAddress from_sockaddr(const sockaddr* sa, socklen_t len);

  const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&storage_); }
  socklen_t size() const { return len_; }
  int family() const { return storage_.ss_family; }
  std::uint16_t port() const;
  // "127.0.0.1:5000" or "[::1]:5000".
  std::string to_string() const;

 private:
  sockaddr_storage storage_{};
  socklen_t len_ = 0;
};

class Socket {
 public:
  // An unconnected TCP socket of the address's family, to connect later.
  static Result<Socket> tcp_for(const SocketAddress& peer);
  // A listening TCP socket bound to `local` (SO_REUSEADDR).
  static Result<Socket> listen(const SocketAddress& local, int backlog);
  // Wraps an accepted descriptor; the peer's name comes from getpeername.
  static Socket adopt(int fd);

  Socket(Socket&&) noexcept = default;
  Socket& operator=(Socket&&) noexcept = default;

  int fd() const { return fd_.get(); }
  // The peer (or, for a listener, "listening on ADDR"); stable across moves.
  const std::string& name() const { return *name_; }
  Result<SocketAddress> local_address() const;

  Status set_no_delay(bool on) const;
  Status set_buffer_bytes(int send_bytes, int recv_bytes) const;
  // Closing with linger 0 sends a RST instead of a FIN (used to test resets).
  Status set_linger_zero() const;
  // Shuts down the writing side (the peer sees end of stream).
  Status shutdown_write() const;
  void close() { fd_.reset(); }

 private:
  Socket(UniqueFd fd, std::string name);

  UniqueFd fd_;
  std::unique_ptr<std::string> name_;
};

}  // namespace ferry::io
