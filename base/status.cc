// status.cc: names and formatting for Status.
#include "base/status.h"

#include <cerrno>
#include <cstring>

namespace ferry {

std::string_view code_name(Code code) {
  switch (code) {
    case Code::kOk:
      return "OK";
    case Code::kInvalidArgument:
      return "Invalid argument";
    case Code::kNotFound:
      return "Not found";
    case Code::kCorruption:
      return "Corruption";
    case Code::kIOError:
      return "I/O error";
    case Code::kUnsupported:
      return "Unsupported";
    case Code::kResourceExhausted:
      return "Resource exhausted";
    case Code::kUnavailable:
      return "Unavailable";
    case Code::kPermissionDenied:
      return "Permission denied";
    case Code::kAborted:
      return "Aborted";
    case Code::kTimeout:
      return "Timeout";
    case Code::kInternal:
      return "Internal error";
  }
  return "Unknown";
}

Status Status::from_errno(int err, std::string_view what) {
  std::string m(what);
  m += ": ";
  m += std::strerror(err);
  Code code = Code::kIOError;
  if (err == ENOSPC || err == EDQUOT || err == EFBIG) code = Code::kResourceExhausted;
  if (err == EACCES || err == EPERM) code = Code::kPermissionDenied;
  if (err == ENOENT) code = Code::kNotFound;
  if (err == ETIMEDOUT) code = Code::kTimeout;
  if (err == ECANCELED) code = Code::kAborted;
  return {code, std::move(m)};
}

std::string Status::to_string() const {
  if (is_ok()) return "OK";
  std::string s(code_name(code_));
  s += ": ";
  s += message_;
  return s;
}

Status Status::with_context(std::string_view context) const {
  if (is_ok()) return *this;
  std::string m(context);
  m += ": ";
  m += message_;
  Status out(code_, std::move(m));
  out.detail_ = detail_;
  return out;
}

Status Status::with_detail(Detail detail) const {
  Status out = *this;
  if (!is_ok()) out.detail_ = detail;
  return out;
}

void check_failed(const char* expr, const char* file, int line) {
  std::fprintf(stderr, "ferry: internal check failed: %s at %s:%d\n", expr, file, line);
  std::abort();
}

}  // namespace ferry
