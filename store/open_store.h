// open_store.h: the one place that turns a store named on the command line
// into a ChunkStore: "s3://BUCKET/PREFIX" opens the S3 backend with the S3
// settings users already have (store/s3_client.h
// s3_config_from_environment: AWS_* variables, ~/.aws profiles), anything
// else the local store in that directory.
#pragma once

#include <memory>
#include <string_view>

#include "base/status.h"
#include "store/chunk_store.h"
#include "store/store_options.h"

namespace ferry {

Result<std::unique_ptr<ChunkStore>> open_store(std::string_view spec, const StoreOptions& options = {});

}  // namespace ferry
