// connection_net_test.cc: Connection over real TLS on loopback: large
// messages byte-identical with honest counters (and through recycled
// buffers), version negotiation, an
// oversized message refused before its body is read, and a peer that
// vanishes or stalls mid-message ending in an error rather than a hang, and
// input_ready's answer without waiting.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "tests/replication/tls_fixture.h"

namespace ferry::replication {
namespace {

using testing::EchoReceiver;
using testing::TestCerts;

class ConnectionNetTest : public ::testing::Test {
 protected:
  std::unique_ptr<Connection> dial(const EchoReceiver& rx, const std::string& host = "alpha") {
    auto c = Connection::connect(rx.host_port(), certs.client_ctx(host));
    EXPECT_TRUE(c.is_ok()) << c.status().to_string();
    if (!c.is_ok()) return nullptr;
    auto ok = (*c)->hello("ferry-test");
    EXPECT_TRUE(ok.is_ok()) << ok.status().to_string();
    return std::move(c).value();
  }
  TestCerts certs;
};

TEST_F(ConnectionNetTest, LargeMessagesRoundTripWithCounters) {
  EchoReceiver rx(certs.server_ctx());
  auto c = dial(rx);
  ASSERT_TRUE(c);
  std::uint64_t seed = ferry::testing::test_seed();
  // The largest frame a PUT may carry: a 64 MiB chunk plus its header.
  Put put{7, ferry::testing::random_bytes(kMaxFrameBytes, seed)};
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(c->send(put).is_ok());
  auto back = c->recv(30'000);
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  auto* chunk = std::get_if<ChunkData>(&*back);
  ASSERT_NE(chunk, nullptr) << message_name(*back);
  EXPECT_EQ(chunk->request_id, 7u);
  EXPECT_TRUE(chunk->frame == put.frame) << "echoed frame differs";
  const ConnectionCounters& k = c->counters();
  EXPECT_GE(k.plain_bytes_out, kMaxFrameBytes + 13);
  EXPECT_GT(k.cipher_bytes_out, k.plain_bytes_out);  // TLS records cost a little
  EXPECT_LT(k.cipher_bytes_out, k.plain_bytes_out + k.plain_bytes_out / 100);
  EXPECT_GT(k.cipher_bytes_in, k.plain_bytes_in);
  std::fprintf(stderr,
               "[ferry] 64 MiB there and back over TLS on loopback: %.3f s (%.0f MB/s each way), %s, %s\n", s,
               2.0 * kMaxFrameBytes / s / 1e6 / 2, c->cipher_description().c_str(),
               std::string(io::backend_name(c->backend())).c_str());
  ASSERT_TRUE(c->send(Bye{}).is_ok());
  auto served = rx.wait_for(1);
  ASSERT_EQ(served.size(), 1u);
  EXPECT_TRUE(served[0].end.is_ok()) << served[0].end.to_string();
}

// A received frame's buffer given back (recycle) is read over by the next
// frame without being zeroed first: frames of other sizes and bytes, one
// after another through the same buffer, still arrive exactly as sent
// (smaller than the last, larger, and larger than the buffer ever was).
TEST_F(ConnectionNetTest, RecycledBuffersCarryEachFrameExactly) {
  EchoReceiver rx(certs.server_ctx());
  auto c = dial(rx);
  ASSERT_TRUE(c);
  std::uint64_t seed = ferry::testing::test_seed();
  std::uint64_t id = 1;
  for (std::size_t bytes : {std::size_t{1} << 20, std::size_t{300'001}, std::size_t{1} << 20,
                            std::size_t{3} << 20, std::size_t{4097}, std::size_t{2} << 20}) {
    Put put{id, ferry::testing::random_bytes(bytes, seed + id)};
    ASSERT_TRUE(c->send(put).is_ok());
    auto back = c->recv(30'000);
    ASSERT_TRUE(back.is_ok()) << back.status().to_string();
    auto* chunk = std::get_if<ChunkData>(&*back);
    ASSERT_NE(chunk, nullptr) << message_name(*back);
    EXPECT_EQ(chunk->request_id, id);
    EXPECT_TRUE(chunk->frame == put.frame) << "frame of " << bytes << " bytes differs";
    c->recycle(std::move(chunk->frame));
    ++id;
  }
  ASSERT_TRUE(c->send(Bye{}).is_ok());
  auto served = rx.wait_for(1);
  ASSERT_EQ(served.size(), 1u);
  EXPECT_TRUE(served[0].end.is_ok()) << served[0].end.to_string();
}

TEST_F(ConnectionNetTest, ManySmallMessagesPipelined) {
  EchoReceiver rx(certs.server_ctx());
  auto c = dial(rx);
  ASSERT_TRUE(c);
  constexpr int kWindow = 16, kTotal = 500;
  int sent = 0, got = 0;
  while (got < kTotal) {
    while (sent < kTotal && sent - got < kWindow) ASSERT_TRUE(c->send(Ping{std::uint64_t(++sent)}).is_ok());
    auto m = c->recv(10'000);
    ASSERT_TRUE(m.is_ok()) << m.status().to_string();
    auto* pong = std::get_if<Pong>(&*m);
    ASSERT_NE(pong, nullptr);
    EXPECT_EQ(pong->request_id, std::uint64_t(++got));
  }
}

TEST_F(ConnectionNetTest, ConnectionMovesBetweenThreads) {
  EchoReceiver rx(certs.server_ctx());
  auto c = dial(rx);
  ASSERT_TRUE(c);
  auto ping = [&](std::uint64_t id) {
    ASSERT_TRUE(c->send(Ping{id}).is_ok());
    auto m = c->recv(10'000);
    ASSERT_TRUE(m.is_ok()) << m.status().to_string();
    ASSERT_TRUE(std::holds_alternative<Pong>(*m));
    EXPECT_EQ(std::get<Pong>(*m).request_id, id);
  };
  std::thread other([&] { ping(1); });
  other.join();
  ping(2);
  std::thread third([&] { ping(3); });
  third.join();
  // Short-lived threads one after another, as the packer's read-ahead
  // threads ask have/need on the push's control connection: the C library
  // may give the next thread the exited one's std::thread::id, but the
  // connection must still notice it is on another thread (an io_uring set
  // up for a single issuer refuses any other).
  for (std::uint64_t id = 4; id < 8; ++id) {
    std::thread next([&] { ping(id); });
    next.join();
  }
}

TEST_F(ConnectionNetTest, ThreadPoolBackendCarriesTheSameStream) {
  ConnectionOptions server;
  server.backend = io::Backend::kThreads;
  EchoReceiver rx(certs.server_ctx(), server);
  ConnectionOptions o;
  o.backend = io::Backend::kThreads;
  auto c = Connection::connect(rx.host_port(), certs.client_ctx("beta"), o);
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  ASSERT_TRUE((*c)->hello("ferry-test").is_ok());
  EXPECT_EQ((*c)->backend(), io::Backend::kThreads);
  Message put = Put{9, ferry::testing::random_bytes(8u << 20, ferry::testing::test_seed())};
  ASSERT_TRUE((*c)->send(put).is_ok());
  auto back = (*c)->recv(30'000);
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  ASSERT_TRUE(std::holds_alternative<ChunkData>(*back));
  EXPECT_TRUE(std::get<ChunkData>(*back).frame == std::get<Put>(put).frame);
}

TEST_F(ConnectionNetTest, NoCommonVersionIsAClearError) {
  EchoReceiver rx(certs.server_ctx());
  auto c = Connection::connect(rx.host_port(), certs.client_ctx("alpha"));
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  ASSERT_TRUE((*c)->send(Hello{kMaxProtocolVersion + 1, kMaxProtocolVersion + 3, "future"}).is_ok());
  auto m = (*c)->recv(10'000);
  ASSERT_TRUE(m.is_ok()) << m.status().to_string();
  auto* e = std::get_if<Error>(&*m);
  ASSERT_NE(e, nullptr);
  Status s = status_from_error(*e);
  EXPECT_EQ(s.code(), Code::kUnsupported);
  EXPECT_CONTAINS(s.message(), "no common protocol version");
  auto served = rx.wait_for(1);
  ASSERT_EQ(served.size(), 1u);
  EXPECT_EQ(served[0].end.code(), Code::kUnsupported);
}

TEST_F(ConnectionNetTest, OversizedMessageIsRefusedAtItsHeader) {
  ConnectionOptions o;
  o.max_message_bytes = kMinAnnouncedMessageBytes;
  EchoReceiver rx(certs.server_ctx(), o);
  auto c = dial(rx);
  ASSERT_TRUE(c);
  // Announce a body far over the limit; send only its first part.
  Commit big{1, "snap", std::vector<std::byte>(kMinAnnouncedMessageBytes + 1)};
  (void)c->send(big);  // the receiver may close while this is under way
  auto served = rx.wait_for(1);
  ASSERT_EQ(served.size(), 1u);
  EXPECT_EQ(served[0].end.code(), Code::kResourceExhausted) << served[0].end.to_string();
  EXPECT_CONTAINS(served[0].end.message(), "over the limit");
}

// A client that completes TLS and HELLO, then sends the first `part` bytes
// of a message announcing `body` bytes, then vanishes (or, with `stall`,
// keeps the connection open and silent).
void send_partial_message(const TestCerts& certs, const EchoReceiver& rx, std::size_t body, std::size_t part,
                          int stall_ms) {
  auto c = Connection::connect(rx.host_port(), certs.client_ctx("alpha"));
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  ASSERT_TRUE((*c)->hello("ferry-test").is_ok());
  // The header of a PUT of `body` bytes, then only `part` of them.
  std::vector<std::byte> raw(kMessageHeaderBytes + part);
  for (int i = 0; i < 4; ++i) raw[i] = std::byte(static_cast<std::uint8_t>(body >> (8 * i)));
  raw[4] = std::byte(static_cast<std::uint8_t>(MessageType::kPut));
  ASSERT_TRUE((*c)->send_raw(raw).is_ok());
  if (stall_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(stall_ms));
  (*c)->abort();
}

TEST_F(ConnectionNetTest, PeerVanishingMidMessageIsAnErrorNotAHang) {
  EchoReceiver rx(certs.server_ctx());
  send_partial_message(certs, rx, 1 << 20, 1000, 0);
  auto served = rx.wait_for(1);
  ASSERT_EQ(served.size(), 1u);
  EXPECT_EQ(served[0].end.code(), Code::kUnavailable) << served[0].end.to_string();
  EXPECT_CONTAINS(served[0].end.message(), "part received");
}

TEST_F(ConnectionNetTest, StalledPeerTimesOut) {
  ConnectionOptions o;
  o.io_timeout_ms = 300;
  EchoReceiver rx(certs.server_ctx(), o);
  auto t0 = std::chrono::steady_clock::now();
  std::thread client([&] { send_partial_message(certs, rx, 1 << 20, 1000, 2000); });
  auto served = rx.wait_for(1);
  double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  client.join();
  ASSERT_EQ(served.size(), 1u);
  EXPECT_EQ(served[0].end.code(), Code::kTimeout) << served[0].end.to_string();
  EXPECT_LT(waited, 1.9);
}

// input_ready says whether a receive would find something without waiting:
// no before the answer comes, yes once it has (on the socket, or already
// in TLS with the one before it), no once all is read, and yes when the
// peer has closed (the receive then says so).
TEST_F(ConnectionNetTest, InputReadyWithoutWaiting) {
  EchoReceiver rx(certs.server_ctx());
  auto c = dial(rx);
  ASSERT_TRUE(c);
  EXPECT_FALSE(c->input_ready());
  auto wait_ready = [&] {
    for (int i = 0; i < 1000 && !c->input_ready(); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    return c->input_ready();
  };
  ASSERT_TRUE(c->send(Ping{1}).is_ok());
  ASSERT_TRUE(c->send(Ping{2}).is_ok());
  ASSERT_TRUE(wait_ready());
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // both answers in
  for (std::uint64_t id : {1, 2}) {
    EXPECT_TRUE(c->input_ready()) << id;
    auto m = c->recv(10'000);
    ASSERT_TRUE(m.is_ok()) << m.status().to_string();
    ASSERT_TRUE(std::holds_alternative<Pong>(*m));
    EXPECT_EQ(std::get<Pong>(*m).request_id, id);
  }
  EXPECT_FALSE(c->input_ready());
  ASSERT_TRUE(c->send(Bye{}).is_ok());
  rx.wait_for(1);  // the receiver has closed its side
  EXPECT_TRUE(wait_ready());
  EXPECT_FALSE(c->recv(5'000).is_ok());
}

TEST_F(ConnectionNetTest, ClientSeesReceiverClosing) {
  EchoReceiver rx(certs.server_ctx());
  auto c = dial(rx);
  ASSERT_TRUE(c);
  // The echo receiver answers anything unexpected with ERROR, then waits.
  ASSERT_TRUE(c->send(List{3}).is_ok());
  auto m = c->recv(10'000);
  ASSERT_TRUE(m.is_ok());
  ASSERT_TRUE(std::holds_alternative<Error>(*m));
  ASSERT_TRUE(c->send(Bye{}).is_ok());
  rx.wait_for(1);  // the receiver has closed its side
  auto after = c->recv(5'000);
  ASSERT_FALSE(after.is_ok());
  EXPECT_EQ(after.status().code(), Code::kUnavailable) << after.status().to_string();
}

}  // namespace
}  // namespace ferry::replication
