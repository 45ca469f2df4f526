// exit_codes.h: what the `ferry` command's exit status means, in one place,
// so that scripts and schedulers can tell "try again later" from "the data
// is bad" from "fix the command line". A Status maps to a code by its code
// and base/retry.h's policy (never by its message):
//
//   code  name        when
//   0     ok          everything asked for was done (status: no warning)
//   1     failure     a failure another attempt will not cure: permission
//                     denied, an unsupported format, a bug (Internal)
//   2     usage       bad flags or arguments, or what they name is missing
//                     (InvalidArgument, NotFound)
//   3     retryable   base/retry.h retry_job_later: the target is down,
//                     refused the connection or timed out, an I/O error, a
//                     full disk or quota; the same command may succeed later
//   4     corruption  damaged data was found (Corruption): verify, restore,
//                     scrub; the message names the chunk, file or pack
//   5     partial     some of the result is there, some is not: a restore
//                     into files that stopped (other than on corruption)
//                     after some files were restored whole, a prune whose
//                     gc failed after the snapshots were pruned
//   6     warning     `ferry status`: the agent runs, but a job's RPO is
//                     breached or forecast to be, a checkpoint is not
//                     complete, a job failed or a target is down
//
// Corruption wins over partial: damaged data is what a caller must see
// first. Partial wins over retryable: part of the work is done. docs/OPERATIONS.md
// ("Exit codes") repeats this table for operators.
#pragma once

#include <string_view>

#include "base/status.h"

namespace ferry::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitRetryable = 3;
inline constexpr int kExitCorruption = 4;
inline constexpr int kExitPartial = 5;
inline constexpr int kExitWarning = 6;

// The exit code for a failed command whose failure is `status`.
// REQUIRES: !status.is_ok().
int exit_code_for(const Status& status);

// "ok", "failure", "usage", ... for JSON output and messages.
std::string_view exit_code_name(int code);

// The table above in a few lines, for --help and the man page.
std::string_view exit_codes_help();

}  // namespace ferry::cli
