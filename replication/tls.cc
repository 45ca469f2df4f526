// tls.cc: OpenSSL contexts and memory-BIO sessions for ferry's mutually
// authenticated TLS 1.3 streams, and the translation of OpenSSL's failures
// into messages a user can act on ("certificate has expired", "peer sent no
// certificate", "peer does not speak TLS").
#include "replication/tls.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <memory>

#include "replication/limits.h"
#include "replication/protocol.h"

namespace ferry::replication {
namespace {

// AES-128-GCM first: as strong as the link needs and about a third faster
// than AES-256-GCM with AES-NI; the others for peers that prefer them.
constexpr const char* kCipherSuites =
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";

bool is_ip_address(const std::string& name) {
  unsigned char buf[sizeof(in6_addr)];
  return inet_pton(AF_INET, name.c_str(), buf) == 1 || inet_pton(AF_INET6, name.c_str(), buf) == 1;
}

// The subject CN, unvalidated; empty when there is none.
std::string subject_cn(X509* cert) {
  X509_NAME* name = X509_get_subject_name(cert);
  if (name == nullptr) return {};
  int idx = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
  if (idx < 0) return {};
  ASN1_STRING* data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx));
  unsigned char* utf8 = nullptr;
  int n = ASN1_STRING_to_UTF8(&utf8, data);
  if (n < 0) return {};
  std::string cn(reinterpret_cast<char*>(utf8), static_cast<std::size_t>(n));
  OPENSSL_free(utf8);
  return cn;
}

// The write side of a session: a BIO that appends the records OpenSSL
// writes to the session's out_ (its BIO data), which the connection takes
// whole (take_ciphertext_buffer). A memory BIO would cost a copy of every
// byte sent more: into the BIO, then out of it into the send buffer.
int sink_write(BIO* bio, const char* data, int len) {
  if (len <= 0) return 0;
  auto* out = static_cast<std::vector<std::byte>*>(BIO_get_data(bio));
  const auto* p = reinterpret_cast<const std::byte*>(data);
  out->insert(out->end(), p, p + len);
  return len;
}

long sink_ctrl(BIO* bio, int cmd, long num, void* ptr) {
  (void)num;
  (void)ptr;
  switch (cmd) {
    case BIO_CTRL_FLUSH:
      return 1;  // nothing is held back: every record is in out_ already
    case BIO_CTRL_WPENDING:
      return static_cast<long>(static_cast<std::vector<std::byte>*>(BIO_get_data(bio))->size());
    default:
      return 0;
  }
}

int sink_create(BIO* bio) {
  BIO_set_init(bio, 1);
  return 1;
}

// Made once, shared by every session, never freed.
BIO_METHOD* sink_method() {
  static BIO_METHOD* const method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "ferry ciphertext out");
    FERRY_CHECK(m != nullptr && BIO_meth_set_write(m, sink_write) == 1 &&
                BIO_meth_set_ctrl(m, sink_ctrl) == 1 && BIO_meth_set_create(m, sink_create) == 1);
    return m;
  }();
  return method;
}

// Certificate verification, as OpenSSL runs it, plus ferry's own rule for a
// host certificate (certificate_identity) on the receiver, so that a host
// whose certificate cannot name it is refused inside the handshake, with an
// alert it reports, rather than dropped after it. Records the refused
// certificate (the leaf, or a CA above it) in the session's
// refused_certificate_ for the failure message.
int verify_certificate(int ok, X509_STORE_CTX* store) {
  auto* ssl = static_cast<SSL*>(X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx()));
  auto* out = ssl != nullptr ? static_cast<TlsSession::Refusal*>(SSL_get_app_data(ssl)) : nullptr;
  X509* cert = X509_STORE_CTX_get_current_cert(store);
  if (out == nullptr || cert == nullptr) return ok;
  if (ok != 1) {
    if (out->text.empty()) out->text = describe_certificate(cert);
    return ok;
  }
  if (SSL_is_server(ssl) == 1 && X509_STORE_CTX_get_error_depth(store) == 0) {
    Result<std::string> id = certificate_identity(cert);
    if (!id.is_ok()) {
      *out = {id.status().message(), true};
      // "certificate rejected": the host hears a bad_certificate alert.
      X509_STORE_CTX_set_error(store, X509_V_ERR_CERT_REJECTED);
      return 0;
    }
  }
  return ok;
}

// Reads up to kMaxCrlFileBytes of PEM CRLs from `path` into the context's
// store, each checked against its CA's key and its nextUpdate, so a CRL that
// would refuse every peer fails at startup (or reload) instead.
Status load_crls(SSL_CTX* ctx, const std::string& path, const std::string& ca_file) {
  std::error_code ec;
  const auto bytes = std::filesystem::file_size(path, ec);
  if (ec) return Status::invalid_argument("cannot read CRL file " + path + ": " + ec.message());
  if (bytes > kMaxCrlFileBytes)
    return Status::invalid_argument("CRL file " + path + " is " + std::to_string(bytes) +
                                    " bytes, over the limit of " + std::to_string(kMaxCrlFileBytes));
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new_file(path.c_str(), "r"), BIO_free);
  if (!bio) return Status::invalid_argument("cannot open CRL file " + path + ": " + drain_openssl_errors());
  X509_STORE* store = SSL_CTX_get_cert_store(ctx);
  int loaded = 0;
  for (;;) {
    std::unique_ptr<X509_CRL, decltype(&X509_CRL_free)> crl(
        PEM_read_bio_X509_CRL(bio.get(), nullptr, nullptr, nullptr), X509_CRL_free);
    if (!crl) break;
    ++loaded;
    const std::string which = "CRL " + std::to_string(loaded) + " in " + path;
    // Its issuer must be a CA from ca_file, and the signature that CA's.
    bool signed_by_ca = false;
    STACK_OF(X509_OBJECT)* objects = X509_STORE_get0_objects(store);
    for (int i = 0; i < sk_X509_OBJECT_num(objects) && !signed_by_ca; ++i) {
      X509* ca = X509_OBJECT_get0_X509(sk_X509_OBJECT_value(objects, i));
      if (ca == nullptr || X509_NAME_cmp(X509_get_subject_name(ca), X509_CRL_get_issuer(crl.get())) != 0)
        continue;
      signed_by_ca = X509_CRL_verify(crl.get(), X509_get0_pubkey(ca)) == 1;
    }
    if (!signed_by_ca) return Status::invalid_argument(which + " is not signed by a CA in " + ca_file);
    const ASN1_TIME* next = X509_CRL_get0_nextUpdate(crl.get());
    if (next != nullptr && X509_cmp_current_time(next) < 0)
      return Status::invalid_argument(which +
                                      " has expired (past its nextUpdate); issue a new one with "
                                      "`ferry certs --revoke`");
    if (X509_STORE_add_crl(store, crl.get()) != 1)
      return Status::invalid_argument("cannot use " + which + ": " + drain_openssl_errors());
  }
  ERR_clear_error();  // the read past the last CRL
  if (loaded == 0) return Status::invalid_argument("CRL file " + path + " holds no PEM X509 CRL");
  X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK);
  return Status::ok();
}

bool is_cert_alert(int reason) {
  // Alerts 42..49 (bad/unsupported/revoked/expired/unknown certificate,
  // illegal parameter, unknown CA, access denied) and 116 (certificate
  // required), as OpenSSL reports them: SSL_AD_REASON_OFFSET + alert.
  int alert = reason - SSL_AD_REASON_OFFSET;
  return (alert >= 42 && alert <= 49) || alert == 116;
}

}  // namespace

std::string drain_openssl_errors() {
  std::string out;
  unsigned long e;
  while ((e = ERR_get_error()) != 0) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? "no OpenSSL error" : out;
}

std::string describe_certificate(X509* cert) {
  std::string out = "CN=" + subject_cn(cert);
  std::unique_ptr<BIGNUM, decltype(&BN_free)> bn(ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr),
                                                 BN_free);
  char* hex = bn ? BN_bn2hex(bn.get()) : nullptr;
  if (hex != nullptr) {
    out += std::string(" serial=0x") + hex;
    OPENSSL_free(hex);
  }
  return out;
}

Result<std::string> certificate_identity(X509* cert) {
  if (cert == nullptr) return Status::permission_denied("peer sent no certificate");
  std::string cn = subject_cn(cert);
  if (cn.empty()) return Status::permission_denied("certificate has no subject CN to name the host");
  X509_NAME* name = X509_get_subject_name(cert);
  if (X509_NAME_get_index_by_NID(name, NID_commonName,
                                 X509_NAME_get_index_by_NID(name, NID_commonName, -1)) >= 0)
    return Status::permission_denied("certificate " + describe_certificate(cert) +
                                     " has more than one subject CN; a host certificate names one host");
  if ((X509_get_extension_flags(cert) & EXFLAG_XKUSAGE) == 0 ||
      (X509_get_extended_key_usage(cert) & XKU_SSL_CLIENT) == 0)
    return Status::permission_denied("certificate " + describe_certificate(cert) +
                                     " lacks the clientAuth extended key usage a host certificate needs "
                                     "(issue host certificates with `ferry certs`)");
  Status s = validate_namespace(cn);
  if (!s.is_ok())
    return Status::permission_denied("certificate subject CN is not a valid host namespace: " + s.message());
  return cn;
}

Result<std::shared_ptr<const TlsContext>> TlsContext::create(const TlsConfig& config) {
  ERR_clear_error();
  bool server = config.role == TlsRole::kServer;
  UniqueSslCtx ctx(SSL_CTX_new(server ? TLS_server_method() : TLS_client_method()));
  if (!ctx) return Status::internal("SSL_CTX_new failed: " + drain_openssl_errors());
  if (SSL_CTX_set_min_proto_version(ctx.get(), TLS1_3_VERSION) != 1 ||
      SSL_CTX_set_max_proto_version(ctx.get(), TLS1_3_VERSION) != 1 ||
      SSL_CTX_set_ciphersuites(ctx.get(), kCipherSuites) != 1)
    return Status::unsupported("this OpenSSL cannot do TLS 1.3: " + drain_openssl_errors());
  if (config.ca_file.empty()) return Status::invalid_argument("TLS needs a CA file (--ca)");
  if (SSL_CTX_load_verify_locations(ctx.get(), config.ca_file.c_str(), nullptr) != 1)
    return Status::invalid_argument("cannot load CA certificates from " + config.ca_file + ": " +
                                    drain_openssl_errors());

  if (!config.crl_file.empty()) RETURN_IF_ERROR(load_crls(ctx.get(), config.crl_file, config.ca_file));

  std::string identity;
  bool want_cert = server || !config.no_client_certificate;
  if (want_cert) {
    if (config.cert_file.empty() || config.key_file.empty())
      return Status::invalid_argument(std::string(server ? "the receiver" : "a host") +
                                      " needs a certificate and a key (--cert, --key)");
    if (SSL_CTX_use_certificate_chain_file(ctx.get(), config.cert_file.c_str()) != 1)
      return Status::invalid_argument("cannot load certificate " + config.cert_file + ": " +
                                      drain_openssl_errors());
    if (SSL_CTX_use_PrivateKey_file(ctx.get(), config.key_file.c_str(), SSL_FILETYPE_PEM) != 1)
      return Status::invalid_argument("cannot load private key " + config.key_file + ": " +
                                      drain_openssl_errors());
    if (SSL_CTX_check_private_key(ctx.get()) != 1)
      return Status::invalid_argument("private key " + config.key_file + " does not match certificate " +
                                      config.cert_file);
    X509* own = SSL_CTX_get0_certificate(ctx.get());
    if (server || config.unchecked_client_certificate) {
      identity = subject_cn(own);
    } else {
      // Fail at startup, not at the receiver, when the CN cannot be a namespace.
      Result<std::string> id = certificate_identity(own);
      if (!id.is_ok())
        return Status::invalid_argument("host certificate " + config.cert_file + ": " +
                                        id.status().message());
      identity = *id;
    }
  }

  if (server) {
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, verify_certificate);
    // Tell clients which CA we accept, so they pick the right certificate.
    STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(config.ca_file.c_str());
    if (names != nullptr) SSL_CTX_set_client_CA_list(ctx.get(), names);
    // No session tickets: every connection authenticates in full, and a
    // client's first read after the handshake is the receiver's answer.
    SSL_CTX_set_num_tickets(ctx.get(), 0);
    SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_OFF);
  } else {
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, verify_certificate);
    SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_OFF);
  }
  SSL_CTX_set_options(ctx.get(), SSL_OP_NO_RENEGOTIATION);
  ERR_clear_error();
  return std::shared_ptr<const TlsContext>(new TlsContext(std::move(ctx), config, std::move(identity)));
}

TlsSession::TlsSession(std::shared_ptr<const TlsContext> ctx, UniqueSsl ssl, std::string peer_name)
    : ctx_(std::move(ctx)), ssl_(std::move(ssl)), peer_name_(std::move(peer_name)) {}

TlsSession::~TlsSession() = default;

Result<std::unique_ptr<TlsSession>> TlsSession::create(std::shared_ptr<const TlsContext> ctx,
                                                       std::string peer_name, std::string_view server_name) {
  ERR_clear_error();
  UniqueSsl ssl(SSL_new(ctx->get()));
  if (!ssl) return Status::internal("SSL_new failed: " + drain_openssl_errors());
  BIO* rbio = BIO_new(BIO_s_mem());
  BIO* wbio = BIO_new(sink_method());
  if (rbio == nullptr || wbio == nullptr) {
    BIO_free(rbio);
    BIO_free(wbio);
    return Status::exhausted("cannot allocate TLS buffers: " + drain_openssl_errors());
  }
  // An empty read BIO means "wait for more", not end of stream.
  BIO_set_mem_eof_return(rbio, -1);
  SSL_set_bio(ssl.get(), rbio, wbio);  // ssl owns both now

  if (ctx->role() == TlsRole::kServer) {
    SSL_set_accept_state(ssl.get());
  } else {
    std::string name(server_name.empty() ? std::string_view(ctx->config().expected_server_name)
                                         : server_name);
    if (name.empty()) return Status::invalid_argument("no receiver name to verify its certificate against");
    if (is_ip_address(name)) {
      if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl.get()), name.c_str()) != 1)
        return Status::invalid_argument("bad receiver address " + name);
    } else {
      if (SSL_set1_host(ssl.get(), name.c_str()) != 1 ||
          SSL_set_tlsext_host_name(ssl.get(), name.c_str()) != 1)
        return Status::invalid_argument("bad receiver name " + name + ": " + drain_openssl_errors());
    }
    SSL_set_connect_state(ssl.get());
  }
  auto session =
      std::unique_ptr<TlsSession>(new TlsSession(std::move(ctx), std::move(ssl), std::move(peer_name)));
  session->rbio_ = rbio;
  session->wbio_ = wbio;
  SSL_set_app_data(session->ssl_.get(), &session->refused_);
  BIO_set_data(wbio, &session->out_);  // before any record is written
  return session;
}

Status TlsSession::failure(int ret, std::string_view what) {
  int err = SSL_get_error(ssl_.get(), ret);
  unsigned long first = ERR_peek_error();
  int reason = first != 0 ? ERR_GET_REASON(first) : 0;
  std::string detail = drain_openssl_errors();
  std::string prefix = std::string(what) + " with " + peer_name_ + " failed: ";
  bool server = ctx_->role() == TlsRole::kServer;

  if (err == SSL_ERROR_ZERO_RETURN) return Status::unavailable(peer_name_ + " closed the connection");
  if (err == SSL_ERROR_SYSCALL && first == 0)
    return Status::unavailable(prefix + "the connection ended without a TLS close");
  long verify = SSL_get_verify_result(ssl_.get());
  if (reason == SSL_R_CERTIFICATE_VERIFY_FAILED && verify != X509_V_OK) {
    if (refused_.identity) return Status::permission_denied(prefix + refused_.text);
    std::string whose = server ? "the host's certificate" : "the receiver's certificate";
    if (!refused_.text.empty()) whose += " " + refused_.text;
    return Status::permission_denied(
        prefix + "certificate verify failed: " + X509_verify_cert_error_string(verify) + " (" + whose + ")");
  }
  if (reason == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE)
    return Status::permission_denied(prefix + "peer sent no certificate");
  if (reason == SSL_R_HTTP_REQUEST || reason == SSL_R_HTTPS_PROXY_REQUEST ||
      reason == SSL_R_WRONG_VERSION_NUMBER || reason == SSL_R_UNSUPPORTED_PROTOCOL ||
      reason == SSL_R_PACKET_LENGTH_TOO_LONG)
    return Status::unsupported(prefix + "peer does not speak TLS 1.3 (" + detail + ")");
  if (reason > SSL_AD_REASON_OFFSET && reason < SSL_AD_REASON_OFFSET + 256) {
    const char* text = ERR_reason_error_string(first);
    std::string alert = text != nullptr ? text : detail;
    if (is_cert_alert(reason))
      return Status::permission_denied(prefix + "the " + (server ? "host" : "receiver") +
                                       " refused our certificate (" + alert + ")");
    return Status::unavailable(prefix + "peer sent alert: " + alert);
  }
  if (reason == SSL_R_DECRYPTION_FAILED_OR_BAD_RECORD_MAC)
    return Status::unavailable(prefix + "a TLS record failed authentication (damaged in transit)");
  if (reason == SSL_R_UNEXPECTED_EOF_WHILE_READING)
    return Status::unavailable(prefix + "the connection ended without a TLS close");
  return Status::unavailable(prefix + detail);
}

Result<bool> TlsSession::handshake() {
  if (handshake_done_) return true;
  ERR_clear_error();
  int ret = SSL_do_handshake(ssl_.get());
  if (ret != 1) {
    int err = SSL_get_error(ssl_.get(), ret);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return false;
    return failure(ret, "TLS handshake");
  }
  X509* peer = SSL_get0_peer_certificate(ssl_.get());
  if (ctx_->role() == TlsRole::kServer) {
    Result<std::string> id = certificate_identity(peer);
    if (!id.is_ok())
      return Status(id.status().code(),
                    "TLS handshake with " + peer_name_ + " refused: " + id.status().message());
    peer_identity_ = *id;
  } else {
    peer_identity_ = peer != nullptr ? subject_cn(peer) : std::string();
  }
  handshake_done_ = true;
  return true;
}

Status TlsSession::feed_ciphertext(std::span<const std::byte> data) {
  std::size_t done = 0;
  while (done < data.size()) {
    std::size_t wrote = 0;
    if (BIO_write_ex(rbio_, data.data() + done, data.size() - done, &wrote) != 1 || wrote == 0)
      return Status::exhausted("cannot buffer ciphertext from " + peer_name_ + ": " + drain_openssl_errors());
    done += wrote;
  }
  return Status::ok();
}

std::size_t TlsSession::pending_ciphertext() const { return out_.size() - out_taken_; }

std::size_t TlsSession::take_ciphertext(std::span<std::byte> out) {
  const std::size_t n = std::min(out.size(), pending_ciphertext());
  std::copy_n(out_.begin() + static_cast<std::ptrdiff_t>(out_taken_), n, out.begin());
  out_taken_ += n;
  if (out_taken_ == out_.size()) {
    out_.clear();
    out_taken_ = 0;
  }
  return n;
}

void TlsSession::take_ciphertext_buffer(std::vector<std::byte>& buffer) {
  if (out_taken_ > 0) {
    out_.erase(out_.begin(), out_.begin() + static_cast<std::ptrdiff_t>(out_taken_));
    out_taken_ = 0;
  }
  buffer.swap(out_);
  out_.clear();
}

Result<std::size_t> TlsSession::read_plaintext(std::span<std::byte> out) {
  if (out.empty()) return std::size_t{0};
  ERR_clear_error();
  std::size_t got = 0;
  int ret = SSL_read_ex(ssl_.get(), out.data(), out.size(), &got);
  if (ret == 1) return got;
  int err = SSL_get_error(ssl_.get(), ret);
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return std::size_t{0};
  return failure(ret, "TLS read");
}

bool TlsSession::has_buffered_input() const {
  return SSL_has_pending(ssl_.get()) == 1 || BIO_ctrl_pending(rbio_) > 0;
}

Status TlsSession::write_plaintext(std::span<const std::byte> data) {
  ERR_clear_error();
  std::size_t done = 0;
  while (done < data.size()) {
    std::size_t wrote = 0;
    int ret = SSL_write_ex(ssl_.get(), data.data() + done, data.size() - done, &wrote);
    if (ret != 1) return failure(ret, "TLS write");
    done += wrote;
  }
  return Status::ok();
}

void TlsSession::shutdown() {
  ERR_clear_error();
  if (handshake_done_) SSL_shutdown(ssl_.get());
  ERR_clear_error();
}

std::string TlsSession::cipher_description() const {
  const char* version = SSL_get_version(ssl_.get());
  const char* cipher = SSL_get_cipher_name(ssl_.get());
  return std::string(version ? version : "?") + " " + (cipher ? cipher : "?");
}

}  // namespace ferry::replication
