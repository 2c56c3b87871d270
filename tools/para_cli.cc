// para-cli: offline generation through the engine.
//   para-cli generate --model DIR (--prompt TEXT | --prompt-ids 1,2,3 | --requests FILE.jsonl)
//       [--max-tokens N] [--temperature T] [--top-k K] [--top-p P] [--seed S]
//       [--repetition-penalty R] [--stop STR]... [--stop-token-ids 1,2] [--ignore-eos]
//       [--logprobs K] [--prompt-logprobs K] [--json] [engine flags]
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"
#include "scheduler/engine_loop.h"
#include "tools/args.h"
#include "tools/engine_flags.h"
#include "tools/request_json.h"

namespace para::tools {
namespace {

using json = nlohmann::json;

constexpr const char* kUsage =
    "usage: para-cli generate --model DIR (--prompt TEXT | --prompt-ids 1,2,3 | --requests "
    "FILE.jsonl) [flags]\n";

// Every flag of `para-cli generate` but the engine's (which follow them in --help).
const std::vector<FlagSpec> kGenerateFlags = {
    {"prompt", "TEXT", "none", "prompt text (one of --prompt, --prompt-ids, --requests)"},
    {"prompt-ids", "1,2,3", "none", "prompt token ids"},
    {"requests", "FILE.jsonl", "none",
     "one JSON request per line, all run together in the same batches; the flags below are the "
     "defaults for fields a line leaves out"},
    {"max-tokens", "N", "the model's generation_config max_new_tokens, else 16",
     "tokens to generate at most"},
    {"temperature", "T", "the model's generation_config when it samples, else 0", "0 = greedy"},
    {"top-k", "K", "generation_config when it samples, else 0 = off", "top-k filtering"},
    {"top-p", "P", "generation_config when it samples, else 1 = off", "nucleus filtering"},
    {"seed", "S", "none: nondeterministic",
     "per-request seed: same seed, same tokens, whatever else runs"},
    {"repetition-penalty", "R", "generation_config, else 1",
     "HF-style penalty on prompt and generated tokens"},
    {"presence-penalty", "P", "0", "OpenAI-style penalty on generated tokens, [-2, 2]"},
    {"frequency-penalty", "F", "0", "OpenAI-style penalty on generated tokens, [-2, 2]"},
    {"min-p", "P", "0 = off", "drop tokens below P x the top probability"},
    {"logit-bias", "ID=B,...", "none", "added to those tokens' logits, B in [-100, 100]"},
    {"min-tokens", "N", "0", "no EOS, stop id or stop string before N tokens"},
    {"include-stop-str-in-output", nullptr, "off", "keep the matched stop string in the text"},
    {"no-skip-special-tokens", nullptr, "off: special tokens are skipped",
     "show special tokens' text"},
    {"n", "N", "1", "results per request (the N most likely of --best-of; sampling only)"},
    {"best-of", "B", "--n", "samples per request"},
    {"beam-width", "W", "0 = off", "beam search (deterministic)"},
    {"length-penalty", "L", "1", "beam search: length penalty"},
    {"early-stopping", "heuristic|true|never", "heuristic", "beam search: when to stop"},
    {"stop", "STR", "none", "stop string (repeatable); not included in the text"},
    {"stop-token-ids", "1,2", "none", "stop token ids"},
    {"ignore-eos", nullptr, "off", "do not stop at the model's EOS token"},
    {"logprobs", "K", "none", "chosen-token logprob plus the top K per generated token"},
    {"prompt-logprobs", "K", "none", "the same for every prompt token after the first"},
    {"adapter", "DIR", "none: the base model",
     "PARA or LoRA (PEFT) adapter for the request(s); a requests line's \"adapter\" overrides it "
     "(\"\" = base model)"},
    {"tenant", "NAME", "\"\"",
     "tenant of the request(s) (a requests line's \"tenant\" overrides it); tenants share steps "
     "fairly"},
    {"json", nullptr, "off", "one JSON result per request, in input order"},
    {"max-num-seqs", "N", "256", "sequences per step"},
    {"max-batched-tokens", "N", "8192", "new tokens per step"},
    {"max-loras", "N", "0 = no limit", "distinct LoRA adapters per step"},
};

std::string Usage() {
  return absl::StrCat(kUsage, FlagHelp(kGenerateFlags), "engine flags:\n",
                      FlagHelp(kEngineFlagSpecs));
}

// "3=1.5,17=-100" -> {(3, 1.5), (17, -100)}.
absl::StatusOr<std::vector<std::pair<int32_t, float>>> ParseLogitBias(const std::string& text) {
  std::vector<std::pair<int32_t, float>> out;
  for (absl::string_view item : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    const size_t eq = item.find('=');
    int32_t id = 0;
    float bias = 0;
    if (eq == absl::string_view::npos || !absl::SimpleAtoi(item.substr(0, eq), &id) ||
        !absl::SimpleAtof(item.substr(eq + 1), &bias))
      return absl::InvalidArgumentError(
          absl::StrCat("--logit-bias expects ID=BIAS[,ID=BIAS...], got '", text, "'"));
    out.push_back({id, bias});
  }
  return out;
}

// Request defaults from the flags (and the model's generation_config for the temperature).
absl::StatusOr<GenerationRequest> DefaultsFromArgs(const Args& a, const ModelConfig& c) {
  GenerationRequest r;
  const GenerationDefaults& g = c.generation;
  ASSIGN_OR_RETURN(int64_t max_tokens, a.Int("max-tokens", g.max_new_tokens.value_or(16)));
  r.stopping.max_tokens = static_cast<int32_t>(max_tokens);
  ASSIGN_OR_RETURN(double t,
                   a.Double("temperature", g.do_sample ? g.temperature.value_or(1.0f) : 0.0));
  r.sampling.temperature = static_cast<float>(t);
  ASSIGN_OR_RETURN(int64_t top_k, a.Int("top-k", g.do_sample ? g.top_k.value_or(0) : 0));
  r.sampling.top_k = static_cast<int32_t>(top_k);
  ASSIGN_OR_RETURN(double top_p, a.Double("top-p", g.do_sample ? g.top_p.value_or(1.0f) : 1.0));
  r.sampling.top_p = static_cast<float>(top_p);
  ASSIGN_OR_RETURN(double rp, a.Double("repetition-penalty", g.repetition_penalty.value_or(1.0f)));
  r.sampling.repetition_penalty = static_cast<float>(rp);
  ASSIGN_OR_RETURN(double presence, a.Double("presence-penalty", 0.0));
  ASSIGN_OR_RETURN(double frequency, a.Double("frequency-penalty", 0.0));
  ASSIGN_OR_RETURN(double min_p, a.Double("min-p", 0.0));
  ASSIGN_OR_RETURN(int64_t min_tokens, a.Int("min-tokens", 0));
  r.sampling.presence_penalty = static_cast<float>(presence);
  r.sampling.frequency_penalty = static_cast<float>(frequency);
  r.sampling.min_p = static_cast<float>(min_p);
  r.stopping.min_tokens = static_cast<int32_t>(min_tokens);
  if (auto bias = a.Get("logit-bias")) {
    ASSIGN_OR_RETURN(r.sampling.logit_bias, ParseLogitBias(*bias));
  }
  ASSIGN_OR_RETURN(int64_t n, a.Int("n", 1));
  ASSIGN_OR_RETURN(int64_t best_of, a.Int("best-of", n));
  ASSIGN_OR_RETURN(int64_t beam, a.Int("beam-width", 0));
  ASSIGN_OR_RETURN(double lp, a.Double("length-penalty", 1.0));
  r.group.n = static_cast<int32_t>(n);
  r.group.best_of = static_cast<int32_t>(beam > 0 && !a.Has("best-of") ? 1 : best_of);
  r.group.beam_width = static_cast<int32_t>(beam);
  r.group.length_penalty = static_cast<float>(lp);
  const std::string es = a.GetOr("early-stopping", "heuristic");
  if (es == "true") {
    r.group.early_stopping = GroupParams::EarlyStopping::kTrue;
  } else if (es == "never") {
    r.group.early_stopping = GroupParams::EarlyStopping::kNever;
  } else if (es != "heuristic" && es != "false") {
    return absl::InvalidArgumentError("--early-stopping must be heuristic, true or never");
  }
  if (beam > 0 && !a.Has("temperature")) r.sampling.temperature = 0.0f;
  r.stopping.include_stop_str_in_output = a.Has("include-stop-str-in-output");
  r.stopping.skip_special_tokens = !a.Has("no-skip-special-tokens");
  if (a.Has("seed")) {
    ASSIGN_OR_RETURN(int64_t seed, a.Int("seed", 0));
    r.sampling.seed = static_cast<uint64_t>(seed);
  }
  if (a.Has("logprobs")) {
    ASSIGN_OR_RETURN(int64_t lp, a.Int("logprobs", 0));
    r.sampling.logprobs = static_cast<int32_t>(lp);
  }
  if (a.Has("prompt-logprobs")) {
    ASSIGN_OR_RETURN(int64_t lp, a.Int("prompt-logprobs", 0));
    r.sampling.prompt_logprobs = static_cast<int32_t>(lp);
  }
  r.stopping.stop = a.GetAll("stop");
  if (auto ids = a.Get("stop-token-ids")) {
    ASSIGN_OR_RETURN(r.stopping.stop_token_ids, ParseIdList(*ids, "--stop-token-ids"));
  }
  r.stopping.ignore_eos = a.Has("ignore-eos");
  return r;
}

// Prints a single request's text as it is generated.
class StreamPrinter : public sched::RequestObserver {
 public:
  void OnToken(const sched::TokenEvent& e) override {
    std::fwrite(e.text_delta.data(), 1, e.text_delta.size(), stdout);
    std::fflush(stdout);
  }
  void OnDone(const sched::DoneEvent&) override {}
};

// The requests to run: one from --prompt/--prompt-ids, or one per line of --requests.
absl::StatusOr<std::vector<absl::StatusOr<sched::Submission>>> CollectRequests(
    const Args& a, const Model& model, const sched::Submission& defaults,
    const AdapterResolver& adapters) {
  std::vector<absl::StatusOr<sched::Submission>> out;
  const int sources = a.Has("prompt") + a.Has("prompt-ids") + a.Has("requests");
  if (sources != 1)
    return absl::InvalidArgumentError("give exactly one of --prompt, --prompt-ids and --requests");
  if (auto text = a.Get("prompt")) {
    sched::Submission r = defaults;
    ASSIGN_OR_RETURN(r.request.prompt_ids, model.EncodePrompt(*text));
    out.push_back(std::move(r));
  } else if (auto ids = a.Get("prompt-ids")) {
    sched::Submission r = defaults;
    ASSIGN_OR_RETURN(r.request.prompt_ids, ParseIdList(*ids, "--prompt-ids"));
    out.push_back(std::move(r));
  } else {
    const std::string path = *a.Get("requests");
    std::ifstream in(path);
    if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
    std::string line;
    for (int line_no = 1; std::getline(in, line); ++line_no) {
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      json j = json::parse(line, nullptr, false);
      if (j.is_discarded()) {
        out.push_back(
            absl::InvalidArgumentError(absl::StrCat(path, ":", line_no, ": not valid JSON")));
        continue;
      }
      auto r = ParseRequestJson(j, model, defaults, adapters);
      if (!r.ok())
        r = absl::Status(r.status().code(),
                         absl::StrCat(path, ":", line_no, ": ", r.status().message()));
      out.push_back(std::move(r));
    }
  }
  return out;
}

absl::Status Generate(int argc, char** argv) {
  ASSIGN_OR_RETURN(Args a,
                   Args::Parse(argc, argv, 2, Union(kEngineFlags, ValueFlagNames(kGenerateFlags)),
                               SwitchNames(kGenerateFlags)));
  if (!a.positional().empty())
    return absl::InvalidArgumentError(
        absl::StrCat("unexpected argument '", a.positional()[0], "'"));
  ASSIGN_OR_RETURN(EngineOptions eo, EngineOptionsFromArgs(a));
  ASSIGN_OR_RETURN(auto engine, Engine::Create(eo));
  sched::Submission defaults;
  ASSIGN_OR_RETURN(defaults.request, DefaultsFromArgs(a, engine->config()));
  defaults.tenant = a.GetOr("tenant", "");
  // Each adapter directory is loaded once and shared by every request naming it.
  std::map<std::string, absl::StatusOr<AdapterRef>> loaded;
  AdapterResolver adapters = [&](const std::string& dir) {
    auto it = loaded.find(dir);
    if (it == loaded.end()) it = loaded.emplace(dir, engine->LoadAdapter(dir)).first;
    return it->second;
  };
  if (auto dir = a.Get("adapter")) {
    ASSIGN_OR_RETURN(AdapterRef ref, adapters(*dir));
    defaults.request.para = ref.para;
    defaults.request.lora = ref.lora;
  }
  ASSIGN_OR_RETURN(auto parsed, CollectRequests(a, engine->model(), defaults, adapters));
  sched::SchedulerConfig sc;
  ASSIGN_OR_RETURN(int64_t max_seqs, a.Int("max-num-seqs", sc.max_num_seqs));
  ASSIGN_OR_RETURN(sc.max_batched_tokens, a.Int("max-batched-tokens", sc.max_batched_tokens));
  ASSIGN_OR_RETURN(int64_t max_loras, a.Int("max-loras", 0));
  sc.max_num_seqs = static_cast<int32_t>(max_seqs);
  sc.max_loras = static_cast<int32_t>(max_loras);
  if (sc.max_num_seqs < 1 || sc.max_batched_tokens < 1 || sc.max_loras < 0)
    return absl::InvalidArgumentError(
        "--max-num-seqs and --max-batched-tokens must be >= 1, --max-loras >= 0");

  // Valid requests run together through the engine loop; parse errors keep their output slot.
  const bool as_json = a.Has("json");
  const bool stream = !as_json && parsed.size() == 1;
  std::vector<sched::Submission> runnable;
  std::vector<int64_t> slot;
  for (int64_t i = 0; i < static_cast<int64_t>(parsed.size()); ++i) {
    if (!parsed[i].ok()) continue;
    if (stream) parsed[i]->observer = std::make_shared<StreamPrinter>();
    runnable.push_back(*std::move(parsed[i]));
    slot.push_back(i);
  }
  auto results = sched::RunOffline(engine.get(), std::move(runnable), sc);
  std::vector<absl::StatusOr<sched::RequestResult>> ordered(parsed.size(),
                                                            absl::UnknownError("unset"));
  for (int64_t i = 0; i < static_cast<int64_t>(parsed.size()); ++i)
    if (!parsed[i].ok()) ordered[i] = parsed[i].status();
  for (size_t k = 0; k < slot.size(); ++k) ordered[slot[k]] = std::move(results[k]);

  int failures = 0;
  for (int64_t i = 0; i < static_cast<int64_t>(ordered.size()); ++i) {
    const auto& r = ordered[i];
    failures += !r.ok();
    if (as_json) {
      json j = r.ok() ? ResultToJson(*r) : json{{"error", std::string(r.status().message())}};
      j["index"] = i;
      std::cout << j.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
    } else if (!r.ok()) {
      std::cerr << "request " << i << ": " << r.status().message() << "\n";
    } else if (stream) {
      std::cout << "\n[" << r->token_ids.size()
                << " tokens, finish_reason=" << FinishReasonName(r->finish_reason) << "]\n";
    } else {
      std::cout << "[" << i << "] " << r->text << "\n";
    }
  }
  std::cout.flush();
  if (failures > 0 && parsed.size() == 1) return ordered[0].status();
  return absl::OkStatus();
}

}  // namespace
}  // namespace para::tools

int main(int argc, char** argv) {
  using namespace para::tools;
  if (argc < 2 || std::string(argv[1]) != "generate" || WantsHelp(argc, argv, 2)) {
    const bool help = argc >= 2 && WantsHelp(argc, argv, 1);
    std::fputs(Usage().c_str(), help ? stdout : stderr);
    return help ? 0 : 2;
  }
  absl::Status s = Generate(argc, argv);
  if (!s.ok()) {
    std::fprintf(stderr, "para-cli generate: %s\n", s.ToString().c_str());
    return 1;
  }
  return 0;
}
