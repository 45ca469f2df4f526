// s3_client.h: a client of the S3 API (AWS S3, Ceph radosgw, MinIO) for the
// object-store backend and the tools: PUT (optionally only when absent, or
// only when its ETag matches), ranged GET, HEAD, DELETE, paginated LIST
// (ListObjectsV2) and bucket creation, many requests in parallel. HTTP, TLS and the SigV4 signature are
// libcurl's (CURLOPT_AWS_SIGV4; the multi interface runs requests in
// parallel over a connection cache shared by every thread): ferry writes no
// HTTP stack and no signer. Payloads are signed (x-amz-content-sha256 holds
// their SHA-256), so a body changed on its way is refused by the gateway.
//
// Failures become Status codes that base/retry.h judges: 500, 502, 503
// (SlowDown), 504 and 429 are Unavailable, a reset or a cut transfer IOError,
// a stalled one Timeout; each request is retried by that rule with
// exponential backoff and jitter, up to S3Config::max_attempts, moving to the
// next endpoint when several are configured. 403 is PermissionDenied, 404
// NotFound (NoSuchBucket named as such), 412 a refused conditional write.
//
// Thread-safe: any number of threads may issue requests at once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "codec/tree_hash.h"
#include "store/s3_xml.h"
#include "store/store_limits.h"

namespace ferry {

struct S3Credentials {
  std::string access_key_id;
  std::string secret_access_key;
  std::string session_token;  // empty: none
};

struct S3Config {
  // "https://s3.us-east-1.amazonaws.com", "http://127.0.0.1:7480", ...
  // Several: a request that cannot reach one moves on to the next.
  std::vector<std::string> endpoints;
  std::string region = "us-east-1";
  S3Credentials credentials;
  // Path style (http://host/bucket/key, what Ceph and MinIO expect by
  // default) or virtual-host style (http://bucket.host/key, AWS's).
  bool path_style = true;
  // A private CA bundle for https endpoints; empty: the system's. TLS is
  // always verified.
  std::string ca_file;
  // Retries and timeouts: store/store_limits.h says what each one means.
  int max_attempts = kS3MaxAttempts;
  int backoff_base_ms = kS3BackoffBaseMs;
  int backoff_max_ms = kS3BackoffMaxMs;
  int connect_timeout_ms = kS3ConnectTimeoutMs;
  // A transfer slower than 1 KiB/s for this long is cut (Timeout).
  int stall_timeout_ms = kS3StallTimeoutMs;
  // Requests in flight at once in one call to run().
  int max_parallel = kS3MaxParallelRequests;
  // Bytes per second of request bodies (uploads) over every request of the
  // client, from all threads; 0: no cap. A PUT's body is read out at this
  // pace (store/s3_client.cc on_read).
  std::uint64_t max_upload_bytes_per_s = 0;
};

// The configuration users already have, as the AWS CLI reads it:
// AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, else the
// profile `profile` (empty: AWS_PROFILE, else "default") of
// AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials; the region from
// AWS_REGION, AWS_DEFAULT_REGION, the profile in ~/.aws/config
// (AWS_CONFIG_FILE), else us-east-1; the endpoint from AWS_ENDPOINT_URL_S3,
// AWS_ENDPOINT_URL (either: several separated by commas, tried in turn), the
// profile's endpoint_url, else AWS's regional endpoint; AWS_CA_BUNDLE or the
// profile's ca_bundle for a private CA. Addressing: FERRY_S3_ADDRESSING
// ("path" or "virtual"); by default virtual-host for AWS's endpoint and path
// style for any other (what Ceph and MinIO expect).
// InvalidArgument naming what is missing or wrong.
Result<S3Config> s3_config_from_environment(std::string_view profile = {});

// The profile `profile` of an AWS credentials or config file's text
// (`prefix_profile`: the config file names sections "[profile NAME]").
struct AwsProfile {
  std::string access_key_id, secret_access_key, session_token, region, endpoint_url, ca_bundle;
};
std::optional<AwsProfile> parse_aws_profile(std::string_view text, std::string_view profile,
                                            bool prefix_profile);

// One request. The caller fills the request half, run() the reply half.
struct S3Request {
  enum class Method { kGet, kPut, kHead, kDelete };
  Method method = Method::kGet;
  std::string bucket;
  std::string key;  // empty: the bucket itself
  // Query parameters (name, value), unencoded; run() encodes and sorts them.
  std::vector<std::pair<std::string, std::string>> query;
  std::span<const std::byte> body;  // PUT; must outlive run()
  // The body's SHA-256, signed as x-amz-content-sha256, when the caller has
  // it already (a pack is named by it); otherwise run() computes it. A wrong
  // one is refused by the gateway, never stored.
  std::optional<Digest> body_sha256;
  bool if_none_match = false;  // PUT only when the key is absent (412 otherwise)
  std::string if_match;        // PUT only when the object's ETag is this (412 otherwise)
  // More request headers ("x-amz-object-lock-mode", "GOVERNANCE"), signed.
  std::vector<std::pair<std::string, std::string>> headers;
  std::optional<std::pair<std::uint64_t, std::uint64_t>> range;  // GET [first, last]
  std::uint64_t max_reply_bytes = 0;                             // 0: kS3MaxReplyBytes

  // Reply.
  Status status;                 // OK for 2xx
  long http_status = 0;          // 0: no reply
  std::vector<std::byte> reply;  // the body (GET, LIST, error bodies)
  std::uint64_t content_length = 0;
  std::string etag;
  std::string version_id;  // x-amz-version-id, in a versioned bucket
  int attempts = 0;
};

struct S3Stats {
  std::uint64_t requests = 0;  // attempts sent, retries included
  std::uint64_t retries = 0;
  std::uint64_t bytes_sent = 0;
  std::uint64_t bytes_received = 0;
};

class S3Client {
 public:
  static Result<std::unique_ptr<S3Client>> create(S3Config config);
  ~S3Client();
  S3Client(const S3Client&) = delete;
  S3Client& operator=(const S3Client&) = delete;

  const S3Config& config() const { return config_; }

  // Runs the requests, up to max_parallel at once, each retried by the
  // rule above; fills each one's reply. Returns once all are done.
  void run(std::span<S3Request* const> requests);

  // PUT. With `if_absent`: true when this call created the object, false
  // when it existed already (412); without: always true.
  Result<bool> put(std::string_view bucket, std::string_view key, std::span<const std::byte> body,
                   bool if_absent = false);
  // The PUT itself, with If-Match (when not empty), more signed headers and
  // the body's SHA-256 when known (S3Request::body_sha256); the request comes
  // back for its status, HTTP code and ETag.
  S3Request put_request(std::string_view bucket, std::string_view key, std::span<const std::byte> body,
                        bool if_absent, std::string_view if_match = {},
                        std::vector<std::pair<std::string, std::string>> headers = {},
                        const Digest* body_sha256 = nullptr);
  // GET of the whole object, or of bytes [first, first + length).
  Result<std::vector<std::byte>> get(std::string_view bucket, std::string_view key);
  Result<std::vector<std::byte>> get_range(std::string_view bucket, std::string_view key, std::uint64_t first,
                                           std::uint64_t length);
  // get_range into `out`, whose capacity is kept (a reused buffer takes
  // the reply without growing or faulting in fresh pages). On failure `out`
  // holds what arrived, if anything.
  Status get_range_into(std::string_view bucket, std::string_view key, std::uint64_t first,
                        std::uint64_t length, std::vector<std::byte>& out);
  // HEAD: the object's size; NotFound when absent.
  Result<std::uint64_t> head(std::string_view bucket, std::string_view key);
  // DELETE; OK when the key was already absent (S3's own rule).
  Status remove(std::string_view bucket, std::string_view key);
  // Every object whose key starts with `prefix`, all pages, in key order.
  Result<std::vector<S3Object>> list(std::string_view bucket, std::string_view prefix);
  // One page; `delimiter` groups keys into common prefixes.
  Result<S3ListPage> list_page(std::string_view bucket, std::string_view prefix, std::string_view delimiter,
                               std::string_view continuation_token, std::uint32_t max_keys = 1000);
  // Creates the bucket; OK when it exists already and is this user's.
  Status create_bucket(std::string_view bucket);

  S3Stats stats() const;

 private:
  struct Shared;
  explicit S3Client(S3Config config);
  S3Config config_;
  std::unique_ptr<Shared> shared_;
};

// A ranged GET's or an error reply's body as text (for messages).
std::string_view as_text(std::span<const std::byte> bytes);

}  // namespace ferry
