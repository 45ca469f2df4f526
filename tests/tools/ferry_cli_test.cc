// ferry_cli_test.cc: runs the built `ferry` binary (FERRY_BIN) as a user
// would: pack, verify, unpack and byte-compare a directory of corpus files;
// inspect lists the tensors of a safetensors file (table and JSON); a damaged
// archive fails verify with exit code 1 naming the file; bad usage gives exit
// code 2 and one clear line.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "tests/testing/testing.h"

namespace ferry {
namespace {

namespace fs = std::filesystem;

struct CliRun {
  int code = -1;
  std::string out;  // stdout and stderr together
};

std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// Runs `ferry ARGS` (args already shell-quoted where needed) and captures output.
CliRun ferry(const std::string& args) {
  std::string cmd = quote(FERRY_BIN) + " " + args + " 2>&1";
  CliRun r;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf;
  std::size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  int status = ::pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

// A directory of corpus files, one of them nested; empty when no corpus.
fs::path corpus_checkpoint(const testing::TempDir& dir) {
  auto files = testing::corpus_files();
  if (files.empty()) return {};
  fs::path in = dir / "ckpt";
  fs::create_directories(in / "shards");
  for (const auto& f : files) {
    bool shard = f.path.extension() == ".safetensors";
    fs::copy_file(f.path, (shard ? in / "shards" : in) / f.name);
  }
  testing::write_file(in / "empty.marker", {});
  return in;
}

TEST(FerryCliTest, PackVerifyUnpackRestoresEveryByte) {
  testing::TempDir dir;
  fs::path in = corpus_checkpoint(dir);
  if (in.empty()) GTEST_SKIP() << "corpus not laid (set FERRY_CORPUS_DIR; see scripts/test.sh)";
  const std::string archive = (dir / "c.ferry").string();

  CliRun pack = ferry("pack " + quote(in) + " -o " + quote(archive) + " --threads=2 --job=test --step=5");
  ASSERT_EQ(pack.code, 0) << pack.out;
  EXPECT_NE(pack.out.find("packed"), std::string::npos) << pack.out;
  EXPECT_NE(pack.out.find("ratio"), std::string::npos) << pack.out;

  CliRun verify = ferry("verify " + quote(archive));
  ASSERT_EQ(verify.code, 0) << verify.out;
  EXPECT_NE(verify.out.find("OK"), std::string::npos) << verify.out;

  CliRun unpack = ferry("unpack " + quote(archive) + " -o " + quote(dir / "out"));
  ASSERT_EQ(unpack.code, 0) << unpack.out;
  std::size_t compared = 0;
  for (const auto& e : fs::recursive_directory_iterator(in)) {
    if (!e.is_regular_file()) continue;
    fs::path rel = fs::relative(e.path(), in);
    ASSERT_TRUE(fs::exists(dir / "out" / rel)) << rel;
    std::string cmd = "cmp -s " + quote(e.path()) + " " + quote(dir / "out" / rel);
    EXPECT_EQ(std::system(cmd.c_str()), 0) << rel;
    ++compared;
  }
  EXPECT_GT(compared, 2u);

  // A flipped byte in the middle of the frames: verify names the file.
  auto bytes = testing::read_file(archive);
  bytes[bytes.size() / 3] ^= std::byte{0x04};
  testing::write_file(dir / "bad.ferry", bytes);
  CliRun bad = ferry("verify " + quote(dir / "bad.ferry"));
  EXPECT_EQ(bad.code, 1) << bad.out;
  EXPECT_NE(bad.out.find("Corruption"), std::string::npos) << bad.out;
  EXPECT_NE(bad.out.find("offset"), std::string::npos) << bad.out;
  EXPECT_NE(bad.out.find("chunk"), std::string::npos) << bad.out;

  // Truncated: no valid trailer.
  bytes.resize(bytes.size() - 10);
  testing::write_file(dir / "short.ferry", bytes);
  CliRun trunc = ferry("verify " + quote(dir / "short.ferry"));
  EXPECT_EQ(trunc.code, 1) << trunc.out;
  EXPECT_NE(trunc.out.find("short.ferry"), std::string::npos) << trunc.out;
  EXPECT_NE(trunc.out.find("truncated"), std::string::npos) << trunc.out;
}

TEST(FerryCliTest, InspectListsSafetensorsTensors) {
  auto files = testing::corpus_files();
  const testing::CorpusFile* st = nullptr;
  for (const auto& f : files) {
    if (f.path.extension() == ".safetensors") st = &f;
  }
  if (!st) GTEST_SKIP() << "no safetensors file in the corpus (set FERRY_CORPUS_DIR)";
  testing::TempDir dir;
  const std::string archive = (dir / "s.ferry").string();
  CliRun pack = ferry("pack " + quote(st->path) + " -o " + quote(archive));
  ASSERT_EQ(pack.code, 0) << pack.out;

  CliRun table = ferry("inspect " + quote(archive));
  ASSERT_EQ(table.code, 0) << table.out;
  EXPECT_NE(table.out.find(st->name), std::string::npos);
  EXPECT_NE(table.out.find("total:"), std::string::npos);

  CliRun json = ferry("inspect --json " + quote(archive));
  ASSERT_EQ(json.code, 0) << json.out;
  auto j = nlohmann::json::parse(json.out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << json.out.substr(0, 500);
  ASSERT_EQ(j["files"].size(), 1u);
  const auto& tensors = j["files"][0]["tensors"];
  ASSERT_GT(tensors.size(), 0u);
  std::uint64_t tensor_bytes = 0;
  for (const auto& t : tensors) {
    tensor_bytes += t["bytes"].get<std::uint64_t>();
    // Every tensor's name appears in the table too.
    EXPECT_NE(table.out.find(t["name"].get<std::string>()), std::string::npos) << t["name"];
  }
  EXPECT_LE(tensor_bytes, j["files"][0]["bytes"].get<std::uint64_t>());
  EXPECT_EQ(j["files"][0]["layout"], "safetensors");
}

TEST(FerryCliTest, UsageErrorsExitWithTwo) {
  testing::TempDir dir;
  testing::write_file(dir / "f", {std::byte{1}, std::byte{2}});
  for (const std::string& args :
       {std::string(""), std::string("frobnicate"), std::string("pack"), "pack " + quote(dir / "f"),
        "pack " + quote(dir / "f") + " -o " + quote(dir / "x.ferry") + " --chunk_size=5000",
        "pack " + quote(dir / "f") + " -o " + quote(dir / "x.ferry") + " --no_such_flag",
        "pack " + quote(dir / "f") + " -o " + quote(dir / "x.ferry") + " --threads=many",
        "pack " + quote(dir / "missing") + " -o " + quote(dir / "x.ferry"), std::string("verify"),
        std::string("unpack a.ferry")}) {
    CliRun r = ferry(args);
    EXPECT_EQ(r.code, 2) << "ferry " << args << "\n" << r.out;
    EXPECT_NE(r.out.find("ferry"), std::string::npos) << r.out;
  }
  EXPECT_FALSE(fs::exists(dir / "x.ferry"));
  CliRun help = ferry("help");
  EXPECT_EQ(help.code, 0);
  EXPECT_NE(help.out.find("pack"), std::string::npos);
  EXPECT_NE(help.out.find("inspect"), std::string::npos);
}

TEST(FerryCliTest, SmallDirectoryWithoutCorpus) {
  testing::TempDir dir;
  fs::create_directories(dir / "in/sub");
  testing::write_file(dir / "in/sub/a.bin", testing::random_bytes(5u << 20, testing::test_seed()));
  testing::write_file(dir / "in/b", {});
  fs::create_symlink("sub/a.bin", dir / "in/link");
  CliRun pack = ferry("pack " + quote(dir / "in") + " -o " + quote(dir / "a.ferry") + " --chunk_size=1048576");
  ASSERT_EQ(pack.code, 0) << pack.out;
  EXPECT_NE(pack.out.find("skipping link"), std::string::npos) << pack.out;
  EXPECT_NE(pack.out.find("packed 2 files"), std::string::npos) << pack.out;
  CliRun unpack = ferry("unpack " + quote(dir / "a.ferry") + " -o " + quote(dir / "out"));
  ASSERT_EQ(unpack.code, 0) << unpack.out;
  EXPECT_EQ(testing::read_file(dir / "in/sub/a.bin"), testing::read_file(dir / "out/sub/a.bin"));
  EXPECT_TRUE(fs::exists(dir / "out/b"));
  EXPECT_FALSE(fs::exists(dir / "out/link"));
}

}  // namespace
}  // namespace ferry
