// s3_lock.cc: see s3_lock.h.
#include "store/s3_lock.h"

#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <ctime>
#include <random>

#include "base/clock.h"
#include "store/store_limits.h"

namespace ferry {
namespace {

constexpr std::string_view kMagicLine = "ferry-lock 1";

std::string utc(std::int64_t ns) {
  const std::time_t t = static_cast<std::time_t>(ns / kNanosPerSecond);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char out[32];
  std::strftime(out, sizeof out, "%Y-%m-%d %H:%M:%SZ", &tm);
  return out;
}

std::string new_token() {
  std::random_device rd;
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (int i = 0; i < 32; ++i) out.push_back(kHex[rd() & 15]);
  return out;
}

std::string this_host() {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0 || host[0] == 0) return "unknown-host";
  return host;
}

bool is_hex(std::string_view s, std::size_t n) {
  return s.size() == n && s.find_first_not_of("0123456789abcdef") == std::string_view::npos;
}

}  // namespace

std::vector<std::byte> serialize_s3_lock(const S3LockRecord& record) {
  std::string text(kMagicLine);
  text += "\nholder " + record.holder + "\ntoken " + record.token + "\nacquired_ns " +
          std::to_string(record.acquired_ns) + "\nexpires_ns " + std::to_string(record.expires_ns) + "\n";
  for (const std::string& pack : record.condemned) text += "condemned " + pack + "\n";
  const auto* p = reinterpret_cast<const std::byte*>(text.data());
  return {p, p + text.size()};
}

Result<S3LockRecord> parse_s3_lock(std::span<const std::byte> bytes, std::string_view where) {
  auto bad = [&](std::string why) { return Status::corruption(std::string(where) + ": lock object " + why); };
  if (bytes.size() > kS3MaxLockObjectBytes)
    return bad("of " + std::to_string(bytes.size()) + " bytes: too big");
  const std::string_view text = as_text(bytes);
  S3LockRecord out;
  bool have_token = false, have_acquired = false, have_expires = false, have_holder = false;
  std::size_t pos = 0, line_no = 0;
  while (pos < text.size()) {
    const std::size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) return bad("ends without a newline");
    const std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    if (line_no++ == 0) {
      if (line != kMagicLine) return bad("does not begin with \"ferry-lock 1\"");
      continue;
    }
    const std::size_t space = line.find(' ');
    const std::string_view name = line.substr(0, space);
    const std::string_view value =
        space == std::string_view::npos ? std::string_view() : line.substr(space + 1);
    auto number = [&](std::int64_t& v) {
      auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
      return ec == std::errc() && p == value.data() + value.size();
    };
    if (name == "holder") {
      if (value.empty() || value.size() > kS3MaxLockHolderBytes) return bad("holder is empty or too long");
      out.holder = std::string(value);
      have_holder = true;
    } else if (name == "token") {
      if (!is_hex(value, 32)) return bad("token is not 32 hex digits");
      out.token = std::string(value);
      have_token = true;
    } else if (name == "acquired_ns") {
      if (!number(out.acquired_ns)) return bad("acquired_ns is not a number");
      have_acquired = true;
    } else if (name == "expires_ns") {
      if (!number(out.expires_ns)) return bad("expires_ns is not a number");
      have_expires = true;
    } else if (name == "condemned") {
      if (!is_hex(value, 64)) return bad("names a condemned pack that is not 64 hex digits");
      out.condemned.emplace_back(value);
    }
    // Other names: written by a later version; ignored.
  }
  if (line_no == 0) return bad("is empty");
  if (!have_holder || !have_token || !have_acquired || !have_expires) {
    return bad("lacks holder, token, acquired_ns or expires_ns");
  }
  return out;
}

std::string describe_s3_lock(const S3LockRecord& record) {
  return record.holder + ", since " + utc(record.acquired_ns) + ", expires " + utc(record.expires_ns);
}

Result<std::optional<S3LockState>> read_s3_lock(S3Client& client, std::string_view bucket,
                                                std::string_view key) {
  S3Request r;
  r.bucket = bucket;
  r.key = key;
  r.max_reply_bytes = kS3MaxLockObjectBytes;
  S3Request* p = &r;
  client.run(std::span(&p, 1));
  if (!r.status) {
    if (r.status.code() == Code::kNotFound && r.http_status == 404) return std::optional<S3LockState>();
    if (r.http_status == 403) {
      // S3 answers a GET of a missing key with 403, not 404, when the keys
      // may list the bucket only under a prefix (a host's keys limited to
      // its namespace): a LIST of the lock's own key tells them apart.
      Result<std::vector<S3Object>> listed = client.list(bucket, key);
      if (listed.is_ok() &&
          std::none_of(listed->begin(), listed->end(), [&](const S3Object& o) { return o.key == key; })) {
        return std::optional<S3LockState>();
      }
    }
    return r.status;
  }
  ASSIGN_OR_RETURN(S3LockRecord record, parse_s3_lock(r.reply, std::string(bucket) + "/" + std::string(key)));
  return std::optional<S3LockState>(S3LockState{std::move(record), r.etag});
}

S3Lock::S3Lock(S3Client& client, std::string bucket, std::string key, Options options)
    : client_(client), bucket_(std::move(bucket)), key_(std::move(key)), options_(std::move(options)) {}

Result<std::unique_ptr<S3Lock>> S3Lock::acquire(S3Client& client, std::string bucket, std::string key,
                                                Options options) {
  if (options.expiry_ms <= 0) return Status::invalid_argument("lock " + key + ": expiry must be positive");
  std::unique_ptr<S3Lock> lock(new S3Lock(client, std::move(bucket), std::move(key), std::move(options)));
  S3Lock& l = *lock;
  l.record_.holder = this_host() + ":" + std::to_string(::getpid()) + " " + l.options_.operation;
  l.record_.token = new_token();
  const std::string where = l.bucket_ + "/" + l.key_;
  // A few rounds: each loses only to a taker that changed the object meanwhile.
  for (int round = 0; round < kS3LockAcquireRounds; ++round) {
    const std::int64_t now_ns = wall_ns();
    l.record_.acquired_ns = now_ns;
    l.record_.expires_ns = add_ns_saturated(now_ns, l.options_.expiry_ms * kNanosPerMilli);
    const std::vector<std::byte> body = serialize_s3_lock(l.record_);
    const std::int64_t sent_ms = mono_ms();
    S3Request created = client.put_request(l.bucket_, l.key_, body, /*if_absent=*/true);
    if (created.status) {
      l.etag_ = created.etag;
      l.lease_sent_ms_ = sent_ms;
      break;
    }
    if (created.http_status != 412) return created.status.with_context("taking the lock " + where);
    ASSIGN_OR_RETURN(auto current, read_s3_lock(client, l.bucket_, l.key_));
    if (!current) continue;  // released meanwhile: create it again
    if (current->record.token == l.record_.token) {
      // Our own PUT landed and its reply was lost; the retry met it.
      l.etag_ = current->etag;
      l.lease_sent_ms_ = sent_ms;
      break;
    }
    if (current->record.expires_ns > wall_ns()) {
      return Status::unavailable("the store is locked by " + describe_s3_lock(current->record) +
                                 " (lock object " + where + "); " + l.options_.operation +
                                 " runs once it is released or expired");
    }
    S3Request taken = client.put_request(l.bucket_, l.key_, body, false, current->etag);
    if (taken.status) {
      l.etag_ = taken.etag;
      l.lease_sent_ms_ = sent_ms;
      if (l.options_.log) {
        l.options_.log("took over the expired lock " + where + " of " + describe_s3_lock(current->record));
      }
      break;
    }
    if (taken.http_status != 412) return taken.status.with_context("taking over the lock " + where);
    // Another taker changed it first: look again.
  }
  if (l.etag_.empty()) {
    return Status::unavailable("the lock " + where + " changed hands " +
                               std::to_string(kS3LockAcquireRounds) + " times while " + l.options_.operation +
                               " tried to take it");
  }
  l.refresher_ = std::thread([&l] { l.refresh_loop(); });
  return lock;
}

S3Lock::~S3Lock() { (void)release(); }

Status S3Lock::rewrite_locked() {
  const std::string where = bucket_ + "/" + key_;
  if (lost_) return Status::aborted("the lock " + where + " was lost");
  record_.expires_ns = add_ns_saturated(wall_ns(), options_.expiry_ms * kNanosPerMilli);
  const std::vector<std::byte> body = serialize_s3_lock(record_);
  for (int round = 0; round < kS3LockAcquireRounds; ++round) {
    const std::int64_t sent_ms = mono_ms();
    S3Request r = client_.put_request(bucket_, key_, body, false, etag_);
    if (r.status) {
      etag_ = r.etag;
      lease_sent_ms_ = sent_ms;
      return Status::ok();
    }
    if (r.http_status != 412) return r.status.with_context("refreshing the lock " + where);
    // Refused: the object is not what this holder last wrote. Still ours
    // when it holds this acquisition's token (a retried PUT that had landed,
    // or a gateway that answered from a stale view): swap again on the
    // ETag it has now. Any other token: taken over.
    ASSIGN_OR_RETURN(auto current, read_s3_lock(client_, bucket_, key_));
    if (current && current->record.token == record_.token) {
      etag_ = current->etag;
      if (serialize_s3_lock(current->record) == body) {
        lease_sent_ms_ = sent_ms;
        return Status::ok();
      }
      continue;
    }
    lost_ = true;
    const std::string by = current ? " by " + describe_s3_lock(current->record) : " (it was deleted)";
    if (options_.log) options_.log("lost the lock " + where + ": taken over" + by);
    return Status::aborted("the lock " + where + " was taken over" + by);
  }
  return Status::unavailable("the lock " + where + " could not be rewritten in " +
                             std::to_string(kS3LockAcquireRounds) + " tries");
}

void S3Lock::refresh_loop() {
  const auto period = std::chrono::milliseconds(std::max<std::int64_t>(options_.expiry_ms / 4, 1));
  std::unique_lock lock(mu_);
  while (!stop_) {
    if (cv_.wait_for(lock, period, [&] { return stop_; })) break;
    Status st = rewrite_locked();
    if (!st && options_.log) options_.log(st.to_string());
    if (lost_) break;
  }
}

Status S3Lock::set_condemned(std::vector<std::string> condemned) {
  std::lock_guard lock(mu_);
  record_.condemned = std::move(condemned);
  return rewrite_locked();
}

Status S3Lock::check_held() const {
  std::lock_guard lock(mu_);
  const std::string where = bucket_ + "/" + key_;
  if (lost_) return Status::aborted("the lock " + where + " was taken over; stopping");
  if (released_) return Status::aborted("the lock " + where + " was released");
  if (mono_ms() - lease_sent_ms_ >= options_.expiry_ms / 2) {
    return Status::aborted("the lock " + where + " was not refreshed for " +
                           std::to_string(mono_ms() - lease_sent_ms_) + " ms; stopping before it expires");
  }
  return Status::ok();
}

Status S3Lock::release() {
  {
    std::lock_guard lock(mu_);
    if (released_) return Status::ok();
    stop_ = true;
  }
  cv_.notify_all();
  if (refresher_.joinable()) refresher_.join();
  // Deleted only while surely ours: after expiry another may hold it.
  Status held = check_held();
  std::lock_guard lock(mu_);
  released_ = true;
  if (!held) return Status::ok();
  return client_.remove(bucket_, key_).with_context("releasing the lock " + bucket_ + "/" + key_);
}

}  // namespace ferry
