// engine_net_test.cc: socket operations through io::Engine on loopback,
// against both backends: connect/accept/send/recv, a peer reset mid-transfer,
// refused connections, timeouts, cancellation, many concurrent sockets and
// shutdown with work in flight.
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <random>

#include "io/engine.h"
#include "tests/io/engine_fixture.h"
#include "tests/testing/testing.h"

namespace ferry::io {
namespace {

using ferry::testing::random_bytes;
using ferry::testing::test_seed;
using testing::EngineTest;
using Clock = std::chrono::steady_clock;

class NetTest : public EngineTest {
 protected:
  void SetUp() override {
    EngineTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    auto addr = SocketAddress::parse("127.0.0.1:0");
    ASSERT_TRUE(addr.is_ok());
    auto l = Socket::listen(*addr, kListenBacklog);
    ASSERT_TRUE(l.is_ok()) << l.status().to_string();
    listener_ = std::make_unique<Socket>(std::move(l).value());
    auto bound = listener_->local_address();
    ASSERT_TRUE(bound.is_ok());
    addr_ = *bound;
  }

  // A connected pair (client, server) made through the engine.
  std::pair<Socket, Socket> connect_pair() {
    auto c = Socket::tcp_for(addr_);
    EXPECT_TRUE(c.is_ok());
    Socket client = std::move(c).value();
    EXPECT_TRUE(engine_->submit(Op::accept(*listener_, 1, 5000)).is_ok());
    EXPECT_TRUE(engine_->submit(Op::connect(client, addr_, 2, 5000)).is_ok());
    int fd = -1;
    for (int i = 0; i < 2; ++i) {
      auto done = engine_->wait_one(10'000);
      EXPECT_TRUE(done.is_ok()) << done.status().to_string();
      if (!done.is_ok()) break;
      EXPECT_TRUE(done->status.is_ok()) << done->status.to_string();
      if (done->tag == 1) fd = done->fd;
    }
    EXPECT_GE(fd, 0);
    return {std::move(client), Socket::adopt(fd)};
  }

  std::unique_ptr<Socket> listener_;
  SocketAddress addr_;
};

TEST_P(NetTest, SendAndRecvManyMegabytes) {
  auto [client, server] = connect_pair();
  EXPECT_NE(server.name().find("127.0.0.1:"), std::string::npos) << server.name();
  auto data = random_bytes(8 << 20, test_seed());
  std::vector<std::byte> got(data.size());
  constexpr std::size_t kPiece = 1 << 20;
  std::size_t sent_ops = 0, send_done = 0, recv_done = 0;
  bool recv_posted = false;
  std::vector<Completion> out(kDepth);
  while (send_done < data.size() / kPiece || recv_done < data.size()) {
    while (sent_ops < data.size() / kPiece && engine_->outstanding() + 1 < engine_->queue_depth()) {
      std::span<const std::byte> p(data.data() + sent_ops * kPiece, kPiece);
      ASSERT_TRUE(engine_->submit(Op::send(client, p, 100 + sent_ops, 5000)).is_ok());
      ++sent_ops;
    }
    if (!recv_posted && recv_done < data.size()) {
      std::span<std::byte> b(got.data() + recv_done,
                             std::min<std::size_t>(256 << 10, got.size() - recv_done));
      ASSERT_TRUE(engine_->submit(Op::recv(server, b, 1, 5000)).is_ok());
      recv_posted = true;
    }
    auto n = engine_->wait(out, 1, 10'000);
    ASSERT_TRUE(n.is_ok() && *n > 0) << "stalled";
    for (std::size_t i = 0; i < *n; ++i) {
      ASSERT_TRUE(out[i].status.is_ok()) << out[i].status.to_string();
      if (out[i].tag == 1) {
        ASSERT_GT(out[i].bytes, 0u) << "peer closed early";
        recv_done += out[i].bytes;
        recv_posted = false;
      } else {
        EXPECT_EQ(out[i].bytes, kPiece);
        ++send_done;
      }
    }
  }
  EXPECT_EQ(got, data);
  // Orderly close: the reader sees 0 bytes.
  ASSERT_TRUE(client.shutdown_write().is_ok());
  std::vector<std::byte> one(16);
  Completion eof = run(Op::recv(server, one, 3, 5000));
  EXPECT_TRUE(eof.status.is_ok());
  EXPECT_EQ(eof.bytes, 0u);
}

TEST_P(NetTest, PeerResetMidTransferIsUnavailableNamingThePeer) {
  auto [client, server] = connect_pair();
  ASSERT_TRUE(client.set_buffer_bytes(64 << 10, 0).is_ok());
  auto data = random_bytes(32 << 20, test_seed());
  ASSERT_TRUE(engine_->submit(Op::send(client, data, 1, 10'000)).is_ok());
  std::vector<std::byte> buf(64 << 10);
  Completion some = run(Op::recv(server, buf, 2, 5000));
  ASSERT_TRUE(some.status.is_ok()) << some.status.to_string();
  ASSERT_GT(some.bytes, 0u);
  // RST instead of FIN, with most of the data still unread.
  ASSERT_TRUE(server.set_linger_zero().is_ok());
  server.close();
  auto c = engine_->wait_one(10'000);
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  EXPECT_EQ(c->tag, 1u);
  EXPECT_EQ(c->status.code(), Code::kUnavailable) << c->status.to_string();
  EXPECT_LT(c->bytes, data.size());
  EXPECT_NE(c->status.message().find(client.name()), std::string::npos) << c->status.message();
  EXPECT_NE(c->status.message().find("send"), std::string::npos) << c->status.message();
}

TEST_P(NetTest, RecvAfterResetIsUnavailable) {
  auto [client, server] = connect_pair();
  ASSERT_TRUE(server.set_linger_zero().is_ok());
  server.close();
  std::vector<std::byte> buf(1024);
  Completion c = run(Op::recv(client, buf, 1, 5000));
  EXPECT_EQ(c.status.code(), Code::kUnavailable) << c.status.to_string();
  EXPECT_NE(c.status.message().find(std::strerror(ECONNRESET)), std::string::npos) << c.status.message();
}

TEST_P(NetTest, ConnectionRefusedIsUnavailable) {
  auto tmp = Socket::listen(*SocketAddress::parse("127.0.0.1:0"), 1);
  ASSERT_TRUE(tmp.is_ok());
  SocketAddress closed = *tmp->local_address();
  tmp->close();
  auto s = Socket::tcp_for(closed);
  ASSERT_TRUE(s.is_ok());
  Completion c = run(Op::connect(*s, closed, 1, 5000));
  EXPECT_EQ(c.status.code(), Code::kUnavailable) << c.status.to_string();
  EXPECT_NE(c.status.message().find(closed.to_string()), std::string::npos) << c.status.message();
}

TEST_P(NetTest, RecvAndAcceptTimeOut) {
  auto [client, server] = connect_pair();
  std::vector<std::byte> buf(1024);
  auto t0 = Clock::now();
  Completion c = run(Op::recv(server, buf, 1, 100));
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
  EXPECT_EQ(c.status.code(), Code::kTimeout) << c.status.to_string();
  EXPECT_GE(ms, 90);
  EXPECT_LT(ms, 3000);
  EXPECT_NE(c.status.message().find("recv from"), std::string::npos) << c.status.message();

  Completion a = run(Op::accept(*listener_, 2, 50));
  EXPECT_EQ(a.status.code(), Code::kTimeout) << a.status.to_string();
  // The connection still works after a timed-out recv.
  std::byte x{42};
  ASSERT_TRUE(run(Op::send(client, {&x, 1}, 3)).status.is_ok());
  Completion r = run(Op::recv(server, buf, 4, 5000));
  ASSERT_TRUE(r.status.is_ok());
  EXPECT_EQ(r.bytes, 1u);
  EXPECT_EQ(buf[0], x);
}

TEST_P(NetTest, CancelPendingRecvAndAccept) {
  auto [client, server] = connect_pair();
  std::vector<std::byte> buf(1024);
  ASSERT_TRUE(engine_->submit(Op::recv(server, buf, 1)).is_ok());
  ASSERT_TRUE(engine_->submit(Op::accept(*listener_, 2)).is_ok());
  ASSERT_TRUE(engine_->flush().is_ok());
  EXPECT_EQ(engine_->wait_one(30).status().code(), Code::kTimeout);  // both really pending
  ASSERT_TRUE(engine_->cancel(1).is_ok());
  ASSERT_TRUE(engine_->cancel(2).is_ok());
  for (int i = 0; i < 2; ++i) {
    auto c = engine_->wait_one(5000);
    ASSERT_TRUE(c.is_ok()) << c.status().to_string();
    EXPECT_EQ(c->status.code(), Code::kAborted) << c->status.to_string();
  }
  EXPECT_EQ(engine_->outstanding(), 0u);
  std::byte x{7};
  ASSERT_TRUE(run(Op::send(client, {&x, 1}, 3)).status.is_ok());
  Completion r = run(Op::recv(server, buf, 4, 5000));
  ASSERT_TRUE(r.status.is_ok());
  EXPECT_EQ(r.bytes, 1u);
}

TEST_P(NetTest, ManyConcurrentSocketsWithRecvsPostedFirst) {
  constexpr int kPairs = 12;  // kPairs recvs + kPairs sends fit the queue
  std::vector<std::pair<Socket, Socket>> pairs;
  for (int i = 0; i < kPairs; ++i) pairs.push_back(connect_pair());
  auto data = random_bytes(kPairs * 4096, test_seed());
  std::vector<std::byte> got(data.size());
  // Every recv is pending before any send: a backend that let a blocked
  // recv hold a worker would stall here.
  for (int i = 0; i < kPairs; ++i) {
    ASSERT_TRUE(engine_->submit(Op::recv(pairs[i].second, {got.data() + i * 4096, 4096}, i, 5000)).is_ok());
  }
  ASSERT_TRUE(engine_->flush().is_ok());
  for (int i = 0; i < kPairs; ++i) {
    ASSERT_TRUE(
        engine_->submit(Op::send(pairs[i].first, {data.data() + i * 4096, 4096}, 1000 + i, 5000)).is_ok());
  }
  std::size_t recvd = 0;
  for (int i = 0; i < 2 * kPairs; ++i) {
    auto c = engine_->wait_one(10'000);
    ASSERT_TRUE(c.is_ok()) << c.status().to_string();
    ASSERT_TRUE(c->status.is_ok()) << c->status.to_string();
    if (c->tag < 1000) {
      recvd += c->bytes;
      // Loopback delivers a 4 KiB write whole, but a recv may still see less.
      if (c->bytes < 4096) {
        std::size_t off = c->tag * 4096 + c->bytes;
        ASSERT_TRUE(
            engine_->submit(Op::recv(pairs[c->tag].second, {got.data() + off, 4096 - c->bytes}, c->tag, 5000))
                .is_ok());
        --i;
      }
    }
  }
  EXPECT_EQ(recvd, data.size());
  EXPECT_EQ(got, data);
}

TEST_P(NetTest, ShutdownWithWorkInFlightDoesNotHang) {
  auto [client, server] = connect_pair();
  std::vector<std::byte> buf(1024);
  ASSERT_TRUE(engine_->submit(Op::recv(server, buf, 1)).is_ok());
  ASSERT_TRUE(engine_->submit(Op::accept(*listener_, 2)).is_ok());
  ASSERT_TRUE(engine_->submit(Op::timer(60'000, 3)).is_ok());
  ASSERT_TRUE(engine_->flush().is_ok());
  auto t0 = Clock::now();
  engine_.reset();  // cancels and drains
  EXPECT_LT(std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count(), 2000);
}

// Many sends of odd sizes queued at once on a socket with a small send
// buffer: io_uring links them into chains, the fallback runs them one by
// one; either way the bytes arrive in submission order.
TEST_P(NetTest, QueuedSendsOfOddSizesArriveInOrder) {
  auto [client, server] = connect_pair();
  ASSERT_TRUE(client.set_buffer_bytes(32 << 10, 0).is_ok());
  std::mt19937_64 rng(test_seed());
  std::vector<std::size_t> sizes;
  std::size_t total = 0;
  for (int i = 0; i < 24; ++i) {
    sizes.push_back(1 + rng() % (300 << 10));
    total += sizes.back();
  }
  auto data = random_bytes(total, test_seed());
  std::vector<std::byte> got(total);
  std::size_t off = 0, sends_done = 0, recvd = 0, next = 0;
  bool recv_posted = false;
  std::vector<Completion> out(kDepth);
  while (sends_done < sizes.size() || recvd < total) {
    while (next < sizes.size() && engine_->outstanding() + 1 < engine_->queue_depth()) {
      ASSERT_TRUE(
          engine_->submit(Op::send(client, {data.data() + off, sizes[next]}, 1000 + next, 5000)).is_ok());
      off += sizes[next++];
    }
    if (!recv_posted && recvd < total) {
      std::size_t len = std::min<std::size_t>(4096 + rng() % (64 << 10), total - recvd);
      ASSERT_TRUE(engine_->submit(Op::recv(server, {got.data() + recvd, len}, 1, 5000)).is_ok());
      recv_posted = true;
    }
    auto n = engine_->wait(out, 1, 10'000);
    ASSERT_TRUE(n.is_ok() && *n > 0) << "stalled";
    for (std::size_t i = 0; i < *n; ++i) {
      ASSERT_TRUE(out[i].status.is_ok()) << out[i].status.to_string();
      if (out[i].tag == 1) {
        ASSERT_GT(out[i].bytes, 0u);
        recvd += out[i].bytes;
        recv_posted = false;
      } else {
        EXPECT_EQ(out[i].bytes, sizes[out[i].tag - 1000]);
        ++sends_done;
      }
    }
  }
  EXPECT_EQ(got, data);
}

// A send that times out in the middle of a queue: it reports Timeout and
// the sends queued behind it are not lost but run (and, with no reader,
// time out) in turn, each with its own deadline.
TEST_P(NetTest, SendTimeoutMidQueueLeavesLaterSendsToTheirOwnDeadlines) {
  auto [client, server] = connect_pair();
  ASSERT_TRUE(client.set_buffer_bytes(16 << 10, 0).is_ok());
  ASSERT_TRUE(server.set_buffer_bytes(0, 16 << 10).is_ok());
  auto data = random_bytes(4 << 20, test_seed());
  constexpr int kSends = 3;
  for (int i = 0; i < kSends; ++i) {
    std::span<const std::byte> p(data.data() + i * (1 << 20), 1 << 20);
    ASSERT_TRUE(engine_->submit(Op::send(client, p, 10 + i, 150)).is_ok());
  }
  auto t0 = Clock::now();
  for (int i = 0; i < kSends; ++i) {
    auto c = engine_->wait_one(10'000);
    ASSERT_TRUE(c.is_ok()) << c.status().to_string();
    EXPECT_EQ(c->status.code(), Code::kTimeout) << c->status.to_string();
  }
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
  EXPECT_GE(ms, 140);
  EXPECT_LT(ms, 5000);
  EXPECT_EQ(engine_->outstanding(), 0u);
}

FERRY_ENGINE_SUITE(NetTest);

}  // namespace
}  // namespace ferry::io
