// agent_bench.cc: `ferry-bench agent`: how much a real ferry-agent slows a
// training job down on the same host. A stand-in training workload (per
// step: STREAM-triad passes over arrays far beyond the caches, then a blocked
// matrix multiply; a fixed number of steps per run, on nproc-1 threads)
// writes a checkpoint every few seconds (real weights from the corpus, every
// chunk's low bits changed per step so that nothing dedups, a marker file
// written last). Runs alternate: (a) the workload alone, (b) the workload
// while a ferry-agent child with its default limits replicates those
// checkpoints to a `ferry serve` child on loopback. The checkpoint writer runs
// in both, so the difference is the agent's (and the receiver's: it shares
// this host here, at nice 19, where a real one sits at the DR site). Reports
// the median slowdown over interleaved pairs, the agent's sustained logical
// throughput and CPU, and the RPO it reports over its control socket.
#include <fcntl.h>
#include <gflags/gflags.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "agent/control.h"
#include "bench/bench.h"
#include "bench/training_workload.h"
#include "replication/cert_gen.h"

DECLARE_string(json_out);  // bench/main.cc

DEFINE_string(agent_corpus, "",
              "corpus directory the checkpoints are made from (default: $FERRY_CORPUS_DIR)");
DEFINE_string(agent_bin, "", "ferry-agent binary (default: ../tools/ferry-agent beside ferry-bench)");
DEFINE_string(agent_ferry, "",
              "ferry binary, for `ferry serve` (default: ../tools/ferry beside ferry-bench)");
DEFINE_string(agent_work, "", "parent of the bench's temporary directory (default: $TMPDIR or /tmp)");
DEFINE_int32(agent_runs, 5, "pairs of runs (alone, with the agent), interleaved");
DEFINE_double(agent_run_seconds, 20, "length of one run of the workload alone; sets the step count");
DEFINE_double(agent_checkpoint_s, 5, "seconds between checkpoints");
DEFINE_int32(agent_checkpoint_mb, 64, "about this many MB of corpus files per checkpoint");
DEFINE_int32(agent_keep, 4,
             "checkpoint directories kept on the host (older ones are deleted, as trainers do)");
DEFINE_int32(agent_threads, 0, "workload threads (0: nproc - 1, at least 1)");
DEFINE_int32(agent_array_mb, 32, "MB per triad array (three per thread)");
DEFINE_int32(agent_triad_passes, 2, "triad passes per step");
DEFINE_int32(agent_matmul_reps, 4, "128x128 matrix multiplies per step");
DEFINE_string(agent_flags, "", "extra ferry-agent flags, space-separated (default limits otherwise)");
DEFINE_bool(agent_keep_work, false, "keep the temporary directory");
DEFINE_int32(agent_workload_nice, 0,
             "nice value of the bench (the workload); the agent inherits it and adds its own --nice, so "
             "the gap between them stays that of a real host. Below 0 shields both from other users of "
             "a shared machine (needs root)");
DEFINE_bool(agent_verbose, false, "print every status response the bench reads from the agent");

namespace ferry::bench {
namespace {

namespace fs = std::filesystem;
namespace rep = ferry::replication;

constexpr const char* kHostName = "bench";
constexpr const char* kMarker = "COMMITTED";
// Longest the bench waits for a child to listen or a job to drain.
constexpr double kStartWaitSeconds = 20;
constexpr double kDrainWaitSeconds = 60;
// The agent gets this long to exit after SIGTERM before SIGKILL.
constexpr double kStopWaitSeconds = 45;

// --- Checkpoints --------------------------------------------------------

struct CorpusFile {
  std::string name;
  std::vector<char> bytes;
};

Result<std::vector<CorpusFile>> load_corpus(const fs::path& dir, std::uint64_t budget) {
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.is_regular_file() && e.path().filename() != "corpus.tsv" && e.path().extension() != ".md") {
      files.push_back(e.path());
    }
  }
  std::sort(files.begin(), files.end());
  std::vector<CorpusFile> out;
  std::uint64_t total = 0;
  for (const auto& p : files) {
    const std::uint64_t size = fs::file_size(p);
    if (total + size > budget) continue;
    CorpusFile f{p.filename().string(), std::vector<char>(size)};
    std::ifstream in(p, std::ios::binary);
    if (!in.read(f.bytes.data(), static_cast<std::streamsize>(size))) {
      return Status::io_error("read " + p.string() + ": short read");
    }
    total += size;
    out.push_back(std::move(f));
  }
  if (out.empty()) return Status::invalid_argument("no corpus files in " + dir.string());
  return out;
}

// Writes ROOT/step-NNNNNN: the corpus files with the low byte of every
// 4-byte word replaced (the noisy mantissa bits of f32 and of every other
// f16/bf16 value), so every chunk differs from the previous step's and the
// ratio stays that of real weights; the marker file last.
Status write_checkpoint(const fs::path& root, int step, const std::vector<CorpusFile>& corpus,
                        std::uint64_t* bytes_written) {
  char name[32];
  std::snprintf(name, sizeof name, "step-%06d", step);
  const fs::path dir = root / name;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return Status::io_error("mkdir " + dir.string() + ": " + ec.message());
  std::mt19937 rng(static_cast<std::uint32_t>(step) * 2654435761u);
  std::vector<char> buf;
  for (const auto& f : corpus) {
    buf = f.bytes;
    for (std::size_t i = 0; i < buf.size(); i += 4) buf[i] = static_cast<char>(rng());
    std::ofstream out(dir / f.name, std::ios::binary | std::ios::trunc);
    out.write(buf.data(), static_cast<std::streamsize>(buf.size()));
    if (!out) return Status::io_error("write " + (dir / f.name).string());
    *bytes_written += buf.size();
  }
  std::ofstream(dir / kMarker) << "step " << step << "\n";
  return Status::ok();
}

// --- Child processes ----------------------------------------------------

struct ChildProcess {
  pid_t pid = -1;
  double cpu_seconds = 0;
  int status = 0;
};

Result<ChildProcess> spawn_logged(const std::vector<std::string>& argv, const fs::path& out,
                                  const fs::path& err) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_addopen(&fa, 2, err.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  ChildProcess c;
  const int rc = ::posix_spawn(&c.pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) return Status::io_error("spawn " + argv[0] + ": " + std::strerror(rc));
  return c;
}

// Waits for the child (SIGKILL after timeout_s); its CPU seconds and status.
void reap(ChildProcess& c, double timeout_s) {
  if (c.pid <= 0) return;
  const double deadline = mono_seconds() + timeout_s;
  rusage ru{};
  for (;;) {
    const pid_t r = ::wait4(c.pid, &c.status, WNOHANG, &ru);
    if (r == c.pid) break;
    if (r < 0 && errno != EINTR) break;
    if (mono_seconds() > deadline) {
      ::kill(c.pid, SIGKILL);
      ::wait4(c.pid, &c.status, 0, &ru);
      break;
    }
    ::usleep(20'000);
  }
  auto secs = [](const timeval& t) { return static_cast<double>(t.tv_sec) + t.tv_usec / 1e6; };
  c.cpu_seconds = secs(ru.ru_utime) + secs(ru.ru_stime);
  c.pid = -1;
}

// Stops a child with SIGTERM on every path out of a scope.
struct ChildGuard {
  ChildProcess* child;
  ~ChildGuard() {
    if (child->pid > 0) {
      ::kill(child->pid, SIGTERM);
      reap(*child, kStopWaitSeconds);
    }
  }
};

std::string read_text(const fs::path& p) {
  std::ifstream in(p);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

fs::path sibling_tool(const char* name) {
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  return self.parent_path().parent_path() / "tools" / name;
}

// --- One run ------------------------------------------------------------

struct Setup {
  fs::path work;
  rep::CertSet certs;
  std::vector<CorpusFile> corpus;
  std::uint64_t checkpoint_bytes = 0;
  std::string target;
  fs::path agent_bin;
};

struct Run {
  bool with_agent = false;
  double seconds = 0;
  double cpu_seconds = 0;  // the workload's
  double load = 0;         // 1-minute load average at the end
  int checkpoints = 0;
  std::uint64_t written_bytes = 0;
  // With the agent:
  bool ok = true;
  std::string note;
  std::uint64_t logical_bytes = 0;  // committed at the DR site during the run
  double drain_seconds = 0;         // after the run, until the last checkpoint committed
  double agent_cpu_seconds = 0;
  int committed = 0;
  std::vector<double> rpo_samples;  // seconds, one per checkpoint interval
  double reported_throughput = 0;   // the agent's own bytes/s figure
  bool warning = false;             // raised at some sample
  bool warning_at_end = false;      // still raised once the newest checkpoint committed
};

// The job's entry in a status response (the first job; there is one).
nlohmann::json job_status(const nlohmann::json& st) {
  if (st.contains("jobs") && st["jobs"].is_array() && !st["jobs"].empty()) return st["jobs"][0];
  return nlohmann::json::object();
}

Run one_run(Setup& s, int index, bool with_agent, std::vector<WorkerState>& workers, int steps) {
  Run run;
  run.with_agent = with_agent;
  const std::string job = "train" + std::to_string(index);
  const fs::path root = s.work / "ckpt" / job;
  fs::create_directories(root);
  const fs::path sock = s.work / ("control-" + std::to_string(index) + ".sock");
  ChildProcess agent;
  ChildGuard agent_guard{&agent};
  if (with_agent) {
    const fs::path state = s.work / ("state-" + std::to_string(index));
    fs::create_directories(state);
    std::vector<std::string> argv = {s.agent_bin.string(),
                                     "--watch=" + root.string() + "=" + job,
                                     std::string("--marker_file=") + kMarker,
                                     "--targets=" + s.target,
                                     "--ca=" + s.certs.ca_cert.string(),
                                     "--cert=" + s.certs.host_cert(kHostName).string(),
                                     "--key=" + s.certs.host_key(kHostName).string(),
                                     "--state_dir=" + state.string(),
                                     "--control_socket=" + sock.string(),
                                     "--metrics_listen="};
    for (std::size_t p = 0, q; p < FLAGS_agent_flags.size(); p = q + 1) {
      q = FLAGS_agent_flags.find(' ', p);
      if (q == std::string::npos) q = FLAGS_agent_flags.size();
      if (q > p) argv.push_back(FLAGS_agent_flags.substr(p, q - p));
    }
    const fs::path log = s.work / ("agent-" + std::to_string(index) + ".log");
    auto child = spawn_logged(argv, log, log);
    if (!child) {
      run.ok = false;
      run.note = child.status().to_string();
      return run;
    }
    agent = *child;
    bool up = false;
    for (double deadline = mono_seconds() + kStartWaitSeconds; mono_seconds() < deadline && !up;) {
      up = agent::control_call(sock, "status", nlohmann::json::object(), 1000).is_ok();
      if (!up) ::usleep(50'000);
    }
    if (!up) {
      run.ok = false;
      run.note = "ferry-agent did not answer on " + sock.string() + "; its log (" + log.string() +
                 "): " + read_text(log).substr(0, 2000);
      return run;
    }
  }

  // The checkpoint writer: one checkpoint at the start of every interval.
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  int step = 0;
  std::thread writer([&] {
    const double t0 = mono_seconds();
    std::unique_lock lock(mu);
    for (int k = 0;; ++k) {
      const double at = t0 + k * FLAGS_agent_checkpoint_s;
      cv.wait_for(lock, std::chrono::duration<double>(std::max(0.0, at - mono_seconds())),
                  [&] { return done; });
      if (done) return;
      lock.unlock();
      if (with_agent) {
        auto st = agent::control_call(sock, "status", nlohmann::json::object(), 2000);
        if (FLAGS_agent_verbose) {
          std::fprintf(stderr, "status: %s\n", st ? st->dump().c_str() : st.status().to_string().c_str());
        }
        if (st && (*st).value("ok", false)) {
          const auto js = job_status(*st);
          if (js.contains("rpo_seconds") && js["rpo_seconds"].is_number() && js.value("committed", 0) > 0) {
            run.rpo_samples.push_back(js["rpo_seconds"].get<double>());
          }
          run.warning = run.warning || js.value("warning", false);
        }
      }
      ++step;
      if (Status st = write_checkpoint(root, step * 100, s.corpus, &run.written_bytes); !st) {
        run.ok = false;
        run.note = st.to_string();
      }
      // Keep the newest few, as a trainer's checkpoint rotation does.
      if (step > FLAGS_agent_keep) {
        char old[32];
        std::snprintf(old, sizeof old, "step-%06d", (step - FLAGS_agent_keep) * 100);
        std::error_code ec;
        fs::remove_all(root / old, ec);
      }
      lock.lock();
    }
  });
  const WorkloadTime t = run_workload(workers, steps);
  run.seconds = t.wall_seconds;
  run.cpu_seconds = t.cpu_seconds;
  run.load = load_average();
  {
    std::lock_guard lock(mu);
    done = true;
  }
  cv.notify_all();
  writer.join();
  run.checkpoints = step;

  if (with_agent) {
    // Let the newest checkpoint commit (the RPO after the last write), then
    // read the totals and stop the agent the way systemd does.
    const std::uint64_t newest = static_cast<std::uint64_t>(step) * 100;
    const double t_end = mono_seconds();
    nlohmann::json last;
    while (mono_seconds() < t_end + kDrainWaitSeconds) {
      auto st = agent::control_call(sock, "status", nlohmann::json::object(), 2000);
      if (st && (*st).value("ok", false)) {
        last = *st;
        const auto js = job_status(last);
        if (js.value("newest_committed_step", std::uint64_t{0}) >= newest && js.value("queued", 0) == 0 &&
            js.value("in_flight", 0) == 0) {
          break;
        }
      }
      ::usleep(100'000);
    }
    run.drain_seconds = mono_seconds() - t_end;
    const auto js = job_status(last);
    run.logical_bytes = last.value("logical_bytes", std::uint64_t{0});
    run.reported_throughput = last.value("throughput_bytes_per_second", 0.0);
    run.committed = js.value("committed", 0);
    run.warning = run.warning || js.value("warning", false);
    run.warning_at_end = js.value("warning", false);
    if (js.value("newest_committed_step", std::uint64_t{0}) < newest) {
      run.ok = false;
      run.note = "newest checkpoint (step " + std::to_string(newest) + ") not committed " +
                 std::to_string(static_cast<int>(kDrainWaitSeconds)) +
                 " s after the run; last status: " + last.dump().substr(0, 1500);
    }
    ::kill(agent.pid, SIGTERM);
    reap(agent, kStopWaitSeconds);
    run.agent_cpu_seconds = agent.cpu_seconds;
    if (!WIFEXITED(agent.status) || WEXITSTATUS(agent.status) != 0) {
      run.ok = false;
      run.note += (run.note.empty() ? "" : "; ") + std::string("ferry-agent exit status ") +
                  std::to_string(agent.status) + " after SIGTERM";
    }
  }
  std::error_code ec;
  fs::remove_all(root, ec);
  return run;
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

Status prepare(Setup& s) {
  const char* tmp = std::getenv("TMPDIR");
  fs::path parent =
      !FLAGS_agent_work.empty() ? fs::path(FLAGS_agent_work) : fs::path(tmp && *tmp ? tmp : "/tmp");
  std::string templ = (parent / "ferry-bench-agent.XXXXXX").string();
  if (!::mkdtemp(templ.data())) return Status::io_error("mkdtemp " + templ + ": " + std::strerror(errno));
  s.work = templ;
  const char* env = std::getenv("FERRY_CORPUS_DIR");
  const fs::path corpus =
      !FLAGS_agent_corpus.empty() ? fs::path(FLAGS_agent_corpus) : fs::path(env ? env : "");
  if (corpus.empty() || !fs::is_directory(corpus)) {
    return Status::invalid_argument(
        "no corpus: give --agent_corpus or FERRY_CORPUS_DIR (laid by "
        "../shared/corpus/fetch-corpus.sh)");
  }
  auto files = load_corpus(corpus, static_cast<std::uint64_t>(FLAGS_agent_checkpoint_mb) << 20);
  if (!files) return files.status();
  s.corpus = std::move(*files);
  for (const auto& f : s.corpus) s.checkpoint_bytes += f.bytes.size();
  s.agent_bin = !FLAGS_agent_bin.empty() ? fs::path(FLAGS_agent_bin) : sibling_tool("ferry-agent");
  const fs::path ferry = !FLAGS_agent_ferry.empty() ? fs::path(FLAGS_agent_ferry) : sibling_tool("ferry");
  for (const auto& bin : {s.agent_bin, ferry}) {
    if (::access(bin.c_str(), X_OK) != 0) {
      return Status::invalid_argument(
          bin.string() + " is not an executable (build it, or give --agent_bin / --agent_ferry)");
    }
  }
  rep::CertSetOptions co;
  co.hosts = {kHostName};
  auto certs = rep::create_cert_set(s.work / "certs", co);
  if (!certs) return certs.status();
  s.certs = std::move(*certs);
  return Status::ok();
}

// Starts `ferry serve` at nice 19 on an ephemeral loopback port.
Result<ChildProcess> start_receiver(Setup& s, const fs::path& ferry) {
  const fs::path out = s.work / "serve.out";
  // nice -n is relative: land at 19 whatever the bench's own nice value.
  const std::string increment = std::to_string(19 - FLAGS_agent_workload_nice);
  auto child = spawn_logged(
      {"/usr/bin/nice", "-n", increment, ferry.string(), "serve", "--store=" + (s.work / "dr-store").string(),
       "--listen=127.0.0.1:0", "--ca=" + s.certs.ca_cert.string(), "--cert=" + s.certs.receiver_cert.string(),
       "--key=" + s.certs.receiver_key.string()},
      out, s.work / "serve.log");
  if (!child) return child.status();
  const std::string prefix = "listening on ";
  for (double deadline = mono_seconds() + kStartWaitSeconds; mono_seconds() < deadline;) {
    const std::string text = read_text(out);
    if (auto p = text.find(prefix); p != std::string::npos) {
      const auto end = text.find_first_of(" \n", p + prefix.size());
      s.target = text.substr(p + prefix.size(), end - p - prefix.size());
      return child;
    }
    ::usleep(50'000);
  }
  ::kill(child->pid, SIGKILL);
  reap(*child, 5);
  return Status::io_error("ferry serve did not report its port: " + read_text(s.work / "serve.log"));
}

}  // namespace

FERRY_BENCH(agent, "training-like workload alone vs with ferry-agent replicating its checkpoints") {
  if (!args.empty()) {
    std::fprintf(stderr, "agent takes flags only\n");
    return 2;
  }
  // Before any thread or child exists, so that all of them inherit it.
  if (FLAGS_agent_workload_nice != 0 && ::setpriority(PRIO_PROCESS, 0, FLAGS_agent_workload_nice) != 0) {
    std::fprintf(stderr, "ferry-bench agent: setpriority(%d): %s\n", FLAGS_agent_workload_nice,
                 std::strerror(errno));
    return 1;
  }
  Setup s;
  if (Status st = prepare(s); !st) {
    std::fprintf(stderr, "ferry-bench agent: %s\n", st.to_string().c_str());
    if (!s.work.empty()) fs::remove_all(s.work);
    return 1;
  }
  const fs::path ferry = !FLAGS_agent_ferry.empty() ? fs::path(FLAGS_agent_ferry) : sibling_tool("ferry");
  auto receiver = start_receiver(s, ferry);
  if (!receiver) {
    std::fprintf(stderr, "ferry-bench agent: %s\n", receiver.status().to_string().c_str());
    return 1;
  }
  ChildGuard receiver_guard{&*receiver};

  const int ncpu = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const int nthreads = FLAGS_agent_threads > 0 ? FLAGS_agent_threads : std::max(1, ncpu - 1);
  const std::size_t elems = (static_cast<std::size_t>(FLAGS_agent_array_mb) << 20) / sizeof(double);
  std::vector<WorkerState> workers(static_cast<std::size_t>(nthreads));
  for (int t = 0; t < nthreads; ++t) {
    init_worker(workers[t], elems, 1234 + t, FLAGS_agent_triad_passes, FLAGS_agent_matmul_reps);
  }
  // Calibrate: the step count that fills --agent_run_seconds alone.
  const int probe_steps = 5;
  const double probe = run_workload(workers, probe_steps).wall_seconds / probe_steps;
  const int steps = std::max(10, static_cast<int>(FLAGS_agent_run_seconds / probe));
  std::printf("nice: workload %d, ferry-agent %d + its --nice, ferry serve 19\n", FLAGS_agent_workload_nice,
              FLAGS_agent_workload_nice);
  std::printf(
      "workload: %d threads on %d CPUs, 3 x %d MB triad arrays per thread, %d triad passes + %d %dx%d "
      "matmuls per step, %d steps (%.1f ms per step)\n",
      nthreads, ncpu, FLAGS_agent_array_mb, FLAGS_agent_triad_passes, FLAGS_agent_matmul_reps, kMatrixDim,
      kMatrixDim, steps, probe * 1e3);
  std::printf("checkpoints: %zu corpus files, %.1f MB each %.1f s; receiver %s (nice 19); work dir %s\n",
              s.corpus.size(), s.checkpoint_bytes / 1e6, FLAGS_agent_checkpoint_s, s.target.c_str(),
              s.work.c_str());
  std::fflush(stdout);

  std::vector<Run> alone, with;
  std::vector<double> pair_ratios, cpu_ratios;
  bool ok = true;
  for (int r = 0; r < std::max(1, FLAGS_agent_runs); ++r) {
    // Alternate which goes first, so that drift on the shared machine falls
    // on both alike.
    for (int k = 0; k < 2; ++k) {
      const bool with_agent = (k == 1) != (r % 2 == 1);
      Run run = one_run(s, r * 2 + k, with_agent, workers, steps);
      std::printf("  run %d %-11s %7.2f s wall, %7.2f s CPU, load %4.1f, %d checkpoints", r + 1,
                  with_agent ? "with agent" : "alone", run.seconds, run.cpu_seconds, run.load,
                  run.checkpoints);
      if (with_agent) {
        std::printf(
            ", %d committed, %.1f MB logical, agent CPU %.1f s, RPO median %.1f s max %.1f s, drain %.1f s, "
            "RPO warning %s%s",
            run.committed, run.logical_bytes / 1e6, run.agent_cpu_seconds, median(run.rpo_samples),
            run.rpo_samples.empty() ? 0.0 : *std::max_element(run.rpo_samples.begin(), run.rpo_samples.end()),
            run.drain_seconds,
            run.warning_at_end ? "still raised" : (run.warning ? "raised, then cleared" : "never raised"),
            run.ok ? "" : " FAILED");
      }
      std::printf("\n");
      if (!run.ok) std::printf("    %s\n", run.note.c_str());
      std::fflush(stdout);
      ok = ok && run.ok;
      (with_agent ? with : alone).push_back(std::move(run));
    }
    pair_ratios.push_back(with.back().seconds / alone.back().seconds);
    cpu_ratios.push_back(with.back().cpu_seconds / alone.back().cpu_seconds);
  }
  auto seconds_of = [](const std::vector<Run>& v) {
    std::vector<double> out;
    for (const auto& r : v) out.push_back(r.seconds);
    return out;
  };
  const double alone_s = median(seconds_of(alone));
  const double with_s = median(seconds_of(with));
  const double slowdown = median(pair_ratios) - 1;
  const double cpu_slowdown = median(cpu_ratios) - 1;
  std::vector<double> loads;
  for (const auto& v : {alone, with}) {
    for (const auto& r : v) loads.push_back(r.load);
  }
  std::vector<double> rpo, throughput, cpu_per_gb;
  std::uint64_t logical = 0;
  bool warned = false;
  for (const auto& r : with) {
    rpo.insert(rpo.end(), r.rpo_samples.begin(), r.rpo_samples.end());
    // Sustained: what the agent committed over the time it had (run + drain).
    throughput.push_back(r.logical_bytes / (r.seconds + r.drain_seconds));
    if (r.logical_bytes) cpu_per_gb.push_back(r.agent_cpu_seconds / (r.logical_bytes / 1e9));
    logical += r.logical_bytes;
    warned = warned || r.warning;
  }
  const double rpo_max = rpo.empty() ? 0 : *std::max_element(rpo.begin(), rpo.end());
  std::printf("\nmedian of %zu interleaved pairs:\n", pair_ratios.size());
  std::printf("  workload alone          %8.2f s\n", alone_s);
  std::printf("  workload with agent     %8.2f s\n", with_s);
  std::printf("  slowdown (wall)         %+7.1f %%   (median of paired ratios; target <= +5%%)\n",
              slowdown * 100);
  std::printf("  slowdown (workload CPU) %+7.1f %%   (memory and cache interference only)\n",
              cpu_slowdown * 100);
  std::printf("  load average            %8.1f     (median at the end of each run; %d CPUs)\n", median(loads),
              ncpu);
  std::printf("  agent throughput        %8.1f MB/s logical, sustained (offered %.1f MB/s)\n",
              median(throughput) / 1e6, s.checkpoint_bytes / FLAGS_agent_checkpoint_s / 1e6);
  std::printf("  agent CPU               %8.2f s per GB logical\n", median(cpu_per_gb));
  std::printf("  RPO (agent's own)       %8.1f s median, %.1f s max over %zu samples; warning %s\n",
              median(rpo), rpo_max, rpo.size(), warned ? "raised" : "never raised");

  nlohmann::json j;
  j["bench"] = "agent";
  j["cpus"] = ncpu;
  j["workload_threads"] = nthreads;
  j["steps"] = steps;
  j["checkpoint_bytes"] = s.checkpoint_bytes;
  j["checkpoint_interval_s"] = FLAGS_agent_checkpoint_s;
  j["agent_flags"] = FLAGS_agent_flags;
  j["workload_nice"] = FLAGS_agent_workload_nice;
  j["alone_seconds"] = seconds_of(alone);
  j["with_agent_seconds"] = seconds_of(with);
  j["pair_ratios"] = pair_ratios;
  j["slowdown"] = slowdown;
  j["cpu_pair_ratios"] = cpu_ratios;
  j["cpu_slowdown"] = cpu_slowdown;
  j["load_average_median"] = median(loads);
  j["agent_logical_bytes"] = logical;
  j["agent_throughput_bytes_per_second"] = median(throughput);
  j["agent_cpu_seconds_per_gb"] = median(cpu_per_gb);
  j["rpo_seconds_median"] = median(rpo);
  j["rpo_seconds_max"] = rpo_max;
  j["rpo_warning"] = warned;
  j["ok"] = ok;
  if (!FLAGS_json_out.empty()) std::ofstream(FLAGS_json_out) << j.dump(2) << "\n";
  // Stop the receiver before its store goes.
  ::kill(receiver->pid, SIGTERM);
  reap(*receiver, kStopWaitSeconds);
  if (!FLAGS_agent_keep_work) fs::remove_all(s.work);
  return ok ? 0 : 1;
}

}  // namespace ferry::bench
