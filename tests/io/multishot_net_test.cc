// multishot_net_test.cc: the io_uring engine's multishot receive and
// provided buffer ring on loopback, beside the single-shot path
// (recv_multishot = false) and the thread-pool fallback: bytes that arrive
// before any recv is posted, one large arrival split over many small recvs,
// deep queues of whole-buffer recvs, end of stream after stashed bytes, a
// closed receiver releasing its socket, and a reused descriptor number.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <thread>

#include "io/engine.h"
#include "io/uring_engine.h"
#include "tests/testing/testing.h"

namespace ferry::io {
namespace {

using ferry::testing::random_bytes;
using ferry::testing::test_seed;

enum class Mode { kMultishot, kSingleShot, kThreads };

class MultishotTest : public ::testing::TestWithParam<Mode> {
 protected:
  static constexpr unsigned kDepth = 64;

  void SetUp() override {
    EngineOptions o;
    o.backend = GetParam() == Mode::kThreads ? Backend::kThreads : Backend::kUring;
    o.recv_multishot = GetParam() == Mode::kMultishot;
    o.queue_depth = kDepth;
    o.log_choice = false;
    auto e = make_engine(o);
    if (!e.is_ok()) GTEST_SKIP() << "engine unavailable: " << e.status().to_string();
    engine_ = std::move(e).value();
    auto l = Socket::listen(*SocketAddress::parse("127.0.0.1:0"), kListenBacklog);
    ASSERT_TRUE(l.is_ok()) << l.status().to_string();
    listener_ = std::make_unique<Socket>(std::move(l).value());
    addr_ = *listener_->local_address();
  }

  // A connected (client, server) pair made with blocking calls, so that the
  // engine sees only the transfers under test.
  std::pair<Socket, Socket> connect_pair() {
    auto c = Socket::tcp_for(addr_);
    EXPECT_TRUE(c.is_ok());
    EXPECT_EQ(::connect(c->fd(), addr_.get(), addr_.size()), 0) << std::strerror(errno);
    int fd = ::accept4(listener_->fd(), nullptr, nullptr, SOCK_CLOEXEC);
    EXPECT_GE(fd, 0) << std::strerror(errno);
    return {std::move(c).value(), Socket::adopt(fd)};
  }

  static void send_all(const Socket& s, std::span<const std::byte> data) {
    while (!data.empty()) {
      ssize_t n = ::send(s.fd(), data.data(), data.size(), MSG_NOSIGNAL);
      ASSERT_GT(n, 0) << std::strerror(errno);
      data = data.subspan(static_cast<std::size_t>(n));
    }
  }

  Completion run(const Op& op) {
    EXPECT_TRUE(engine_->submit(op).is_ok());
    auto c = engine_->wait_one(10'000);
    EXPECT_TRUE(c.is_ok()) << c.status().to_string();
    return c.is_ok() ? *c : Completion{op.tag, op.kind, c.status()};
  }

  // Whether recvs really went through multishot receive (after one ran).
  void expect_path() {
    auto* u = dynamic_cast<UringEngine*>(engine_.get());
    if (GetParam() == Mode::kMultishot) {
      ASSERT_NE(u, nullptr);
      EXPECT_TRUE(u->multishot_recv()) << "kernel without multishot receive or buffer rings?";
    } else if (u != nullptr) {
      EXPECT_FALSE(u->multishot_recv());
    }
  }

  std::unique_ptr<Engine> engine_;
  std::unique_ptr<Socket> listener_;
  SocketAddress addr_;
};

TEST_P(MultishotTest, SmallRecvsSplitOneLargeArrivalInOrder) {
  auto [client, server] = connect_pair();
  auto data = random_bytes(3 << 20, test_seed());
  std::thread sender([&, &c = client] { send_all(c, data); });
  std::vector<std::byte> got(data.size());
  std::size_t off = 0, size = 1;
  while (off < got.size()) {  // sizes 1, 7, 49, ... wrap at 200 KiB
    std::size_t len = std::min(size, got.size() - off);
    Completion c = run(Op::recv(server, {got.data() + off, len}, off));
    ASSERT_TRUE(c.status.is_ok()) << c.status.to_string();
    ASSERT_GT(c.bytes, 0u);
    ASSERT_LE(c.bytes, len);
    off += c.bytes;
    size = size * 7 % (200 << 10) + 1;
  }
  sender.join();
  EXPECT_EQ(got, data);
  expect_path();
}

TEST_P(MultishotTest, DeepQueueOfWholeBufferRecvs) {
  auto [client, server] = connect_pair();
  constexpr std::size_t kPiece = 100'003;  // odd, so arrivals straddle recvs
  constexpr std::size_t kQueued = 24;
  auto data = random_bytes(kPiece * 96, test_seed());
  std::thread sender([&, &c = client] { send_all(c, data); });
  std::vector<std::byte> got(data.size());
  std::size_t posted = 0, done = 0;
  std::vector<Completion> out(kDepth);
  while (done < data.size() / kPiece) {
    while (posted < data.size() / kPiece && posted - done < kQueued) {
      std::span<std::byte> b(got.data() + posted * kPiece, kPiece);
      ASSERT_TRUE(engine_->submit(Op::recv_all(server, b, posted, 10'000)).is_ok());
      ++posted;
    }
    auto n = engine_->wait(out, 1, 10'000);
    ASSERT_TRUE(n.is_ok() && *n > 0) << "stalled";
    for (std::size_t i = 0; i < *n; ++i) {
      ASSERT_TRUE(out[i].status.is_ok()) << out[i].status.to_string();
      ASSERT_EQ(out[i].bytes, kPiece);
      ASSERT_EQ(out[i].tag, done) << "recvs of one socket complete in order";
      ++done;
    }
  }
  sender.join();
  EXPECT_EQ(got, data);
  expect_path();
}

TEST_P(MultishotTest, EndOfStreamAfterStashedBytes) {
  auto [client, server] = connect_pair();
  auto data = random_bytes(5000, test_seed());
  std::vector<std::byte> got(data.size());
  // The first recv arms the receive; the whole 5000 bytes arrive at once
  // and all but 10 wait for later recvs.
  ASSERT_TRUE(engine_->submit(Op::recv(server, {got.data(), 10}, 1, 5000)).is_ok());
  ASSERT_TRUE(engine_->flush().is_ok());
  send_all(client, data);
  ASSERT_TRUE(client.shutdown_write().is_ok());
  auto first = engine_->wait_one(5000);
  ASSERT_TRUE(first.is_ok() && first->status.is_ok());
  std::size_t off = first->bytes;
  while (off < data.size()) {
    Completion c =
        run(Op::recv(server, {got.data() + off, std::min<std::size_t>(999, data.size() - off)}, 2));
    ASSERT_TRUE(c.status.is_ok()) << c.status.to_string();
    ASSERT_GT(c.bytes, 0u) << "end of stream before the stashed bytes";
    off += c.bytes;
  }
  EXPECT_EQ(got, data);
  std::vector<std::byte> more(64);
  for (int i = 0; i < 2; ++i) {  // and again: still the end
    Completion eof = run(Op::recv(server, more, 3, 5000));
    EXPECT_TRUE(eof.status.is_ok()) << eof.status.to_string();
    EXPECT_EQ(eof.bytes, 0u);
  }
  // recv_all at the end gets what there is: nothing.
  Completion eof = run(Op::recv_all(server, more, 4, 5000));
  EXPECT_TRUE(eof.status.is_ok());
  EXPECT_EQ(eof.bytes, 0u);
}

TEST_P(MultishotTest, ClosedReceiverIsReleasedByTheEngine) {
  auto [client, server] = connect_pair();
  std::byte x{9};
  send_all(client, {&x, 1});
  std::vector<std::byte> buf(16);
  Completion c = run(Op::recv(server, buf, 1, 5000));
  ASSERT_TRUE(c.status.is_ok());
  ASSERT_EQ(c.bytes, 1u);
  // No recv waits any more: the engine must not keep the socket open, so
  // closing it sends the peer its end of stream.
  server.close();
  timeval tv{5, 0};
  ASSERT_EQ(::setsockopt(client.fd(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
  ssize_t n = ::recv(client.fd(), buf.data(), buf.size(), 0);
  EXPECT_EQ(n, 0) << (n < 0 ? std::strerror(errno) : "bytes after close");
}

TEST_P(MultishotTest, ReusedDescriptorNumberGetsOnlyItsOwnBytes) {
  auto [client1, server1] = connect_pair();
  auto old_data = random_bytes(64 << 10, test_seed());
  std::vector<std::byte> buf(old_data.size());
  ASSERT_TRUE(engine_->submit(Op::recv(server1, {buf.data(), 100}, 1, 5000)).is_ok());
  ASSERT_TRUE(engine_->flush().is_ok());
  send_all(client1, old_data);  // 100 bytes to the recv, the rest left behind
  auto c = engine_->wait_one(5000);
  ASSERT_TRUE(c.is_ok() && c->status.is_ok());
  int old_fd = server1.fd();
  server1.close();
  // The new connection's receiving end takes the old number: the engine
  // must tell the sockets apart, not mix the old one's bytes in.
  auto [a, b] = connect_pair();
  Socket& server2 = a.fd() == old_fd ? a : b;
  Socket& client2 = a.fd() == old_fd ? b : a;
  if (server2.fd() != old_fd) {
    int fd = ::dup3(server2.fd(), old_fd, O_CLOEXEC);
    ASSERT_EQ(fd, old_fd) << std::strerror(errno);
    server2 = Socket::adopt(fd);
  }
  auto new_data = random_bytes(1000, test_seed() + 1);
  send_all(client2, new_data);
  std::vector<std::byte> got(new_data.size());
  Completion r = run(Op::recv_all(server2, got, 2));
  ASSERT_TRUE(r.status.is_ok()) << r.status.to_string();
  ASSERT_EQ(r.bytes, got.size());
  EXPECT_EQ(got, new_data);
}

// A large recv_all (the io_uring engine's direct path) whose peer sends a
// little and then nothing: Timeout, the bytes that landed counted, and the
// socket usable afterwards.
TEST_P(MultishotTest, LargeWholeBufferRecvTimesOut) {
  auto [client, server] = connect_pair();
  auto data = random_bytes(1000, test_seed());
  send_all(client, data);
  std::vector<std::byte> buf(1 << 20);
  auto t0 = std::chrono::steady_clock::now();
  Completion c = run(Op::recv_all(server, buf, 1, 150));
  auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(c.status.code(), Code::kTimeout) << c.status.to_string();
  EXPECT_LE(c.bytes, data.size());
  EXPECT_GE(ms, 140);
  EXPECT_LT(ms, 3000);
  // What the timed-out recv did not report is still in the stream.
  std::size_t off = c.bytes;
  if (off > 0) {
    EXPECT_TRUE(std::equal(data.begin(), data.begin() + off, buf.begin()));
  }
  std::vector<std::byte> rest(data.size() - off);
  if (!rest.empty()) {
    Completion r = run(Op::recv_all(server, rest, 2, 5000));
    ASSERT_TRUE(r.status.is_ok()) << r.status.to_string();
    EXPECT_TRUE(std::equal(rest.begin(), rest.end(), data.begin() + off));
  }
  auto more = random_bytes(300 << 10, test_seed() + 1);
  std::thread sender([&, &cl = client] { send_all(cl, more); });
  std::vector<std::byte> got(more.size());
  Completion r = run(Op::recv_all(server, got, 3, 5000));
  sender.join();
  ASSERT_TRUE(r.status.is_ok()) << r.status.to_string();
  EXPECT_EQ(got, more);
}

// The same with SINGLE_ISSUER | DEFER_TASKRUN, where the kernel runs the
// ring's deferred work only inside a wait: the socket must still be let go
// as soon as the last recv completed, not at the engine's next wait.
TEST(MultishotSingleThreadTest, ClosedReceiverIsReleasedWithoutAnotherWait) {
  EngineOptions o;
  o.backend = Backend::kUring;
  o.single_thread = true;
  o.log_choice = false;
  auto e = make_engine(o);
  if (!e.is_ok()) GTEST_SKIP() << "io_uring unavailable: " << e.status().to_string();
  auto engine = std::move(e).value();
  auto listener = Socket::listen(*SocketAddress::parse("127.0.0.1:0"), kListenBacklog);
  ASSERT_TRUE(listener.is_ok());
  SocketAddress addr = *listener->local_address();
  auto client = Socket::tcp_for(addr);
  ASSERT_TRUE(client.is_ok());
  ASSERT_EQ(::connect(client->fd(), addr.get(), addr.size()), 0) << std::strerror(errno);
  Socket server = Socket::adopt(::accept4(listener->fd(), nullptr, nullptr, SOCK_CLOEXEC));
  std::byte x{5};
  ASSERT_EQ(::send(client->fd(), &x, 1, 0), 1);
  std::vector<std::byte> buf(16);
  ASSERT_TRUE(engine->submit(Op::recv(server, buf, 1, 5000)).is_ok());
  auto c = engine->wait_one(5000);
  ASSERT_TRUE(c.is_ok() && c->status.is_ok() && c->bytes == 1u);
  server.close();
  timeval tv{5, 0};
  ASSERT_EQ(::setsockopt(client->fd(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
  ssize_t n = ::recv(client->fd(), buf.data(), buf.size(), 0);
  EXPECT_EQ(n, 0) << (n < 0 ? std::strerror(errno) : "bytes after close");
}

INSTANTIATE_TEST_SUITE_P(Paths, MultishotTest,
                         ::testing::Values(Mode::kMultishot, Mode::kSingleShot, Mode::kThreads),
                         [](const ::testing::TestParamInfo<Mode>& info) {
                           switch (info.param) {
                             case Mode::kMultishot:
                               return std::string("multishot");
                             case Mode::kSingleShot:
                               return std::string("single_shot");
                             case Mode::kThreads:
                               return std::string("threads");
                           }
                           return std::string("?");
                         });

}  // namespace
}  // namespace ferry::io
