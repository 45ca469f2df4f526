// watcher.cc: see watcher.h. One thread per Watcher waits (poll) on an
// inotify descriptor and an eventfd (stop, rescan, forget); each batch of
// events names the checkpoint directories to look at again, and each is
// checked once per batch. A full rescan runs at start, on a timer, on
// request and after an inotify queue overflow, so a lost event delays a
// checkpoint by at most one rescan interval and never loses it.
#include "agent/watcher.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "base/clock.h"
#include "base/posix_file.h"
#include "codec/safetensors.h"

namespace ferry {
namespace {

namespace fs = std::filesystem;

// A safetensors index larger than this is refused as "not complete"; real
// ones hold one line per tensor (a few MiB for the largest models).
constexpr std::uintmax_t kMaxIndexBytes = 64u << 20;
constexpr const char* kIndexSuffix = ".safetensors.index.json";
constexpr const char* kDcpMetadata = ".metadata";
// Events that can make a checkpoint complete, or move or remove a watched
// directory.
constexpr std::uint32_t kWatchMask = IN_CREATE | IN_MOVED_TO | IN_CLOSE_WRITE | IN_ATTRIB | IN_DELETE_SELF |
                                     IN_MOVE_SELF | IN_MOVED_FROM | IN_DELETE | IN_ONLYDIR;
// Room for many events per read(2); each is a header plus a name.
constexpr std::size_t kEventBufferBytes = 64u << 10;

std::int64_t mtime_ns_of(const struct stat& st) {
  return static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
}

bool regular_file_exists(const fs::path& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// The index files of a safetensors set in `dir` (normally exactly one).
std::vector<fs::path> find_indexes(const fs::path& dir, std::error_code& ec) {
  std::vector<fs::path> out;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.size() > std::strlen(kIndexSuffix) && name.ends_with(kIndexSuffix)) {
      out.push_back(it->path());
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Whether the set an index describes is whole: the index parses and every
// shard its weight_map names exists with a header whose tensors fit the
// file. An empty reason when whole, else why not.
// True when `text` is valid JSON cut short: empty, or failing only at its
// end. That is an index still being written (seen between its creation and
// its last write), not a wrong one.
bool json_cut_short(const std::string& text) {
  using json = nlohmann::json;
  struct EndOfInput : nlohmann::json_sax<json> {
    std::size_t size = 0;
    bool at_end = false;
    bool null() override { return true; }
    bool boolean(bool) override { return true; }
    bool number_integer(number_integer_t) override { return true; }
    bool number_unsigned(number_unsigned_t) override { return true; }
    bool number_float(number_float_t, const string_t&) override { return true; }
    bool string(string_t&) override { return true; }
    bool binary(binary_t&) override { return true; }
    bool start_object(std::size_t) override { return true; }
    bool key(string_t&) override { return true; }
    bool end_object() override { return true; }
    bool start_array(std::size_t) override { return true; }
    bool end_array() override { return true; }
    bool parse_error(std::size_t position, const std::string&, const nlohmann::detail::exception&) override {
      at_end = position >= size;
      return false;
    }
  } sax;
  sax.size = text.size();
  if (text.find_first_not_of(" \t\r\n") == std::string::npos) return true;
  json::sax_parse(text, &sax, json::input_format_t::json, /*strict=*/true);
  return sax.at_end;
}

Incomplete safetensors_set_gap(const fs::path& dir, const fs::path& index) {
  auto wrong = [](std::string reason) { return Incomplete{std::move(reason), false}; };
  auto writing = [](std::string reason) { return Incomplete{std::move(reason), true}; };
  std::error_code ec;
  const auto size = fs::file_size(index, ec);
  if (ec) return wrong(index.string() + ": " + ec.message());
  if (size > kMaxIndexBytes) {
    return wrong(index.string() + ": index of " + std::to_string(size) + " bytes exceeds the limit of " +
                 std::to_string(kMaxIndexBytes));
  }
  std::ifstream in(index, std::ios::binary);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const nlohmann::json doc = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) {
    if (json_cut_short(text)) return writing(index.string() + ": not whole yet (JSON cut short)");
    return wrong(index.string() + ": not valid JSON");
  }
  if (!doc.is_object() || !doc.contains("weight_map") || !doc["weight_map"].is_object()) {
    return wrong(index.string() + ": no \"weight_map\" object");
  }
  std::set<std::string> shards;
  for (const auto& [tensor, shard] : doc["weight_map"].items()) {
    if (!shard.is_string()) return wrong(index.string() + ": weight_map[\"" + tensor + "\"] is not a string");
    const fs::path rel(shard.get<std::string>());
    const fs::path norm = rel.lexically_normal();
    if (rel.empty() || rel.is_absolute() || norm.empty() || *norm.begin() == "..") {
      return wrong(index.string() + ": shard name \"" + rel.string() + "\" leaves the checkpoint directory");
    }
    shards.insert(norm.string());
  }
  if (shards.empty()) return wrong(index.string() + ": weight_map names no shards");
  // Existence first (cheap), so a set still being written costs one stat
  // per shard; headers are read only once every shard is there.
  for (const std::string& s : shards) {
    if (!regular_file_exists(dir / s)) return writing("shard " + (dir / s).string() + " does not exist yet");
  }
  for (const std::string& s : shards) {
    auto layout = read_safetensors_layout(dir / s);
    // A dtype ferry cannot code is still a whole file: it is sent as bytes.
    if (!layout.is_ok() && layout.status().code() != Code::kUnsupported) {
      return writing("shard " + (dir / s).string() + " is not whole yet: " + layout.status().message());
    }
  }
  return {};
}

// Hidden directories are staging areas by convention (a checkpoint written
// as ".step-100.tmp" and renamed to "step-100" when done): never candidates.
bool is_staging_name(const std::string& name) { return name.empty() || name[0] == '.'; }

std::string job_name_of(const WatchRoot& root) {
  if (!root.job.empty()) return root.job;
  fs::path p = root.path.lexically_normal();
  if (p.filename().empty()) p = p.parent_path();  // "root/" names "root"
  return p.filename().string();
}

}  // namespace

std::string_view checkpoint_kind_name(CheckpointKind k) {
  switch (k) {
    case CheckpointKind::kDcp:
      return "dcp";
    case CheckpointKind::kSafetensorsSet:
      return "safetensors";
    case CheckpointKind::kMarker:
      return "marker";
    case CheckpointKind::kSubmitted:
      return "submitted";
  }
  return "unknown";
}

std::uint64_t step_from_name(std::string_view name) {
  std::size_t end = name.size();
  while (end > 0 && !(name[end - 1] >= '0' && name[end - 1] <= '9')) --end;
  std::size_t begin = end;
  while (begin > 0 && name[begin - 1] >= '0' && name[begin - 1] <= '9') --begin;
  std::uint64_t v = 0;
  for (std::size_t i = begin; i < end; ++i) {
    const std::uint64_t d = static_cast<std::uint64_t>(name[i] - '0');
    if (v > (UINT64_MAX - d) / 10) return 0;
    v = v * 10 + d;
  }
  return v;
}

Result<std::optional<CheckpointKind>> checkpoint_complete(const fs::path& dir,
                                                          const CompletionSignals& signals, Incomplete* why) {
  auto set_why = [why](Incomplete w) {
    if (why) *why = std::move(w);
  };
  set_why({});
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) return Status::from_errno(errno, "stat " + dir.string());
  if (!S_ISDIR(st.st_mode)) return Status::invalid_argument(dir.string() + " is not a directory");
  const std::string& marker = signals.marker_file;
  if (!marker.empty() && ::lstat((dir / marker).c_str(), &st) == 0)
    return std::optional(CheckpointKind::kMarker);
  if (signals.marker_only) {
    // Only the writer's own word counts: a DCP or safetensors directory may
    // still be getting extra files.
    set_why({"marker " + (dir / marker).string() + " does not exist yet", true});
    return std::optional<CheckpointKind>();
  }
  const std::string or_marker = marker.empty() ? "" : " (and no marker " + marker + ")";
  // torch.distributed.checkpoint writes .metadata last (by rename), so its
  // presence means every data file is whole; an empty one is not.
  if (::stat((dir / kDcpMetadata).c_str(), &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0) {
    return std::optional(CheckpointKind::kDcp);
  }
  std::error_code ec;
  const std::vector<fs::path> indexes = find_indexes(dir, ec);
  if (ec) return Status::io_error("listing " + dir.string() + ": " + ec.message());
  if (indexes.empty()) {
    set_why({dir.string() + ": no " + kDcpMetadata + " and no *" + kIndexSuffix +
                 (marker.empty() ? "" : " and no marker " + marker) + " yet",
             true});
    return std::optional<CheckpointKind>();
  }
  for (const fs::path& index : indexes) {
    Incomplete gap = safetensors_set_gap(dir, index);
    if (!gap.reason.empty()) {
      gap.reason += or_marker;
      set_why(std::move(gap));
      return std::optional<CheckpointKind>();
    }
  }
  return std::optional(CheckpointKind::kSafetensorsSet);
}

// ---------------------------------------------------------------------------

struct Watcher::Impl {
  WatcherOptions options;
  std::function<void(const CheckpointCandidate&)> on_complete;
  UniqueFd inotify;
  UniqueFd wake;  // eventfd: stop, rescan or forget requested
  std::thread thread;

  // Shared with the public methods.
  std::mutex mu;
  bool stop = false;
  bool rescan_requested = false;
  std::set<fs::path> forgotten;

  // Owned by the watcher thread.
  struct Watch {
    fs::path dir;
    int root = -1;  // index into options.roots
    bool is_root = false;
  };
  std::unordered_map<int, Watch> watches;  // by watch descriptor
  std::map<fs::path, int> wd_of;           // the reverse
  std::set<fs::path> reported;
  std::map<fs::path, std::string> last_reason;  // to log each new reason once
  // Roots whose incomplete directory went to on_incomplete; cleared once
  // the root has none past the grace period.
  std::set<int> incomplete_reported_roots;

  // Directories seen and not complete yet; written by the watcher thread,
  // read by incomplete().
  struct Pending {
    int root = -1;
    std::int64_t first_seen_ns = 0;  // wall
    std::int64_t seen_mono_ns = 0;
    std::string waiting_for;
  };
  mutable std::mutex pending_mu;
  std::map<fs::path, Pending> pending;

  void notice(const std::string& line) {
    if (options.on_notice) options.on_notice(line);
  }

  void signal() {
    const std::uint64_t one = 1;
    // A full eventfd counter only means a wake-up is already pending.
    [[maybe_unused]] ssize_t n = ::write(wake.get(), &one, sizeof(one));
  }

  void add_watch(const fs::path& dir, int root, bool is_root) {
    if (wd_of.count(dir)) return;
    const int wd = ::inotify_add_watch(inotify.get(), dir.c_str(), kWatchMask);
    if (wd < 0) {
      // ENOENT: gone again already. ENOSPC: fs.inotify.max_user_watches is
      // spent; the periodic rescan still finds the checkpoint.
      if (errno != ENOENT && errno != ENOTDIR) {
        notice("watch " + dir.string() + ": " + std::strerror(errno) +
               " (found by the periodic rescan instead)");
      }
      return;
    }
    // inotify gives the same wd for the same inode: a directory renamed
    // within a root keeps its watch under its new name.
    if (auto it = watches.find(wd); it != watches.end()) wd_of.erase(it->second.dir);
    watches[wd] = Watch{dir, root, is_root};
    wd_of[dir] = wd;
  }

  void drop_watch(const fs::path& dir) {
    auto it = wd_of.find(dir);
    if (it == wd_of.end()) return;
    ::inotify_rm_watch(inotify.get(), it->second);
    watches.erase(it->second);
    wd_of.erase(it);
  }

  // A checkpoint directory left its root: forget it, so a new directory of
  // the same name is a new checkpoint.
  void gone(const fs::path& dir) {
    drop_watch(dir);
    reported.erase(dir);
    last_reason.erase(dir);
    settle_pending(dir);
  }

  IncompleteCheckpoint incomplete_of(const fs::path& dir, const Pending& p) const {
    IncompleteCheckpoint ic;
    ic.dir = dir;
    ic.job = job_name_of(options.roots[p.root]);
    ic.waiting_for = p.waiting_for;
    ic.first_seen_ns = p.first_seen_ns;
    ic.incomplete_for_s = static_cast<double>(mono_ns() - p.seen_mono_ns) / 1e9;
    return ic;
  }

  // `dir` completed or left its root: it is no longer pending, and its root
  // may report the next directory that stays incomplete.
  void settle_pending(const fs::path& dir) {
    std::lock_guard lock(pending_mu);
    auto it = pending.find(dir);
    if (it == pending.end()) return;
    const int root = it->second.root;
    pending.erase(it);
    const std::int64_t grace_ns = static_cast<std::int64_t>(options.incomplete_grace_ms) * kNanosPerMilli;
    const std::int64_t now = mono_ns();
    for (const auto& [d, p] : pending) {
      if (p.root == root && now - p.seen_mono_ns >= grace_ns) return;  // the root still has one
    }
    incomplete_reported_roots.erase(root);
  }

  // `dir` was checked and is not complete: remembered (with when it was
  // first seen), and passed to on_incomplete once past the grace period
  // when its root has not reported one yet.
  void note_incomplete(const fs::path& dir, int root, const std::string& waiting_for, std::int64_t mtime_ns) {
    std::optional<IncompleteCheckpoint> due;
    {
      std::lock_guard lock(pending_mu);
      auto [it, fresh] = pending.try_emplace(dir);
      Pending& p = it->second;
      if (fresh) {
        p.root = root;
        const std::int64_t now = wall_ns();
        p.first_seen_ns = mtime_ns > 0 ? std::min(mtime_ns, now) : now;
        p.seen_mono_ns = mono_ns();
      }
      p.waiting_for = waiting_for;
      const std::int64_t grace_ns = static_cast<std::int64_t>(options.incomplete_grace_ms) * kNanosPerMilli;
      if (options.on_incomplete && !incomplete_reported_roots.count(root) &&
          mono_ns() - p.seen_mono_ns >= grace_ns) {
        due = incomplete_of(dir, p);
      }
    }
    if (due && options.on_incomplete(*due)) {
      std::lock_guard lock(pending_mu);
      incomplete_reported_roots.insert(root);
    }
  }

  void check(const fs::path& dir, int root) {
    if (reported.count(dir)) return;
    Incomplete why;
    auto kind = checkpoint_complete(dir, options.completion, &why);
    if (!kind.is_ok()) {
      // A directory that vanished meanwhile is routine; anything else is
      // worth a line.
      std::error_code ec;
      if (fs::exists(dir, ec)) notice("checking " + dir.string() + ": " + kind.status().to_string());
      return;
    }
    struct stat st {};
    const std::int64_t mtime_ns = ::stat(dir.c_str(), &st) == 0 ? mtime_ns_of(st) : 0;
    if (!kind->has_value()) {
      // A bad index is worth a line (once per distinct reason); a missing
      // file is just a checkpoint still being written.
      if (!why.still_writing && last_reason[dir] != why.reason) {
        notice("checkpoint " + dir.string() + " not complete: " + why.reason);
      }
      last_reason[dir] = why.reason;
      note_incomplete(dir, root, why.reason, mtime_ns);
      return;
    }
    CheckpointCandidate c;
    c.dir = dir;
    c.job = job_name_of(options.roots[root]);
    c.kind = **kind;
    c.step = step_from_name(dir.filename().string());
    c.mtime_ns = mtime_ns;
    reported.insert(dir);
    last_reason.erase(dir);
    settle_pending(dir);
    on_complete(c);
  }

  void scan_root(int root) {
    const fs::path& rdir = options.roots[root].path;
    add_watch(rdir, root, /*is_root=*/true);
    std::error_code ec;
    std::set<fs::path> present;
    for (fs::directory_iterator it(rdir, ec), end; !ec && it != end; it.increment(ec)) {
      std::error_code tec;
      if (!it->is_directory(tec) || it->is_symlink(tec)) continue;
      if (is_staging_name(it->path().filename().string())) continue;
      const fs::path dir = rdir / it->path().filename();
      present.insert(dir);
      add_watch(dir, root, false);
      check(dir, root);
    }
    if (ec) notice("rescan of " + rdir.string() + ": " + ec.message());
    // Forget checkpoints that left this root while events were lost.
    std::vector<fs::path> stale;
    for (const fs::path& d : reported) {
      if (d.parent_path() == rdir && !present.count(d)) stale.push_back(d);
    }
    for (const auto& [d, wd] : wd_of) {
      if (d.parent_path() == rdir && !present.count(d)) stale.push_back(d);
    }
    {
      std::lock_guard lock(pending_mu);
      for (const auto& [d, p] : pending) {
        if (p.root == root && !present.count(d)) stale.push_back(d);
      }
    }
    if (!ec)
      for (const fs::path& d : stale) gone(d);
  }

  void rescan() {
    for (int r = 0; r < static_cast<int>(options.roots.size()); ++r) scan_root(r);
  }

  // Reads one batch of events; returns the directories to check.
  std::map<fs::path, int> read_events(bool* overflow) {
    std::map<fs::path, int> touched;
    alignas(struct inotify_event) char buf[kEventBufferBytes];
    for (;;) {
      const ssize_t n = ::read(inotify.get(), buf, sizeof(buf));
      if (n <= 0) break;  // EAGAIN: drained
      for (ssize_t off = 0; off < n;) {
        const auto* ev = reinterpret_cast<const struct inotify_event*>(buf + off);
        off += static_cast<ssize_t>(sizeof(struct inotify_event) + ev->len);
        if (ev->mask & IN_Q_OVERFLOW) {
          *overflow = true;
          continue;
        }
        auto it = watches.find(ev->wd);
        if (it == watches.end()) continue;
        const Watch w = it->second;  // copy: the map may change below
        if (ev->mask & IN_IGNORED) {
          watches.erase(ev->wd);
          if (auto r = wd_of.find(w.dir); r != wd_of.end() && r->second == ev->wd) wd_of.erase(r);
          if (w.is_root)
            notice("watched root " + w.dir.string() +
                   " was removed or moved; watching again at the next rescan");
          continue;
        }
        if (w.is_root) {
          if (ev->len == 0 || !(ev->mask & IN_ISDIR)) continue;
          if (is_staging_name(ev->name)) continue;
          const fs::path dir = w.dir / ev->name;
          if (ev->mask & (IN_CREATE | IN_MOVED_TO)) {
            add_watch(dir, w.root, false);
            touched[dir] = w.root;
          } else if (ev->mask & (IN_MOVED_FROM | IN_DELETE)) {
            gone(dir);
            touched.erase(dir);
          }
        } else if (!(ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF))) {
          touched[w.dir] = w.root;
        }
      }
    }
    return touched;
  }

  void run() {
    rescan();
    auto next_rescan =
        std::chrono::steady_clock::now() + std::chrono::milliseconds(options.rescan_interval_ms);
    for (;;) {
      const auto now = std::chrono::steady_clock::now();
      const auto wait_ms = std::chrono::duration_cast<std::chrono::milliseconds>(next_rescan - now).count();
      struct pollfd fds[2] = {{inotify.get(), POLLIN, 0}, {wake.get(), POLLIN, 0}};
      const int rc = ::poll(fds, 2, static_cast<int>(std::clamp<long long>(wait_ms, 0, 60'000)));
      if (rc < 0 && errno != EINTR) {
        notice(std::string("watcher poll: ") + std::strerror(errno));
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      bool full = false;
      std::set<fs::path> forget;
      if (fds[1].revents & POLLIN) {
        std::uint64_t v;
        [[maybe_unused]] ssize_t n = ::read(wake.get(), &v, sizeof(v));
      }
      {
        std::lock_guard lock(mu);
        if (stop) return;
        full = std::exchange(rescan_requested, false);
        forget.swap(forgotten);
      }
      for (const fs::path& d : forget) {
        reported.erase(d);
        last_reason.erase(d);
      }
      bool overflow = false;
      std::map<fs::path, int> touched;
      if (fds[0].revents & POLLIN) touched = read_events(&overflow);
      if (overflow) notice("inotify event queue overflowed; rescanning every root");
      if (full || overflow || std::chrono::steady_clock::now() >= next_rescan) {
        rescan();
        next_rescan =
            std::chrono::steady_clock::now() + std::chrono::milliseconds(options.rescan_interval_ms);
      } else {
        for (const auto& [dir, root] : touched) check(dir, root);
      }
    }
  }
};

Watcher::Watcher(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Result<std::unique_ptr<Watcher>> Watcher::start(const WatcherOptions& options,
                                                std::function<void(const CheckpointCandidate&)> on_complete) {
  if (options.roots.empty()) return Status::invalid_argument("watcher: no roots to watch");
  if (options.rescan_interval_ms <= 0) {
    return Status::invalid_argument("watcher: rescan interval must be positive, not " +
                                    std::to_string(options.rescan_interval_ms) + " ms");
  }
  if (!on_complete) return Status::invalid_argument("watcher: no completion callback");
  const std::string& marker = options.completion.marker_file;
  if (marker.find('/') != std::string::npos) {
    return Status::invalid_argument("watcher: marker file \"" + marker + "\" must be a plain file name");
  }
  if (options.completion.marker_only && marker.empty()) {
    return Status::invalid_argument("watcher: marker_only without a marker file would take nothing");
  }
  if (options.incomplete_grace_ms <= 0) {
    return Status::invalid_argument("watcher: incomplete grace must be positive, not " +
                                    std::to_string(options.incomplete_grace_ms) + " ms");
  }
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  for (WatchRoot& r : impl->options.roots) {
    r.path = r.path.lexically_normal();
    if (r.path.filename().empty() && r.path.has_parent_path() && r.path != r.path.root_path()) {
      r.path = r.path.parent_path();
    }
    struct stat st {};
    if (::stat(r.path.c_str(), &st) != 0) return Status::from_errno(errno, "watch root " + r.path.string());
    if (!S_ISDIR(st.st_mode))
      return Status::invalid_argument("watch root " + r.path.string() + " is not a directory");
    if (::access(r.path.c_str(), R_OK | X_OK) != 0) {
      return Status::from_errno(errno, "watch root " + r.path.string());
    }
  }
  for (std::size_t i = 0; i < impl->options.roots.size(); ++i) {
    for (std::size_t k = 0; k < i; ++k) {
      if (impl->options.roots[i].path == impl->options.roots[k].path) {
        return Status::invalid_argument("watch root " + impl->options.roots[i].path.string() +
                                        " is named twice");
      }
    }
  }
  impl->on_complete = std::move(on_complete);
  const int ifd = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (ifd < 0) return Status::from_errno(errno, "inotify_init1");
  impl->inotify = UniqueFd(ifd);
  const int efd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (efd < 0) return Status::from_errno(errno, "eventfd");
  impl->wake = UniqueFd(efd);
  Impl* raw = impl.get();
  impl->thread = std::thread([raw] { raw->run(); });
  return std::unique_ptr<Watcher>(new Watcher(std::move(impl)));
}

Watcher::~Watcher() {
  {
    std::lock_guard lock(impl_->mu);
    impl_->stop = true;
  }
  impl_->signal();
  impl_->thread.join();
}

void Watcher::rescan_now() {
  {
    std::lock_guard lock(impl_->mu);
    impl_->rescan_requested = true;
  }
  impl_->signal();
}

void Watcher::forget(const fs::path& dir) {
  {
    std::lock_guard lock(impl_->mu);
    fs::path p = dir.lexically_normal();
    if (p.filename().empty() && p.has_parent_path()) p = p.parent_path();
    impl_->forgotten.insert(p);
  }
  impl_->signal();
}

std::vector<IncompleteCheckpoint> Watcher::incomplete() const {
  std::vector<IncompleteCheckpoint> out;
  {
    std::lock_guard lock(impl_->pending_mu);
    for (const auto& [dir, p] : impl_->pending) out.push_back(impl_->incomplete_of(dir, p));
  }
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.first_seen_ns < b.first_seen_ns; });
  return out;
}

// ---------------------------------------------------------------------------

Result<std::vector<FileState>> file_states(std::span<const PackSource> sources) {
  std::vector<FileState> out;
  out.reserve(sources.size());
  for (const PackSource& s : sources) {
    struct stat st {};
    if (::stat(s.path.c_str(), &st) != 0) {
      if (errno == ENOENT) return Status::not_found(s.path.string() + ": file is gone");
      return Status::from_errno(errno, "stat " + s.path.string());
    }
    out.push_back(FileState{s.rel_path, static_cast<std::uint64_t>(st.st_size), mtime_ns_of(st),
                            static_cast<std::uint64_t>(st.st_ino), static_cast<std::uint64_t>(st.st_dev)});
  }
  return out;
}

Status check_unchanged(std::span<const FileState> before, std::span<const FileState> after) {
  std::map<std::string_view, const FileState*> now;
  for (const FileState& f : after) now[f.rel_path] = &f;
  auto changed = [](const std::string& path, const std::string& what) {
    return Status::source_changed("file " + path + " changed while it was read (" + what + ")");
  };
  std::set<std::string_view> seen;
  for (const FileState& b : before) {
    seen.insert(b.rel_path);
    auto it = now.find(b.rel_path);
    if (it == now.end()) return changed(b.rel_path, "gone");
    const FileState& a = *it->second;
    if (a.dev != b.dev || a.inode != b.inode) {
      return changed(b.rel_path,
                     "replaced: inode " + std::to_string(b.inode) + " -> " + std::to_string(a.inode));
    }
    if (a.size != b.size) {
      return changed(b.rel_path, "size " + std::to_string(b.size) + " -> " + std::to_string(a.size));
    }
    if (a.mtime_ns != b.mtime_ns) {
      return changed(b.rel_path,
                     "mtime_ns " + std::to_string(b.mtime_ns) + " -> " + std::to_string(a.mtime_ns));
    }
  }
  for (const FileState& a : after) {
    if (!seen.count(a.rel_path)) return changed(a.rel_path, "appeared");
  }
  return Status::ok();
}

}  // namespace ferry
