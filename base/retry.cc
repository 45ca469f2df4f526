// retry.cc: the rule in retry.h: one row per code, and the two details that
// change a row. The table there says why.
#include "base/retry.h"

namespace ferry {
namespace {

// One row of the table: whether a new connection may cure a failure with
// this code, and whether reading the checkpoint again later may.
struct Rule {
  bool new_connection;
  bool job_later;
};

Rule rule_for(Code code) {
  switch (code) {
    case Code::kCorruption:
    case Code::kIOError:
    case Code::kUnavailable:
    case Code::kAborted:
    case Code::kTimeout:
      return {true, true};
    case Code::kResourceExhausted:
      return {false, true};
    case Code::kOk:
    case Code::kInvalidArgument:
    case Code::kNotFound:
    case Code::kUnsupported:
    case Code::kPermissionDenied:
    case Code::kInternal:
      return {false, false};
  }
  return {false, false};
}

// (*) in retry.h: the peer verified bytes this host made and found them damaged.
bool damage_found_by_peer(const Status& s) {
  return s.code() == Code::kCorruption && s.detail() == Detail::kRefusedByPeer;
}

}  // namespace

bool retry_on_new_connection(const Status& s) {
  FERRY_CHECK(!s.is_ok());
  // (**) in retry.h: a changed source needs a fresh read, not a new connection.
  if (damage_found_by_peer(s) || s.detail() == Detail::kSourceChanged) return false;
  return rule_for(s.code()).new_connection;
}

bool retry_job_later(const Status& s) {
  FERRY_CHECK(!s.is_ok());
  if (damage_found_by_peer(s)) return false;
  return rule_for(s.code()).job_later;
}

}  // namespace ferry
