// engine.cc: the backend choice, operation builders and the error texts both
// backends share, so that they report failures identically.
#include "io/engine.h"

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <vector>

#include "io/thread_engine.h"
#include "io/uring_engine.h"

namespace ferry::io {

std::string_view backend_name(Backend backend) {
  switch (backend) {
    case Backend::kAuto:
      return "auto";
    case Backend::kUring:
      return "io_uring";
    case Backend::kThreads:
      return "threads";
  }
  return "?";
}

Result<Backend> parse_backend(std::string_view name) {
  if (name == "auto") return Backend::kAuto;
  if (name == "io_uring" || name == "uring") return Backend::kUring;
  if (name == "threads" || name == "thread" || name == "fallback") return Backend::kThreads;
  return Status::invalid_argument("io backend '" + std::string(name) +
                                  "': expected auto, io_uring or threads");
}

std::string_view op_name(OpKind kind) {
  switch (kind) {
    case OpKind::kRead:
      return "read";
    case OpKind::kWrite:
      return "write";
    case OpKind::kFsync:
      return "fsync";
    case OpKind::kFdatasync:
      return "fdatasync";
    case OpKind::kConnect:
      return "connect";
    case OpKind::kAccept:
      return "accept";
    case OpKind::kSend:
      return "send";
    case OpKind::kRecv:
      return "recv";
    case OpKind::kTimer:
      return "timer";
  }
  return "?";
}

Op Op::read(const FileRef& f, std::span<std::byte> buf, std::uint64_t offset, std::uint64_t tag) {
  Op op;
  op.kind = OpKind::kRead;
  op.tag = tag;
  op.fd = f.fd;
  op.buffered_fd = f.buffered_fd;
  op.buf = buf.data();
  op.len = buf.size();
  op.offset = offset;
  op.name = f.path;
  return op;
}

Op Op::write(const FileRef& f, std::span<const std::byte> buf, std::uint64_t offset, std::uint64_t tag) {
  // The engine never writes into a write's buffer; the cast only lets one
  // field serve both directions.
  Op op = read(f, {const_cast<std::byte*>(buf.data()), buf.size()}, offset, tag);
  op.kind = OpKind::kWrite;
  return op;
}

Op Op::fsync(const FileRef& f, std::uint64_t tag) {
  Op op;
  op.kind = OpKind::kFsync;
  op.tag = tag;
  op.fd = f.fd;
  op.name = f.path;
  return op;
}

Op Op::fdatasync(const FileRef& f, std::uint64_t tag) {
  Op op = fsync(f, tag);
  op.kind = OpKind::kFdatasync;
  return op;
}

Op Op::connect(const Socket& s, const SocketAddress& to, std::uint64_t tag, int timeout_ms) {
  Op op;
  op.kind = OpKind::kConnect;
  op.tag = tag;
  op.fd = s.fd();
  op.addr = &to;
  op.timeout_ms = timeout_ms;
  op.name = &s.name();
  return op;
}

Op Op::accept(const Socket& listener, std::uint64_t tag, int timeout_ms) {
  Op op;
  op.kind = OpKind::kAccept;
  op.tag = tag;
  op.fd = listener.fd();
  op.timeout_ms = timeout_ms;
  op.name = &listener.name();
  return op;
}

Op Op::send(const Socket& s, std::span<const std::byte> buf, std::uint64_t tag, int timeout_ms) {
  Op op = accept(s, tag, timeout_ms);
  op.kind = OpKind::kSend;
  op.buf = const_cast<std::byte*>(buf.data());
  op.len = buf.size();
  return op;
}

Op Op::recv(const Socket& s, std::span<std::byte> buf, std::uint64_t tag, int timeout_ms) {
  Op op = accept(s, tag, timeout_ms);
  op.kind = OpKind::kRecv;
  op.buf = buf.data();
  op.len = buf.size();
  return op;
}

Op Op::recv_all(const Socket& s, std::span<std::byte> buf, std::uint64_t tag, int timeout_ms) {
  Op op = recv(s, buf, tag, timeout_ms);
  op.fill = true;
  return op;
}

Op Op::timer(int delay_ms, std::uint64_t tag) {
  Op op;
  op.kind = OpKind::kTimer;
  op.tag = tag;
  op.timeout_ms = delay_ms;
  return op;
}

Result<Completion> Engine::wait_one(int timeout_ms) {
  Completion c;
  ASSIGN_OR_RETURN(std::size_t n, wait({&c, 1}, 1, timeout_ms));
  if (n == 0) {
    return outstanding() == 0
               ? Status::not_found("wait: no operation outstanding")
               : Status::timeout("wait: no completion within " + std::to_string(timeout_ms) + " ms");
  }
  return c;
}

void Engine::cancel_all_and_drain() {
  cancel_all();
  std::vector<Completion> done(queue_depth());
  while (outstanding() > 0) {
    auto n = wait(done, 1, -1);
    if (!n.is_ok()) break;
    for (std::size_t i = 0; i < *n; ++i) {
      if (done[i].fd >= 0) UniqueFd closer(done[i].fd);
    }
  }
}

namespace {

void log_once(const std::string& line) {
  static std::atomic<bool> logged{false};
  if (!logged.exchange(true)) std::fprintf(stderr, "ferry: io engine: %s\n", line.c_str());
}

// kernel.io_uring_disabled: 0 allowed, 1 only for a group, 2 disabled.
Status check_sysctl() {
  std::ifstream in("/proc/sys/kernel/io_uring_disabled");
  int value = 0;
  if (in >> value && value == 2) {
    return Status::unsupported("kernel.io_uring_disabled = 2");
  }
  return Status::ok();
}

}  // namespace

Result<std::unique_ptr<Engine>> make_engine(const EngineOptions& options) {
  if (options.queue_depth == 0 || options.queue_depth > kMaxQueueDepth) {
    return Status::invalid_argument("io queue depth " + std::to_string(options.queue_depth) +
                                    ": must be 1.." + std::to_string(kMaxQueueDepth));
  }
  auto thread_engine = [&]() -> Result<std::unique_ptr<Engine>> {
    ASSIGN_OR_RETURN(auto e, ThreadEngine::create(options));
    return std::unique_ptr<Engine>(std::move(e));
  };
  if (options.backend == Backend::kThreads) {
    if (options.log_choice) {
      log_once("thread pool (forced; " + std::to_string(options.threads) + " threads, queue depth " +
               std::to_string(options.queue_depth) + ")");
    }
    return thread_engine();
  }
  Status refused = check_sysctl();
  if (refused.is_ok()) {
    auto uring = UringEngine::create(options);
    if (uring.is_ok()) {
      if (options.log_choice) {
        log_once("io_uring (queue depth " + std::to_string(options.queue_depth) +
                 (options.sqpoll ? ", sqpoll)" : ")"));
      }
      return std::unique_ptr<Engine>(std::move(uring).value());
    }
    refused = uring.status();
  }
  if (options.backend == Backend::kUring) {
    return refused.with_context("io_uring forced but unavailable");
  }
  if (options.log_choice) log_once("thread pool (io_uring refused: " + refused.message() + ")");
  return thread_engine();
}

namespace detail {

bool is_file_transfer(OpKind kind) { return kind == OpKind::kRead || kind == OpKind::kWrite; }

bool direct_ok(const Op& op, std::size_t done) {
  if (op.buffered_fd < 0) return true;  // not an O_DIRECT descriptor
  auto a = reinterpret_cast<std::uintptr_t>(op.buf + done) | (op.offset + done) | (op.len - done);
  return a % kDirectAlignBytes == 0;
}

int transfer_fd(const Op& op, std::size_t done) { return direct_ok(op, done) ? op.fd : op.buffered_fd; }

static std::string describe(const Op& op, std::size_t done) {
  std::string name = op.name ? *op.name : std::string("fd ") + std::to_string(op.fd);
  std::string s(op_name(op.kind));
  switch (op.kind) {
    case OpKind::kRead:
    case OpKind::kWrite:
      return s + " " + name + " at offset " + std::to_string(op.offset + done) + " (" +
             std::to_string(op.len - done) + " bytes)";
    case OpKind::kFsync:
    case OpKind::kFdatasync:
      return s + " " + name;
    case OpKind::kConnect:
      return s + " to " + (op.addr ? op.addr->to_string() : name);
    case OpKind::kAccept:
      return s + " on " + name;
    case OpKind::kSend:
      return s + " to " + name + " after " + std::to_string(done) + " bytes";
    case OpKind::kRecv:
      return s + " from " + name + (done ? " after " + std::to_string(done) + " bytes" : "");
    case OpKind::kTimer:
      return s;
  }
  return s;
}

Status op_error(const Op& op, int err, std::size_t done) {
  std::string m = describe(op, done) + ": " + std::strerror(err);
  switch (err) {
    case ENOSPC:
    case EDQUOT:
    case EFBIG:
      return Status::exhausted(std::move(m));
    case ECONNRESET:
    case ECONNREFUSED:
    case ECONNABORTED:
    case EPIPE:
    case ENOTCONN:
    case EHOSTUNREACH:
    case ENETUNREACH:
    case ENETDOWN:
      return Status::unavailable(std::move(m));
    case ETIMEDOUT:
    case ETIME:
      return Status::timeout(std::move(m));
    case ECANCELED:
      return Status::aborted(std::move(m));
    case EACCES:
    case EPERM:
      return Status::permission_denied(std::move(m));
    case EINVAL:
    case EBADF:
      return Status::invalid_argument(std::move(m));
    default:
      return Status::io_error(std::move(m));
  }
}

Status op_timeout(const Op& op) {
  return Status::timeout(describe(op, 0) + ": no progress within " + std::to_string(op.timeout_ms) + " ms");
}

Status op_cancelled(const Op& op) { return Status::aborted(describe(op, 0) + ": cancelled"); }

Status validate(const Op& op) {
  switch (op.kind) {
    case OpKind::kRead:
    case OpKind::kWrite:
    case OpKind::kSend:
    case OpKind::kRecv:
      if (op.fd < 0 || (op.buf == nullptr && op.len > 0)) {
        return Status::invalid_argument(describe(op, 0) + ": no descriptor or buffer");
      }
      return Status::ok();
    case OpKind::kConnect:
      if (op.fd < 0 || op.addr == nullptr) {
        return Status::invalid_argument(describe(op, 0) + ": no socket or address");
      }
      return Status::ok();
    case OpKind::kFsync:
    case OpKind::kFdatasync:
    case OpKind::kAccept:
      if (op.fd < 0) return Status::invalid_argument(describe(op, 0) + ": no descriptor");
      return Status::ok();
    case OpKind::kTimer:
      if (op.timeout_ms < 0) return Status::invalid_argument("timer: negative delay");
      return Status::ok();
  }
  return Status::invalid_argument("unknown operation");
}

}  // namespace detail

}  // namespace ferry::io
