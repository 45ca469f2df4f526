// metrics_server.h: serves a Metrics registry (base/metrics.h) on GET
// /metrics over HTTP (cpp-httplib) and 404 on every other path: the
// endpoint Prometheus scrapes on the agent (--metrics_listen) and on the
// receiver (`ferry serve --metrics_listen`).
#pragma once

#include <memory>
#include <string>

#include "base/metrics.h"
#include "base/status.h"

namespace ferry {

// Serves GET /metrics from a Metrics it does not own (which must outlive it).
class MetricsServer {
 public:
  // listen: "HOST:PORT" ("[::1]:PORT" for IPv6); port 0 picks a free port.
  static Result<std::unique_ptr<MetricsServer>> start(const std::string& listen, Metrics& metrics);
  ~MetricsServer();  // stops serving and joins the server thread
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  int port() const { return port_; }

  struct Impl;

 private:
  explicit MetricsServer(std::unique_ptr<Impl> impl, int port);
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
};

}  // namespace ferry
