// s3_client.cc: see s3_client.h. One curl easy handle per attempt, run by a
// curl multi handle per run() call; connections, DNS and TLS sessions live in
// a curl share handle, so that every thread and call reuses them.
#include "store/s3_client.h"

#include <curl/curl.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>

#include "base/clock.h"
#include "base/retry.h"
#include "base/token_bucket.h"
#include "codec/tree_hash.h"
#include "store/store_limits.h"

namespace ferry {
namespace {

constexpr char kEmptySha256[] = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
// Below this many bytes per second for stall_timeout_ms, a transfer is cut.
constexpr long kStallBytesPerSecond = 1024;

const char* method_name(S3Request::Method m) {
  switch (m) {
    case S3Request::Method::kGet:
      return "GET";
    case S3Request::Method::kPut:
      return "PUT";
    case S3Request::Method::kHead:
      return "HEAD";
    case S3Request::Method::kDelete:
      return "DELETE";
  }
  return "?";
}

// RFC 3986 percent-encoding as SigV4 wants it: every byte but the unreserved
// ones, hex in upper case; '/' kept in keys.
std::string uri_encode(std::string_view s, bool keep_slash) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
        c == '.' || c == '~' || (keep_slash && c == '/')) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

std::string trim(std::string_view s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string_view::npos) return {};
  const auto e = s.find_last_not_of(" \t\r\n");
  return std::string(s.substr(b, e - b + 1));
}

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? std::string() : std::string(v);
}

std::optional<std::string> read_text_file(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

// What one attempt of one request holds while curl runs it.
struct Transfer {
  S3Request* req = nullptr;
  TokenBucket* upload_cap = nullptr;  // null: no cap
  CURL* easy = nullptr;
  curl_slist* headers = nullptr;
  std::size_t upload_offset = 0;
  std::uint64_t reply_limit = 0;
  bool reply_too_large = false;
  std::size_t endpoint = 0;
  std::string url;
  std::array<char, CURL_ERROR_SIZE> error{};

  ~Transfer() {
    if (easy != nullptr) curl_easy_cleanup(easy);
    if (headers != nullptr) curl_slist_free_all(headers);
  }
};

std::size_t on_write(char* data, std::size_t size, std::size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const std::size_t bytes = size * n;
  if (t->req->reply.size() + bytes > t->reply_limit) {
    t->reply_too_large = true;
    return 0;  // curl stops with CURLE_WRITE_ERROR
  }
  const auto* p = reinterpret_cast<const std::byte*>(data);
  t->req->reply.insert(t->req->reply.end(), p, p + bytes);
  return bytes;
}

std::size_t on_read(char* buffer, std::size_t size, std::size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const std::size_t left = t->req->body.size() - t->upload_offset;
  const std::size_t take = std::min(left, size * n);
  // The cap: this transfer (and only it) waits here, as a slower link
  // would make it; libcurl asks for at most one upload buffer (64 KiB) at
  // a time, so waits stay short.
  if (t->upload_cap != nullptr && take != 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(t->upload_cap->take_ms(take)));
  }
  std::memcpy(buffer, t->req->body.data() + t->upload_offset, take);
  t->upload_offset += take;
  return take;
}

int on_seek(void* user, curl_off_t offset, int origin) {
  auto* t = static_cast<Transfer*>(user);
  if (origin != SEEK_SET || offset < 0 || static_cast<std::size_t>(offset) > t->req->body.size()) {
    return CURL_SEEKFUNC_CANTSEEK;
  }
  t->upload_offset = static_cast<std::size_t>(offset);
  return CURL_SEEKFUNC_OK;
}

std::size_t on_header(char* data, std::size_t size, std::size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const std::string_view line(data, size * n);
  const auto colon = line.find(':');
  if (colon != std::string_view::npos) {
    std::string name(line.substr(0, colon));
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
    const std::string value = trim(line.substr(colon + 1));
    if (name == "etag") {
      t->req->etag = value.size() >= 2 && value.front() == '"' ? value.substr(1, value.size() - 2) : value;
    } else if (name == "x-amz-version-id") {
      t->req->version_id = value;
    } else if (name == "content-length") {
      t->req->content_length = std::strtoull(value.c_str(), nullptr, 10);
    }
  }
  return size * n;
}

// The Status of a finished attempt.
Status attempt_status(const Transfer& t, CURLcode rc, long http) {
  const S3Request& r = *t.req;
  const std::string what = std::string("S3 ") + method_name(r.method) + " " + r.bucket +
                           (r.key.empty() ? "" : "/" + r.key) + " via " + t.url.substr(0, t.url.find('/', 8));
  if (rc != CURLE_OK) {
    const std::string why = what + ": " + (t.error[0] != 0 ? t.error.data() : curl_easy_strerror(rc));
    if (t.reply_too_large) {
      return Status::exhausted(what + ": reply larger than " + std::to_string(t.reply_limit) + " bytes");
    }
    switch (rc) {
      case CURLE_OPERATION_TIMEDOUT:
        return Status::timeout(why);
      case CURLE_COULDNT_CONNECT:
      case CURLE_COULDNT_RESOLVE_HOST:
      case CURLE_COULDNT_RESOLVE_PROXY:
        return Status::unavailable(why);
      case CURLE_PEER_FAILED_VERIFICATION:
      case CURLE_SSL_CERTPROBLEM:
        return Status::permission_denied(why +
                                         " (TLS verification failed; a private CA: --s3_ca / AWS_CA_BUNDLE)");
      case CURLE_SSL_CACERT_BADFILE:
      case CURLE_URL_MALFORMAT:
      case CURLE_UNSUPPORTED_PROTOCOL:
        return Status::invalid_argument(why);
      default:
        return Status::io_error(why);
    }
  }
  if (http >= 200 && http < 300) return Status::ok();
  const S3ErrorBody err = parse_s3_error(as_text(r.reply));
  std::string msg = what + ": HTTP " + std::to_string(http);
  if (!err.code.empty()) msg += " " + err.code;
  if (!err.message.empty()) msg += ": " + err.message;
  if (http == 404 && err.code == "NoSuchBucket") msg += " (the bucket " + r.bucket + " does not exist)";
  // The gateway found the body not the one signed (bytes changed on their
  // way) or waited too long for it: a new connection cures both.
  if (err.code == "XAmzContentSHA256Mismatch" || err.code == "BadDigest") return Status::corruption(msg);
  if (err.code == "RequestTimeout") return Status::timeout(msg);
  if (http == 401 || http == 403) return Status::permission_denied(msg);
  if (http == 404) return Status::not_found(msg);
  if (http == 409 && (r.if_none_match || !r.if_match.empty()))
    return Status::unavailable(msg);  // a concurrent conditional write: retry
  if (http == 429 || http >= 500) return Status::unavailable(msg);
  return Status::invalid_argument(msg);
}

}  // namespace

std::string_view as_text(std::span<const std::byte> bytes) {
  return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

// ---- configuration --------------------------------------------------------

std::optional<AwsProfile> parse_aws_profile(std::string_view text, std::string_view profile,
                                            bool prefix_profile) {
  const std::string want =
      prefix_profile && profile != "default" ? "profile " + std::string(profile) : std::string(profile);
  std::optional<AwsProfile> out;
  bool in_section = false;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) eol = text.size();
    const std::string line = trim(text.substr(pos, eol - pos));
    pos = eol + 1;
    if (line.empty() || line[0] == '#' || line[0] == ';') continue;
    if (line.front() == '[') {
      const auto close = line.find(']');
      in_section = close != std::string::npos && trim(std::string_view(line).substr(1, close - 1)) == want;
      if (in_section && !out) out.emplace();
      continue;
    }
    if (!in_section) continue;
    const auto eq = line.find('=');
    if (eq == std::string::npos) continue;
    const std::string k = trim(std::string_view(line).substr(0, eq));
    const std::string v = trim(std::string_view(line).substr(eq + 1));
    if (k == "aws_access_key_id") out->access_key_id = v;
    if (k == "aws_secret_access_key") out->secret_access_key = v;
    if (k == "aws_session_token") out->session_token = v;
    if (k == "region") out->region = v;
    if (k == "endpoint_url") out->endpoint_url = v;
    if (k == "ca_bundle") out->ca_bundle = v;
  }
  return out;
}

Result<S3Config> s3_config_from_environment(std::string_view profile_arg) {
  S3Config c;
  std::string profile(profile_arg);
  if (profile.empty()) profile = env("AWS_PROFILE");
  if (profile.empty()) profile = "default";
  const std::string home = env("HOME");
  std::filesystem::path cred_file = env("AWS_SHARED_CREDENTIALS_FILE");
  if (cred_file.empty() && !home.empty()) cred_file = std::filesystem::path(home) / ".aws" / "credentials";
  std::filesystem::path config_file = env("AWS_CONFIG_FILE");
  if (config_file.empty() && !home.empty()) config_file = std::filesystem::path(home) / ".aws" / "config";

  c.credentials.access_key_id = env("AWS_ACCESS_KEY_ID");
  c.credentials.secret_access_key = env("AWS_SECRET_ACCESS_KEY");
  c.credentials.session_token = env("AWS_SESSION_TOKEN");
  if (c.credentials.access_key_id.empty() != c.credentials.secret_access_key.empty()) {
    return Status::invalid_argument(
        std::string("S3 credentials: ") +
        (c.credentials.access_key_id.empty() ? "AWS_SECRET_ACCESS_KEY" : "AWS_ACCESS_KEY_ID") +
        " is set but " +
        (c.credentials.access_key_id.empty() ? "AWS_ACCESS_KEY_ID" : "AWS_SECRET_ACCESS_KEY") + " is not");
  }
  if (c.credentials.access_key_id.empty()) {
    c.credentials = {};
    if (auto text = read_text_file(cred_file)) {
      if (auto p = parse_aws_profile(*text, profile, false)) {
        c.credentials = {p->access_key_id, p->secret_access_key, p->session_token};
        if (c.credentials.access_key_id.empty() || c.credentials.secret_access_key.empty()) {
          return Status::invalid_argument("S3 credentials: profile \"" + profile + "\" in " +
                                          cred_file.string() +
                                          " lacks aws_access_key_id or aws_secret_access_key");
        }
      }
    }
  }
  if (c.credentials.access_key_id.empty() || c.credentials.secret_access_key.empty()) {
    return Status::invalid_argument(
        "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or give profile \"" + profile +
        "\" aws_access_key_id and aws_secret_access_key in " + cred_file.string());
  }
  std::optional<AwsProfile> config_profile;
  if (auto text = read_text_file(config_file)) config_profile = parse_aws_profile(*text, profile, true);
  c.region = env("AWS_REGION");
  if (c.region.empty()) c.region = env("AWS_DEFAULT_REGION");
  if (c.region.empty() && config_profile) c.region = config_profile->region;
  if (c.region.empty()) c.region = "us-east-1";
  std::string endpoints = env("AWS_ENDPOINT_URL_S3");
  if (endpoints.empty()) endpoints = env("AWS_ENDPOINT_URL");
  if (endpoints.empty() && config_profile) endpoints = config_profile->endpoint_url;
  std::size_t pos = 0;
  while (pos <= endpoints.size() && !endpoints.empty()) {
    std::size_t comma = endpoints.find(',', pos);
    if (comma == std::string::npos) comma = endpoints.size();
    std::string e = trim(std::string_view(endpoints).substr(pos, comma - pos));
    if (!e.empty()) c.endpoints.push_back(std::move(e));
    pos = comma + 1;
  }
  if (c.endpoints.empty()) {
    c.endpoints.push_back("https://s3." + c.region + ".amazonaws.com");
    c.path_style = false;
  }
  const std::string addressing = env("FERRY_S3_ADDRESSING");
  if (addressing == "path") {
    c.path_style = true;
  } else if (addressing == "virtual") {
    c.path_style = false;
  } else if (!addressing.empty()) {
    return Status::invalid_argument("FERRY_S3_ADDRESSING=" + addressing + ": must be path or virtual");
  }
  c.ca_file = env("AWS_CA_BUNDLE");
  if (c.ca_file.empty() && config_profile) c.ca_file = config_profile->ca_bundle;
  return c;
}

// ---- the client -----------------------------------------------------------

struct S3Client::Shared {
  CURLSH* share = nullptr;
  std::array<std::mutex, CURL_LOCK_DATA_LAST> locks;
  std::atomic<std::size_t> endpoint{0};  // where requests go first
  std::atomic<std::uint64_t> requests{0}, retries{0}, bytes_sent{0}, bytes_received{0};
  std::mutex rng_mu;
  std::mt19937_64 rng{std::random_device{}()};
  std::unique_ptr<TokenBucket> upload_cap;  // null: no cap

  ~Shared() {
    if (share != nullptr) curl_share_cleanup(share);
  }
  static void lock(CURL*, curl_lock_data data, curl_lock_access, void* user) {
    static_cast<Shared*>(user)->locks[static_cast<std::size_t>(data)].lock();
  }
  static void unlock(CURL*, curl_lock_data data, void* user) {
    static_cast<Shared*>(user)->locks[static_cast<std::size_t>(data)].unlock();
  }
  double jitter() {
    std::lock_guard g(rng_mu);
    return std::uniform_real_distribution<double>(0.5, 1.0)(rng);
  }
};

S3Client::S3Client(S3Config config) : config_(std::move(config)), shared_(std::make_unique<Shared>()) {
  if (config_.max_upload_bytes_per_s != 0)
    shared_->upload_cap = std::make_unique<TokenBucket>(config_.max_upload_bytes_per_s);
}

S3Client::~S3Client() = default;

Result<std::unique_ptr<S3Client>> S3Client::create(S3Config config) {
  if (config.endpoints.empty()) return Status::invalid_argument("S3: no endpoint");
  for (std::string& e : config.endpoints) {
    while (!e.empty() && e.back() == '/') e.pop_back();
    if (!e.starts_with("http://") && !e.starts_with("https://")) {
      return Status::invalid_argument("S3 endpoint \"" + e + "\" must begin with http:// or https://");
    }
    if (!config.path_style) {
      // Virtual-host addressing puts the bucket in the host name.
      const std::string host = e.substr(e.find("://") + 3);
      if (host.starts_with('[') ||
          host.substr(0, host.find(':')).find_first_not_of("0123456789.") == std::string::npos) {
        return Status::invalid_argument("S3 endpoint \"" + e +
                                        "\": virtual-host addressing needs a host name, not an address "
                                        "(use path style, or a name such as localhost)");
      }
    }
  }
  if (config.credentials.access_key_id.empty() || config.credentials.secret_access_key.empty()) {
    return Status::invalid_argument("S3: no credentials");
  }
  if (config.max_attempts < 1 || config.max_parallel < 1) {
    return Status::invalid_argument("S3: max_attempts and max_parallel must be at least 1");
  }
  global_init();
  std::unique_ptr<S3Client> c(new S3Client(std::move(config)));
  Shared& s = *c->shared_;
  s.share = curl_share_init();
  if (s.share == nullptr) return Status::internal("curl_share_init failed");
  curl_share_setopt(s.share, CURLSHOPT_LOCKFUNC, &Shared::lock);
  curl_share_setopt(s.share, CURLSHOPT_UNLOCKFUNC, &Shared::unlock);
  curl_share_setopt(s.share, CURLSHOPT_USERDATA, &s);
  curl_share_setopt(s.share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
  curl_share_setopt(s.share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
  curl_share_setopt(s.share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
  return c;
}

S3Stats S3Client::stats() const {
  return {shared_->requests.load(), shared_->retries.load(), shared_->bytes_sent.load(),
          shared_->bytes_received.load()};
}

namespace {

std::string request_url(const S3Config& c, const std::string& endpoint, const S3Request& r) {
  std::string url;
  if (c.path_style) {
    url = endpoint + "/" + uri_encode(r.bucket, false) + "/" + uri_encode(r.key, true);
  } else {
    const auto scheme_end = endpoint.find("://") + 3;
    url = endpoint.substr(0, scheme_end) + r.bucket + "." + endpoint.substr(scheme_end) + "/" +
          uri_encode(r.key, true);
  }
  if (!r.query.empty()) {
    std::vector<std::pair<std::string, std::string>> q;
    for (const auto& [k, v] : r.query) q.emplace_back(uri_encode(k, false), uri_encode(v, false));
    std::sort(q.begin(), q.end());
    char sep = '?';
    for (const auto& [k, v] : q) {
      url += sep + k + "=" + v;
      sep = '&';
    }
  }
  return url;
}

}  // namespace

void S3Client::run(std::span<S3Request* const> requests) {
  Shared& s = *shared_;
  // The payload hash is the same for every attempt: compute it once.
  std::vector<std::string> payload_sha(requests.size());
  for (std::size_t i = 0; i < requests.size(); ++i) {
    S3Request& r = *requests[i];
    r.status = Status::ok();
    r.http_status = 0;
    r.attempts = 0;
    payload_sha[i] = r.body.empty() ? kEmptySha256 : to_hex(r.body_sha256 ? *r.body_sha256 : sha256(r.body));
  }
  struct Waiting {
    std::size_t index;
    std::int64_t ready_ms;
  };
  std::deque<Waiting> waiting;
  for (std::size_t i = 0; i < requests.size(); ++i) waiting.push_back({i, 0});
  std::vector<std::unique_ptr<Transfer>> active;
  std::vector<std::size_t> active_index;
  CURLM* multi = curl_multi_init();
  FERRY_CHECK(multi != nullptr);

  auto start = [&](std::size_t i) {
    S3Request& r = *requests[i];
    auto t = std::make_unique<Transfer>();
    t->req = &r;
    t->endpoint = s.endpoint.load() % config_.endpoints.size();
    t->url = request_url(config_, config_.endpoints[t->endpoint], r);
    t->reply_limit = r.max_reply_bytes != 0 ? r.max_reply_bytes : kS3MaxReplyBytes;
    // clear() keeps the capacity of a buffer the caller handed in
    // (get_range_into); a ranged GET's reply is sized once, not grown by
    // doubling through fresh memory as it arrives.
    r.reply.clear();
    if (r.method == S3Request::Method::kGet && r.range) {
      r.reply.reserve(static_cast<std::size_t>(
          std::min<std::uint64_t>(r.range->second - r.range->first + 1, t->reply_limit)));
    }
    r.etag.clear();
    r.version_id.clear();
    r.content_length = 0;
    ++r.attempts;
    CURL* e = t->easy = curl_easy_init();
    FERRY_CHECK(e != nullptr);
    curl_easy_setopt(e, CURLOPT_URL, t->url.c_str());
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_SHARE, s.share);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t->error.data());
    const std::string sigv4 = "aws:amz:" + config_.region + ":s3";
    curl_easy_setopt(e, CURLOPT_AWS_SIGV4, sigv4.c_str());
    curl_easy_setopt(e, CURLOPT_USERNAME, config_.credentials.access_key_id.c_str());
    curl_easy_setopt(e, CURLOPT_PASSWORD, config_.credentials.secret_access_key.c_str());
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(config_.connect_timeout_ms));
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, kStallBytesPerSecond);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME,
                     std::max(1L, static_cast<long>(config_.stall_timeout_ms / 1000)));
    if (!config_.ca_file.empty()) curl_easy_setopt(e, CURLOPT_CAINFO, config_.ca_file.c_str());
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, t.get());
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, &on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, t.get());
    curl_slist* h = nullptr;
    // libcurl signs the payload hash this header gives (and radosgw needs
    // the header). libcurl 7.88 signs every header in this list, even an
    // empty one that only removes a header it would add ("Expect:"), so the
    // list holds real headers only.
    h = curl_slist_append(h, ("x-amz-content-sha256: " + payload_sha[i]).c_str());
    if (!config_.credentials.session_token.empty()) {
      h = curl_slist_append(h, ("x-amz-security-token: " + config_.credentials.session_token).c_str());
    }
    for (const auto& [name, value] : r.headers) h = curl_slist_append(h, (name + ": " + value).c_str());
    switch (r.method) {
      case S3Request::Method::kGet:
        if (r.range) {
          h = curl_slist_append(
              h, ("Range: bytes=" + std::to_string(r.range->first) + "-" + std::to_string(r.range->second))
                     .c_str());
        }
        break;
      case S3Request::Method::kPut:
        curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
        t->upload_cap = s.upload_cap.get();
        curl_easy_setopt(e, CURLOPT_READFUNCTION, &on_read);
        curl_easy_setopt(e, CURLOPT_READDATA, t.get());
        curl_easy_setopt(e, CURLOPT_SEEKFUNCTION, &on_seek);
        curl_easy_setopt(e, CURLOPT_SEEKDATA, t.get());
        curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(r.body.size()));
        // Objects written with another user's keys (an append-only host's)
        // stay readable and deletable by the bucket's owner, who runs gc.
        if (!r.key.empty()) h = curl_slist_append(h, "x-amz-acl: bucket-owner-full-control");
        if (r.if_none_match) h = curl_slist_append(h, "If-None-Match: *");
        // Unquoted: radosgw compares the header's bytes with the stored ETag.
        if (!r.if_match.empty()) h = curl_slist_append(h, ("If-Match: " + r.if_match).c_str());
        break;
      case S3Request::Method::kHead:
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
        break;
      case S3Request::Method::kDelete:
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, "DELETE");
        break;
    }
    t->headers = h;
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(e, CURLOPT_PRIVATE, t.get());
    s.requests++;
    curl_multi_add_handle(multi, e);
    active.push_back(std::move(t));
    active_index.push_back(i);
  };

  auto finish = [&](CURL* easy, CURLcode rc) {
    auto it = std::find_if(active.begin(), active.end(), [&](const auto& t) { return t->easy == easy; });
    FERRY_CHECK(it != active.end());
    const std::size_t slot = static_cast<std::size_t>(it - active.begin());
    Transfer& t = **it;
    S3Request& r = *t.req;
    long http = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &http);
    curl_off_t up = 0, down = 0;
    curl_easy_getinfo(easy, CURLINFO_SIZE_UPLOAD_T, &up);
    curl_easy_getinfo(easy, CURLINFO_SIZE_DOWNLOAD_T, &down);
    s.bytes_sent += static_cast<std::uint64_t>(up);
    s.bytes_received += static_cast<std::uint64_t>(down);
    r.http_status = rc == CURLE_OK ? http : 0;
    r.status = attempt_status(t, rc, r.http_status);
    curl_multi_remove_handle(multi, easy);
    const std::size_t index = active_index[slot];
    if (!r.status && r.attempts < config_.max_attempts && retry_on_new_connection(r.status)) {
      if (r.http_status == 0 && config_.endpoints.size() > 1) {
        // The endpoint could not be reached: send everyone to the next one.
        std::size_t was = t.endpoint;
        s.endpoint.compare_exchange_strong(was, t.endpoint + 1);
      }
      const double backoff =
          std::min<double>(config_.backoff_max_ms,
                           config_.backoff_base_ms * static_cast<double>(1u << std::min(r.attempts - 1, 20)));
      waiting.push_back({index, mono_ms() + static_cast<std::int64_t>(backoff * s.jitter())});
      s.retries++;
    }
    active.erase(it);
    active_index.erase(active_index.begin() + static_cast<std::ptrdiff_t>(slot));
  };

  const std::size_t max_parallel = static_cast<std::size_t>(config_.max_parallel);
  while (!waiting.empty() || !active.empty()) {
    const std::int64_t now = mono_ms();
    std::int64_t next_ready = -1;
    for (auto it = waiting.begin(); it != waiting.end() && active.size() < max_parallel;) {
      if (it->ready_ms <= now) {
        start(it->index);
        it = waiting.erase(it);
      } else {
        next_ready = next_ready < 0 ? it->ready_ms : std::min(next_ready, it->ready_ms);
        ++it;
      }
    }
    int running = 0;
    curl_multi_perform(multi, &running);
    int left = 0;
    while (CURLMsg* m = curl_multi_info_read(multi, &left)) {
      if (m->msg == CURLMSG_DONE) finish(m->easy_handle, m->data.result);
    }
    if (active.empty()) {
      if (!waiting.empty() && next_ready > now) {
        std::this_thread::sleep_for(std::chrono::milliseconds(next_ready - now));
      }
      continue;
    }
    int wait_ms = 100;
    if (next_ready >= 0) wait_ms = static_cast<int>(std::clamp<std::int64_t>(next_ready - now, 0, 100));
    curl_multi_poll(multi, nullptr, 0, wait_ms, nullptr);
  }
  curl_multi_cleanup(multi);
}

// ---- single requests ------------------------------------------------------

namespace {

Status run_one(S3Client& c, S3Request& r) {
  S3Request* p = &r;
  c.run(std::span(&p, 1));
  return r.status;
}

}  // namespace

S3Request S3Client::put_request(std::string_view bucket, std::string_view key,
                                std::span<const std::byte> body, bool if_absent, std::string_view if_match,
                                std::vector<std::pair<std::string, std::string>> headers,
                                const Digest* body_sha256) {
  S3Request r;
  r.method = S3Request::Method::kPut;
  if (body_sha256 != nullptr) r.body_sha256 = *body_sha256;
  r.bucket = bucket;
  r.key = key;
  r.body = body;
  r.if_none_match = if_absent;
  r.if_match = if_match;
  r.headers = std::move(headers);
  (void)run_one(*this, r);
  return r;
}

Result<bool> S3Client::put(std::string_view bucket, std::string_view key, std::span<const std::byte> body,
                           bool if_absent) {
  S3Request r = put_request(bucket, key, body, if_absent);
  if (if_absent && r.http_status == 412) return false;
  RETURN_IF_ERROR(r.status);
  return true;
}

Result<std::vector<std::byte>> S3Client::get(std::string_view bucket, std::string_view key) {
  S3Request r;
  r.bucket = bucket;
  r.key = key;
  RETURN_IF_ERROR(run_one(*this, r));
  return std::move(r.reply);
}

Result<std::vector<std::byte>> S3Client::get_range(std::string_view bucket, std::string_view key,
                                                   std::uint64_t first, std::uint64_t length) {
  std::vector<std::byte> out;
  RETURN_IF_ERROR(get_range_into(bucket, key, first, length, out));
  return out;
}

Status S3Client::get_range_into(std::string_view bucket, std::string_view key, std::uint64_t first,
                                std::uint64_t length, std::vector<std::byte>& out) {
  out.clear();
  if (length == 0) return Status::ok();
  S3Request r;
  r.bucket = bucket;
  r.key = key;
  r.range = {first, first + length - 1};
  r.max_reply_bytes = length;
  r.reply = std::move(out);
  const Status st = run_one(*this, r);
  out = std::move(r.reply);
  RETURN_IF_ERROR(st);
  if (out.size() != length) {
    return Status::corruption("S3 GET " + std::string(bucket) + "/" + std::string(key) + " bytes " +
                              std::to_string(first) + "+" + std::to_string(length) + ": got " +
                              std::to_string(out.size()) + " bytes");
  }
  return Status::ok();
}

Result<std::uint64_t> S3Client::head(std::string_view bucket, std::string_view key) {
  S3Request r;
  r.method = S3Request::Method::kHead;
  r.bucket = bucket;
  r.key = key;
  RETURN_IF_ERROR(run_one(*this, r));
  return r.content_length;
}

Status S3Client::remove(std::string_view bucket, std::string_view key) {
  S3Request r;
  r.method = S3Request::Method::kDelete;
  r.bucket = bucket;
  r.key = key;
  Status st = run_one(*this, r);
  if (!st && r.http_status == 404 && parse_s3_error(as_text(r.reply)).code == "NoSuchKey")
    return Status::ok();
  return st;
}

Result<S3ListPage> S3Client::list_page(std::string_view bucket, std::string_view prefix,
                                       std::string_view delimiter, std::string_view continuation_token,
                                       std::uint32_t max_keys) {
  S3Request r;
  r.bucket = bucket;
  r.query = {{"list-type", "2"}, {"prefix", std::string(prefix)}, {"max-keys", std::to_string(max_keys)}};
  if (!delimiter.empty()) r.query.emplace_back("delimiter", std::string(delimiter));
  if (!continuation_token.empty())
    r.query.emplace_back("continuation-token", std::string(continuation_token));
  r.max_reply_bytes = kS3MaxListReplyBytes;
  RETURN_IF_ERROR(run_one(*this, r));
  auto page = parse_list_objects_v2(as_text(r.reply));
  if (!page) return page.status().with_context("S3 LIST " + std::string(bucket) + "/" + std::string(prefix));
  return page;
}

Result<std::vector<S3Object>> S3Client::list(std::string_view bucket, std::string_view prefix) {
  std::vector<S3Object> out;
  std::string token;
  for (std::uint64_t pages = 0;; ++pages) {
    if (pages == kS3MaxListPages) {
      return Status::exhausted("S3 LIST " + std::string(bucket) + "/" + std::string(prefix) + ": more than " +
                               std::to_string(kS3MaxListPages) + " pages");
    }
    ASSIGN_OR_RETURN(S3ListPage page, list_page(bucket, prefix, {}, token));
    for (S3Object& o : page.objects) out.push_back(std::move(o));
    if (!page.truncated) break;
    if (page.next_continuation_token == token) {
      return Status::corruption("S3 LIST " + std::string(bucket) +
                                ": the gateway repeated a continuation token");
    }
    token = std::move(page.next_continuation_token);
  }
  return out;
}

Status S3Client::create_bucket(std::string_view bucket) {
  S3Request r;
  r.method = S3Request::Method::kPut;
  r.bucket = bucket;
  std::string body;
  if (config_.region != "us-east-1") {
    body =
        "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><LocationConstraint>" +
        config_.region + "</LocationConstraint></CreateBucketConfiguration>";
    r.body = std::as_bytes(std::span(body));
  }
  Status st = run_one(*this, r);
  if (!st && r.http_status == 409 && parse_s3_error(as_text(r.reply)).code == "BucketAlreadyOwnedByYou") {
    return Status::ok();
  }
  return st;
}

}  // namespace ferry
