// restore.cc: see restore.h. RemoteFrameSource is the unpacker's FrameSource
// over a receiver: `streams` threads, each with its own connection, claim
// batches of consecutive chunks in file order and fetch them with GET_CHUNK;
// the decoder takes frames as they arrive. A stream may claim a batch only
// while it starts within `ahead` chunks of the first frame not yet taken, so
// memory stays bounded and the decoder's window (smaller than `ahead`) can
// always be filled: no deadlock between the bound and the window.
#include "replication/restore.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <utility>

#include "base/clock.h"
#include "base/retry.h"
#include "base/thread_pool.h"
#include "replication/limits.h"

namespace ferry::replication {
namespace {

class RemoteFrameSource final : public FrameSource {
 public:
  RemoteFrameSource(const RemoteOptions& remote, std::shared_ptr<const TlsContext> ctx,
                    const Manifest& manifest, std::string snapshot, std::size_t streams,
                    std::size_t batch_chunks, std::size_t window_chunks);
  ~RemoteFrameSource() override { stop(); }

  // Starts the streams; the first uses `first` (already past HELLO).
  void start(std::unique_ptr<Connection> first);
  // Stops and joins every stream (idempotent).
  void stop();

  const Manifest& manifest() const override { return manifest_; }
  std::string describe() const override { return remote_.address + " snapshot " + snapshot_; }
  Status read_frame(std::size_t file, std::size_t chunk, std::vector<std::byte>& out) const override;
  // A delta frame's base, by GET_CHUNK on a connection of the base pool
  // (apart from the streams'), one per concurrent caller.
  Status read_chunk_frame(const Digest& id, std::vector<std::byte>& out) const override;

  std::uint64_t frame_bytes() const { return frame_bytes_.load(); }
  std::uint64_t wire_in() const { return wire_in_.load(); }
  std::uint64_t wire_out() const { return wire_out_.load(); }
  std::uint64_t reconnects() const { return reconnects_.load(); }

 private:
  struct Batch {
    std::size_t first = 0;
    std::size_t count = 0;
  };
  enum class State : std::uint8_t { kPending, kReady, kTaken };

  void run_stream(std::size_t stream, std::unique_ptr<Connection> conn);
  // Fetches one batch on `conn`; a failed Status means the connection broke.
  Status fetch_batch(Connection& conn, std::size_t b);
  // The smallest spare buffer that holds a frame of frame_bytes, or none.
  std::vector<std::byte> take_spare(std::size_t frame_bytes);
  // Keeps a buffer the decoder is done with among the spares (mu_ held).
  void keep_spare_locked(std::vector<std::byte>&& frame) const;
  void fail(Status st);

  RemoteOptions remote_;
  std::shared_ptr<const TlsContext> ctx_;
  const Manifest& manifest_;
  mutable std::mutex base_mu_;
  mutable std::condition_variable base_cv_;
  mutable std::vector<std::unique_ptr<Connection>> base_conns_;  // idle; guarded by base_mu_
  mutable std::size_t base_open_ = 0;                            // idle or in use; guarded by base_mu_
  std::string snapshot_;
  std::size_t streams_;
  std::size_t ahead_;
  const ChunksInOrder chunks_;
  std::vector<Batch> batches_;
  std::vector<std::thread> threads_;

  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::size_t next_batch_ = 0;
  mutable std::size_t lowest_untaken_ = 0;
  mutable std::vector<State> state_;
  mutable std::vector<std::vector<std::byte>> frames_;
  mutable std::vector<Status> errors_;  // per chunk: the receiver's ERROR for it
  // Buffers of frames the decoder has taken the next frame's place of, for
  // a stream's next receive (Connection::recycle).
  mutable std::vector<std::vector<std::byte>> spare_frames_;
  Status fatal_;
  bool stopping_ = false;

  mutable std::atomic<std::uint64_t> frame_bytes_{0}, wire_in_{0}, wire_out_{0}, reconnects_{0};
};

RemoteFrameSource::RemoteFrameSource(const RemoteOptions& remote, std::shared_ptr<const TlsContext> ctx,
                                     const Manifest& manifest, std::string snapshot, std::size_t streams,
                                     std::size_t batch_chunks, std::size_t window_chunks)
    : remote_(remote), ctx_(std::move(ctx)), manifest_(manifest), snapshot_(std::move(snapshot)),
      streams_(streams), chunks_(manifest) {
  batch_chunks = std::clamp<std::size_t>(batch_chunks, 1, kMaxGetChunkIds);
  for (std::size_t i = 0; i < chunks_.size();) {
    Batch b{i, 0};
    std::uint64_t bytes = 0;
    while (i < chunks_.size() && b.count < batch_chunks &&
           (b.count == 0 || bytes + chunks_[i].frame_bytes <= kRestoreBatchBytes)) {
      bytes += chunks_[i].frame_bytes;
      ++b.count;
      ++i;
    }
    batches_.push_back(b);
  }
  // The decoder's window plus a batch in flight per stream beyond it.
  ahead_ = window_chunks + streams_ * batch_chunks;
  state_.assign(chunks_.size(), State::kPending);
  frames_.resize(chunks_.size());
  errors_.resize(chunks_.size());
}

void RemoteFrameSource::start(std::unique_ptr<Connection> first) {
  const std::size_t n = std::max<std::size_t>(1, std::min(streams_, batches_.size()));
  for (std::size_t i = 0; i < n; ++i) {
    threads_.emplace_back(
        [this, i, c = i == 0 ? std::move(first) : nullptr]() mutable { run_stream(i, std::move(c)); });
  }
}

void RemoteFrameSource::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (std::thread& t : threads_) t.join();
  threads_.clear();
}

void RemoteFrameSource::fail(Status st) {
  {
    std::lock_guard lock(mu_);
    if (fatal_.is_ok()) fatal_ = std::move(st);
  }
  cv_.notify_all();
}

void RemoteFrameSource::run_stream(std::size_t stream, std::unique_ptr<Connection> conn) {
  int reconnects = 0;
  auto account = [&] {
    if (!conn) return;
    wire_in_ += conn->counters().cipher_bytes_in;
    wire_out_ += conn->counters().cipher_bytes_out;
  };
  for (;;) {
    std::size_t b;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] {
        return stopping_ || !fatal_.is_ok() || next_batch_ >= batches_.size() ||
               batches_[next_batch_].first < lowest_untaken_ + ahead_;
      });
      if (stopping_ || !fatal_.is_ok() || next_batch_ >= batches_.size()) break;
      b = next_batch_++;
    }
    for (;;) {
      Status st;
      if (!conn) {
        auto dialed = dial_receiver(remote_, ctx_);
        if (dialed) {
          conn = std::move(*dialed);
        } else {
          st = dialed.status();
        }
      }
      if (st.is_ok()) st = fetch_batch(*conn, b);
      if (st.is_ok()) break;
      account();
      conn.reset();
      if (!retry_on_new_connection(st) || reconnects >= kRestoreReconnects) {
        fail(st.with_context("restore stream " + std::to_string(stream)));
        return;
      }
      ++reconnects;
      ++reconnects_;
      std::this_thread::sleep_for(std::chrono::milliseconds(kRestoreBackoffMs << reconnects));
      std::lock_guard lock(mu_);
      if (stopping_) return;
    }
  }
  if (conn) {
    (void)conn->send(Bye{});
    conn->close();
  }
  account();
}

std::vector<std::byte> RemoteFrameSource::take_spare(std::size_t frame_bytes) {
  std::lock_guard lock(mu_);
  auto fits = spare_frames_.end();
  for (auto it = spare_frames_.begin(); it != spare_frames_.end(); ++it) {
    if (it->capacity() >= frame_bytes && (fits == spare_frames_.end() || it->capacity() < fits->capacity()))
      fits = it;
  }
  if (fits == spare_frames_.end()) return {};
  std::vector<std::byte> v = std::move(*fits);
  spare_frames_.erase(fits);
  return v;
}

void RemoteFrameSource::keep_spare_locked(std::vector<std::byte>&& frame) const {
  if (frame.capacity() == 0) return;
  if (spare_frames_.size() < kRestoreSpareFramesPerStream * streams_) {
    spare_frames_.push_back(std::move(frame));
    return;
  }
  // Full: the largest buffers stay, as they fit the most frames.
  auto smallest = std::min_element(spare_frames_.begin(), spare_frames_.end(),
                                   [](const auto& a, const auto& b) { return a.capacity() < b.capacity(); });
  if (smallest->capacity() < frame.capacity()) *smallest = std::move(frame);
}

Status RemoteFrameSource::fetch_batch(Connection& conn, std::size_t b) {
  const Batch& batch = batches_[b];
  GetChunk req;
  req.request_id = b + 1;
  req.ids.reserve(batch.count);
  for (std::size_t i = 0; i < batch.count; ++i) req.ids.push_back(chunks_[batch.first + i].id);
  RETURN_IF_ERROR(conn.send(req));
  for (std::size_t i = 0; i < batch.count; ++i) {
    if (std::vector<std::byte> spare = take_spare(chunks_[batch.first + i].frame_bytes);
        spare.capacity() != 0)
      conn.recycle(std::move(spare));
    ASSIGN_OR_RETURN(Message m, conn.recv());
    std::vector<std::byte> frame;
    Status chunk_status;
    if (auto* data = std::get_if<ChunkData>(&m); data && data->request_id == req.request_id) {
      frame = std::move(data->frame);
      frame_bytes_ += frame.size();
    } else if (auto* e = std::get_if<Error>(&m); e && e->request_id == req.request_id) {
      // The receiver refused this chunk only (its store named the chunk and
      // chose the code): surface it, code kept, where the chunk is decoded,
      // so the unpacker names the chunk, file and offset.
      chunk_status = status_from_peer_error(*e);
    } else if (e && e->request_id == 0) {
      return status_from_peer_error(*e);
    } else {
      return Status::corruption(conn.peer_name() + " answered GET_CHUNK " + std::to_string(req.request_id) +
                                " with " + std::string(message_name(m)) + " (request " +
                                std::to_string(request_id_of(m)) + ")");
    }
    {
      std::lock_guard lock(mu_);
      const std::size_t idx = batch.first + i;
      frames_[idx] = std::move(frame);
      errors_[idx] = std::move(chunk_status);
      state_[idx] = State::kReady;
    }
    cv_.notify_all();
  }
  return Status::ok();
}

Status RemoteFrameSource::read_chunk_frame(const Digest& id, std::vector<std::byte>& out) const {
  // Each caller takes a connection of its own from the idle ones (dialling
  // one when none is idle), so bases are fetched in parallel by the threads
  // that rebuild their deltas, and gives it back when it is still usable.
  std::unique_ptr<Connection> conn;
  {
    // At most kMaxBaseFetchConnections open: beyond that, wait for an idle one.
    std::unique_lock lock(base_mu_);
    base_cv_.wait(lock, [&] { return !base_conns_.empty() || base_open_ < kMaxBaseFetchConnections; });
    if (!base_conns_.empty()) {
      conn = std::move(base_conns_.back());
      base_conns_.pop_back();
    } else {
      ++base_open_;  // dialled below
    }
  }
  // Hands the connection back (or, when it broke, its slot) on every path.
  struct Release {
    const RemoteFrameSource& self;
    std::unique_ptr<Connection>& conn;
    ~Release() {
      {
        std::lock_guard lock(self.base_mu_);
        if (conn) {
          self.base_conns_.push_back(std::move(conn));
        } else {
          --self.base_open_;
        }
      }
      self.base_cv_.notify_one();
    }
  } release{*this, conn};
  for (int attempt = 0;; ++attempt) {
    if (!conn) {
      auto dialled = dial_receiver(remote_, ctx_);
      if (!dialled) return dialled.status().with_context("fetching base chunk " + to_hex(id));
      conn = std::move(*dialled);
    }
    GetChunk req;
    req.request_id = 1;
    req.ids.push_back(id);
    Status st = conn->send(req);
    Result<Message> m = st ? conn->recv() : Result<Message>(st);
    if (!m) {
      conn.reset();
      if (attempt == 0) continue;  // one reconnect after a break
      return m.status().with_context("fetching base chunk " + to_hex(id));
    }
    if (auto* data = std::get_if<ChunkData>(&*m); data && data->request_id == req.request_id) {
      frame_bytes_ += data->frame.size();
      out = std::move(data->frame);
      return Status::ok();
    }
    if (auto* e = std::get_if<Error>(&*m)) {
      if (e->request_id == 0) conn.reset();  // the connection ended; else a refusal of this chunk only
      return status_from_peer_error(*e).with_context("base chunk " + to_hex(id));
    }
    conn.reset();
    return Status::corruption(describe() + " answered GET_CHUNK for base chunk " + to_hex(id) + " with " +
                              std::string(message_name(*m)));
  }
}

Status RemoteFrameSource::read_frame(std::size_t file, std::size_t chunk, std::vector<std::byte>& out) const {
  const std::size_t idx = chunks_.index(file, chunk);
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] { return state_[idx] == State::kReady || !fatal_.is_ok() || stopping_; });
  if (state_[idx] != State::kReady) {
    return fatal_.is_ok() ? Status::aborted("restore stopped") : fatal_;
  }
  // `out` held the caller's previous frame, which it is done with.
  keep_spare_locked(std::exchange(out, std::move(frames_[idx])));
  frames_[idx] = {};
  Status st = std::move(errors_[idx]);
  state_[idx] = State::kTaken;
  while (lowest_untaken_ < state_.size() && state_[lowest_untaken_] == State::kTaken) ++lowest_untaken_;
  lock.unlock();
  cv_.notify_all();
  return st;
}

// A RemoteFrameSource that owns the manifest it serves.
class OwnedRemoteFrameSource final : public FrameSource {
 public:
  explicit OwnedRemoteFrameSource(Manifest manifest) : manifest_(std::move(manifest)) {}
  ~OwnedRemoteFrameSource() override {
    if (source_) source_->stop();
  }
  void attach(std::unique_ptr<RemoteFrameSource> source) { source_ = std::move(source); }
  const Manifest& manifest() const override { return manifest_; }
  std::string describe() const override { return source_->describe(); }
  Status read_frame(std::size_t file, std::size_t chunk, std::vector<std::byte>& out) const override {
    return source_->read_frame(file, chunk, out);
  }
  Status read_chunk_frame(const Digest& id, std::vector<std::byte>& out) const override {
    return source_->read_chunk_frame(id, out);
  }

 private:
  Manifest manifest_;
  std::unique_ptr<RemoteFrameSource> source_;
};

}  // namespace

Result<std::unique_ptr<Connection>> dial_receiver(const RemoteOptions& remote,
                                                  std::shared_ptr<const TlsContext> ctx) {
  if (!ctx) {
    TlsConfig config = remote.tls;
    config.role = TlsRole::kClient;
    ASSIGN_OR_RETURN(ctx, TlsContext::create(config));
  }
  ASSIGN_OR_RETURN(io::SocketAddress addr, io::SocketAddress::parse(remote.address));
  ASSIGN_OR_RETURN(std::unique_ptr<Connection> conn, Connection::connect(addr, ctx, remote.connection));
  auto ok = conn->hello(remote.software);
  if (!ok) return ok.status().with_context(remote.address);
  return conn;
}

Result<Manifest> fetch_manifest(Connection& conn, std::string_view snapshot) {
  constexpr std::uint64_t kRequestId = 1;
  RETURN_IF_ERROR(conn.send(GetManifest{kRequestId, std::string(snapshot)}));
  ASSIGN_OR_RETURN(Message m, conn.recv());
  if (auto* e = std::get_if<Error>(&m)) {
    return status_from_peer_error(*e).with_context("snapshot " + std::string(snapshot));
  }
  auto* data = std::get_if<ManifestData>(&m);
  if (!data || data->request_id != kRequestId) {
    return Status::corruption(conn.peer_name() + " answered GET_MANIFEST with " +
                              std::string(message_name(m)));
  }
  auto parsed = parse_manifest(data->manifest);
  if (!parsed) {
    return parsed.status().with_context(conn.peer_name() + ": manifest of snapshot " + std::string(snapshot));
  }
  return std::move(*parsed);
}

Result<std::vector<RemoteSnapshot>> list_remote(const RemoteOptions& remote, bool with_manifests) {
  ASSIGN_OR_RETURN(std::unique_ptr<Connection> conn, dial_receiver(remote));
  auto listed = list_snapshots(*conn);
  if (!listed) return listed.status().with_context(remote.address);
  std::vector<RemoteSnapshot> out;
  out.reserve(listed->size());
  for (SnapshotInfo& s : *listed) {
    RemoteSnapshot r;
    r.info = std::move(s);
    if (with_manifests) {
      auto manifest = fetch_manifest(*conn, r.info.name);
      // A snapshot pruned between LIST and GET_MANIFEST is listed without.
      if (manifest) {
        r.have_manifest = true;
        r.host = manifest->host;
        r.job = manifest->job;
        r.step = manifest->step;
        r.origin = manifest->origin;
      } else if (manifest.status().code() != Code::kNotFound) {
        return manifest.status();
      }
    }
    out.push_back(std::move(r));
  }
  (void)conn->send(Bye{});
  return out;
}

Result<RestoreReport> restore_snapshot(const RemoteOptions& remote, std::string_view snapshot,
                                       const std::filesystem::path& out_dir, const RestoreOptions& options) {
  const double start = mono_seconds();
  TlsConfig config = remote.tls;
  config.role = TlsRole::kClient;
  ASSIGN_OR_RETURN(std::shared_ptr<const TlsContext> ctx, TlsContext::create(config));
  ASSIGN_OR_RETURN(std::unique_ptr<Connection> first, dial_receiver(remote, ctx));
  ASSIGN_OR_RETURN(Manifest manifest, fetch_manifest(*first, snapshot));

  ThreadPool& pool = options.pool ? *options.pool : ThreadPool::shared();
  const std::size_t streams = std::clamp<std::size_t>(options.streams, 1, kMaxRestoreStreams);
  UnpackOptions unpack;
  unpack.pool = &pool;
  unpack.window_chunks = std::max<std::size_t>(2 * pool.size(), streams * options.batch_chunks);
  unpack.progress = options.progress;
  unpack.exact_modes = options.exact_modes;
  RemoteFrameSource source(remote, ctx, manifest, std::string(snapshot), streams, options.batch_chunks,
                           unpack.window_chunks);
  source.start(std::move(first));
  Status st = options.verify_only ? verify_frames(source, unpack) : unpack_frames(source, out_dir, unpack);
  source.stop();
  if (!st) return st;

  RestoreReport report;
  report.files = manifest.files.size();
  report.chunks = manifest.chunk_count();
  report.logical_bytes = manifest.logical_bytes();
  report.frame_bytes = source.frame_bytes();
  report.wire_bytes_in = source.wire_in();
  report.wire_bytes_out = source.wire_out();
  report.reconnects = source.reconnects();
  report.seconds = mono_seconds() - start;
  return report;
}

Result<std::unique_ptr<FrameSource>> open_remote_frame_source(const RemoteOptions& remote,
                                                              std::string_view snapshot, std::size_t streams,
                                                              std::size_t window_chunks,
                                                              std::size_t batch_chunks) {
  TlsConfig config = remote.tls;
  config.role = TlsRole::kClient;
  ASSIGN_OR_RETURN(std::shared_ptr<const TlsContext> ctx, TlsContext::create(config));
  ASSIGN_OR_RETURN(std::unique_ptr<Connection> first, dial_receiver(remote, ctx));
  ASSIGN_OR_RETURN(Manifest manifest, fetch_manifest(*first, snapshot));
  auto owned = std::make_unique<OwnedRemoteFrameSource>(std::move(manifest));
  auto source = std::make_unique<RemoteFrameSource>(remote, ctx, owned->manifest(), std::string(snapshot),
                                                    std::clamp<std::size_t>(streams, 1, kMaxRestoreStreams),
                                                    batch_chunks, std::max<std::size_t>(window_chunks, 1));
  source->start(std::move(first));
  owned->attach(std::move(source));
  return std::unique_ptr<FrameSource>(std::move(owned));
}

}  // namespace ferry::replication
