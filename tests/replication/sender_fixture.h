// sender_fixture.h: what the sender's tests share: a DR site (certificates
// from create_cert_set, a local store in a temp dir, a Receiver on
// 127.0.0.1 that can be stopped and restarted on its port), push options for
// it, a safetensors writer, and a check that a committed snapshot rebuilds
// the source files byte for byte from the store.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

#include <filesystem>
#include <map>
#include <memory>
#include <string>

#include "base/posix_file.h"
#include "codec/chunk_codec.h"
#include "codec/manifest.h"
#include "codec/packer.h"
#include "replication/cert_gen.h"
#include "replication/receiver.h"
#include "replication/sender.h"
#include "store/local_store.h"
#include "tests/testing/testing.h"

namespace ferry::replication::testing_support {

namespace fs = std::filesystem;
namespace testing = ::ferry::testing;

inline constexpr const char* kHost = "host-a";

// Certificates, a store and a receiver on 127.0.0.1, all under one temp dir.
class Site {
 public:
  // `options.log` is replaced by a silent one.
  explicit Site(const fs::path& dir, const CertSet& certs, StoreOptions options = {})
      : dir_(dir), certs_(certs) {
    options.log = [](std::string_view) {};
    auto store = open_local_store(dir / "store", options);
    FERRY_CHECK(store.is_ok());
    store_ = std::move(store).value();
  }
  Status start(std::uint16_t port = 0) {
    ReceiverOptions o;
    o.listen = "127.0.0.1:" + std::to_string(port);
    o.tls.ca_file = certs_.ca_cert;
    o.tls.cert_file = certs_.receiver_cert;
    o.tls.key_file = certs_.receiver_key;
    o.log = [](std::string_view) {};
    receiver_ = std::make_unique<Receiver>(*store_, o);
    return receiver_->start();
  }
  void stop() { receiver_->stop(); }
  std::uint16_t port() const { return receiver_->port(); }
  std::string target() const { return "127.0.0.1:" + std::to_string(port()); }
  ChunkStore& store() { return *store_; }
  const Receiver& receiver() const { return *receiver_; }

 private:
  fs::path dir_;
  CertSet certs_;
  std::unique_ptr<ChunkStore> store_;
  std::unique_ptr<Receiver> receiver_;
};

class SenderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    CertSetOptions co;
    co.hosts = {kHost};
    auto certs = create_cert_set(dir_ / "certs", co);
    ASSERT_TRUE(certs.is_ok()) << certs.status().to_string();
    certs_ = *certs;
    site_ = std::make_unique<Site>(dir_ / "site", certs_);
    ASSERT_TRUE(site_->start().is_ok());
  }

  PushOptions options(const std::string& snapshot) const {
    PushOptions o;
    o.targets = {site_->target()};
    o.tls.ca_file = certs_.ca_cert;
    o.tls.cert_file = certs_.host_cert(kHost);
    o.tls.key_file = certs_.host_key(kHost);
    o.snapshot = snapshot;
    o.chunk_bytes = 256u << 10;
    o.created_ns = 1'000'000'000;
    o.retry.initial_backoff_ms = 20;
    o.retry.max_backoff_ms = 200;
    return o;
  }

  Result<PushReport> push_dir(const fs::path& src, const PushOptions& o) {
    auto sources = list_pack_sources(src);
    if (!sources) return sources.status();
    ASSIGN_OR_RETURN(auto reports, push(*sources, o));
    if (reports.size() != 1) return Status::internal("expected one report");
    return reports[0];
  }

  testing::TempDir dir_;
  CertSet certs_;
  std::unique_ptr<Site> site_;
};

// A safetensors file of `n` BF16 tensors of `elems` elements each; tensors
// listed in `changed` get other values. The header is padded so tensor data
// starts on a 4 KiB boundary.
inline void write_safetensors(const fs::path& p, int n, std::size_t elems, const std::set<int>& changed,
                              std::uint64_t seed) {
  nlohmann::json h = nlohmann::json::object();
  const std::uint64_t bytes = elems * 2;
  for (int i = 0; i < n; ++i) {
    char name[32];
    std::snprintf(name, sizeof name, "layer%03d.weight", i);
    h[name] = {{"dtype", "BF16"}, {"shape", {elems}}, {"data_offsets", {i * bytes, (i + 1) * bytes}}};
  }
  std::string text = h.dump();
  text.resize(4096 - 8, ' ');
  std::vector<std::byte> out(8 + text.size());
  for (int i = 0; i < 8; ++i) out[i] = static_cast<std::byte>(text.size() >> (8 * i));
  std::memcpy(out.data() + 8, text.data(), text.size());
  for (int i = 0; i < n; ++i) {
    auto t = testing::normal_floats(elems, 2, true, 0.02, seed * 1000 + i + (changed.contains(i) ? 500 : 0));
    out.insert(out.end(), t.begin(), t.end());
  }
  testing::write_file(p, out);
}

// Every file of `src` equals what snapshot `name` in `store` rebuilds, chunk
// by chunk through ChunkDecoder (which verifies each chunk's id), compared
// with the file's bytes at the chunk's offset.
inline void expect_snapshot_equals(ChunkStore& store, const std::string& name, const fs::path& src) {
  auto bytes = store.manifest(kHost, name);
  ASSERT_TRUE(bytes.is_ok()) << bytes.status().to_string();
  auto m = parse_manifest(*bytes);
  ASSERT_TRUE(m.is_ok()) << m.status().to_string();
  auto sources = list_pack_sources(src);
  ASSERT_TRUE(sources.is_ok());
  ASSERT_EQ(m->files.size(), sources->size());
  ChunkDecoder decoder;
  std::map<Digest, std::vector<std::byte>> decoded;  // one decode per distinct id
  std::vector<std::byte> piece;
  for (std::size_t i = 0; i < m->files.size(); ++i) {
    const ManifestFile& f = m->files[i];
    EXPECT_EQ(f.path, (*sources)[i].rel_path);
    EXPECT_EQ(f.size, fs::file_size((*sources)[i].path)) << f.path;
    auto fd = open_fd((*sources)[i].path, O_RDONLY);
    ASSERT_TRUE(fd.is_ok());
    for (const auto& c : f.chunks) {
      auto it = decoded.find(c.id);
      if (it == decoded.end()) {
        auto frame = store.get(kHost, c.id);
        ASSERT_TRUE(frame.is_ok()) << f.path << " @" << c.offset << ": " << frame.status().to_string();
        EXPECT_EQ(frame->size(), c.frame_bytes) << f.path << " @" << c.offset;
        std::vector<std::byte> out;
        ASSERT_TRUE(decoder.decode(*frame, out, &c.id).is_ok());
        it = decoded.emplace(c.id, std::move(out)).first;
      }
      piece.resize(c.length);
      ASSERT_TRUE(pread_exact(fd->get(), piece, c.offset, (*sources)[i].path).is_ok());
      ASSERT_TRUE(piece == it->second) << f.path << " differs in the chunk at " << c.offset;
    }
  }
}

}  // namespace ferry::replication::testing_support
