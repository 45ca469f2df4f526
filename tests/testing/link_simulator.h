// link_simulator.h: a TCP relay that imitates a long, slow or broken network
// link between a sender and a receiver. It is a test and benchmark aid (the
// replication benchmark's 20 ms RTT link, the fault-injection tests), never
// part of a production data path.
//
// LinkSimulator listens on an address (127.0.0.1:0 by default) and forwards
// every accepted connection to a target, both directions, with:
//   - a one-way delay: bytes read at time t are written at t + delay_ms, in
//     order; bytes in flight are buffered (up to max_in_flight_bytes per
//     direction), so throughput is not limited to one window per RTT;
//   - a bandwidth cap per direction (bytes/s, token bucket);
//   - faults drawn per connection from a seeded RNG: a reset (RST, by closing
//     with SO_LINGER 0) after a random number of bytes, a stall (no bytes
//     forwarded for stall_ms), a truncation (a clean close, FIN both ways,
//     after a random number of bytes), and flipped bytes (a random byte XORed
//     with a random non-zero value, flips_per_mib expected per MiB).
// Each connection gets two threads (one per direction); stop() ends and joins
// all of them.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/status.h"
#include "base/unique_fd.h"
#include "io/socket.h"

namespace ferry::testing {

// Bytes buffered per direction of one connection before reading pauses.
inline constexpr std::uint64_t kLinkDefaultMaxInFlightBytes = 256ull << 20;

struct LinkFaults {
  // Connection i draws its faults from an RNG seeded with (seed, i).
  std::uint64_t seed = 1;
  // Chances, per connection, of each fault (independent draws).
  double reset_probability = 0;
  double stall_probability = 0;
  double truncate_probability = 0;
  // A reset, stall or truncation strikes after a number of bytes (both
  // directions together) drawn uniformly from [0, fault_after_max_bytes).
  std::uint64_t fault_after_max_bytes = 4ull << 20;
  int stall_ms = 2'000;
  // Expected flipped bytes per MiB forwarded (either direction); 0: none.
  double flips_per_mib = 0;
  // Connections accepted after this many have been given a fault (reset,
  // stall, truncation or flips) are forwarded clean, so that a client with
  // retries can finish; negative: no limit.
  int max_faulted_connections = -1;
};

struct LinkOptions {
  std::string listen = "127.0.0.1:0";
  std::string target;  // HOST:PORT every connection is forwarded to
  int delay_ms = 0;    // one way; the RTT through the link is 2 x delay_ms
  // Per direction of each connection; 0: no cap.
  std::uint64_t bandwidth_bytes_per_s = 0;
  std::uint64_t max_in_flight_bytes = kLinkDefaultMaxInFlightBytes;
  LinkFaults faults;
};

struct LinkCounters {
  std::uint64_t connections = 0;
  std::uint64_t bytes_to_target = 0;  // client -> target, written
  std::uint64_t bytes_to_client = 0;  // target -> client, written
  std::uint64_t resets = 0;
  std::uint64_t stalls = 0;
  std::uint64_t truncations = 0;
  std::uint64_t flips = 0;
  std::uint64_t faulted_connections = 0;
};

class LinkSimulator {
 public:
  explicit LinkSimulator(LinkOptions options);
  ~LinkSimulator();  // stop()
  LinkSimulator(const LinkSimulator&) = delete;
  LinkSimulator& operator=(const LinkSimulator&) = delete;

  // Binds the listener and starts accepting; the target is resolved here.
  Status start();
  // Stops accepting, aborts every connection and joins every thread.
  void stop();

  std::uint16_t port() const { return port_; }
  // "127.0.0.1:PORT": the address clients connect to instead of the target.
  std::string address() const;
  LinkCounters counters() const;
  // Applies to connections accepted from now on.
  void set_faults(const LinkFaults& faults);

  struct Shared;      // counters and the stop flag, shared with connections
  struct Connection;  // one relayed connection and its threads

 private:
  void accept_loop();
  void reap_finished(bool all);

  LinkOptions options_;
  io::SocketAddress target_;
  std::uint16_t port_ = 0;
  std::unique_ptr<Shared> shared_;
  std::unique_ptr<io::Socket> listener_;
  UniqueFd wake_fd_;  // eventfd: wakes the accept loop on stop()
  std::thread acceptor_;
  std::mutex mu_;  // guards faults and connections_
  std::vector<std::unique_ptr<Connection>> connections_;
  std::uint64_t accepted_ = 0;
  bool started_ = false;
};

}  // namespace ferry::testing
