// The HTTP front door (Boost.Beast on an Asio thread pool): /metrics (Prometheus text format),
// /healthz (live), /readyz (ready: false while loading or draining), and the OpenAI-compatible
// /v1/completions (JSON or SSE streaming, logprobs, echo) and /v1/models. Authentication and
// errors match the gRPC API: a tenant's API key as "Authorization: Bearer", OpenAI-style error
// bodies with 400/401/403/404/429/503.
// Hostile clients are bounded: a request (headers and body) must arrive within
// `read_timeout_ms` (slowloris), headers within `max_header_bytes` (431), bodies within
// `max_body_bytes` (413); at most `max_connections` are served at once (503 beyond); a client
// that disconnects cancels its generation at once.
// Ownership: borrows the ServiceState (and its metrics), which must outlive Stop.
// Thread-safety: Start and Stop from one thread; everything else runs on the server's threads.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "server/service_state.h"

namespace para::server {

struct HttpOptions {
  std::string host = "0.0.0.0";
  int port = 8080;  // 0 = pick a free one
  int threads = 2;
  int64_t max_header_bytes = 16 << 10;
  int64_t max_body_bytes = 4 << 20;
  int read_timeout_ms = 10'000;   // to receive one whole request, from its first wait
  int write_timeout_ms = 60'000;  // for one write to a client to complete
  int max_connections = 1024;
  // What the listener serves: everything (kAll, the default), everything but /metrics (kPublic,
  // when metrics have a listener of their own), or only /metrics, /healthz and /readyz
  // (kMetricsOnly: that listener, which needs no key and so belongs on a private network).
  enum class Routes { kAll, kPublic, kMetricsOnly };
  Routes routes = Routes::kAll;
};

class HttpServer {
 public:
  HttpServer(ServiceState* state, HttpOptions options);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds, listens and starts the threads; returns the bound port.
  absl::StatusOr<int> Start();
  // Stops accepting, gives responses in progress up to `grace_ms` to finish writing, then closes
  // every connection and joins the threads.
  void Stop(int grace_ms = 500);

  int64_t open_connections() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace para::server
