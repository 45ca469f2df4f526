// engine_fixture.h: the parameterised fixture that runs every engine test
// against both backends (io_uring and the thread-pool fallback), plus small
// helpers to run one operation to completion.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "io/engine.h"

namespace ferry::io::testing {

class EngineTest : public ::testing::TestWithParam<Backend> {
 protected:
  static constexpr unsigned kDepth = 32;

  void SetUp() override { make(kDepth); }

  void make(unsigned depth) {
    engine_.reset();
    EngineOptions o;
    o.backend = GetParam();
    o.queue_depth = depth;
    o.log_choice = false;
    auto e = make_engine(o);
    if (!e.is_ok() && GetParam() == Backend::kUring) {
      GTEST_SKIP() << "io_uring unavailable here: " << e.status().to_string();
    }
    ASSERT_TRUE(e.is_ok()) << e.status().to_string();
    engine_ = std::move(e).value();
    ASSERT_EQ(engine_->backend(), GetParam());
  }

  // Submits `op` and waits for its completion (and only its).
  Completion run(const Op& op, int timeout_ms = 10'000) {
    Status st = engine_->submit(op);
    EXPECT_TRUE(st.is_ok()) << st.to_string();
    if (!st.is_ok()) return Completion{op.tag, op.kind, st};
    auto c = engine_->wait_one(timeout_ms);
    EXPECT_TRUE(c.is_ok()) << c.status().to_string();
    if (!c.is_ok()) return Completion{op.tag, op.kind, c.status()};
    EXPECT_EQ(c->tag, op.tag);
    return *c;
  }

  std::unique_ptr<Engine> engine_;
};

inline std::string backend_param_name(const ::testing::TestParamInfo<Backend>& info) {
  return info.param == Backend::kUring ? "uring" : "threads";
}

#define FERRY_ENGINE_SUITE(fixture)                                                                         \
  INSTANTIATE_TEST_SUITE_P(Backends, fixture,                                                               \
                           ::testing::Values(::ferry::io::Backend::kUring, ::ferry::io::Backend::kThreads), \
                           ::ferry::io::testing::backend_param_name)

}  // namespace ferry::io::testing
