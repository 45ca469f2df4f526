// status.h: the one error type of ferry. A Status is a code plus a message
// that carries the context a user needs (path, offset, chunk id, peer, errno
// text), and where a decision needs more than the code, a Detail; Result<T>
// is a value or a Status. Nothing in ferry throws in the data path: every
// fallible function returns one of these. Callers decide on the code and the
// detail, never on the message text (whether to retry: base/retry.h).
#pragma once

#include <cassert>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace ferry {

enum class Code : int {
  kOk = 0,
  kInvalidArgument,  // the caller (or the user's flags) asked for something impossible
  kNotFound,
  kCorruption,         // stored or received data is damaged; message says where
  kIOError,            // the operating system refused; message has errno text
  kUnsupported,        // a format version, codec or feature this build lacks
  kResourceExhausted,  // a limit, quota or full disk
  kUnavailable,        // a peer or device is not reachable right now (retryable)
  kPermissionDenied,   // authentication or authorisation refused
  kAborted,            // cancelled or shut down
  kTimeout,
  kInternal,  // a bug in ferry
};

std::string_view code_name(Code code);

// What the code alone does not say, where a caller's decision needs it. Set
// where the error arises and kept by with_context(); it is not part of the
// message and never crosses the wire (an ERROR carries the code only).
enum class Detail : std::uint8_t {
  kNone = 0,
  // Code Aborted: a source file changed while it was read (its size, mtime
  // or inode moved, or it vanished or appeared). What was read must not be
  // committed; reading it again later may succeed.
  kSourceChanged,
  // The peer answered one request with an ERROR: its verdict on that request
  // (a chunk, a manifest), not a break of the connection. Set by the side
  // that turns the peer's ERROR into a Status.
  kRefusedByPeer,
};

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status ok() { return {}; }
  static Status invalid_argument(std::string m) { return {Code::kInvalidArgument, std::move(m)}; }
  static Status not_found(std::string m) { return {Code::kNotFound, std::move(m)}; }
  static Status corruption(std::string m) { return {Code::kCorruption, std::move(m)}; }
  static Status io_error(std::string m) { return {Code::kIOError, std::move(m)}; }
  // An IOError whose message ends with strerror(err).
  static Status from_errno(int err, std::string_view what);
  static Status unsupported(std::string m) { return {Code::kUnsupported, std::move(m)}; }
  static Status exhausted(std::string m) { return {Code::kResourceExhausted, std::move(m)}; }
  static Status unavailable(std::string m) { return {Code::kUnavailable, std::move(m)}; }
  static Status permission_denied(std::string m) { return {Code::kPermissionDenied, std::move(m)}; }
  static Status aborted(std::string m) { return {Code::kAborted, std::move(m)}; }
  // Aborted with Detail::kSourceChanged; the message names the file and what moved.
  static Status source_changed(std::string m) {
    return Status(Code::kAborted, std::move(m)).with_detail(Detail::kSourceChanged);
  }
  static Status timeout(std::string m) { return {Code::kTimeout, std::move(m)}; }
  static Status internal(std::string m) { return {Code::kInternal, std::move(m)}; }

  bool is_ok() const { return code_ == Code::kOk; }
  explicit operator bool() const { return is_ok(); }
  Code code() const { return code_; }
  Detail detail() const { return detail_; }
  const std::string& message() const { return message_; }
  // "Corruption: <message>", or "OK".
  std::string to_string() const;

  // Returns a copy with "context: " put in front of the message (code and
  // detail kept).
  Status with_context(std::string_view context) const;
  // Returns a copy with `detail` set. An OK status stays OK without one.
  Status with_detail(Detail detail) const;

 private:
  Code code_ = Code::kOk;
  Detail detail_ = Detail::kNone;
  std::string message_;
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}        // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {  // NOLINT
    assert(!std::get<Status>(v_).is_ok() && "Result built from an OK status");
  }

  bool is_ok() const { return v_.index() == 0; }
  explicit operator bool() const { return is_ok(); }
  const Status& status() const {
    static const Status kOk;
    return is_ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

// Invariant checks that only a bug can break. They stay on in release builds.
[[noreturn]] void check_failed(const char* expr, const char* file, int line);
#define FERRY_CHECK(cond) ((cond) ? (void)0 : ::ferry::check_failed(#cond, __FILE__, __LINE__))

}  // namespace ferry

#define FERRY_CONCAT_INNER(a, b) a##b
#define FERRY_CONCAT(a, b) FERRY_CONCAT_INNER(a, b)

// Returns early from the enclosing function when `expr` (a Status) fails.
#define RETURN_IF_ERROR(expr)                 \
  do {                                        \
    ::ferry::Status _ferry_st = (expr);       \
    if (!_ferry_st.is_ok()) return _ferry_st; \
  } while (0)

// ASSIGN_OR_RETURN(auto x, f()): unwraps a Result or returns its Status.
#define ASSIGN_OR_RETURN(lhs, expr) ASSIGN_OR_RETURN_IMPL(FERRY_CONCAT(_ferry_res_, __LINE__), lhs, expr)
#define ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                          \
  if (!tmp.is_ok()) return tmp.status();      \
  lhs = std::move(tmp).value()
