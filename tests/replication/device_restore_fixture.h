// device_restore_fixture.h: what the restore-to-memory tests share: a
// safetensors writer (the official layout: 8-byte little-endian header
// length, JSON header padded with spaces to 8 bytes, data section), a small
// checkpoint directory with bf16/fp16/fp32/int64 shards and other files, and
// a check that a DeviceRestoreResult equals the files it came from, tensor by
// tensor (name, dtype, shape, bytes) and file by file; packing into a local
// store, with delta frames against an earlier checkpoint; and a way to
// damage one frame of an archive.
#pragma once

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "codec/archive.h"
#include "codec/packer.h"
#include "codec/safetensors.h"
#include "replication/device_restore.h"
#include "store/local_store.h"
#include "tests/testing/testing.h"

namespace ferry::replication::testing_restore {

namespace fs = std::filesystem;

struct TestTensor {
  std::string name;
  std::string dtype;  // "BF16", "F16", "F32", "I64"
  std::vector<std::uint64_t> shape;
  std::vector<std::byte> data;
};

inline std::size_t dtype_width(const std::string& dtype) {
  if (dtype == "F32" || dtype == "I32") return 4;
  if (dtype == "I64" || dtype == "F64") return 8;
  if (dtype == "U8" || dtype == "I8" || dtype == "BOOL") return 1;
  return 2;
}

// Values N(0, 0.02) for float dtypes, random bytes otherwise.
inline TestTensor make_tensor(const std::string& name, const std::string& dtype,
                              std::vector<std::uint64_t> shape, std::uint64_t seed) {
  std::uint64_t n = 1;
  for (std::uint64_t d : shape) n *= d;
  TestTensor t{name, dtype, std::move(shape), {}};
  if (dtype == "BF16" || dtype == "F16") {
    t.data = ferry::testing::normal_floats(n, 2, dtype == "BF16", 0.02, seed);
  } else if (dtype == "F32") {
    t.data = ferry::testing::normal_floats(n, 4, false, 0.02, seed);
  } else {
    t.data = ferry::testing::random_bytes(n * dtype_width(dtype), seed);
  }
  return t;
}

inline void write_safetensors(const fs::path& path, const std::vector<TestTensor>& tensors) {
  std::string json = "{\"__metadata__\":{\"format\":\"pt\"}";
  std::uint64_t at = 0;
  for (const TestTensor& t : tensors) {
    json += ",\"" + t.name + "\":{\"dtype\":\"" + t.dtype + "\",\"shape\":[";
    for (std::size_t i = 0; i < t.shape.size(); ++i) json += (i ? "," : "") + std::to_string(t.shape[i]);
    json += "],\"data_offsets\":[" + std::to_string(at) + "," + std::to_string(at + t.data.size()) + "]}";
    at += t.data.size();
  }
  json += "}";
  while (json.size() % 8 != 0) json += ' ';
  std::vector<std::byte> out(8);
  const std::uint64_t n = json.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<std::byte>(n >> (8 * i));
  for (char c : json) out.push_back(static_cast<std::byte>(c));
  for (const TestTensor& t : tensors) out.insert(out.end(), t.data.begin(), t.data.end());
  ferry::testing::write_file(path, out);
}

// Moves every element of a float tensor by a small step in its last place
// (what `step` optimizer steps do to the bits); other dtypes stay.
inline TestTensor stepped(TestTensor t, int step) {
  if (step == 0 || (t.dtype != "BF16" && t.dtype != "F16" && t.dtype != "F32")) return t;
  const std::size_t w = dtype_width(t.dtype);
  for (std::size_t i = 0; i + w <= t.data.size(); i += w) {
    std::uint32_t v = 0;
    for (std::size_t k = 0; k < w; ++k) v |= static_cast<std::uint32_t>(t.data[i + k]) << (8 * k);
    const int d = static_cast<int>((i / w * 2654435761u + static_cast<unsigned>(step)) % 7) - 3;
    v += static_cast<std::uint32_t>(d * (w == 4 ? 64 : 1));
    for (std::size_t k = 0; k < w; ++k) t.data[i + k] = static_cast<std::byte>(v >> (8 * k));
  }
  return t;
}

// A checkpoint directory: two shards of transformer-like tensors (odd sizes
// included, so tensors straddle chunks), a config, a torch.save-like blob,
// an empty file. step > 0: the same checkpoint `step` training steps later
// (float tensors moved a little, the rest as it was), whose chunks become
// delta frames against step 0's.
inline void make_checkpoint(const fs::path& dir, std::uint64_t seed, int step = 0) {
  auto make_tensor = [step](const std::string& name, const std::string& dtype,
                            std::vector<std::uint64_t> shape, std::uint64_t s) {
    return stepped(testing_restore::make_tensor(name, dtype, std::move(shape), s), step);
  };
  fs::create_directories(dir / "sub");
  write_safetensors(dir / "model-00001-of-00002.safetensors",
                    {make_tensor("embed.weight", "BF16", {512, 96}, seed + 1),
                     make_tensor("layers.0.attn.q.weight", "BF16", {96, 96}, seed + 2),
                     make_tensor("layers.0.norm.weight", "BF16", {96}, seed + 3),
                     make_tensor("layers.0.mlp.up.weight", "BF16", {384, 97}, seed + 4)});
  write_safetensors(
      dir / "sub/model-00002-of-00002.safetensors",
      {make_tensor("lm_head.weight", "F32", {300, 96}, seed + 5),
       make_tensor("layers.1.attn.k.weight", "F16", {96, 33}, seed + 6),
       make_tensor("step", "I64", {}, seed + 7), make_tensor("positions", "I64", {1000}, seed + 8)});
  ferry::testing::write_file(dir / "config.json", [] {
    std::string s = "{\"hidden_size\": 96, \"num_layers\": 2}";
    std::vector<std::byte> b(s.size());
    std::memcpy(b.data(), s.data(), s.size());
    return b;
  }());
  ferry::testing::write_file(dir / "optimizer.pt", ferry::testing::random_bytes(150'001, seed + 9));
  ferry::testing::write_file(dir / "sub/empty", {});
}

// Every tensor and file of `r` equals the file under `src` it names: for
// safetensors files, every tensor of the file's own header (name, dtype,
// shape, bytes at its offsets) is there once; other files are there whole.
// Host memory only (device=cpu). Returns how many tensors were compared.
// Puts every frame into a local store.
class StoreSink final : public FrameSink {
 public:
  StoreSink(ChunkStore& store, std::string ns) : store_(store), ns_(std::move(ns)) {}
  Status put_frame(const ManifestFile&, const ManifestChunk& c, std::span<const std::byte> frame) override {
    return store_.put(ns_, frame, &c.id).status();
  }

 private:
  ChunkStore& store_;
  std::string ns_;
};

// Packs `src` into the local store at store_dir and commits the snapshot.
// With delta_from (an earlier checkpoint already in the store), chunks the
// store holds are not sent again and the rest become delta frames against
// the earlier checkpoint's chunks where that pays (PackOptions::delta_from).
inline Status pack_into_store(const fs::path& src, const fs::path& store_dir, const std::string& ns,
                              const std::string& snapshot, PackOptions o, const fs::path& delta_from = {}) {
  ASSIGN_OR_RETURN(std::unique_ptr<ChunkStore> store,
                   open_local_store(store_dir, {.log = [](std::string_view) {}}));
  ASSIGN_OR_RETURN(std::vector<PackSource> sources, list_pack_sources(src));
  if (!delta_from.empty()) {
    o.delta_from = delta_from;
    o.need = [&](std::span<const Digest> ids) -> Result<std::vector<bool>> {
      ASSIGN_OR_RETURN(std::vector<bool> need, store->have(ns, ids));
      need.flip();
      return need;
    };
  }
  StoreSink sink(*store, ns);
  ASSIGN_OR_RETURN(Manifest m, pack_files(sources, o, sink));
  return store->commit_snapshot(ns, snapshot, serialize_manifest(m));
}

// The delta chunks of a manifest.
inline std::size_t delta_chunks(const Manifest& m) {
  std::size_t n = 0;
  for (const ManifestFile& f : m.files)
    for (const ManifestChunk& c : f.chunks) n += is_delta_codec(static_cast<Codec>(c.codec));
  return n;
}

inline std::size_t expect_restored_equals(const DeviceRestoreResult& r, const fs::path& src) {
  std::map<std::string, const RestoredTensor*> by_key;
  for (const RestoredTensor& t : r.tensors) {
    EXPECT_EQ(t.device.kind, Device::Kind::kCpu) << t.name;
    EXPECT_TRUE(by_key.emplace(t.file + "\n" + t.name, &t).second) << "twice: " << t.name;
  }
  std::size_t compared = 0, tensor_files = 0;
  for (const auto& e : fs::recursive_directory_iterator(src)) {
    if (!e.is_regular_file()) continue;
    const std::string rel = fs::relative(e.path(), src).generic_string();
    const std::vector<std::byte> bytes = ferry::testing::read_file(e.path());
    auto layout = read_safetensors_layout(e.path());
    if (e.path().extension() == ".safetensors" && layout.is_ok() && !layout->tensors.empty()) {
      ++tensor_files;
      for (const TensorInfo& ti : layout->tensors) {
        auto it = by_key.find(rel + "\n" + ti.name);
        if (it == by_key.end()) {
          ADD_FAILURE() << rel << ": tensor " << ti.name << " not restored";
          continue;
        }
        const RestoredTensor& t = *it->second;
        EXPECT_EQ(t.dtype, ti.dtype_name) << ti.name;
        EXPECT_EQ(t.shape, std::vector<std::int64_t>(ti.shape.begin(), ti.shape.end())) << ti.name;
        EXPECT_EQ(t.bytes, ti.bytes()) << ti.name;
        EXPECT_TRUE(t.owner != nullptr) << ti.name;
        // The data section is aligned, so a tensor keeps its offset's alignment.
        EXPECT_EQ(reinterpret_cast<std::uintptr_t>(t.data) % kRestoreDataAlignment,
                  (ti.begin - layout->data_offset) % kRestoreDataAlignment)
            << ti.name;
        EXPECT_TRUE(t.bytes == ti.bytes() && std::memcmp(t.data, bytes.data() + ti.begin, t.bytes) == 0)
            << rel << ": tensor " << ti.name << " differs";
        by_key.erase(it);
        ++compared;
      }
      continue;
    }
    bool found = false;
    for (const RestoredFile& f : r.files) {
      if (f.path != rel) continue;
      found = true;
      EXPECT_EQ(f.size, bytes.size()) << rel;
      EXPECT_TRUE(f.size == bytes.size() && (f.size == 0 || std::memcmp(f.data, bytes.data(), f.size) == 0))
          << rel << " differs";
    }
    EXPECT_TRUE(found) << rel << " not restored";
  }
  EXPECT_TRUE(by_key.empty()) << by_key.size() << " tensors restored that the files do not hold";
  EXPECT_EQ(r.report.tensors, r.tensors.size());
  EXPECT_EQ(r.report.files, r.files.size() + tensor_files);
  return compared;
}

// Flips one bit in the middle of the payload of the second chunk of the
// first file with two or more chunks (only safetensors files when
// `safetensors_only`), in the .ferry archive at `archive`. Returns that
// chunk's id in hex, or "" (with a test failure) when no file qualifies.
inline std::string damage_second_chunk(const fs::path& archive, bool safetensors_only) {
  std::string chunk_hex;
  std::uint64_t at = 0;
  {
    auto reader = ArchiveReader::open(archive);
    EXPECT_TRUE(reader.is_ok()) << reader.status().to_string();
    if (!reader.is_ok()) return "";
    const Manifest& m = reader->manifest();
    for (std::size_t f = 0; f < m.files.size() && chunk_hex.empty(); ++f) {
      if (m.files[f].chunks.size() < 2) continue;
      if (safetensors_only && m.files[f].layout != LayoutKind::kSafetensors) continue;
      const ManifestChunk& c = m.files[f].chunks[1];
      chunk_hex = to_hex(c.id);
      at = reader->frame_offset(f, 1) + kFrameHeaderBytes + c.frame_bytes / 2;
    }
  }
  EXPECT_FALSE(chunk_hex.empty()) << archive << " has no file of two or more chunks to damage";
  if (chunk_hex.empty()) return "";
  auto bytes = ferry::testing::read_file(archive);
  bytes[at] ^= std::byte{0x01};
  ferry::testing::write_file(archive, bytes);
  return chunk_hex;
}

}  // namespace ferry::replication::testing_restore
