"""Compare PARA adapters in the C++ engine (para-tool / para-cli) with the numpy reference para_ref.py.

Run:  PARA_TOOL=build/bin/para-tool PARA_CLI=build/bin/para-cli python3 -m pytest -q tests/reference
(The reference itself is checked without binaries by test_para_ref_selfcheck.py.)
"""
import json
import os
import shlex
import subprocess
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llama_ref as R  # noqa: E402
import para_ref as P  # noqa: E402


def _binary(var):
    path = os.environ.get(var)
    if not path:
        return None, f"${var} is not set"
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        return None, f"${var}={path!r} is not an executable file"
    return path, None


PARA_TOOL, _tool_why = _binary("PARA_TOOL")
PARA_CLI, _cli_why = _binary("PARA_CLI")
if PARA_TOOL is None:
    pytest.skip(f"PARA adapter engine-vs-reference tests need para-tool: {_tool_why}", allow_module_level=True)
needs_cli = pytest.mark.skipif(PARA_CLI is None, reason=f"needs para-cli: {_cli_why}")

LOGPROB_TOL = 1e-4      # max |log_softmax(engine) - log_softmax(reference)|
TEETH = 1e-2            # an adapter (or pooler, or prompt length) must move log-probs by more than this
AMBIGUOUS_GAP = 1e-5    # greedy: reference top-2 logits this close => argmax is ambiguous
VOCAB = 512

# name -> make-tiny-model arguments
MODELS = {
    "gqa4x2":  dict(layers=2, hidden=64, heads=4, kv_heads=2, ffn=128, seed=41, dtype="f32"),
    "mha4x4":  dict(layers=2, hidden=64, heads=4, kv_heads=4, ffn=128, seed=42, dtype="f32"),
    "gqa8x2":  dict(layers=3, hidden=128, heads=8, kv_heads=2, ffn=256, seed=43, dtype="f32"),
    "gqa_bf16": dict(layers=2, hidden=64, heads=4, kv_heads=2, ffn=128, seed=44, dtype="bf16"),
}

# name -> make-tiny-adapter arguments
ADAPTERS = {
    "gqa_last_gelu_r8_f32":        dict(model="gqa4x2", r=8, pooler="last", activation="gelu", dtype="f32", seed=1),
    "gqa_mean_gelutanh_r16_bf16":  dict(model="gqa4x2", r=16, pooler="mean", activation="gelu_tanh", dtype="bf16", seed=2),
    "gqa_last_silu_r4_f16":        dict(model="gqa4x2", r=4, pooler="last", activation="silu", dtype="f16", seed=3),
    "gqa_mean_relu_r8_f32":        dict(model="gqa4x2", r=8, pooler="mean", activation="relu", dtype="f32", seed=4),
    "mha_last_gelu_r1_f16":        dict(model="mha4x4", r=1, pooler="last", activation="gelu", dtype="f16", seed=5),
    "mha_mean_silu_r8_f32":        dict(model="mha4x4", r=8, pooler="mean", activation="silu", dtype="f32", seed=6),
    "mha_last_relu_r16_bf16":      dict(model="mha4x4", r=16, pooler="last", activation="relu", dtype="bf16", seed=7),
    "gqa8x2_mean_gelu_r16_bf16":   dict(model="gqa8x2", r=16, pooler="mean", activation="gelu", dtype="bf16", seed=8),
    "gqa8x2_last_gelutanh_r1_f32": dict(model="gqa8x2", r=1, pooler="last", activation="gelu_tanh", dtype="f32", seed=9),
    "bf16model_mean_gelu_r8_f16":  dict(model="gqa_bf16", r=8, pooler="mean", activation="gelu", dtype="f16", seed=10),
    # W_up = 0, b_up = 1: exactly the base model
    "gqa_identity_last":           dict(model="gqa4x2", r=8, pooler="last", activation="gelu", dtype="f32", seed=11, identity=True),
    "mha_identity_mean":           dict(model="mha4x4", r=4, pooler="mean", activation="silu", dtype="bf16", seed=12, identity=True),
}
RANDOM_ADAPTERS = [n for n, a in ADAPTERS.items() if not a.get("identity")]


# ----------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------
def _run(cmd, timeout=120):
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(f"command failed (rc={proc.returncode}): {shlex.join(cmd)}\n"
                    f"--- stderr (tail) ---\n{proc.stderr[-3000:]}\n--- stdout (tail) ---\n{proc.stdout[-1000:]}")
    return proc


def _model_args(s):
    return [str(a) for a in ["--layers", s["layers"], "--hidden", s["hidden"], "--heads", s["heads"],
                             "--kv-heads", s["kv_heads"], "--ffn", s["ffn"], "--vocab", VOCAB,
                             "--seed", s["seed"], "--dtype", s["dtype"]]]


def _check_model_dir(d, s):
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    want = {"hidden_size": s["hidden"], "intermediate_size": s["ffn"], "num_hidden_layers": s["layers"],
            "num_attention_heads": s["heads"], "vocab_size": VOCAB}
    got = {k: cfg.get(k) for k in want}
    assert got == want, f"config.json mismatch: {got} != {want}"
    assert cfg.get("num_key_value_heads", s["heads"]) == s["kv_heads"]
    dtypes = set(P.safetensors_dtypes(os.path.join(d, "model.safetensors")).values())
    assert dtypes == {s["dtype"].upper()}, f"asked for {s['dtype']}, model.safetensors holds {dtypes}"


def _check_adapter_dir(d, model, a):
    """The tool must have written what was asked, or a case would not test what its name says."""
    ad = P.load_para_adapter(d, model)      # validates peft_type, tensor names, shapes, finiteness
    got = {"r": ad["r"], "pooler": ad["pooler"], "activation": ad["activation"]}
    want = {"r": a["r"], "pooler": a["pooler"], "activation": a["activation"]}
    assert got == want, f"{d}: adapter_config.json says {got}, asked for {want}"
    dtypes = set(ad["dtypes"].values())
    assert dtypes == {a["dtype"].upper()}, f"{d}: asked for {a['dtype']}, adapter holds {dtypes}"
    ups = np.concatenate([np.ravel(w_up) for _, w_up, _ in ad["layers"]])
    biases = np.concatenate([b_up for _, _, b_up in ad["layers"]])
    if a.get("identity"):
        assert np.all(ups == 0) and np.all(biases == 1), f"{d}: --identity must write W_up = 0, b_up = 1"
    else:
        assert np.any(ups != 0), f"{d}: random adapter has W_up = 0"
    return ad


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    """model_dir(name) -> (path, reference model); each built once per session."""
    cache = {}

    def get(name):
        if name not in cache:
            d = str(tmp_path_factory.mktemp(name))
            _run([PARA_TOOL, "make-tiny-model", d] + _model_args(MODELS[name]))
            _check_model_dir(d, MODELS[name])
            cache[name] = (d, R.load_model(d))
        return cache[name]

    return get


@pytest.fixture(scope="session")
def adapter(tmp_path_factory, model_dir):
    """adapter(name) -> (model path, reference model, adapter path, reference adapter)."""
    cache = {}

    def get(name):
        if name not in cache:
            a = ADAPTERS[name]
            mdir, model = model_dir(a["model"])
            d = str(tmp_path_factory.mktemp(name))
            cmd = [PARA_TOOL, "make-tiny-adapter", d, "--model", mdir, "--r", str(a["r"]),
                   "--pooler", a["pooler"], "--activation", a["activation"], "--seed", str(a["seed"]),
                   "--dtype", a["dtype"]]
            if a.get("identity"):
                cmd.append("--identity")
            _run(cmd)
            cache[name] = (mdir, model, d, _check_adapter_dir(d, model, a))
        return cache[name]

    return get


def _prompt(seed, T, vocab=VOCAB):
    return [int(t) for t in np.random.default_rng(2000 + seed).integers(3, vocab, size=T)]


def _engine_logits(mdir, ids, out, adapter_dir=None, prefill_len=None):
    cmd = [PARA_TOOL, "logits", "--model", mdir, "--prompt-ids", ",".join(map(str, ids)), "--out", str(out)]
    if adapter_dir is not None:
        cmd += ["--adapter", adapter_dir]
    if prefill_len is not None:
        cmd += ["--prefill-len", str(prefill_len)]
    _run(cmd)
    return np.load(out)


def _max_dlogprob(a, b):
    return float(np.abs(R.log_softmax(np.asarray(a, np.float64)) - R.log_softmax(np.asarray(b, np.float64))).max())


def _assert_logprobs_close(got, ref, what):
    assert got.dtype == np.float32, f"{what}: engine .npy dtype {got.dtype}, expected float32"
    assert got.shape == ref.shape, f"{what}: engine logits shape {got.shape}, reference {ref.shape}"
    assert np.all(np.isfinite(got)), f"{what}: non-finite engine logits"
    err = np.abs(R.log_softmax(got.astype(np.float64)) - R.log_softmax(ref))
    row, col = np.unravel_index(np.argmax(err), err.shape)
    per_row = " ".join(f"{e:.1e}" for e in err.max(axis=1))
    if err.max() > LOGPROB_TOL:
        pytest.fail(f"{what}: max |dlog_softmax| = {err.max():.3e} > {LOGPROB_TOL:g} "
                    f"at position {row}, token {col}\nper-position max error: {per_row}")
    return float(err.max())


def _other_pooler(ad):
    return dict(ad, pooler="mean" if ad["pooler"] == "last" else "last")


def _parse_generate_jsons(stdout):
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


def _cli_generate(mdir, prompt, n_steps, adapter_dir=None):
    cmd = [PARA_CLI, "generate", "--model", mdir, "--prompt-ids", ",".join(map(str, prompt)),
           "--max-tokens", str(n_steps), "--ignore-eos", "--json"]
    if adapter_dir is not None:
        cmd += ["--adapter", adapter_dir]
    results = _parse_generate_jsons(_run(cmd).stdout)
    assert len(results) == 1, f"expected one JSON result, got {len(results)}"
    return [int(t) for t in results[0]["token_ids"]]


def _assert_greedy_matches_reference(got, model, prompt, n_steps, ad, what):
    """got must equal the reference greedy tokens up to the first near-tie step."""
    want = P.greedy_generate(model, prompt, n_steps, ad)
    # Reference logits at each generation step (row P-1+i predicts generated token i).
    steps = P.forward_logits(model, prompt + want, ad, prompt_len=len(prompt))[len(prompt) - 1: len(prompt) - 1 + n_steps]
    top2 = np.sort(steps, axis=1)[:, -2:]
    gaps = top2[:, 1] - top2[:, 0]
    ambiguous = np.flatnonzero(gaps < AMBIGUOUS_GAP)
    limit = int(ambiguous[0]) if ambiguous.size else n_steps
    if limit < n_steps:
        print(f"NOTE {what}: reference top-2 gap {gaps[limit]:.2e} < {AMBIGUOUS_GAP:g} at step {limit}; "
              f"comparing only the first {limit} tokens")
    else:
        assert len(got) == n_steps, f"{what}: --ignore-eos --max-tokens {n_steps} produced {len(got)} tokens"
    for i in range(limit):
        if i >= len(got) or got[i] != want[i]:
            eng = got[i] if i < len(got) else None
            detail = "" if eng is None else (
                f"; reference logits: want[{want[i]}]={steps[i, want[i]]:.6f} engine[{eng}]={steps[i, eng]:.6f}")
            pytest.fail(f"{what}: greedy token {i} differs: engine {eng}, reference {want[i]} "
                        f"(reference top-2 gap {gaps[i]:.2e}{detail})\nengine   : {got}\nreference: {want}")
    return want


# ----------------------------------------------------------------------------
# (a) whole prompt as one prefill, adapter applied
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("T", [1, 7, 33])
@pytest.mark.parametrize("name", RANDOM_ADAPTERS)
def test_adapter_prefill_logits_match_reference(adapter, tmp_path, name, T):
    mdir, model, adir, ad = adapter(name)
    ids = _prompt(ADAPTERS[name]["seed"] + T, T)
    ref = P.forward_logits(model, ids, ad)
    if T > 1:   # the pooler must matter here, or a wrong pooler would pass
        d = _max_dlogprob(ref, P.forward_logits(model, ids, _other_pooler(ad)))
        assert d > 10 * LOGPROB_TOL, f"test has no teeth: swapping the pooler moves log-probs by only {d:.2e}"
    got = _engine_logits(mdir, ids, tmp_path / "logits.npy", adir)
    _assert_logprobs_close(got, ref, f"{name} T={T} prefill")


# ----------------------------------------------------------------------------
# (b) prompt = first K tokens (vectors from them), tokens K..T-1 as decode steps reusing them
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("name,T,K", [
    ("gqa_last_gelu_r8_f32", 20, 1),
    ("gqa_last_gelu_r8_f32", 20, 5),
    ("gqa_mean_gelutanh_r16_bf16", 20, 1),
    ("gqa_mean_gelutanh_r16_bf16", 20, 5),
    ("mha_mean_silu_r8_f32", 20, 5),
    ("mha_last_gelu_r1_f16", 20, 5),
    ("gqa8x2_mean_gelu_r16_bf16", 40, 17),   # crosses typical KV-block boundaries (16, 32)
    ("bf16model_mean_gelu_r8_f16", 20, 20),  # K == T via the flag
])
def test_adapter_decode_logits_match_reference(adapter, tmp_path, name, T, K):
    mdir, model, adir, ad = adapter(name)
    ids = _prompt(ADAPTERS[name]["seed"] + 100 + T + K, T)
    ref = P.forward_logits(model, ids, ad, prompt_len=K)
    if K < T:   # vectors from the first K tokens must differ from vectors pooled over more tokens
        d = _max_dlogprob(ref[K:], P.forward_logits(model, ids, ad)[K:])
        assert d > 10 * LOGPROB_TOL, f"test has no teeth: prompt length K={K} vs {T} moves log-probs by {d:.2e}"
    got = _engine_logits(mdir, ids, tmp_path / "logits.npy", adir, prefill_len=K)
    _assert_logprobs_close(got, ref, f"{name} T={T} prefill-len={K}")


# ----------------------------------------------------------------------------
# (c) identity adapter == base model, bit for bit
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("prefill_len", [None, 5])
@pytest.mark.parametrize("name", ["gqa_identity_last", "mha_identity_mean"])
def test_identity_adapter_equals_base_exactly(adapter, tmp_path, name, prefill_len):
    mdir, model, adir, ad = adapter(name)
    ids = _prompt(ADAPTERS[name]["seed"], 13)
    base = _engine_logits(mdir, ids, tmp_path / "base.npy", prefill_len=prefill_len)
    got = _engine_logits(mdir, ids, tmp_path / "adapter.npy", adir, prefill_len=prefill_len)
    assert got.dtype == base.dtype and got.shape == base.shape
    if not np.array_equal(got, base):
        diff = np.abs(got.astype(np.float64) - base)
        pytest.fail(f"{name}: identity adapter logits differ from base logits "
                    f"(max |diff| {diff.max():.3e} at {np.unravel_index(np.argmax(diff), diff.shape)})")
    ref = P.forward_logits(model, ids, ad, prompt_len=prefill_len)
    assert np.array_equal(ref, R.forward_logits(model, ids)), "reference: identity adapter != base"
    _assert_logprobs_close(got, ref, f"{name} identity prefill-len={prefill_len}")


# ----------------------------------------------------------------------------
# (d) a random adapter really changes the logits (the parity tests are not vacuous)
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", RANDOM_ADAPTERS)
def test_adapter_changes_logits(adapter, tmp_path, name):
    mdir, model, adir, ad = adapter(name)
    ids = _prompt(ADAPTERS[name]["seed"] + 7, 7)
    ref_d = _max_dlogprob(P.forward_logits(model, ids, ad), R.forward_logits(model, ids))
    assert ref_d > TEETH, f"reference: adapter moves log-probs by only {ref_d:.2e}"
    base = _engine_logits(mdir, ids, tmp_path / "base.npy")
    got = _engine_logits(mdir, ids, tmp_path / "adapter.npy", adir)
    eng_d = _max_dlogprob(got, base)
    assert eng_d > TEETH, f"engine: adapter moves log-probs by only {eng_d:.2e} (reference {ref_d:.2e})"


# ----------------------------------------------------------------------------
# (e) greedy generation with an adapter: vectors from the prompt, reused for every token
# ----------------------------------------------------------------------------
@needs_cli
@pytest.mark.parametrize("name", ["gqa_last_gelu_r8_f32", "gqa_mean_gelutanh_r16_bf16", "mha_mean_silu_r8_f32"])
def test_adapter_greedy_tokens_match_reference(adapter, name):
    n_steps = 32
    mdir, model, adir, ad = adapter(name)
    prompt = _prompt(ADAPTERS[name]["seed"] + 500, 9)
    got = _cli_generate(mdir, prompt, n_steps, adir)
    _assert_greedy_matches_reference(got, model, prompt, n_steps, ad, name)


# ----------------------------------------------------------------------------
# (f) one batch mixing four adapters and the base model
# ----------------------------------------------------------------------------
MIXED = ["gqa_last_gelu_r8_f32", "gqa_mean_gelutanh_r16_bf16", "gqa_last_silu_r4_f16", "gqa_mean_relu_r8_f32"]


@needs_cli
def test_mixed_adapter_batch(adapter, tmp_path):
    ads = {n: adapter(n) for n in MIXED}
    mdir, model = ads[MIXED[0]][0], ads[MIXED[0]][1]
    shared = _prompt(900, 6)
    # (adapter name or None, prompt, max_tokens)
    reqs = [(n, shared, 12) for n in MIXED] + [(None, shared, 12)]       # one prompt, five behaviours
    reqs += [(MIXED[0], _prompt(901, 1), 10), (None, _prompt(902, 17), 8), (MIXED[1], _prompt(903, 23), 14),
             (MIXED[2], _prompt(904, 3), 16), (MIXED[3], _prompt(905, 11), 9), (None, _prompt(906, 2), 12),
             (MIXED[1], _prompt(907, 30), 6)]
    lines = []
    for n, prompt, max_tokens in reqs:
        obj = {"prompt_ids": prompt, "max_tokens": max_tokens, "ignore_eos": True}
        if n is not None:
            obj["adapter"] = ads[n][2]
        lines.append(json.dumps(obj))
    req_file = tmp_path / "requests.jsonl"
    req_file.write_text("\n".join(lines) + "\n")
    results = _parse_generate_jsons(_run([PARA_CLI, "generate", "--model", mdir, "--requests", str(req_file),
                                          "--json"]).stdout)
    assert len(results) == len(reqs), f"{len(reqs)} requests, {len(results)} JSON results"

    ref_tokens = []
    for i, ((n, prompt, max_tokens), res) in enumerate(zip(reqs, results)):
        what = f"request {i} ({n or 'base'}, prompt len {len(prompt)})"
        got = [int(t) for t in res["token_ids"]]
        alone = _cli_generate(mdir, prompt, max_tokens, ads[n][2] if n else None)
        assert got == alone, f"{what}: batched tokens differ from the same request run alone\n" \
                             f"batched: {got}\nalone  : {alone}"
        ad = ads[n][3] if n else None
        ref_tokens.append(_assert_greedy_matches_reference(got, model, prompt, max_tokens, ad, what))
    # the five requests on the shared prompt must not all agree, or mixing adapters up would pass
    assert len({tuple(t) for t in ref_tokens[:5]}) >= 3, \
        f"test has no teeth: shared-prompt requests generate {ref_tokens[:5]}"


# ----------------------------------------------------------------------------
# (g) an adapter written by this file (not by the engine's tool): mixed dtypes, defaults, unknown keys
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("pooler", [None, "mean"])
def test_hand_written_adapter(model_dir, tmp_path, pooler):
    mdir, model = model_dir("gqa4x2")
    r = 6
    layers = P.random_para_layers(model, r, seed=77)
    dtypes = {}
    for i in range(model["config"]["num_hidden_layers"]):
        for part, dt in zip(P.PARTS, ["BF16", "F16", "F32"] if i % 2 == 0 else ["F32", "BF16", "F16"]):
            dtypes[P.TENSOR.format(i=i, part=part)] = dt
    adir = str(tmp_path / "adapter")
    P.write_para_adapter(adir, layers, r, activation="gelu", dtype=dtypes,
                         extra_config={"task_type": "CAUSAL_LM", "inference_mode": True})
    cfg_path = os.path.join(adir, "adapter_config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    del cfg["activation"]                      # default: gelu
    if pooler is None:
        del cfg["pooler"]                      # default: last
    else:
        cfg["pooler"] = pooler
    with open(cfg_path, "w") as f:
        json.dump(cfg, f)
    ad = P.load_para_adapter(adir, model)
    assert (ad["pooler"], ad["activation"]) == (pooler or "last", "gelu")
    ids = _prompt(78, 15)
    ref = P.forward_logits(model, ids, ad, prompt_len=9)
    got = _engine_logits(mdir, ids, tmp_path / "logits.npy", adir, prefill_len=9)
    _assert_logprobs_close(got, ref, f"hand-written adapter pooler={pooler}")


# ----------------------------------------------------------------------------
# (h) malformed adapters are refused, naming the tensor (the contract's error rules)
# ----------------------------------------------------------------------------
BAD = "base_model.model.model.layers.{}.para.{}"


@pytest.mark.parametrize("case,must_name", [
    ("missing_layer", BAD.format(1, "up.bias")),
    ("extra_tensor", BAD.format(2, "down.weight")),
    ("wrong_shape", BAD.format(0, "up.weight")),
    ("non_finite", BAD.format(1, "down.weight")),
    ("r_mismatch", None),
    ("peft_type", None),
    ("target_modules", None),
])
def test_malformed_adapter_is_refused(model_dir, tmp_path, case, must_name):
    mdir, model = model_dir("gqa4x2")                   # 2 layers
    r = 4
    layers = P.random_para_layers(model, r, seed=88)
    adir = str(tmp_path / "adapter")
    extra = {"r_mismatch": {"r": r + 1}, "peft_type": {"peft_type": "PARA_X"},
             "target_modules": {"target_modules": ["q_proj", "k_proj", "up_proj"]}}.get(case)
    P.write_para_adapter(adir, layers, r, extra_config=extra)
    st = os.path.join(adir, "adapter_model.safetensors")
    t = R.read_safetensors(st)
    if case == "missing_layer":
        del t[BAD.format(1, "up.bias")]
    elif case == "extra_tensor":
        t[BAD.format(2, "down.weight")] = t[BAD.format(1, "down.weight")]
    elif case == "wrong_shape":
        t[BAD.format(0, "up.weight")] = t[BAD.format(0, "up.weight")][:-1]
    elif case == "non_finite":
        t[BAD.format(1, "down.weight")][0, 0] = np.inf
    P.write_safetensors(st, t)
    with pytest.raises(ValueError):
        P.load_para_adapter(adir, model)
    cmd = [PARA_TOOL, "logits", "--model", mdir, "--adapter", adir, "--prompt-ids", "5,6,7",
           "--out", str(tmp_path / "logits.npy")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    msg = proc.stderr + proc.stdout
    assert proc.returncode != 0, f"{case}: engine accepted a malformed adapter: {shlex.join(cmd)}"
    if must_name:
        assert must_name in msg, f"{case}: error does not name {must_name}:\n{msg[-1500:]}"
    elif case == "r_mismatch":
        assert ".para." in msg, f"{case}: error names no adapter tensor:\n{msg[-1500:]}"
