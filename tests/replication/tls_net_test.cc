// tls_net_test.cc: mutual TLS 1.3 between real connections on loopback. A
// good host is admitted under its certificate's CN; every refusal (no client
// certificate, another CA, expired, plaintext or random bytes, a receiver
// whose name does not match) fails with a message that says why, on the side
// that can say it, while the receiver keeps serving good hosts.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/replication/tls_fixture.h"

namespace ferry::replication {
namespace {

using testing::EchoReceiver;
using testing::ServedConnection;
using testing::TestCerts;

class TlsNetTest : public ::testing::Test {
 protected:
  TestCerts certs;
};

// Connects as `host` and says HELLO; the first failure, or OK.
Status try_host(const TestCerts& certs, const EchoReceiver& rx, const std::string& host,
                const std::string& server_name = "") {
  auto c = Connection::connect(rx.host_port(), certs.client_ctx(host, server_name));
  if (!c.is_ok()) return c.status();
  auto ok = (*c)->hello("ferry-test");
  if (!ok.is_ok()) return ok.status();
  return (*c)->send(Bye{});
}

TEST_F(TlsNetTest, GoodHostIsAdmittedUnderItsName) {
  EchoReceiver rx(certs.server_ctx());
  auto c = Connection::connect(rx.host_port(), certs.client_ctx("alpha"));
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  EXPECT_EQ((*c)->peer_identity(), "ferry-receiver");
  EXPECT_CONTAINS((*c)->cipher_description(), "TLSv1.3");
  auto ok = (*c)->hello("ferry-test");
  ASSERT_TRUE(ok.is_ok()) << ok.status().to_string();
  EXPECT_EQ(ok->namespace_name, "alpha");
  EXPECT_EQ(ok->version, kMaxProtocolVersion);
  ASSERT_TRUE((*c)->send(Bye{}).is_ok());
  auto served = rx.wait_for(1);
  ASSERT_EQ(served.size(), 1u);
  EXPECT_TRUE(served[0].handshake.is_ok()) << served[0].handshake.to_string();
  EXPECT_EQ(served[0].identity, "alpha");
  EXPECT_TRUE(served[0].end.is_ok()) << served[0].end.to_string();
}

TEST_F(TlsNetTest, ClientWithoutCertificateIsRefused) {
  EchoReceiver rx(certs.server_ctx());
  Status s = try_host(certs, rx, "");
  EXPECT_EQ(s.code(), Code::kPermissionDenied) << s.to_string();
  EXPECT_CONTAINS(s.message(), "refused our certificate") << s.to_string();
  auto served = rx.wait_for(1);
  ASSERT_EQ(served.size(), 1u);
  EXPECT_EQ(served[0].handshake.code(), Code::kPermissionDenied);
  EXPECT_CONTAINS(served[0].handshake.message(), "peer sent no certificate");
}

TEST_F(TlsNetTest, CertificateFromAnotherCaIsRefused) {
  EchoReceiver rx(certs.server_ctx());
  Status s = try_host(certs, rx, "mallory");
  EXPECT_EQ(s.code(), Code::kPermissionDenied) << s.to_string();
  auto served = rx.wait_for(1);
  ASSERT_EQ(served.size(), 1u);
  EXPECT_EQ(served[0].handshake.code(), Code::kPermissionDenied);
  EXPECT_CONTAINS(served[0].handshake.message(),
                  "certificate verify failed: unable to get local issuer certificate");
}

TEST_F(TlsNetTest, ExpiredCertificateIsRefused) {
  EchoReceiver rx(certs.server_ctx());
  Status s = try_host(certs, rx, "old");
  EXPECT_EQ(s.code(), Code::kPermissionDenied) << s.to_string();
  EXPECT_CONTAINS(s.message(), "expired") << s.to_string();
  auto served = rx.wait_for(1);
  ASSERT_EQ(served.size(), 1u);
  EXPECT_CONTAINS(served[0].handshake.message(), "certificate has expired");
}

TEST_F(TlsNetTest, ClientRefusesReceiverWithAnotherName) {
  EchoReceiver rx(certs.server_ctx());
  Status s = try_host(certs, rx, "alpha", "dr.example.com");
  EXPECT_EQ(s.code(), Code::kPermissionDenied) << s.to_string();
  EXPECT_CONTAINS(s.message(), "hostname mismatch") << s.to_string();
}

TEST_F(TlsNetTest, ReceiverCertificateIsNotAHostCertificate) {
  // A client presenting a certificate whose CN is not a valid namespace is
  // stopped before it dials ("ferry-receiver" is valid, so build one with a space).
  auto ca = read_key_and_cert(certs.set.ca_key, certs.set.ca_cert);
  ASSERT_TRUE(ca.is_ok());
  CertSpec spec;
  spec.common_name = "not a namespace";
  spec.client = true;
  certs.write(issue_cert(*ca, spec), "spaced");
  TlsConfig c{certs.set.ca_cert, certs.set.host_cert("spaced"), certs.set.host_key("spaced"),
              TlsRole::kClient, ""};
  auto ctx = TlsContext::create(c);
  ASSERT_FALSE(ctx.is_ok());
  EXPECT_CONTAINS(ctx.status().message(), "not a valid host namespace");
}

// Writes raw bytes to the receiver as a client that does not speak TLS.
void send_raw(const EchoReceiver& rx, const std::string& bytes) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::connect(fd, rx.address().get(), rx.address().size()), 0);
  ASSERT_EQ(::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL), static_cast<ssize_t>(bytes.size()));
  char buf[512];
  while (::recv(fd, buf, sizeof(buf), 0) > 0) {
  }
  ::close(fd);
}

TEST_F(TlsNetTest, PlaintextAndRandomClientsAreRefusedWhileOthersAreServed) {
  EchoReceiver rx(certs.server_ctx());
  send_raw(rx, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
  std::uint64_t seed = ferry::testing::test_seed();
  auto noise = ferry::testing::random_bytes(4096, seed);
  send_raw(rx, std::string(reinterpret_cast<const char*>(noise.data()), noise.size()));
  Status good = try_host(certs, rx, "beta");
  EXPECT_TRUE(good.is_ok()) << good.to_string();
  auto served = rx.wait_for(3);
  ASSERT_EQ(served.size(), 3u);
  int refused = 0, admitted = 0;
  for (const ServedConnection& s : served) {
    if (s.handshake.is_ok()) {
      ++admitted;
      EXPECT_EQ(s.identity, "beta");
    } else {
      ++refused;
      EXPECT_CONTAINS(s.handshake.message(), "does not speak TLS") << s.handshake.to_string();
    }
  }
  EXPECT_EQ(refused, 2);
  EXPECT_EQ(admitted, 1);
}

TEST_F(TlsNetTest, SilentClientTimesOutInHandshake) {
  ConnectionOptions o;
  o.handshake_timeout_ms = 300;
  EchoReceiver rx(certs.server_ctx(), o);
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::connect(fd, rx.address().get(), rx.address().size()), 0);
  auto served = rx.wait_for(1);
  ::close(fd);
  ASSERT_EQ(served.size(), 1u);
  EXPECT_EQ(served[0].handshake.code(), Code::kTimeout) << served[0].handshake.to_string();
}

TEST_F(TlsNetTest, ConnectToClosedPortIsUnavailable) {
  auto addr = io::SocketAddress::parse("127.0.0.1:1");
  ASSERT_TRUE(addr.is_ok());
  auto c = Connection::connect(*addr, certs.client_ctx("alpha"));
  ASSERT_FALSE(c.is_ok());
  EXPECT_EQ(c.status().code(), Code::kUnavailable) << c.status().to_string();
  EXPECT_CONTAINS(c.status().message(), "127.0.0.1:1");
}

TEST_F(TlsNetTest, CertsAreWrittenWithPrivateKeysClosed) {
  struct stat st {};
  ASSERT_EQ(::stat(certs.set.ca_key.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat(certs.set.host_key("alpha").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat(certs.set.receiver_cert.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);
}

}  // namespace
}  // namespace ferry::replication
