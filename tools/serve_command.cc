// serve_command.cc: `ferry serve`: the DR receiver. Opens (and recovers) the
// chunk store, listens for mutually authenticated TLS connections and serves
// the replication protocol until SIGINT or SIGTERM, then stops accepting,
// closes every connection and exits cleanly. SIGHUP reloads the TLS files
// (the --crl above all) for new handshakes. It prints "ferry serve:
// listening on ADDR" once it accepts connections, with the real port when
// --listen asked for port 0 (tests and the demo read it).
#include <signal.h>

#include <cstdio>

#include "base/metrics_server.h"
#include "replication/receiver.h"
#include "replication/receiver_metrics.h"
#include "store/open_store.h"
#include "store/s3_store.h"
#include "tools/cli.h"

namespace ferry::cli {
namespace {

std::string FLAGS_listen = "127.0.0.1:7443";
bool FLAGS_append_only = false;
std::uint64_t FLAGS_quota_bytes = 0;
std::uint64_t FLAGS_max_connections = replication::kDefaultMaxConnections;
int FLAGS_idle_timeout_s = replication::kDefaultIdleTimeoutMs / 1000;
std::string FLAGS_metrics_listen;
std::uint64_t FLAGS_max_connections_per_namespace = replication::kDefaultMaxConnectionsPerNamespace;
int FLAGS_crl_reload_s = replication::kDefaultCrlReloadIntervalMs / 1000;
std::int64_t FLAGS_s3_object_lock_days = 0;
std::string FLAGS_s3_spool;

void define_serve(CLI::App& app) {
  add_store(app, "the store directory (created if missing), or s3://BUCKET/PREFIX");
  add_s3(app, true);
  add_tls(app);
  app.add_option("--listen", FLAGS_listen, "HOST:PORT to listen on (port 0: any free port)")
      ->capture_default_str();
  app.add_flag("--append_only", FLAGS_append_only, "hosts may not delete or prune snapshots");
  app.add_option("--quota_bytes", FLAGS_quota_bytes, "per-namespace limit on stored bytes (0: none)");
  app.add_option("--s3_object_lock_days", FLAGS_s3_object_lock_days,
                 "with --store=s3://...: retain every object written for N days with S3 Object Lock "
                 "(COMPLIANCE; the bucket must have been made with Object Lock)");
  app.add_option("--s3_spool", FLAGS_s3_spool,
                 "with --store=s3://...: a directory on this host's disk where group commits make chunks "
                 "durable until a pack of --s3_pack_size is full (or a snapshot commits), so that packs "
                 "reach the bucket full; without it, every group commit uploads a pack, full or not");
  app.add_option("--max_connections", FLAGS_max_connections,
                 "connections served at once; more are refused with an error")
      ->capture_default_str();
  app.add_option("--metrics_listen", FLAGS_metrics_listen,
                 "HOST:PORT to serve Prometheus /metrics on (port 0: any free port; \"\": off)");
  app.add_option("--max_connections_per_namespace", FLAGS_max_connections_per_namespace,
                 "connections one host (certificate CN) may hold at once; more are refused with an error")
      ->capture_default_str();
  app.add_option(
         "--crl_reload_s", FLAGS_crl_reload_s,
         "with --crl, how often to check the CRL file and reload it when it changed (0: only at SIGHUP)")
      ->capture_default_str();
  app.add_option("--idle_timeout_s", FLAGS_idle_timeout_s,
                 "close a connection that sends nothing for this long")
      ->capture_default_str();
}

int run_serve(const std::vector<std::string>&) {
  if (Status st = apply_s3_flags(); !st) return usage_error(st.message());
  if (settings().store.empty()) return usage_error("serve needs --store=DIR or --store=s3://BUCKET/PREFIX");
  auto tls = tls_from_flags("serve");
  if (!tls) return usage_error(tls.status().message());
  if (FLAGS_max_connections == 0) return usage_error("--max_connections must be > 0");
  if (FLAGS_idle_timeout_s <= 0) return usage_error("--idle_timeout_s must be > 0");
  if (FLAGS_max_connections_per_namespace == 0)
    return usage_error("--max_connections_per_namespace must be > 0");
  if (FLAGS_crl_reload_s < 0) return usage_error("--crl_reload_s must be >= 0");

  // Block the signals before any thread starts, so that every thread
  // inherits the mask and only sigwait below sees them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  StoreOptions store_options;
  store_options.append_only = FLAGS_append_only;
  store_options.quota_bytes = FLAGS_quota_bytes;
  if (settings().s3_pack_size != 0) store_options.object_pack_target_bytes = settings().s3_pack_size;
  store_options.object_lock_days = FLAGS_s3_object_lock_days;
  if (FLAGS_s3_object_lock_days != 0 && !is_s3_url(settings().store))
    return usage_error("--s3_object_lock_days needs --store=s3://BUCKET/PREFIX");
  if (!FLAGS_s3_spool.empty() && !is_s3_url(settings().store))
    return usage_error("--s3_spool needs --store=s3://BUCKET/PREFIX");
  store_options.object_spool_dir = FLAGS_s3_spool;
  auto store = open_store(settings().store, store_options);  // a directory or s3://BUCKET/PREFIX
  if (!store) return fail(store.status());

  replication::ReceiverOptions options;
  options.listen = FLAGS_listen;
  options.tls = *tls;
  options.max_connections = FLAGS_max_connections;
  options.max_connections_per_namespace = FLAGS_max_connections_per_namespace;
  options.crl_reload_interval_ms = FLAGS_crl_reload_s * 1000;
  options.idle_timeout_ms = FLAGS_idle_timeout_s * 1000;
  options.append_only = FLAGS_append_only;
  replication::Receiver receiver(**store, options);
  Status st = receiver.start();
  if (!st) return fail(st);
  // Declared after the receiver and store, so it stops serving before they go.
  Metrics metrics;
  std::unique_ptr<MetricsServer> metrics_server;
  if (!FLAGS_metrics_listen.empty()) {
    replication::export_receiver_metrics(metrics, receiver, **store);
    auto server = MetricsServer::start(FLAGS_metrics_listen, metrics);
    if (!server) return fail(server.status().with_context("--metrics_listen"));
    metrics_server = std::move(server).value();
    const std::string host = FLAGS_metrics_listen.substr(0, FLAGS_metrics_listen.rfind(':'));
    std::printf("ferry serve: metrics on http://%s:%d/metrics\n", host.c_str(), metrics_server->port());
  }
  std::printf("ferry serve: listening on %s (store %s%s)\n", receiver.address().to_string().c_str(),
              settings().store.c_str(), FLAGS_append_only ? ", append-only" : "");
  std::fflush(stdout);

  int sig = 0;
  for (;;) {
    if (sigwait(&signals, &sig) != 0) continue;
    if (sig != SIGHUP) break;
    // New handshakes use the files as they are now (a new CRL, a renewed
    // certificate); the receiver logs the outcome.
    (void)receiver.reload_tls();
  }
  std::fprintf(stderr, "ferry serve: %s received, shutting down\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
  metrics_server.reset();
  receiver.stop();
  const replication::ReceiverStats s = receiver.stats();
  std::fprintf(stderr,
               "ferry serve: stopped after %llu connections (%llu refused), %llu chunks received, %llu "
               "snapshots committed, %llu chunks served\n",
               static_cast<unsigned long long>(s.connections_accepted),
               static_cast<unsigned long long>(s.connections_refused),
               static_cast<unsigned long long>(s.puts), static_cast<unsigned long long>(s.commits),
               static_cast<unsigned long long>(s.chunks_served));
  return kExitOk;
}

Registrar registrar(
    {"serve",
     "serve --store=DIR|s3://BUCKET/PREFIX --ca=ca.pem --cert=receiver.pem --key=receiver.key "
     "[--listen=127.0.0.1:7443] [--append_only] [--quota_bytes=N] [--max_connections=N] "
     "[--max_connections_per_namespace=N] [--crl=crl.pem] [--crl_reload_s=N] "
     "[--metrics_listen=HOST:PORT]",
     "run the DR receiver: mTLS, verified chunk store, snapshots", define_serve, run_serve});

}  // namespace
}  // namespace ferry::cli
