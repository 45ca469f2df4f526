// certs_command.cc: `ferry certs --dir=DIR --hosts=a,b [--receiver_name=N]
// [--days=N]`: creates the certificates of a deployment (a CA, the
// receiver's, one per host) so that the receiver and its hosts run mutual TLS
// with no manual steps. Re-running it with the same DIR keeps the CA and adds
// hosts, so certificates issued earlier stay valid. `ferry certs --dir=DIR
// --revoke=HOST` adds a host's certificate to DIR/crl.pem.
#include <cstdio>
#include <filesystem>
#include <sstream>

#include "replication/cert_gen.h"
#include "replication/protocol.h"
#include "tools/cli.h"

namespace ferry::cli {
namespace {

std::string FLAGS_dir, FLAGS_hosts, FLAGS_receiver_name;
int FLAGS_days = replication::kDefaultCertDays;
std::string FLAGS_revoke;
int FLAGS_crl_days = replication::kDefaultCrlDays;

void define_certs(CLI::App& app) {
  app.add_option("--dir", FLAGS_dir,
                 "the directory to write ca.pem, receiver.pem/.key, host-NAME.pem/.key into");
  app.add_option("--hosts", FLAGS_hosts,
                 "comma-separated host names; each becomes a namespace at the receiver");
  app.add_option("--receiver_name", FLAGS_receiver_name,
                 "comma-separated extra names or addresses of the receiver (localhost, 127.0.0.1 and ::1 are "
                 "always included)");
  app.add_option("--days", FLAGS_days, "validity of the receiver and host certificates")
      ->capture_default_str();
  app.add_option("--revoke", FLAGS_revoke,
                 "comma-separated host names whose certificates (DIR/host-NAME.pem) to revoke: adds them to "
                 "DIR/crl.pem (made when absent, signed by DIR/ca.key), for `ferry serve --crl`");
  app.add_option("--crl_days", FLAGS_crl_days,
                 "validity of the CRL --revoke writes (past it, peers are refused until a new one is made)")
      ->capture_default_str();
}

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

// --revoke: each host's certificate onto DIR/crl.pem, which the receiver
// (and hosts) load with --crl.
int revoke_hosts(const std::vector<std::string>& hosts) {
  replication::CertSet set;
  set.dir = FLAGS_dir;
  const std::filesystem::path crl = set.dir / "crl.pem";
  for (const std::string& h : hosts) {
    Status s = replication::validate_namespace(h);
    if (!s.is_ok()) return usage_error("--revoke: \"" + h + "\": " + s.message());
    auto revoked = replication::revoke_certificate(set.dir / "ca.key", set.dir / "ca.pem", set.host_cert(h),
                                                   crl, FLAGS_crl_days);
    if (!revoked) return fail(revoked.status());
    std::printf("revoked   host %s: %s\n", h.c_str(), revoked->c_str());
  }
  std::printf(
      "CRL       %s: copy it to the receiver's --crl file; `ferry serve` reloads it at SIGHUP or within "
      "--crl_reload_s\n",
      crl.c_str());
  return kExitOk;
}

int run_certs(const std::vector<std::string>&) {
  if (FLAGS_dir.empty()) return usage_error("certs needs --dir");
  if (!FLAGS_revoke.empty()) {
    if (!FLAGS_hosts.empty()) return usage_error("--revoke and --hosts are separate runs of certs");
    if (FLAGS_crl_days <= 0) return usage_error("--crl_days must be positive");
    return revoke_hosts(split_list(FLAGS_revoke));
  }
  if (FLAGS_days <= 0) return usage_error("--days must be positive");
  replication::CertSetOptions options;
  options.hosts = split_list(FLAGS_hosts);
  options.receiver_names = split_list(FLAGS_receiver_name);
  options.days = FLAGS_days;
  for (const std::string& h : options.hosts) {
    Status s = replication::validate_namespace(h);
    if (!s.is_ok()) return usage_error("--hosts: \"" + h + "\": " + s.message());
  }
  auto set = replication::create_cert_set(FLAGS_dir, options);
  if (!set.is_ok()) return fail(set.status());
  std::printf("CA        %s (key %s)\n", set->ca_cert.c_str(), set->ca_key.c_str());
  std::printf("receiver  %s (key %s)\n", set->receiver_cert.c_str(), set->receiver_key.c_str());
  for (const std::string& h : options.hosts)
    std::printf("host %-4s %s (key %s)\n", h.c_str(), set->host_cert(h).c_str(), set->host_key(h).c_str());
  std::printf("keys are mode 0600; keep ca.key off the receiver and the hosts\n");
  return kExitOk;
}

Registrar registrar({"certs",
                     "certs --dir=DIR --hosts=HOST[,HOST...] [--receiver_name=NAME] [--days=N] | "
                     "certs --dir=DIR --revoke=HOST[,HOST...] [--crl_days=N]",
                     "create a CA, a receiver certificate and host certificates for mutual TLS; revoke hosts",
                     define_certs, run_certs});

}  // namespace
}  // namespace ferry::cli
