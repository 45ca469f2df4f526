// receiver_net_test.cc: the DR receiver over real mTLS on 127.0.0.1 with a
// real local store: a push by hand (QUERY, PUT, COMMIT) acknowledged only
// once each chunk is durable, listing, namespaces kept apart, and clients it
// must refuse (oversized messages, random bytes, plaintext, no or foreign or
// expired certificates, deletion in append-only mode, connections over the
// limit) while another client keeps being served; and a compromised host's
// attacks on the store (manifests past the quota, too many snapshots, names
// with the store's temporary marker, created times far in the future, future
// dates to steer retention), each sent as crafted protocol messages and
// refused.
#include "replication/receiver.h"

#include <gtest/gtest.h>
#include <sys/socket.h>

#include <chrono>
#include <thread>

#include "base/clock.h"
#include "base/posix_file.h"
#include "codec/manifest.h"
#include "store/store_limits.h"
#include "tests/replication/receiver_fixture.h"
#include "tests/store/chunk_store_test_util.h"

namespace ferry::replication {
namespace {

using testing::closed_by_peer;
using testing::expect_serving;
using testing::raw_connect;
using testing::ReceiverSite;
namespace fs = std::filesystem;

// A site whose receiver announces append-only and whose store enforces it.
std::unique_ptr<ReceiverSite> append_only_site() {
  ReceiverOptions ro;
  ro.append_only = true;
  StoreOptions so;
  so.append_only = true;
  return std::make_unique<ReceiverSite>(ro, so);
}

TEST(ReceiverTest, PushByHandAcksOnlyDurableChunksThenListsTheSnapshot) {
  ReceiverSite site;
  ferry::testing::TempDir src;
  testing::make_tree(src.path(), ferry::testing::test_seed());
  auto tree = testing::pack_tree(src.path(), "llama-ft", 1200);
  ASSERT_GT(tree->frames.size(), 10u);

  auto c = site.connect("alpha");
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  auto missing = testing::query_missing(**c, *tree);
  ASSERT_TRUE(missing.is_ok()) << missing.status().to_string();
  EXPECT_EQ(missing->size(), tree->frames.size());

  std::size_t acks = 0;
  Status st = testing::push_by_hand(**c, *tree, "snap-1", [&](const PutAck& ack) {
    // have() answers only for durable chunks: the ack must not come earlier.
    auto have = site.store().have("alpha", std::span(&ack.chunk_id, 1));
    ASSERT_TRUE(have.is_ok());
    EXPECT_TRUE((*have)[0]) << "acknowledged before durable: " << to_hex(ack.chunk_id);
    ++acks;
  });
  ASSERT_TRUE(st.is_ok()) << st.to_string();
  EXPECT_EQ(acks, tree->frames.size());
  // Group commit: fewer syncs than chunks.
  EXPECT_LT(site.receiver().stats().syncs, tree->frames.size());

  missing = testing::query_missing(**c, *tree);
  ASSERT_TRUE(missing.is_ok());
  EXPECT_TRUE(missing->empty());

  ASSERT_TRUE((*c)->send(List{9}).is_ok());
  auto m = (*c)->recv();
  ASSERT_TRUE(m.is_ok()) << m.status().to_string();
  auto* list = std::get_if<ListReply>(&*m);
  ASSERT_NE(list, nullptr);
  ASSERT_EQ(list->snapshots.size(), 1u);
  EXPECT_EQ(list->snapshots[0].name, "snap-1");
  EXPECT_EQ(list->snapshots[0].logical_bytes, tree->manifest.logical_bytes());
  EXPECT_EQ(list->snapshots[0].file_count, tree->manifest.files.size());

  ASSERT_TRUE((*c)->send(Bye{}).is_ok());
  (*c)->close();
  site.receiver().stop();
  EXPECT_TRUE(site.log_contains("commit ns=alpha snapshot=snap-1"));
  EXPECT_TRUE(site.log_contains("job=llama-ft step=1200"));
  EXPECT_TRUE(site.log_contains("conn peer=127.0.0.1"));
}

TEST(ReceiverTest, ACorruptFrameIsRefusedAndTheConnectionGoesOn) {
  ReceiverSite site;
  ferry::testing::TempDir src;
  testing::make_tree(src.path(), 5);
  auto tree = testing::pack_tree(src.path());
  auto c = site.connect("alpha");
  ASSERT_TRUE(c.is_ok());
  std::vector<std::byte> bad = tree->frames[0].second;
  bad[bad.size() / 2] ^= std::byte{0x40};
  ASSERT_TRUE((*c)->send(Put{1, bad}).is_ok());
  auto m = (*c)->recv(10'000);
  ASSERT_TRUE(m.is_ok()) << m.status().to_string();
  auto* e = std::get_if<Error>(&*m);
  ASSERT_NE(e, nullptr) << message_name(*m);
  EXPECT_EQ(e->request_id, 1u);
  EXPECT_EQ(e->code, Code::kCorruption);
  auto have = site.store().have("alpha", std::span(&tree->frames[0].first, 1));
  ASSERT_TRUE(have.is_ok());
  EXPECT_FALSE((*have)[0]);
  expect_serving(**c);
}

// One PUT of `frame` and the receiver's answer to it.
Result<Message> put_once(Connection& c, std::uint64_t request_id, const std::vector<std::byte>& frame) {
  RETURN_IF_ERROR(c.send(Put{request_id, frame}));
  return c.recv(10'000);
}

TEST(ReceiverTest, AFlippedByteAnywhereInAFrameIsRefusedNamingTheChunk) {
  // A frame is an 88-byte header and a payload (it has no trailer). The
  // receiver checks each byte once, and one flipped byte anywhere must still
  // be refused with an ERROR that names the chunk: the true id, or, for a
  // flip inside the id field, the id the damaged header claims.
  ReceiverSite site;
  ferry::testing::TempDir src;
  testing::make_tree(src.path(), ferry::testing::test_seed());
  auto tree = testing::pack_tree(src.path());
  const auto& [id, frame] = tree->frames[0];
  ASSERT_GT(frame.size(), kFrameHeaderBytes + 1000);
  std::vector<std::size_t> positions;
  for (std::size_t i = 0; i < kFrameHeaderBytes; ++i) positions.push_back(i);
  const std::size_t payload = frame.size() - kFrameHeaderBytes;
  for (std::size_t at : {std::size_t{0}, std::size_t{1}, payload / 3, payload / 2, payload - 1})
    positions.push_back(kFrameHeaderBytes + at);
  constexpr std::size_t kIdField = 16;  // docs/FORMAT.md section 3: chunk id at bytes [16, 48)

  auto c = site.connect("alpha");
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  std::uint64_t request = 100;
  for (std::size_t pos : positions) {
    for (std::uint8_t mask : {0x01, 0x80}) {
      std::vector<std::byte> bad = frame;
      bad[pos] ^= std::byte{mask};
      Digest named = id;
      if (pos >= kIdField && pos < kIdField + kDigestBytes) named[pos - kIdField] ^= mask;
      auto m = put_once(**c, ++request, bad);
      ASSERT_TRUE(m.is_ok()) << "byte " << pos << ": " << m.status().to_string();
      auto* e = std::get_if<Error>(&*m);
      ASSERT_NE(e, nullptr) << "byte " << pos << " flipped by " << int(mask) << " was answered "
                            << message_name(*m);
      EXPECT_EQ(e->request_id, request);
      EXPECT_EQ(e->code, Code::kCorruption) << e->message;
      EXPECT_NE(e->message.find(to_hex(named)), std::string::npos)
          << "byte " << pos << " flipped by " << int(mask) << ": " << e->message;
    }
  }
  auto have = site.store().have("alpha", std::span(&id, 1));
  ASSERT_TRUE(have.is_ok());
  EXPECT_FALSE((*have)[0]) << "a damaged frame was stored";
  EXPECT_EQ(site.store().usage("alpha")->chunks, 0u);
  // The intact frame is then taken, on the same connection.
  auto m = put_once(**c, ++request, frame);
  ASSERT_TRUE(m.is_ok()) << m.status().to_string();
  auto* ack = std::get_if<PutAck>(&*m);
  ASSERT_NE(ack, nullptr) << message_name(*m);
  EXPECT_EQ(ack->chunk_id, id);
}

TEST(ReceiverTest, HostsSeeOnlyTheirOwnNamespace) {
  ReceiverSite site;
  ferry::testing::TempDir src;
  testing::make_tree(src.path(), 6);
  auto tree = testing::pack_tree(src.path());
  auto alpha = site.connect("alpha");
  ASSERT_TRUE(alpha.is_ok());
  ASSERT_TRUE(testing::push_by_hand(**alpha, *tree, "secret").is_ok());

  auto beta = site.connect("beta");
  ASSERT_TRUE(beta.is_ok());
  ASSERT_TRUE((*beta)->send(GetManifest{1, "secret"}).is_ok());
  auto m = (*beta)->recv();
  ASSERT_TRUE(m.is_ok());
  ASSERT_TRUE(std::holds_alternative<Error>(*m));
  EXPECT_EQ(std::get<Error>(*m).code, Code::kNotFound);

  ASSERT_TRUE((*beta)->send(GetChunk{2, {tree->frames[0].first}}).is_ok());
  m = (*beta)->recv();
  ASSERT_TRUE(m.is_ok());
  ASSERT_TRUE(std::holds_alternative<Error>(*m)) << message_name(*m);
  EXPECT_EQ(std::get<Error>(*m).code, Code::kNotFound);

  // Beta's QUERY does not learn what alpha holds.
  auto missing = testing::query_missing(**beta, *tree);
  ASSERT_TRUE(missing.is_ok());
  EXPECT_EQ(missing->size(), tree->frames.size());

  ASSERT_TRUE((*beta)->send(List{3}).is_ok());
  m = (*beta)->recv();
  ASSERT_TRUE(m.is_ok());
  EXPECT_TRUE(std::get<ListReply>(*m).snapshots.empty());

  // A host deleting another's snapshot deletes nothing.
  ASSERT_TRUE((*beta)->send(Delete{4, "secret"}).is_ok());
  m = (*beta)->recv();
  ASSERT_TRUE(m.is_ok());
  EXPECT_TRUE(std::holds_alternative<Error>(*m));
  auto list = site.store().list("alpha");
  ASSERT_TRUE(list.is_ok());
  EXPECT_EQ(list->size(), 1u);
}

TEST(ReceiverTest, AppendOnlyRefusesDeleteAndPruneOthersMayDelete) {
  auto site = append_only_site();
  ferry::testing::TempDir src;
  testing::make_tree(src.path(), 7);
  auto tree = testing::pack_tree(src.path());
  auto c = site->connect("alpha");
  ASSERT_TRUE(c.is_ok());
  ASSERT_TRUE(testing::push_by_hand(**c, *tree, "keep-me").is_ok());
  ASSERT_TRUE((*c)->send(Delete{1, "keep-me"}).is_ok());
  auto m = (*c)->recv();
  ASSERT_TRUE(m.is_ok());
  ASSERT_TRUE(std::holds_alternative<Error>(*m));
  EXPECT_EQ(std::get<Error>(*m).code, Code::kPermissionDenied);
  EXPECT_NE(std::get<Error>(*m).message.find("append-only"), std::string::npos);
  ASSERT_TRUE((*c)->send(Prune{2, 1, 0, false}).is_ok());
  m = (*c)->recv();
  ASSERT_TRUE(m.is_ok());
  ASSERT_TRUE(std::holds_alternative<Error>(*m));
  EXPECT_EQ(std::get<Error>(*m).code, Code::kPermissionDenied);
  expect_serving(**c);
  EXPECT_EQ(site->store().list("alpha")->size(), 1u);

  // Without append-only, the same DELETE removes the snapshot.
  ReceiverSite open_site;
  auto d = open_site.connect("alpha");
  ASSERT_TRUE(d.is_ok());
  ASSERT_TRUE(testing::push_by_hand(**d, *tree, "drop-me").is_ok());
  ASSERT_TRUE((*d)->send(Delete{1, "drop-me"}).is_ok());
  m = (*d)->recv();
  ASSERT_TRUE(m.is_ok()) << m.status().to_string();
  ASSERT_TRUE(std::holds_alternative<Removed>(*m)) << message_name(*m);
  EXPECT_TRUE(open_site.store().list("alpha")->empty());
}

TEST(ReceiverTest, HostileClientsAreRefusedWhileAnotherIsServed) {
  ReceiverSite site;
  auto good = site.connect("alpha");
  ASSERT_TRUE(good.is_ok()) << good.status().to_string();

  {  // random bytes instead of a TLS handshake
    io::Socket s = raw_connect(site.receiver().address());
    auto junk = ferry::testing::random_bytes(4096, ferry::testing::test_seed());
    ASSERT_EQ(::send(s.fd(), junk.data(), junk.size(), MSG_NOSIGNAL), 4096);
    EXPECT_TRUE(closed_by_peer(s));
  }
  expect_serving(**good);
  {  // a plaintext client speaking the protocol without TLS
    io::Socket s = raw_connect(site.receiver().address());
    auto hello = encode_message_bytes(Hello{});
    ASSERT_EQ(::send(s.fd(), hello.data(), hello.size(), MSG_NOSIGNAL), static_cast<ssize_t>(hello.size()));
    EXPECT_TRUE(closed_by_peer(s));
  }
  expect_serving(**good);
  // No certificate, another CA, expired: refused at the handshake.
  for (const char* host : {"", "mallory", "old"}) {
    auto c = Connection::connect(site.receiver().address(), site.certs.client_ctx(host));
    Status st = c.is_ok() ? (*c)->hello("ferry test").status() : c.status();
    EXPECT_FALSE(st.is_ok()) << "host '" << host << "' was served";
    EXPECT_EQ(st.code(), Code::kPermissionDenied) << host << ": " << st.to_string();
    expect_serving(**good);
  }
  {  // a message over the announced limit: an ERROR, then closed
    auto c = site.connect("beta");
    ASSERT_TRUE(c.is_ok());
    Put huge{1, std::vector<std::byte>(kDefaultMaxMessageBytes + 1)};
    Status sent = (*c)->send(huge);
    auto m = (*c)->recv(10'000);
    if (m.is_ok()) {
      ASSERT_TRUE(std::holds_alternative<Error>(*m)) << message_name(*m);
      EXPECT_EQ(std::get<Error>(*m).code, Code::kResourceExhausted);
    } else {
      EXPECT_FALSE(sent.is_ok() && m.status().code() == Code::kTimeout) << m.status().to_string();
    }
  }
  expect_serving(**good);
  {  // a client that breaks protocol (a server's message) is closed
    auto c = site.connect("beta");
    ASSERT_TRUE(c.is_ok());
    ASSERT_TRUE((*c)->send(HelloOk{}).is_ok());
    auto m = (*c)->recv(10'000);
    ASSERT_TRUE(m.is_ok());
    ASSERT_TRUE(std::holds_alternative<Error>(*m));
    EXPECT_EQ(std::get<Error>(*m).request_id, 0u);
  }
  expect_serving(**good);
  site.receiver().stop();
  if (HasFailure()) {
    for (const std::string& l : site.log()) std::fprintf(stderr, "receiver log: %s\n", l.c_str());
  }
  EXPECT_GE(site.receiver().stats().connections_refused, 5u);
  EXPECT_TRUE(site.log_contains("refused peer="));
}

TEST(ReceiverTest, ConnectionsOverTheLimitAreRefusedWithAnError) {
  ReceiverOptions ro;
  ro.max_connections = 2;
  ReceiverSite site(ro);
  auto a = site.connect("alpha");
  auto b = site.connect("beta");
  ASSERT_TRUE(a.is_ok() && b.is_ok());
  auto c = Connection::connect(site.receiver().address(), site.certs.client_ctx("alpha"));
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  auto hello = (*c)->hello("ferry test");
  ASSERT_FALSE(hello.is_ok());
  EXPECT_EQ(hello.status().code(), Code::kResourceExhausted) << hello.status().to_string();
  expect_serving(**a);
  expect_serving(**b);

  // Once one leaves, a new client is served.
  ASSERT_TRUE((*a)->send(Bye{}).is_ok());
  (*a)->close();
  bool served = false;
  for (int i = 0; i < 100 && !served; ++i) {
    auto d = Connection::connect(site.receiver().address(), site.certs.client_ctx("alpha"));
    served = d.is_ok() && (*d)->hello("ferry test").is_ok();
    if (!served) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(served);
}

TEST(ReceiverTest, StopClosesOpenConnectionsPromptly) {
  ReceiverSite site;
  auto a = site.connect("alpha");
  ASSERT_TRUE(a.is_ok());
  io::Socket half = raw_connect(site.receiver().address());  // mid-handshake
  const auto start = std::chrono::steady_clock::now();
  site.receiver().stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  auto m = (*a)->recv(5'000);
  EXPECT_FALSE(m.is_ok());
}

// ---- A compromised host attacks the store: every attack is refused ----

constexpr std::int64_t kHourNs = 3600 * kNanosPerSecond;

// COMMIT `manifest` as `name`: OK for COMMIT_OK, else the ERROR as a Status.
Status commit_raw(Connection& c, const std::string& name, std::vector<std::byte> manifest) {
  RETURN_IF_ERROR(c.send(Commit{77, name, std::move(manifest)}));
  ASSIGN_OR_RETURN(Message m, c.recv(10'000));
  if (auto* e = std::get_if<Error>(&m)) return status_from_error(*e);
  if (!std::holds_alternative<CommitOk>(m)) {
    return Status::internal("COMMIT answered with " + std::string(message_name(m)));
  }
  return Status::ok();
}

// A manifest naming no chunks (real hosts never send one like it).
std::vector<std::byte> junk_manifest(std::int64_t created_ns, std::size_t path_bytes = 20) {
  return ferry::testing::chunkless_manifest(16, path_bytes, created_ns);
}

// The frames and manifest of a small checkpoint-like tree made from `seed`.
std::unique_ptr<testing::PackedTree> packed_tree(std::uint64_t seed) {
  ferry::testing::TempDir src;
  testing::make_tree(src.path(), seed);
  return testing::pack_tree(src.path());
}

// Bytes of the namespace's packs and snapshot files on disk.
std::uint64_t namespace_bytes_on_disk(const fs::path& dir) {
  std::uint64_t total = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (e.is_regular_file() && e.path().filename() != "index") total += e.file_size();
  }
  return total;
}

TEST(ReceiverAttackTest, ManifestsCannotGrowANamespacePastItsQuota) {
  StoreOptions so;
  so.quota_bytes = 256u << 10;
  ReceiverSite site({}, so);
  auto tree = packed_tree(21);
  auto c = site.connect("alpha");
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  // Chunks until the quota refuses one...
  Status refused;
  for (std::size_t i = 0; i < tree->frames.size() && refused.is_ok(); ++i) {
    ASSERT_TRUE((*c)->send(Put{100 + i, tree->frames[i].second}).is_ok());
    auto m = (*c)->recv(10'000);
    ASSERT_TRUE(m.is_ok()) << m.status().to_string();
    if (auto* e = std::get_if<Error>(&*m)) refused = status_from_error(*e);
  }
  ASSERT_EQ(refused.code(), Code::kResourceExhausted) << "the tree must outgrow the quota";
  // ...then twelve 64 KiB manifests that name no chunks at all.
  std::size_t refused_commits = 0;
  for (int i = 0; i < 12; ++i) {
    Status st = commit_raw(**c, "junk-" + std::to_string(i), junk_manifest(1'700'000'000'000'000'000, 4096));
    if (st.is_ok()) continue;
    ++refused_commits;
    EXPECT_EQ(st.code(), Code::kResourceExhausted) << st.to_string();
    EXPECT_NE(st.message().find("quota"), std::string::npos) << st.message();
  }
  EXPECT_GE(refused_commits, 11u);
  auto usage = site.store().usage("alpha");
  ASSERT_TRUE(usage.is_ok());
  EXPECT_LE(usage->stored_bytes, so.quota_bytes);
  EXPECT_LE(namespace_bytes_on_disk(site.store_dir() / "alpha"), so.quota_bytes);
  expect_serving(**c);
}

TEST(ReceiverAttackTest, SnapshotsPerNamespaceAreLimited) {
  StoreOptions so;
  so.max_snapshots = 2;
  ReceiverSite site({}, so);
  auto c = site.connect("alpha");
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  ASSERT_TRUE(commit_raw(**c, "a", junk_manifest(1)).is_ok());
  ASSERT_TRUE(commit_raw(**c, "b", junk_manifest(2)).is_ok());
  Status st = commit_raw(**c, "c", junk_manifest(3));
  EXPECT_EQ(st.code(), Code::kResourceExhausted) << st.to_string();
  EXPECT_NE(st.message().find("limit"), std::string::npos) << st.message();
  EXPECT_EQ(site.store().list("alpha")->size(), 2u);
  expect_serving(**c);
  static_assert(kMaxSnapshotsPerNamespace <= kMaxListedSnapshots, "one LIST must name every snapshot");
}

TEST(ReceiverAttackTest, SnapshotNamesWithTheTemporaryMarkerAreRefused) {
  // Append-only: such a snapshot would have been acknowledged, then deleted
  // as an interrupted write when the store next opened.
  auto site = append_only_site();
  auto tree = packed_tree(22);
  auto c = site->connect("alpha");
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  Status st = testing::push_by_hand(**c, *tree, "x.ferry-tmp-1");
  EXPECT_EQ(st.code(), Code::kInvalidArgument) << st.to_string();
  EXPECT_NE(st.message().find("reserved"), std::string::npos) << st.message();
  EXPECT_EQ(commit_raw(**c, "snap.manifest.ferry-tmp-4242-0", junk_manifest(1)).code(),
            Code::kInvalidArgument);
  ASSERT_TRUE(commit_raw(**c, "kept", serialize_manifest(tree->manifest)).is_ok());
  for (const auto& e : fs::directory_iterator(site->store_dir() / "alpha" / "snapshots")) {
    EXPECT_EQ(e.path().filename().string().find(kTempFileMarker), std::string::npos) << e.path();
  }
  auto list = site->store().list("alpha");
  ASSERT_TRUE(list.is_ok());
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].name, "kept");
  expect_serving(**c);
}

TEST(ReceiverAttackTest, CreatedTimesFarInTheFutureAreRefused) {
  ReceiverSite site;
  auto c = site.connect("alpha");
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  constexpr std::int64_t k2096Ns = 3'976'300'800LL * kNanosPerSecond;  // 2096-01-01
  for (int i = 0; i < 3; ++i) {
    Status st = commit_raw(**c, "from-2096-" + std::to_string(i), junk_manifest(k2096Ns));
    EXPECT_EQ(st.code(), Code::kInvalidArgument) << st.to_string();
    EXPECT_NE(st.message().find("ahead of the receiver's clock"), std::string::npos) << st.message();
  }
  EXPECT_TRUE(site.store().list("alpha")->empty());
  expect_serving(**c);
}

TEST(ReceiverAttackTest, RetentionFollowsTheReceiversClockNotTheHosts) {
  ReceiverSite site;
  auto tree = packed_tree(23);
  auto c = site.connect("alpha");
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  // Three empty snapshots of the real ones' job (retention counts each job
  // on its own) dated as far ahead as the receiver allows, before the three
  // real ones.
  const std::int64_t ahead = wall_ns() + (kMaxCreatedAheadSeconds * kNanosPerSecond) - kHourNs;
  for (int i = 0; i < 3; ++i)
    ASSERT_TRUE(commit_raw(**c, "fake-" + std::to_string(i),
                           ferry::testing::chunkless_manifest(16, 20, ahead, "job-1"))
                    .is_ok());
  for (int i = 0; i < 3; ++i)
    ASSERT_TRUE(testing::push_by_hand(**c, *tree, "real-" + std::to_string(i)).is_ok());
  const std::vector<std::string> fakes = {"fake-0", "fake-1", "fake-2"};
  // The host's own dry run and the operator's prune agree: the fakes go.
  ASSERT_TRUE((*c)->send(Prune{9, 3, 0, true}).is_ok());
  auto m = (*c)->recv(10'000);
  ASSERT_TRUE(m.is_ok()) << m.status().to_string();
  auto* removed = std::get_if<Removed>(&*m);
  ASSERT_NE(removed, nullptr) << message_name(*m);
  EXPECT_EQ(removed->snapshots, fakes);
  auto pruned = site.store().prune("alpha", {.keep_last = 3}, wall_ns(), Actor::kOperator);
  ASSERT_TRUE(pruned.is_ok()) << pruned.status().to_string();
  EXPECT_EQ(pruned->removed, fakes);
  EXPECT_EQ(pruned->kept, (std::vector<std::string>{"real-0", "real-1", "real-2"}));
}

}  // namespace
}  // namespace ferry::replication
