// s3_store.h: the ChunkStore in an S3 bucket (AWS S3, Ceph radosgw, MinIO;
// docs/FORMAT.md section 9). Under s3://BUCKET/PREFIX, per namespace: pack
// objects of many chunks (StoreOptions::object_pack_target_bytes, 32 MiB by
// default; never one object per chunk) that list their chunks in a trailer,
// one index object per pack (the trailer again, so that opening a namespace
// does not read the packs, and so that the index can always be rebuilt from
// them), and one object per snapshot, written last and only when absent
// (If-None-Match: *).
//
// The contract of chunk_store.h holds as for the local store: a put is
// verified in full, then held in the namespace's open pack; sync() uploads
// the open pack and returns once the PUT of the pack and of its index object
// returned 200, so a chunk is acknowledged only once durable in the bucket.
// A pack whose upload fails puts its chunks back into the open pack and
// fails the syncs that waited for it. Any number of gateways and hosts may
// write to one bucket at once: packs are named by the SHA-256 of their bytes,
// so duplicates are harmless, and each namespace lists the index objects
// again when its view is older than kS3IndexRefreshMs or when a commit names
// chunks it has not seen.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "base/status.h"
#include "store/chunk_store.h"
#include "store/s3_client.h"
#include "store/store_options.h"

namespace ferry {

// "s3://BUCKET" or "s3://BUCKET/PREFIX": the bucket and the key prefix
// (without slashes at either end; empty for the bucket's root).
struct S3Url {
  std::string bucket;
  std::string prefix;
};
bool is_s3_url(std::string_view s);
// InvalidArgument naming the URL unless it has that form with a valid bucket
// name (3-63 of [a-z0-9.-]) and a prefix of [A-Za-z0-9._/-] without "//".
Result<S3Url> parse_s3_url(std::string_view url);

// Opens the store at `url`. Checks that the bucket exists and the
// credentials can read it (NotFound or PermissionDenied otherwise).
Result<std::unique_ptr<ChunkStore>> open_s3_store(std::string_view url, S3Config config,
                                                  const StoreOptions& options = {});

}  // namespace ferry
