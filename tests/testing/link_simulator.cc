// link_simulator.cc: the relay behind LinkSimulator (a test and benchmark
// aid). Each connection runs two pump threads, one per direction; a pump
// polls its source, its destination and the connection's abort eventfd, so
// stop() and a reset end both pumps at once.
#include "tests/testing/link_simulator.h"
#include "base/clock.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <deque>
#include <random>
#include <vector>

namespace ferry::testing {
namespace {

// Bytes read from a socket at once.
constexpr std::size_t kReadBytes = 256u << 10;
// Longest poll sleep, so a stall set by the other direction is noticed.
constexpr int kMaxPollMs = 20;
constexpr int kListenBacklog = 64;

void signal_fd(int fd) {
  std::uint64_t one = 1;
  // An eventfd write only fails when the counter would overflow; the fd
  // is then readable already, which is all a signal needs.
  [[maybe_unused]] ssize_t n = ::write(fd, &one, sizeof(one));
}

void set_nonblocking(int fd) { ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK); }

void set_linger_zero(int fd) {
  linger l{};
  l.l_onoff = 1;
  l.l_linger = 0;
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
}

enum class Strike { kNone, kReset, kTruncate };

}  // namespace

struct LinkSimulator::Shared {
  std::atomic<bool> stopping{false};
  std::atomic<std::uint64_t> connections{0};
  std::atomic<std::uint64_t> bytes_to_target{0};
  std::atomic<std::uint64_t> bytes_to_client{0};
  std::atomic<std::uint64_t> resets{0};
  std::atomic<std::uint64_t> stalls{0};
  std::atomic<std::uint64_t> truncations{0};
  std::atomic<std::uint64_t> flips{0};
  std::atomic<std::uint64_t> faulted{0};
};

struct LinkSimulator::Connection {
  Shared* shared = nullptr;
  LinkOptions options;  // faults as drawn for this connection
  io::SocketAddress target;
  UniqueFd client;
  UniqueFd server;
  UniqueFd abort_fd;
  std::thread thread;
  std::atomic<bool> finished{false};

  // The fault plan: at fault_at_bytes (both directions together), `strike`
  // (reset or truncation) and/or a stall.
  Strike strike = Strike::kNone;
  bool stall = false;
  std::uint64_t fault_at_bytes = 0;
  std::atomic<std::uint64_t> bytes_read{0};
  std::atomic<bool> fault_fired{false};
  std::atomic<bool> reset{false};         // close with RST
  std::atomic<bool> stop_reading{false};  // truncation: drain, then FIN
  std::atomic<std::int64_t> stalled_until_ns{0};
  std::mutex rng_mu;
  std::mt19937_64 rng;

  void abort() { signal_fd(abort_fd.get()); }
  void run();
  void pump(int src, int dst, std::atomic<std::uint64_t>& written);
  // Counts `n` bytes just read; returns how many of them may be forwarded.
  std::size_t account(std::size_t n);
  void flip_bytes(std::vector<std::byte>& data);
};

std::size_t LinkSimulator::Connection::account(std::size_t n) {
  std::uint64_t before = bytes_read.fetch_add(n);
  if (strike == Strike::kNone && !stall) return n;
  if (before + n <= fault_at_bytes || fault_fired.exchange(true)) {
    return stop_reading.load() ? 0 : n;
  }
  if (stall) {
    shared->stalls.fetch_add(1);
    stalled_until_ns.store(mono_ns() + std::int64_t{options.faults.stall_ms} * 1'000'000);
  }
  if (strike == Strike::kReset) {
    shared->resets.fetch_add(1);
    reset.store(true);
    abort();
    return 0;
  }
  if (strike == Strike::kTruncate) {
    shared->truncations.fetch_add(1);
    stop_reading.store(true);
    return static_cast<std::size_t>(fault_at_bytes > before ? fault_at_bytes - before : 0);
  }
  return n;
}

void LinkSimulator::Connection::flip_bytes(std::vector<std::byte>& data) {
  if (options.faults.flips_per_mib <= 0 || data.empty()) return;
  std::lock_guard lock(rng_mu);
  double mean = options.faults.flips_per_mib * static_cast<double>(data.size()) / double(1 << 20);
  int count = std::poisson_distribution<int>(mean)(rng);
  for (int i = 0; i < count; ++i) {
    std::size_t at = std::uniform_int_distribution<std::size_t>(0, data.size() - 1)(rng);
    auto mask = static_cast<std::byte>(std::uniform_int_distribution<int>(1, 255)(rng));
    data[at] ^= mask;
    shared->flips.fetch_add(1);
  }
}

void LinkSimulator::Connection::pump(int src, int dst, std::atomic<std::uint64_t>& written) {
  struct Packet {
    std::int64_t release_ns;
    std::vector<std::byte> data;
    std::size_t sent = 0;
  };
  std::deque<Packet> queue;
  std::uint64_t queued_bytes = 0;
  bool src_eof = false;
  std::int64_t next_send_ns = 0;  // bandwidth cap: earliest next write
  const std::int64_t delay_ns = std::int64_t{options.delay_ms} * 1'000'000;
  const std::uint64_t bw = options.bandwidth_bytes_per_s;

  for (;;) {
    if (shared->stopping.load()) return;
    std::int64_t now = mono_ns();
    bool head_ready = false;
    int timeout_ms = kMaxPollMs;
    if (!queue.empty()) {
      std::int64_t due = std::max({queue.front().release_ns, stalled_until_ns.load(), next_send_ns});
      if (due <= now) {
        head_ready = true;
      } else {
        timeout_ms = static_cast<int>(std::min<std::int64_t>(kMaxPollMs, (due - now) / 1'000'000 + 1));
      }
    }
    bool want_read = !src_eof && !stop_reading.load() && queued_bytes < options.max_in_flight_bytes;
    pollfd fds[3] = {
        {abort_fd.get(), POLLIN, 0}, {want_read ? src : -1, POLLIN, 0}, {head_ready ? dst : -1, POLLOUT, 0}};
    int r = ::poll(fds, 3, timeout_ms);
    if (r < 0 && errno != EINTR) return abort();
    if (fds[0].revents != 0) return;

    if (fds[1].revents != 0) {
      std::vector<std::byte> buf(kReadBytes);
      ssize_t n = ::recv(src, buf.data(), buf.size(), 0);
      if (n == 0) {
        src_eof = true;
      } else if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
          // A reset from one peer is passed on as a reset to the other.
          reset.store(true);
          return abort();
        }
      } else {
        std::size_t keep = account(static_cast<std::size_t>(n));
        buf.resize(keep);
        flip_bytes(buf);
        if (!buf.empty()) {
          queued_bytes += buf.size();
          queue.push_back({mono_ns() + delay_ns, std::move(buf)});
        }
        if (reset.load()) return;
      }
    }

    if (fds[2].revents != 0 && !queue.empty()) {
      Packet& p = queue.front();
      std::size_t len = p.data.size() - p.sent;
      if (bw != 0) len = std::min<std::size_t>(len, std::max<std::uint64_t>(1, bw / 100));
      ssize_t n = ::send(dst, p.data.data() + p.sent, len, MSG_NOSIGNAL);
      if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
          reset.store(true);
          return abort();
        }
      } else {
        p.sent += static_cast<std::size_t>(n);
        queued_bytes -= static_cast<std::uint64_t>(n);
        written.fetch_add(static_cast<std::uint64_t>(n));
        if (bw != 0) {
          next_send_ns = std::max(next_send_ns, mono_ns()) +
                         static_cast<std::int64_t>(static_cast<double>(n) * 1e9 / static_cast<double>(bw));
        }
        if (p.sent == p.data.size()) queue.pop_front();
      }
    }

    if ((src_eof || stop_reading.load()) && queue.empty()) {
      ::shutdown(dst, SHUT_WR);
      return;
    }
  }
}

void LinkSimulator::Connection::run() {
  auto sock = io::Socket::tcp_for(target);
  bool connected = false;
  if (sock.is_ok()) {
    if (::connect(sock->fd(), target.get(), target.size()) == 0) {
      server.reset(::dup(sock->fd()));
      connected = server.valid();
    }
  }
  if (!connected) {
    // The target is down: the client sees a reset, as with a dead host.
    set_linger_zero(client.get());
    client.reset();
    finished.store(true);
    return;
  }
  int one = 1;
  ::setsockopt(server.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  ::setsockopt(client.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  set_nonblocking(client.get());
  set_nonblocking(server.get());
  std::thread back([this] { pump(server.get(), client.get(), shared->bytes_to_client); });
  pump(client.get(), server.get(), shared->bytes_to_target);
  back.join();
  if (reset.load() || shared->stopping.load()) {
    set_linger_zero(client.get());
    set_linger_zero(server.get());
  }
  client.reset();
  server.reset();
  finished.store(true);
}

LinkSimulator::LinkSimulator(LinkOptions options)
    : options_(std::move(options)), shared_(std::make_unique<Shared>()) {}

LinkSimulator::~LinkSimulator() { stop(); }

Status LinkSimulator::start() {
  if (started_) return Status::invalid_argument("link simulator already started");
  ASSIGN_OR_RETURN(target_, io::SocketAddress::parse(options_.target));
  ASSIGN_OR_RETURN(auto local, io::SocketAddress::parse(options_.listen));
  ASSIGN_OR_RETURN(auto listener, io::Socket::listen(local, kListenBacklog));
  ASSIGN_OR_RETURN(auto bound, listener.local_address());
  port_ = bound.port();
  listener_ = std::make_unique<io::Socket>(std::move(listener));
  wake_fd_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake_fd_.valid()) return Status::from_errno(errno, "link simulator: eventfd");
  started_ = true;
  acceptor_ = std::thread([this] { accept_loop(); });
  return Status::ok();
}

std::string LinkSimulator::address() const {
  auto a =
      listener_ ? listener_->local_address() : Result<io::SocketAddress>(Status::internal("not started"));
  return a.is_ok() ? a->to_string() : std::string();
}

LinkCounters LinkSimulator::counters() const {
  const Shared& s = *shared_;
  return {s.connections.load(), s.bytes_to_target.load(), s.bytes_to_client.load(), s.resets.load(),
          s.stalls.load(),      s.truncations.load(),     s.flips.load(),           s.faulted.load()};
}

void LinkSimulator::set_faults(const LinkFaults& faults) {
  std::lock_guard lock(mu_);
  options_.faults = faults;
}

void LinkSimulator::reap_finished(bool all) {
  std::vector<std::unique_ptr<Connection>> done;
  {
    std::lock_guard lock(mu_);
    auto it = std::partition(connections_.begin(), connections_.end(),
                             [&](const auto& c) { return !(all || c->finished.load()); });
    for (auto j = it; j != connections_.end(); ++j) done.push_back(std::move(*j));
    connections_.erase(it, connections_.end());
  }
  for (auto& c : done) {
    if (all) c->abort();
    if (c->thread.joinable()) c->thread.join();
  }
}

void LinkSimulator::accept_loop() {
  while (!shared_->stopping.load()) {
    pollfd fds[2] = {{wake_fd_.get(), POLLIN, 0}, {listener_->fd(), POLLIN, 0}};
    int r = ::poll(fds, 2, 200);
    reap_finished(false);
    if (r <= 0 || fds[0].revents != 0) continue;
    int fd = ::accept4(listener_->fd(), nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    auto c = std::make_unique<Connection>();
    c->shared = shared_.get();
    c->target = target_;
    c->client.reset(fd);
    c->abort_fd.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!c->abort_fd.valid()) continue;  // out of descriptors: drop the client
    shared_->connections.fetch_add(1);
    std::lock_guard lock(mu_);
    c->options = options_;
    const LinkFaults& f = options_.faults;
    std::seed_seq seq{static_cast<std::uint32_t>(f.seed), static_cast<std::uint32_t>(f.seed >> 32),
                      static_cast<std::uint32_t>(accepted_)};
    c->rng.seed(seq);
    ++accepted_;
    std::uniform_real_distribution<double> coin(0, 1);
    bool may_fault = f.max_faulted_connections < 0 ||
                     shared_->faulted.load() < static_cast<std::uint64_t>(f.max_faulted_connections);
    double rv = coin(c->rng), tv = coin(c->rng), sv = coin(c->rng);
    if (may_fault) {
      if (rv < f.reset_probability) {
        c->strike = Strike::kReset;
      } else if (tv < f.truncate_probability) {
        c->strike = Strike::kTruncate;
      }
      c->stall = sv < f.stall_probability;
      c->fault_at_bytes = f.fault_after_max_bytes == 0 ? 0
                                                       : std::uniform_int_distribution<std::uint64_t>(
                                                             0, f.fault_after_max_bytes - 1)(c->rng);
      if (c->strike != Strike::kNone || c->stall || f.flips_per_mib > 0) shared_->faulted.fetch_add(1);
    }
    if (!may_fault) c->options.faults.flips_per_mib = 0;
    Connection* raw = c.get();
    c->thread = std::thread([raw] { raw->run(); });
    connections_.push_back(std::move(c));
  }
}

void LinkSimulator::stop() {
  if (!started_) return;
  started_ = false;
  shared_->stopping.store(true);
  signal_fd(wake_fd_.get());
  if (acceptor_.joinable()) acceptor_.join();
  reap_finished(true);
  listener_.reset();
}

}  // namespace ferry::testing
