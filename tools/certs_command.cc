// certs_command.cc: `ferry certs --dir=DIR --hosts=a,b [--receiver_name=N]
// [--days=N]`: creates the certificates of a deployment (a CA, the
// receiver's, one per host) so that the receiver and its hosts run mutual TLS
// with no manual steps. Re-running it with the same DIR keeps the CA and adds
// hosts, so certificates issued earlier stay valid.
#include <cstdio>
#include <sstream>

#include "replication/cert_gen.h"
#include "replication/protocol.h"
#include "tools/cli.h"

namespace ferry::cli {
namespace {

std::string FLAGS_dir, FLAGS_hosts, FLAGS_receiver_name;
int FLAGS_days = replication::kDefaultCertDays;

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
}

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

int run_certs(const std::vector<std::string>&) {
  if (FLAGS_dir.empty()) return usage_error("certs needs --dir");
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

Registrar registrar({"certs", "certs --dir=DIR --hosts=HOST[,HOST...] [--receiver_name=NAME] [--days=N]",
                     "create a CA, a receiver certificate and host certificates for mutual TLS", define_certs,
                     run_certs});

}  // namespace
}  // namespace ferry::cli
