// para-server: the gRPC front door. Loads the model and the tenants' adapters, runs the engine
// loop on its own thread, serves para.v1.Generation, para.v1.Admin and the TGIS-compatible
// fmaas.GenerationService with grpc.health.v1 and server reflection, and drains on SIGTERM/SIGINT:
// health turns NOT_SERVING, new requests get UNAVAILABLE, in-flight requests finish (up to
// --drain_grace_seconds), then it exits 0. Flags may be written with dashes or underscores
// (--kv-cache-blocks = --kv_cache_blocks).
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/flag_help.h"
#include "common/flag_spelling.h"
#include "common/status_macros.h"
#include "engine/engine.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "scheduler/engine_loop.h"
#include "server/admin_service.h"
#include "server/generation_service.h"
#include "server/http_server.h"
#include "server/metrics.h"
#include "server/service_state.h"
#include "server/tenants.h"
#include "server/tgis_service.h"

ABSL_FLAG(std::string, model, "", "Hugging Face LLaMA model directory (required)");
ABSL_FLAG(std::string, config, "",
          "tenants configuration JSON: API keys, adapters, weights, limits (required)");
ABSL_FLAG(std::string, host, "0.0.0.0", "address to listen on");
ABSL_FLAG(int32_t, port, 50051, "gRPC port (0 = pick a free one; the chosen port is printed)");
ABSL_FLAG(std::string, port_file, "",
          "write the bound port to this file once serving (for tests and scripts)");
ABSL_FLAG(int32_t, block_size, 16, "KV cache positions per block");
ABSL_FLAG(int32_t, kv_cache_blocks, 0, "KV cache size in blocks (0 = from --kv_cache_bytes)");
ABSL_FLAG(int64_t, kv_cache_bytes, int64_t{1} << 30, "KV cache budget in bytes");
ABSL_FLAG(int32_t, threads, 0, "compute threads (0 = all cores)");
ABSL_FLAG(std::string, device, "auto", "compute device: auto, cpu or cuda");
ABSL_FLAG(bool, device_sampling, true,
          "sample on the compute device when it can (cuda): only tokens and log-probs come back");
ABSL_FLAG(
    std::string, dtype, "auto",
    "weights in memory: auto (as stored, memory-mapped), f32, bf16 or f16 (converted at load)");
ABSL_FLAG(bool, enable_prefix_caching, true,
          "keep full prompt blocks after requests end and reuse them for later requests with the "
          "same prefix and adapter version (PARA: identical whole prompts)");
ABSL_FLAG(std::string, kv_cache_dtype, "auto",
          "KV cache elements: auto (f16 for 16-bit weights, else f32), f32, f16 or bf16");
ABSL_FLAG(int64_t, max_model_len, 0, "context limit (0 = max_position_embeddings)");
ABSL_FLAG(int32_t, max_lora_rank, 64, "largest LoRA rank accepted");
ABSL_FLAG(int32_t, max_num_seqs, 256, "running sequences per step at most");
ABSL_FLAG(int64_t, max_batched_tokens, 8192, "new tokens per step at most");
ABSL_FLAG(int32_t, max_loras, 0, "distinct LoRA adapters per step (0 = no limit)");
ABSL_FLAG(
    int64_t, adapter_drain_after_ms, 200,
    "a request waiting this long for its adapter to fit the device tier (or a LoRA slot) stops "
    "admissions of other adapters until it runs");
ABSL_FLAG(int32_t, max_waiting, 10000, "queued requests, all tenants (beyond: RESOURCE_EXHAUSTED)");
ABSL_FLAG(int32_t, max_waiting_per_tenant, 1000,
          "queued requests per tenant (beyond: RESOURCE_EXHAUSTED)");
ABSL_FLAG(int32_t, max_message_bytes, 4 << 20, "largest gRPC message accepted or sent");
ABSL_FLAG(int64_t, max_prompt_bytes, 1 << 20, "largest prompt text accepted");
ABSL_FLAG(int64_t, max_response_logprobs, 1 << 17,
          "log-probabilities one response may carry (tokens x (1 + top-n), generated and "
          "prompt); requests asking for more are refused before they run");
ABSL_FLAG(int32_t, prepare_threads, 2,
          "threads that tokenize prompts longer than --inline_prompt_bytes (so that the request "
          "threads every tenant shares are not held by one tenant's long prompts)");
ABSL_FLAG(int64_t, inline_prompt_bytes, 16 << 10,
          "prompts up to this long are tokenized at once on the request thread");
ABSL_FLAG(int32_t, drain_grace_seconds, 30,
          "on SIGTERM, how long in-flight requests may take to finish");
ABSL_FLAG(std::string, adapter_root, "",
          "directory every adapter path must resolve inside (empty = --adapter-dir if set, else "
          "the --config file's directory)");
ABSL_FLAG(std::string, adapter_dir, "",
          "adapters loaded on first use: a request from tenant T for an adapter N that is not "
          "loaded loads DIR/T/N (inside --adapter_root, which defaults to this directory when "
          "set); empty = off");
ABSL_FLAG(std::string, adapter_manifest, "",
          "JSON file the adapter registry is saved to after every change and loaded from at start");
ABSL_FLAG(int64_t, adapter_host_bytes, int64_t{8} << 30,
          "budget for adapter weights in memory (host tier)");
ABSL_FLAG(int64_t, adapter_device_bytes, int64_t{4} << 30,
          "budget for adapters the engine may batch now (device tier)");
ABSL_FLAG(int64_t, max_adapter_bytes, int64_t{1} << 30,
          "largest adapter_model.safetensors accepted");
ABSL_FLAG(int32_t, http_port, 8080,
          "HTTP port for /metrics, /healthz, /readyz and the OpenAI-compatible /v1 API "
          "(0 = pick a free one; -1 = no HTTP listener)");
ABSL_FLAG(int32_t, metrics_port, -1,
          "serve /metrics (and /healthz, /readyz) on a listener of its own at this port, and not "
          "on --http_port: the metrics name every tenant and adapter and need no key, so this "
          "port belongs on a private network (0 = pick a free one; -1 = /metrics on --http_port)");
ABSL_FLAG(std::string, metrics_host, "127.0.0.1", "address the --metrics_port listener binds");
ABSL_FLAG(std::string, metrics_port_file, "",
          "write the bound metrics port to this file once listening");
ABSL_FLAG(std::string, http_port_file, "", "write the bound HTTP port to this file once listening");
ABSL_FLAG(int32_t, http_threads, 2, "HTTP I/O threads");
ABSL_FLAG(int64_t, http_max_body_bytes, 4 << 20, "largest HTTP request body accepted (413 beyond)");
ABSL_FLAG(int64_t, http_max_header_bytes, 16 << 10, "largest HTTP request headers (431 beyond)");
ABSL_FLAG(int32_t, http_read_timeout_ms, 10'000,
          "time a client has to send a whole HTTP request (slow clients get 408 and are closed)");
ABSL_FLAG(int32_t, http_write_timeout_ms, 60'000,
          "time one HTTP write may take before the client is dropped (and its request cancelled)");
ABSL_FLAG(int32_t, http_max_connections, 1024, "open HTTP connections at most (503 beyond)");
ABSL_FLAG(std::vector<std::string>, served_model_name, std::vector<std::string>{},
          "names of the base model in the APIs, comma-separated; the first is the one reported "
          "(empty = the --model directory's base name)");
ABSL_FLAG(int32_t, engine_stall_timeout_ms, 300'000,
          "/healthz, /health and gRPC health fail while work has waited this long for the engine "
          "loop to make a step (a stuck engine; 0 = never)");
ABSL_FLAG(std::string, metrics_compat, "",
          "also export metrics under another engine's names for routers that read them: vllm "
          "(vllm:num_requests_waiting, vllm:kv_cache_usage_perc, vllm:lora_requests_info, ...); "
          "empty = para_ names only");
ABSL_FLAG(std::string, tls_cert, "", "PEM server certificate chain (enables TLS)");
ABSL_FLAG(std::string, tls_key, "", "PEM private key for --tls_cert");
ABSL_FLAG(std::string, tls_client_ca, "",
          "PEM CA bundle; when set, clients must present a certificate it signed (mTLS)");

namespace para::server {
namespace {

void Log(const std::string& msg) {
  char ts[32];
  std::time_t t = std::time(nullptr);
  std::strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  std::fprintf(stderr, "%s para-server: %s\n", ts, msg.c_str());
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> Credentials() {
  const std::string cert = absl::GetFlag(FLAGS_tls_cert), key = absl::GetFlag(FLAGS_tls_key);
  const std::string ca = absl::GetFlag(FLAGS_tls_client_ca);
  if (cert.empty() && key.empty() && ca.empty()) return grpc::InsecureServerCredentials();
  if (cert.empty() || key.empty())
    return absl::InvalidArgumentError("--tls_cert and --tls_key go together");
  grpc::SslServerCredentialsOptions opts(
      ca.empty() ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                 : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
  auto read = [](const std::string& path) { return ReadTextFile(path); };
  auto cert_text = read(cert);
  auto key_text = read(key);
  if (!cert_text.ok()) return cert_text.status();
  if (!key_text.ok()) return key_text.status();
  pair.cert_chain = *cert_text;
  pair.private_key = *key_text;
  opts.pem_key_cert_pairs.push_back(pair);
  if (!ca.empty()) {
    auto ca_text = read(ca);
    if (!ca_text.ok()) return ca_text.status();
    opts.pem_root_certs = *ca_text;
  }
  return grpc::SslServerCredentials(opts);
}

absl::StatusOr<EngineOptions> EngineOptionsFromFlags() {
  EngineOptions o;
  o.model_dir = absl::GetFlag(FLAGS_model);
  o.device = absl::GetFlag(FLAGS_device);
  o.device_sampling = absl::GetFlag(FLAGS_device_sampling);
  ASSIGN_OR_RETURN(o.dtype, ParseDTypeChoice(absl::GetFlag(FLAGS_dtype), "--dtype"));
  ASSIGN_OR_RETURN(o.kv_cache_dtype,
                   ParseDTypeChoice(absl::GetFlag(FLAGS_kv_cache_dtype), "--kv_cache_dtype"));
  o.kv_cache.block_size = absl::GetFlag(FLAGS_block_size);
  o.kv_cache.num_blocks = absl::GetFlag(FLAGS_kv_cache_blocks);
  o.kv_cache.bytes = absl::GetFlag(FLAGS_kv_cache_bytes);
  o.kv_cache.prefix_caching = absl::GetFlag(FLAGS_enable_prefix_caching);
  o.num_threads = absl::GetFlag(FLAGS_threads);
  o.max_model_len = absl::GetFlag(FLAGS_max_model_len);
  o.max_lora_rank = absl::GetFlag(FLAGS_max_lora_rank);
  return o;
}

HttpOptions HttpOptionsFromFlags() {
  HttpOptions o;
  o.host = absl::GetFlag(FLAGS_host);
  o.port = absl::GetFlag(FLAGS_http_port);
  o.threads = absl::GetFlag(FLAGS_http_threads);
  o.max_body_bytes = absl::GetFlag(FLAGS_http_max_body_bytes);
  o.max_header_bytes = absl::GetFlag(FLAGS_http_max_header_bytes);
  o.read_timeout_ms = absl::GetFlag(FLAGS_http_read_timeout_ms);
  o.write_timeout_ms = absl::GetFlag(FLAGS_http_write_timeout_ms);
  o.max_connections = absl::GetFlag(FLAGS_http_max_connections);
  return o;
}

// Starts an HTTP listener and writes its port to `port_file` (if set); null (logged) on failure.
std::unique_ptr<HttpServer> StartHttp(ServiceState* state, const HttpOptions& options,
                                      const char* what, const std::string& port_file) {
  auto server = std::make_unique<HttpServer>(state, options);
  absl::StatusOr<int> port = server->Start();
  if (!port.ok()) {
    Log(absl::StrCat(what, ": ", port.status().ToString()));
    return nullptr;
  }
  Log(absl::StrCat(what, " on port ", *port));
  if (!port_file.empty())
    if (absl::Status s = WriteTextFile(port_file, absl::StrCat(*port, "\n")); !s.ok())
      Log(s.ToString());
  return server;
}

store::StoreOptions StoreOptionsFromFlags() {
  store::StoreOptions o;
  o.adapter_root = absl::GetFlag(FLAGS_adapter_root);
  o.lazy_dir = absl::GetFlag(FLAGS_adapter_dir);
  if (o.adapter_root.empty()) o.adapter_root = o.lazy_dir;
  if (o.adapter_root.empty())
    o.adapter_root = std::filesystem::path(absl::GetFlag(FLAGS_config)).parent_path().string();
  if (o.adapter_root.empty()) o.adapter_root = ".";
  o.manifest_path = absl::GetFlag(FLAGS_adapter_manifest);
  o.host_budget_bytes = absl::GetFlag(FLAGS_adapter_host_bytes);
  o.device_budget_bytes = absl::GetFlag(FLAGS_adapter_device_bytes);
  o.max_adapter_bytes = absl::GetFlag(FLAGS_max_adapter_bytes);
  return o;
}

// --adapter-dir must be a directory inside the adapter root (every load is confined to it).
absl::Status CheckLazyDir(const store::StoreOptions& o) {
  if (o.lazy_dir.empty()) return absl::OkStatus();
  std::error_code ec;
  const auto dir = std::filesystem::weakly_canonical(o.lazy_dir, ec);
  if (ec || !std::filesystem::is_directory(dir))
    return absl::InvalidArgumentError(
        absl::StrCat("--adapter-dir ", o.lazy_dir, " is not a directory"));
  const auto root = std::filesystem::weakly_canonical(o.adapter_root, ec);
  const auto rel = dir.lexically_relative(root);
  if (ec || rel.empty() || *rel.begin() == "..")
    return absl::InvalidArgumentError(absl::StrCat(
        "--adapter-dir ", o.lazy_dir, " is outside the adapter root ", o.adapter_root));
  return absl::OkStatus();
}

// The adapters of the manifest (which the store keeps up to date), then those the tenants file
// lists that the manifest did not bring. A manifest entry that no longer loads is logged and
// skipped; one in the tenants file stops the start.
absl::Status LoadAdapters(const TenantRegistry& tenants, store::AdapterStore* adapters) {
  if (absl::Status s = adapters->LoadManifest(); !s.ok())
    Log(absl::StrCat("adapter manifest: ", s.ToString()));
  for (const store::LoadSpec& spec : tenants.adapters()) {
    if (adapters->Get(spec.name).ok()) continue;
    absl::StatusOr<store::AdapterInfo> info = adapters->LoadAndWait(spec);
    if (!info.ok())
      return absl::Status(info.status().code(),
                          absl::StrCat("tenant '", spec.tenant, "' adapter '", spec.name,
                                       "': ", info.status().message()));
  }
  return absl::OkStatus();
}

// --served-model-name's names, else the model directory's base name (trailing slashes ignored,
// so "models/base/" is "base"; never empty).
std::vector<std::string> ModelNames() {
  std::vector<std::string> names;
  for (const std::string& n : absl::GetFlag(FLAGS_served_model_name))
    if (!n.empty()) names.push_back(n);
  if (!names.empty()) return names;
  std::string dir = absl::GetFlag(FLAGS_model);
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  std::string base = std::filesystem::path(dir).filename().string();
  return {base.empty() || base == "." || base == ".." ? std::string("base") : base};
}

// Keeps gRPC health in step with the engine: NOT_SERVING while it is stalled (and while
// draining, which main sets itself). Runs until `stop`.
void WatchEngineHealth(const ServiceState* state, grpc::HealthCheckServiceInterface* health,
                       const std::atomic<bool>* stop) {
  bool serving = true;
  while (!stop->load()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (state->draining.load()) return;
    const bool ok = state->EngineHealth().ok();
    if (ok == serving) continue;
    serving = ok;
    health->SetServingStatus(ok);
    Log(ok ? "engine moving again; serving" : std::string(state->EngineHealth().message()));
  }
}

sched::SchedulerConfig SchedulerConfigFromFlags(const TenantRegistry& tenants) {
  sched::SchedulerConfig c;
  c.max_num_seqs = absl::GetFlag(FLAGS_max_num_seqs);
  c.max_batched_tokens = absl::GetFlag(FLAGS_max_batched_tokens);
  c.max_loras = absl::GetFlag(FLAGS_max_loras);
  c.adapter_drain_after_us = absl::GetFlag(FLAGS_adapter_drain_after_ms) * 1000;
  c.max_waiting = absl::GetFlag(FLAGS_max_waiting);
  c.max_waiting_per_tenant = absl::GetFlag(FLAGS_max_waiting_per_tenant);
  c.tenants = tenants.SchedulerTenants();
  return c;
}

int Run() {
  if (absl::GetFlag(FLAGS_model).empty() || absl::GetFlag(FLAGS_config).empty()) {
    Log("--model and --config are required (see --help)");
    return 2;
  }
  // A write past a file size limit (RLIMIT_FSIZE) fails with EFBIG, and one to a closed socket
  // with EPIPE, rather than killing the process: both are reported where they happen.
  signal(SIGXFSZ, SIG_IGN);
  signal(SIGPIPE, SIG_IGN);
  // Signals are taken by one thread with sigwait; every other thread inherits the blocked mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto creds = Credentials();
  if (!creds.ok()) {
    Log(creds.status().ToString());
    return 2;
  }
  ServiceState state;
  sched::SystemClock clock;
  state.clock = &clock;
  state.limits.max_prompt_bytes = absl::GetFlag(FLAGS_max_prompt_bytes);
  state.limits.max_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  state.limits.max_response_logprobs = absl::GetFlag(FLAGS_max_response_logprobs);
  state.limits.inline_prompt_bytes = absl::GetFlag(FLAGS_inline_prompt_bytes);
  state.model_names = ModelNames();
  state.model_name = state.model_names.front();
  state.stall_timeout_us = int64_t{absl::GetFlag(FLAGS_engine_stall_timeout_ms)} * 1000;
  const std::string compat = absl::GetFlag(FLAGS_metrics_compat);
  if (!compat.empty() && compat != "vllm") {
    Log(absl::StrCat("--metrics-compat must be vllm or empty, not '", compat, "'"));
    return 2;
  }
  ServerMetrics metrics({absl::GetFlag(FLAGS_max_num_seqs), absl::GetFlag(FLAGS_max_loras),
                         compat == "vllm", state.model_name});
  state.metrics = &metrics;
  GenerationService generation(&state);
  AdminService admin(&state);
  TgisService tgis(&state);
  std::unique_ptr<HttpServer> http, metrics_http;
  const bool own_metrics = absl::GetFlag(FLAGS_metrics_port) >= 0;
  if (absl::GetFlag(FLAGS_http_port) >= 0) {
    HttpOptions o = HttpOptionsFromFlags();
    if (own_metrics) o.routes = HttpOptions::Routes::kPublic;
    http = StartHttp(&state, o, "HTTP", absl::GetFlag(FLAGS_http_port_file));
    if (http == nullptr) return 1;
  }
  if (own_metrics) {
    HttpOptions o = HttpOptionsFromFlags();
    o.host = absl::GetFlag(FLAGS_metrics_host);
    o.port = absl::GetFlag(FLAGS_metrics_port);
    o.threads = 1;
    o.routes = HttpOptions::Routes::kMetricsOnly;
    metrics_http = StartHttp(&state, o, "metrics", absl::GetFlag(FLAGS_metrics_port_file));
    if (metrics_http == nullptr) return 1;
  }

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(absl::StrCat(absl::GetFlag(FLAGS_host), ":", absl::GetFlag(FLAGS_port)),
                           *creds, &port);
  builder.RegisterService(&generation);
  builder.RegisterService(&admin);
  builder.RegisterService(&tgis);
  builder.SetMaxReceiveMessageSize(absl::GetFlag(FLAGS_max_message_bytes));
  builder.SetMaxSendMessageSize(absl::GetFlag(FLAGS_max_message_bytes));
  // A port another process holds is a start-up error, never silently shared (SO_REUSEPORT would
  // let the kernel split new connections between the two servers).
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 60'000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 20'000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10'000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 2);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    Log(absl::StrCat("cannot listen on ", absl::GetFlag(FLAGS_host), ":", absl::GetFlag(FLAGS_port),
                     " for gRPC: the address is in use by another process, or not available"));
    return 1;
  }
  auto* health = server->GetHealthCheckService();
  health->SetServingStatus(false);  // NOT_SERVING while the model loads
  Log(absl::StrCat("listening on port ", port, "; loading ", absl::GetFlag(FLAGS_model)));

  absl::StatusOr<EngineOptions> engine_options = EngineOptionsFromFlags();
  absl::StatusOr<std::unique_ptr<Engine>> engine =
      engine_options.ok() ? Engine::Create(*engine_options) : engine_options.status();
  if (!engine.ok()) {
    Log(absl::StrCat("cannot load the model: ", engine.status().ToString()));
    server->Shutdown();
    return 1;
  }
  Log(absl::StrCat("model loaded; running on ", (*engine)->device_summary()));
  auto tenants = TenantRegistry::Load(absl::GetFlag(FLAGS_config));
  if (!tenants.ok()) {
    Log(absl::StrCat("cannot load the tenants: ", tenants.status().ToString()));
    server->Shutdown();
    return 1;
  }
  const store::StoreOptions store_options = StoreOptionsFromFlags();
  if (absl::Status s = CheckLazyDir(store_options); !s.ok()) {
    Log(s.ToString());
    server->Shutdown();
    return 2;
  }
  store::AdapterStore adapters(engine->get(), store_options);
  if (absl::Status s = LoadAdapters(**tenants, &adapters); !s.ok()) {
    Log(s.ToString());
    server->Shutdown();
    return 1;
  }
  sched::EngineLoop loop(engine->get(), SchedulerConfigFromFlags(**tenants), &clock, &adapters);
  loop.SetListener(&metrics);
  loop.Start();
  auto prepare = std::make_unique<PreparePool>(absl::GetFlag(FLAGS_prepare_threads),
                                               /*max_queued_per_tenant=*/64,
                                               /*trim_after_bytes=*/256 << 10);
  state.prepare = prepare.get();  // lives to the end: prompts it holds then get UNAVAILABLE
  state.engine = engine->get();
  state.loop = &loop;
  state.tenants = tenants->get();
  state.adapters = &adapters;
  state.ready.store(true);
  health->SetServingStatus(true);
  if (const std::string pf = absl::GetFlag(FLAGS_port_file); !pf.empty()) {
    if (absl::Status s = WriteTextFile(pf, absl::StrCat(port, "\n")); !s.ok()) Log(s.ToString());
  }
  Log(absl::StrCat("serving ", (*tenants)->tenants().size(), " tenants and ", adapters.size(),
                   " adapters on port ", port));

  std::atomic<bool> stop_watch{false};
  std::thread watch(WatchEngineHealth, &state, health, &stop_watch);
  int sig = 0;
  sigwait(&signals, &sig);
  Log(absl::StrCat("signal ", sig, ": draining (up to ", absl::GetFlag(FLAGS_drain_grace_seconds),
                   " s)"));
  state.draining.store(true);
  stop_watch.store(true);
  watch.join();
  health->SetServingStatus(false);
  const auto until = std::chrono::steady_clock::now() +
                     std::chrono::seconds(absl::GetFlag(FLAGS_drain_grace_seconds));
  while (loop.in_flight() > 0 && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  const int64_t left = loop.in_flight();
  loop.Stop();  // whatever is left ends as cancelled (every call gets its end)
  if (http) http->Stop();
  if (metrics_http) metrics_http->Stop();
  // Every call has finished or is sending its last message: a short deadline lets those flush
  // without waiting on idle client connections (grpc++ would wait out the whole deadline).
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(500));
  Log(left == 0 ? "drained; bye"
                : absl::StrCat("grace period over; cancelled ", left, " requests; bye"));
  return 0;
}

}  // namespace
}  // namespace para::server

int main(int argc, char** argv) {
  const char* usage = "para-server --model DIR --config tenants.json [--port 50051] [flags]";
  if (para::MaybePrintFlagHelp(argc, argv, usage, "server/main.cc")) return 0;
  absl::SetProgramUsageMessage(usage);
  std::vector<std::string> storage;
  std::vector<char*> args = para::UnderscoreFlags(argc, argv, &storage);  // --foo-bar too
  absl::ParseCommandLine(static_cast<int>(args.size()), args.data());
  return para::server::Run();
}
