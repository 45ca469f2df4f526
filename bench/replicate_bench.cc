// replicate_bench.cc: `ferry-bench replicate`: one real checkpoint shipped
// to a DR receiver on loopback by ferry (in-process push() to an in-process
// Receiver over mTLS, local store with fsync) beside two baselines, in the
// same run, on the same page-cached data:
//   (a) tar | zstd -1 -T0 | openssl s_client  ->  openssl s_server | zstd -d | tar x
//       (TLS 1.3, mutual certificates from the same CA as ferry's);
//   (b) restic backup to a local repository (its "wire" is the repository's
//       growth; Debian ships no rest-server, so restic has no delayed row).
// Every networked case goes through a LinkSimulator relay running in a child
// process (so its CPU is charged to nobody), with 0 ms or --rep_rtt_ms/2
// one-way delay; the relay counts the bytes on the wire both ways.
// CPU seconds, each end apart (on a real link they are two hosts): ferry's
// sender = this process's CPU during push(); ferry's receiver runs in a child
// process that reports the CPU it spent between listening and stopping; the
// pipeline's sending half = rusage of tar | zstd | s_client, its receiving
// half = rusage of s_server | zstd -d | tar x.
#include <fcntl.h>
#include <gflags/gflags.h>
#include <netinet/in.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "base/unique_fd.h"
#include "bench/bench.h"
#include "codec/packer.h"
#include "replication/cert_gen.h"
#include "replication/receiver.h"
#include "replication/sender.h"
#include "store/local_store.h"
#include "tests/testing/link_simulator.h"

DECLARE_string(json_out);  // bench/main.cc

DEFINE_string(rep_corpus, "", "corpus directory to copy as the checkpoint (default: $FERRY_CORPUS_DIR)");
DEFINE_string(rep_dir, "", "use this directory as the checkpoint as is (instead of a corpus copy)");
DEFINE_string(rep_work, "", "parent of the bench's temporary directory (default: $TMPDIR or /tmp)");
DEFINE_int32(rep_rtt_ms, 20, "round-trip time of the delayed rows (half of it each way); 0: no delayed rows");
DEFINE_int32(rep_streams, ferry::replication::kDefaultPushStreams, "ferry push streams");
DEFINE_string(rep_tools, "ferry,openssl,restic", "comma-separated cases to run");
DEFINE_int32(rep_runs, 3, "runs of every case, interleaved; the table shows each case's median run");
DEFINE_bool(rep_keep, false, "keep the temporary directory");
// The relay child: `ferry-bench replicate --rep_relay_target=HOST:PORT`.
DEFINE_string(rep_relay_target, "", "internal: run only a delay relay to this target");
DEFINE_int32(rep_relay_delay_ms, 0, "internal: the relay's one-way delay");
// The receiver child: `ferry-bench replicate --rep_serve_store=DIR ...`.
DEFINE_string(rep_serve_store, "", "internal: run only a receiver over this store directory");
DEFINE_string(rep_serve_ca, "", "internal: the receiver child's CA file");
DEFINE_string(rep_serve_cert, "", "internal: the receiver child's certificate");
DEFINE_string(rep_serve_key, "", "internal: the receiver child's key");

namespace ferry::bench {
namespace {

namespace fs = std::filesystem;
namespace rep = ferry::replication;

constexpr const char* kHostName = "bench";
constexpr const char* kResticPassword = "ferry-bench";
// Longest the bench waits for openssl s_server to listen.
constexpr double kListenWaitSeconds = 10;

// Page faults of this process so far (the sender's, in a ferry row): each
// is a page the kernel maps and zeroes, CPU the push pays for.
long minor_faults() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  return ru.ru_minflt;
}

double rusage_seconds(const rusage& ru) {
  auto secs = [](const timeval& t) { return static_cast<double>(t.tv_sec) + t.tv_usec / 1e6; };
  return secs(ru.ru_utime) + secs(ru.ru_stime);
}

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// A child process with optional pipes to its stdin and from its stdout.
struct Child {
  pid_t pid = -1;
  UniqueFd in;   // write end of its stdin (when piped)
  UniqueFd out;  // read end of its stdout (when piped)
};

// With own_group the child leads a new process group, so that a pipeline
// that hangs can be killed whole.
Result<Child> spawn(const std::vector<std::string>& argv, bool pipe_in, bool pipe_out,
                    const std::vector<std::string>& env_extra = {}, bool own_group = false) {
  int in_fds[2] = {-1, -1}, out_fds[2] = {-1, -1};
  if (pipe_in && ::pipe2(in_fds, O_CLOEXEC) != 0)
    return Status::io_error(std::string("pipe: ") + std::strerror(errno));
  if (pipe_out && ::pipe2(out_fds, O_CLOEXEC) != 0)
    return Status::io_error(std::string("pipe: ") + std::strerror(errno));
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::vector<std::string> env_store;
  for (char** e = environ; *e; ++e) env_store.emplace_back(*e);
  for (const auto& e : env_extra) env_store.push_back(e);
  std::vector<char*> env;
  for (auto& e : env_store) env.push_back(e.data());
  env.push_back(nullptr);
  // posix_spawn, not fork: a fork write-protects every page of this
  // process (the sender's warm buffers) until the child execs, so the next
  // push would take a page fault at the first write to each of them, a cost
  // no real push pays (measured on the full corpus: about 34,000 faults a
  // push).
  int devnull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, pipe_in ? in_fds[0] : devnull, 0);
  if (pipe_out) posix_spawn_file_actions_adddup2(&fa, out_fds[1], 1);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  if (own_group) {
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&attr, 0);
  }
  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, args[0], &fa, &attr, args.data(), env.data());
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&fa);
  ::close(devnull);
  if (rc != 0) return Status::io_error("spawn " + argv[0] + ": " + std::strerror(rc));
  Child c;
  c.pid = pid;
  if (pipe_in) {
    ::close(in_fds[0]);
    c.in.reset(in_fds[1]);
  }
  if (pipe_out) {
    ::close(out_fds[1]);
    c.out.reset(out_fds[0]);
  }
  return c;
}

struct Exit {
  int status = 0;
  double cpu_seconds = 0;
};
Exit wait_child(pid_t pid) {
  Exit e;
  rusage ru{};
  while (::wait4(pid, &e.status, 0, &ru) < 0 && errno == EINTR) {
  }
  e.cpu_seconds = rusage_seconds(ru);
  return e;
}

std::string read_line(int fd) {
  std::string line;
  char c;
  while (::read(fd, &c, 1) == 1 && c != '\n') line += c;
  return line;
}

Result<std::string> run_capture(const std::string& cmd, const std::vector<std::string>& env = {}) {
  auto child = spawn({"/bin/bash", "-c", cmd}, false, true, env);
  if (!child) return child.status();
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = ::read(child->out.get(), buf, sizeof buf)) > 0;)
    out.append(buf, static_cast<std::size_t>(n));
  Exit e = wait_child(child->pid);
  if (!WIFEXITED(e.status) || WEXITSTATUS(e.status) != 0) {
    return Status::io_error("command failed (status " + std::to_string(e.status) + "): " + cmd);
  }
  return out;
}

// Kills a pipeline's process group and reaps it, unless it was waited for.
struct GroupGuard {
  pid_t pid;
  ~GroupGuard() {
    if (pid > 0) {
      ::kill(-pid, SIGKILL);
      wait_child(pid);
    }
  }
};

// The delay relay in its own process: its CPU is nobody's cost.
class RelayProcess {
 public:
  static Result<RelayProcess> start(const std::string& target, int delay_ms) {
    auto child = spawn({"/proc/self/exe", "replicate", "--rep_relay_target=" + target,
                        "--rep_relay_delay_ms=" + std::to_string(delay_ms)},
                       true, true);
    if (!child) return child.status();
    RelayProcess r;
    r.child_ = std::move(*child);
    std::string port = read_line(r.child_.out.get());
    if (port.empty()) return Status::io_error("the relay child did not start (target " + target + ")");
    r.address_ = "127.0.0.1:" + port;
    return r;
  }
  RelayProcess() = default;
  RelayProcess(RelayProcess&&) = default;
  RelayProcess& operator=(RelayProcess&&) = delete;
  ~RelayProcess() {
    if (child_.out.get() >= 0) finish();  // not moved from, not finished
  }
  const std::string& address() const { return address_; }
  // Stops the relay; the bytes it carried, both directions.
  std::uint64_t finish() {
    child_.in.reset();
    std::string counts = read_line(child_.out.get());
    child_.out.reset();
    wait_child(child_.pid);
    return std::strtoull(counts.c_str(), nullptr, 10);
  }

 private:
  Child child_;
  std::string address_;
};

// The DR receiver in its own process, so that its CPU is counted apart from
// the sender's, as it would be on a real DR host.
class ReceiverProcess {
 public:
  static Result<ReceiverProcess> start(const fs::path& store, const rep::CertSet& certs) {
    auto child =
        spawn({"/proc/self/exe", "replicate", "--rep_serve_store=" + store.string(),
               "--rep_serve_ca=" + certs.ca_cert.string(), "--rep_serve_cert=" + certs.receiver_cert.string(),
               "--rep_serve_key=" + certs.receiver_key.string()},
              true, true);
    if (!child) return child.status();
    ReceiverProcess r;
    r.child_ = std::move(*child);
    std::string port = read_line(r.child_.out.get());
    if (port.empty())
      return Status::io_error("the receiver child did not start (store " + store.string() + ")");
    r.address_ = "127.0.0.1:" + port;
    return r;
  }
  ReceiverProcess() = default;
  ReceiverProcess(ReceiverProcess&&) = default;
  ReceiverProcess& operator=(ReceiverProcess&&) = delete;
  ~ReceiverProcess() {
    if (child_.out.get() >= 0) finish();
  }
  const std::string& address() const { return address_; }
  // Stops the receiver; the CPU seconds it spent while it listened.
  double finish() {
    child_.in.reset();
    std::string cpu = read_line(child_.out.get());
    child_.out.reset();
    wait_child(child_.pid);
    return std::strtod(cpu.c_str(), nullptr);
  }

 private:
  Child child_;
  std::string address_;
};

int serve_main() {
  StoreOptions so;
  so.log = [](std::string_view) {};
  auto store = open_local_store(FLAGS_rep_serve_store, so);
  if (!store) {
    std::fprintf(stderr, "receiver: %s\n", store.status().to_string().c_str());
    return 1;
  }
  rep::ReceiverOptions ro;
  ro.tls.ca_file = FLAGS_rep_serve_ca;
  ro.tls.cert_file = FLAGS_rep_serve_cert;
  ro.tls.key_file = FLAGS_rep_serve_key;
  ro.log = [](std::string_view) {};
  rep::Receiver rx(**store, ro);
  if (Status st = rx.start(); !st) {
    std::fprintf(stderr, "receiver: %s\n", st.to_string().c_str());
    return 1;
  }
  const double cpu0 = process_cpu_seconds();
  std::printf("%u\n", rx.port());
  std::fflush(stdout);
  char c;
  while (::read(0, &c, 1) > 0) {
  }
  rx.stop();
  std::printf("%.6f\n", process_cpu_seconds() - cpu0);
  std::fflush(stdout);
  return 0;
}

int relay_main() {
  testing::LinkOptions o;
  o.target = FLAGS_rep_relay_target;
  o.delay_ms = FLAGS_rep_relay_delay_ms;
  testing::LinkSimulator link(o);
  if (Status st = link.start(); !st) {
    std::fprintf(stderr, "relay: %s\n", st.to_string().c_str());
    return 1;
  }
  std::printf("%u\n", link.port());
  std::fflush(stdout);
  char c;
  while (::read(0, &c, 1) > 0) {
  }
  auto n = link.counters();
  link.stop();
  std::printf("%llu\n", static_cast<unsigned long long>(n.bytes_to_target + n.bytes_to_client));
  return 0;
}

struct Row {
  std::string tool;
  int rtt_ms = 0;
  bool ok = false;
  std::string note;
  std::uint64_t logical = 0;
  double seconds = 0;
  std::uint64_t wire = 0;
  double cpu = 0;  // cpu_send + cpu_recv
  double cpu_send = 0, cpu_recv = 0;
  long send_faults = -1;  // the sender's page faults, where it runs in this process
  double gbps() const { return seconds > 0 ? logical / seconds / 1e9 : 0; }
  // CPU seconds per GB of checkpoint (logical bytes).
  double send_cpu_per_gb() const { return logical ? cpu_send / (logical / 1e9) : 0; }
  double recv_cpu_per_gb() const { return logical ? cpu_recv / (logical / 1e9) : 0; }
};

// Marks a row failed with the reason, for the table.
Row failed(Row row, std::string why) {
  row.ok = false;
  row.note = std::move(why);
  return row;
}

std::uint64_t tree_bytes(const fs::path& root) {
  std::uint64_t n = 0;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(root, ec); !ec && it != fs::recursive_directory_iterator();
       ++it) {
    if (it->is_regular_file(ec)) n += it->file_size(ec);
  }
  return n;
}

// Waits until something listens on 127.0.0.1:port (read from /proc/net/tcp,
// so no connection is spent: s_server accepts exactly one).
bool wait_listening(std::uint16_t port) {
  char want[16];
  std::snprintf(want, sizeof want, ":%04X", port);
  double deadline = mono_seconds() + kListenWaitSeconds;
  while (mono_seconds() < deadline) {
    std::ifstream tcp("/proc/net/tcp");
    std::string line;
    while (std::getline(tcp, line)) {
      std::istringstream ls(line);
      std::string sl, local, remote, state;
      ls >> sl >> local >> remote >> state;
      if (state == "0A" && local.size() > 5 && local.substr(local.size() - 5) == want) return true;
    }
    ::usleep(5'000);
  }
  return false;
}

std::uint16_t free_port() {
  UniqueFd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return 0;
  ::getsockname(s.get(), reinterpret_cast<sockaddr*>(&a), &len);
  return ntohs(a.sin_port);
}

struct Setup {
  fs::path work, ckpt;
  rep::CertSet certs;
  std::vector<PackSource> sources;
  std::uint64_t logical = 0;
  int runs = 0;  // names each case's directories
};

Row ferry_row(Setup& s, int rtt_ms) {
  Row row{"ferry push", rtt_ms};
  row.logical = s.logical;
  fs::path root = s.work / ("ferry-store-" + std::to_string(++s.runs));
  auto rx = ReceiverProcess::start(root, s.certs);
  if (!rx) return failed(row, rx.status().to_string());
  auto relay = RelayProcess::start(rx->address(), rtt_ms / 2);
  if (!relay) return failed(row, relay.status().to_string());
  rep::PushOptions po;
  po.targets = {relay->address()};
  po.tls.ca_file = s.certs.ca_cert;
  po.tls.cert_file = s.certs.host_cert(kHostName);
  po.tls.key_file = s.certs.host_key(kHostName);
  po.streams = FLAGS_rep_streams;
  po.snapshot = "bench-" + std::to_string(s.runs);
  po.source_name = "ckpt";
  const long faults0 = minor_faults();
  double cpu0 = process_cpu_seconds(), t0 = mono_seconds();
  auto reports = rep::push(s.sources, po);
  row.seconds = mono_seconds() - t0;
  row.cpu_send = process_cpu_seconds() - cpu0;
  row.send_faults = minor_faults() - faults0;
  row.wire = relay->finish();
  row.cpu_recv = rx->finish();
  row.cpu = row.cpu_send + row.cpu_recv;
  if (!reports) return failed(row, reports.status().to_string());
  const auto& r = reports->front();
  row.ok = r.logical_bytes == s.logical && r.chunks_skipped == 0;
  row.note = "chunks " + std::to_string(r.chunks_sent) + "/" + std::to_string(r.chunks_total) +
             ", own wire count " + std::to_string(r.wire_bytes_sent + r.wire_bytes_received) +
             ", frame memory " + std::to_string(r.frame_memory_bytes >> 20) + " MiB";
  if (!FLAGS_rep_keep) fs::remove_all(root);
  return row;
}

Row openssl_row(Setup& s, int rtt_ms) {
  Row row{"tar|zstd -1 -T0|openssl", rtt_ms};
  row.logical = s.logical;
  fs::path dest = s.work / ("openssl-dest-" + std::to_string(++s.runs));
  fs::create_directories(dest);
  std::uint16_t port = free_port();
  std::string log = (s.work / "openssl.log").string();  // their handshake chatter
  std::string server = "openssl s_server -accept 127.0.0.1:" + std::to_string(port) +
                       " -naccept 1 -tls1_3 -quiet -cert " + shell_quote(s.certs.receiver_cert) + " -key " +
                       shell_quote(s.certs.receiver_key) + " -CAfile " + shell_quote(s.certs.ca_cert) +
                       " -Verify 1 -verify_return_error 2>>" + shell_quote(log) +
                       " | zstd -d -q | tar x -C " + shell_quote(dest);
  // s_server's stdin is a pipe the bench holds open: at EOF it would spin.
  auto srv = spawn({"/bin/bash", "-c", server}, true, false, {}, true);
  if (!srv) return failed(row, srv.status().to_string());
  GroupGuard server_guard{srv->pid};
  if (!wait_listening(port))
    return failed(row, "openssl s_server did not listen on port " + std::to_string(port));
  auto relay = RelayProcess::start("127.0.0.1:" + std::to_string(port), rtt_ms / 2);
  if (!relay) return failed(row, relay.status().to_string());
  std::string client = "tar cf - -C " + shell_quote(s.ckpt) +
                       " . | zstd -1 -T0 -q | openssl s_client -connect " + relay->address() +
                       " -tls1_3 -quiet -no_ign_eof -nocommands -verify_return_error" +
                       " -verify_hostname localhost -cert " + shell_quote(s.certs.host_cert(kHostName)) +
                       " -key " + shell_quote(s.certs.host_key(kHostName)) + " -CAfile " +
                       shell_quote(s.certs.ca_cert) + " > /dev/null 2>>" + shell_quote(log);
  double t0 = mono_seconds();
  auto cli = spawn({"/bin/bash", "-c", client}, false, false);
  if (!cli) return failed(row, cli.status().to_string());
  Exit ce = wait_child(cli->pid);
  if (ce.status != 0) {
    return failed(row, "the client pipeline failed, status " + std::to_string(ce.status) + " (" + log +
                           ", kept with --rep_keep)");
  }
  Exit se = wait_child(srv->pid);  // returns once tar x has written everything
  server_guard.pid = -1;
  row.seconds = mono_seconds() - t0;
  row.cpu_send = ce.cpu_seconds;
  row.cpu_recv = se.cpu_seconds;
  row.cpu = ce.cpu_seconds + se.cpu_seconds;
  row.wire = relay->finish();
  std::uint64_t got = tree_bytes(dest);
  row.ok = ce.status == 0 && se.status == 0 && got == s.logical;
  if (!row.ok) {
    row.note = "client status " + std::to_string(ce.status) + ", server status " + std::to_string(se.status) +
               ", restored " + std::to_string(got) + " of " + std::to_string(s.logical) + " bytes";
  } else if (auto diff = run_capture("diff -rq " + shell_quote(s.ckpt) + " " + shell_quote(dest)); !diff) {
    row.ok = false;
    row.note = "restored tree differs";
  } else {
    row.note = "restored tree identical";
  }
  if (!FLAGS_rep_keep) fs::remove_all(dest);
  return row;
}

Row restic_row(Setup& s) {
  Row row{"restic backup (local repo)", 0};
  row.logical = s.logical;
  fs::path repo = s.work / ("restic-repo-" + std::to_string(++s.runs));
  std::vector<std::string> env = {std::string("RESTIC_PASSWORD=") + kResticPassword,
                                  "RESTIC_CACHE_DIR=" + (s.work / "restic-cache").string()};
  if (auto init = run_capture("restic init -q --repo " + shell_quote(repo) + " 2>&1", env); !init) {
    return failed(row, init.status().to_string());
  }
  std::uint64_t before = tree_bytes(repo);
  double t0 = mono_seconds();
  auto child = spawn({"/bin/bash", "-c",
                      "restic backup -q --json --repo " + shell_quote(repo) + " " + shell_quote(s.ckpt) +
                          " > " + shell_quote(s.work / "restic.json")},
                     false, false, env);
  if (!child) return failed(row, child.status().to_string());
  Exit e = wait_child(child->pid);
  row.seconds = mono_seconds() - t0;
  row.cpu = e.cpu_seconds;  // one process writes its own repository
  row.cpu_send = e.cpu_seconds;
  row.wire = tree_bytes(repo) - before;
  row.ok = e.status == 0;
  row.note = row.ok ? "wire = repository growth; no rest-server in Debian 12, so no delayed row"
                    : "restic backup failed, status " + std::to_string(e.status);
  if (!FLAGS_rep_keep) fs::remove_all(repo);
  return row;
}

Status prepare(Setup& s) {
  const char* tmp = std::getenv("TMPDIR");
  fs::path parent = !FLAGS_rep_work.empty() ? fs::path(FLAGS_rep_work) : fs::path(tmp && *tmp ? tmp : "/tmp");
  std::string templ = (parent / "ferry-bench-replicate.XXXXXX").string();
  if (!::mkdtemp(templ.data())) return Status::io_error("mkdtemp " + templ + ": " + std::strerror(errno));
  s.work = templ;
  if (!FLAGS_rep_dir.empty()) {
    s.ckpt = FLAGS_rep_dir;
  } else {
    const char* env = std::getenv("FERRY_CORPUS_DIR");
    fs::path corpus = !FLAGS_rep_corpus.empty() ? fs::path(FLAGS_rep_corpus) : fs::path(env ? env : "");
    if (corpus.empty() || !fs::is_directory(corpus)) {
      return Status::invalid_argument(
          "no checkpoint: give --rep_dir, --rep_corpus or FERRY_CORPUS_DIR (laid by "
          "../shared/corpus/fetch-corpus.sh)");
    }
    s.ckpt = s.work / "ckpt";
    std::error_code ec;
    fs::copy(corpus, s.ckpt, fs::copy_options::recursive, ec);
    if (ec)
      return Status::io_error("copy " + corpus.string() + " to " + s.ckpt.string() + ": " + ec.message());
  }
  auto sources = list_pack_sources(s.ckpt);
  if (!sources) return sources.status();
  s.sources = std::move(*sources);
  // Warm the page cache once so every tool reads from memory.
  std::vector<char> buf(1 << 20);
  for (const auto& src : s.sources) {
    std::ifstream f(src.path, std::ios::binary);
    while (f.read(buf.data(), static_cast<std::streamsize>(buf.size())) || f.gcount() > 0) {
      s.logical += static_cast<std::uint64_t>(f.gcount());
    }
  }
  rep::CertSetOptions co;
  co.hosts = {kHostName};
  auto certs = rep::create_cert_set(s.work / "certs", co);
  if (!certs) return certs.status();
  s.certs = std::move(*certs);
  return Status::ok();
}

bool wanted(const std::string& tool) {
  std::string list = "," + FLAGS_rep_tools + ",";
  return list.find("," + tool + ",") != std::string::npos;
}

}  // namespace

FERRY_BENCH(replicate, "ferry push vs tar|zstd|openssl and restic, loopback, 0 ms and 20 ms RTT") {
  if (!args.empty()) {
    std::fprintf(stderr, "replicate takes flags only\n");
    return 2;
  }
  if (!FLAGS_rep_relay_target.empty()) return relay_main();
  if (!FLAGS_rep_serve_store.empty()) return serve_main();
  Setup s;
  if (Status st = prepare(s); !st) {
    std::fprintf(stderr, "ferry-bench replicate: %s\n", st.to_string().c_str());
    if (!s.work.empty()) fs::remove_all(s.work);
    return 1;
  }
  std::printf("checkpoint: %s, %zu files, %.1f MB logical; work dir %s; 2 cores shared\n", s.ckpt.c_str(),
              s.sources.size(), s.logical / 1e6, s.work.c_str());
  std::vector<int> rtts = {0};
  if (FLAGS_rep_rtt_ms > 0) rtts.push_back(FLAGS_rep_rtt_ms);
  // all[case][run]: cases interleaved within each run, so that load from
  // others on the shared machine falls on every case alike.
  std::vector<std::vector<Row>> all;
  for (int run = 0; run < std::max(1, FLAGS_rep_runs); ++run) {
    std::size_t c = 0;
    auto add = [&](Row r) {
      if (all.size() <= c) all.emplace_back();
      const std::string faults =
          r.send_faults >= 0 ? ", " + std::to_string(r.send_faults) + " send faults" : "";
      std::printf("  run %d: %-28s %3d ms %7.3f GB/s %6.2f CPU s (send %.2f, receive %.2f%s)%s\n", run + 1,
                  r.tool.c_str(), r.rtt_ms, r.gbps(), r.cpu, r.cpu_send, r.cpu_recv, faults.c_str(),
                  r.ok ? "" : " FAILED");
      std::fflush(stdout);
      all[c++].push_back(std::move(r));
    };
    for (int rtt : rtts) {
      if (wanted("ferry")) add(ferry_row(s, rtt));
      if (wanted("openssl")) add(openssl_row(s, rtt));
      if (wanted("restic") && rtt == 0) add(restic_row(s));
    }
  }
  // Each case's median run by wall time (a failed run counts as slowest).
  std::vector<Row> rows;
  std::vector<std::pair<double, double>> ranges;  // GB/s min, max of the case
  for (auto& runs : all) {
    std::sort(runs.begin(), runs.end(), [](const Row& a, const Row& b) {
      if (a.ok != b.ok) return a.ok;
      return a.seconds < b.seconds;
    });
    bool all_ok = std::all_of(runs.begin(), runs.end(), [](const Row& r) { return r.ok; });
    Row median = runs[runs.size() / 2];
    if (!all_ok) median = runs.back();
    rows.push_back(median);
    ranges.emplace_back(runs.back().gbps(), runs.front().gbps());
  }

  std::printf(
      "\nmedian of %d runs (CPU s/GB: per GB of checkpoint, each end apart):\n"
      "%-28s %6s %9s %13s %14s %7s %8s %9s %9s %8s  %s\n",
      std::max(1, FLAGS_rep_runs), "tool", "RTT ms", "GB/s", "GB/s range", "wire bytes", "ratio", "CPU s",
      "send s/GB", "recv s/GB", "wall s", "note");
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const Row& r = rows[i];
    std::printf("%-28s %6d %9.3f %6.3f-%-6.3f %14llu %7.3f %8.2f %9.2f %9.2f %8.2f  %s%s\n", r.tool.c_str(),
                r.rtt_ms, r.gbps(), ranges[i].first, ranges[i].second,
                static_cast<unsigned long long>(r.wire), r.wire ? static_cast<double>(r.logical) / r.wire : 0,
                r.cpu, r.send_cpu_per_gb(), r.recv_cpu_per_gb(), r.seconds,
                r.ok ? "" : "FAILED: ", r.note.c_str());
  }
  auto find = [&](const std::string& tool, int rtt) -> const Row* {
    for (const auto& r : rows) {
      if (r.ok && r.tool == tool && r.rtt_ms == rtt) return &r;
    }
    return nullptr;
  };
  const Row* ferry0 = find("ferry push", 0);
  const Row* ferry_d = find("ferry push", FLAGS_rep_rtt_ms);
  const Row* best_base = nullptr;
  for (const auto& r : rows) {
    if (r.ok && r.rtt_ms == 0 && r.tool != "ferry push" && (!best_base || r.gbps() > best_base->gbps())) {
      best_base = &r;
    }
  }
  nlohmann::json j;
  j["bench"] = "replicate";
  j["checkpoint"] = s.ckpt.string();
  j["files"] = s.sources.size();
  j["logical_bytes"] = s.logical;
  j["streams"] = FLAGS_rep_streams;
  j["rtt_ms"] = FLAGS_rep_rtt_ms;
  j["runs"] = std::max(1, FLAGS_rep_runs);
  for (const auto& r : rows) {
    j["rows"].push_back({{"tool", r.tool},
                         {"rtt_ms", r.rtt_ms},
                         {"ok", r.ok},
                         {"logical_gbps", r.gbps()},
                         {"wire_bytes", r.wire},
                         {"cpu_seconds", r.cpu},
                         {"send_cpu_seconds", r.cpu_send},
                         {"send_page_faults", r.send_faults},
                         {"receive_cpu_seconds", r.cpu_recv},
                         {"send_cpu_seconds_per_gb", r.send_cpu_per_gb()},
                         {"receive_cpu_seconds_per_gb", r.recv_cpu_per_gb()},
                         {"seconds", r.seconds},
                         {"note", r.note},
                         {"gbps_min", ranges[&r - rows.data()].first},
                         {"gbps_max", ranges[&r - rows.data()].second}});
  }
  std::printf("\n");
  if (ferry0 && best_base) {
    double ratio = ferry0->gbps() / best_base->gbps();
    std::printf("ferry / faster baseline (%s) at 0 ms: %.2fx (target >= 1.5x)\n", best_base->tool.c_str(),
                ratio);
    j["ferry_vs_best_baseline"] = ratio;
    j["best_baseline"] = best_base->tool;
  }
  if (ferry0 && ferry_d && ferry_d != ferry0) {
    double ratio = ferry_d->gbps() / ferry0->gbps();
    std::printf("ferry %d ms / ferry 0 ms: %.2fx (target >= 0.85x)\n", FLAGS_rep_rtt_ms, ratio);
    j["ferry_delayed_vs_ferry_0ms"] = ratio;
  }
  if (const Row* pipe0 = find("tar|zstd -1 -T0|openssl", 0); ferry0 && pipe0 && pipe0->cpu_send > 0) {
    double send = ferry0->send_cpu_per_gb() / pipe0->send_cpu_per_gb();
    double recv = pipe0->cpu_recv > 0 ? ferry0->recv_cpu_per_gb() / pipe0->recv_cpu_per_gb() : 0;
    std::printf(
        "ferry sender CPU per GB / the pipeline's sending half (tar|zstd|s_client): %.2fx (target <= 0.5x)\n"
        "ferry receiver CPU per GB / the pipeline's receiving half (s_server|zstd -d|tar x): %.2fx\n",
        send, recv);
    j["ferry_send_cpu_vs_pipeline"] = send;
    j["ferry_receive_cpu_vs_pipeline"] = recv;
  }
  if (!FLAGS_json_out.empty()) {
    std::ofstream(FLAGS_json_out) << j.dump(2) << "\n";
  }
  if (!FLAGS_rep_keep) fs::remove_all(s.work);
  bool all_ok = std::all_of(rows.begin(), rows.end(), [](const Row& r) { return r.ok; });
  return all_ok ? 0 : 1;
}

}  // namespace ferry::bench
