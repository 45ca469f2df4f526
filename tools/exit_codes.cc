// exit_codes.cc: see exit_codes.h.
#include "tools/exit_codes.h"

#include "base/retry.h"

namespace ferry::cli {

int exit_code_for(const Status& status) {
  switch (status.code()) {
    case Code::kOk:
      return kExitOk;
    case Code::kInvalidArgument:
    case Code::kNotFound:
      return kExitUsage;
    case Code::kCorruption:
      return kExitCorruption;
    default:
      break;
  }
  return retry_job_later(status) ? kExitRetryable : kExitFailure;
}

std::string_view exit_code_name(int code) {
  switch (code) {
    case kExitOk:
      return "ok";
    case kExitFailure:
      return "failure";
    case kExitUsage:
      return "usage";
    case kExitRetryable:
      return "retryable";
    case kExitCorruption:
      return "corruption";
    case kExitPartial:
      return "partial";
    case kExitWarning:
      return "warning";
    default:
      return "unknown";
  }
}

std::string_view exit_codes_help() {
  return "exit codes: 0 ok; 1 failure (not cured by retrying); 2 usage error; 3 retryable (target down,\n"
         "connection refused, timeout, I/O error, full disk); 4 corruption found; 5 partial result (some\n"
         "files restored, some not; a prune whose gc failed); 6 warning (ferry status: RPO at risk, job "
         "failed,\n"
         "target down)\n";
}

}  // namespace ferry::cli
