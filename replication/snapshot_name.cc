// snapshot_name.cc: see snapshot_name.h.
#include "replication/snapshot_name.h"

#include "replication/limits.h"

namespace ferry::replication {
namespace {

std::string safe(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '_' || c == '-';
    if (!ok) c = '_';
  }
  return out;
}

// The value of the last run of digits in `name`; UINT64_MAX when there is
// none or it overflows.
std::uint64_t last_number(std::string_view name) {
  std::size_t end = name.size();
  while (end > 0 && !(name[end - 1] >= '0' && name[end - 1] <= '9')) --end;
  if (end == 0) return UINT64_MAX;
  std::size_t begin = end;
  while (begin > 0 && name[begin - 1] >= '0' && name[begin - 1] <= '9') --begin;
  std::uint64_t v = 0;
  for (std::size_t i = begin; i < end; ++i) {
    const std::uint64_t d = static_cast<std::uint64_t>(name[i] - '0');
    if (v > (UINT64_MAX - d) / 10) return UINT64_MAX;
    v = v * 10 + d;
  }
  return v;
}

}  // namespace

std::string checkpoint_snapshot_name(std::string_view job, std::string_view dir_name, std::uint64_t step) {
  std::string tail = safe(dir_name);
  if (tail == "." || tail == "..") tail.clear();
  if (step != 0 && last_number(dir_name) != step) {
    tail += (tail.empty() ? "step" : "-step") + std::to_string(step);
  }
  std::string head = safe(job);
  if (tail.size() > kMaxSnapshotNameBytes) tail.resize(kMaxSnapshotNameBytes);
  if (head.empty()) return tail.empty() ? std::string("snapshot") : tail;
  if (tail.empty()) return head.substr(0, kMaxSnapshotNameBytes);
  const std::size_t room =
      kMaxSnapshotNameBytes > tail.size() + 1 ? kMaxSnapshotNameBytes - tail.size() - 1 : 0;
  if (head.size() > room) head.resize(room);
  return head.empty() ? tail : head + "-" + tail;
}

}  // namespace ferry::replication
