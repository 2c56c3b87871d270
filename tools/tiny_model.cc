#include "tools/tiny_model.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "engine/model_config.h"
#include "engine/tokenizer.h"
#include "tools/safetensors_writer.h"

namespace para::tools {
namespace {

uint64_t SplitMix(uint64_t* state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t HashName(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

TensorSpec Random(const std::string& name, std::vector<int64_t> shape, DType dtype, uint64_t seed,
                  float mean, float stddev) {
  TensorSpec t;
  t.name = name;
  t.shape = std::move(shape);
  t.dtype = dtype;
  const uint64_t stream = HashName(name);
  t.fill = [seed, stream, mean, stddev](float* dst, int64_t n) {
    FillUniform(seed, stream, mean, stddev, dst, n);
  };
  return t;
}

std::vector<TensorSpec> ModelTensors(const ModelConfig& c, const TinyModelOptions& o) {
  std::vector<TensorSpec> t;
  const int64_t h = c.hidden_size, f = c.intermediate_size;
  auto linear = [&](const std::string& name, int64_t out, int64_t in) {
    t.push_back(
        Random(name, {out, in}, o.dtype, o.seed, 0.f, 1.0f / std::sqrt(static_cast<float>(in))));
  };
  auto norm = [&](const std::string& name) {
    t.push_back(Random(name, {h}, o.dtype, o.seed, 1.f, 0.1f));
  };
  t.push_back(Random("model.embed_tokens.weight", {c.vocab_size, h}, o.dtype, o.seed, 0.f, 1.f));
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = absl::StrCat("model.layers.", i, ".");
    norm(p + "input_layernorm.weight");
    linear(p + "self_attn.q_proj.weight", c.q_dim(), h);
    linear(p + "self_attn.k_proj.weight", c.kv_dim(), h);
    linear(p + "self_attn.v_proj.weight", c.kv_dim(), h);
    linear(p + "self_attn.o_proj.weight", h, c.q_dim());
    norm(p + "post_attention_layernorm.weight");
    linear(p + "mlp.gate_proj.weight", f, h);
    linear(p + "mlp.up_proj.weight", f, h);
    linear(p + "mlp.down_proj.weight", h, f);
  }
  norm("model.norm.weight");
  if (!c.tie_word_embeddings) linear("lm_head.weight", c.vocab_size, h);
  return t;
}

absl::Status TrainTokenizer(const std::filesystem::path& dir, const TinyModelOptions& o) {
  const std::filesystem::path corpus = dir / "tokenizer_corpus.txt";
  RETURN_IF_ERROR(WriteTextFile(corpus.string(), GenerateCorpus(o.seed, 20000)));
  std::string error;
  const bool ok = TrainSentencePieceBpe(corpus.string(), (dir / "tokenizer").string(),
                                        static_cast<int>(o.vocab), &error);
  std::filesystem::remove(corpus);
  std::filesystem::remove(dir / "tokenizer.vocab");
  if (!ok)
    return absl::InvalidArgumentError(
        absl::StrCat(error, " (the tokenizer needs --vocab >= 384; or pass --no-tokenizer)"));
  return absl::OkStatus();
}

}  // namespace

void FillUniform(uint64_t seed, uint64_t stream, float mean, float stddev, float* dst, int64_t n) {
  // Chunks with their own generator state, so large tensors fill in parallel and the values do
  // not depend on the thread count.
  constexpr int64_t kChunk = 1 << 20;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  const float half_width = stddev * std::sqrt(3.0f);
  auto fill_chunk = [&](int64_t c) {
    uint64_t state =
        seed * 0x2545F4914F6CDD1Dull ^ stream ^ (static_cast<uint64_t>(c) * 0x9E3779B97F4A7C15ull);
    const int64_t end = std::min(n, (c + 1) * kChunk);
    for (int64_t i = c * kChunk; i < end; ++i) {
      const double u = static_cast<double>(SplitMix(&state) >> 11) * (1.0 / 9007199254740992.0);
      dst[i] = mean + half_width * static_cast<float>(2.0 * u - 1.0);
    }
  };
  const int threads =
      chunks > 1 ? static_cast<int>(std::max(1u, std::thread::hardware_concurrency())) : 1;
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t)
    pool.emplace_back([&, t] {
      for (int64_t c = t; c < chunks; c += threads) fill_chunk(c);
    });
  for (int64_t c = 0; c < chunks; c += threads) fill_chunk(c);
  for (auto& th : pool) th.join();
}

std::string GenerateCorpus(uint64_t seed, int lines) {
  static const char* kSyllables[] = {"ka",  "lo",  "mi",  "ne",  "ra", "tu", "si",  "po",
                                     "de",  "va",  "shi", "gor", "an", "el", "or",  "us",
                                     "ith", "qua", "zen", "bri", "th", "st", "ing", "er"};
  static const char* kSpecial[] = {"café", "naïve", "Ünïcödé", "façade", "über",
                                   "你好", "世界",  "🙂",    "—",      "€5"};
  static const char* kPunct[] = {".", ",", "!", "?", ";", ":"};
  uint64_t state = seed ^ 0x5DEECE66Dull;
  auto pick = [&](uint64_t n) { return SplitMix(&state) % n; };
  std::vector<std::string> words;
  for (int i = 0; i < 600; ++i) {
    std::string w;
    for (uint64_t s = 0, n = 1 + pick(3); s < n; ++s) w += kSyllables[pick(std::size(kSyllables))];
    words.push_back(w);
  }
  std::string text;
  for (int l = 0; l < lines; ++l) {
    const uint64_t n = 4 + pick(12);
    for (uint64_t i = 0; i < n; ++i) {
      if (i) text += ' ';
      const uint64_t r = pick(100);
      if (r < 4) {
        text += kSpecial[pick(std::size(kSpecial))];
      } else if (r < 9) {
        text += std::to_string(pick(10000));
      } else {
        // Zipf-like: favour the first words.
        std::string w = words[pick(1 + pick(words.size()))];
        if (i == 0) w[0] = static_cast<char>(std::toupper(w[0]));
        text += w;
      }
      if (pick(10) == 0) text += kPunct[pick(std::size(kPunct))];
    }
    text += ".\n";
  }
  return text;
}

absl::Status MakeTinyModel(const std::string& dir, const TinyModelOptions& o) {
  namespace fs = std::filesystem;
  RETURN_IF_ERROR(MakeDirectories(dir));
  if (o.layers <= 0 || o.hidden <= 0 || o.heads <= 0 || o.kv_heads <= 0 || o.ffn <= 0 ||
      o.vocab <= 3)
    return absl::InvalidArgumentError(
        "layers, hidden, heads, kv-heads, ffn must be positive and vocab > 3");
  if (o.heads % o.kv_heads != 0)
    return absl::InvalidArgumentError("--heads must be a multiple of --kv-heads");
  ModelConfig c;
  c.hidden_size = o.hidden;
  c.intermediate_size = o.ffn;
  c.num_hidden_layers = o.layers;
  c.num_attention_heads = o.heads;
  c.num_key_value_heads = o.kv_heads;
  c.head_dim = o.head_dim > 0 ? o.head_dim : o.hidden / o.heads;
  if (c.head_dim <= 0 || c.head_dim % 2)
    return absl::InvalidArgumentError("head_dim must be a positive even number");
  c.vocab_size = o.vocab;
  c.max_position_embeddings = o.max_pos;
  c.rope_theta = o.rope_theta;
  c.rms_norm_eps = 1e-5;
  c.tie_word_embeddings = o.tie_embeddings;
  c.bos_token_id = 1;
  c.eos_token_ids = {2};
  const fs::path d(dir);
  RETURN_IF_ERROR(WriteTextFile((d / "config.json").string(), ModelConfigToJson(c)));
  RETURN_IF_ERROR(WriteTextFile(
      (d / "generation_config.json").string(),
      "{\n  \"bos_token_id\": 1,\n  \"eos_token_id\": 2,\n  \"do_sample\": false\n}\n"));
  RETURN_IF_ERROR(WriteTextFile(
      (d / "tokenizer_config.json").string(),
      absl::StrCat(
          "{\n  \"add_bos_token\": true,\n  \"add_eos_token\": false,\n"
          "  \"bos_token\": \"<s>\",\n  \"eos_token\": \"</s>\",\n  \"unk_token\": \"<unk>\",\n"
          "  \"model_max_length\": ",
          o.max_pos, ",\n  \"tokenizer_class\": \"LlamaTokenizer\"\n}\n")));
  if (o.tokenizer) RETURN_IF_ERROR(TrainTokenizer(d, o));
  return WriteCheckpoint(dir, ModelTensors(c, o), o.shards);
}

}  // namespace para::tools
