// io_bench.cc: `ferry-bench io`. Sequential O_DIRECT read and sequential
// O_DIRECT write + fsync of one file through the io_uring engine, the
// thread-pool fallback and fio (ioengine=io_uring, same block size and queue
// depth); the same by plain pread/pwrite from a few threads, with O_DIRECT
// and through the page cache, the way ferry's own files are read (the
// packer) and written (restore, the store); and loopback TCP throughput
// through both engines and iperf3. Reports GB/s and
// process CPU seconds per GB (io_uring's kernel workers and the fallback's
// threads are threads of this process, so both are counted), as ratios to
// the baseline measured in the same run.
#include <fcntl.h>
#include <gflags/gflags.h>
#include <sys/socket.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "base/aligned_bytes.h"
#include "base/direct_file.h"
#include "base/posix_file.h"
#include "bench/bench.h"
#include "io/engine.h"
#include "tests/testing/buffer_pool.h"
#include "tests/testing/io_file.h"

DEFINE_string(io_dir, "/var/tmp", "ferry-bench io: directory for the test file (a real disk, not tmpfs)");
DEFINE_uint64(io_file_mib, 1024, "ferry-bench io: test file size in MiB");
DEFINE_uint64(io_block_kib, 1024, "ferry-bench io: block size in KiB (files and sockets)");
DEFINE_uint32(io_depth, 16, "ferry-bench io: queue depth");
DEFINE_uint64(io_net_mib, 4096, "ferry-bench io: bytes per loopback TCP run, in MiB");
DEFINE_int32(io_sock_buf_kib, 0,
             "ferry-bench io: SO_SNDBUF/SO_RCVBUF in KiB for both ends (iperf3 -w); 0: kernel autotuning");
DEFINE_bool(io_baselines, true, "ferry-bench io: also run fio and iperf3");
DEFINE_bool(io_recv_multishot, true,
            "ferry-bench io: io_uring recvs through multishot receive and a provided buffer ring "
            "(false: one recv request per operation)");
DEFINE_bool(io_files, true, "ferry-bench io: run the file tests (false: sockets only)");
DEFINE_uint32(io_pread_threads, 0,
              "ferry-bench io: threads of the plain pread/pwrite rows (the packer's way of reading: "
              "each thread reads the next block into its own buffer); 0: one per core");
DEFINE_bool(io_net_split, false,
            "ferry-bench io: also pair each engine's sender and receiver with a plain blocking "
            "recv/send loop, to see which side limits the loopback rate");
DECLARE_string(json_out);  // bench/main.cc

namespace ferry::bench {
namespace {

using io::Backend;
using io::Completion;
using io::Op;

struct Row {
  std::string test;
  std::string runner;
  double seconds = 0;
  double bytes = 0;
  double cpu_seconds = 0;
  std::string error;
  double gbps() const { return seconds > 0 ? bytes / seconds / 1e9 : 0; }
  double cpu_per_gb() const { return bytes > 0 ? cpu_seconds / (bytes / 1e9) : 0; }
};

std::unique_ptr<io::Engine> engine_for(Backend b, bool recv_multishot = true) {
  io::EngineOptions o;
  o.backend = b;
  o.queue_depth = FLAGS_io_depth + 1;  // + the closing fsync
  o.log_choice = false;
  o.single_thread = true;  // each engine here lives and dies in one thread
  o.recv_multishot = recv_multishot && FLAGS_io_recv_multishot;
  auto e = io::make_engine(o);
  if (!e.is_ok()) {
    std::fprintf(stderr, "ferry-bench io: %s\n", e.status().to_string().c_str());
    return nullptr;
  }
  return std::move(e).value();
}

const char* runner_name(Backend b) { return b == Backend::kUring ? "ferry io_uring" : "ferry threads"; }

// Sequential transfer of the whole file with `depth` blocks in flight.
Status run_file(io::Engine& engine, const io::File& file, io::BufferPool& pool, bool write,
                std::uint64_t file_bytes) {
  std::size_t block = pool.buffer_bytes();
  std::uint64_t next = 0, done = 0;
  std::vector<Completion> out(FLAGS_io_depth);
  std::vector<std::size_t> buf_of(FLAGS_io_depth + 1);
  while (done < file_bytes) {
    while (next < file_bytes) {
      auto b = pool.acquire();
      if (!b) break;
      auto buf = pool.buffer(*b);
      Op op = write ? Op::write(file.ref(), buf, next, *b) : Op::read(file.ref(), buf, next, *b);
      RETURN_IF_ERROR(engine.submit(op));
      next += block;
    }
    ASSIGN_OR_RETURN(std::size_t n, engine.wait(out, 1));
    for (std::size_t i = 0; i < n; ++i) {
      RETURN_IF_ERROR(out[i].status);
      if (out[i].bytes != block) return Status::io_error("short transfer in the benchmark file");
      done += out[i].bytes;
      pool.release(out[i].tag);
    }
  }
  if (write) {
    RETURN_IF_ERROR(engine.submit(Op::fsync(file.ref(), 0)));
    ASSIGN_OR_RETURN(Completion c, engine.wait_one());
    RETURN_IF_ERROR(c.status);
  }
  return Status::ok();
}

Row file_row(Backend backend, const std::string& path, bool write, std::uint64_t file_bytes) {
  Row r{write ? "seq write+fsync" : "seq read", runner_name(backend)};
  auto engine = engine_for(backend);
  if (!engine) {
    r.error = "engine unavailable";
    return r;
  }
  auto file = io::File::open(path, {.create = write, .direct = true});
  auto pool = io::BufferPool::create(FLAGS_io_block_kib << 10, FLAGS_io_depth);
  if (!file.is_ok() || !pool.is_ok()) {
    r.error = (!file.is_ok() ? file.status() : pool.status()).to_string();
    return r;
  }
  if (write) {
    for (std::size_t i = 0; i < pool->count(); ++i) {
      auto b = pool->buffer(i);
      for (std::size_t j = 0; j < b.size(); ++j) b[j] = std::byte(j * 131 + i);
    }
  }
  iovec region = pool->region();
  (void)engine->register_buffers({&region, 1});
  (void)engine->register_file(file->fd());
  double t0 = mono_seconds(), c0 = process_cpu_seconds();
  Status st = run_file(*engine, *file, *pool, write, file_bytes);
  r.seconds = mono_seconds() - t0;
  r.cpu_seconds = process_cpu_seconds() - c0;
  r.bytes = static_cast<double>(file_bytes);
  (void)engine->unregister_file(file->fd());
  if (!st.is_ok()) r.error = st.to_string();
  return r;
}

// Sequential transfer of the whole file by plain blocking calls from
// --io_pread_threads threads, each taking the next block into its own buffer,
// as the packer's pool threads read chunks: pread, or pwrite with one fsync
// at the end, with O_DIRECT or through the page cache (as restore and the
// store write today). A buffered read starts cold: the file's cached pages
// are dropped first (POSIX_FADV_DONTNEED).
Row plain_row(const std::string& path, bool write, bool direct, std::uint64_t file_bytes) {
  unsigned threads = FLAGS_io_pread_threads ? FLAGS_io_pread_threads : std::thread::hardware_concurrency();
  Row r{write ? "seq write+fsync" : "seq read", std::string(write ? "pwrite" : "pread") +
                                                    (direct ? " O_DIRECT (" : " buffered (") +
                                                    std::to_string(threads) + " threads)"};
  const std::size_t block = FLAGS_io_block_kib << 10;
  auto reader = DirectReadFile::open(path, direct);
  auto writer = open_fd(path, O_WRONLY | (direct ? O_DIRECT : 0));
  if (!reader.is_ok() || !writer.is_ok()) {
    r.error = (!reader.is_ok() ? reader.status() : writer.status()).to_string();
    return r;
  }
  if (!write && !direct) (void)::posix_fadvise(reader->fd(), 0, 0, POSIX_FADV_DONTNEED);
  std::atomic<std::uint64_t> next{0};
  std::vector<Status> status(threads);
  double t0 = mono_seconds(), c0 = process_cpu_seconds();
  {
    std::vector<std::jthread> workers;
    for (unsigned t = 0; t < threads; ++t) {
      workers.emplace_back([&, t] {
        AlignedBytes buf;
        buf.take(block);
        for (std::byte& b : buf.view()) b = std::byte(t * 131 + 7);
        for (std::uint64_t at; status[t].is_ok() && (at = next.fetch_add(block)) < file_bytes;) {
          std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(block, file_bytes - at));
          status[t] = write ? pwrite_all(writer->get(), buf.view().first(n), at, path)
                            : reader->read(buf.padded(), n, at);
        }
      });
    }
  }
  Status st = Status::ok();
  for (const Status& s : status) {
    if (!s.is_ok()) st = s;
  }
  if (st.is_ok() && write) st = fsync_fd(writer->get(), path);
  r.seconds = mono_seconds() - t0;
  r.cpu_seconds = process_cpu_seconds() - c0;
  r.bytes = static_cast<double>(file_bytes);
  if (!st.is_ok()) r.error = st.to_string();
  return r;
}

std::string run_command(const std::string& cmd) {
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return out;
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  ::pclose(p);
  return out;
}

Row fio_row(const std::string& path, bool write, std::uint64_t file_bytes) {
  Row r{write ? "seq write+fsync" : "seq read", "fio io_uring"};
  std::string cmd = "fio --name=ferry --filename=" + path + " --rw=" + (write ? "write" : "read") +
                    " --bs=" + std::to_string(FLAGS_io_block_kib) +
                    "k --iodepth=" + std::to_string(FLAGS_io_depth) +
                    " --ioengine=io_uring --direct=1 --size=" + std::to_string(file_bytes >> 20) + "m" +
                    (write ? " --end_fsync=1" : "") + " --output-format=json 2>/dev/null";
  std::string out = run_command(cmd);
  auto j = nlohmann::json::parse(out, nullptr, false);
  if (j.is_discarded() || !j.contains("jobs")) {
    r.error = "fio failed: " + cmd;
    return r;
  }
  const auto& job = j["jobs"][0];
  const auto& side = job[write ? "write" : "read"];
  r.bytes = side["io_bytes"].get<double>();
  // job_runtime (ms) is the time the job ran, fsync included.
  r.seconds = job["job_runtime"].get<double>() / 1e3;
  r.cpu_seconds = (job["usr_cpu"].get<double>() + job["sys_cpu"].get<double>()) / 100.0 * r.seconds;
  return r;
}

// The other end of a split run: a blocking loop of 1-block send() or recv()
// calls, as iperf3 does.
Status plain_send(int fd, std::size_t block, std::uint64_t total) {
  std::vector<std::byte> buf(block, std::byte{0x5a});
  for (std::uint64_t sent = 0; sent < total;) {
    ssize_t n = ::send(fd, buf.data(), std::min<std::uint64_t>(block, total - sent), MSG_NOSIGNAL);
    if (n <= 0) return Status::from_errno(errno, "plain send");
    sent += static_cast<std::uint64_t>(n);
  }
  return Status::ok();
}

Status plain_recv(int fd, std::size_t block, std::uint64_t total) {
  std::vector<std::byte> buf(block);
  for (std::uint64_t got = 0; got < total;) {
    ssize_t n = ::recv(fd, buf.data(), block, 0);
    if (n < 0) return Status::from_errno(errno, "plain recv");
    if (n == 0) return Status::io_error("plain recv: early end of stream");
    got += static_cast<std::uint64_t>(n);
  }
  return Status::ok();
}

// One sender and one receiver thread, each with its own engine, like
// iperf3's client and server processes. With `plain_peer` set, that side
// (sender or receiver) is a blocking loop instead of an engine.
enum class PlainPeer { kNone, kSender, kReceiver };

Row net_row(Backend backend, std::uint64_t total, PlainPeer plain_peer = PlainPeer::kNone,
            bool recv_multishot = true) {
  std::string runner = runner_name(backend);
  if (!recv_multishot) runner += " (single-shot recv)";
  if (plain_peer == PlainPeer::kSender) runner = "plain send -> " + runner + " recv";
  if (plain_peer == PlainPeer::kReceiver) runner += " send -> plain recv";
  Row r{"tcp loopback", runner};
  auto addr = io::SocketAddress::parse("127.0.0.1:0");
  auto listener = io::Socket::listen(*addr, io::kListenBacklog);
  if (!listener.is_ok()) {
    r.error = listener.status().to_string();
    return r;
  }
  io::SocketAddress bound = *listener->local_address();
  std::size_t block = FLAGS_io_block_kib << 10;
  Status server_status;
  double t0 = mono_seconds(), c0 = process_cpu_seconds();
  std::thread server([&] {
    auto engine = engine_for(backend, recv_multishot);
    if (!engine) return;
    if (plain_peer == PlainPeer::kReceiver) {
      int fd = ::accept4(listener->fd(), nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) {
        server_status = Status::from_errno(errno, "accept");
        return;
      }
      io::Socket conn = io::Socket::adopt(fd);
      server_status = plain_recv(conn.fd(), block, total);
      return;
    }
    Completion a = [&] {
      (void)engine->submit(Op::accept(*listener, 0, 10'000));
      auto c = engine->wait_one();
      return c.is_ok() ? *c : Completion{0, io::OpKind::kAccept, c.status()};
    }();
    if (!a.status.is_ok()) {
      server_status = a.status;
      return;
    }
    io::Socket conn = io::Socket::adopt(a.fd);
    if (FLAGS_io_sock_buf_kib > 0) (void)conn.set_buffer_bytes(0, FLAGS_io_sock_buf_kib << 10);
    // Several whole-block receives queued back to back (the engine keeps
    // them in order), as a receiver of fixed-size frames would.
    std::vector<std::byte> buf(block * FLAGS_io_depth);
    std::uint64_t got = 0, asked = 0;
    std::vector<Completion> out(FLAGS_io_depth);
    while (got < total) {
      while (asked < total && engine->outstanding() < FLAGS_io_depth) {
        std::size_t slot = (asked / block) % FLAGS_io_depth;
        (void)engine->submit(Op::recv_all(conn, {buf.data() + slot * block, block}, 1, 10'000));
        asked += block;
      }
      auto n = engine->wait(out, 1);
      if (!n.is_ok()) {
        server_status = n.status();
        return;
      }
      for (std::size_t i = 0; i < *n; ++i) {
        if (!out[i].status.is_ok() || out[i].bytes == 0) {
          server_status = out[i].status.is_ok() ? Status::io_error("early end of stream") : out[i].status;
          return;
        }
        got += out[i].bytes;
      }
    }
  });
  Status st = [&]() -> Status {
    auto engine = engine_for(backend);
    if (!engine) return Status::unavailable("engine");
    ASSIGN_OR_RETURN(io::Socket s, io::Socket::tcp_for(bound));
    if (FLAGS_io_sock_buf_kib > 0) (void)s.set_buffer_bytes(FLAGS_io_sock_buf_kib << 10, 0);
    RETURN_IF_ERROR(engine->submit(Op::connect(s, bound, 0, 10'000)));
    ASSIGN_OR_RETURN(Completion c, engine->wait_one());
    RETURN_IF_ERROR(c.status);
    if (plain_peer == PlainPeer::kSender) return plain_send(s.fd(), block, total);
    std::vector<std::byte> buf(block, std::byte{0x5a});
    std::uint64_t queued = 0, sent = 0;
    std::vector<Completion> out(FLAGS_io_depth);
    while (sent < total) {
      while (queued < total && engine->outstanding() < FLAGS_io_depth) {
        RETURN_IF_ERROR(engine->submit(Op::send(s, buf, 1, 10'000)));
        queued += block;
      }
      ASSIGN_OR_RETURN(std::size_t n, engine->wait(out, 1));
      for (std::size_t i = 0; i < n; ++i) {
        RETURN_IF_ERROR(out[i].status);
        sent += out[i].bytes;
      }
    }
    return Status::ok();
  }();
  server.join();
  r.seconds = mono_seconds() - t0;
  r.cpu_seconds = process_cpu_seconds() - c0;
  r.bytes = static_cast<double>(total);
  if (!st.is_ok()) r.error = st.to_string();
  if (!server_status.is_ok()) r.error += server_status.to_string();
  return r;
}

Row iperf_row(std::uint64_t total) {
  Row r{"tcp loopback", "iperf3"};
  int port = 20000 + static_cast<int>(::getpid() % 20000);
  std::string server = "iperf3 -s -1 -D -p " + std::to_string(port) + " >/dev/null 2>&1";
  if (std::system(server.c_str()) != 0) {
    r.error = "iperf3 server failed to start";
    return r;
  }
  std::string out;
  nlohmann::json j;
  for (int attempt = 0; attempt < 20; ++attempt) {  // the daemon needs a moment to listen
    ::usleep(100'000);
    out =
        run_command("iperf3 -c 127.0.0.1 -p " + std::to_string(port) + " -n " + std::to_string(total >> 20) +
                    "M -l " + std::to_string(FLAGS_io_block_kib) + "K" +
                    (FLAGS_io_sock_buf_kib > 0 ? " -w " + std::to_string(FLAGS_io_sock_buf_kib) + "K" : "") +
                    " -J 2>/dev/null");
    j = nlohmann::json::parse(out, nullptr, false);
    if (!j.is_discarded() && j.contains("end") && !j.contains("error")) break;
  }
  if (j.is_discarded() || !j.contains("end") || j.contains("error")) {
    r.error = "iperf3 failed";
    return r;
  }
  const auto& end = j["end"];
  const auto& recv = end["sum_received"];
  r.bytes = recv["bytes"].get<double>();
  r.seconds = recv["seconds"].get<double>();
  const auto& cpu = end["cpu_utilization_percent"];
  r.cpu_seconds = (cpu["host_total"].get<double>() + cpu["remote_total"].get<double>()) / 100.0 * r.seconds;
  return r;
}

}  // namespace

FERRY_BENCH(io, "file and socket I/O: io_uring engine, thread fallback, fio, iperf3") {
  (void)args;
  std::uint64_t file_bytes = FLAGS_io_file_mib << 20;
  std::uint64_t net_bytes = FLAGS_io_net_mib << 20;
  struct statvfs vfs {};
  if (::statvfs(FLAGS_io_dir.c_str(), &vfs) != 0 ||
      static_cast<std::uint64_t>(vfs.f_bavail) * vfs.f_frsize < 2 * file_bytes) {
    std::fprintf(stderr, "ferry-bench io: %s lacks room for a %llu MiB file (or is missing)\n",
                 FLAGS_io_dir.c_str(), static_cast<unsigned long long>(FLAGS_io_file_mib));
    return 1;
  }
  std::string path = FLAGS_io_dir + "/ferry-bench-io." + std::to_string(::getpid());
  std::printf(
      "ferry-bench io: file %llu MiB in %s, block %llu KiB, queue depth %u, "
      "O_DIRECT but the buffered rows; tcp %llu MiB over 127.0.0.1\n",
      static_cast<unsigned long long>(FLAGS_io_file_mib), FLAGS_io_dir.c_str(),
      static_cast<unsigned long long>(FLAGS_io_block_kib), FLAGS_io_depth,
      static_cast<unsigned long long>(FLAGS_io_net_mib));
  std::fflush(stdout);

  std::vector<Row> rows;
  // Lay the file out first so every write run overwrites allocated blocks,
  // as fio's does.
  Row layout;
  if (FLAGS_io_files) layout = file_row(Backend::kThreads, path, true, file_bytes);
  if (!layout.error.empty()) {
    std::fprintf(stderr, "ferry-bench io: %s\n", layout.error.c_str());
    ::unlink(path.c_str());
    return 1;
  }
  for (bool write : {true, false}) {
    if (!FLAGS_io_files) break;
    rows.push_back(file_row(Backend::kUring, path, write, file_bytes));
    rows.push_back(file_row(Backend::kThreads, path, write, file_bytes));
    rows.push_back(plain_row(path, write, true, file_bytes));
    rows.push_back(plain_row(path, write, false, file_bytes));
    if (FLAGS_io_baselines) rows.push_back(fio_row(path, write, file_bytes));
  }
  ::unlink(path.c_str());
  rows.push_back(net_row(Backend::kUring, net_bytes));
  if (FLAGS_io_recv_multishot) {
    rows.push_back(net_row(Backend::kUring, net_bytes, PlainPeer::kNone, false));
  }
  rows.push_back(net_row(Backend::kThreads, net_bytes));
  if (FLAGS_io_net_split) {
    for (Backend b : {Backend::kUring, Backend::kThreads}) {
      rows.push_back(net_row(b, net_bytes, PlainPeer::kReceiver));
      rows.push_back(net_row(b, net_bytes, PlainPeer::kSender));
    }
  }
  if (FLAGS_io_baselines) rows.push_back(iperf_row(net_bytes));

  std::printf("\n| test | runner | GB/s | CPU s/GB | GB/s vs baseline | CPU/GB vs ferry threads |\n");
  std::printf("|---|---|---:|---:|---:|---:|\n");
  nlohmann::json results = nlohmann::json::array();
  int failures = 0;
  for (const Row& r : rows) {
    const Row* base = nullptr;
    const Row* threads = nullptr;
    for (const Row& o : rows) {
      if (o.test != r.test) continue;
      if (o.runner == "fio io_uring" || o.runner == "iperf3") base = &o;
      if (o.runner == "ferry threads") threads = &o;
    }
    if (!r.error.empty()) {
      ++failures;
      std::printf("| %s | %s | failed: %s | | | |\n", r.test.c_str(), r.runner.c_str(), r.error.c_str());
      results.push_back({{"test", r.test}, {"runner", r.runner}, {"error", r.error}});
      continue;
    }
    double vs_base = base && base->error.empty() && base->gbps() > 0 ? r.gbps() / base->gbps() : 0;
    double vs_thr = threads && threads->error.empty() && threads->cpu_per_gb() > 0
                        ? r.cpu_per_gb() / threads->cpu_per_gb()
                        : 0;
    std::printf("| %s | %s | %.2f | %.3f | %.2fx | %.2fx |\n", r.test.c_str(), r.runner.c_str(), r.gbps(),
                r.cpu_per_gb(), vs_base, vs_thr);
    results.push_back({{"test", r.test},
                       {"runner", r.runner},
                       {"gb_per_s", r.gbps()},
                       {"cpu_s_per_gb", r.cpu_per_gb()},
                       {"seconds", r.seconds},
                       {"bytes", r.bytes},
                       {"vs_baseline", vs_base},
                       {"cpu_vs_threads", vs_thr}});
  }
  if (!FLAGS_json_out.empty()) {
    std::ofstream(FLAGS_json_out) << nlohmann::json{
        {"bench", "io"},
        {"file_mib", FLAGS_io_file_mib},
        {"block_kib", FLAGS_io_block_kib},
        {"queue_depth", FLAGS_io_depth},
        {"net_mib", FLAGS_io_net_mib},
        {"results", results}}.dump(2);
  }
  return failures == 0 ? 0 : 1;
}

}  // namespace ferry::bench
