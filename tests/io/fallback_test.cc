// fallback_test.cc: make_engine(kAuto) falls back to the thread pool when
// the kernel refuses io_uring. Each case runs in a forked child that first
// installs a seccomp filter failing io_uring_setup with ENOSYS (a kernel
// without io_uring) or EPERM (a sandbox or container policy), then builds the
// engine twice, checks it got the thread pool, and writes and reads back a
// real file through it. The child's stderr goes to a file so the test can
// check the reason was logged exactly once.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include "io/engine.h"
#include "tests/testing/io_file.h"
#include "tests/testing/testing.h"

namespace ferry::io {
namespace {

using ferry::testing::random_bytes;
using ferry::testing::TempDir;
using ferry::testing::test_seed;

// Child exit codes, so the parent can say which step failed.
enum ChildExit : int {
  kChildOk = 0,
  kNoSeccomp = 10,
  kUringNotRefused = 11,
  kMakeEngineFailed = 12,
  kWrongBackend = 13,
  kFileFailed = 14,
  kDataMismatch = 15,
};

// Fails io_uring_setup with `err`; every other system call is allowed.
bool refuse_io_uring(int err) {
  sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),  // another ABI: leave it alone
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (static_cast<unsigned>(err) & SECCOMP_RET_DATA)),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  sock_fprog prog{static_cast<unsigned short>(sizeof filter / sizeof filter[0]), filter};
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return false;
  return ::syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) == 0;
}

// Runs in the child; returns its exit code.
int child_main(int err, const std::string& dir) {
  if (!refuse_io_uring(err)) return kNoSeccomp;
  if (::syscall(__NR_io_uring_setup, 4, nullptr) != -1 || errno != err) return kUringNotRefused;
  EngineOptions o;
  o.backend = Backend::kAuto;
  o.queue_depth = 8;
  o.log_choice = true;
  std::unique_ptr<Engine> engine;
  for (int i = 0; i < 2; ++i) {  // twice: the choice is logged once per process
    auto e = make_engine(o);
    if (!e.is_ok()) return kMakeEngineFailed;
    engine = std::move(e).value();
  }
  if (engine->backend() != Backend::kThreads) return kWrongBackend;

  auto data = random_bytes((1 << 20) + 4097, test_seed());  // unaligned tail too
  auto file = File::open(dir + "/data", {.create = true, .truncate = true, .direct = true});
  if (!file.is_ok()) return kFileFailed;
  auto run = [&](const Op& op) {
    if (!engine->submit(op).is_ok()) return false;
    auto c = engine->wait_one(10'000);
    return c.is_ok() && c->status.is_ok() && c->tag == op.tag;
  };
  if (!run(Op::write(file->ref(), data, 0, 1)) || !run(Op::fsync(file->ref(), 2))) return kFileFailed;
  std::vector<std::byte> back(data.size());
  if (!run(Op::read(file->ref(), back, 0, 3))) return kFileFailed;
  return back == data ? kChildOk : kDataMismatch;
}

class FallbackTest : public ::testing::TestWithParam<int> {};

TEST_P(FallbackTest, AutoFallsBackToThreadsWhenIoUringIsRefused) {
  const int err = GetParam();
  TempDir dir;
  std::string log_path = dir / "stderr.log";
  std::fflush(nullptr);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0) << std::strerror(errno);
  if (pid == 0) {
    int fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || ::dup2(fd, STDERR_FILENO) < 0) ::_exit(kFileFailed);
    int code = child_main(err, dir.path().string());
    std::fflush(nullptr);
    ::_exit(code);  // no gtest teardown or atexit handlers in the child
  }
  int wstatus = 0;
  ASSERT_EQ(::waitpid(pid, &wstatus, 0), pid);
  std::ifstream in(log_path);
  std::stringstream log;
  log << in.rdbuf();
  ASSERT_TRUE(WIFEXITED(wstatus)) << "child died, stderr:\n" << log.str();
  int code = WEXITSTATUS(wstatus);
  if (code == kNoSeccomp) GTEST_SKIP() << "seccomp filters are refused here";
  ASSERT_EQ(code, kChildOk) << "child failed at step " << code << ", stderr:\n" << log.str();

  const std::string line = "ferry: io engine: thread pool (io_uring refused: ";
  std::string text = log.str();
  auto first = text.find(line);
  ASSERT_NE(first, std::string::npos) << text;
  EXPECT_EQ(text.find(line, first + 1), std::string::npos) << "logged more than once:\n" << text;
  // The reason names the refused call and the kernel's answer.
  EXPECT_NE(text.find("io_uring_queue_init"), std::string::npos) << text;
  EXPECT_NE(text.find(std::strerror(err)), std::string::npos) << text;
}

INSTANTIATE_TEST_SUITE_P(Errnos, FallbackTest, ::testing::Values(ENOSYS, EPERM),
                         [](const ::testing::TestParamInfo<int>& info) {
                           return std::string(info.param == ENOSYS ? "ENOSYS" : "EPERM");
                         });

TEST(FallbackTest, ForcedIoUringFailsInsteadOfFallingBack) {
  std::fflush(nullptr);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0) << std::strerror(errno);
  if (pid == 0) {
    if (!refuse_io_uring(EPERM)) ::_exit(kNoSeccomp);
    EngineOptions o;
    o.backend = Backend::kUring;
    o.log_choice = false;
    auto e = make_engine(o);
    ::_exit(!e.is_ok() && e.status().code() == Code::kPermissionDenied ? kChildOk : kWrongBackend);
  }
  int wstatus = 0;
  ASSERT_EQ(::waitpid(pid, &wstatus, 0), pid);
  ASSERT_TRUE(WIFEXITED(wstatus));
  if (WEXITSTATUS(wstatus) == kNoSeccomp) GTEST_SKIP() << "seccomp filters are refused here";
  EXPECT_EQ(WEXITSTATUS(wstatus), kChildOk);
}

}  // namespace
}  // namespace ferry::io
