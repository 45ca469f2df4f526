// safetensors_test.cc: the safetensors header reader against the real corpus
// files and hand-built headers, one for each validation rule.
#include "codec/safetensors.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "codec/limits.h"
#include "tests/testing/testing.h"

namespace ferry {
namespace {

// Expects `text` to contain `sub`, printing `text` when it does not.
#define EXPECT_HAS(text, sub) EXPECT_NE(std::string(text).find(sub), std::string::npos) << "in: " << (text)

// A safetensors file: length prefix, `header` (padded with spaces to
// `pad_to`), then `data_bytes` bytes of data.
std::vector<std::byte> make_file(const std::string& header, std::size_t data_bytes, std::size_t pad_to = 1) {
  std::string h = header;
  while (h.size() % pad_to != 0) h += ' ';
  std::vector<std::byte> out(8 + h.size() + data_bytes, std::byte{0x5a});
  std::uint64_t n = h.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<std::byte>(n >> (8 * i));
  std::memcpy(out.data() + 8, h.data(), h.size());
  return out;
}

Result<SafetensorsLayout> parse(const std::vector<std::byte>& file) {
  return parse_safetensors(file, file.size());
}

// Parses, expects failure with `code`, returns the message.
std::string error_of(const std::string& header, std::size_t data_bytes, Code code = Code::kCorruption) {
  auto r = parse(make_file(header, data_bytes));
  EXPECT_FALSE(r.is_ok()) << header;
  if (r.is_ok()) return "";
  EXPECT_EQ(r.status().code(), code) << r.status().to_string();
  return r.status().message();
}

TEST(Safetensors, ParsesCorpusFiles) {
  int seen = 0;
  for (const auto& f : testing::corpus_files()) {
    if (!looks_like_safetensors(f.path)) continue;
    auto r = read_safetensors_layout(f.path);
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();
    const SafetensorsLayout& l = *r;
    EXPECT_EQ(l.data_offset, 8 + l.header_bytes);
    EXPECT_EQ(l.file_bytes, std::filesystem::file_size(f.path));
    EXPECT_TRUE(l.metadata.count("source")) << f.name;
    std::uint64_t pos = l.data_offset;
    std::map<std::string, int> dtypes;
    for (const TensorInfo& t : l.tensors) {
      EXPECT_EQ(t.begin, pos) << t.name;
      pos = t.end;
      std::uint64_t elems = 1;
      for (auto d : t.shape) elems *= d;
      EXPECT_EQ(elems * t.element_bytes, t.bytes()) << t.name;
      ++dtypes[t.dtype_name];
    }
    EXPECT_EQ(pos, l.file_bytes);
    if (f.name == "tfjs_human.safetensors") {
      ++seen;
      EXPECT_EQ(l.tensors.size(), 664u);
      EXPECT_EQ(dtypes["F16"], 392);
      EXPECT_EQ(dtypes["F32"], 272);
      for (const TensorInfo& t : l.tensors) {
        ASSERT_TRUE(t.dtype.has_value()) << t.name;
        EXPECT_EQ(*t.dtype, t.dtype_name == "F16" ? DType::kF16 : DType::kF32);
      }
    } else if (f.name == "bf16_standin.safetensors") {
      ++seen;
      EXPECT_EQ(l.tensors.size(), 894u);
      EXPECT_EQ(dtypes["BF16"], 894);
      for (const TensorInfo& t : l.tensors) EXPECT_EQ(t.chunk_dtype(), DType::kBF16);
    }
  }
  if (seen == 0) GTEST_SKIP() << "corpus not found: set FERRY_CORPUS_DIR (scripts/test.sh does)";
  EXPECT_EQ(seen, 2);
}

TEST(Safetensors, ParsesValidHeader) {
  auto file = make_file(R"({"b":{"dtype":"BF16","shape":[4],"data_offsets":[24,32]},)"
                        R"("__metadata__":{"format":"pt"},)"
                        R"("a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}})",
                        32);
  auto r = parse(file);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  const SafetensorsLayout& l = *r;
  EXPECT_EQ(l.data_offset, 8 + l.header_bytes);
  EXPECT_EQ(l.file_bytes, file.size());
  ASSERT_EQ(l.tensors.size(), 2u);
  EXPECT_EQ(l.tensors[0].name, "a");  // sorted by offset, not by header order
  EXPECT_EQ(l.tensors[0].dtype, DType::kF32);
  EXPECT_EQ(l.tensors[0].element_bytes, 4u);
  EXPECT_EQ(l.tensors[0].shape, (std::vector<std::uint64_t>{2, 3}));
  EXPECT_EQ(l.tensors[0].begin, l.data_offset);
  EXPECT_EQ(l.tensors[0].end, l.data_offset + 24);
  EXPECT_EQ(l.tensors[1].name, "b");
  EXPECT_EQ(l.tensors[1].dtype, DType::kBF16);
  EXPECT_EQ(l.tensors[1].bytes(), 8u);
  EXPECT_EQ(l.metadata.at("format"), "pt");
}

TEST(Safetensors, AcceptsPaddedHeader) {
  // The official writer pads the header with spaces to a multiple of 8.
  std::string h = R"({"a":{"dtype":"F16","shape":[3],"data_offsets":[0,6]}})";
  auto file = make_file(h, 6, 8);
  auto r = parse(file);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->header_bytes % 8, 0u);
  EXPECT_GT(r->header_bytes, h.size());
  EXPECT_EQ(r->tensors.at(0).begin, r->data_offset);
}

TEST(Safetensors, EmptyAndScalarTensors) {
  auto r = parse(make_file(R"({"e":{"dtype":"F32","shape":[0,5],"data_offsets":[0,0]},)"
                           R"("s":{"dtype":"F32","shape":[],"data_offsets":[0,4]},)"
                           R"("z":{"dtype":"I64","shape":[7,0],"data_offsets":[4,4]}})",
                           4));
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  ASSERT_EQ(r->tensors.size(), 3u);
  EXPECT_EQ(r->tensors[0].name, "e");
  EXPECT_EQ(r->tensors[0].bytes(), 0u);
  EXPECT_EQ(r->tensors[1].name, "s");
  EXPECT_TRUE(r->tensors[1].shape.empty());
  EXPECT_EQ(r->tensors[1].bytes(), 4u);
  EXPECT_EQ(r->tensors[2].name, "z");
}

TEST(Safetensors, NoTensorsAndNoData) {
  auto r = parse(make_file("{}", 0));
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_TRUE(r->tensors.empty());
}

TEST(Safetensors, NonFloatTypes) {
  auto r = parse(make_file(R"({"i":{"dtype":"I64","shape":[2],"data_offsets":[0,16]},)"
                           R"("b":{"dtype":"BOOL","shape":[3],"data_offsets":[16,19]},)"
                           R"("d":{"dtype":"F64","shape":[1],"data_offsets":[19,27]},)"
                           R"("f8":{"dtype":"F8_E5M2","shape":[5],"data_offsets":[27,32]}})",
                           32));
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  ASSERT_EQ(r->tensors.size(), 4u);
  EXPECT_EQ(r->tensors[0].element_bytes, 8u);
  EXPECT_FALSE(r->tensors[0].dtype.has_value());
  EXPECT_EQ(r->tensors[0].chunk_dtype(), DType::kBytes);
  EXPECT_EQ(r->tensors[1].element_bytes, 1u);
  EXPECT_FALSE(r->tensors[2].dtype.has_value());
  EXPECT_EQ(r->tensors[3].dtype, DType::kF8E5M2);
}

TEST(Safetensors, RejectsBadLengthPrefix) {
  std::vector<std::byte> tiny(5);
  auto r = parse_safetensors(tiny, tiny.size());
  ASSERT_FALSE(r.is_ok());
  EXPECT_HAS(r.status().message(), "file is 5 bytes, shorter than the 8-byte");

  auto zero = make_file("", 16);
  EXPECT_HAS(parse(zero).status().message(), "header length is 0");

  std::vector<std::byte> huge(64);
  std::uint64_t n = kMaxSafetensorsHeaderBytes + 1;
  for (int i = 0; i < 8; ++i) huge[i] = static_cast<std::byte>(n >> (8 * i));
  EXPECT_HAS(parse(huge).status().message(), "header length 100000001 exceeds the limit of 100000000 bytes");

  auto file = make_file("{}", 0);
  file.pop_back();
  EXPECT_HAS(parse(file).status().message(), "header length 2 runs past the end of the file (9 bytes)");

  // A caller that read too little is told how much is needed.
  auto ok = make_file("{}", 100);
  auto r2 = parse_safetensors(std::span(ok).first(9), ok.size());
  EXPECT_EQ(r2.status().code(), Code::kInvalidArgument);
  EXPECT_HAS(r2.status().message(), "needs the first 10 bytes");
}

TEST(Safetensors, RejectsBadJson) {
  EXPECT_HAS(error_of(R"({"a":)", 0), "header is not valid JSON");
  EXPECT_HAS(error_of("[1,2]", 0), "header is not a JSON object");
  // Ill-formed UTF-8 inside a string.
  EXPECT_HAS(error_of("{\"a\xff\":1}", 0), "header is not valid JSON");
  EXPECT_HAS(error_of(R"({"a":{"dtype":"F32","shape":[[[1]]],"data_offsets":[0,4]}})", 4), "nested deeper");
}

TEST(Safetensors, RejectsDuplicateKeys) {
  EXPECT_HAS(error_of(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                      R"("a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})",
                      2),
             "duplicate key \"a\"");
  EXPECT_HAS(error_of(R"({"a":{"dtype":"U8","dtype":"U8","shape":[1],"data_offsets":[0,1]}})", 1),
             "duplicate key \"dtype\"");
}

TEST(Safetensors, RejectsBadMetadata) {
  EXPECT_HAS(error_of(R"({"__metadata__":{"k":1}})", 0), "__metadata__ value for key \"k\" is not a string");
  EXPECT_HAS(error_of(R"({"__metadata__":["x"]})", 0), "__metadata__ is not an object of strings");
}

TEST(Safetensors, RejectsBadEntries) {
  EXPECT_HAS(error_of(R"({"a":3})", 0), "tensor \"a\": entry is not an object");
  EXPECT_HAS(error_of(R"({"a":{"dtype":"F32","data_offsets":[0,4]}})", 4), "tensor \"a\": missing \"shape\"");
  EXPECT_HAS(error_of(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}})", 4),
             "tensor \"a\": unexpected key \"x\"");
  EXPECT_HAS(error_of(R"({"a":{"dtype":4,"shape":[1],"data_offsets":[0,4]}})", 4),
             "tensor \"a\": dtype is not a string");
}

TEST(Safetensors, RejectsUnsupportedDtypes) {
  for (const char* dt : {"F8_E8M0", "F4", "F6_E2M3", "C64", "float32"}) {
    std::string h = std::string(R"({"a":{"dtype":")") + dt + R"(","shape":[2],"data_offsets":[0,2]}})";
    EXPECT_HAS(error_of(h, 2, Code::kUnsupported),
               std::string("tensor \"a\": unsupported dtype \"") + dt + "\"");
  }
}

TEST(Safetensors, RejectsBadShapes) {
  EXPECT_HAS(error_of(R"({"a":{"dtype":"F32","shape":3,"data_offsets":[0,12]}})", 12),
             "tensor \"a\": shape is not an array");
  EXPECT_HAS(error_of(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4),
             "tensor \"a\": shape holds -1, not a non-negative integer");
  EXPECT_HAS(error_of(R"({"a":{"dtype":"F32","shape":[2.5],"data_offsets":[0,4]}})", 4), "shape holds 2.5");
  EXPECT_HAS(error_of(R"({"a":{"dtype":"U8","shape":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1],)"
                      R"("data_offsets":[0,1]}})",
                      1),
             "tensor \"a\": shape has rank 17, above the limit of 16");
  EXPECT_HAS(error_of(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],)"
                      R"("data_offsets":[0,4]}})",
                      4),
             "shape [4294967296, 4294967296] of F32 overflows");
}

TEST(Safetensors, RejectsBadOffsets) {
  EXPECT_HAS(error_of(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0]}})", 1),
             "tensor \"a\": data_offsets [0] is not [begin, end]");
  EXPECT_HAS(error_of(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[-1,0]}})", 1), "is not [begin, end]");
  EXPECT_HAS(error_of(R"({"a":{"dtype":"U8","shape":[0],"data_offsets":[5,4]}})", 5),
             "tensor \"a\": data_offsets [5, 4] end before they begin");
  EXPECT_EQ(error_of(R"({"a.weight":{"dtype":"F32","shape":[3,2],"data_offsets":[10,20]}})", 20),
            "tensor \"a.weight\": data_offsets [10, 20] give 10 bytes but shape [3, 2] of F32 "
            "needs 24");
  EXPECT_HAS(error_of(R"({"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]}})", 4),
             "tensor \"a\": data_offsets [0, 8] run past the data section (4 bytes)");
}

TEST(Safetensors, RejectsGapsAndOverlaps) {
  EXPECT_HAS(error_of(R"({"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]},)"
                      R"("b":{"dtype":"U8","shape":[4],"data_offsets":[12,16]}})",
                      16),
             "tensor \"b\": data_offsets [12, 16] leave a gap of 4 bytes after "
             "tensor \"a\" (ends at 8)");
  EXPECT_HAS(error_of(R"({"a":{"dtype":"U8","shape":[8],"data_offsets":[2,10]}})", 10),
             "tensor \"a\": data_offsets [2, 10] leave a gap of 2 bytes at the start");
  EXPECT_HAS(error_of(R"({"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]},)"
                      R"("b":{"dtype":"U8","shape":[4],"data_offsets":[6,10]}})",
                      10),
             "tensor \"b\": data_offsets [6, 10] overlap tensor \"a\" [0, 8]");
  EXPECT_HAS(error_of(R"({"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]}})", 20),
             "data section is 20 bytes but the last tensor \"a\" ends at 8");
  EXPECT_HAS(error_of("{}", 3), "data section is 3 bytes but the header lists no tensors");
}

TEST(Safetensors, ShortensLongNamesInMessages) {
  std::string name;
  for (int i = 0; i < 300; ++i) name += "\xc3\xa9";  // U+00E9, two bytes each
  std::string msg = error_of("{\"" + name + R"(":{"dtype":"F32","shape":[1],"data_offsets":[0,3]}})", 3);
  const std::string prefix = "tensor \"";
  ASSERT_EQ(msg.rfind(prefix, 0), 0u) << msg;
  std::size_t cut = msg.find("...\"");
  ASSERT_NE(cut, std::string::npos) << msg;
  // Cut on a character boundary: whole two-byte sequences only.
  EXPECT_EQ((cut - prefix.size()) % 2, 0u);
  EXPECT_LE(cut - prefix.size(), 200u);
}

TEST(Safetensors, ReadsHeaderFromFile) {
  testing::TempDir dir;
  auto file = make_file(R"({"w":{"dtype":"BF16","shape":[2,2],"data_offsets":[0,8]}})", 8, 8);
  testing::write_file(dir / "m.safetensors", file);
  auto r = read_safetensors_layout(dir / "m.safetensors");
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->file_bytes, file.size());
  EXPECT_EQ(r->tensors.at(0).name, "w");

  auto missing = read_safetensors_layout(dir / "nope.safetensors");
  EXPECT_EQ(missing.status().code(), Code::kNotFound);  // ENOENT
  EXPECT_HAS(missing.status().message(), "nope.safetensors");

  file.resize(file.size() - 1);  // truncated data section
  testing::write_file(dir / "t.safetensors", file);
  auto truncated = read_safetensors_layout(dir / "t.safetensors");
  EXPECT_EQ(truncated.status().code(), Code::kCorruption);
  EXPECT_HAS(truncated.status().message(), "t.safetensors");
  EXPECT_HAS(truncated.status().message(), "run past the data section (7 bytes)");
}

TEST(Safetensors, RecognisesExtension) {
  EXPECT_TRUE(looks_like_safetensors("/x/model-00001-of-00002.safetensors"));
  EXPECT_FALSE(looks_like_safetensors("/x/model.safetensors.index.json"));
  EXPECT_FALSE(looks_like_safetensors("/x/model.bin"));
}

}  // namespace
}  // namespace ferry
