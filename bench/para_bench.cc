// para-bench: a gRPC load generator for para-server, in the manner of vLLM's benchmark_serving.
// Open loop (Poisson or gamma arrivals at --request-rate, optionally capped by
// --max-concurrency) or closed loop (--concurrency); N tenants, each with its own API key and
// adapter, chosen uniformly, by Zipf or in turn; prompt/output lengths fixed, uniform or from a
// JSONL dataset; warm-up requests; stops after --num-requests or --duration. Prints a progress
// line while it runs and the result as a table (and JSON with --json).
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <mutex>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "bench/load/report.h"
#include "bench/load/workload.h"
#include "common/flag_help.h"
#include "common/flag_spelling.h"
#include "grpcpp/grpcpp.h"
#include "para/v1/generation.grpc.pb.h"

ABSL_FLAG(std::string, target, "127.0.0.1:50051", "para-server gRPC address");
ABSL_FLAG(int32_t, tenants, 1, "number of tenants (requests spread over them)");
ABSL_FLAG(std::string, key_template, "bench-key-{i}", "API key of tenant i ({i} = 0..N-1)");
ABSL_FLAG(std::string, adapter_template, "",
          "adapter of tenant i, e.g. para-{i} or lora-{i}; empty = the base model");
ABSL_FLAG(std::string, popularity, "uniform", "tenant popularity: uniform, zipf or distinct");
ABSL_FLAG(double, zipf_s, 1.1, "Zipf exponent");
ABSL_FLAG(double, request_rate, 0,
          "open loop: mean arrivals per second (0 = closed loop with --concurrency)");
ABSL_FLAG(double, burstiness, 1.0, "gamma shape of inter-arrival times (1 = Poisson)");
ABSL_FLAG(int32_t, max_concurrency, 0, "open loop: requests in flight at most (0 = no cap)");
ABSL_FLAG(int32_t, concurrency, 8, "closed loop: requests kept in flight");
ABSL_FLAG(std::string, input_len, "128", "prompt tokens: N or LO:HI (uniform)");
ABSL_FLAG(std::string, output_len, "128", "output tokens: N or LO:HI (uniform)");
ABSL_FLAG(std::string, dataset, "",
          "JSONL of {prompt | prompt_ids, max_tokens?} (overrides lengths)");
ABSL_FLAG(bool, ignore_eos, true, "generate exactly the output length");
ABSL_FLAG(int32_t, shared_prefix_len, 0,
          "random prompts start with the same this many tokens (a shared system prompt), then "
          "--input_len of their own");
ABSL_FLAG(int32_t, n, 1, "sequences per request (sampled at --temperature, which must be > 0)");
ABSL_FLAG(int32_t, beam_width, 0, "beam search with this many beams (0 = off); results at the end");
ABSL_FLAG(double, temperature, 0, "sampling temperature (0 = greedy)");
ABSL_FLAG(int32_t, num_requests, 100, "measured requests (stop condition)");
ABSL_FLAG(double, duration, 0, "seconds to send for instead of --num-requests (0 = off)");
ABSL_FLAG(int32_t, warmup, 0, "requests sent (closed loop) before measuring; not counted");
ABSL_FLAG(double, slo_ttft_ms, -1, "goodput SLO on time to first token (ms; <0 = none)");
ABSL_FLAG(double, slo_tpot_ms, -1, "goodput SLO on time per output token (ms; <0 = none)");
ABSL_FLAG(double, slo_e2e_ms, -1, "goodput SLO on end-to-end latency (ms; <0 = none)");
ABSL_FLAG(uint64_t, seed, 0, "workload seed");
ABSL_FLAG(std::string, json, "", "write the result (and the run's settings) as JSON here");
ABSL_FLAG(bool, progress, true, "print a progress line every second (stderr)");

namespace para::bench {
namespace {

using Clock = std::chrono::steady_clock;

double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

std::string ForTenant(const std::string& tmpl, int32_t i) {
  return absl::StrReplaceAll(tmpl, {{"{i}", absl::StrCat(i)}});
}

// Counts requests in flight and collects their records (any thread).
class Tracker {
 public:
  void Started() {
    std::lock_guard<std::mutex> lock(mu_);
    ++in_flight_;
    ++sent_;
  }
  void Finished(RequestRecord r, bool measured) {
    std::lock_guard<std::mutex> lock(mu_);
    --in_flight_;
    if (measured) {
      output_tokens_ += r.output_tokens;
      failed_ += r.ok ? 0 : 1;
      records_.push_back(std::move(r));
    }
    cv_.notify_all();
  }
  // Waits until fewer than `limit` requests are in flight (0 = no limit).
  void WaitBelow(int64_t limit) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return limit <= 0 || in_flight_ < limit; });
  }
  void WaitIdle() { WaitBelow(1); }
  std::string Progress(double t) {
    std::lock_guard<std::mutex> lock(mu_);
    return absl::StrCat("[", static_cast<int64_t>(t), " s] sent ", sent_, ", done ",
                        records_.size(), ", failed ", failed_, ", in flight ", in_flight_, ", ",
                        static_cast<int64_t>(t > 0 ? static_cast<double>(output_tokens_) / t : 0),
                        " out tok/s");
  }
  std::vector<RequestRecord> Take() {
    std::lock_guard<std::mutex> lock(mu_);
    return std::move(records_);
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int64_t in_flight_ = 0, sent_ = 0, failed_ = 0, output_tokens_ = 0;
  std::vector<RequestRecord> records_;
};

// One streaming call on gRPC's callback API; records its timings and deletes itself at the end.
class StreamCall final : public grpc::ClientReadReactor<v1::GenerateStreamResponse> {
 public:
  StreamCall(v1::Generation::Stub* stub, const std::string& key, v1::GenerateRequest request,
             int32_t tenant, bool measured, Tracker* tracker)
      : request_(std::move(request)), measured_(measured), tracker_(tracker) {
    record_.tenant = tenant;
    ctx_.AddMetadata("authorization", "Bearer " + key);
    tracker_->Started();
    start_ = last_ = Clock::now();
    stub->async()->GenerateStream(&ctx_, &request_, this);
    StartRead(&response_);
    StartCall();
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // OnDone follows
    const auto now = Clock::now();
    if (response_.token_ids_size() > 0) {
      if (record_.output_tokens == 0) {
        record_.ttft_s = std::chrono::duration<double>(now - start_).count();
      } else {
        record_.itl_s.push_back(std::chrono::duration<double>(now - last_).count());
      }
      last_ = now;
      record_.output_tokens += response_.token_ids_size();
    }
    if (response_.has_usage()) record_.prompt_tokens = response_.usage().prompt_tokens();
    StartRead(&response_);
  }

  void OnDone(const grpc::Status& s) override {
    record_.e2e_s = Since(start_);
    record_.ok = s.ok();
    if (!s.ok())
      record_.error = absl::StrCat("gRPC code ", s.error_code(), ": ", s.error_message());
    // The call's context is destroyed before the main thread may learn that this was the last
    // request (it then tears the channel down and exits).
    Tracker* tracker = tracker_;
    const bool measured = measured_;
    RequestRecord record = std::move(record_);
    delete this;
    tracker->Finished(std::move(record), measured);
  }

 private:
  grpc::ClientContext ctx_;
  v1::GenerateRequest request_;
  v1::GenerateStreamResponse response_;
  RequestRecord record_;
  Clock::time_point start_, last_;
  bool measured_;
  Tracker* tracker_;
};

v1::GenerateRequest ToRequest(const PlannedRequest& p, const std::string& adapter,
                              bool ignore_eos) {
  const int32_t n = absl::GetFlag(FLAGS_n), beam = absl::GetFlag(FLAGS_beam_width);
  v1::GenerateRequest r;
  r.set_adapter(adapter);
  if (!p.prompt.empty()) {
    r.set_text(p.prompt);
  } else {
    for (int32_t id : p.prompt_ids) r.mutable_token_ids()->add_ids(id);
  }
  r.mutable_stopping()->set_max_tokens(p.max_tokens);
  r.mutable_stopping()->set_ignore_eos(ignore_eos);
  r.set_n(n);
  if (beam > 0) {
    r.mutable_beam()->set_beam_width(beam);
  } else {
    r.mutable_sampling()->set_temperature(static_cast<float>(absl::GetFlag(FLAGS_temperature)));
  }
  return r;
}

absl::StatusOr<int32_t> VocabSize(v1::Generation::Stub* stub, const std::string& key) {
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "Bearer " + key);
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::ModelInfoResponse info;
  grpc::Status s = stub->ModelInfo(&ctx, v1::ModelInfoRequest(), &info);
  if (!s.ok()) return absl::UnavailableError(absl::StrCat("ModelInfo failed: ", s.error_message()));
  return info.vocab_size();
}

struct Settings {
  WorkloadOptions workload;
  std::string key_template, adapter_template;
  Slo slo;
};

absl::StatusOr<Settings> ReadSettings() {
  Settings s;
  WorkloadOptions& w = s.workload;
  w.tenants = absl::GetFlag(FLAGS_tenants);
  if (w.tenants < 1) return absl::InvalidArgumentError("--tenants must be >= 1");
  auto pop = ParsePopularity(absl::GetFlag(FLAGS_popularity));
  auto in = ParseRange(absl::GetFlag(FLAGS_input_len));
  auto out = ParseRange(absl::GetFlag(FLAGS_output_len));
  for (const absl::Status& st : {pop.status(), in.status(), out.status()})
    if (!st.ok()) return st;
  w.popularity = *pop;
  w.zipf_s = absl::GetFlag(FLAGS_zipf_s);
  w.input_len = *in;
  w.output_len = *out;
  w.seed = absl::GetFlag(FLAGS_seed);
  w.shared_prefix_len = absl::GetFlag(FLAGS_shared_prefix_len);
  s.key_template = absl::GetFlag(FLAGS_key_template);
  s.adapter_template = absl::GetFlag(FLAGS_adapter_template);
  auto opt = [](double v) { return v < 0 ? std::nullopt : std::optional<double>(v); };
  s.slo = {opt(absl::GetFlag(FLAGS_slo_ttft_ms)), opt(absl::GetFlag(FLAGS_slo_tpot_ms)),
           opt(absl::GetFlag(FLAGS_slo_e2e_ms))};
  return s;
}

// Sends the measured requests: closed loop, or open loop with arrival gaps.
void SendMeasured(v1::Generation::Stub* stub, const Settings& settings, Workload* workload,
                  Tracker* tracker) {
  const double rate = absl::GetFlag(FLAGS_request_rate);
  const double duration = absl::GetFlag(FLAGS_duration);
  const int32_t count = absl::GetFlag(FLAGS_num_requests);
  const int64_t cap =
      rate > 0 ? absl::GetFlag(FLAGS_max_concurrency) : absl::GetFlag(FLAGS_concurrency);
  Arrivals arrivals(rate > 0 ? rate : 1.0, absl::GetFlag(FLAGS_burstiness),
                    absl::GetFlag(FLAGS_seed) + 1);
  const auto t0 = Clock::now();
  auto next_at = t0;
  for (int64_t i = 0;; ++i) {
    if (duration > 0 ? Since(t0) >= duration : i >= count) break;
    if (rate > 0) {
      std::this_thread::sleep_until(next_at);
      next_at += std::chrono::duration_cast<Clock::duration>(
          std::chrono::duration<double>(arrivals.NextGapSeconds()));
    }
    tracker->WaitBelow(cap);
    const PlannedRequest p = workload->Next();
    new StreamCall(stub, ForTenant(settings.key_template, p.tenant),
                   ToRequest(p, ForTenant(settings.adapter_template, p.tenant),
                             absl::GetFlag(FLAGS_ignore_eos)),
                   p.tenant, /*measured=*/true, tracker);
  }
}

int Run() {
  absl::StatusOr<Settings> settings = ReadSettings();
  if (!settings.ok()) {
    std::fprintf(stderr, "para-bench: %s\n", std::string(settings.status().message()).c_str());
    return 2;
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  auto channel = grpc::CreateCustomChannel(absl::GetFlag(FLAGS_target),
                                           grpc::InsecureChannelCredentials(), args);
  auto stub = v1::Generation::NewStub(channel);
  std::vector<DatasetEntry> dataset;
  if (const std::string path = absl::GetFlag(FLAGS_dataset); !path.empty()) {
    auto d = LoadDataset(path);
    if (!d.ok()) {
      std::fprintf(stderr, "para-bench: %s\n", std::string(d.status().message()).c_str());
      return 2;
    }
    dataset = *std::move(d);
  } else {
    auto vocab = VocabSize(stub.get(), ForTenant(settings->key_template, 0));
    if (!vocab.ok()) {
      std::fprintf(stderr, "para-bench: %s\n", std::string(vocab.status().message()).c_str());
      return 1;
    }
    settings->workload.vocab_size = *vocab;
  }
  Workload workload(settings->workload, std::move(dataset));
  Tracker tracker;

  // Warm-up: closed loop, not measured.
  for (int32_t i = 0; i < absl::GetFlag(FLAGS_warmup); ++i) {
    tracker.WaitBelow(absl::GetFlag(FLAGS_concurrency));
    const PlannedRequest p = workload.Next();
    new StreamCall(stub.get(), ForTenant(settings->key_template, p.tenant),
                   ToRequest(p, ForTenant(settings->adapter_template, p.tenant), true), p.tenant,
                   /*measured=*/false, &tracker);
  }
  tracker.WaitIdle();

  const auto t0 = Clock::now();
  std::atomic<bool> done{false};
  std::thread progress([&] {
    while (!done.load() && absl::GetFlag(FLAGS_progress)) {
      std::this_thread::sleep_for(std::chrono::seconds(1));
      if (!done.load()) std::fprintf(stderr, "%s\n", tracker.Progress(Since(t0)).c_str());
    }
  });
  SendMeasured(stub.get(), *settings, &workload, &tracker);
  tracker.WaitIdle();
  const double elapsed = Since(t0);
  done.store(true);
  progress.join();

  const Summary summary = Summarise(tracker.Take(), elapsed, settings->slo);
  std::printf("%s", ToTable(summary, settings->slo).c_str());
  if (const std::string path = absl::GetFlag(FLAGS_json); !path.empty()) {
    nlohmann::json j = ToJson(summary, settings->slo);
    j["settings"] = {{"target", absl::GetFlag(FLAGS_target)},
                     {"tenants", settings->workload.tenants},
                     {"adapter_template", settings->adapter_template},
                     {"popularity", absl::GetFlag(FLAGS_popularity)},
                     {"request_rate", absl::GetFlag(FLAGS_request_rate)},
                     {"burstiness", absl::GetFlag(FLAGS_burstiness)},
                     {"concurrency", absl::GetFlag(FLAGS_concurrency)},
                     {"max_concurrency", absl::GetFlag(FLAGS_max_concurrency)},
                     {"input_len", absl::GetFlag(FLAGS_input_len)},
                     {"output_len", absl::GetFlag(FLAGS_output_len)},
                     {"num_requests", absl::GetFlag(FLAGS_num_requests)},
                     {"duration", absl::GetFlag(FLAGS_duration)},
                     {"seed", absl::GetFlag(FLAGS_seed)}};
    std::ofstream(path) << j.dump(2) << "\n";
  }
  return summary.failed == 0 ? 0 : 3;
}

}  // namespace
}  // namespace para::bench

int main(int argc, char** argv) {
  const char* usage =
      "para-bench --target HOST:PORT [--tenants N --adapter-template para-{i}] "
      "[--request-rate R | --concurrency C] [--num-requests N | --duration S] [--json out.json]";
  if (para::MaybePrintFlagHelp(argc, argv, usage, "bench/para_bench.cc")) return 0;
  absl::SetProgramUsageMessage(usage);
  std::vector<std::string> storage;
  std::vector<char*> args = para::UnderscoreFlags(argc, argv, &storage);  // --foo-bar too
  absl::ParseCommandLine(static_cast<int>(args.size()), args.data());
  const int rc = para::bench::Run();
  // gRPC's threads may still be winding down the last calls: exit without running static
  // destructors under them.
  std::fflush(stdout);
  std::fflush(stderr);
  std::_Exit(rc);
}
