// para-tool: fixtures and inspection.
//   para-tool make-tiny-model DIR [--layers --hidden --heads --kv-heads --head-dim --ffn --vocab
//                                  --seed --dtype f32|f16|bf16 --shards N --max-pos --rope-theta
//                                  --tie-embeddings --no-tokenizer]
//   para-tool logits --model DIR --prompt-ids 1,2,3 --out FILE.npy [--prefill-len K]
//   para-tool info --model DIR
#include <cstdio>
#include <iostream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/engine.h"
#include "tools/args.h"
#include "tools/engine_flags.h"
#include "tools/npy.h"
#include "tools/tiny_adapter.h"
#include "tools/tiny_lora.h"
#include "tools/tiny_model.h"

namespace para::tools {
namespace {

constexpr const char* kUsage =
    "usage:\n"
    "  para-tool make-tiny-model DIR [--layers 2] [--hidden 64] [--heads 4] [--kv-heads 2]\n"
    "      [--head-dim hidden/heads] [--ffn 128] [--vocab 512] [--seed 0] [--dtype f32|f16|bf16]\n"
    "      [--shards 1] [--max-pos 2048] [--rope-theta 10000] [--tie-embeddings] [--no-tokenizer]\n"
    "  para-tool make-tiny-adapter DIR --model MODEL_DIR [--r 8] [--pooler last|mean]\n"
    "      [--activation gelu|gelu_tanh|relu|silu] [--seed 0] [--dtype f32|f16|bf16] [--identity]\n"
    "      [--strength 1.0]  Writes a random PARA adapter for the model (--identity: W_up = 0,\n"
    "      b_up = 1; --strength scales the random deviation from the identity).\n"
    "  para-tool make-tiny-lora DIR --model MODEL_DIR [--r 8] [--alpha 16] [--rslora]\n"
    "      [--targets q_proj,v_proj | all] [--rank-pattern REGEX=RANK]... [--seed 0] [--dtype "
    "f32]\n"
    "      Writes a random LoRA adapter in PEFT's save_pretrained layout.\n"
    "  para-tool logits --model DIR --prompt-ids 1,2,3 --out FILE.npy [--prefill-len K]\n"
    "      [--adapter PARA_OR_LORA_DIR]\n"
    "      Writes float32 [T, vocab]: row i = logits after tokens 0..i. The first K tokens are "
    "one\n"
    "      prefill (default: all) and the prompt the PARA vectors are computed from; each later\n"
    "      token is one incremental decode step.\n"
    "  para-tool info --model DIR\n";

absl::StatusOr<DType> DTypeFlag(const Args& a) {
  const std::string dtype = a.GetOr("dtype", "f32");
  if (dtype == "f32") return DType::kF32;
  if (dtype == "f16") return DType::kF16;
  if (dtype == "bf16") return DType::kBF16;
  return absl::InvalidArgumentError(
      absl::StrCat("--dtype must be f32, f16 or bf16, got '", dtype, "'"));
}

absl::Status MakeTiny(int argc, char** argv) {
  ASSIGN_OR_RETURN(Args a,
                   Args::Parse(argc, argv, 2,
                               {"layers", "hidden", "heads", "kv-heads", "head-dim", "ffn", "vocab",
                                "seed", "dtype", "shards", "max-pos", "rope-theta"},
                               {"tie-embeddings", "no-tokenizer"}));
  if (a.positional().size() != 1)
    return absl::InvalidArgumentError("make-tiny-model needs exactly one DIR");
  TinyModelOptions o;
  ASSIGN_OR_RETURN(o.layers, a.Int("layers", o.layers));
  ASSIGN_OR_RETURN(o.hidden, a.Int("hidden", o.hidden));
  ASSIGN_OR_RETURN(o.heads, a.Int("heads", o.heads));
  ASSIGN_OR_RETURN(o.kv_heads, a.Int("kv-heads", o.kv_heads));
  ASSIGN_OR_RETURN(o.head_dim, a.Int("head-dim", 0));
  ASSIGN_OR_RETURN(o.ffn, a.Int("ffn", o.ffn));
  ASSIGN_OR_RETURN(o.vocab, a.Int("vocab", o.vocab));
  ASSIGN_OR_RETURN(int64_t seed, a.Int("seed", 0));
  o.seed = static_cast<uint64_t>(seed);
  ASSIGN_OR_RETURN(int64_t shards, a.Int("shards", 1));
  o.shards = static_cast<int>(shards);
  ASSIGN_OR_RETURN(o.max_pos, a.Int("max-pos", o.max_pos));
  ASSIGN_OR_RETURN(o.rope_theta, a.Double("rope-theta", o.rope_theta));
  o.tie_embeddings = a.Has("tie-embeddings");
  o.tokenizer = !a.Has("no-tokenizer");
  ASSIGN_OR_RETURN(o.dtype, DTypeFlag(a));
  if (o.shards < 1 || o.shards > 99999)
    return absl::InvalidArgumentError("--shards must be in [1, 99999]");
  return MakeTinyModel(a.positional()[0], o);
}

absl::Status MakeTinyAdapter(int argc, char** argv) {
  ASSIGN_OR_RETURN(Args a,
                   Args::Parse(argc, argv, 2,
                               {"model", "r", "pooler", "activation", "seed", "dtype", "strength"},
                               {"identity"}));
  if (a.positional().size() != 1)
    return absl::InvalidArgumentError("make-tiny-adapter needs exactly one DIR");
  auto model = a.Get("model");
  if (!model) return absl::InvalidArgumentError("make-tiny-adapter needs --model MODEL_DIR");
  TinyParaOptions o;
  ASSIGN_OR_RETURN(o.r, a.Int("r", o.r));
  ASSIGN_OR_RETURN(int64_t seed, a.Int("seed", 0));
  o.seed = static_cast<uint64_t>(seed);
  ASSIGN_OR_RETURN(o.dtype, DTypeFlag(a));
  o.identity = a.Has("identity");
  ASSIGN_OR_RETURN(double strength, a.Double("strength", 1.0));
  if (!(strength >= 0)) return absl::InvalidArgumentError("--strength must be >= 0");
  o.strength = static_cast<float>(strength);
  // Pooler and activation go through the adapter config parser, so they accept what it accepts.
  ASSIGN_OR_RETURN(ParaConfig pc,
                   ParseParaConfig(absl::StrCat(R"({"peft_type":"PARA","r":1,"pooler":")",
                                                a.GetOr("pooler", "last"), R"(","activation":")",
                                                a.GetOr("activation", "gelu"), R"("})"),
                                   "flags"));
  o.pooler = pc.pooler;
  o.activation = pc.activation;
  return MakeTinyParaAdapter(a.positional()[0], *model, o);
}

absl::Status MakeTinyLora(int argc, char** argv) {
  ASSIGN_OR_RETURN(
      Args a,
      Args::Parse(argc, argv, 2,
                  {"model", "r", "alpha", "targets", "rank-pattern", "seed", "dtype"}, {"rslora"}));
  if (a.positional().size() != 1)
    return absl::InvalidArgumentError("make-tiny-lora needs exactly one DIR");
  auto model = a.Get("model");
  if (!model) return absl::InvalidArgumentError("make-tiny-lora needs --model MODEL_DIR");
  TinyLoraOptions o;
  ASSIGN_OR_RETURN(o.r, a.Int("r", o.r));
  ASSIGN_OR_RETURN(o.alpha, a.Double("alpha", o.alpha));
  ASSIGN_OR_RETURN(o.targets, ParseLoraTargets(a.GetOr("targets", "q_proj,v_proj")));
  ASSIGN_OR_RETURN(int64_t seed, a.Int("seed", 0));
  o.seed = static_cast<uint64_t>(seed);
  ASSIGN_OR_RETURN(o.dtype, DTypeFlag(a));
  o.rslora = a.Has("rslora");
  for (const std::string& item : a.GetAll("rank-pattern")) {  // NAME_REGEX=RANK
    const size_t eq = item.rfind('=');
    int64_t rank = 0;
    if (eq == std::string::npos || !absl::SimpleAtoi(item.substr(eq + 1), &rank) || rank <= 0)
      return absl::InvalidArgumentError(
          absl::StrCat("--rank-pattern expects NAME_REGEX=RANK, got '", item, "'"));
    o.rank_pattern.emplace_back(item.substr(0, eq), rank);
  }
  return MakeTinyLoraAdapter(a.positional()[0], *model, o);
}

absl::Status Logits(int argc, char** argv) {
  ASSIGN_OR_RETURN(
      Args a,
      Args::Parse(argc, argv, 2,
                  Union(kEngineFlags, {"prompt-ids", "out", "prefill-len", "adapter"}), {}));
  ASSIGN_OR_RETURN(EngineOptions eo, EngineOptionsFromArgs(a));
  auto ids_flag = a.Get("prompt-ids");
  auto out = a.Get("out");
  if (!ids_flag || !out) return absl::InvalidArgumentError("logits needs --prompt-ids and --out");
  ASSIGN_OR_RETURN(std::vector<int32_t> ids, ParseIdList(*ids_flag, "--prompt-ids"));
  if (ids.empty()) return absl::InvalidArgumentError("--prompt-ids is empty");
  const int64_t t = static_cast<int64_t>(ids.size());
  ASSIGN_OR_RETURN(int64_t k, a.Int("prefill-len", t));
  if (k < 1 || k > t)
    return absl::InvalidArgumentError("--prefill-len must be in [1, number of prompt ids]");
  ASSIGN_OR_RETURN(auto engine, Engine::Create(eo));
  AdapterRef adapter;
  if (auto dir = a.Get("adapter")) {
    ASSIGN_OR_RETURN(adapter, engine->LoadAdapter(*dir));
  }
  const int64_t vocab = engine->config().vocab_size;
  std::vector<float> all(t * vocab), step;
  KvSequence kv;
  std::span<const int32_t> span(ids);
  // The first k tokens are the prompt: PARA vectors come from them and are reused afterwards.
  ForwardItem prefill{&kv, span.subspan(0, k), true, adapter.para.get(), 0, adapter.lora.get()};
  RETURN_IF_ERROR(engine->Forward({&prefill, 1}, &step));
  std::copy(step.begin(), step.end(), all.begin());
  for (int64_t i = k; i < t; ++i) {
    ForwardItem decode{&kv, span.subspan(i, 1), false, adapter.para.get(), 0, adapter.lora.get()};
    RETURN_IF_ERROR(engine->Forward({&decode, 1}, &step));
    std::copy(step.begin(), step.end(), all.begin() + i * vocab);
  }
  engine->kv_cache().Release(&kv);
  return WriteNpyF32(*out, {t, vocab}, all.data());
}

absl::Status Info(int argc, char** argv) {
  ASSIGN_OR_RETURN(Args a, Args::Parse(argc, argv, 2, kEngineFlags, {}));
  ASSIGN_OR_RETURN(EngineOptions eo, EngineOptionsFromArgs(a));
  ASSIGN_OR_RETURN(auto engine, Engine::Create(eo));
  const ModelConfig& c = engine->config();
  std::printf(
      "model %s\n  layers %ld hidden %ld heads %ld kv_heads %ld head_dim %ld ffn %ld vocab %ld\n"
      "  parameters %.3f M, context %ld, rope_theta %g\n  tokenizer: %s\n  kv cache: %d blocks of "
      "%d positions (%.1f MiB)\n",
      eo.model_dir.c_str(), c.num_hidden_layers, c.hidden_size, c.num_attention_heads,
      c.num_key_value_heads, c.head_dim, c.intermediate_size, c.vocab_size, c.NumParameters() / 1e6,
      engine->max_model_len(), c.rope_theta,
      engine->model().tokenizer()
          ? absl::StrCat(engine->model().tokenizer()->vocab_size(), " pieces").c_str()
          : "none",
      engine->kv_cache().pool().num_blocks(), engine->kv_cache().block_size(),
      engine->kv_cache().pool().num_blocks() * engine->kv_cache().block_bytes() / 1048576.0);
  return absl::OkStatus();
}

}  // namespace
}  // namespace para::tools

int main(int argc, char** argv) {
  using namespace para::tools;
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const std::string cmd = argv[1];
  absl::Status s;
  if (cmd == "make-tiny-model") {
    s = MakeTiny(argc, argv);
  } else if (cmd == "make-tiny-adapter") {
    s = MakeTinyAdapter(argc, argv);
  } else if (cmd == "make-tiny-lora") {
    s = MakeTinyLora(argc, argv);
  } else if (cmd == "logits") {
    s = Logits(argc, argv);
  } else if (cmd == "info") {
    s = Info(argc, argv);
  } else {
    std::fprintf(stderr, "para-tool: unknown command '%s'\n%s", cmd.c_str(), kUsage);
    return 2;
  }
  if (!s.ok()) {
    std::fprintf(stderr, "para-tool %s: %s\n", cmd.c_str(), s.ToString().c_str());
    return 1;
  }
  return 0;
}
