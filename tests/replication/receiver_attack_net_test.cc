// receiver_attack_net_test.cc: attacks on the DR receiver's connections and
// identities, each against a real Receiver over real mTLS on 127.0.0.1:
// a flood of connections that never start TLS (they must not lock a real
// host out, even one from the same address), one host holding every
// connection, revoked certificates (a CRL the receiver reloads without a
// restart, and one a host checks the receiver against), certificates that
// do not name exactly one host, error messages that would carry the
// receiver's paths, and listings too long for one reply.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <thread>
#include <vector>

#include "replication/cert_gen.h"
#include "replication/receiver.h"
#include "tests/replication/receiver_fixture.h"
#include "tests/store/chunk_store_test_util.h"

namespace ferry::replication {
namespace {

using testing::closed_by_peer;
using testing::expect_serving;
using testing::raw_connect;
using testing::ReceiverSite;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// `host` connects and says HELLO: OK, or why the receiver refused it.
Status try_host(ReceiverSite& site, const std::string& host) {
  auto c = Connection::connect(site.receiver().address(), site.certs.client_ctx(host));
  return c.is_ok() ? (*c)->hello("ferry test").status() : c.status();
}

// Retries `host` until the receiver refuses it (the CRL took effect) or
// `seconds` pass; the last refusal.
Status wait_until_refused(ReceiverSite& site, const std::string& host, int seconds) {
  const auto until = Clock::now() + std::chrono::seconds(seconds);
  Status st;
  while ((st = try_host(site, host)).is_ok() && Clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return st;
}

TEST(ReceiverAttackTest, ConnectionsThatNeverStartTlsCannotLockHostsOut) {
  ReceiverSite site;  // the defaults: 64 served, kMaxPendingHandshakes pending
  const io::SocketAddress& addr = site.receiver().address();
  std::vector<io::Socket> flood;
  for (std::size_t i = 0; i < kMaxPendingHandshakes + 100; ++i) flood.push_back(raw_connect(addr));
  // A real host from the same address is served while the flood holds on,
  // and again after more of it arrives.
  for (int round = 0; round < 3; ++round) {
    auto c = site.connect("alpha");
    ASSERT_TRUE(c.is_ok()) << "round " << round << ": " << c.status().to_string();
    auto listed = list_snapshots(**c);
    ASSERT_TRUE(listed.is_ok()) << listed.status().to_string();
    for (int i = 0; i < 40; ++i) flood.push_back(raw_connect(addr));
  }
  EXPECT_GE(site.receiver().stats().handshakes_dropped, 100u);
  // What is left of the flood goes at the short handshake deadline, not
  // after the client's 15 s.
  const auto start = Clock::now();
  EXPECT_TRUE(closed_by_peer(flood.back())) << std::strerror(errno);
  EXPECT_LT(Clock::now() - start, std::chrono::milliseconds(kDefaultReceiverHandshakeTimeoutMs + 3000));
  EXPECT_TRUE(site.log_contains("handshake dropped"));
}

TEST(ReceiverAttackTest, OneHostCannotHoldEveryConnection) {
  ReceiverOptions ro;
  ro.max_connections = 8;
  ro.max_connections_per_namespace = 2;
  ReceiverSite site(ro);
  auto a1 = site.connect("alpha");
  auto a2 = site.connect("alpha");
  ASSERT_TRUE(a1.is_ok() && a2.is_ok());
  Status third = try_host(site, "alpha");
  EXPECT_EQ(third.code(), Code::kResourceExhausted) << third.to_string();
  EXPECT_NE(third.message().find("namespace alpha"), std::string::npos) << third.message();
  auto b = site.connect("beta");
  ASSERT_TRUE(b.is_ok()) << b.status().to_string();
  expect_serving(**a1);
  expect_serving(**b);
  // A slot comes back when its connection ends.
  ASSERT_TRUE((*a1)->send(Bye{}).is_ok());
  (*a1)->close();
  bool served = false;
  for (int i = 0; i < 100 && !served; ++i) {
    served = try_host(site, "alpha").is_ok();
    if (!served) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(served);
}

TEST(ReceiverAttackTest, ARevokedHostIsRefusedOnceTheCrlChangesWithoutARestart) {
  ReceiverOptions ro;
  ro.crl_reload_interval_ms = 100;
  ReceiverSite site(ro, {}, /*with_crl=*/true);
  auto before = site.connect("alpha");
  ASSERT_TRUE(before.is_ok()) << before.status().to_string();

  const std::string revoked = site.certs.revoke(site.certs.set.host_cert("alpha"));
  ASSERT_NE(revoked.find("CN=alpha serial=0x"), std::string::npos) << revoked;
  Status st = wait_until_refused(site, "alpha", 10);
  EXPECT_EQ(st.code(), Code::kPermissionDenied) << st.to_string();
  EXPECT_TRUE(try_host(site, "beta").is_ok());
  expect_serving(**before);  // served connections keep going
  // The log names the certificate and why.
  bool named = false;
  for (const std::string& l : site.log()) {
    named = named || (l.find("refused") != std::string::npos && l.find(revoked) != std::string::npos &&
                      l.find("certificate revoked") != std::string::npos);
  }
  EXPECT_TRUE(named) << "no refusal naming " << revoked;
  EXPECT_TRUE(site.log_contains("tls_reload result=ok"));
}

TEST(ReceiverAttackTest, ReloadTlsTakesANewCrlAtOnceAndKeepsTheOldOneOnABadFile) {
  ReceiverOptions ro;
  ro.crl_reload_interval_ms = 0;  // only reload_tls(), as SIGHUP calls it
  ReceiverSite site(ro, {}, /*with_crl=*/true);
  site.certs.revoke(site.certs.set.host_cert("beta"));
  EXPECT_TRUE(try_host(site, "beta").is_ok()) << "no reload yet";
  ASSERT_TRUE(site.receiver().reload_tls().is_ok());
  EXPECT_EQ(try_host(site, "beta").code(), Code::kPermissionDenied);
  // A CRL from another CA is refused by the reload, naming the file; the
  // CRL in use stays.
  auto other = make_ca("other CA");
  ASSERT_TRUE(other.is_ok());
  auto foreign = make_crl(*other, {});
  ASSERT_TRUE(foreign.is_ok());
  ASSERT_TRUE(write_crl_pem(site.certs.set.crl, foreign->get()).is_ok());
  Status reload = site.receiver().reload_tls();
  EXPECT_EQ(reload.code(), Code::kInvalidArgument) << reload.to_string();
  EXPECT_NE(reload.message().find(site.certs.set.crl.string()), std::string::npos) << reload.message();
  EXPECT_EQ(try_host(site, "beta").code(), Code::kPermissionDenied);
  EXPECT_TRUE(try_host(site, "alpha").is_ok());
}

TEST(ReceiverAttackTest, CrlsThatWouldRefuseEveryoneFailAtStart) {
  testing::TestCerts certs;
  auto ca = read_key_and_cert(certs.set.ca_key, certs.set.ca_cert);
  ASSERT_TRUE(ca.is_ok());
  auto expired = make_crl(*ca, {}, /*days=*/-1);
  ASSERT_TRUE(expired.is_ok());
  const fs::path path = certs.dir.path() / "expired-crl.pem";
  ASSERT_TRUE(write_crl_pem(path, expired->get()).is_ok());
  TlsConfig c{certs.set.ca_cert, certs.set.receiver_cert, certs.set.receiver_key, TlsRole::kServer, ""};
  c.crl_file = path;
  auto ctx = TlsContext::create(c);
  ASSERT_FALSE(ctx.is_ok());
  EXPECT_NE(ctx.status().message().find("expired"), std::string::npos) << ctx.status().to_string();
  c.crl_file = certs.set.receiver_cert;  // a certificate, not a CRL
  ctx = TlsContext::create(c);
  ASSERT_FALSE(ctx.is_ok());
  EXPECT_NE(ctx.status().message().find("holds no PEM X509 CRL"), std::string::npos)
      << ctx.status().to_string();
}

TEST(ReceiverAttackTest, AHostRefusesARevokedReceiver) {
  ReceiverSite site;
  const std::string revoked = site.certs.revoke(site.certs.set.receiver_cert);
  auto c = Connection::connect(site.receiver().address(),
                               site.certs.client_ctx("alpha", "", site.certs.set.crl.string()));
  ASSERT_FALSE(c.is_ok());
  EXPECT_EQ(c.status().code(), Code::kPermissionDenied) << c.status().to_string();
  EXPECT_NE(c.status().message().find(revoked), std::string::npos) << c.status().to_string();
  EXPECT_NE(c.status().message().find("the receiver's certificate"), std::string::npos);
}

TEST(ReceiverAttackTest, CertificatesThatDoNotNameOneHostAreRefused) {
  ReceiverSite site;
  auto good = site.connect("alpha");
  ASSERT_TRUE(good.is_ok());
  // Two CNs ("eve", then "alpha"): not mapped to either namespace.
  Status two = try_host(site, "twocn");
  EXPECT_EQ(two.code(), Code::kPermissionDenied) << two.to_string();
  // No clientAuth extended key usage.
  Status noeku = try_host(site, "noeku");
  EXPECT_EQ(noeku.code(), Code::kPermissionDenied) << noeku.to_string();
  expect_serving(**good);
  site.receiver().stop();
  EXPECT_TRUE(site.log_contains("more than one subject CN"));
  EXPECT_TRUE(site.log_contains("lacks the clientAuth extended key usage"));
  EXPECT_TRUE(site.store().list("alpha")->empty());
  // A host's own such certificate fails at its start, not at the receiver.
  TlsConfig own{site.certs.set.ca_cert, site.certs.set.host_cert("noeku"), site.certs.set.host_key("noeku"),
                TlsRole::kClient, ""};
  auto ctx = TlsContext::create(own);
  ASSERT_FALSE(ctx.is_ok());
  EXPECT_NE(ctx.status().message().find("clientAuth"), std::string::npos) << ctx.status().to_string();
}

TEST(ReceiverAttackTest, ErrorsSentToHostsNameTheChunkNotTheReceiversPaths) {
  ReceiverSite site;
  ferry::testing::TempDir src;
  testing::make_tree(src.path(), 31);
  auto tree = testing::pack_tree(src.path());
  auto c = site.connect("alpha");
  ASSERT_TRUE(c.is_ok());
  ASSERT_TRUE(testing::push_by_hand(**c, *tree, "snap").is_ok());
  // Damage every pack on disk: reading a chunk now fails with the pack's path.
  for (const auto& e : fs::recursive_directory_iterator(site.store_dir() / "alpha")) {
    if (e.is_regular_file() && e.path().extension() == ".pack") fs::resize_file(e.path(), 100);
  }
  const Digest id = tree->frames.back().first;
  ASSERT_TRUE((*c)->send(GetChunk{3, {id}}).is_ok());
  auto m = (*c)->recv(10'000);
  ASSERT_TRUE(m.is_ok()) << m.status().to_string();
  auto* e = std::get_if<Error>(&*m);
  ASSERT_NE(e, nullptr) << message_name(*m);
  EXPECT_EQ(e->message.find('/'), std::string::npos) << e->message;
  EXPECT_NE(e->message.find("chunk " + to_hex(id)), std::string::npos) << e->message;
  expect_serving(**c);
  EXPECT_TRUE(site.log_contains(site.store_dir().string())) << "the receiver's log keeps the path";
}

// Commits `n` snapshots that name no chunks, created a second apart.
void commit_junk(Connection& c, int n) {
  for (int i = 0; i < n; ++i) {
    const std::int64_t created = 1'700'000'000'000'000'000 + i * 1'000'000'000LL;
    ASSERT_TRUE(
        c.send(Commit{100u + i, "s-" + std::to_string(i), ferry::testing::chunkless_manifest(2, 10, created)})
            .is_ok());
    auto m = c.recv(10'000);
    ASSERT_TRUE(m.is_ok() && std::holds_alternative<CommitOk>(*m));
  }
}

TEST(ReceiverAttackTest, ListIsAnsweredInPagesAndOldClientsStillGetOneReply) {
  ReceiverOptions ro;
  ro.list_page_snapshots = 3;
  ReceiverSite site(ro);
  auto c = site.connect("alpha");
  ASSERT_TRUE(c.is_ok());
  ASSERT_EQ((*c)->version(), kPagedListVersion);
  commit_junk(**c, 10);
  // One page: three snapshots and a cursor.
  ASSERT_TRUE((*c)->send(List{1, true, ""}).is_ok());
  auto m = (*c)->recv(10'000);
  ASSERT_TRUE(m.is_ok());
  auto* page = std::get_if<ListReply>(&*m);
  ASSERT_NE(page, nullptr) << message_name(*m);
  EXPECT_EQ(page->snapshots.size(), 3u);
  EXPECT_FALSE(page->next.empty());
  // Every page, in the receiver's order (oldest first).
  auto all = list_snapshots(**c);
  ASSERT_TRUE(all.is_ok()) << all.status().to_string();
  ASSERT_EQ(all->size(), 10u);
  for (int i = 0; i < 10; ++i) EXPECT_EQ((*all)[i].name, "s-" + std::to_string(i));
  // A cursor the receiver never gave is refused; the connection goes on.
  ASSERT_TRUE((*c)->send(List{2, true, "not a cursor"}).is_ok());
  m = (*c)->recv(10'000);
  ASSERT_TRUE(m.is_ok() && std::holds_alternative<Error>(*m));
  EXPECT_EQ(std::get<Error>(*m).code, Code::kInvalidArgument);
  expect_serving(**c);

  // A client of protocol version 1 gets every snapshot in one reply.
  auto old = Connection::connect(site.receiver().address(), site.certs.client_ctx("alpha"));
  ASSERT_TRUE(old.is_ok());
  ASSERT_TRUE((*old)->send(Hello{1, 1, "ferry 0.0 (version 1)"}).is_ok());
  m = (*old)->recv(10'000);
  ASSERT_TRUE(m.is_ok() && std::holds_alternative<HelloOk>(*m));
  EXPECT_EQ(std::get<HelloOk>(*m).version, 1);
  ASSERT_TRUE((*old)->send(List{5}).is_ok());
  m = (*old)->recv(10'000);
  ASSERT_TRUE(m.is_ok());
  auto* one = std::get_if<ListReply>(&*m);
  ASSERT_NE(one, nullptr) << message_name(*m);
  EXPECT_EQ(one->snapshots.size(), 10u);
  EXPECT_FALSE(one->paged);
}

}  // namespace
}  // namespace ferry::replication
