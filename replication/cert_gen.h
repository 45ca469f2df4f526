// cert_gen.h: creating the certificates of a ferry deployment with OpenSSL's
// C API (no shell-out): a CA, a receiver certificate and one certificate per
// host, whose subject CN is the host's namespace at the receiver. Used by
// `ferry certs` and by tests, which also need certificates a receiver must
// refuse (expired, from another CA).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
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
  // Tests only: further subject CNs after common_name (a certificate a
  // receiver must refuse).
  std::vector<std::string> extra_common_names;
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

struct X509CrlDeleter {
  void operator()(X509_CRL* p) const { X509_CRL_free(p); }
};
using UniqueX509Crl = std::unique_ptr<X509_CRL, X509CrlDeleter>;

// A certificate revocation list signed by `ca`, revoking the certificates
// with these serial numbers, valid from now for `days`.
Result<UniqueX509Crl> make_crl(const KeyAndCert& ca, const std::vector<const ASN1_INTEGER*>& serials,
                               int days = kDefaultCrlDays);
Status write_crl_pem(const std::filesystem::path& path, X509_CRL* crl);
// Adds the certificate at `cert_path` to the CRL at `crl_path` (made when
// absent; the serials it lists stay), signed anew by the CA whose key and
// certificate are given, and writes it atomically. Returns the revoked
// certificate as describe_certificate names it.
Result<std::string> revoke_certificate(const std::filesystem::path& ca_key,
                                       const std::filesystem::path& ca_cert,
                                       const std::filesystem::path& cert_path,
                                       const std::filesystem::path& crl_path, int days = kDefaultCrlDays);

// The files of one deployment, as `ferry certs` lays them in `dir`:
// ca.pem, ca.key, receiver.pem, receiver.key, host-<name>.pem/.key, and
// crl.pem (made revoking nothing when absent).
struct CertSet {
  std::filesystem::path dir;
  std::filesystem::path ca_cert, ca_key;
  std::filesystem::path receiver_cert, receiver_key;
  std::filesystem::path crl;  // crl.pem: revoking nothing until `ferry certs --revoke`
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
