// decode_kernels_test.cc: the decode kernels' own steps (cuda/decode_steps.cuh)
// run on the host over the grid the engine launches (kernel_emulator.h),
// against the CPU decoder: CPU frames decode to the same bytes; damaged
// frames (the fuzz corpus, seeded byte flips with and without repaired
// CRCs, truncations, hostile tables and block sizes) are refused in the
// same way (payload CRC, structure, hash) and accepted ones give the same
// bytes. And decode_fused's barrier: with real threads for a block's
// threads, an error another block records while this one starts is seen by
// all of its threads or none. Runs without a GPU.
#include <gtest/gtest.h>

#include <atomic>
#include <barrier>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <latch>
#include <mutex>
#include <random>
#include <thread>

#include "base/crc32c.h"
#include "codec/chunk_codec.h"
#include "codec/float_codec.h"
#include "tests/cuda/kernel_emulator.h"
#include "tests/testing/testing.h"

namespace ferry {
namespace {

namespace emu = gpu::emulator;
using Bytes = std::vector<std::byte>;

constexpr int kVersions[] = {kFloatPayloadV1, kFloatPayloadV2};

Bytes cpu_frame(const Bytes& data, DType dtype, int version) {
  ChunkEncoder enc;
  Bytes frame;
  enc.encode(data, dtype, frame, {.float_version = version});
  return frame;
}

// Three tensors of different scales in one chunk: a version 2 exponent
// plane takes several tables.
Bytes mixed_floats(std::size_t each, int width, bool bf16, std::uint64_t seed) {
  Bytes out;
  for (double sigma : {0.02, 3.0, 0.0004}) {
    const Bytes part = testing::normal_floats(each, width, bf16, sigma, seed++);
    out.insert(out.end(), part.begin(), part.end());
  }
  return out;
}

// The frames of a small checkpoint in payload `version`: coded and raw
// planes, tails, several blocks (version 1) and segments (version 2),
// several tables, chunks stored raw, one smaller than an element.
std::vector<Bytes> sample_frames(std::uint64_t seed, int version = kGpuFloatPayloadVersion) {
  return {cpu_frame(testing::normal_floats(3 * 16384 + 77, 2, true, 0.02, seed), DType::kBF16, version),
          cpu_frame(testing::normal_floats(20001, 2, false, 0.02, seed + 1), DType::kF16, version),
          cpu_frame(testing::normal_floats(9000, 4, false, 0.02, seed + 2), DType::kF32, version),
          cpu_frame(testing::random_bytes(5000, seed + 3), DType::kF8E4M3, version),
          cpu_frame(testing::random_bytes(3, seed + 4), DType::kF32, version),
          cpu_frame(testing::random_bytes(1, seed + 5), DType::kBF16, version),
          cpu_frame(mixed_floats(50001, 2, true, seed + 6), DType::kBF16, version)};
}

// How a decoder answered a frame, in the terms both decoders share.
enum class Verdict { kOk, kPayloadCrc, kStructure, kHash, kNotRun };

const char* name(Verdict v) {
  static const char* names[] = {"ok", "payload CRC", "structure", "hash", "not run"};
  return names[static_cast<int>(v)];
}

Verdict cpu_verdict(const Bytes& frame, Bytes& out) {
  ChunkDecoder dec;
  Status st = dec.decode(frame, out);
  if (st.is_ok()) return Verdict::kOk;
  const std::string& m = st.message();
  if (m.find("payload CRC mismatch") != std::string::npos) return Verdict::kPayloadCrc;
  if (m.find(" payload: ") != std::string::npos) return Verdict::kStructure;
  if (m.find("hash to") != std::string::npos) return Verdict::kHash;
  return Verdict::kNotRun;  // the header or the frame length: refused on the host by both engines
}

Verdict gpu_verdict(const emu::DecodeOutcome& o) {
  if (!o.on_gpu) return Verdict::kNotRun;
  switch (o.err) {
    case gpu::kDecOk:
      return Verdict::kOk;
    case gpu::kDecPayloadCrc:
      return Verdict::kPayloadCrc;
    case gpu::kDecStructure:
    case gpu::kDecBlock:
      return Verdict::kStructure;
    default:
      return Verdict::kHash;
  }
}

// Decodes every frame both ways and expects the same verdicts, and the same
// bytes where both accept. Returns how many frames the GPU steps ran.
int expect_same_verdicts(const std::vector<Bytes>& frames, const std::string& what) {
  const std::vector<emu::DecodeOutcome> got = emu::decode_batch(frames);
  int ran = 0;
  for (std::size_t i = 0; i < frames.size(); ++i) {
    Bytes want;
    Verdict cpu = cpu_verdict(frames[i], want), gpu = gpu_verdict(got[i]);
    if (gpu == Verdict::kNotRun) continue;  // zstd, empty, or a bad header: never on the GPU
    ++ran;
    EXPECT_EQ(name(gpu), name(cpu)) << what << " frame " << i << " (gpu plane " << got[i].plane << " block "
                                    << got[i].block << " check " << got[i].detail << ")";
    if (cpu == Verdict::kOk && gpu == Verdict::kOk) {
      EXPECT_TRUE(got[i].out == want) << what << " frame " << i;
    }
  }
  return ran;
}

// The frame with its payload replaced and both CRCs made right again, so a
// decoder gets past the CRC to the structure and the hash.
Bytes with_payload(const Bytes& frame, std::span<const std::byte> payload) {
  FrameHeader h = *parse_frame_header_only(frame);
  h.payload_bytes = static_cast<std::uint32_t>(payload.size());
  h.payload_crc = mask_crc(crc32c(payload));
  Bytes out(kFrameHeaderBytes);
  write_frame_header(h, std::span<std::byte, kFrameHeaderBytes>(out.data(), kFrameHeaderBytes));
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}

TEST(DecodeKernels, CpuFramesDecodeToTheSameBytes) {
  std::vector<Bytes> both;
  for (int version : kVersions) {
    const std::vector<Bytes> frames = sample_frames(testing::test_seed(), version);
    int planes = 0;
    for (const Bytes& f : frames) {
      const int v = codec_payload_version(parse_frame_header_only(f)->codec);
      if (v != 0) {
        EXPECT_EQ(v, version);
      }
      planes += v != 0;
    }
    EXPECT_GE(planes, 4) << "version " << version;
    EXPECT_EQ(expect_same_verdicts(frames, "cpu frames"), 7) << "version " << version;
    for (const emu::DecodeOutcome& o : emu::decode_batch(frames)) EXPECT_EQ(o.err, gpu::kDecOk);
    both.insert(both.end(), frames.begin(), frames.end());
  }
  // Both versions in one batch.
  EXPECT_EQ(expect_same_verdicts(both, "cpu frames, versions 1 and 2"), 14);
}

TEST(DecodeKernels, DamagedFramesGetTheCpuDecodersVerdict) {
  const std::uint64_t seed = testing::test_seed();
  std::mt19937_64 rng(seed);
  std::vector<Bytes> good = sample_frames(seed, kFloatPayloadV1);
  for (Bytes& f : sample_frames(seed, kFloatPayloadV2)) good.push_back(std::move(f));
  std::vector<Bytes> bad;
  for (const Bytes& f : good) {
    const std::span<const std::byte> payload(f.data() + kFrameHeaderBytes, f.size() - kFrameHeaderBytes);
    for (int trial = 0; trial < 40; ++trial) {
      Bytes p(payload.begin(), payload.end());
      const std::size_t at = rng() % p.size();
      // Early bytes hold modes, tables and block sizes: damage them more.
      const std::size_t where = trial % 2 ? at : at % std::min<std::size_t>(p.size(), 600);
      p[where] ^= static_cast<std::byte>(1u << (rng() % 8));
      bad.push_back(with_payload(f, p));
      Bytes flipped = f;  // CRC left as it was
      flipped[kFrameHeaderBytes + where] ^= std::byte{0x10};
      bad.push_back(std::move(flipped));
    }
    for (std::size_t cut : {std::size_t{1}, std::size_t{2}, std::size_t{33}, payload.size() / 2}) {
      if (cut < payload.size()) bad.push_back(with_payload(f, payload.first(payload.size() - cut)));
    }
  }
  EXPECT_GT(expect_same_verdicts(bad, "damaged"), 400);
}

TEST(DecodeKernels, HostileTablesAndBlockSizesAreRefusedAsTheCpuRefusesThem) {
  const Bytes f = sample_frames(testing::test_seed(), kFloatPayloadV1)[0];  // bf16, plane 0 coded, 4 blocks
  const Bytes payload(f.begin() + kFrameHeaderBytes, f.end());
  ASSERT_EQ(static_cast<int>(payload[0]), 1) << "the exponent plane should be coded";
  std::size_t k = 0;  // present symbols of plane 0
  for (int i = 0; i < 32; ++i) k += std::popcount(static_cast<unsigned>(payload[2 + i]));
  const std::size_t freqs = 2 + 32, stored = freqs + 2 * k;
  std::vector<Bytes> bad;
  auto edit = [&](auto&& change) {
    Bytes p = payload;
    change(p);
    bad.push_back(with_payload(f, p));
  };
  edit([](Bytes& p) { p[0] = std::byte{2}; });                      // unknown mode
  edit([](Bytes& p) { p[1] = std::byte{7}; });                      // unknown mode, plane 1
  edit([&](Bytes& p) { p[freqs] = p[freqs + 1] = std::byte{0}; });  // a zero frequency
  edit([&](Bytes& p) { p[freqs] = std::byte{0xff}; });              // frequencies over 4096
  edit([&](Bytes& p) { p[2] ^= std::byte{0x01}; });                 // a symbol more or less in the bitmap
  edit([&](Bytes& p) { p[stored] = std::byte{0x81}; });             // an odd stored size
  edit([&](Bytes& p) { p[stored + 1] = std::byte{0x7f}; });         // a stored size over the block
  edit([&](Bytes& p) { p[stored] = std::byte{0x10}, p[stored + 1] = std::byte{0}; });  // under the states
  edit([&](Bytes& p) { p.push_back(std::byte{0}); });  // a byte after the planes
  for (std::size_t cut = 1; cut < payload.size(); cut += payload.size() / 37 + 1)
    bad.push_back(with_payload(f, std::span(payload).first(cut)));  // truncated anywhere
  EXPECT_EQ(expect_same_verdicts(bad, "hostile"), static_cast<int>(bad.size()));
  for (const emu::DecodeOutcome& o : emu::decode_batch(bad)) EXPECT_NE(o.err, gpu::kDecOk);
}

// Version 2 structure (FORMAT.md 4.2) edited field by field: each refused
// as the CPU refuses it, and the frames the CPU accepts (more tables than
// segments use) decoded to the same bytes.
TEST(DecodeKernels, HostileVersion2PlanesAreRefusedAsTheCpuRefusesThem) {
  const std::uint64_t seed = testing::test_seed();
  const Bytes several =
      sample_frames(seed, kFloatPayloadV2)[6];                // bf16, 150003 elements: 10 segments, 3 blocks
  const Bytes one = sample_frames(seed, kFloatPayloadV2)[2];  // f32, 9000 elements: 1 segment, 1 block
  std::vector<Bytes> bad, fine;
  for (const Bytes* f : {&several, &one}) {
    const Bytes payload(f->begin() + kFrameHeaderBytes, f->end());
    ASSERT_EQ(static_cast<int>(payload[0]), 2) << "the exponent plane should be coded";
    const FrameHeader h = *parse_frame_header_only(*f);
    const std::size_t w = static_cast<std::size_t>(codec_element_width(h.codec)), n = h.raw_bytes / w;
    const std::size_t S = (n + 16383) / 16384, B = (n + 65535) / 65536;
    const std::size_t K = static_cast<std::size_t>(payload[w]);
    std::size_t pos = w + 1;
    for (std::size_t k = 0; k < K; ++k) {
      std::size_t present = 0;
      for (int i = 0; i < 32; ++i) present += std::popcount(static_cast<unsigned>(payload[pos + i]));
      pos += 32 + 2 * present;
    }
    const std::size_t tables_end = pos, sel = pos, stored = pos + (K > 1 ? S : 0);
    const std::size_t first_table = w + 1;
    if (f == &several) {
      ASSERT_GT(K, 1u) << "three scales should take several tables";
    }
    auto edit = [&](auto&& change) {
      Bytes p = payload;
      change(p);
      bad.push_back(with_payload(*f, p));
    };
    edit([](Bytes& p) { p[0] = std::byte{1}; });    // a version 1 mode in a version 2 payload
    edit([&](Bytes& p) { p[w] = std::byte{0}; });   // no table
    edit([&](Bytes& p) { p[w] = std::byte{17}; });  // too many tables
    edit([&](Bytes& p) { p[first_table + 32] = p[first_table + 33] = std::byte{0}; });  // a zero frequency
    edit([&](Bytes& p) { p[first_table + 33] = std::byte{0x7f}; });                     // over 4096
    if (K > 1) {
      edit([&](Bytes& p) { p[sel + S - 1] = static_cast<std::byte>(K); });  // a choice past the tables
      edit([&](Bytes& p) { p[w] = static_cast<std::byte>(K - 1); });        // a table fewer
    }
    edit([&](Bytes& p) { p[stored] = std::byte{0x81}; });      // an odd stored size
    edit([&](Bytes& p) { p[stored + 2] = std::byte{0x7f}; });  // over the block
    edit([&](Bytes& p) { std::fill_n(p.begin() + static_cast<std::ptrdiff_t>(stored), 4, std::byte{0}); });
    edit([&](Bytes& p) { p[stored + 4 * B] ^= std::byte{0x40}; });  // a state
    edit([](Bytes& p) { p.push_back(std::byte{0}); });              // a byte after the planes
    for (std::size_t cut = 1; cut < payload.size(); cut += payload.size() / 29 + 1)
      bad.push_back(with_payload(*f, std::span(payload).first(cut)));
    // Accepted by the CPU: a copy of table 0 added that no segment uses
    // (more tables than segments for a one-segment plane), and with K = 1
    // the choices written out as all zero.
    Bytes extra(payload.begin(), payload.begin() + static_cast<std::ptrdiff_t>(tables_end));
    extra[w] = static_cast<std::byte>(K + 1);
    std::size_t t0_end = first_table + 32;
    for (int i = 0; i < 32; ++i) t0_end += 2 * std::popcount(static_cast<unsigned>(payload[first_table + i]));
    extra.insert(extra.end(), payload.begin() + static_cast<std::ptrdiff_t>(first_table),
                 payload.begin() + static_cast<std::ptrdiff_t>(t0_end));
    if (K > 1) {
      extra.insert(extra.end(), payload.begin() + static_cast<std::ptrdiff_t>(sel),
                   payload.begin() + static_cast<std::ptrdiff_t>(stored));
    } else {
      extra.insert(extra.end(), S, std::byte{0});
    }
    extra.insert(extra.end(), payload.begin() + static_cast<std::ptrdiff_t>(stored), payload.end());
    fine.push_back(with_payload(*f, extra));
  }
  EXPECT_EQ(expect_same_verdicts(bad, "hostile version 2"), static_cast<int>(bad.size()));
  for (const emu::DecodeOutcome& o : emu::decode_batch(bad)) EXPECT_NE(o.err, gpu::kDecOk);
  EXPECT_EQ(expect_same_verdicts(fine, "version 2, extra table"), 2);
  for (const emu::DecodeOutcome& o : emu::decode_batch(fine)) EXPECT_EQ(o.err, gpu::kDecOk);
}

TEST(DecodeKernels, FuzzCorpusGetsTheCpuDecodersVerdict) {
  const char* src = std::getenv("FERRY_SOURCE_DIR");
  if (src == nullptr) GTEST_SKIP() << "FERRY_SOURCE_DIR not set (run through ctest)";
  const std::filesystem::path corpus = std::filesystem::path(src) / "tests/fuzz/corpus";
  std::vector<Bytes> frames;
  for (const auto& e : std::filesystem::directory_iterator(corpus / "frame"))
    frames.push_back(testing::read_file(e.path()));
  // float_decode inputs (fuzz_float_decode.cc: width, output size, payload)
  // as frames whose id is what the CPU decodes them to, when it does.
  for (const auto& e : std::filesystem::directory_iterator(corpus / "float_decode")) {
    const Bytes in = testing::read_file(e.path());
    ASSERT_GE(in.size(), 4u) << e.path();
    const int version = static_cast<int>(in[0]) / 3 % 2 ? kFloatPayloadV2 : kFloatPayloadV1;
    const int width = 1 << (static_cast<int>(in[0]) % 3);
    FrameHeader h;
    h.codec = planes_codec(width, version);
    h.dtype = width == 4 ? DType::kF32 : width == 2 ? DType::kBF16 : DType::kF8E4M3;
    h.raw_bytes = (static_cast<std::uint32_t>(in[1]) | static_cast<std::uint32_t>(in[2]) << 8 |
                   static_cast<std::uint32_t>(in[3]) << 16) %
                  ((1u << 20) + 1);
    const std::span<const std::byte> payload(in.data() + 4, in.size() - 4);
    Bytes out(h.raw_bytes);
    if (float_decode(payload, width, out, version).is_ok()) h.chunk_id = chunk_id(out);
    Bytes frame(kFrameHeaderBytes);
    h.payload_bytes = static_cast<std::uint32_t>(payload.size());
    h.payload_crc = mask_crc(crc32c(payload));
    write_frame_header(h, std::span<std::byte, kFrameHeaderBytes>(frame.data(), kFrameHeaderBytes));
    frame.insert(frame.end(), payload.begin(), payload.end());
    frames.push_back(std::move(frame));
  }
  EXPECT_GT(expect_same_verdicts(frames, "fuzz corpus"), 5);
}

// ---- decode_fused's barrier, with one real thread per GPU thread ----

// What a block's threads share: a barrier, one barrier and ballot word per
// warp, and the gate that holds threads 1.. back until thread 0 reaches
// its first barrier (where the test lets another block record an error).
struct ThreadedShared {
  explicit ThreadedShared(std::uint32_t threads) : block(threads), warps(threads / gpu::kWarpLanes) {}
  struct Warp {
    std::barrier<> bar{gpu::kWarpLanes};
    std::atomic<std::uint32_t> ballot[2] = {0, 0};
  };
  std::barrier<> block;
  std::vector<Warp> warps;
  std::latch gate{1};
  std::once_flag opened;
  std::function<void()> at_first_barrier;
  void open() {
    std::call_once(opened, [this] {
      at_first_barrier();
      gate.count_down();
    });
  }
};

struct ThreadedWarp {
  ThreadedShared::Warp* w;
  int lane;
  mutable unsigned round = 0;
  template <typename T>
  struct Each {
    T v{};
    T& operator[](int) { return v; }
    const T& operator[](int) const { return v; }
  };
  template <typename F>
  void each(F&& f) const {
    f(lane);
  }
  std::uint32_t ballot(const Each<bool>& pred) const {
    std::atomic<std::uint32_t>& word = w->ballot[round++ & 1];
    if (pred.v) word.fetch_or(1u << lane);
    w->bar.arrive_and_wait();
    const std::uint32_t m = word.load();
    w->bar.arrive_and_wait();
    if (lane == 0) word.store(0);  // reused two ballots later, after the next one's first barrier
    return m;
  }
  bool any(const Each<bool>& pred) const { return ballot(pred) != 0; }
};

struct ThreadedBlock {
  ThreadedShared* s;
  std::uint32_t t;
  std::uint32_t* barriers_passed;
  template <typename T>
  struct Each {
    explicit Each(const ThreadedBlock&) {}
    T v{};
    T& operator[](std::uint32_t) { return v; }
  };
  std::uint32_t size() const { return static_cast<std::uint32_t>(s->warps.size()) * gpu::kWarpLanes; }
  template <typename F>
  void each(F&& f) const {
    f(t);
  }
  void sync() const {
    if (t == 0) s->open();
    s->block.arrive_and_wait();
    ++*barriers_passed;
  }
  void add(std::uint32_t* p, std::uint32_t v) const { std::atomic_ref<std::uint32_t>(*p).fetch_add(v); }
  template <typename F>
  void each_warp(F&& f) const {
    f(t / gpu::kWarpLanes,
      ThreadedWarp{&s->warps[t / gpu::kWarpLanes], static_cast<int>(t % gpu::kWarpLanes)});
  }
};

TEST(DecodeKernels, BarrierIsUniformWhenAnotherBlockRecordsAnError) {
  const std::vector<Bytes> frames = {sample_frames(testing::test_seed(), kFloatPayloadV1)[0]};
  emu::DecodeBatch batch(frames);
  batch.crc_and_parse();
  gpu::DecChunk& c = batch.chunks()[0];
  ASSERT_EQ(c.err, gpu::kDecOk);
  ASSERT_GT(c.blocks, 1u);
  const std::uint32_t threads = gpu::kThreads;
  ThreadedShared shared(threads);
  // Thread 0 has started block 0 and is at its first barrier; the others
  // have not started yet. Now another block of the chunk fails.
  shared.at_first_barrier = [&c] { gpu::set_error(c, gpu::kDecBlock, 0, 1, 0); };
  std::vector<std::uint8_t> tile(gpu::kMaxWidth * gpu::kBlockSymbols);
  std::uint32_t err_seen = 0;
  std::vector<std::uint32_t> passed(threads, 0);
  std::vector<std::thread> pool;
  for (std::uint32_t t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      if (t != 0) shared.gate.wait();
      gpu::decode_fused_block(c, 0, tile.data(), err_seen, ThreadedBlock{&shared, t, &passed[t]});
      if (t == 0) shared.open();  // thread 0 returned before any barrier
      // An exited thread no longer holds the others at a barrier (as on a
      // GPU), so a non-uniform barrier shows as unequal counts, not a hang.
      shared.warps[t / gpu::kWarpLanes].bar.arrive_and_drop();
      shared.block.arrive_and_drop();
    });
  }
  for (std::thread& th : pool) th.join();
  for (std::uint32_t t = 1; t < threads; ++t)
    ASSERT_EQ(passed[t], passed[0]) << "thread " << t << " passed " << passed[t] << " barriers, thread 0 "
                                    << passed[0];
  EXPECT_EQ(c.err, gpu::kDecBlock);
}

}  // namespace
}  // namespace ferry
