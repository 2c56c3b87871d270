"""What the reference test modules share: finding and running the engine's binaries, making tiny
models and adapters (with para-tool, or by hand for the self-checks), and comparing the engine's
output with the numpy references (log-softmax error with its diagnostics, greedy tokens compared step by
step with the reference fed the engine's tokens).

It drives para-tool / para-cli only as a user would (command lines, files, stdout) and knows
nothing of their internals; the math is in llama_ref / para_ref / lora_ref.
"""
import json
import math
import os
import shlex
import subprocess

import numpy as np
import pytest

import llama_ref as R
import lora_ref as L
import para_ref as P

LOGPROB_TOL = 1e-4      # max |log_softmax(engine) - log_softmax(reference)|
TEETH = 1e-2            # an adapter (or pooler, or prompt length) must move log-probs by more than this
AMBIGUOUS_GAP = 1e-5    # greedy: reference top-2 logits this close => argmax is ambiguous
VOCAB = 512             # vocabulary of the models made with para-tool make-tiny-model
SELFCHECK_VOCAB = 96    # vocabulary of the models write_tiny_llama makes


# ----------------------------------------------------------------------------
# the binaries: $PARA_TOOL and $PARA_CLI
# ----------------------------------------------------------------------------
def _binary(var):
    path = os.environ.get(var)
    if not path:
        return None, f"${var} is not set"
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        # set but broken (a failed build): an error, never a skip
        raise RuntimeError(f"${var}={path!r} is not an executable file")
    return path, None


# (path, None) or (None, why not); a module that needs para-tool skips itself when it is None
# (unset: run outside ctest), and fails when it is set to something that is not a program
PARA_TOOL, TOOL_MISSING = _binary("PARA_TOOL")
PARA_CLI, CLI_MISSING = _binary("PARA_CLI")
needs_cli = pytest.mark.skipif(PARA_CLI is None, reason=f"needs para-cli: {CLI_MISSING}")


def run(cmd, timeout=120, tail=3000, more=None):
    """Run cmd; unless it exits 0, fail the test with the ends of its stderr (tail characters) and
    stdout, and more() appended when given."""
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(f"command failed (rc={proc.returncode}): {shlex.join(cmd)}\n"
                    f"--- stderr (tail) ---\n{proc.stderr[-tail:]}\n--- stdout (tail) ---\n{proc.stdout[-1000:]}"
                    + (more() if more else ""))
    return proc


def built_once(tmp_path_factory, build):
    """get(name) for a session fixture: the first call for a name returns and keeps
    build(name, a fresh temporary directory named after it); later calls return the same."""
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = build(name, str(tmp_path_factory.mktemp(name)))
        return cache[name]

    return get


def random_ids(seed, T, vocab=VOCAB, low=3):
    """T token ids drawn uniformly from [low, vocab) by numpy's default_rng(seed)."""
    return [int(t) for t in np.random.default_rng(seed).integers(low, vocab, size=T)]


# ----------------------------------------------------------------------------
# tiny models and adapters made by para-tool
# ----------------------------------------------------------------------------
def model_spec(spec):
    """A make-tiny-model spec (layers, hidden, heads, kv_heads, ffn, seed, ...) with the defaults
    filled in."""
    s = dict(dtype="f32", shards=1, head_dim=None, tie=False, rope_theta=None, max_pos=None, vocab=VOCAB)
    s.update(spec)
    return s


def model_args(spec):
    """The make-tiny-model arguments for a spec."""
    s = model_spec(spec)
    args = ["--layers", s["layers"], "--hidden", s["hidden"], "--heads", s["heads"],
            "--kv-heads", s["kv_heads"], "--ffn", s["ffn"], "--vocab", s["vocab"],
            "--seed", s["seed"], "--dtype", s["dtype"]]
    if s["shards"] > 1:
        args += ["--shards", s["shards"]]
    if s["head_dim"]:
        args += ["--head-dim", s["head_dim"]]
    if s["tie"]:
        args += ["--tie-embeddings"]
    if s["rope_theta"]:
        args += ["--rope-theta", s["rope_theta"]]
    if s["max_pos"]:
        args += ["--max-pos", s["max_pos"]]
    return [str(a) for a in args]


def check_model_dir(d, s, layout=False):
    """The tool must have written what was asked, or a test would not test what it claims.
    s: a spec with its defaults (model_spec). Always checked: the config's sizes and the dtype of
    the weights. layout: also head_dim, tie_word_embeddings, rope_theta, max_position_embeddings
    and the number of shards."""
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    want = {"hidden_size": s["hidden"], "intermediate_size": s["ffn"], "num_hidden_layers": s["layers"],
            "num_attention_heads": s["heads"], "vocab_size": s["vocab"]}
    got = {k: cfg.get(k) for k in want}
    assert got == want, f"config.json mismatch: {got} != {want}"
    assert cfg.get("num_key_value_heads", s["heads"]) == s["kv_heads"]
    if not layout:
        dtypes = set(R.safetensors_dtypes(os.path.join(d, "model.safetensors")).values())
        assert dtypes == {s["dtype"].upper()}, f"asked for {s['dtype']}, model.safetensors holds {dtypes}"
        return
    head_dim = cfg.get("head_dim") or s["hidden"] // s["heads"]
    assert head_dim == (s["head_dim"] or s["hidden"] // s["heads"]), f"config head_dim {head_dim}"
    assert bool(cfg.get("tie_word_embeddings", False)) == s["tie"]
    if s["rope_theta"]:
        assert float(cfg.get("rope_theta", 10000.0)) == s["rope_theta"]
    if s["max_pos"]:
        assert cfg.get("max_position_embeddings") == s["max_pos"]
    index = os.path.join(d, "model.safetensors.index.json")
    if s["shards"] > 1:
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
        assert len(files) == s["shards"], f"expected {s['shards']} shards, index lists {files}"
    else:
        files = ["model.safetensors"]
    dtypes = set().union(*(R.safetensors_dtypes(os.path.join(d, fn)).values() for fn in files))
    assert dtypes == {s["dtype"].upper()}, f"asked for {s['dtype']}, safetensors hold {dtypes}"


def make_tiny_model(d, spec, layout=False):
    """para-tool make-tiny-model into d, checked (check_model_dir); returns the reference model."""
    s = model_spec(spec)
    run([PARA_TOOL, "make-tiny-model", d] + model_args(s))
    check_model_dir(d, s, layout)
    return R.load_model(d)


def make_tiny_para(d, mdir, a):
    """para-tool make-tiny-adapter into d for the model in mdir; a: r, pooler, seed and optionally
    activation, dtype, identity."""
    cmd = [PARA_TOOL, "make-tiny-adapter", d, "--model", mdir, "--r", str(a["r"]), "--pooler", a["pooler"]]
    if "activation" in a:
        cmd += ["--activation", a["activation"]]
    cmd += ["--seed", str(a["seed"])]
    if "dtype" in a:
        cmd += ["--dtype", a["dtype"]]
    if a.get("identity"):
        cmd.append("--identity")
    run(cmd)


# ----------------------------------------------------------------------------
# engine logits vs reference logits
# ----------------------------------------------------------------------------
# The engine's numerics under test: weights as stored and a float32 KV cache unless a test asks
# for another (16-bit models would otherwise default to an F16 cache).
ENGINE_NUMERICS = ["--kv-cache-dtype", "f32"]


def logits_cmd(mdir, ids, out, adapter_dir=None, prefill_len=None, numerics=None):
    """para-tool logits: float32 logits of ids into the .npy out (prefill_len: prefill that many
    tokens, then decode the rest one by one)."""
    cmd = [PARA_TOOL, "logits", "--model", mdir, "--prompt-ids", ",".join(map(str, ids)), "--out", str(out),
           *(ENGINE_NUMERICS if numerics is None else numerics)]
    if adapter_dir is not None:
        cmd += ["--adapter", adapter_dir]
    if prefill_len is not None:
        cmd += ["--prefill-len", str(prefill_len)]
    return cmd


def engine_logits(mdir, ids, out, adapter_dir=None, prefill_len=None, numerics=None):
    run(logits_cmd(mdir, ids, out, adapter_dir, prefill_len, numerics))
    return np.load(out)


def logprob_error(a, b):
    """|log_softmax(a) - log_softmax(b)|, elementwise, in float64."""
    return np.abs(R.log_softmax(np.asarray(a, np.float64)) - R.log_softmax(np.asarray(b, np.float64)))


def max_dlogprob(a, b):
    return float(logprob_error(a, b).max())


def assert_logprobs_close(got, ref, what, float32=True, name="engine logits", show=False, more=None):
    """max |log_softmax(got) - log_softmax(ref)| must be at most LOGPROB_TOL; a failure names the
    worst position and token and lists each position's max error. float32: got must be float32 (a
    para-tool .npy). name: what got is, in messages. show: print the max error. more(): text
    appended to a failure. Returns the max error."""
    if float32:
        assert got.dtype == np.float32, f"{what}: engine .npy dtype {got.dtype}, expected float32"
    assert got.shape == ref.shape, f"{what}: {name} shape {got.shape}, reference {ref.shape}"
    assert np.all(np.isfinite(got)), f"{what}: non-finite {name}"
    err = logprob_error(got, ref)
    if show:
        print(f"{what}: max |dlog_softmax| = {err.max():.3e}")
    if err.max() > LOGPROB_TOL:
        row, col = np.unravel_index(np.argmax(err), err.shape)
        per_row = " ".join(f"{e:.1e}" for e in err.max(axis=1))
        pytest.fail(f"{what}: max |dlog_softmax| = {err.max():.3e} > {LOGPROB_TOL:g} "
                    f"at position {row}, token {col}\nper-position max error: {per_row}"
                    + (more() if more else ""))
    return float(err.max())


def assert_engine_adapter_is_base(mdir, adir, ids, tmp_path, prefill_len, what):
    """The engine's logits with the adapter in adir must equal its base-model logits bit for bit
    (what: names the adapter in a failure). Returns the adapter logits."""
    base = engine_logits(mdir, ids, tmp_path / "base.npy", prefill_len=prefill_len)
    got = engine_logits(mdir, ids, tmp_path / "adapter.npy", adir, prefill_len=prefill_len)
    assert got.dtype == base.dtype and got.shape == base.shape
    if not np.array_equal(got, base):
        diff = np.abs(got.astype(np.float64) - base)
        pytest.fail(f"{what} logits differ from base logits "
                    f"(max |diff| {diff.max():.3e} at {np.unravel_index(np.argmax(diff), diff.shape)})")
    return got


def assert_adapter_changes_logits(ref_adapted, ref_base, mdir, adir, ids, tmp_path):
    """An adapter must move log-probs by more than TEETH, in the reference (ref_adapted vs
    ref_base logits of ids) and in the engine (ids with and without the adapter in adir), or the
    parity tests would be vacuous."""
    ref_d = max_dlogprob(ref_adapted, ref_base)
    assert ref_d > TEETH, f"reference: adapter moves log-probs by only {ref_d:.2e}"
    base = engine_logits(mdir, ids, tmp_path / "base.npy")
    got = engine_logits(mdir, ids, tmp_path / "adapter.npy", adir)
    eng_d = max_dlogprob(got, base)
    assert eng_d > TEETH, f"engine: adapter moves log-probs by only {eng_d:.2e} (reference {ref_d:.2e})"


def assert_engine_refuses(mdir, adir, out, case, must_name, kind="adapter"):
    """para-tool logits must refuse the malformed adapter in adir and, when must_name is given,
    name it in its error. Returns the error output (stderr + stdout)."""
    cmd = [PARA_TOOL, "logits", "--model", mdir, "--adapter", adir, "--prompt-ids", "5,6,7", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    msg = proc.stderr + proc.stdout
    assert proc.returncode != 0, f"{case}: engine accepted a malformed {kind}: {shlex.join(cmd)}"
    if must_name:
        assert must_name in msg, f"{case}: error does not name {must_name}:\n{msg[-1500:]}"
    return msg


# ----------------------------------------------------------------------------
# greedy generation: para-cli vs reference
# ----------------------------------------------------------------------------
def generate_cmd(mdir, prompt, n_steps, adapter_dir=None):
    cmd = [PARA_CLI, "generate", "--model", mdir, "--prompt-ids", ",".join(map(str, prompt)),
           "--max-tokens", str(n_steps), "--ignore-eos", "--json", *ENGINE_NUMERICS]
    if adapter_dir is not None:
        cmd += ["--adapter", adapter_dir]
    return cmd


def parse_generate_jsons(stdout):
    """The JSON result lines (objects with token_ids) of para-cli generate --json, in order."""
    out = []
    for line in stdout.strip().splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                continue
            if "token_ids" in obj:
                out.append(obj)
    if not out:
        pytest.fail(f"no JSON line with token_ids in para-cli output:\n{stdout[-2000:]}")
    return out


def cli_generate(mdir, prompt, n_steps, adapter_dir=None):
    """Greedy tokens of one request run alone by para-cli."""
    results = parse_generate_jsons(run(generate_cmd(mdir, prompt, n_steps, adapter_dir)).stdout)
    assert len(results) == 1, f"expected one JSON result, got {len(results)}"
    return [int(t) for t in results[0]["token_ids"]]


def reference_step_logits(model, prompt, tokens, lora_ad=None, para_ad=None):
    """The reference logits at each generation step [len(tokens), vocab] when the model (base, or
    with one LoRA or one PARA adapter) is fed prompt + tokens: row i predicts tokens[i]."""
    assert lora_ad is None or para_ad is None
    if para_ad is not None:
        full = P.forward_logits(model, prompt + tokens, para_ad, prompt_len=len(prompt))
    else:
        full = R.forward_logits(L.merge_lora(model, lora_ad), prompt + tokens)
    return full[len(prompt) - 1: len(prompt) - 1 + len(tokens)]


def assert_greedy_matches_reference(got, model, prompt, n_steps, what, lora_ad=None, para_ad=None):
    """got (the engine's tokens; --ignore-eos --max-tokens n_steps) must be a greedy generation of
    the reference: all n_steps of them, each one the reference's argmax, or within AMBIGUOUS_GAP of
    it (a near-tie either side may break), given the prompt and the engine's tokens before it. The
    reference is fed the engine's own tokens, so a near-tie broken the other way does not end the
    comparison: every token is compared. Returns got."""
    assert len(got) == n_steps, f"{what}: --ignore-eos --max-tokens {n_steps} produced {len(got)} tokens"
    steps = reference_step_logits(model, prompt, list(got), lora_ad, para_ad)
    best = steps.argmax(axis=1)
    ties = 0
    for i, tok in enumerate(got):
        short = steps[i, best[i]] - steps[i, tok]
        if short > AMBIGUOUS_GAP:
            pytest.fail(f"{what}: greedy token {i} differs: engine {tok}, reference {int(best[i])} (the engine's "
                        f"token is {short:.2e} below the reference's best logit {steps[i, best[i]]:.6f}, "
                        f"more than {AMBIGUOUS_GAP:g})\nengine: {list(got)}")
        ties += int(tok != best[i])
    if ties:
        print(f"NOTE {what}: {ties} of {n_steps} engine tokens are a near-tie's other side "
              f"(within {AMBIGUOUS_GAP:g} of the reference's best); all {n_steps} compared")
    return list(got)


def run_mixed_batch(tmp_path, mdir, model, reqs, adapters, empty_adapter_for_odd_base=False):
    """Runs reqs [(adapter name or None for the base model, prompt ids, max_tokens)] as one para-cli
    --requests batch (ignore_eos); adapters: {name: ("lora" or "para", adapter dir, reference
    adapter)}. Each request's batched tokens must equal the same request run alone and the
    reference (assert_greedy_matches_reference). empty_adapter_for_odd_base: base-model requests at odd
    positions say "adapter": "" (which also means the base model). Returns each request's reference
    tokens."""
    lines = []
    for i, (n, prompt, max_tokens) in enumerate(reqs):
        obj = {"prompt_ids": prompt, "max_tokens": max_tokens, "ignore_eos": True}
        if n is not None:
            obj["adapter"] = adapters[n][1]
        elif empty_adapter_for_odd_base and i % 2:
            obj["adapter"] = ""
        lines.append(json.dumps(obj))
    req_file = tmp_path / "requests.jsonl"
    req_file.write_text("\n".join(lines) + "\n")
    results = parse_generate_jsons(run([PARA_CLI, "generate", "--model", mdir, "--requests", str(req_file),
                                        "--json"]).stdout)
    assert len(results) == len(reqs), f"{len(reqs)} requests, {len(results)} JSON results"

    ref_tokens = []
    for i, ((n, prompt, max_tokens), res) in enumerate(zip(reqs, results)):
        kind, adir, ad = adapters[n] if n else ("base", None, None)
        what = f"request {i} ({n or 'base'}, prompt len {len(prompt)})"
        got = [int(t) for t in res["token_ids"]]
        alone = cli_generate(mdir, prompt, max_tokens, adir)
        assert got == alone, f"{what}: batched tokens differ from the same request run alone\n" \
                             f"batched: {got}\nalone  : {alone}"
        ref_tokens.append(assert_greedy_matches_reference(
            got, model, prompt, max_tokens, what,
            lora_ad=ad if kind == "lora" else None, para_ad=ad if kind == "para" else None))
    return ref_tokens


# ----------------------------------------------------------------------------
# written by hand (no binaries needed)
# ----------------------------------------------------------------------------
def write_tiny_llama(d, layers=2, hidden=32, heads=4, kv_heads=2, ffn=48, vocab=SELFCHECK_VOCAB, seed=0):
    """A random F32 LlamaForCausalLM directory (config.json + model.safetensors) in d; returns the
    reference model."""
    os.makedirs(d, exist_ok=True)
    rng = np.random.default_rng(seed)
    hd = hidden // heads
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": hidden,
           "intermediate_size": ffn, "num_hidden_layers": layers, "num_attention_heads": heads,
           "num_key_value_heads": kv_heads, "head_dim": hd, "rms_norm_eps": 1e-5,
           "rope_theta": 10000.0, "vocab_size": vocab, "tie_word_embeddings": False,
           "max_position_embeddings": 256}
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f)

    def lin(o, i):
        return rng.normal(0, 1 / math.sqrt(i), size=(o, i))

    t = {"model.embed_tokens.weight": rng.normal(0, 1, size=(vocab, hidden)),
         "model.norm.weight": 1 + 0.1 * rng.normal(size=hidden),
         "lm_head.weight": lin(vocab, hidden)}
    for i in range(layers):
        p = f"model.layers.{i}."
        t.update({p + "input_layernorm.weight": 1 + 0.1 * rng.normal(size=hidden),
                  p + "post_attention_layernorm.weight": 1 + 0.1 * rng.normal(size=hidden),
                  p + "self_attn.q_proj.weight": 2 * lin(heads * hd, hidden),
                  p + "self_attn.k_proj.weight": 2 * lin(kv_heads * hd, hidden),
                  p + "self_attn.v_proj.weight": lin(kv_heads * hd, hidden),
                  p + "self_attn.o_proj.weight": lin(hidden, heads * hd),
                  p + "mlp.gate_proj.weight": lin(ffn, hidden),
                  p + "mlp.up_proj.weight": lin(ffn, hidden),
                  p + "mlp.down_proj.weight": lin(hidden, ffn)})
    R.write_safetensors(os.path.join(d, "model.safetensors"), t)
    return R.load_model(d)


# config changes that make a LoRA adapter something other than plain LoRA, or not LoRA at all
_LORA_CONFIG_BREAKS = {"peft_type": {"peft_type": "LOHA"}, "dora": {"use_dora": True},
                       "fan_in_fan_out": {"fan_in_fan_out": True}, "bias_all": {"bias": "all"}}


def write_malformed_lora(d, model, case, seed):
    """A q_proj + v_proj LoRA adapter (r 4, alpha 8) for a 2-layer `model` in d, broken as `case`
    says: missing_b, rank_vs_shape, unexpected_tensor, untargeted_module, targeted_missing,
    wrong_block, layer_out_of_range, non_finite, or a config change (peft_type, dora,
    fan_in_fan_out, bias_all)."""
    targets = ["q_proj", "v_proj"]
    t = L.random_lora_tensors(model, 4, targets, seed=seed)
    extra, rank_pattern = None, None
    if case == "missing_b":
        del t[L.tensor_name(1, "v_proj", "B")]
    elif case == "rank_vs_shape":
        rank_pattern = {"q_proj": 2}
    elif case == "unexpected_tensor":
        t["base_model.model.lm_head.weight"] = model["weights"]["lm_head.weight"]
    elif case == "untargeted_module":
        t[L.tensor_name(0, "k_proj", "A")] = t[L.tensor_name(0, "v_proj", "A")]
        t[L.tensor_name(0, "k_proj", "B")] = t[L.tensor_name(0, "v_proj", "B")]
    elif case == "targeted_missing":
        del t[L.tensor_name(1, "q_proj", "A")], t[L.tensor_name(1, "q_proj", "B")]
    elif case == "wrong_block":
        t["base_model.model.model.layers.0.mlp.q_proj.lora_A.weight"] = t.pop(L.tensor_name(0, "q_proj", "A"))
    elif case == "layer_out_of_range":
        t[L.PEFT_PREFIX + "model.layers.2.self_attn.q_proj.lora_A.weight"] = t[L.tensor_name(0, "q_proj", "A")]
    elif case == "non_finite":
        t[L.tensor_name(0, "q_proj", "B")][0, 0] = np.nan
    else:
        extra = _LORA_CONFIG_BREAKS[case]
    L.write_lora_adapter(d, t, 4, 8, targets, rank_pattern=rank_pattern, extra_config=extra)
