// s3_store.cc: see s3_store.h. S3Store owns the client and one S3Namespace
// per namespace (s3_namespace.h), opened on first use; name checks, frame
// verification, permissions and retention are NamespacedStore's
// (namespaced_store.h).
#include "store/s3_store.h"

#include <algorithm>
#include <map>
#include <mutex>

#include "codec/manifest.h"
#include "store/namespaced_store.h"
#include "store/s3_namespace.h"
#include "store/store_checks.h"
#include "store/store_limits.h"

namespace ferry {
namespace {

bool bucket_char(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-'; }
bool prefix_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
         c == '-' || c == '/';
}

class S3Store final : public NamespacedStore<S3Namespace> {
 public:
  S3Store(std::unique_ptr<S3Client> client, S3Url url, StoreOptions options)
      : NamespacedStore(std::move(options)), client_(std::move(client)), url_(std::move(url)) {}

  Result<std::vector<std::string>> namespaces() override {
    std::vector<std::string> out;
    const std::string root = url_.prefix.empty() ? "" : url_.prefix + "/";
    std::string token;
    for (std::uint64_t pages = 0; pages < kS3MaxListPages; ++pages) {
      ASSIGN_OR_RETURN(S3ListPage page, client_->list_page(url_.bucket, root, "/", token));
      for (const std::string& p : page.common_prefixes) {
        std::string name = p.substr(root.size());
        if (!name.empty() && name.back() == '/') name.pop_back();
        if (validate_namespace(name)) out.push_back(std::move(name));
      }
      if (!page.truncated) break;
      token = page.next_continuation_token;
    }
    std::sort(out.begin(), out.end());
    return out;
  }

 private:
  Result<S3Namespace*> open(std::string_view ns) override {
    RETURN_IF_ERROR(validate_namespace(ns));
    std::lock_guard lock(mu_);
    auto it = open_.find(ns);
    if (it != open_.end()) return it->second.get();
    const std::string root = (url_.prefix.empty() ? "" : url_.prefix + "/") + std::string(ns) + "/";
    ASSIGN_OR_RETURN(auto n, S3Namespace::open(*client_, url_.bucket, root, std::string(ns), options_));
    S3Namespace* raw = n.get();
    open_.emplace(std::string(ns), std::move(n));
    return raw;
  }

  std::unique_ptr<S3Client> client_;
  const S3Url url_;
  std::mutex mu_;
  std::map<std::string, std::unique_ptr<S3Namespace>, std::less<>> open_;
};

}  // namespace

bool is_s3_url(std::string_view s) { return s.starts_with("s3://"); }

Result<S3Url> parse_s3_url(std::string_view url) {
  auto bad = [&](std::string_view why) {
    return Status::invalid_argument("invalid S3 URL \"" + std::string(url.substr(0, 200)) +
                                    "\": " + std::string(why) + " (expected s3://BUCKET/PREFIX)");
  };
  if (!is_s3_url(url)) return bad("it does not begin with s3://");
  std::string_view rest = url.substr(5);
  const auto slash = rest.find('/');
  S3Url out;
  out.bucket = std::string(rest.substr(0, slash));
  std::string_view prefix = slash == std::string_view::npos ? std::string_view() : rest.substr(slash + 1);
  while (!prefix.empty() && prefix.back() == '/') prefix.remove_suffix(1);
  out.prefix = std::string(prefix);
  if (out.bucket.size() < 3 || out.bucket.size() > 63 ||
      !std::all_of(out.bucket.begin(), out.bucket.end(), bucket_char)) {
    return bad("the bucket name must be 3-63 characters of [a-z0-9.-]");
  }
  if (!std::all_of(out.prefix.begin(), out.prefix.end(), prefix_char) ||
      out.prefix.find("//") != std::string::npos || (!out.prefix.empty() && out.prefix.front() == '/')) {
    return bad("the prefix must be [A-Za-z0-9._/-] without empty segments");
  }
  for (std::size_t pos = 0; pos <= out.prefix.size() && !out.prefix.empty();) {
    std::size_t end = out.prefix.find('/', pos);
    if (end == std::string::npos) end = out.prefix.size();
    const std::string_view seg = std::string_view(out.prefix).substr(pos, end - pos);
    if (seg == "." || seg == "..") return bad("the prefix may not hold . or .. segments");
    pos = end + 1;
  }
  return out;
}

Result<std::unique_ptr<ChunkStore>> open_s3_store(std::string_view url, S3Config config,
                                                  const StoreOptions& options) {
  ASSIGN_OR_RETURN(S3Url where, parse_s3_url(url));
  if (options.object_pack_target_bytes < kS3MinPackTargetBytes ||
      options.object_pack_target_bytes > kS3MaxPackTargetBytes) {
    return Status::invalid_argument("S3 pack target size must be between " +
                                    std::to_string(kS3MinPackTargetBytes >> 20) + " and " +
                                    std::to_string(kS3MaxPackTargetBytes >> 20) + " MiB");
  }
  if (options.gc_repack_live_percent < 0 || options.gc_repack_live_percent > 100) {
    return Status::invalid_argument("S3 gc rewrite threshold must be 0 to 100 percent of a pack live, not " +
                                    std::to_string(options.gc_repack_live_percent));
  }
  if (options.object_lock_days < 0 || options.object_lock_days > kS3MaxObjectLockDays) {
    return Status::invalid_argument("S3 Object Lock retention must be 0 to " +
                                    std::to_string(kS3MaxObjectLockDays) + " days, not " +
                                    std::to_string(options.object_lock_days));
  }
  ASSIGN_OR_RETURN(auto client, S3Client::create(std::move(config)));
  // One LIST shows at once that the bucket exists and the keys can read it.
  auto probe = client->list_page(where.bucket, where.prefix, "/", "", 1);
  if (!probe) return probe.status().with_context("opening store " + std::string(url));
  return std::unique_ptr<ChunkStore>(new S3Store(std::move(client), std::move(where), options));
}

}  // namespace ferry
