// tls_fixture.h: what the replication tests that speak real TLS over real
// loopback sockets share: a deployment's certificates in a scratch directory
// (plus ones a receiver must refuse: from another CA, expired), TLS contexts
// for each role, and a small echo receiver that serves every connection on
// its own thread and records how each one ended.
#pragma once

#include <gtest/gtest.h>
#include <sys/socket.h>

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "io/socket.h"
#include "replication/cert_gen.h"
#include "replication/connection.h"
#include "replication/tls.h"
#include "tests/testing/testing.h"

// EXPECT_CONTAINS(text, "needle"): the text shows on failure.
#define EXPECT_CONTAINS(text, needle)                          \
  EXPECT_NE(std::string(text).find(needle), std::string::npos) \
      << "expected \"" << (needle) << "\" in: " << std::string(text)

namespace ferry::replication::testing {

// ca/receiver/host-alpha/host-beta from create_cert_set, plus host-mallory
// (signed by another CA), host-old (expired yesterday), host-twocn (subject
// CNs "eve" and "alpha") and host-noeku (no clientAuth extended key usage);
// crl.pem revokes nothing until revoke() adds to it.
struct TestCerts {
  ferry::testing::TempDir dir;
  CertSet set;

  TestCerts() {
    CertSetOptions o;
    o.hosts = {"alpha", "beta"};
    auto s = create_cert_set(dir.path(), o);
    EXPECT_TRUE(s.is_ok()) << s.status().to_string();
    set = *s;
    auto other_ca = make_ca("other CA");
    EXPECT_TRUE(other_ca.is_ok());
    CertSpec spec;
    spec.common_name = "mallory";
    spec.client = true;
    write(issue_cert(*other_ca, spec), "mallory");
    auto ca = read_key_and_cert(set.ca_key, set.ca_cert);
    EXPECT_TRUE(ca.is_ok());
    spec.common_name = "old";
    spec.not_before_seconds = -10 * 86400;
    spec.not_after_seconds = -86400;
    write(issue_cert(*ca, spec), "old");
    CertSpec twocn;
    twocn.common_name = "eve";
    twocn.extra_common_names = {"alpha"};
    twocn.client = true;
    write(issue_cert(*ca, twocn), "twocn");
    CertSpec noeku;
    noeku.common_name = "noeku";
    write(issue_cert(*ca, noeku), "noeku");
  }

  // Adds `cert` (host-NAME.pem, receiver.pem) to crl.pem; returns how the
  // certificate is named ("CN=alpha serial=0x...").
  std::string revoke(const std::filesystem::path& cert) const {
    auto r = revoke_certificate(set.ca_key, set.ca_cert, cert, set.crl);
    EXPECT_TRUE(r.is_ok()) << r.status().to_string();
    return r.is_ok() ? *r : "";
  }

  void write(const Result<KeyAndCert>& kc, const std::string& host) {
    ASSERT_TRUE(kc.is_ok()) << kc.status().to_string();
    ASSERT_TRUE(write_key_pem(set.host_key(host), kc->key.get()).is_ok());
    ASSERT_TRUE(write_cert_pem(set.host_cert(host), kc->cert.get()).is_ok());
  }

  std::shared_ptr<const TlsContext> server_ctx() const {
    TlsConfig c{set.ca_cert, set.receiver_cert, set.receiver_key, TlsRole::kServer, ""};
    auto ctx = TlsContext::create(c);
    EXPECT_TRUE(ctx.is_ok()) << ctx.status().to_string();
    return ctx.is_ok() ? *ctx : nullptr;
  }
  // host "" means: no client certificate at all. A host certificate that
  // cannot name a host (twocn, noeku) is sent unchecked.
  std::shared_ptr<const TlsContext> client_ctx(const std::string& host, const std::string& server_name = "",
                                               const std::string& crl_file = "") const {
    TlsConfig c{set.ca_cert, "", "", TlsRole::kClient, server_name};
    c.crl_file = crl_file;
    if (host.empty()) {
      c.no_client_certificate = true;
    } else {
      c.cert_file = set.host_cert(host);
      c.key_file = set.host_key(host);
      c.unchecked_client_certificate = host == "twocn" || host == "noeku";
    }
    auto ctx = TlsContext::create(c);
    EXPECT_TRUE(ctx.is_ok()) << ctx.status().to_string();
    return ctx.is_ok() ? *ctx : nullptr;
  }
};

// How one connection ended at the receiver.
struct ServedConnection {
  Status handshake;      // Connection::accept
  std::string identity;  // the client's namespace, when the handshake held
  Status end;            // the first failure after the handshake (OK: BYE)
};

// A receiver on 127.0.0.1:<ephemeral> that answers HELLO, echoes PUT as
// CHUNK, PING as PONG, and stops a connection at BYE or its first error.
class EchoReceiver {
 public:
  explicit EchoReceiver(std::shared_ptr<const TlsContext> ctx, ConnectionOptions options = {})
      : ctx_(std::move(ctx)), options_(options) {
    auto addr = io::SocketAddress::parse("127.0.0.1:0");
    auto l = io::Socket::listen(*addr, 64);
    EXPECT_TRUE(l.is_ok()) << l.status().to_string();
    listener_ = std::make_unique<io::Socket>(std::move(l).value());
    addr_ = *listener_->local_address();
    acceptor_ = std::thread([this] { accept_loop(); });
  }
  ~EchoReceiver() {
    ::shutdown(listener_->fd(), SHUT_RDWR);
    acceptor_.join();
    for (auto& t : workers_) t.join();
  }

  const io::SocketAddress& address() const { return addr_; }
  std::string host_port() const { return addr_.to_string(); }

  // Waits (up to 20 s) until `n` connections have ended and returns them.
  std::vector<ServedConnection> wait_for(std::size_t n) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, std::chrono::seconds(20), [&] { return served_.size() >= n; });
    return served_;
  }

 private:
  void accept_loop() {
    for (;;) {
      int fd = ::accept4(listener_->fd(), nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) return;
      workers_.emplace_back([this, fd] { serve(io::Socket::adopt(fd)); });
    }
  }
  void serve(io::Socket sock) {
    ServedConnection out;
    auto c = Connection::accept(std::move(sock), ctx_, options_);
    out.handshake = c.status();
    if (c.is_ok()) {
      out.identity = (*c)->peer_identity();
      out.end = run(**c);
    }
    std::lock_guard lock(mu_);
    served_.push_back(out);
    cv_.notify_all();
  }
  Status run(Connection& c) {
    HelloOk limits;
    limits.max_message_bytes = options_.max_message_bytes;
    auto hello = c.serve_hello(limits);
    if (!hello.is_ok()) return hello.status();
    for (;;) {
      auto m = c.recv();
      if (!m.is_ok()) return m.status();
      if (auto* put = std::get_if<Put>(&*m)) {
        RETURN_IF_ERROR(c.send(ChunkData{put->request_id, std::move(put->frame)}));
      } else if (auto* ping = std::get_if<Ping>(&*m)) {
        RETURN_IF_ERROR(c.send(Pong{ping->request_id}));
      } else if (std::holds_alternative<Bye>(*m)) {
        return Status::ok();
      } else {
        RETURN_IF_ERROR(c.send(Error{request_id_of(*m), Code::kUnsupported, "echo receiver"}));
      }
    }
  }

  std::shared_ptr<const TlsContext> ctx_;
  ConnectionOptions options_;
  std::unique_ptr<io::Socket> listener_;
  io::SocketAddress addr_;
  std::thread acceptor_;
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<ServedConnection> served_;
};

}  // namespace ferry::replication::testing
