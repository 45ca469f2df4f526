// tls.h: TLS 1.3 with mutual certificate authentication for ferry's
// replication streams, as RAII wrappers over OpenSSL. The kernel here has no
// kTLS, so a TlsSession runs OpenSSL over in-memory BIOs: the caller feeds
// received ciphertext in (a memory BIO), takes ciphertext out to send (the
// records land in a buffer the caller takes whole, without a copy), and
// reads and writes plaintext; moving the ciphertext is the connection's job
// (connection.h).
//
// Identity: a client's namespace at the receiver is the subject CN of its
// certificate, which must be the subject's only CN, match
// [A-Za-z0-9._-]{1,64}, and carry the clientAuth extended key usage. Both
// certificates must chain to the one CA in TlsConfig::ca_file, and neither
// may be on the CRL in TlsConfig::crl_file when one is given. The client
// checks the receiver's certificate against expected_server_name (a DNS SAN,
// or an IP SAN when the name is an address).
#pragma once

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace ferry::replication {

struct SslCtxDeleter {
  void operator()(SSL_CTX* p) const { SSL_CTX_free(p); }
};
struct SslDeleter {
  void operator()(SSL* p) const { SSL_free(p); }
};
struct X509Deleter {
  void operator()(X509* p) const { X509_free(p); }
};
struct EvpPkeyDeleter {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
using UniqueSslCtx = std::unique_ptr<SSL_CTX, SslCtxDeleter>;
using UniqueSsl = std::unique_ptr<SSL, SslDeleter>;
using UniqueX509 = std::unique_ptr<X509, X509Deleter>;
using UniqueEvpPkey = std::unique_ptr<EVP_PKEY, EvpPkeyDeleter>;

// OpenSSL's error queue as one line ("error:0A000086:SSL routines::certificate
// verify failed; ..."), emptied; "no OpenSSL error" when it is empty.
std::string drain_openssl_errors();

enum class TlsRole { kServer, kClient };

struct TlsConfig {
  std::string ca_file;    // PEM: the CA both sides' certificates chain to
  std::string cert_file;  // PEM: this side's certificate (chain allowed)
  std::string key_file;   // PEM: its private key
  TlsRole role = TlsRole::kClient;
  // Client: the receiver's name as its certificate must state it (DNS or IP
  // SAN). Empty: the host part of the address being dialled is used.
  std::string expected_server_name;
  // Tests only: a client without a certificate (to prove the receiver
  // refuses it). cert_file and key_file are then ignored.
  bool no_client_certificate = false;
  // Tests only: a client whose certificate could not name a host (two CNs,
  // no clientAuth) sends it anyway, to prove the receiver refuses it.
  bool unchecked_client_certificate = false;
  // PEM: certificate revocation lists signed by the CA (empty: none). A peer
  // certificate on one is refused, naming its CN and serial.
  std::string crl_file;
};

// One SSL_CTX, shared by every connection of a process (thread-safe once
// built). Loads and checks the CA, certificate and key at creation, so a bad
// path or a key that does not match its certificate fails at startup.
class TlsContext {
 public:
  static Result<std::shared_ptr<const TlsContext>> create(const TlsConfig& config);

  SSL_CTX* get() const { return ctx_.get(); }
  const TlsConfig& config() const { return config_; }
  TlsRole role() const { return config_.role; }
  // The local certificate's subject CN ("" for a client without one).
  const std::string& local_identity() const { return local_identity_; }

 private:
  TlsContext(UniqueSslCtx ctx, TlsConfig config, std::string identity)
      : ctx_(std::move(ctx)), config_(std::move(config)), local_identity_(std::move(identity)) {}
  UniqueSslCtx ctx_;
  TlsConfig config_;
  std::string local_identity_;
};

// The subject CN of `cert`, validated as a namespace (validate_namespace):
// PermissionDenied for none, more than one, an invalid one, or a
// certificate without the clientAuth extended key usage.
Result<std::string> certificate_identity(X509* cert);
// "CN=alpha serial=0x1F2E" for messages about a certificate.
std::string describe_certificate(X509* cert);

// One TLS session over memory BIOs. Not thread-safe; one owner.
class TlsSession {
 public:
  // peer_name names the other side in messages ("10.0.0.5:7700").
  // server_name (client role): overrides the context's expected_server_name.
  static Result<std::unique_ptr<TlsSession>> create(std::shared_ptr<const TlsContext> ctx,
                                                    std::string peer_name, std::string_view server_name = {});
  ~TlsSession();
  TlsSession(const TlsSession&) = delete;
  TlsSession& operator=(const TlsSession&) = delete;

  // Advances the handshake with the ciphertext fed so far. true: complete
  // (and, on the server, the client's identity is known); false: it needs
  // more ciphertext from the peer (send pending output first). A failure is
  // PermissionDenied for refused certificates, Unavailable or Corruption for
  // a peer that does not speak TLS, with OpenSSL's reason in user terms.
  Result<bool> handshake();
  bool handshake_done() const { return handshake_done_; }

  // Ciphertext received from the peer. Never refuses (the memory BIO grows);
  // the caller bounds what it feeds by reading plaintext out in between.
  Status feed_ciphertext(std::span<const std::byte> data);
  // Ciphertext waiting to be sent.
  std::size_t pending_ciphertext() const;
  // Moves up to out.size() bytes of pending ciphertext into `out`.
  std::size_t take_ciphertext(std::span<std::byte> out);
  // Hands over all pending ciphertext without copying it: `buffer` (its
  // contents are dropped, its capacity kept) and the buffer the records
  // were written into trade places, so TLS writes on into the old one while
  // the caller sends from `buffer`.
  void take_ciphertext_buffer(std::vector<std::byte>& buffer);

  // Plaintext. read: bytes read; 0 means more ciphertext is needed. A peer's
  // close_notify is Unavailable ("closed the connection"); an alert is
  // PermissionDenied or Unavailable with its text.
  Result<std::size_t> read_plaintext(std::span<std::byte> out);
  // Whether ciphertext fed in or plaintext decrypted is still waiting to be
  // read out (read_plaintext may then return bytes without more input).
  bool has_buffered_input() const;
  // Encrypts all of `data` into pending ciphertext (the caller sends it).
  Status write_plaintext(std::span<const std::byte> data);
  // Queues a close_notify (best effort).
  void shutdown();

  // After the handshake: the peer certificate's identity (server side: the
  // client's namespace; client side: the receiver's CN).
  const std::string& peer_identity() const { return peer_identity_; }
  const std::string& peer_name() const { return peer_name_; }
  // "TLSv1.3 TLS_AES_256_GCM_SHA384".
  std::string cipher_description() const;

  // The certificate verification refused (describe_certificate), or, with
  // `identity`, why certificate_identity refused the host's; set by the
  // verify callback (tls.cc), which reaches it as the SSL's app data.
  struct Refusal {
    std::string text;
    bool identity = false;
  };

 private:
  TlsSession(std::shared_ptr<const TlsContext> ctx, UniqueSsl ssl, std::string peer_name);
  // The Status for a failed SSL_* call returning `ret`, in user terms.
  Status failure(int ret, std::string_view what);

  std::shared_ptr<const TlsContext> ctx_;
  UniqueSsl ssl_;
  BIO* rbio_ = nullptr;  // owned by ssl_
  BIO* wbio_ = nullptr;  // owned by ssl_; appends what TLS writes to out_
  // Ciphertext to send (records as written); out_taken_ bytes of it already
  // went through take_ciphertext.
  std::vector<std::byte> out_;
  std::size_t out_taken_ = 0;
  std::string peer_name_;
  std::string peer_identity_;
  Refusal refused_;
  bool handshake_done_ = false;
};

}  // namespace ferry::replication
