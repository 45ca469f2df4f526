// s3_spool.h: the local spool of a gateway that stores into a bucket
// (`ferry serve --store=s3://... --s3_spool=DIR`; docs/FORMAT.md 9.3). A
// receiver acknowledges chunks at every group commit; uploading the open
// pack each time would fill the bucket with small packs and multiply the
// requests. With a spool, a group commit appends the open pack's new
// records to a file of the spool and fsyncs it instead: the chunks are then
// durable on the gateway's disk, as in a local store, and travel to the
// bucket in a pack of the target size (or at the next snapshot commit). A
// spool file is removed once the pack holding its records is in the bucket;
// files left by a crash are uploaded when the namespace opens again.
//
// A spool file is a pack file of the local store (section 7.1: the version-1
// header, then records) whose byte offsets are those of the open pack it
// mirrors, named "<seq>.spool" after that pack's sequence number; so the
// local store's scanner (pack_file.h scan_pack) recovers it, dropping a torn
// tail (records that were never acknowledged).
//
// Thread-safety: every member function may be called from any thread.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "base/status.h"
#include "base/unique_fd.h"
#include "codec/frame.h"

namespace ferry {

class S3Spool {
 public:
  // Creates `dir` (and its parents, durably) and takes the exclusive lock of
  // its lock file for the life of the spool: two gateways on one host must
  // spool into different directories. Unavailable naming `dir` when
  // another process holds it.
  static Result<std::unique_ptr<S3Spool>> open(std::filesystem::path dir);
  S3Spool(const S3Spool&) = delete;
  S3Spool& operator=(const S3Spool&) = delete;

  // The good records of the spool files an earlier process left (in name
  // order, each in file order) with the files they came from. Damage and
  // torn tails go to `notes`, one line each.
  struct Leftovers {
    std::vector<std::filesystem::path> files;
    std::vector<Digest> ids;
    std::vector<std::vector<std::byte>> records;  // whole records (section 7.1)
    std::uint64_t bytes = 0;
  };
  Result<Leftovers> leftovers(std::vector<std::string>& notes);

  // Writes `records` at `offset` (>= the pack header) of the spool file of
  // open pack `seq`, creating the file with a pack header first, and
  // returns once they are durable: fdatasync, and the directory's fsync when
  // the file is new.
  Status write(std::uint64_t seq, std::uint64_t offset, std::span<const std::byte> records);
  // Closes and deletes the spool file of `seq` (its records are in the
  // bucket now); none there is not an error.
  Status remove(std::uint64_t seq);
  // Deletes files left by an earlier process once their records are in the
  // bucket, then fsyncs the directory.
  Status remove_files(const std::vector<std::filesystem::path>& files);

  const std::filesystem::path& dir() const { return dir_; }

 private:
  explicit S3Spool(std::filesystem::path dir, UniqueFd lock) : dir_(std::move(dir)), lock_(std::move(lock)) {}
  std::filesystem::path file_of(std::uint64_t seq) const;

  const std::filesystem::path dir_;
  const UniqueFd lock_;  // flock(LOCK_EX) held while open
  std::mutex mu_;
  std::map<std::uint64_t, UniqueFd> files_;  // open spool files by seq
};

}  // namespace ferry
