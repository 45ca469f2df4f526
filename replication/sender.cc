// sender.cc: push() (see sender.h): the packer on the calling thread feeds a
// bounded queue of PUT messages; stream threads keep windows of them in
// flight and retire them on PUT_ACK; a control connection answers the
// packer's have/need and commits the manifest at the end.
#include "replication/sender.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <ctime>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <thread>

#include "base/buffer_stash.h"
#include "base/clock.h"
#include "base/retry.h"
#include "base/token_bucket.h"
#include "codec/chunk_codec.h"
#include "codec/engine.h"
#include "codec/frame_rebuilder.h"
#include "codec/manifest.h"
#include "replication/connection.h"
#include "replication/delta_base_choice.h"
#include "replication/protocol.h"
#include "replication/push_frames.h"
#include "replication/snapshot_name.h"

namespace ferry::replication {
namespace {

using Clock = std::chrono::steady_clock;

// A stream with frames in flight and room in its window waits this long for
// the packer's next frame (woken as soon as one is queued), reads an
// acknowledgement only if one has arrived (Connection::input_ready, no
// wait), and goes round again: it never sits in a receive for a round trip
// while frames wait in the queue (on a 20 ms link that held the packer up
// behind a small queue).
inline constexpr int kFramePollMs = 2;
// Sleeps (backoff, bandwidth cap) are cut into slices this long so an abort
// is noticed quickly.
inline constexpr int kSleepSliceMs = 20;

// Sleeps up to `ms`, returning early when `abort` is raised.
void sleep_unless_aborted(std::int64_t ms, const AbortFlag& abort) {
  const auto until = Clock::now() + std::chrono::milliseconds(ms);
  while (!abort.raised() && Clock::now() < until) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now()).count();
    std::this_thread::sleep_for(std::chrono::milliseconds(std::clamp<std::int64_t>(left, 0, kSleepSliceMs)));
  }
}

// Counters of one push at one target, added to from every thread.
struct SharedCounters {
  std::atomic<std::uint64_t> frame_bytes_sent{0}, frame_bytes_resent{0}, frame_bytes_acked{0}, chunks_sent{0},
      wire_out{0}, wire_in{0}, retries{0}, deltas_sent_in_full{0};
};

// One connection to the target that reconnects on demand, with backoff and
// jitter between attempts, counting its bytes into `counters`.
class Link {
 public:
  Link(std::string target, std::shared_ptr<const TlsContext> ctx, const PushOptions& options,
       SharedCounters& counters, const AbortFlag& abort)
      : target_(std::move(target)), ctx_(std::move(ctx)), options_(options), counters_(counters),
        abort_(abort), rng_(std::random_device{}()) {}
  ~Link() { drop(); }

  // Connected and past HELLO, or the error that made it give up: one that
  // retry_on_new_connection refuses at once, others after max_attempts
  // tries in a row.
  Status ensure() {
    if (conn_) return Status::ok();
    Status last;
    for (int attempt = 0; attempt < std::max(1, options_.retry.max_attempts); ++attempt) {
      if (abort_.raised()) return abort_.status();
      if (attempt > 0 || broken_before_) {
        counters_.retries.fetch_add(1);
        sleep_unless_aborted(backoff_ms(attempt), abort_);
      }
      last = connect_once();
      if (last) return Status::ok();
      if (!retry_on_new_connection(last)) return last;
    }
    return last.with_context(target_ + ": gave up after " + std::to_string(options_.retry.max_attempts) +
                             " attempts");
  }
  // Closes after a break; the next ensure() reconnects (after a backoff).
  void drop() {
    if (!conn_) return;
    counters_.wire_out.fetch_add(conn_->counters().cipher_bytes_out - wire_out_seen_);
    counters_.wire_in.fetch_add(conn_->counters().cipher_bytes_in - wire_in_seen_);
    conn_->abort();
    conn_.reset();
    broken_before_ = true;
  }
  // Closes cleanly at the end (BYE, close_notify).
  void finish() {
    if (!conn_) return;
    (void)conn_->send(Bye{});
    conn_->close();
    broken_before_ = false;
    counters_.wire_out.fetch_add(conn_->counters().cipher_bytes_out - wire_out_seen_);
    counters_.wire_in.fetch_add(conn_->counters().cipher_bytes_in - wire_in_seen_);
    conn_.reset();
  }
  // Sends a request and waits for the reply with its id (an ERROR with it
  // becomes the Status). Reconnects and resends while
  // retry_on_new_connection allows.
  Result<Message> request(Message m) {
    for (int attempt = 0;; ++attempt) {
      RETURN_IF_ERROR(ensure());
      const std::uint64_t id = next_id();
      set_request_id(m, id);
      Result<Message> reply = exchange(m, id);
      if (reply || !retry_on_new_connection(reply.status()) || attempt + 1 >= options_.retry.max_attempts)
        return reply;
      drop();
    }
  }

  Connection* conn() { return conn_.get(); }
  const HelloOk& hello() const { return hello_; }
  std::uint64_t next_id() { return ++request_ids_; }
  // Adds this connection's bytes so far to the shared counters.
  void sync_counters() {
    if (!conn_) return;
    counters_.wire_out.fetch_add(conn_->counters().cipher_bytes_out - wire_out_seen_);
    counters_.wire_in.fetch_add(conn_->counters().cipher_bytes_in - wire_in_seen_);
    wire_out_seen_ = conn_->counters().cipher_bytes_out;
    wire_in_seen_ = conn_->counters().cipher_bytes_in;
  }

 private:
  static void set_request_id(Message& m, std::uint64_t id) {
    std::visit(
        [id](auto& msg) {
          if constexpr (requires { msg.request_id; }) msg.request_id = id;
        },
        m);
  }
  Result<Message> exchange(const Message& m, std::uint64_t id) {
    if (Status st = conn_->send(m); !st) {
      drop();
      return st;
    }
    while (true) {
      Result<Message> r = conn_->recv();
      if (!r) {
        drop();
        return r.status();
      }
      if (const auto* e = std::get_if<Error>(&*r)) {
        if (e->request_id == id) return status_from_peer_error(*e);
        if (e->request_id == 0) {
          drop();
          return status_from_peer_error(*e);
        }
      }
      if (request_id_of(*r) == id) return r;
      // A reply to an earlier request given up on: skip it.
    }
  }
  Status connect_once() {
    ConnectionOptions co;
    co.connect_timeout_ms = options_.connect_timeout_ms;
    co.io_timeout_ms = options_.io_timeout_ms;
    ASSIGN_OR_RETURN(auto conn, Connection::connect(target_, ctx_, co));
    wire_out_seen_ = 0;
    wire_in_seen_ = 0;
    conn_ = std::move(conn);
    Result<HelloOk> h = conn_->hello(kSenderSoftware);
    if (!h) {
      Status st = h.status().with_context(target_);
      drop();
      return st;
    }
    hello_ = *h;
    return Status::ok();
  }
  std::int64_t backoff_ms(int attempt) {
    const double base = std::min<double>(options_.retry.max_backoff_ms,
                                         options_.retry.initial_backoff_ms * std::pow(2.0, attempt));
    // Jitter: between half and all of the exponential delay, so streams
    // that broke together do not come back together.
    std::uniform_real_distribution<double> jitter(0.5, 1.0);
    return static_cast<std::int64_t>(base * jitter(rng_));
  }

  std::string target_;
  std::shared_ptr<const TlsContext> ctx_;
  const PushOptions& options_;
  SharedCounters& counters_;
  const AbortFlag& abort_;
  std::mt19937_64 rng_;
  std::unique_ptr<Connection> conn_;
  HelloOk hello_;
  std::uint64_t request_ids_ = 0;
  std::uint64_t wire_out_seen_ = 0, wire_in_seen_ = 0;
  bool broken_before_ = false;
};

// One stream: a Link and a window of PUTs in flight.
class Stream {
 public:
  Stream(const std::string& target, std::shared_ptr<const TlsContext> ctx, FrameQueue& queue,
         FrameBuffers& buffers, TokenBucket& bucket, const PushOptions& options, SharedCounters& counters,
         AbortFlag& abort)
      : link_(target, std::move(ctx), options, counters, abort), queue_(queue), buffers_(buffers),
        bucket_(bucket), options_(options), counters_(counters), abort_(abort),
        // The GPU engine writes version 1 float payloads (cuda/gpu_engine.h); a
        // resent frame must be the one first sent.
        rebuilder_(options.zstd_level, options.engine != nullptr && options.engine->kind() == "gpu"
                                           ? kFloatPayloadV1
                                           : kFloatPayloadV2) {}

  // Runs until the queue is drained and every frame acknowledged, or the
  // push is aborted; a final error raises the abort flag.
  void run() {
    Status st = loop();
    if (!st) abort_.raise(st);
    if (st) {
      link_.finish();
    } else {
      link_.drop();
    }
    queue_.wake_all();
  }

 private:
  struct InFlight {
    std::uint64_t request_id = 0;
    std::unique_ptr<Outgoing> item;
  };

  // Runs until every frame this stream took is acknowledged. A break that
  // retry_on_new_connection allows (during PUTs, or while resolving frames
  // after a reconnect) drops the connection and starts over; the stream
  // gives up only after max_attempts breaks in a row in which no frame was
  // retired, so a link that keeps failing ends the push while a merely flaky
  // one finishes.
  Status loop() {
    int breaks_without_progress = 0;
    while (!abort_.raised()) {
      progressed_ = false;
      Status st;
      if (!link_.conn()) {
        // ensure() has already retried with backoff: when it gives up, the
        // target is unreachable and the push moves on (failover) or fails.
        RETURN_IF_ERROR(link_.ensure());
        st = resolve_in_flight();
      }
      if (st) st = fill_window();
      if (st && !in_flight_.empty()) {
        // With room for more frames to come, read only an acknowledgement
        // at hand; otherwise wait for the next one.
        const bool frames_may_come = window_has_room() && !queue_.done();
        if (!frames_may_come || link_.conn()->input_ready()) st = take_ack();
      }
      if (progressed_) breaks_without_progress = 0;
      if (!st) {
        if (!retry_on_new_connection(st) ||
            ++breaks_without_progress >= std::max(1, options_.retry.max_attempts)) {
          return st;
        }
        link_.drop();
        continue;
      }
      if (in_flight_.empty() && queue_.done()) return Status::ok();
    }
    return abort_.status();
  }

  // After a (re)connect, resolves the frames left in flight: QUERY says which
  // the receiver made durable (retired) and the rest are sent again. Every
  // frame stays in in_flight_ until it is retired or re-sent, so a second
  // break in here loses nothing.
  Status resolve_in_flight() {
    window_puts_ = std::max<std::uint32_t>(1, link_.hello().max_inflight_puts);
    if (in_flight_.empty()) return Status::ok();
    Query q;
    for (const auto& f : in_flight_) q.ids.push_back(f.item->id);
    ASSIGN_OR_RETURN(Message reply, link_.request(q));
    const auto* qr = std::get_if<QueryReply>(&reply);
    if (!qr || qr->missing.size() != in_flight_.size()) {
      return Status::corruption(std::string("receiver answered QUERY with ") +
                                std::string(message_name(reply)));
    }
    std::deque<InFlight> pending;
    pending.swap(in_flight_);
    in_flight_bytes_ = 0;
    for (std::size_t i = 0; i < pending.size(); ++i) {
      if (!qr->missing[i]) {
        counters_.frame_bytes_acked.fetch_add(pending[i].item->frame_bytes());
        progressed_ = true;
        continue;
      }
      Status st = send(std::move(pending[i].item), /*resend=*/true);
      if (!st) {
        // send() kept frame i; keep the ones not yet re-sent too.
        for (std::size_t j = i + 1; j < pending.size(); ++j) {
          in_flight_bytes_ += pending[j].item->frame_bytes();
          in_flight_.push_back(std::move(pending[j]));
        }
        return st;
      }
    }
    return Status::ok();
  }

  Status send(std::unique_ptr<Outgoing> item, bool resend) {
    const std::size_t n = item->frame_bytes();
    sleep_unless_aborted(bucket_.take_ms(n), abort_);  // the bandwidth cap, shared by the streams
    InFlight f{link_.next_id(), std::move(item)};
    std::get<Put>(f.item->put).request_id = f.request_id;
    // Kept before sending: if the send breaks, the frame is still ours.
    in_flight_.push_back(std::move(f));
    in_flight_bytes_ += n;
    counters_.frame_bytes_sent.fetch_add(n);
    if (resend) {
      counters_.frame_bytes_resent.fetch_add(n);
    } else {
      counters_.chunks_sent.fetch_add(1);
    }
    Outgoing& out = *in_flight_.back().item;
    if (!out.has_frame()) RETURN_IF_ERROR(rebuild(out));
    RETURN_IF_ERROR(link_.conn()->send(out.put));
    // Sent: its memory serves the next frames (a resend rebuilds it), so the
    // windows in flight hold no frame memory however large they are.
    out.release_frame();
    return Status::ok();
  }

  // Makes a released frame again for a resend, as it was or (standalone)
  // coded alone. Failing is final for the push (the source changed or went
  // away), whatever the code.
  Status rebuild(Outgoing& out, bool standalone = false) {
    std::vector<std::byte> frame = buffers_.take(frame_room_bytes(out.origin.chunk.length));
    Status st =
        standalone ? rebuilder_.rebuild_standalone(out.origin, frame) : rebuilder_.rebuild(out.origin, frame);
    if (!st) {
      buffers_.give(std::move(frame));
      abort_.raise(st);
      return st;
    }
    out.frame() = std::move(frame);
    return Status::ok();
  }

  // The receiver refused the delta frame in flight at `it` (NotFound): its
  // base was removed after the receiver said it held it (a gc at that
  // instant). The chunk is coded alone and sent again; the commit lists the
  // frame the receiver then holds (docs/FORMAT.md 5, "frame facts"). Failing
  // to code it is final, as for any rebuild.
  Status resend_in_full(std::deque<InFlight>::iterator it) {
    std::unique_ptr<Outgoing> item = std::move(it->item);
    in_flight_bytes_ -= item->frame_bytes();
    in_flight_.erase(it);
    RETURN_IF_ERROR(rebuild(*item, /*standalone=*/true));
    item->frame_size = item->frame().size();
    counters_.deltas_sent_in_full.fetch_add(1);
    return send(std::move(item), /*resend=*/true);
  }

  // Room for another PUT in this stream's window.
  bool window_has_room() const {
    return in_flight_.size() < window_puts_ &&
           (in_flight_.empty() || in_flight_bytes_ < options_.stream_window_bytes);
  }

  Status fill_window() {
    int wait_ms = in_flight_.empty() ? kQueuePollMs : kFramePollMs;
    while (!abort_.raised() && window_has_room()) {
      auto item = queue_.pop(wait_ms);
      if (!item) break;
      wait_ms = 0;
      RETURN_IF_ERROR(send(std::move(item), /*resend=*/false));
    }
    return Status::ok();
  }

  // Reads one acknowledgement (or the receiver's verdict).
  Status take_ack() {
    Result<Message> r = link_.conn()->recv();
    if (!r) return r.status();
    link_.sync_counters();
    // An ERROR with a PUT's id is the receiver's verdict on that frame (a
    // quota, a frame it found damaged); one with id 0 ends the connection.
    // Either way retry_on_new_connection decides in loop(), except for a
    // delta refused because its base is gone: that chunk goes in full.
    if (const auto* e = std::get_if<Error>(&*r)) {
      auto it = std::find_if(in_flight_.begin(), in_flight_.end(), [&](const InFlight& f) {
        return e->request_id != 0 && f.request_id == e->request_id;
      });
      if (e->code == Code::kNotFound && it != in_flight_.end() &&
          is_delta_codec(static_cast<Codec>(it->item->origin.chunk.codec))) {
        return resend_in_full(it);
      }
      return status_from_peer_error(*e);
    }
    const auto* ack = std::get_if<PutAck>(&*r);
    if (!ack) return Status::corruption("receiver sent " + std::string(message_name(*r)) + " during PUTs");
    auto it = std::find_if(in_flight_.begin(), in_flight_.end(),
                           [&](const InFlight& f) { return f.request_id == ack->request_id; });
    if (it == in_flight_.end()) return Status::ok();  // an ack for a frame resolved by QUERY
    if (it->item->id != ack->chunk_id) {
      return Status::corruption("receiver acknowledged request " + std::to_string(ack->request_id) +
                                " with chunk " + to_hex(ack->chunk_id) + ", sent " + to_hex(it->item->id));
    }
    const std::size_t n = it->item->frame_bytes();
    in_flight_bytes_ -= n;
    counters_.frame_bytes_acked.fetch_add(n);
    in_flight_.erase(it);
    progressed_ = true;
    return Status::ok();
  }

  Link link_;
  FrameQueue& queue_;
  FrameBuffers& buffers_;
  TokenBucket& bucket_;
  const PushOptions& options_;
  SharedCounters& counters_;
  AbortFlag& abort_;
  std::deque<InFlight> in_flight_;
  std::uint64_t in_flight_bytes_ = 0;
  std::uint32_t window_puts_ = 1;
  bool progressed_ = false;  // a frame was retired in this turn of loop()
  FrameRebuilder rebuilder_;
};

// Frames from the packer into the queue. The packer codes them into buffers
// it borrows from `buffers` (lend_frame), which become the PUT messages'
// frames as they are: no frame is copied on its way to the streams.
class QueueSink : public FrameSink {
 public:
  QueueSink(FrameQueue& queue, FrameBuffers& buffers, std::span<const PackSource> sources,
            const AbortFlag& abort, std::filesystem::path delta_from)
      : queue_(queue), buffers_(buffers), sources_(sources), abort_(abort),
        delta_from_(std::move(delta_from)) {}
  std::vector<std::byte> lend_frame(std::size_t bytes) override { return buffers_.take(bytes); }
  Status put_lent_frame(const ManifestFile& file, const ManifestChunk& chunk,
                        std::vector<std::byte>&& frame) override {
    const PackSource* src = find_pack_source(sources_, file.path);
    if (src == nullptr) return Status::internal("frame of " + file.path + " from no pushed source");
    auto item = std::make_unique<Outgoing>();
    item->id = chunk.id;
    item->origin = chunk_origin(src->path, file, chunk, delta_from_);
    item->frame_size = frame.size();
    Put put;
    put.frame = std::move(frame);
    item->put = std::move(put);
    item->buffers = &buffers_;
    return queue_.push(std::move(item), abort_);
  }
  Status put_frame(const ManifestFile& file, const ManifestChunk& chunk,
                   std::span<const std::byte> frame) override {
    std::vector<std::byte> copy = buffers_.take(frame.size());
    std::copy(frame.begin(), frame.end(), copy.begin());
    return put_lent_frame(file, chunk, std::move(copy));
  }

 private:
  FrameQueue& queue_;
  FrameBuffers& buffers_;
  std::span<const PackSource> sources_;
  const AbortFlag& abort_;
  std::filesystem::path delta_from_;
};

// Frame facts of the target's newest snapshot, so chunks it holds need not
// be encoded to be listed. Best effort: empty on any refusal.
Result<std::map<Digest, FrameFacts>> known_frames(Link& control) {
  std::map<Digest, FrameFacts> out;
  RETURN_IF_ERROR(control.ensure());
  auto listed = list_snapshots(
      control.hello().version, [&](Message m) { return control.request(std::move(m)); }, "the receiver");
  if (!listed)
    return listed.status().code() == Code::kCorruption ? Result<std::map<Digest, FrameFacts>>(out)
                                                       : listed.status();
  if (listed->empty()) return out;
  const SnapshotInfo* newest = &listed->front();
  for (const auto& s : *listed) {
    if (s.created_unix_seconds >= newest->created_unix_seconds) newest = &s;
  }
  GetManifest get;
  get.snapshot = newest->name;
  auto got = control.request(get);
  if (!got)
    return retry_on_new_connection(got.status()) ? Result<std::map<Digest, FrameFacts>>(got.status()) : out;
  const auto* data = std::get_if<ManifestData>(&*got);
  if (!data) return out;
  auto m = parse_manifest(data->manifest);
  if (!m) return out;
  for (const auto& f : m->files) {
    for (const auto& c : f.chunks) out.emplace(c.id, FrameFacts{c.codec, c.frame_bytes, c.base_id});
  }
  return out;
}

// The have/need answer for the packer: QUERY in pieces the receiver allows.
Result<std::vector<bool>> query_missing(Link& control, std::span<const Digest> ids) {
  std::vector<bool> need;
  need.reserve(ids.size());
  RETURN_IF_ERROR(control.ensure());
  const std::size_t piece =
      std::max<std::size_t>(1, std::min<std::size_t>(control.hello().max_query_ids, kMaxQueryIds));
  for (std::size_t i = 0; i < ids.size(); i += piece) {
    Query q;
    q.ids.assign(ids.begin() + i, ids.begin() + std::min(ids.size(), i + piece));
    ASSIGN_OR_RETURN(Message reply, control.request(q));
    const auto* qr = std::get_if<QueryReply>(&reply);
    if (!qr || qr->missing.size() != q.ids.size()) {
      return Status::corruption("receiver answered QUERY with " + std::string(message_name(reply)));
    }
    need.insert(need.end(), qr->missing.begin(), qr->missing.end());
  }
  return need;
}

// The delta base of a push to `target`: the caller's (pinned), chosen from
// the target's snapshots (source_dir set), or delta_from as given.
Result<DeltaChoice> delta_choice_at(Link& control, const PushOptions& options, const std::string& target) {
  DeltaChoice choice;
  if (options.pinned_delta && options.pinned_delta_target == target) {
    choice = *options.pinned_delta;
  } else if (options.source_dir.empty()) {
    choice.base_dir = options.delta_from;
  } else {
    ChainQuery q;
    q.host = manifest_host_name();
    q.job = options.job;
    q.source_dir = options.source_dir;
    q.delta_from = options.delta_from;
    if (options.delta.mode != DeltaMode::kOff || !q.delta_from.empty()) RETURN_IF_ERROR(control.ensure());
    choice = choose_delta_base(
        options.delta, q,
        receiver_snapshots_newest_first(
            control.hello().version, [&](Message m) { return control.request(std::move(m)); }, target));
  }
  if (options.on_delta_choice) options.on_delta_choice(target, choice);
  return choice;
}

Result<PushReport> push_to_target(std::span<const PackSource> sources, const PushOptions& options,
                                  const std::string& target, std::shared_ptr<const TlsContext> ctx,
                                  const std::string& snapshot, std::int64_t created_ns) {
  const auto start = Clock::now();
  SharedCounters counters;
  AbortFlag abort(options.should_stop);
  Link control(target, ctx, options, counters, abort);
  // The control connection comes up while the streams connect and the
  // packer reads and hashes its first window; the packer's first have/need
  // question waits for it (and fails with its error). Joined before
  // `control` goes.
  // The delta base comes first when it is chosen here: the packer pairs
  // chunks with it from the first window.
  ASSIGN_OR_RETURN(DeltaChoice choice, delta_choice_at(control, options, target));
  std::shared_future<Status> control_ready =
      std::async(std::launch::async, [&]() -> Status { return control.ensure(); }).share();
  // The packer's question thread and its coding thread share the control
  // connection: one request at a time.
  std::mutex control_mu;
  // The newest snapshot's frame facts list the chunks the target holds
  // without coding them. They are fetched when a held chunk first needs
  // them, so a push whose chunks are all new (most pushes of a training
  // run) spends no round trips on them before its first window is coded.
  std::optional<std::map<Digest, FrameFacts>> known;
  // Outlives every frame of the queue and the streams.
  FrameBuffers buffers(frame_room_bytes(options.chunk_bytes));
  FrameQueue queue(options.queue_bytes);
  TokenBucket bucket(options.bandwidth_bytes_per_s);
  const int n_streams = std::clamp(options.streams, 1, kMaxPushStreams);
  std::vector<std::unique_ptr<Stream>> streams;
  for (int i = 0; i < n_streams; ++i) {
    streams.push_back(
        std::make_unique<Stream>(target, ctx, queue, buffers, bucket, options, counters, abort));
  }
  std::vector<std::jthread> threads;
  for (auto& s : streams) threads.emplace_back([&s] { s->run(); });

  PackOptions po = pack_options_of(options, created_ns);
  po.delta_from = choice.base_dir;
  if (!options.source_dir.empty()) po.origin = choice.origin;
  po.need = [&](std::span<const Digest> ids) -> Result<std::vector<bool>> {
    RETURN_IF_ERROR(control_ready.get());
    std::lock_guard lock(control_mu);
    return query_missing(control, ids);
  };
  po.known_frame = [&](const Digest& id) -> std::optional<FrameFacts> {
    if (!control_ready.get()) return std::nullopt;  // asked only after need answered
    std::lock_guard lock(control_mu);
    if (!known) {
      auto fetched = known_frames(control);
      known = fetched ? std::move(*fetched) : std::map<Digest, FrameFacts>{};
    }
    auto it = known->find(id);
    if (it == known->end()) return std::nullopt;
    return it->second;
  };
  std::uint64_t skipped = 0;
  PackProgress packed;
  po.progress = [&](const PackProgress& p) {
    skipped = p.chunks_skipped;
    packed = p;
    if (!options.progress) return;
    PushProgress pp;
    pp.logical_done = p.logical_done;
    pp.logical_total = p.logical_total;
    pp.frame_bytes_acked = counters.frame_bytes_acked.load();
    pp.chunks_skipped = p.chunks_skipped;
    pp.target = target;
    options.progress(pp);
  };
  QueueSink sink(queue, buffers, sources, abort, po.delta_from);
  Result<Manifest> manifest = pack_files(sources, po, sink);
  if (manifest && !control_ready.get()) manifest = control_ready.get();  // nothing asked (no chunks)
  if (!manifest) abort.raise(manifest.status());
  queue.close();
  threads.clear();  // joins: every frame acknowledged, or aborted
  if (abort.raised()) return abort.status().with_context("push to " + target);
  if (options.before_commit) {
    RETURN_IF_ERROR(options.before_commit().with_context("commit of " + snapshot + " at " + target));
  }

  Commit commit;
  commit.snapshot = snapshot;
  commit.manifest = serialize_manifest(*manifest);
  if (commit.manifest.size() + kCommitFieldsReserveBytes > control.hello().max_message_bytes) {
    return Status::exhausted("manifest of " + std::to_string(commit.manifest.size()) +
                             " bytes exceeds the receiver's message limit at " + target);
  }
  auto committed = control.request(commit);
  if (!committed) return committed.status().with_context("commit of " + snapshot + " at " + target);
  control.finish();

  PushReport r;
  r.target = target;
  r.snapshot = snapshot;
  r.files = manifest->files.size();
  r.logical_bytes = manifest->logical_bytes();
  r.chunks_total = manifest->chunk_count();
  r.chunks_skipped = skipped;
  r.delta_chunks = packed.delta_chunks;
  r.delta_logical_bytes = packed.delta_logical_bytes;
  r.delta_frame_bytes = packed.delta_frame_bytes;
  r.origin = manifest->origin;
  r.delta_reason = choice.reason;
  r.chunks_sent = counters.chunks_sent.load();
  r.frame_bytes_sent = counters.frame_bytes_sent.load();
  r.frame_bytes_resent = counters.frame_bytes_resent.load();
  r.deltas_sent_in_full = counters.deltas_sent_in_full.load();
  r.wire_bytes_sent = counters.wire_out.load();
  r.wire_bytes_received = counters.wire_in.load();
  r.retries = counters.retries.load();
  r.frame_memory_bytes = buffers.allocated_bytes();
  r.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return r;
}

}  // namespace

PackOptions pack_options_of(const PushOptions& options, std::optional<std::int64_t> created_ns) {
  PackOptions po;
  po.chunk_bytes = options.chunk_bytes;
  po.zstd_level = options.zstd_level;
  po.pool = options.pool;
  po.engine = options.engine;
  po.job = options.job;
  po.step = options.step;
  po.created_ns = created_ns;
  po.delta_from = options.delta_from;
  return po;
}

std::string default_snapshot_name(const PushOptions& options, std::int64_t now_ns) {
  const std::string name = checkpoint_snapshot_name(options.job, options.source_name, options.step);
  // Without a job or without any step, nothing in the name tells two pushes
  // of a directory apart: the UTC time does.
  const bool has_digits = std::any_of(options.source_name.begin(), options.source_name.end(),
                                      [](char c) { return c >= '0' && c <= '9'; });
  if (!options.job.empty() && (options.step != 0 || has_digits)) return name;
  if (options.job.empty() && options.source_name.empty() && options.step != 0) return name;
  std::time_t t = static_cast<std::time_t>(now_ns / 1'000'000'000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y%m%dT%H%M%SZ", &tm);
  const std::string suffix = std::string("-") + buf;
  return name.substr(0, kMaxSnapshotNameBytes - suffix.size()) + suffix;
}

Result<std::vector<PushReport>> push(std::span<const PackSource> sources, const PushOptions& options) {
  if (options.targets.empty()) return Status::invalid_argument("push needs at least one target HOST:PORT");
  if (options.streams < 1 || options.streams > kMaxPushStreams) {
    return Status::invalid_argument("streams must be 1.." + std::to_string(kMaxPushStreams));
  }
  TlsConfig tls = options.tls;
  tls.role = TlsRole::kClient;
  ASSIGN_OR_RETURN(auto ctx, TlsContext::create(tls));
  const std::int64_t created_ns = options.created_ns.value_or(wall_ns());
  const std::string snapshot =
      options.snapshot.empty() ? default_snapshot_name(options, created_ns) : options.snapshot;
  RETURN_IF_ERROR(validate_snapshot_name(snapshot));

  std::vector<PushReport> reports;
  Status last;
  std::uint64_t failovers = 0;
  for (const auto& target : options.targets) {
    if (options.should_stop && options.should_stop())
      return Status::aborted("push of " + snapshot + " cancelled");
    auto r = push_to_target(sources, options, target, ctx, snapshot, created_ns);
    if (r) {
      r->failovers = failovers;
      reports.push_back(std::move(r).value());
      if (!options.fan_out) return reports;
      continue;
    }
    if (options.fan_out) return r.status();
    last = r.status();
    ++failovers;
  }
  if (!reports.empty()) return reports;
  return last;
}

}  // namespace ferry::replication
