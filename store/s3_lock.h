// s3_lock.h: the exclusive lock object of one namespace of the S3 backend
// (docs/FORMAT.md section 9.6), taken by gc and prune. It is created with
// If-None-Match: * (of racing takers exactly one creates it), refreshed by a
// compare-and-swap on its ETag (If-Match) while its holder works, and taken
// over the same way once its expiry has passed. gc also writes into it the
// packs it is about to delete ("condemned"), which writers read before they
// publish a snapshot that relies on older packs (s3_namespace.cc).
//
// Thread-safety: an S3Lock is used by one thread plus its own refresh
// thread; the free functions are thread-safe.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "base/status.h"
#include "store/s3_client.h"

namespace ferry {

// The lock object's contents (FORMAT.md 9.6: text lines).
struct S3LockRecord {
  std::string holder;  // "<host>:<pid> <operation>", for messages
  std::string token;   // 32 hex digits, new for every acquisition
  std::int64_t acquired_ns = 0;
  std::int64_t expires_ns = 0;         // the holder's wall clock
  std::vector<std::string> condemned;  // packs (64 hex digits) gc is deleting

  bool operator==(const S3LockRecord&) const = default;
};

std::vector<std::byte> serialize_s3_lock(const S3LockRecord& record);
// Corruption naming `where` unless `bytes` follow FORMAT.md 9.6.
Result<S3LockRecord> parse_s3_lock(std::span<const std::byte> bytes, std::string_view where);
// "gpu-01:4242 gc, since 2026-12-07 00:21:08Z, expires 2026-12-07 00:23:08Z".
std::string describe_s3_lock(const S3LockRecord& record);

// The lock object at `key` as it is now (nullopt when there is none) and
// its ETag.
struct S3LockState {
  S3LockRecord record;
  std::string etag;
};
Result<std::optional<S3LockState>> read_s3_lock(S3Client& client, std::string_view bucket,
                                                std::string_view key);

class S3Lock {
 public:
  struct Options {
    std::string operation;                        // "gc", "prune"
    std::int64_t expiry_ms = 0;                   // > 0
    std::function<void(const std::string&)> log;  // takeovers, a lost lock
  };

  // Takes the lock at `key`: creates it, or takes over one whose expiry has
  // passed (logged, naming its holder). Unavailable naming the holder and
  // its expiry when another holds it.
  static Result<std::unique_ptr<S3Lock>> acquire(S3Client& client, std::string bucket, std::string key,
                                                 Options options);
  // Stops refreshing and releases the lock (best effort).
  ~S3Lock();
  S3Lock(const S3Lock&) = delete;
  S3Lock& operator=(const S3Lock&) = delete;

  // Rewrites the lock object with `condemned` (compare-and-swap on its ETag).
  Status set_condemned(std::vector<std::string> condemned);
  // OK while the lease surely holds: no refresh was refused and the last one
  // that succeeded was sent less than half the expiry ago (the other half
  // absorbs clock skew between the holder and a host that takes over).
  // Aborted naming the lock otherwise; the holder must stop deleting.
  Status check_held() const;
  // Deletes the lock object (only while the lease holds) and stops.
  Status release();
  const std::string& holder() const { return record_.holder; }

 private:
  S3Lock(S3Client& client, std::string bucket, std::string key, Options options);
  // One compare-and-swap of the object with record_ (expiry moved on).
  // REQUIRES mu_.
  Status rewrite_locked();
  void refresh_loop();

  S3Client& client_;
  const std::string bucket_;
  const std::string key_;
  const Options options_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  S3LockRecord record_;
  std::string etag_;
  std::int64_t lease_sent_ms_ = 0;  // mono_ms when the last good write was sent
  bool lost_ = false;
  bool stop_ = false;
  bool released_ = false;
  std::thread refresher_;
};

}  // namespace ferry
