// s3_fault_relay.h: an HTTP relay on loopback between an S3 client and a
// real gateway (radosgw) that answers some requests itself, on a seeded
// schedule, the way a loaded or failing S3 service does: 503 SlowDown,
// 500 InternalError, or a connection reset in the middle of the request's
// body (after part of it reached the gateway). The other requests reach the
// gateway unchanged. A test aid for the S3 fault tests, never part of a
// production data path.
//
// Real TCP both ways. Each accepted connection carries one request: the
// relay forwards it with "Connection: close" and closes the client's
// connection after the reply, so the client opens a new connection for the
// next request and every request meets the schedule (a client keeps its
// connections for many requests, so faults per connection would strike
// rarely). Request i (in the order their headers arrive) draws its fate from
// an RNG seeded with (seed, i).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/status.h"
#include "io/socket.h"

namespace ferry::testing {

struct S3FaultSchedule {
  std::uint64_t seed = 1;
  // Chances per request (one draw decides among them; their sum <= 1).
  double slow_down_probability = 0;       // 503 SlowDown
  double internal_error_probability = 0;  // 500 InternalError
  double reset_probability = 0;           // RST after part of the body
  // Requests after the first `max_faults` faults pass clean; negative: no
  // limit.
  int max_faults = -1;
  // Every request from the `fail_from_request`-th on (0-based) is answered
  // 503, whatever the draws: an outage that outlasts the client's retries.
  // Negative: never.
  std::int64_t fail_from_request = -1;
};

struct S3RelayCounters {
  std::uint64_t requests = 0;  // request headers read
  std::uint64_t forwarded = 0;
  std::uint64_t slow_downs = 0;
  std::uint64_t internal_errors = 0;
  std::uint64_t resets = 0;
  std::uint64_t puts_forwarded = 0;
  // Content-Length of the PUTs forwarded in full to the gateway.
  std::uint64_t put_body_bytes_forwarded = 0;
  // The most PUTs being forwarded at one moment (a client's parallelism).
  std::uint64_t max_puts_in_flight = 0;
};

class S3FaultRelay {
 public:
  // `target`: the gateway's HOST:PORT.
  S3FaultRelay(std::string target, S3FaultSchedule schedule);
  ~S3FaultRelay();  // stop()
  S3FaultRelay(const S3FaultRelay&) = delete;
  S3FaultRelay& operator=(const S3FaultRelay&) = delete;

  Status start();
  // Stops accepting, ends every connection and joins every thread.
  void stop();

  // "http://127.0.0.1:PORT": the endpoint clients use instead of the gateway.
  std::string endpoint() const;
  S3RelayCounters counters() const;
  // Applies to requests from now on; the request count goes on.
  void set_schedule(const S3FaultSchedule& schedule);

  struct Shared;

 private:
  void accept_loop();
  void serve(io::Socket client);

  std::string target_text_;
  io::SocketAddress target_;
  std::uint16_t port_ = 0;
  std::unique_ptr<Shared> shared_;
  std::unique_ptr<io::Socket> listener_;
  std::thread acceptor_;
  struct ConnectionThread {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  std::mutex threads_mu_;
  std::vector<ConnectionThread> threads_;
  bool started_ = false;
};

}  // namespace ferry::testing
