// s3_bench.cc: `ferry-bench s3`: the DR copy in an object store, ferry
// against the tools people use, in one run on one throwaway single-host Ceph
// cluster (scripts/ceph-dev.sh, bluestore, two radosgw on loopback):
//   ferry direct     `ferry push DIR --to=s3://...` and `ferry restore
//                    --from=s3://... --streams=N` with 1, 4 (the default)
//                    and 16 parallel GETs;
//   ferry receiver   `ferry serve --store=s3://... --s3_spool=DIR` taking
//                    `ferry push` over mTLS, and `ferry restore` through it;
//   restic           `restic -r s3:... backup` and `restore`;
//   rclone           `rclone copy` up and down (a plain copy: no
//                    compression, no verification).
// Each tool writes to a bucket of its own. Per row: wall time, throughput
// (the corpus's bytes over wall time), CPU seconds of the tool's processes
// (a receiver's included), bytes stored in the bucket, and requests per GB
// of corpus counted by the gateways themselves (radosgw's `req` perf
// counter, summed over both gateways: ferry's requests counted the same way
// as the others'), and the CPU seconds the Ceph daemons spent meanwhile.
// Ratios to the peers and the targets follow the table.
#include <gflags/gflags.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>
#include "base/clock.h"
#include "base/human_size.h"
#include "bench/bench.h"
#include "replication/cert_gen.h"
#include "store/s3_client.h"

DEFINE_string(s3_corpus, "build/corpus-full", "ferry-bench s3: the directory to back up (the full corpus)");
DEFINE_string(s3_work, "", "ferry-bench s3: working directory (default $TMPDIR or /tmp)");
DEFINE_string(s3_ferry, "",
              "ferry-bench s3: the ferry binary (default: tools/ferry beside ferry-bench's folder)");
DEFINE_string(s3_objectstore, "bluestore", "ferry-bench s3: the OSD's object store (bluestore or memstore)");
DEFINE_bool(s3_serve_spool, true,
            "ferry-bench s3: give the receiver a spool directory (serve --s3_spool), so that it uploads full "
            "packs; false: every group commit uploads a pack");
DEFINE_int32(s3_runs, 1, "ferry-bench s3: rounds of every row (each row reports its median)");

namespace ferry::bench {
namespace {

namespace fs = std::filesystem;

// How long `ferry serve` may take to print its listening line.
constexpr double kServeStartSeconds = 30;
constexpr char kNamespace[] = "bench";
constexpr char kResticPassword[] = "ferry-bench";

std::string quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

struct Measured {
  int code = -1;
  double seconds = 0;
  double cpu_seconds = 0;  // user + system of the command and its children
};

// Runs `sh -c cmd` with its output appended to `log`.
Measured run(const std::string& cmd, const fs::path& log) {
  Measured m;
  const double t0 = mono_seconds();
  const pid_t pid = ::fork();
  if (pid == 0) {
    const std::string full = cmd + " >>" + quote(log.string()) + " 2>&1";
    ::execl("/bin/sh", "sh", "-c", full.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  int status = 0;
  rusage ru{};
  if (pid > 0 && ::wait4(pid, &status, 0, &ru) == pid) {
    m.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128;
    m.cpu_seconds = static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                    static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
  }
  m.seconds = mono_seconds() - t0;
  return m;
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// CPU seconds a running process has used (utime + stime of /proc/PID/stat).
double process_cpu(pid_t pid) {
  const std::string stat = read_text("/proc/" + std::to_string(pid) + "/stat");
  const auto close = stat.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream in(stat.substr(close + 2));
  std::string field;
  double utime = 0, stime = 0;
  for (int i = 3; i <= 15 && in >> field; ++i) {
    if (i == 14) utime = std::strtod(field.c_str(), nullptr);
    if (i == 15) stime = std::strtod(field.c_str(), nullptr);
  }
  return (utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

std::uint64_t tree_bytes(const fs::path& dir) {
  std::uint64_t sum = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (e.is_regular_file()) sum += e.file_size();
  }
  return sum;
}

// The cluster of this run and what the rows share.
struct Site {
  fs::path source_dir, work, ceph_dir, ferry, corpus, log;
  std::map<std::string, std::string> env;  // DIR/env
  std::unique_ptr<S3Client> client;
  replication::CertSet certs;
  std::uint64_t corpus_bytes = 0;
  int bucket_count = 0;

  std::string endpoint() const { return env.at("AWS_ENDPOINT_URL"); }
  // radosgw's request counters, both gateways.
  std::uint64_t gateway_requests() const {
    std::uint64_t sum = 0;
    for (int n : {1, 2}) {
      const std::string cmd =
          "ceph --admin-daemon " +
          quote((ceph_dir / "run" / ("client.rgw." + std::to_string(n) + ".asok")).string()) +
          " perf dump rgw 2>/dev/null";
      FILE* p = ::popen(cmd.c_str(), "r");
      if (p == nullptr) continue;
      std::string out;
      char buf[4096];
      while (std::fgets(buf, sizeof buf, p)) out += buf;
      ::pclose(p);
      auto j = nlohmann::json::parse(out, nullptr, false);
      if (!j.is_discarded() && j.contains("rgw")) sum += j["rgw"].value("req", std::uint64_t{0});
    }
    return sum;
  }
  // CPU seconds the cluster's daemons (mon, OSD, gateways) have used.
  double cluster_cpu() const {
    double sum = 0;
    for (const auto& e : fs::directory_iterator(ceph_dir / "run")) {
      if (e.path().extension() != ".pid") continue;
      sum += process_cpu(static_cast<pid_t>(std::strtol(read_text(e.path()).c_str(), nullptr, 10)));
    }
    return sum;
  }
  std::string new_bucket(const std::string& tool) {
    const std::string name =
        "bench-" + tool + "-" + std::to_string(::getpid()) + "-" + std::to_string(bucket_count++);
    Status st = client->create_bucket(name);
    if (!st) std::fprintf(stderr, "ferry-bench s3: %s\n", st.to_string().c_str());
    return name;
  }
  std::uint64_t stored_bytes(const std::string& bucket) const {
    auto objects = client->list(bucket, "");
    if (!objects) return 0;
    std::uint64_t sum = 0;
    for (const S3Object& o : *objects) sum += o.size;
    return sum;
  }
};

struct Row {
  std::string tool, op;
  Measured m;
  std::uint64_t stored = 0;  // push rows
  std::uint64_t requests = 0;
  double cluster_cpu_seconds = 0;  // the Ceph daemons', while the row ran
  bool ok = true;
};

// Measures `cmd` and the gateways' requests it made.
Row measure(Site& site, const std::string& tool, const std::string& op, const std::string& cmd,
            double extra_cpu_of = 0) {
  Row r{tool, op};
  const std::uint64_t before = site.gateway_requests();
  const double cluster_before = site.cluster_cpu();
  std::ofstream(site.log, std::ios::app) << "\n==== " << tool << " " << op << ": " << cmd << "\n";
  r.m = run(cmd, site.log);
  r.cluster_cpu_seconds = site.cluster_cpu() - cluster_before;
  r.m.cpu_seconds += extra_cpu_of;
  r.requests = site.gateway_requests() - before;
  r.ok = r.m.code == 0;
  if (!r.ok)
    std::fprintf(stderr, "ferry-bench s3: %s %s failed (exit %d); see %s\n", tool.c_str(), op.c_str(),
                 r.m.code, site.log.c_str());
  return r;
}

std::string tls_flags(const Site& s, bool receiver) {
  const auto cert = receiver ? s.certs.receiver_cert : s.certs.host_cert(kNamespace);
  const auto key = receiver ? s.certs.receiver_key : s.certs.host_key(kNamespace);
  return " --ca=" + quote(s.certs.ca_cert.string()) + " --cert=" + quote(cert.string()) +
         " --key=" + quote(key.string());
}

// `ferry serve --store=s3://...` in the background; its pid and port.
struct Serve {
  pid_t pid = -1;
  std::string port;
};
Serve start_serve(const Site& s, const std::string& bucket) {
  Serve out;
  const fs::path log = s.work / "serve.log";
  fs::remove(log);
  out.pid = ::fork();
  if (out.pid == 0) {
    const std::string cmd =
        "exec " + quote(s.ferry.string()) + " serve --store=s3://" + bucket + "/dr --listen=127.0.0.1:0" +
        tls_flags(s, true) +
        (FLAGS_s3_serve_spool ? " --s3_spool=" + quote((s.work / "spool").string()) : "") + " >" +
        quote(log.string()) + " 2>&1";
    ::execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  const double deadline = mono_seconds() + kServeStartSeconds;
  while (mono_seconds() < deadline) {
    const std::string text = read_text(log);
    if (const auto at = text.find("listening on "); at != std::string::npos) {
      const auto colon = text.find(':', at + 13);
      const auto end = text.find(' ', colon);
      out.port = text.substr(colon + 1, end - colon - 1);
      return out;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::fprintf(stderr, "ferry-bench s3: ferry serve did not start:\n%s\n", read_text(log).c_str());
  return out;
}
void stop_serve(Serve& s) {
  if (s.pid <= 0) return;
  ::kill(s.pid, SIGTERM);
  ::waitpid(s.pid, nullptr, 0);
  s.pid = -1;
}

// One round of every row.
std::vector<Row> round_of_rows(Site& s) {
  std::vector<Row> rows;
  const std::string ferry = quote(s.ferry.string());
  const std::string corpus = quote(s.corpus.string());
  const fs::path out = s.work / "out";
  auto clean_out = [&] { fs::remove_all(out); };
  const std::string name = "bench-" + std::to_string(mono_ns());

  // ferry straight into the bucket.
  {
    const std::string b = s.new_bucket("ferry");
    const std::string url = "s3://" + b + "/dr --namespace=" + kNamespace;
    Row push =
        measure(s, "ferry direct", "push", ferry + " push " + corpus + " --name=" + name + " --to=" + url);
    push.stored = s.stored_bytes(b);
    rows.push_back(push);
    for (int gets : {1, 4, 16}) {
      clean_out();
      rows.push_back(measure(s, "ferry direct", "restore " + std::to_string(gets) + " GETs",
                             ferry + " restore " + name + " --from=" + url +
                                 " --streams=" + std::to_string(gets) + " --to=" + quote(out.string())));
    }
  }
  // ferry through a receiver over the bucket.
  {
    const std::string b = s.new_bucket("ferry-serve");
    Serve serve = start_serve(s, b);
    if (!serve.port.empty()) {
      const std::string at = " 127.0.0.1:" + serve.port;
      double cpu0 = process_cpu(serve.pid);
      Row push = measure(
          s, "ferry receiver", "push",
          ferry + " push " + corpus + " --name=" + name + " --to=" + at.substr(1) + tls_flags(s, false));
      push.m.cpu_seconds += process_cpu(serve.pid) - cpu0;
      push.stored = s.stored_bytes(b);
      rows.push_back(push);
      clean_out();
      cpu0 = process_cpu(serve.pid);
      Row restore = measure(s, "ferry receiver", "restore",
                            ferry + " restore " + name + " --from=" + at.substr(1) +
                                " --to=" + quote(out.string()) + tls_flags(s, false));
      restore.m.cpu_seconds += process_cpu(serve.pid) - cpu0;
      rows.push_back(restore);
    }
    stop_serve(serve);
  }
  // restic.
  {
    const std::string b = s.new_bucket("restic");
    const std::string repo = " -r s3:" + s.endpoint() + "/" + b + " ";
    const std::string env = std::string("RESTIC_PASSWORD=") + kResticPassword + " ";
    run(env + "restic" + repo + "init", s.log);
    Row backup = measure(s, "restic", "push", env + "restic" + repo + "backup " + corpus);
    backup.stored = s.stored_bytes(b);
    rows.push_back(backup);
    clean_out();
    rows.push_back(measure(s, "restic", "restore",
                           env + "restic" + repo + "restore latest --target " + quote(out.string())));
  }
  // rclone, configured by its environment (rclone 1.60 fails with AWS_CA_BUNDLE set).
  {
    const std::string b = s.new_bucket("rclone");
    const std::string env =
        "env -u AWS_CA_BUNDLE RCLONE_CONFIG_CEPH_TYPE=s3 RCLONE_CONFIG_CEPH_PROVIDER=Ceph "
        "RCLONE_CONFIG_CEPH_ENDPOINT=" +
        s.endpoint() + " RCLONE_CONFIG_CEPH_ACCESS_KEY_ID=" + s.env["AWS_ACCESS_KEY_ID"] +
        " RCLONE_CONFIG_CEPH_SECRET_ACCESS_KEY=" + s.env["AWS_SECRET_ACCESS_KEY"] + " ";
    Row up = measure(s, "rclone", "push", env + "rclone copy " + corpus + " ceph:" + b + "/corpus");
    up.stored = s.stored_bytes(b);
    rows.push_back(up);
    clean_out();
    rows.push_back(
        measure(s, "rclone", "restore", env + "rclone copy ceph:" + b + "/corpus " + quote(out.string())));
  }
  clean_out();
  return rows;
}

const Row* find(const std::vector<Row>& rows, const std::string& tool, const std::string& op) {
  for (const Row& r : rows) {
    if (r.tool == tool && r.op == op) return &r;
  }
  return nullptr;
}

// The median (by seconds) of each row over the rounds.
std::vector<Row> medians(const std::vector<std::vector<Row>>& rounds) {
  std::vector<Row> out;
  for (const Row& first : rounds[0]) {
    std::vector<Row> same;
    for (const auto& r : rounds) {
      if (const Row* x = find(r, first.tool, first.op)) same.push_back(*x);
    }
    std::sort(same.begin(), same.end(), [](const Row& a, const Row& b) { return a.m.seconds < b.m.seconds; });
    out.push_back(same[same.size() / 2]);
  }
  return out;
}

// radosgw makes its data pool at the first object written, and the new
// pool's placement groups then peer: the first tool to write paid about
// 0.2 s that the others did not (the cluster is new, the order fixed). A
// throwaway bucket written and read once first.
void warm_up(Site& s) {
  const std::string b = s.new_bucket("warmup");
  const std::vector<std::byte> body(1 << 20, std::byte{0x5a});
  for (int i = 0; i < 4; ++i) {
    const std::string key = "warmup/" + std::to_string(i);
    auto put = s.client->put(b, key, body);
    if (!put) std::fprintf(stderr, "ferry-bench s3: warm-up: %s\n", put.status().to_string().c_str());
    (void)s.client->get(b, key);
  }
}

int run_bench(Site& s) {
  std::vector<std::vector<Row>> rounds;
  for (int i = 0; i < std::max(1, FLAGS_s3_runs); ++i) rounds.push_back(round_of_rows(s));
  const std::vector<Row> rows = medians(rounds);
  const double gb = static_cast<double>(s.corpus_bytes) / 1e9;
  std::printf(
      "ferry-bench s3: corpus %s (%s), %d round(s), median row; Ceph %s, 1 OSD, 2 radosgw on loopback\n",
      s.corpus.c_str(), format_bytes(s.corpus_bytes).c_str(), static_cast<int>(rounds.size()),
      FLAGS_s3_objectstore.c_str());
  std::printf("%-15s %-16s %8s %9s %8s %10s %12s %9s %6s\n", "TOOL", "OPERATION", "SECONDS", "MB/s", "CPU s",
              "CEPH CPU s", "STORED", "REQ/GB", "OK");
  for (const Row& r : rows) {
    std::printf("%-15s %-16s %8.2f %9.1f %8.2f %10.2f %12s %9.0f %6s\n", r.tool.c_str(), r.op.c_str(),
                r.m.seconds, static_cast<double>(s.corpus_bytes) / 1e6 / r.m.seconds, r.m.cpu_seconds,
                r.cluster_cpu_seconds, r.stored ? format_bytes(r.stored).c_str() : "-",
                static_cast<double>(r.requests) / gb, r.ok ? "yes" : "FAILED");
  }
  auto mbps = [&](const char* tool, const char* op) {
    const Row* r = find(rows, tool, op);
    return r && r->ok ? static_cast<double>(s.corpus_bytes) / 1e6 / r->m.seconds : 0.0;
  };
  auto field = [&](const char* tool, const char* op, auto get) {
    const Row* r = find(rows, tool, op);
    return r && r->ok ? static_cast<double>(get(*r)) : std::nan("");
  };
  const double restic_push = mbps("restic", "push"), rclone_push = mbps("rclone", "push");
  const double restic_restore = mbps("restic", "restore"), rclone_restore = mbps("rclone", "restore");
  const double restic_stored = field("restic", "push", [](const Row& r) { return r.stored; });
  const double restic_req = field("restic", "push", [](const Row& r) { return r.requests; }) +
                            field("restic", "restore", [](const Row& r) { return r.requests; });
  bool all = true;
  auto target = [&](const char* what, double value, double want) {
    const bool ok = std::isfinite(value) && value >= want;  // a failed row measures nothing
    all = all && ok;
    std::printf("  %-58s %6.2f  (target >= %.2f) %s\n", what, value, want, ok ? "PASS" : "MISS");
  };
  std::printf("ratios (median rows):\n");
  for (const char* way : {"ferry direct", "ferry receiver"}) {
    const double push = mbps(way, "push");
    // The direct restore as a user runs it: --streams' default, 4 GETs.
    const double restore = mbps(way, std::string(way) == "ferry direct" ? "restore 4 GETs" : "restore");
    const double stored = field(way, "push", [](const Row& r) { return r.stored; });
    const double req = field(way, "push", [](const Row& r) { return r.requests; }) +
                       field(way, std::string(way) == "ferry direct" ? "restore 4 GETs" : "restore",
                             [](const Row& r) { return r.requests; });
    const std::string w(way);
    target((w + " push / restic backup").c_str(), push / restic_push, 2.0);
    target((w + " push / rclone upload").c_str(), push / rclone_push, 1.0);
    target((w + " restore / restic restore").c_str(), restore / restic_restore, 2.0);
    target((w + " restore / rclone download").c_str(), restore / rclone_restore, 0.7);
    target((w + " restic stored / stored (<= 0.9x: >= 1.11)").c_str(), restic_stored / stored, 1.0 / 0.9);
    target((w + " restic requests / requests (push + restore)").c_str(), restic_req / req, 1.0);
  }
  const double r1 = mbps("ferry direct", "restore 1 GETs"), r4 = mbps("ferry direct", "restore 4 GETs"),
               r16 = mbps("ferry direct", "restore 16 GETs");
  std::printf("  restore MB/s with 1, 4, 16 parallel GETs: %.1f, %.1f, %.1f\n", r1, r4, r16);
  std::printf("all targets %s\n", all ? "PASS" : "not met (see MISS above)");
  // A tool that failed makes the run fail; a missed target is a finding.
  return std::all_of(rows.begin(), rows.end(), [](const Row& r) { return r.ok; }) ? 0 : 1;
}

}  // namespace

FERRY_BENCH(
    s3,
    "S3 on a throwaway Ceph cluster: ferry push/restore (direct and via a receiver) vs restic and rclone") {
  (void)args;
  Site s;
  s.source_dir = FERRY_SOURCE_DIR;
  const char* tmp = std::getenv("TMPDIR");
  s.work = fs::path(FLAGS_s3_work.empty() ? (tmp ? tmp : "/tmp") : FLAGS_s3_work) /
           ("ferry-bench-s3-" + std::to_string(::getpid()));
  s.ceph_dir = s.work / "ceph";
  s.log = s.work / "commands.log";
  s.corpus = fs::absolute(FLAGS_s3_corpus);
  std::error_code ec;
  s.ferry = FLAGS_s3_ferry.empty()
                ? fs::canonical("/proc/self/exe", ec).parent_path().parent_path() / "tools" / "ferry"
                : fs::path(FLAGS_s3_ferry);
  if (!fs::is_directory(s.corpus)) {
    std::fprintf(
        stderr,
        "ferry-bench s3: no corpus at %s (bash /work/shared/corpus/fetch-corpus.sh DIR; --s3_corpus)\n",
        s.corpus.c_str());
    return 1;
  }
  for (const char* tool : {"restic", "rclone", "radosgw", "ceph"}) {
    if (std::system(("command -v " + std::string(tool) + " >/dev/null").c_str()) != 0) {
      std::printf("ferry-bench s3: %s is not installed (scripts/install-deps.sh); skipped\n", tool);
      return 0;
    }
  }
  fs::create_directories(s.work);
  s.corpus_bytes = tree_bytes(s.corpus);
  const std::string start = "bash " + quote((s.source_dir / "scripts" / "ceph-dev.sh").string()) + " start " +
                            quote(s.ceph_dir.string()) + " --objectstore=" + FLAGS_s3_objectstore;
  if (run(start, s.log).code != 0) {
    std::fprintf(stderr, "ferry-bench s3: the Ceph cluster did not start; see %s\n", s.log.c_str());
    return 1;
  }
  // DIR/env: "export NAME=VALUE" lines; the children inherit them.
  std::istringstream env(read_text(s.ceph_dir / "env"));
  for (std::string line; std::getline(env, line);) {
    if (!line.starts_with("export ")) continue;
    const auto eq = line.find('=');
    const std::string k = line.substr(7, eq - 7), v = line.substr(eq + 1);
    s.env[k] = v;
    ::setenv(k.c_str(), v.c_str(), 1);
  }
  ::unsetenv("AWS_CA_BUNDLE");
  int rc = 1;
  auto config = s3_config_from_environment();
  replication::CertSetOptions co;
  co.hosts = {kNamespace};
  auto certs = replication::create_cert_set(s.work / "certs", co);
  if (config && certs) {
    s.certs = *certs;
    auto client = S3Client::create(*config);
    if (client) {
      s.client = std::move(*client);
      warm_up(s);
      rc = run_bench(s);
    }
  } else {
    std::fprintf(stderr, "ferry-bench s3: %s\n",
                 (config ? certs.status() : config.status()).to_string().c_str());
  }
  run("bash " + quote((s.source_dir / "scripts" / "ceph-dev.sh").string()) + " stop " +
          quote(s.ceph_dir.string()),
      s.log);
  std::printf("(commands and their output: %s)\n", s.log.c_str());
  return rc;
}

}  // namespace ferry::bench
