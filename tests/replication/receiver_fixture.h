// receiver_fixture.h: what the receiver and restore tests share: a real
// Receiver on 127.0.0.1 over a real local store in a scratch directory, with
// real mTLS certificates (tls_fixture.h), and a client that speaks the
// protocol by hand (QUERY, PUT, COMMIT) with frames from the real packer.
#pragma once

#include <gtest/gtest.h>
#include <sys/socket.h>

#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "codec/manifest.h"
#include "codec/packer.h"
#include "replication/connection.h"
#include "replication/receiver.h"
#include "store/local_store.h"
#include "tests/replication/tls_fixture.h"
#include "tests/testing/testing.h"

namespace ferry::replication::testing {

namespace fs = std::filesystem;

// Frames of one packed tree, in order, plus its manifest.
struct PackedTree : FrameSink {
  std::vector<std::pair<Digest, std::vector<std::byte>>> frames;
  Manifest manifest;
  Status put_frame(const ManifestFile&, const ManifestChunk& c, std::span<const std::byte> frame) override {
    frames.emplace_back(c.id, std::vector<std::byte>(frame.begin(), frame.end()));
    return Status::ok();
  }
};

inline std::unique_ptr<PackedTree> pack_tree(const fs::path& src, const std::string& job = "job-1",
                                             std::uint64_t step = 100) {
  auto tree = std::make_unique<PackedTree>();
  auto sources = list_pack_sources(src);
  EXPECT_TRUE(sources.is_ok());
  PackOptions o;
  o.chunk_bytes = 64u << 10;
  o.job = job;
  o.step = step;
  o.created_ns = 1'700'000'000'000'000'000;
  auto m = pack_files(*sources, o, *tree);
  EXPECT_TRUE(m.is_ok()) << m.status().to_string();
  if (m) tree->manifest = *m;
  return tree;
}

// A small checkpoint-like tree: float shards, nested dirs, empty files.
inline void make_tree(const fs::path& root, std::uint64_t seed) {
  fs::create_directories(root / "model");
  fs::create_directories(root / "optim/deep");
  for (int i = 0; i < 5; ++i) {
    ferry::testing::write_file(root / "model" / ("w" + std::to_string(i) + ".bin"),
                               ferry::testing::normal_floats(20'000 + 17'000 * i, 2, true, 0.02, seed + i));
  }
  ferry::testing::write_file(root / "optim/deep/adam.bin",
                             ferry::testing::normal_floats(90'000, 4, false, 1e-3, seed + 9));
  ferry::testing::write_file(root / "optim/empty", {});
  ferry::testing::write_file(root / "empty2", {});
  ferry::testing::write_file(root / "one", {std::byte{7}});
  ferry::testing::write_file(root / "text.json", ferry::testing::random_bytes(3000, seed + 11));
}

// Certificates, a local store and a Receiver, all under one temp dir.
class ReceiverSite {
 public:
  // with_crl: the receiver loads certs.set.crl (which revokes nothing until
  // certs.revoke()).
  explicit ReceiverSite(ReceiverOptions o = {}, StoreOptions so = {}, bool with_crl = false) {
    so.log = [](std::string_view) {};
    auto store = open_local_store(dir.path() / "store", so);
    FERRY_CHECK(store.is_ok());
    store_ = std::move(store).value();
    o.listen = "127.0.0.1:0";
    o.tls.ca_file = certs.set.ca_cert;
    o.tls.cert_file = certs.set.receiver_cert;
    o.tls.key_file = certs.set.receiver_key;
    if (with_crl) o.tls.crl_file = certs.set.crl;
    o.log = [this](std::string_view line) {
      std::lock_guard lock(mu_);
      log_.emplace_back(line);
    };
    options_ = o;
    receiver_ = std::make_unique<Receiver>(*store_, o);
    Status st = receiver_->start();
    EXPECT_TRUE(st.is_ok()) << st.to_string();
  }

  // Stops the receiver (dropping every connection) and starts a new one on
  // the same port over the same store.
  Status restart() {
    const std::uint16_t port = receiver_->port();
    receiver_->stop();
    receiver_.reset();
    ReceiverOptions o = options_;
    o.listen = "127.0.0.1:" + std::to_string(port);
    receiver_ = std::make_unique<Receiver>(*store_, o);
    return receiver_->start();
  }

  ChunkStore& store() { return *store_; }
  Receiver& receiver() { return *receiver_; }
  fs::path store_dir() const { return dir.path() / "store"; }
  std::vector<std::string> log() {
    std::lock_guard lock(mu_);
    return log_;
  }
  bool log_contains(const std::string& needle) {
    for (const std::string& l : log()) {
      if (l.find(needle) != std::string::npos) return true;
    }
    return false;
  }

  // A connection as `host` ("" for none), through HELLO.
  Result<std::unique_ptr<Connection>> connect(const std::string& host) {
    ASSIGN_OR_RETURN(auto c, Connection::connect(receiver_->address(), certs.client_ctx(host)));
    ASSIGN_OR_RETURN(HelloOk ok, c->hello("ferry test"));
    EXPECT_EQ(ok.namespace_name, host);
    return c;
  }

  ferry::testing::TempDir dir;
  TestCerts certs;

 private:
  // Declared before the receiver, so they outlive its connection threads,
  // which log until the receiver (destroyed first) has joined them.
  std::mutex mu_;
  std::vector<std::string> log_;
  ReceiverOptions options_;
  std::unique_ptr<ChunkStore> store_;
  std::unique_ptr<Receiver> receiver_;
};

// The client still gets answers (a PING).
inline void expect_serving(Connection& c) {
  ASSERT_TRUE(c.send(Ping{42}).is_ok());
  auto m = c.recv(10'000);
  ASSERT_TRUE(m.is_ok()) << m.status().to_string();
  ASSERT_TRUE(std::holds_alternative<Pong>(*m));
  EXPECT_EQ(std::get<Pong>(*m).request_id, 42u);
}

// A raw TCP connection to the receiver (no TLS).
inline io::Socket raw_connect(const io::SocketAddress& addr) {
  auto s = io::Socket::tcp_for(addr);
  EXPECT_TRUE(s.is_ok());
  EXPECT_EQ(::connect(s->fd(), addr.get(), addr.size()), 0);
  return std::move(s).value();
}

// Reads until the receiver closes (true) or 10 s pass (false).
inline bool closed_by_peer(const io::Socket& s) {
  timeval tv{10, 0};
  ::setsockopt(s.fd(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  char buf[4096];
  for (;;) {
    ssize_t n = ::recv(s.fd(), buf, sizeof buf, 0);
    if (n == 0) return true;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno == ECONNRESET;
  }
}

// QUERY for every id of `tree`; the ids the receiver says it lacks.
inline Result<std::vector<Digest>> query_missing(Connection& c, const PackedTree& tree) {
  Query q;
  q.request_id = 7;
  for (const auto& [id, frame] : tree.frames) q.ids.push_back(id);
  RETURN_IF_ERROR(c.send(q));
  ASSIGN_OR_RETURN(Message m, c.recv());
  auto* r = std::get_if<QueryReply>(&m);
  if (!r) return Status::internal("QUERY answered with " + std::string(message_name(m)));
  std::vector<Digest> missing;
  for (std::size_t i = 0; i < r->missing.size(); ++i) {
    if (r->missing[i]) missing.push_back(q.ids[i]);
  }
  return missing;
}

// PUTs every frame (pipelined, within the window), then COMMITs `name`.
// on_ack runs as each acknowledgement arrives.
inline Status push_by_hand(Connection& c, const PackedTree& tree, const std::string& name,
                           const std::function<void(const PutAck&)>& on_ack = {}) {
  constexpr std::size_t kWindow = 16;
  std::size_t sent = 0, acked = 0;
  while (acked < tree.frames.size()) {
    while (sent < tree.frames.size() && sent - acked < kWindow) {
      RETURN_IF_ERROR(c.send(Put{1000 + sent, tree.frames[sent].second}));
      ++sent;
    }
    ASSIGN_OR_RETURN(Message m, c.recv());
    if (auto* e = std::get_if<Error>(&m)) return status_from_error(*e);
    auto* ack = std::get_if<PutAck>(&m);
    if (!ack) return Status::internal("PUT answered with " + std::string(message_name(m)));
    if (ack->request_id != 1000 + acked) return Status::internal("acknowledgement out of order");
    if (ack->chunk_id != tree.frames[acked].first) return Status::internal("acknowledged the wrong chunk");
    if (on_ack) on_ack(*ack);
    ++acked;
  }
  RETURN_IF_ERROR(c.send(Commit{5, name, serialize_manifest(tree.manifest)}));
  ASSIGN_OR_RETURN(Message m, c.recv());
  if (auto* e = std::get_if<Error>(&m)) return status_from_error(*e);
  if (!std::holds_alternative<CommitOk>(m))
    return Status::internal("COMMIT answered with " + std::string(message_name(m)));
  return Status::ok();
}

}  // namespace ferry::replication::testing
