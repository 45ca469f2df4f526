// retry.h: ferry's one rule for which failures another attempt may cure.
// ferry retries in two ways, and every retry decision asks the policy of its
// way, by the status's code and detail (never its message, never a list of
// its own):
//
//   retry_on_new_connection: inside one push or restore, drop the
//     connection, back off, dial the same peer again and resend what it has
//     not made durable. Used by the sender's streams and control link and by
//     restore's streams.
//   retry_job_later: the agent queues the whole checkpoint again, seconds to
//     minutes later, and reads it afresh from disk. Used once a push has
//     spent its own reconnects, and for failures reading the checkpoint.
//
// The rule, per code:
//
//   code               new connection  job later  why
//   InvalidArgument    no              no         the request itself is wrong; it is wrong again
//   NotFound           no              no         what it names (snapshot, chunk, checkpoint) is gone
//   Corruption         yes *           yes *      bytes garbled on their way (a message from the peer
//                                                 that does not parse) come right on a new connection
//   IOError            yes             yes        a reset, a failed read or write: usually passes
//   Unsupported        no              no         a version or feature the other side lacks
//   ResourceExhausted  no              yes        a quota, a full disk, a connection limit: a new
//                                                 connection at once meets the same limit; minutes
//                                                 later a prune, gc or freed connection may lift it
//   Unavailable        yes             yes        the peer is down, restarting or unreachable now
//   PermissionDenied   no              no         certificates, append-only: an operator must act
//   Aborted            yes **          yes        the peer is shutting down; its successor answers
//   Timeout            yes             yes        a stalled link or peer
//   Internal           no              no         a bug in ferry: repeating it would hide it
//
//   *  Except with Detail::kRefusedByPeer: the peer verified bytes this host
//      made (a frame, a manifest) and found them damaged. Resending them
//      meets the same verdict, and re-reading the checkpoint later only hides
//      a fault to investigate (memory, a bug): the job fails, and says so.
//   ** Except with Detail::kSourceChanged: a checkpoint file changed while
//      it was read. A new connection cannot help; a fresh read later can.
//
// Other details do not change the rule: a peer's refusal with a code that
// says the peer itself is in trouble (Unavailable, IOError, Timeout, Aborted)
// is retried like the same failure of the connection.
#pragma once

#include "base/status.h"

namespace ferry {

// REQUIRES: !s.is_ok().
bool retry_on_new_connection(const Status& s);
// REQUIRES: !s.is_ok().
bool retry_job_later(const Status& s);

}  // namespace ferry
