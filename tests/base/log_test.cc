// log_test.cc: structured log lines in text and JSON, quoting, and the
// Logger delivering whole lines to its sink.
#include "base/log.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace ferry {
namespace {

// 2026-11-25T01:02:03.456Z
constexpr std::int64_t kTimeNs = 1'795'568'523'456'000'000;

TEST(LogTest, TextLineHasTimeLevelEventAndFields) {
  std::string line =
      format_log_line(LogFormat::kText, kTimeNs, LogLevel::kInfo, "checkpoint_committed",
                      {field("job", "llama"), field("step", std::uint64_t{300}), field("ok", true)});
  EXPECT_EQ(line, "2026-11-25T01:02:03.456Z INFO checkpoint_committed job=llama step=300 ok=true");
}

TEST(LogTest, TextValuesThatWouldSplitAreQuoted) {
  std::string line = format_log_line(LogFormat::kText, kTimeNs, LogLevel::kWarn, "target_down",
                                     {field("error", "Unavailable: connection refused"), field("q", "a\"b"),
                                      field("empty", ""), field("nl", "x\ny")});
  EXPECT_EQ(
      line,
      "2026-11-25T01:02:03.456Z WARN target_down error=\"Unavailable: connection refused\" q=\"a\\\"b\" "
      "empty=\"\" nl=\"x\\ny\"");
}

TEST(LogTest, JsonLineParsesBack) {
  std::string line = format_log_line(LogFormat::kJson, kTimeNs, LogLevel::kError, "reload_refused",
                                     {field("error", "--max_jobs=-1: must be 1..64"), field("rate", 1.5)});
  auto j = nlohmann::json::parse(line);
  EXPECT_EQ(j["time"], "2026-11-25T01:02:03.456Z");
  EXPECT_EQ(j["level"], "ERROR");
  EXPECT_EQ(j["event"], "reload_refused");
  EXPECT_EQ(j["error"], "--max_jobs=-1: must be 1..64");
  EXPECT_EQ(j["rate"], "1.5");
  // Bytes that are not UTF-8 (a path) do not break the line.
  line = format_log_line(LogFormat::kJson, kTimeNs, LogLevel::kInfo, "x",
                         {field("dir", std::string("/a/\xff"))});
  EXPECT_TRUE(nlohmann::json::accept(line)) << line;
}

TEST(LogTest, LoggerSendsWholeLinesAndSwitchesFormat) {
  std::vector<std::string> lines;
  Logger log(LogFormat::kText, [&](std::string_view l) { lines.emplace_back(l); });
  log.info("a", {field("k", 1)});
  log.set_format(LogFormat::kJson);
  log.warn("b");
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_NE(lines[0].find(" INFO a k=1"), std::string::npos) << lines[0];
  EXPECT_EQ(nlohmann::json::parse(lines[1])["event"], "b");
  EXPECT_TRUE(parse_log_format("json").is_ok());
  EXPECT_FALSE(parse_log_format("xml").is_ok());
}

}  // namespace
}  // namespace ferry
