// engine.h: ferry's asynchronous I/O engine, the one interface that the codec
// pipeline, the sender, the receiver and restore use for files and sockets.
// Two backends implement it identically: io_uring (io/uring_engine.h) and a
// small thread pool over pread/pwrite and non-blocking sockets
// (io/thread_engine.h). make_engine() picks io_uring when the kernel allows
// it and falls back otherwise, logging the choice once.
//
// Model: submit() queues an operation carrying a caller tag; wait() returns
// completions {tag, status, bytes}. Operations complete whole: a read stops
// short only at end of file, a write or send completes only when every byte
// is out (short transfers are resubmitted inside the engine), a recv returns
// whatever arrived (0 bytes: the peer closed). At most queue_depth()
// operations are outstanding; submit() refuses more (back-pressure), so the
// caller reaps with wait() before it submits again.
//
// Thread-safety: an Engine belongs to one thread (submit, wait and cancel
// from that thread). Buffers, files and sockets named by an operation must
// stay alive until its completion has been returned by wait().
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "base/status.h"
#include "io/io_limits.h"
#include "io/socket.h"

namespace ferry::io {

enum class Backend { kAuto, kUring, kThreads };
std::string_view backend_name(Backend backend);
// "auto", "io_uring"/"uring", "threads".
Result<Backend> parse_backend(std::string_view name);

struct EngineOptions {
  Backend backend = Backend::kAuto;
  unsigned queue_depth = kDefaultQueueDepth;  // operations outstanding at most
  bool sqpoll = false;                        // io_uring: a kernel thread polls submissions
  // io_uring: the thread that creates the engine is the only one that will
  // ever submit or wait (SINGLE_ISSUER | DEFER_TASKRUN: completions are run
  // in that thread's wait, with fewer wake-ups). Ignored with sqpoll.
  bool single_thread = false;
  // io_uring: recvs through multishot receive into a provided buffer ring
  // where the kernel has them (6.0+); single-shot recv otherwise.
  bool recv_multishot = true;
  unsigned threads = kDefaultFallbackThreads;  // fallback: worker threads
  bool log_choice = true;                      // say once on stderr which backend runs
};

// A file as the engine's file operations name it; owns nothing. `fd`
// carries the transfers; where it is O_DIRECT, `buffered_fd` is a second
// descriptor on the same file without O_DIRECT for the transfers O_DIRECT
// refuses (unaligned offset, length or buffer), -1 otherwise. `path` names
// the file in error messages and must outlive the operation.
struct FileRef {
  int fd = -1;
  int buffered_fd = -1;
  const std::string* path = nullptr;
};

enum class OpKind : std::uint8_t {
  kRead,
  kWrite,
  kFsync,
  kFdatasync,
  kConnect,
  kAccept,
  kSend,
  kRecv,
  kTimer,
};
std::string_view op_name(OpKind kind);

// One operation. Build it with the factory functions below.
struct Op {
  OpKind kind = OpKind::kTimer;
  std::uint64_t tag = 0;
  int fd = -1;
  // The same file without O_DIRECT, for transfers O_DIRECT cannot do
  // (unaligned offset, length or buffer); -1 when fd is not O_DIRECT.
  int buffered_fd = -1;
  std::byte* buf = nullptr;
  std::size_t len = 0;
  std::uint64_t offset = 0;
  const SocketAddress* addr = nullptr;  // connect
  // Socket operations and timers: give up after this long (0: never). For a
  // timer, its delay.
  int timeout_ms = 0;
  const std::string* name = nullptr;  // path or peer, for error messages
  // recv: complete only when the buffer is full or the peer closed (like
  // MSG_WAITALL), instead of with whatever arrived first.
  bool fill = false;

  static Op read(const FileRef& f, std::span<std::byte> buf, std::uint64_t offset, std::uint64_t tag);
  static Op write(const FileRef& f, std::span<const std::byte> buf, std::uint64_t offset, std::uint64_t tag);
  static Op fsync(const FileRef& f, std::uint64_t tag);
  static Op fdatasync(const FileRef& f, std::uint64_t tag);
  static Op connect(const Socket& s, const SocketAddress& to, std::uint64_t tag, int timeout_ms = 0);
  static Op accept(const Socket& listener, std::uint64_t tag, int timeout_ms = 0);
  static Op send(const Socket& s, std::span<const std::byte> buf, std::uint64_t tag, int timeout_ms = 0);
  static Op recv(const Socket& s, std::span<std::byte> buf, std::uint64_t tag, int timeout_ms = 0);
  // recv that fills the whole buffer; fewer bytes only when the peer closed.
  static Op recv_all(const Socket& s, std::span<std::byte> buf, std::uint64_t tag, int timeout_ms = 0);
  static Op timer(int delay_ms, std::uint64_t tag);
};

struct Completion {
  std::uint64_t tag = 0;
  OpKind kind = OpKind::kTimer;
  // OK, or what failed with operation, path or peer, offset and errno text.
  // Timeout for an expired deadline, Aborted for cancel(), ResourceExhausted
  // for a full disk, Unavailable for a reset or refused connection.
  Status status;
  // Bytes transferred. On failure: the bytes that made it before the error,
  // which the caller must not count as written.
  std::size_t bytes = 0;
  int fd = -1;  // accept: the new connection; the caller owns it (Socket::adopt)
};

class Engine {
 public:
  virtual ~Engine() = default;

  virtual Backend backend() const = 0;
  virtual unsigned queue_depth() const = 0;
  // Submitted and not yet returned by wait().
  virtual unsigned outstanding() const = 0;

  // Queues `op`. ResourceExhausted when outstanding() == queue_depth();
  // InvalidArgument for a malformed operation. Submission to the kernel is
  // batched: queued operations start at the next flush() or wait().
  virtual Status submit(const Op& op) = 0;
  virtual Status flush() = 0;

  // Flushes, then waits until at least `min_count` completions are ready
  // (fewer when fewer are outstanding) or `timeout_ms` passes (-1: no limit),
  // and writes up to out.size() of them. Returns how many it wrote.
  virtual Result<std::size_t> wait(std::span<Completion> out, std::size_t min_count, int timeout_ms = -1) = 0;

  // Asks every outstanding operation with `tag` to stop; each completes with
  // Aborted unless it finishes first. A file transfer the kernel or a worker
  // has already started may complete normally. NotFound when none has `tag`.
  virtual Status cancel(std::uint64_t tag) = 0;
  // cancel() for every outstanding operation.
  virtual void cancel_all() = 0;

  // io_uring: registers buffers (fixed buffers: no per-I/O page pinning) and
  // files (fixed files: no per-I/O fd lookup). The fallback accepts and
  // ignores them. A registered fd must stay open until unregister_file().
  virtual Status register_buffers(std::span<const iovec> buffers) = 0;
  virtual Status register_file(int fd) = 0;
  virtual Status unregister_file(int fd) = 0;

  // Conveniences over the virtual interface.
  Result<Completion> wait_one(int timeout_ms = -1);
  // Cancels everything outstanding and waits for all of it; completions are
  // dropped (accepted descriptors closed). Used for clean shutdown.
  void cancel_all_and_drain();
};

// Builds the engine `options` ask for. kAuto tries io_uring and falls back to
// the thread pool when io_uring is missing or refused (ENOSYS, EPERM,
// kernel.io_uring_disabled, sandboxed kernels); kUring fails instead.
Result<std::unique_ptr<Engine>> make_engine(const EngineOptions& options);

namespace detail {
// Whether `op` may go through its O_DIRECT descriptor.
bool direct_ok(const Op& op, std::size_t done);
// The descriptor a transfer with `done` bytes already moved uses.
int transfer_fd(const Op& op, std::size_t done);
// The Status for errno `err` from `op` at `done` bytes into it.
Status op_error(const Op& op, int err, std::size_t done);
Status op_timeout(const Op& op);
Status op_cancelled(const Op& op);
Status validate(const Op& op);
bool is_file_transfer(OpKind kind);
}  // namespace detail

}  // namespace ferry::io
