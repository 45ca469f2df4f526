// ceph_dev.cc: see ceph_dev.h.
#include "tests/testing/ceph_dev.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <sstream>

#include "tests/testing/testing.h"

namespace ferry::testing {
namespace {

std::string source_dir() {
  const char* src = std::getenv("FERRY_SOURCE_DIR");
  return src != nullptr ? src : FERRY_SOURCE_DIR_FALLBACK;
}

// Shell assignments "export NAME=value" of an env file.
std::map<std::string, std::string> read_env_file(const std::string& path) {
  std::map<std::string, std::string> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("export ", 0) == 0) line = line.substr(7);
    const auto eq = line.find('=');
    if (eq != std::string::npos) out[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return out;
}

bool have_ceph_tools() {
  return std::system(
             "command -v ceph-mon >/dev/null 2>&1 && command -v ceph-osd >/dev/null 2>&1 && "
             "command -v radosgw >/dev/null 2>&1 && command -v ceph >/dev/null 2>&1") == 0;
}

struct Owned {
  std::string dir;
  ~Owned() {
    if (!dir.empty()) ceph_dev("stop " + shell_quote(dir));
  }
};

}  // namespace

int ceph_dev(const std::string& args) {
  const std::string cmd = "bash " + shell_quote(source_dir() + "/scripts/ceph-dev.sh") + " " + args;
  const int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

const CephCluster* ceph_cluster(std::string& skip_reason) {
  static std::mutex mu;
  static std::unique_ptr<CephCluster> cluster;
  static std::string failure;
  static Owned owned;  // a cluster this process started, stopped at exit
  std::lock_guard lock(mu);
  if (cluster) return cluster.get();
  if (!failure.empty()) {
    skip_reason = failure;
    return nullptr;
  }
  std::string env_path;
  if (const char* e = std::getenv("FERRY_CEPH_ENV"); e != nullptr && access(e, R_OK) == 0) env_path = e;
  if (env_path.empty()) {
    if (!have_ceph_tools()) {
      failure = "Ceph is not installed (ceph-mon, ceph-osd, radosgw, ceph-common: scripts/install-deps.sh)";
      skip_reason = failure;
      return nullptr;
    }
    std::random_device rd;
    const std::string dir =
        std::filesystem::temp_directory_path() /
        ("ferry-ceph-" + std::to_string(::getpid()) + "-" + std::to_string(rd() % 100000));
    if (ceph_dev("start " + shell_quote(dir) + " >/dev/null") != 0) {
      failure = "scripts/ceph-dev.sh start " + dir + " failed (logs in " + dir + "/log)";
      skip_reason = failure;
      return nullptr;
    }
    owned.dir = dir;
    env_path = dir + "/env";
  }
  auto env = read_env_file(env_path);
  auto c = std::make_unique<CephCluster>();
  c->dir = env["FERRY_CEPH_DIR"];
  c->endpoint1 = env["AWS_ENDPOINT_URL"];
  c->endpoint2 = env["FERRY_S3_ENDPOINT_2"];
  c->access_key = env["AWS_ACCESS_KEY_ID"];
  c->secret_key = env["AWS_SECRET_ACCESS_KEY"];
  c->region = env["AWS_REGION"];
  if (c->endpoint1.empty() || c->access_key.empty()) {
    failure = env_path + " does not describe a cluster";
    skip_reason = failure;
    return nullptr;
  }
  cluster = std::move(c);
  return cluster.get();
}

S3Config ceph_s3_config(const CephCluster& c) {
  S3Config cfg;
  cfg.endpoints = {c.endpoint1, c.endpoint2};
  cfg.region = c.region;
  cfg.credentials = {c.access_key, c.secret_key, ""};
  cfg.backoff_base_ms = 20;
  cfg.backoff_max_ms = 500;
  cfg.connect_timeout_ms = 2000;
  return cfg;
}

std::string unique_bucket() {
  static std::mt19937_64 rng{std::random_device{}()};
  static std::mutex mu;
  std::lock_guard lock(mu);
  static constexpr char kAlnum[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  std::string name = "ferry-test-";
  for (int i = 0; i < 12; ++i) name += kAlnum[rng() % 36];
  return name;
}

namespace {

// The first line scripts/ceph-dev.sh prints for `args`, or "" when it fails.
std::string ceph_dev_line(const std::string& args) {
  const std::string cmd =
      "bash " + shell_quote(source_dir() + "/scripts/ceph-dev.sh") + " " + args + " 2>/dev/null";
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return {};
  char line[512] = {};
  const bool got = std::fgets(line, sizeof line, p) != nullptr;
  const int rc = ::pclose(p);
  std::string out = got ? std::string(line) : std::string();
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return rc == 0 ? out : std::string();
}

// A gateway number (3-99) no other test of the cluster has taken; 0 when
// all are. mkdir is atomic across processes: the first to make the folder
// owns the number for the life of the cluster.
int claim_gateway_number(const CephCluster& c) {
  for (int n = 3; n <= 99; ++n) {
    const std::string claim = c.dir + "/run/claimed-rgw." + std::to_string(n);
    if (::mkdir(claim.c_str(), 0700) == 0) return n;
  }
  return 0;
}

}  // namespace

OwnGateway add_gateway(const CephCluster& c, const std::string& cert_file, const std::string& key_file) {
  OwnGateway g;
  g.n = claim_gateway_number(c);
  if (g.n == 0) {
    g.error = "every gateway number is taken";
    return g;
  }
  const bool tls = !cert_file.empty();
  std::string args = "add-rgw " + shell_quote(c.dir) + " " + std::to_string(g.n);
  if (tls) args += " " + shell_quote("--tls=" + cert_file + "," + key_file);
  const std::string url = ceph_dev_line(args);
  if (url.starts_with(tls ? "https://" : "http://")) {
    g.url = url;
  } else {
    g.error = "could not start gateway " + std::to_string(g.n);
  }
  return g;
}

std::optional<S3Credentials> add_user(const CephCluster& c, const std::string& uid) {
  const std::string line = ceph_dev_line("add-user " + shell_quote(c.dir) + " " + shell_quote(uid));
  const auto space = line.find(' ');
  if (space == std::string::npos) return std::nullopt;
  return S3Credentials{line.substr(0, space), line.substr(space + 1), ""};
}

bool kill_gateway(const CephCluster& c, int n) {
  std::ifstream in(c.dir + "/run/rgw." + std::to_string(n) + ".pid");
  pid_t pid = 0;
  if (!(in >> pid) || pid <= 0) return false;
  return ::kill(pid, SIGKILL) == 0;
}

}  // namespace ferry::testing
