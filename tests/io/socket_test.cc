// socket_test.cc: address parsing and resolution (HOST:PORT, [v6]:PORT) and
// the buffer pool's contract.
#include "io/socket.h"

#include <gtest/gtest.h>
#include <netinet/in.h>

#include "io/io_limits.h"
#include "tests/testing/buffer_pool.h"

namespace ferry::io {
namespace {

TEST(SocketAddress, ParsesV4V6AndNames) {
  auto a = SocketAddress::parse("127.0.0.1:8080");
  ASSERT_TRUE(a.is_ok()) << a.status().to_string();
  EXPECT_EQ(a->family(), AF_INET);
  EXPECT_EQ(a->port(), 8080);
  EXPECT_EQ(a->to_string(), "127.0.0.1:8080");

  auto b = SocketAddress::parse("[::1]:443");
  ASSERT_TRUE(b.is_ok()) << b.status().to_string();
  EXPECT_EQ(b->family(), AF_INET6);
  EXPECT_EQ(b->to_string(), "[::1]:443");

  auto c = SocketAddress::parse("localhost:0");
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  EXPECT_EQ(c->port(), 0);
}

TEST(SocketAddress, RejectsMalformed) {
  for (const char* bad :
       {"", "127.0.0.1", ":80", "host:", "host:99999", "host:12x", "::1:80", "[::1]80", "[::1"}) {
    auto r = SocketAddress::parse(bad);
    EXPECT_FALSE(r.is_ok()) << bad;
    if (!r.is_ok()) {
      EXPECT_EQ(r.status().code(), Code::kInvalidArgument) << bad;
    }
  }
}

class CountingAllocator final : public HostAllocator {
 public:
  Result<void*> allocate(std::size_t bytes, std::size_t alignment) override {
    void* p = std::aligned_alloc(alignment, bytes);
    if (!p) return Status::exhausted("aligned_alloc");
    ++allocations;
    live_bytes += bytes;
    return p;
  }
  void deallocate(void* p, std::size_t bytes) override {
    std::free(p);
    live_bytes -= bytes;
  }
  const char* name() const override { return "counting"; }
  int allocations = 0;
  std::size_t live_bytes = 0;
};

TEST(BufferPool, AlignedBuffersFromTheGivenAllocatorWithBackPressure) {
  CountingAllocator alloc;
  {
    auto pool = BufferPool::create(5000, 3, &alloc);  // rounds up to 8 KiB
    ASSERT_TRUE(pool.is_ok()) << pool.status().to_string();
    EXPECT_EQ(alloc.allocations, 1);
    EXPECT_EQ(pool->buffer_bytes(), 8192u);
    EXPECT_EQ(pool->region().iov_len, 3 * 8192u);
    auto a = pool->acquire(), b = pool->acquire(), c = pool->acquire();
    ASSERT_TRUE(a && b && c);
    EXPECT_FALSE(pool->acquire().has_value());
    for (auto i : {*a, *b, *c}) {
      EXPECT_EQ(reinterpret_cast<std::uintptr_t>(pool->buffer(i).data()) % kDirectAlignBytes, 0u);
    }
    pool->release(*b);
    EXPECT_EQ(pool->acquire(), b);
  }
  EXPECT_EQ(alloc.live_bytes, 0u);
  EXPECT_EQ(BufferPool::create(0, 1).status().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace ferry::io
