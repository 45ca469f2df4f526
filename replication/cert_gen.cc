// cert_gen.cc: keys and X.509 certificates for a ferry deployment, built with
// OpenSSL's C API. Certificates carry what verification needs and no more:
// basicConstraints, keyUsage, extendedKeyUsage, subjectAltName and key
// identifiers; keys are EC P-256 (small, fast handshakes, universal support).
#include "replication/cert_gen.h"

#include <arpa/inet.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <functional>
#include <system_error>

#include "base/posix_file.h"
#include "replication/protocol.h"

namespace ferry::replication {
namespace {

struct BioDeleter {
  void operator()(BIO* p) const { BIO_free(p); }
};
using UniqueBio = std::unique_ptr<BIO, BioDeleter>;
struct X509ExtDeleter {
  void operator()(X509_EXTENSION* p) const { X509_EXTENSION_free(p); }
};

constexpr int kSerialBytes = 16;  // random serials (RFC 5280 allows 20 octets)

bool is_ip(const std::string& name) {
  unsigned char buf[16];
  return inet_pton(AF_INET, name.c_str(), buf) == 1 || inet_pton(AF_INET6, name.c_str(), buf) == 1;
}

Status openssl_fail(std::string_view what) {
  return Status::internal(std::string(what) + ": " + drain_openssl_errors());
}

Status add_ext(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  std::unique_ptr<X509_EXTENSION, X509ExtDeleter> ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str()));
  if (!ext || X509_add_ext(cert, ext.get(), -1) != 1)
    return openssl_fail("certificate extension " + std::string(OBJ_nid2sn(nid)) + "=" + value);
  return Status::ok();
}

Status set_validity(X509* cert, std::int64_t not_before_seconds, std::int64_t not_after_seconds) {
  if (X509_gmtime_adj(X509_getm_notBefore(cert), static_cast<long>(not_before_seconds)) == nullptr ||
      X509_gmtime_adj(X509_getm_notAfter(cert), static_cast<long>(not_after_seconds)) == nullptr)
    return openssl_fail("certificate validity");
  return Status::ok();
}

// A certificate with version, random serial, subject CN, validity and key.
Result<UniqueX509> new_cert(const std::string& cn, EVP_PKEY* key, std::int64_t not_before_seconds,
                            std::int64_t not_after_seconds) {
  UniqueX509 cert(X509_new());
  if (!cert) return openssl_fail("X509_new");
  X509_set_version(cert.get(), 2);  // v3
  unsigned char serial[kSerialBytes];
  if (RAND_bytes(serial, sizeof(serial)) != 1) return openssl_fail("random serial");
  serial[0] &= 0x7f;  // positive
  BIGNUM* bn = BN_bin2bn(serial, sizeof(serial), nullptr);
  bool ok = bn != nullptr && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert.get())) != nullptr;
  BN_free(bn);
  if (!ok) return openssl_fail("certificate serial");
  RETURN_IF_ERROR(set_validity(cert.get(), not_before_seconds, not_after_seconds));
  X509_NAME* name = X509_get_subject_name(cert.get());
  if (X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0) != 1)
    return openssl_fail("certificate subject CN " + cn);
  if (X509_set_pubkey(cert.get(), key) != 1) return openssl_fail("certificate public key");
  return cert;
}

Status write_pem(const std::filesystem::path& path, unsigned mode, const std::function<int(BIO*)>& encode) {
  UniqueBio bio(BIO_new(BIO_s_mem()));
  if (!bio || encode(bio.get()) != 1) return openssl_fail("PEM encoding for " + path.string());
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  ASSIGN_OR_RETURN(AtomicFile file, AtomicFile::create(path, mode));
  RETURN_IF_ERROR(file.set_mode(mode));
  RETURN_IF_ERROR(pwrite_all(
      file.fd(), {reinterpret_cast<const std::byte*>(data), static_cast<std::size_t>(n)}, 0, path));
  return file.commit();
}

// The first certificate in a PEM file.
Result<UniqueX509> read_cert_pem(const std::filesystem::path& path) {
  UniqueBio bio(BIO_new_file(path.c_str(), "r"));
  if (!bio)
    return Status::not_found("cannot open certificate " + path.string() + ": " + drain_openssl_errors());
  UniqueX509 cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (!cert)
    return Status::corruption("cannot read certificate " + path.string() + ": " + drain_openssl_errors());
  return cert;
}

}  // namespace

Result<UniqueEvpPkey> generate_key() {
  UniqueEvpPkey key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  if (!key) return openssl_fail("EC P-256 key generation");
  return key;
}

Result<KeyAndCert> make_ca(const std::string& common_name, int days) {
  ASSIGN_OR_RETURN(UniqueEvpPkey key, generate_key());
  ASSIGN_OR_RETURN(UniqueX509 cert, new_cert(common_name, key.get(), -300, std::int64_t{days} * 86400));
  X509_set_issuer_name(cert.get(), X509_get_subject_name(cert.get()));
  RETURN_IF_ERROR(add_ext(cert.get(), cert.get(), NID_basic_constraints, "critical,CA:TRUE,pathlen:0"));
  RETURN_IF_ERROR(add_ext(cert.get(), cert.get(), NID_key_usage, "critical,keyCertSign,cRLSign"));
  RETURN_IF_ERROR(add_ext(cert.get(), cert.get(), NID_subject_key_identifier, "hash"));
  if (X509_sign(cert.get(), key.get(), EVP_sha256()) == 0) return openssl_fail("signing the CA");
  return KeyAndCert{std::move(key), std::move(cert)};
}

Result<KeyAndCert> issue_cert(const KeyAndCert& ca, const CertSpec& spec) {
  if (spec.common_name.empty()) return Status::invalid_argument("a certificate needs a common name");
  ASSIGN_OR_RETURN(UniqueEvpPkey key, generate_key());
  ASSIGN_OR_RETURN(UniqueX509 cert,
                   new_cert(spec.common_name, key.get(), spec.not_before_seconds, spec.not_after_seconds));
  for (const std::string& cn : spec.extra_common_names) {
    if (X509_NAME_add_entry_by_NID(X509_get_subject_name(cert.get()), NID_commonName, MBSTRING_UTF8,
                                   reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0) != 1)
      return openssl_fail("certificate subject CN " + cn);
  }
  X509_set_issuer_name(cert.get(), X509_get_subject_name(ca.cert.get()));
  X509* c = cert.get();
  X509* issuer = ca.cert.get();
  RETURN_IF_ERROR(add_ext(c, issuer, NID_basic_constraints, "critical,CA:FALSE"));
  RETURN_IF_ERROR(add_ext(c, issuer, NID_key_usage, "critical,digitalSignature"));
  std::string eku;
  if (spec.server) eku = "serverAuth";
  if (spec.client) eku += eku.empty() ? "clientAuth" : ",clientAuth";
  if (!eku.empty()) RETURN_IF_ERROR(add_ext(c, issuer, NID_ext_key_usage, eku));
  std::string san;
  for (const std::string& d : spec.dns_names) san += (san.empty() ? "DNS:" : ",DNS:") + d;
  for (const std::string& ip : spec.ip_addresses) san += (san.empty() ? "IP:" : ",IP:") + ip;
  if (!san.empty()) RETURN_IF_ERROR(add_ext(c, issuer, NID_subject_alt_name, san));
  RETURN_IF_ERROR(add_ext(c, issuer, NID_subject_key_identifier, "hash"));
  RETURN_IF_ERROR(add_ext(c, issuer, NID_authority_key_identifier, "keyid:always"));
  if (X509_sign(c, ca.key.get(), EVP_sha256()) == 0)
    return openssl_fail("signing the certificate for " + spec.common_name);
  return KeyAndCert{std::move(key), std::move(cert)};
}

Status write_key_pem(const std::filesystem::path& path, EVP_PKEY* key) {
  return write_pem(path, 0600, [key](BIO* bio) {
    return PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
  });
}

Status write_cert_pem(const std::filesystem::path& path, X509* cert) {
  return write_pem(path, 0644, [cert](BIO* bio) { return PEM_write_bio_X509(bio, cert); });
}

Result<KeyAndCert> read_key_and_cert(const std::filesystem::path& key_path,
                                     const std::filesystem::path& cert_path) {
  ERR_clear_error();
  UniqueBio kb(BIO_new_file(key_path.c_str(), "r"));
  if (!kb) return Status::not_found("cannot open key " + key_path.string() + ": " + drain_openssl_errors());
  UniqueEvpPkey key(PEM_read_bio_PrivateKey(kb.get(), nullptr, nullptr, nullptr));
  if (!key) return Status::corruption("cannot read key " + key_path.string() + ": " + drain_openssl_errors());
  ASSIGN_OR_RETURN(UniqueX509 cert, read_cert_pem(cert_path));
  if (X509_check_private_key(cert.get(), key.get()) != 1)
    return Status::invalid_argument("key " + key_path.string() + " does not match certificate " +
                                    cert_path.string());
  return KeyAndCert{std::move(key), std::move(cert)};
}

Result<UniqueX509Crl> make_crl(const KeyAndCert& ca, const std::vector<const ASN1_INTEGER*>& serials,
                               int days) {
  UniqueX509Crl crl(X509_CRL_new());
  if (!crl) return openssl_fail("X509_CRL_new");
  std::unique_ptr<ASN1_TIME, decltype(&ASN1_TIME_free)> now(X509_gmtime_adj(nullptr, 0), ASN1_TIME_free);
  std::unique_ptr<ASN1_TIME, decltype(&ASN1_TIME_free)> next(
      X509_gmtime_adj(nullptr, static_cast<long>(std::int64_t{days} * 86400)), ASN1_TIME_free);
  if (!now || !next || X509_CRL_set_version(crl.get(), 1) != 1 ||  // v2
      X509_CRL_set_issuer_name(crl.get(), X509_get_subject_name(ca.cert.get())) != 1 ||
      X509_CRL_set1_lastUpdate(crl.get(), now.get()) != 1 ||
      X509_CRL_set1_nextUpdate(crl.get(), next.get()) != 1)
    return openssl_fail("CRL fields");
  for (const ASN1_INTEGER* serial : serials) {
    X509_REVOKED* r = X509_REVOKED_new();
    if (r == nullptr || X509_REVOKED_set_serialNumber(r, const_cast<ASN1_INTEGER*>(serial)) != 1 ||
        X509_REVOKED_set_revocationDate(r, now.get()) != 1 || X509_CRL_add0_revoked(crl.get(), r) != 1) {
      X509_REVOKED_free(r);
      return openssl_fail("CRL entry");
    }
  }
  if (X509_CRL_sort(crl.get()) != 1 || X509_CRL_sign(crl.get(), ca.key.get(), EVP_sha256()) == 0)
    return openssl_fail("signing the CRL");
  return crl;
}

Status write_crl_pem(const std::filesystem::path& path, X509_CRL* crl) {
  return write_pem(path, 0644, [crl](BIO* bio) { return PEM_write_bio_X509_CRL(bio, crl); });
}

Result<std::string> revoke_certificate(const std::filesystem::path& ca_key,
                                       const std::filesystem::path& ca_cert,
                                       const std::filesystem::path& cert_path,
                                       const std::filesystem::path& crl_path, int days) {
  if (days <= 0) return Status::invalid_argument("CRL validity must be positive days");
  ERR_clear_error();
  ASSIGN_OR_RETURN(KeyAndCert ca, read_key_and_cert(ca_key, ca_cert));
  ASSIGN_OR_RETURN(UniqueX509 cert, read_cert_pem(cert_path));
  if (X509_NAME_cmp(X509_get_issuer_name(cert.get()), X509_get_subject_name(ca.cert.get())) != 0)
    return Status::invalid_argument(cert_path.string() + " was not issued by the CA in " + ca_cert.string());
  // The serials already revoked stay revoked.
  UniqueX509Crl old;
  if (std::filesystem::exists(crl_path)) {
    UniqueBio rb(BIO_new_file(crl_path.c_str(), "r"));
    if (rb) old.reset(PEM_read_bio_X509_CRL(rb.get(), nullptr, nullptr, nullptr));
    if (!old)
      return Status::corruption("cannot read CRL " + crl_path.string() + ": " + drain_openssl_errors());
    if (X509_CRL_verify(old.get(), X509_get0_pubkey(ca.cert.get())) != 1)
      return Status::invalid_argument("CRL " + crl_path.string() + " is not signed by the CA in " +
                                      ca_cert.string());
  }
  std::vector<const ASN1_INTEGER*> serials;
  const ASN1_INTEGER* serial = X509_get0_serialNumber(cert.get());
  bool listed = false;
  STACK_OF(X509_REVOKED)* revoked = old ? X509_CRL_get_REVOKED(old.get()) : nullptr;
  for (int i = 0; i < sk_X509_REVOKED_num(revoked); ++i) {
    const ASN1_INTEGER* s = X509_REVOKED_get0_serialNumber(sk_X509_REVOKED_value(revoked, i));
    listed = listed || ASN1_INTEGER_cmp(s, serial) == 0;
    serials.push_back(s);
  }
  if (!listed) serials.push_back(serial);
  ASSIGN_OR_RETURN(UniqueX509Crl crl, make_crl(ca, serials, days));
  RETURN_IF_ERROR(write_crl_pem(crl_path, crl.get()));
  return describe_certificate(cert.get());
}

std::filesystem::path CertSet::host_cert(const std::string& host) const {
  return dir / ("host-" + host + ".pem");
}
std::filesystem::path CertSet::host_key(const std::string& host) const {
  return dir / ("host-" + host + ".key");
}

Result<CertSet> create_cert_set(const std::filesystem::path& dir, const CertSetOptions& options) {
  if (options.days <= 0) return Status::invalid_argument("--days must be positive");
  for (const std::string& h : options.hosts) {
    Status s = validate_namespace(h);
    if (!s.is_ok()) return Status::invalid_argument("host \"" + h + "\": " + s.message());
  }
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status::io_error("cannot create " + dir.string() + ": " + ec.message());
  ::chmod(dir.c_str(), 0700);

  CertSet set;
  set.dir = dir;
  set.ca_cert = dir / "ca.pem";
  set.ca_key = dir / "ca.key";
  set.receiver_cert = dir / "receiver.pem";
  set.receiver_key = dir / "receiver.key";
  set.crl = dir / "crl.pem";

  KeyAndCert ca;
  bool have_ca = std::filesystem::exists(set.ca_cert) && std::filesystem::exists(set.ca_key);
  if (have_ca && !options.reuse_ca)
    return Status::invalid_argument(set.ca_cert.string() + " exists; refusing to replace the CA");
  if (have_ca) {
    ASSIGN_OR_RETURN(ca, read_key_and_cert(set.ca_key, set.ca_cert));
  } else {
    ASSIGN_OR_RETURN(ca, make_ca("ferry CA", kDefaultCaDays));
    RETURN_IF_ERROR(write_key_pem(set.ca_key, ca.key.get()));
    RETURN_IF_ERROR(write_cert_pem(set.ca_cert, ca.cert.get()));
  }

  CertSpec rs;
  rs.common_name = "ferry-receiver";
  rs.server = true;
  rs.dns_names = {"localhost"};
  rs.ip_addresses = {"127.0.0.1", "::1"};
  for (const std::string& n : options.receiver_names) {
    if (n.empty() || n == "localhost" || n == "127.0.0.1" || n == "::1") continue;
    (is_ip(n) ? rs.ip_addresses : rs.dns_names).push_back(n);
  }
  rs.not_after_seconds = std::int64_t{options.days} * 86400;
  ASSIGN_OR_RETURN(KeyAndCert receiver, issue_cert(ca, rs));
  RETURN_IF_ERROR(write_key_pem(set.receiver_key, receiver.key.get()));
  RETURN_IF_ERROR(write_cert_pem(set.receiver_cert, receiver.cert.get()));

  for (const std::string& h : options.hosts) {
    CertSpec hs;
    hs.common_name = h;
    hs.client = true;
    hs.not_after_seconds = std::int64_t{options.days} * 86400;
    ASSIGN_OR_RETURN(KeyAndCert host, issue_cert(ca, hs));
    RETURN_IF_ERROR(write_key_pem(set.host_key(h), host.key.get()));
    RETURN_IF_ERROR(write_cert_pem(set.host_cert(h), host.cert.get()));
  }
  // A CRL that revokes nothing yet, so the receiver can run with --crl from
  // the start; `ferry certs --revoke` adds to it.
  if (!std::filesystem::exists(set.crl)) {
    ASSIGN_OR_RETURN(UniqueX509Crl crl, make_crl(ca, {}));
    RETURN_IF_ERROR(write_crl_pem(set.crl, crl.get()));
  }
  return set;
}

}  // namespace ferry::replication
