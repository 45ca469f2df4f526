// open_store.cc: see open_store.h.
#include "store/open_store.h"

#include "store/local_store.h"
#include "store/s3_store.h"

namespace ferry {

Result<std::unique_ptr<ChunkStore>> open_store(std::string_view spec, const StoreOptions& options) {
  if (!is_s3_url(spec)) return open_local_store(std::filesystem::path(spec), options);
  ASSIGN_OR_RETURN(S3Config config, s3_config_from_environment());
  return open_s3_store(spec, std::move(config), options);
}

}  // namespace ferry
