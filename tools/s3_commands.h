// s3_commands.h: the commands that work straight on an S3 bucket, with no
// receiver: `ferry push DIR --to=s3://BUCKET/PREFIX` and `ferry list
// --from=s3://BUCKET/PREFIX` (restore goes through a store: location,
// replication/frame_sources.h). The namespace is --namespace, or this
// machine's host name, as a receiver would take it from the host's
// certificate; the bucket's credentials (AWS_* variables, ~/.aws) are the
// access control.
#pragma once

#include "codec/delta_chain.h"

#include <cstdint>
#include <string>

namespace ferry::cli {

// --namespace, or the host name when it is empty.
std::string namespace_or_host();
// `object_lock_days`: S3 Object Lock retention of every object written
// (StoreOptions::object_lock_days; 0: none).
// `delta` and `delta_from`: the delta base, chosen from the namespace's
// snapshots (store/store_push.h) unless delta_from names it. `bwlimit`:
// bytes per second of all uploads (--bwlimit; 0: none).
int push_to_bucket(const std::string& path, std::int64_t object_lock_days, const DeltaPolicy& delta,
                   const std::string& delta_from, std::uint64_t bwlimit = 0);
int list_bucket();

}  // namespace ferry::cli
