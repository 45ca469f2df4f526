// durable_dirs_test.cc: create_directories_durably on the real filesystem:
// every missing level is created top down, each reported only after its
// parent's fsync returned and before anything deeper exists; existing
// levels are left alone; a file in the way is an error naming the path.
#include "store/durable_dirs.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <vector>

#include "tests/testing/testing.h"

namespace ferry {
namespace {

namespace fs = std::filesystem;
using Paths = std::vector<fs::path>;

TEST(DurableDirs, CreatesEachMissingLevelTopDownAfterSyncingItsParent) {
  testing::TempDir dir;
  Paths durable;
  auto hook = [&](const fs::path& p) {
    EXPECT_TRUE(fs::is_directory(p)) << p;
    EXPECT_TRUE(fs::is_empty(p)) << p << ": the next level was made before this one was durable";
    durable.push_back(p);
  };
  const fs::path deep = dir.path() / "a" / "b" / "c";
  ASSERT_TRUE(create_directories_durably(deep, hook).is_ok());
  EXPECT_EQ(durable, (Paths{dir.path() / "a", dir.path() / "a" / "b", deep}));
  durable.clear();
  ASSERT_TRUE(create_directories_durably(deep, hook).is_ok());
  ASSERT_TRUE(create_directories_durably(dir.path() / "a" / "b" / "c" / "", hook).is_ok());
  EXPECT_TRUE(durable.empty()) << "existing directories are left alone";
  ASSERT_TRUE(create_directories_durably(dir.path() / "a" / "x", hook).is_ok());
  EXPECT_EQ(durable, Paths{dir.path() / "a" / "x"});
  ASSERT_TRUE(create_directories_durably(dir.path() / "a" / "y").is_ok()) << "no hook is fine";
  EXPECT_TRUE(fs::is_directory(dir.path() / "a" / "y"));
}

TEST(DurableDirs, AFileInTheWayIsAnErrorNamingIt) {
  testing::TempDir dir;
  testing::write_file(dir.path() / "f", {std::byte{1}});
  Status st = create_directories_durably(dir.path() / "f" / "sub");
  EXPECT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find((dir.path() / "f").string()), std::string::npos) << st.to_string();
  st = create_directories_durably(dir.path() / "f");
  EXPECT_FALSE(st.is_ok()) << "a file is not a directory";
}

}  // namespace
}  // namespace ferry
