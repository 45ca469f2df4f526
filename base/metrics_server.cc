// metrics_server.cc: see metrics_server.h.
#include "base/metrics_server.h"

#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <memory>
#include <thread>

#ifdef FERRY_HAVE_HTTPLIB
#include <httplib.h>
#endif

namespace ferry {

#ifdef FERRY_HAVE_HTTPLIB
namespace {

// Threads that answer scrapes; a scrape is one render() and one write.
constexpr int kMetricsServerThreads = 2;
constexpr int kMetricsKeepAliveSeconds = 1;
constexpr int kMetricsIoTimeoutSeconds = 2;
constexpr const char* kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";

}  // namespace

struct MetricsServer::Impl {
  httplib::Server server;
  std::thread thread;
};

MetricsServer::MetricsServer(std::unique_ptr<Impl> impl, int port) : impl_(std::move(impl)), port_(port) {}

MetricsServer::~MetricsServer() {
  impl_->server.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

Result<std::unique_ptr<MetricsServer>> MetricsServer::start(const std::string& listen, Metrics& metrics) {
  auto colon = listen.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return Status::invalid_argument("metrics address '" + listen + "': want HOST:PORT");
  }
  std::string host = listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  std::string port_text = listen.substr(colon + 1);
  int port = -1;
  auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || end != port_text.data() + port_text.size() || port < 0 || port > 65535) {
    return Status::invalid_argument("metrics address '" + listen + "': bad port '" + port_text + "'");
  }

  auto impl = std::make_unique<Impl>();
  httplib::Server& s = impl->server;
  s.new_task_queue = [] { return new httplib::ThreadPool(kMetricsServerThreads); };
  // Short timeouts: an idle or slow scraper holds a server thread, and
  // shutdown waits for it.
  s.set_keep_alive_timeout(kMetricsKeepAliveSeconds);
  s.set_read_timeout(kMetricsIoTimeoutSeconds, 0);
  s.set_write_timeout(kMetricsIoTimeoutSeconds, 0);
  // httplib's default adds SO_REUSEPORT, which would let a second agent
  // share the port silently; a taken port must be an error.
  s.set_socket_options([](int sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  s.Get("/metrics", [&metrics](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics.render(), kMetricsContentType);
  });
  s.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (res.status == 404) {
      res.set_content("not found: " + req.path + " (metrics are at /metrics)\n", "text/plain");
    }
  });

  int bound = port;
  if (port == 0) {
    bound = s.bind_to_any_port(host);
    if (bound <= 0) bound = -1;
  } else if (!s.bind_to_port(host, port)) {
    bound = -1;
  }
  if (bound < 0) {
    int err = errno;
    return Status::from_errno(err, "metrics: cannot listen on " + listen);
  }
  auto exited = std::make_shared<std::atomic<bool>>(false);
  impl->thread = std::thread([srv = &s, exited] {
    srv->listen_after_bind();
    exited->store(true);
  });
  // stop() is a no-op until the listener runs; wait for it so the destructor
  // can always unblock it.
  while (!s.is_running()) {
    if (exited->load()) {
      impl->thread.join();
      return Status::internal("metrics: listener on " + listen + " stopped at start");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return std::unique_ptr<MetricsServer>(new MetricsServer(std::move(impl), bound));
}

#else  // a static build without a cpp-httplib archive

struct MetricsServer::Impl {};

MetricsServer::MetricsServer(std::unique_ptr<Impl> impl, int port) : impl_(std::move(impl)), port_(port) {}
MetricsServer::~MetricsServer() = default;

Result<std::unique_ptr<MetricsServer>> MetricsServer::start(const std::string& listen, Metrics&) {
  return Status::unsupported("metrics endpoint " + listen +
                             ": this ferry was built statically without cpp-httplib; "
                             "use a dynamically linked build or --metrics_listen=\"\"");
}

#endif

}  // namespace ferry
