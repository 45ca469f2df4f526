// cert_gen.h: creating the certificates of a ferry deployment with OpenSSL's
// C API (no shell-out): a CA, a receiver certificate and one certificate per
// host, whose subject CN is the host's namespace at the receiver. Used by
// `ferry certs` and by tests, which also need certificates a receiver must
// refuse (expired, from another CA).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "base/status.h"
#include "replication/limits.h"
#include "replication/tls.h"

namespace ferry::replication {

struct KeyAndCert {
  UniqueEvpPkey key;
  UniqueX509 cert;
};

struct CertSpec {
  std::string common_name;
  std::vector<std::string> dns_names;     // subjectAltName DNS entries
  std::vector<std::string> ip_addresses;  // subjectAltName IP entries
  bool server = false;                    // extendedKeyUsage serverAuth
  bool client = false;                    // extendedKeyUsage clientAuth
  // Validity window relative to now, in seconds (not_after <= not_before is
  // allowed, for expired certificates in tests).
  std::int64_t not_before_seconds = -300;  // a little slack for clock skew
  std::int64_t not_after_seconds = std::int64_t{kDefaultCertDays} * 86400;
};

// A new EC P-256 key.
Result<UniqueEvpPkey> generate_key();
// A self-signed CA (basicConstraints CA:TRUE, keyCertSign).
Result<KeyAndCert> make_ca(const std::string& common_name, int days = kDefaultCaDays);
// A leaf certificate signed by `ca`.
Result<KeyAndCert> issue_cert(const KeyAndCert& ca, const CertSpec& spec);

// PEM files: keys are written 0600, certificates 0644, each atomically
// (temporary file, fsync, rename).
Status write_key_pem(const std::filesystem::path& path, EVP_PKEY* key);
Status write_cert_pem(const std::filesystem::path& path, X509* cert);
Result<KeyAndCert> read_key_and_cert(const std::filesystem::path& key_path,
                                     const std::filesystem::path& cert_path);

// The files of one deployment, as `ferry certs` lays them in `dir`:
// ca.pem, ca.key, receiver.pem, receiver.key, host-<name>.pem/.key.
struct CertSet {
  std::filesystem::path dir;
  std::filesystem::path ca_cert, ca_key;
  std::filesystem::path receiver_cert, receiver_key;
  std::filesystem::path host_cert(const std::string& host) const;
  std::filesystem::path host_key(const std::string& host) const;
};
struct CertSetOptions {
  std::vector<std::string> hosts;  // each a valid namespace
  // Extra receiver names (DNS, or IP when it parses as an address); localhost
  // and 127.0.0.1 are always included.
  std::vector<std::string> receiver_names;
  int days = kDefaultCertDays;
  // Keep an existing CA in `dir` (so new hosts join a deployment) instead of
  // refusing to overwrite it.
  bool reuse_ca = true;
};
// Creates the directory (0700) and the files. With reuse_ca and an existing
// ca.pem/ca.key, issues from that CA; the receiver certificate is reissued.
Result<CertSet> create_cert_set(const std::filesystem::path& dir, const CertSetOptions& options);

}  // namespace ferry::replication
