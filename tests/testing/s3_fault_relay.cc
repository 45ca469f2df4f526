// s3_fault_relay.cc: see s3_fault_relay.h. One thread per connection, all
// blocking I/O under poll() with a short timeout so that stop() is noticed.
#include "tests/testing/s3_fault_relay.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <random>
#include <string_view>

namespace ferry::testing {
namespace {

// How long poll() sleeps before looking at the stop flag again.
constexpr int kPollSliceMs = 50;
// A request's headers larger than this are refused (the relay closes).
constexpr std::size_t kMaxHeaderBytes = 64 << 10;
// After an answer of its own, how long the relay reads what the client
// still sends before closing: closing with unread bytes would reset the
// connection and the client might never read the answer.
constexpr int kDrainMs = 500;

enum class Fate { kForward, kSlowDown, kInternalError, kReset };

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

// Waits until `fd` is readable (or writable); false on stop or timeout.
bool wait_fd(int fd, short events, const std::atomic<bool>& stop, int timeout_ms) {
  int waited = 0;
  while (!stop.load()) {
    pollfd p{fd, events, 0};
    const int n = ::poll(&p, 1, kPollSliceMs);
    if (n > 0) return true;
    if (n < 0 && errno != EINTR) return false;
    waited += kPollSliceMs;
    if (timeout_ms >= 0 && waited >= timeout_ms) return false;
  }
  return false;
}

bool write_all(int fd, std::string_view bytes, const std::atomic<bool>& stop) {
  while (!bytes.empty()) {
    if (!wait_fd(fd, POLLOUT, stop, 10'000)) return false;
    const ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n <= 0) {
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      return false;
    }
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

// Reads into `buf` until it holds "\r\n\r\n"; the header's length (with the
// blank line), or 0 on EOF, error, stop or an oversized header.
std::size_t read_header(int fd, std::string& buf, const std::atomic<bool>& stop) {
  std::array<char, 16384> chunk;
  for (;;) {
    if (const auto end = buf.find("\r\n\r\n"); end != std::string::npos) return end + 4;
    if (buf.size() > kMaxHeaderBytes) return 0;
    if (!wait_fd(fd, POLLIN, stop, 30'000)) return 0;
    const ssize_t n = ::recv(fd, chunk.data(), chunk.size(), 0);
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      return 0;
    }
    buf.append(chunk.data(), static_cast<std::size_t>(n));
  }
}

struct RequestHead {
  std::string method;
  std::uint64_t content_length = 0;
  bool expect_continue = false;
  std::string rewritten;  // the header with "Connection: close"
};

RequestHead parse_head(std::string_view head) {
  RequestHead r;
  r.method = std::string(head.substr(0, head.find(' ')));
  std::size_t pos = head.find("\r\n") + 2;
  r.rewritten = std::string(head.substr(0, pos));
  while (pos < head.size()) {
    const std::size_t eol = head.find("\r\n", pos);
    const std::string_view line = head.substr(pos, eol - pos);
    pos = eol + 2;
    if (line.empty()) break;
    const auto colon = line.find(':');
    const std::string name = lower(line.substr(0, colon));
    std::string_view value = colon == std::string_view::npos ? "" : line.substr(colon + 1);
    while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
    if (name == "connection") continue;
    if (name == "content-length") r.content_length = std::strtoull(std::string(value).c_str(), nullptr, 10);
    if (name == "expect" && lower(value) == "100-continue") r.expect_continue = true;
    r.rewritten.append(line);
    r.rewritten.append("\r\n");
  }
  r.rewritten.append("Connection: close\r\n\r\n");
  return r;
}

std::string error_reply(int code, std::string_view reason, std::string_view s3_code,
                        std::string_view message) {
  const std::string body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>" + std::string(s3_code) +
                           "</Code><Message>" + std::string(message) + "</Message></Error>";
  return "HTTP/1.1 " + std::to_string(code) + " " + std::string(reason) +
         "\r\nContent-Type: application/xml\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\nConnection: close\r\n\r\n" + body;
}

void drain_and_close(io::Socket& s, const std::atomic<bool>& stop) {
  (void)s.shutdown_write();
  std::array<char, 16384> chunk;
  while (wait_fd(s.fd(), POLLIN, stop, kDrainMs)) {
    if (::recv(s.fd(), chunk.data(), chunk.size(), 0) <= 0) break;
  }
  s.close();
}

}  // namespace

struct S3FaultRelay::Shared {
  std::atomic<bool> stop{false};
  std::mutex mu;  // guards schedule, next_request, faults and counters
  S3FaultSchedule schedule;
  std::uint64_t next_request = 0;
  int faults = 0;
  S3RelayCounters counters;
  std::uint64_t puts_in_flight = 0;

  struct Draw {
    Fate fate = Fate::kForward;
    double reset_fraction = 0;  // of the body forwarded before a reset
  };
  Draw draw() {
    std::lock_guard g(mu);
    const std::uint64_t i = next_request++;
    ++counters.requests;
    if (schedule.fail_from_request >= 0 && i >= static_cast<std::uint64_t>(schedule.fail_from_request)) {
      ++counters.slow_downs;
      return {Fate::kSlowDown, 0};
    }
    if (schedule.max_faults >= 0 && faults >= schedule.max_faults) return {};
    std::seed_seq seq{static_cast<std::uint32_t>(schedule.seed),
                      static_cast<std::uint32_t>(schedule.seed >> 32), static_cast<std::uint32_t>(i),
                      static_cast<std::uint32_t>(i >> 32)};
    std::mt19937_64 rng(seq);
    const double x = std::uniform_real_distribution<double>(0, 1)(rng);
    Fate f = Fate::kForward;
    if (x < schedule.slow_down_probability) {
      f = Fate::kSlowDown;
      ++counters.slow_downs;
    } else if (x < schedule.slow_down_probability + schedule.internal_error_probability) {
      f = Fate::kInternalError;
      ++counters.internal_errors;
    } else if (x < schedule.slow_down_probability + schedule.internal_error_probability +
                       schedule.reset_probability) {
      f = Fate::kReset;
      ++counters.resets;
    }
    if (f != Fate::kForward) ++faults;
    return {f, std::uniform_real_distribution<double>(0, 1)(rng)};
  }
};

S3FaultRelay::S3FaultRelay(std::string target, S3FaultSchedule schedule)
    : target_text_(std::move(target)), shared_(std::make_unique<Shared>()) {
  shared_->schedule = schedule;
}

S3FaultRelay::~S3FaultRelay() { stop(); }

Status S3FaultRelay::start() {
  ASSIGN_OR_RETURN(target_, io::SocketAddress::parse(target_text_));
  ASSIGN_OR_RETURN(auto local, io::SocketAddress::parse("127.0.0.1:0"));
  ASSIGN_OR_RETURN(io::Socket listener, io::Socket::listen(local, 128));
  ASSIGN_OR_RETURN(auto bound, listener.local_address());
  port_ = bound.port();
  listener_ = std::make_unique<io::Socket>(std::move(listener));
  started_ = true;
  acceptor_ = std::thread([this] { accept_loop(); });
  return Status::ok();
}

void S3FaultRelay::stop() {
  if (!started_) return;
  started_ = false;
  shared_->stop = true;
  if (acceptor_.joinable()) acceptor_.join();
  std::vector<ConnectionThread> threads;
  {
    std::lock_guard g(threads_mu_);
    threads.swap(threads_);
  }
  for (ConnectionThread& t : threads) t.thread.join();
  listener_.reset();
}

std::string S3FaultRelay::endpoint() const { return "http://127.0.0.1:" + std::to_string(port_); }

S3RelayCounters S3FaultRelay::counters() const {
  std::lock_guard g(shared_->mu);
  return shared_->counters;
}

void S3FaultRelay::set_schedule(const S3FaultSchedule& schedule) {
  std::lock_guard g(shared_->mu);
  shared_->schedule = schedule;
  shared_->faults = 0;
}

void S3FaultRelay::accept_loop() {
  while (!shared_->stop.load()) {
    if (!wait_fd(listener_->fd(), POLLIN, shared_->stop, -1)) continue;
    const int fd = ::accept4(listener_->fd(), nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    io::Socket client = io::Socket::adopt(fd);
    std::lock_guard g(threads_mu_);
    // Join the connections that ended, so that threads do not pile up.
    for (auto it = threads_.begin(); it != threads_.end();) {
      if (it->done->load()) {
        it->thread.join();
        it = threads_.erase(it);
      } else {
        ++it;
      }
    }
    auto done = std::make_shared<std::atomic<bool>>(false);
    threads_.push_back({std::thread([this, done, c = std::move(client)]() mutable {
                          serve(std::move(c));
                          *done = true;
                        }),
                        done});
  }
}

void S3FaultRelay::serve(io::Socket client) {
  const std::atomic<bool>& stop = shared_->stop;
  std::string buf;
  const std::size_t head_bytes = read_header(client.fd(), buf, stop);
  if (head_bytes == 0) return;
  const RequestHead head = parse_head(std::string_view(buf).substr(0, head_bytes));
  const Shared::Draw drawn = shared_->draw();
  const Fate fate = drawn.fate;
  if (fate == Fate::kSlowDown || fate == Fate::kInternalError) {
    // Without "Expect: 100-continue" the client sends its body at once:
    // read it before answering, as a gateway would.
    if (!head.expect_continue) {
      std::uint64_t left =
          head.content_length - std::min<std::uint64_t>(head.content_length, buf.size() - head_bytes);
      std::array<char, 65536> chunk;
      while (left > 0 && wait_fd(client.fd(), POLLIN, stop, 10'000)) {
        const ssize_t n = ::recv(client.fd(), chunk.data(), std::min<std::uint64_t>(left, chunk.size()), 0);
        if (n <= 0) return;
        left -= static_cast<std::uint64_t>(n);
      }
    }
    const std::string reply =
        fate == Fate::kSlowDown
            ? error_reply(503, "Slow Down", "SlowDown", "Please reduce your request rate.")
            : error_reply(500, "Internal Server Error", "InternalError",
                          "We encountered an internal error. Please try again.");
    if (write_all(client.fd(), reply, stop)) drain_and_close(client, stop);
    return;
  }
  auto upstream = io::Socket::tcp_for(target_);
  if (!upstream.is_ok()) return;
  if (::connect(upstream->fd(), target_.get(), target_.size()) != 0) return;
  // Counted from here until its reply starts (the client is then about to
  // send its next request), or until this function returns otherwise.
  struct PutInFlight {
    Shared* shared = nullptr;
    explicit PutInFlight(Shared* s) : shared(s) {
      if (shared == nullptr) return;
      std::lock_guard g(shared->mu);
      ++shared->puts_in_flight;
      shared->counters.max_puts_in_flight =
          std::max(shared->counters.max_puts_in_flight, shared->puts_in_flight);
    }
    void end() {
      if (shared == nullptr) return;
      std::lock_guard g(shared->mu);
      --shared->puts_in_flight;
      shared = nullptr;
    }
    ~PutInFlight() { end(); }
  } put_in_flight(head.method == "PUT" ? shared_.get() : nullptr);
  // A reset strikes after a part of the body drawn from the same seed (or
  // at once for a request without one).
  std::uint64_t reset_after = ~0ull;
  if (fate == Fate::kReset) {
    reset_after = static_cast<std::uint64_t>(drawn.reset_fraction * static_cast<double>(head.content_length));
  }
  if (!write_all(upstream->fd(), head.rewritten, stop)) return;
  std::uint64_t body_sent = 0;
  auto forward_body = [&](std::string_view bytes) {
    if (body_sent + bytes.size() > reset_after) bytes = bytes.substr(0, reset_after - body_sent);
    body_sent += bytes.size();
    return write_all(upstream->fd(), bytes, stop);
  };
  if (!forward_body(std::string_view(buf).substr(head_bytes))) return;
  bool counted = false;
  auto count_forwarded = [&] {
    if (counted) return;
    counted = true;
    std::lock_guard g(shared_->mu);
    ++shared_->counters.forwarded;
    if (head.method == "PUT" && body_sent == head.content_length) {
      ++shared_->counters.puts_forwarded;
      shared_->counters.put_body_bytes_forwarded += head.content_length;
    }
  };
  std::array<char, 65536> chunk;
  bool client_open = true;
  while (!stop.load()) {
    if (body_sent >= reset_after) {
      (void)client.set_linger_zero();
      (void)upstream->set_linger_zero();
      return;  // both closed with RST
    }
    std::array<pollfd, 2> p{pollfd{upstream->fd(), POLLIN, 0}, pollfd{client.fd(), POLLIN, 0}};
    const int n = ::poll(p.data(), client_open ? 2 : 1, kPollSliceMs);
    if (n < 0 && errno != EINTR) return;
    if (n <= 0) continue;
    if (client_open && (p[1].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
      const ssize_t got = ::recv(client.fd(), chunk.data(), chunk.size(), 0);
      if (got <= 0) {
        client_open = false;
        (void)upstream->shutdown_write();
      } else if (!forward_body(std::string_view(chunk.data(), static_cast<std::size_t>(got)))) {
        return;
      }
    }
    if ((p[0].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
      const ssize_t got = ::recv(upstream->fd(), chunk.data(), chunk.size(), 0);
      if (got <= 0) break;  // the gateway closed after its reply
      put_in_flight.end();  // the gateway answers once it has the whole body
      // Counted before the client sees the reply (not an interim "100
      // Continue" before the body), so that a client that exits on it leaves
      // the counters complete.
      if (body_sent == head.content_length) count_forwarded();
      if (!write_all(client.fd(), std::string_view(chunk.data(), static_cast<std::size_t>(got)), stop))
        return;
    }
  }
  put_in_flight.end();
  count_forwarded();
  drain_and_close(client, stop);
}

}  // namespace ferry::testing
