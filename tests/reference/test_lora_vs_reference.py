"""Compare LoRA adapters in the C++ engine (para-tool / para-cli) with the numpy reference lora_ref.py.

Run:  PARA_TOOL=build/bin/para-tool PARA_CLI=build/bin/para-cli python3 -m pytest -q tests/reference
(The reference itself is checked without binaries by test_lora_ref_selfcheck.py; against a
real PEFT-written adapter by test_lora_peft.py.)
"""
import json
import os
import shlex
import shutil
import subprocess
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llama_ref as R  # noqa: E402
import lora_ref as L  # noqa: E402
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
    pytest.skip(f"LoRA engine-vs-reference tests need para-tool: {_tool_why}", allow_module_level=True)
needs_cli = pytest.mark.skipif(PARA_CLI is None, reason=f"needs para-cli: {_cli_why}")

LOGPROB_TOL = 1e-4      # max |log_softmax(engine) - log_softmax(reference)|
TEETH = 1e-2            # an adapter must move log-probs by more than this
AMBIGUOUS_GAP = 1e-5    # greedy: reference top-2 logits this close => argmax is ambiguous
VOCAB = 512

# name -> make-tiny-model arguments
MODELS = {
    "gqa4x2":   dict(layers=2, hidden=64, heads=4, kv_heads=2, ffn=128, seed=61, dtype="f32"),
    "mha4x4":   dict(layers=2, hidden=64, heads=4, kv_heads=4, ffn=128, seed=62, dtype="f32"),
    "gqa_bf16": dict(layers=2, hidden=64, heads=4, kv_heads=2, ffn=128, seed=63, dtype="bf16"),
}

QV = ["q_proj", "v_proj"]
ALL = L.ALL_TARGETS
# name -> make-tiny-lora arguments
ADAPTERS = {
    "gqa_qv_r8_a16_f32":        dict(model="gqa4x2", r=8, alpha=16, targets=QV, dtype="f32", seed=1),
    "gqa_all_r16_a32_f32":      dict(model="gqa4x2", r=16, alpha=32, targets=ALL, dtype="f32", seed=2),
    "gqa_all_r1_a2_bf16":       dict(model="gqa4x2", r=1, alpha=2, targets=ALL, dtype="bf16", seed=3),
    "gqa_all_r64_a16_f16":      dict(model="gqa4x2", r=64, alpha=16, targets=ALL, dtype="f16", seed=4),
    "gqa_all_r16_a8_rslora":    dict(model="gqa4x2", r=16, alpha=8, targets=ALL, dtype="f32", seed=5, rslora=True),
    "gqa_qv_r64_a4_rslora_bf16": dict(model="gqa4x2", r=64, alpha=4, targets=QV, dtype="bf16", seed=6, rslora=True),
    "gqa_all_r8_rankpat_f32":   dict(model="gqa4x2", r=8, alpha=16, targets=ALL, dtype="f32", seed=7,
                                     rank_pattern=["q_proj=4", "layers\\.1\\.mlp\\.down_proj=2"]),
    "gqa_kod_r4_a3_f16":        dict(model="gqa4x2", r=4, alpha=3, targets=["k_proj", "o_proj", "down_proj"],
                                     dtype="f16", seed=8),
    "gqa_gu_r8_a5_bf16":        dict(model="gqa4x2", r=8, alpha=5, targets=["gate_proj", "up_proj"], dtype="bf16", seed=9),
    "mha_qv_r8_a16_f16":        dict(model="mha4x4", r=8, alpha=16, targets=QV, dtype="f16", seed=10),
    "mha_all_r16_a16_rslora_bf16": dict(model="mha4x4", r=16, alpha=16, targets=ALL, dtype="bf16", seed=11, rslora=True),
    "mha_all_r1_a1_f32":        dict(model="mha4x4", r=1, alpha=1, targets=ALL, dtype="f32", seed=12),
    "bf16model_all_r8_a16_f32": dict(model="gqa_bf16", r=8, alpha=16, targets=ALL, dtype="f32", seed=13),
    "bf16model_qv_r16_a8_bf16": dict(model="gqa_bf16", r=16, alpha=8, targets=QV, dtype="bf16", seed=14,
                                     rank_pattern=["v_proj=2"]),
}

# PARA adapters for the mixed batch (make-tiny-adapter arguments)
PARA_ADAPTERS = {
    "para_last_r8":  dict(model="gqa4x2", r=8, pooler="last", seed=21),
    "para_mean_r4":  dict(model="gqa4x2", r=4, pooler="mean", seed=22),
}


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
    dtypes = set(L.safetensors_dtypes(os.path.join(d, "model.safetensors")).values())
    assert dtypes == {s["dtype"].upper()}, f"asked for {s['dtype']}, model.safetensors holds {dtypes}"


def _check_lora_dir(d, model, a):
    """The tool must have written what was asked, or a case would not test what its name says."""
    ad = L.load_lora_adapter(d, model)      # validates peft_type, names, shapes vs r / rank_pattern
    c = ad["config"]
    got = {"r": c["r"], "lora_alpha": float(c["lora_alpha"]), "use_rslora": bool(c.get("use_rslora", False)),
           "targets": sorted(c["target_modules"])}
    want = {"r": a["r"], "lora_alpha": float(a["alpha"]), "use_rslora": bool(a.get("rslora")),
            "targets": sorted(a["targets"])}
    assert got == want, f"{d}: adapter_config.json says {got}, asked for {want}"
    want_rp = dict((k, int(v)) for k, v in (p.rsplit("=", 1) for p in a.get("rank_pattern", [])))
    assert (c.get("rank_pattern") or {}) == want_rp, f"{d}: rank_pattern {c.get('rank_pattern')} != {want_rp}"
    dtypes = set(ad["dtypes"].values())
    assert dtypes == {a["dtype"].upper()}, f"{d}: asked for {a['dtype']}, adapter holds {dtypes}"
    n_layers = model["config"]["num_hidden_layers"]
    assert sorted(ad["modules"]) == sorted(L.module_name(i, p) for i in range(n_layers) for p in a["targets"])
    for name, m in ad["modules"].items():
        assert np.any(m["B"] != 0), f"{d}: {name}: lora_B is all zero (the adapter would be a no-op)"
        assert np.any(m["A"] != 0), f"{d}: {name}: lora_A is all zero"
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
def lora(tmp_path_factory, model_dir):
    """lora(name) -> (model path, reference model, adapter path, reference adapter)."""
    cache = {}

    def get(name):
        if name not in cache:
            a = ADAPTERS[name]
            mdir, model = model_dir(a["model"])
            d = str(tmp_path_factory.mktemp(name))
            cmd = [PARA_TOOL, "make-tiny-lora", d, "--model", mdir, "--r", str(a["r"]), "--alpha", str(a["alpha"]),
                   "--targets", ",".join(a["targets"]), "--seed", str(a["seed"]), "--dtype", a["dtype"]]
            if a.get("rslora"):
                cmd.append("--rslora")
            for p in a.get("rank_pattern", []):
                cmd += ["--rank-pattern", p]
            _run(cmd)
            cache[name] = (mdir, model, d, _check_lora_dir(d, model, a))
        return cache[name]

    return get


@pytest.fixture(scope="session")
def para(tmp_path_factory, model_dir):
    """para(name) -> (model path, reference model, adapter path, reference PARA adapter)."""
    cache = {}

    def get(name):
        if name not in cache:
            a = PARA_ADAPTERS[name]
            mdir, model = model_dir(a["model"])
            d = str(tmp_path_factory.mktemp(name))
            _run([PARA_TOOL, "make-tiny-adapter", d, "--model", mdir, "--r", str(a["r"]),
                  "--pooler", a["pooler"], "--seed", str(a["seed"])])
            cache[name] = (mdir, model, d, P.load_para_adapter(d, model))
        return cache[name]

    return get


def _prompt(seed, T, vocab=VOCAB):
    return [int(t) for t in np.random.default_rng(3000 + seed).integers(3, vocab, size=T)]


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


def _rescaled(ad, scale_of):
    """A copy of the reference adapter with each module's scale replaced by scale_of(module)."""
    return dict(ad, modules={n: dict(m, scale=scale_of(m)) for n, m in ad["modules"].items()})


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


def _reference_greedy(model, prompt, n_steps, lora_ad=None, para_ad=None):
    """(reference greedy tokens, reference logits at each generation step [n_steps, vocab])."""
    assert lora_ad is None or para_ad is None
    if para_ad is not None:
        want = P.greedy_generate(model, prompt, n_steps, para_ad)
        full = P.forward_logits(model, prompt + want, para_ad, prompt_len=len(prompt))
    else:
        merged = L.merge_lora(model, lora_ad)
        want = R.greedy_generate(merged, prompt, n_steps)
        full = R.forward_logits(merged, prompt + want)
    # row P-1+i predicts generated token i
    return want, full[len(prompt) - 1: len(prompt) - 1 + n_steps]


def _assert_greedy_matches_reference(got, model, prompt, n_steps, what, lora_ad=None, para_ad=None):
    """got must equal the reference greedy tokens up to the first near-tie step."""
    want, steps = _reference_greedy(model, prompt, n_steps, lora_ad, para_ad)
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
# (a) whole prompt as one prefill
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("T", [1, 7, 33])
@pytest.mark.parametrize("name", list(ADAPTERS))
def test_lora_prefill_logits_match_reference(lora, tmp_path, name, T):
    mdir, model, adir, ad = lora(name)
    ids = _prompt(ADAPTERS[name]["seed"] + T, T)
    got = _engine_logits(mdir, ids, tmp_path / "logits.npy", adir)
    _assert_logprobs_close(got, L.forward_logits(model, ids, ad), f"{name} T={T} prefill")


# ----------------------------------------------------------------------------
# (b) prefill K tokens, then one-token decode steps (LoRA applies to every row alike)
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("name,T,K", [
    ("gqa_qv_r8_a16_f32", 20, 1),
    ("gqa_qv_r8_a16_f32", 20, 5),
    ("gqa_all_r16_a32_f32", 40, 17),          # crosses typical KV-block boundaries (16, 32)
    ("gqa_all_r64_a16_f16", 20, 3),
    ("gqa_all_r16_a8_rslora", 20, 5),
    ("gqa_all_r8_rankpat_f32", 20, 1),
    ("gqa_kod_r4_a3_f16", 20, 7),
    ("mha_qv_r8_a16_f16", 20, 5),
    ("mha_all_r16_a16_rslora_bf16", 33, 1),
    ("bf16model_all_r8_a16_f32", 20, 20),     # K == T via the flag
    ("bf16model_qv_r16_a8_bf16", 20, 4),
])
def test_lora_decode_logits_match_reference(lora, tmp_path, name, T, K):
    mdir, model, adir, ad = lora(name)
    ids = _prompt(ADAPTERS[name]["seed"] + 100 + T + K, T)
    got = _engine_logits(mdir, ids, tmp_path / "logits.npy", adir, prefill_len=K)
    _assert_logprobs_close(got, L.forward_logits(model, ids, ad), f"{name} T={T} prefill-len={K}")


# ----------------------------------------------------------------------------
# (c) each adapter visibly changes the logits (parity is not vacuous), in reference and engine
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(ADAPTERS))
def test_lora_changes_logits(lora, tmp_path, name):
    mdir, model, adir, ad = lora(name)
    ids = _prompt(ADAPTERS[name]["seed"] + 7, 7)
    ref_d = _max_dlogprob(L.forward_logits(model, ids, ad), R.forward_logits(model, ids))
    assert ref_d > TEETH, f"reference: adapter moves log-probs by only {ref_d:.2e}"
    base = _engine_logits(mdir, ids, tmp_path / "base.npy")
    got = _engine_logits(mdir, ids, tmp_path / "adapter.npy", adir)
    eng_d = _max_dlogprob(got, base)
    assert eng_d > TEETH, f"engine: adapter moves log-probs by only {eng_d:.2e} (reference {ref_d:.2e})"


@pytest.mark.parametrize("name,wrong", [
    ("gqa_all_r16_a8_rslora", "plain"),            # alpha/r instead of alpha/sqrt(r)
    ("gqa_qv_r64_a4_rslora_bf16", "plain"),
    ("gqa_qv_r8_a16_f32", "rslora"),               # alpha/sqrt(r) instead of alpha/r
    ("gqa_all_r8_rankpat_f32", "global_r"),        # alpha/config r instead of alpha/module r
    ("bf16model_qv_r16_a8_bf16", "global_r"),
])
def test_scale_variants_would_be_caught(lora, name, wrong):
    """The wrong scaling rule moves log-probs far past the tolerance, so parity pins the rule."""
    _, model, _, ad = lora(name)
    scale_of = {"plain": lambda m: m["alpha"] / m["r"],
                "rslora": lambda m: m["alpha"] / np.sqrt(m["r"]),
                "global_r": lambda m: m["alpha"] / ad["r"]}[wrong]
    ids = _prompt(ADAPTERS[name]["seed"] + 9, 9)
    d = _max_dlogprob(L.forward_logits(model, ids, ad), L.forward_logits(model, ids, _rescaled(ad, scale_of)))
    assert d > 10 * LOGPROB_TOL, f"test has no teeth: scaling rule {wrong!r} moves log-probs by only {d:.2e}"


@pytest.mark.parametrize("prefill_len", [None, 5])
@pytest.mark.parametrize("model_name", ["gqa4x2", "mha4x4"])
def test_zero_b_adapter_equals_base_exactly(model_dir, tmp_path, model_name, prefill_len):
    """B = 0 (what PEFT's default init writes): exactly the base model, in reference and engine."""
    mdir, model = model_dir(model_name)
    t = L.random_lora_tensors(model, 8, L.ALL_TARGETS, seed=46)
    t = {k: (np.zeros_like(v) if k.endswith("lora_B.weight") else v) for k, v in t.items()}
    adir = str(tmp_path / "adapter")
    L.write_lora_adapter(adir, t, 8, 16, L.ALL_TARGETS, dtype="BF16")
    ad = L.load_lora_adapter(adir, model)
    ids = _prompt(47, 13)
    assert np.array_equal(L.forward_logits(model, ids, ad), R.forward_logits(model, ids)), "reference: B=0 != base"
    base = _engine_logits(mdir, ids, tmp_path / "base.npy", prefill_len=prefill_len)
    got = _engine_logits(mdir, ids, tmp_path / "adapter.npy", adir, prefill_len=prefill_len)
    assert got.dtype == base.dtype and got.shape == base.shape
    if not np.array_equal(got, base):
        diff = np.abs(got.astype(np.float64) - base)
        pytest.fail(f"{model_name}: B=0 LoRA logits differ from base logits "
                    f"(max |diff| {diff.max():.3e} at {np.unravel_index(np.argmax(diff), diff.shape)})")


# ----------------------------------------------------------------------------
# (d) adapters written by this file: alpha_pattern, overlapping patterns (first key wins),
#     mixed dtypes per tensor, extra PEFT config keys
# ----------------------------------------------------------------------------
def test_alpha_pattern_added_to_tool_adapter(lora, tmp_path):
    mdir, model, src, _ = lora("gqa_all_r16_a32_f32")
    adir = str(tmp_path / "adapter")
    shutil.copytree(src, adir)
    cfg_path = os.path.join(adir, "adapter_config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    # layer 0 q_proj: first key wins (4, not 64); v_proj everywhere 64; layer 1 down_proj 1
    cfg["alpha_pattern"] = {"layers\\.0\\.self_attn\\..*": 4, "v_proj": 64, "q_proj": 64,
                            "model.layers.1.mlp.down_proj": 1}
    with open(cfg_path, "w") as f:
        json.dump(cfg, f, indent=2)
    ad = L.load_lora_adapter(adir, model)
    alphas = {n: m["alpha"] for n, m in ad["modules"].items()}
    assert alphas["model.layers.0.self_attn.q_proj"] == 4 and alphas["model.layers.0.self_attn.v_proj"] == 4
    assert alphas["model.layers.1.self_attn.q_proj"] == 64 and alphas["model.layers.1.mlp.down_proj"] == 1
    assert alphas["model.layers.1.mlp.up_proj"] == 32
    ids = _prompt(31, 15)
    ref = L.forward_logits(model, ids, ad)
    d = _max_dlogprob(ref, L.forward_logits(model, ids, L.load_lora_adapter(src, model)))
    assert d > 10 * LOGPROB_TOL, f"test has no teeth: alpha_pattern moves log-probs by only {d:.2e}"
    for K in (None, 6):
        got = _engine_logits(mdir, ids, tmp_path / "logits.npy", adir, prefill_len=K)
        _assert_logprobs_close(got, ref, f"alpha_pattern prefill-len={K}")


@pytest.mark.parametrize("model_name", ["gqa4x2", "mha4x4"])
def test_hand_written_adapter(model_dir, tmp_path, model_name):
    mdir, model = model_dir(model_name)
    r = 6
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    # overlapping keys whose first match is the same in file order and in sorted order
    # (file order proper is test_overlapping_patterns_first_key_in_file_order)
    rank_pattern = {"layers\\.0\\.self_attn\\.q_proj": 3, "q_proj": 5, "layers\\.1\\.mlp\\..*": 2}
    alpha_pattern = {".*k_proj": 2.5, "k_proj": 7, "mlp\\..*": 9, "q_proj": 9, "v_proj": 9, "o_proj": 9}
    tensors = L.random_lora_tensors(model, r, targets, seed=41, rank_pattern=rank_pattern, scale=0.7)
    cycle = ["BF16", "F16", "F32"]
    dtypes = {name: cycle[i % 3] for i, name in enumerate(tensors)}
    adir = str(tmp_path / "adapter")
    L.write_lora_adapter(adir, tensors, r, 12, targets[::-1], rank_pattern=rank_pattern,
                         alpha_pattern=alpha_pattern, dtype=dtypes,
                         extra_config={"peft_version": "0.0.0", "some_future_key": {"x": 1}, "revision": None})
    ad = L.load_lora_adapter(adir, model)
    got = {n: (m["r"], m["alpha"]) for n, m in ad["modules"].items()}
    assert got["model.layers.0.self_attn.q_proj"] == (3, 9) and got["model.layers.1.self_attn.q_proj"] == (5, 9)
    assert got["model.layers.1.mlp.up_proj"] == (2, 9) and got["model.layers.0.self_attn.k_proj"] == (6, 2.5)
    assert got["model.layers.1.self_attn.k_proj"] == (6, 2.5) and got["model.layers.0.mlp.down_proj"] == (6, 9)
    ids = _prompt(42, 17)
    ref = L.forward_logits(model, ids, ad)
    assert _max_dlogprob(ref, R.forward_logits(model, ids)) > TEETH
    for K in (None, 4):
        got_logits = _engine_logits(mdir, ids, tmp_path / "logits.npy", adir, prefill_len=K)
        _assert_logprobs_close(got_logits, ref, f"hand-written {model_name} prefill-len={K}")


PEFT_ORDER_CASES = {
    # PEFT resolves rank_pattern / alpha_pattern by the FIRST key, in the file's (dict) order,
    # that matches; here the file order differs from sorted order.
    "alpha": dict(alpha_pattern={"k_proj": 2.5, ".*_proj": 9}, rank_pattern={},
                  want={"model.layers.0.self_attn.k_proj": (6, 2.5), "model.layers.1.self_attn.k_proj": (6, 2.5),
                        "model.layers.0.self_attn.q_proj": (6, 9), "model.layers.1.mlp.down_proj": (6, 9)}),
    "rank": dict(alpha_pattern={}, rank_pattern={"q_proj": 5, "layers\\.0\\.self_attn\\.q_proj": 3},
                 want={"model.layers.0.self_attn.q_proj": (5, 12), "model.layers.1.self_attn.q_proj": (5, 12),
                       "model.layers.0.self_attn.v_proj": (6, 12)}),
}


@pytest.mark.parametrize("case", list(PEFT_ORDER_CASES))
def test_overlapping_patterns_first_key_in_file_order(model_dir, tmp_path, case):
    mdir, model = model_dir("gqa4x2")
    c = PEFT_ORDER_CASES[case]
    targets = L.ALL_TARGETS
    tensors = L.random_lora_tensors(model, 6, targets, seed=43, rank_pattern=c["rank_pattern"], scale=0.7)
    adir = str(tmp_path / "adapter")
    L.write_lora_adapter(adir, tensors, 6, 12, targets, rank_pattern=c["rank_pattern"],
                         alpha_pattern=c["alpha_pattern"])
    with open(os.path.join(adir, "adapter_config.json")) as f:     # the file keeps the order
        raw = json.load(f)
    assert list(raw["alpha_pattern"]) == list(c["alpha_pattern"])
    assert list(raw["rank_pattern"]) == list(c["rank_pattern"])
    ad = L.load_lora_adapter(adir, model)
    for name, ra in c["want"].items():
        assert (ad["modules"][name]["r"], ad["modules"][name]["alpha"]) == ra, name
    ids = _prompt(44, 13)
    ref = L.forward_logits(model, ids, ad)
    if case == "alpha":     # sorted key order would give k_proj alpha 9: that must be visible
        wrong = _rescaled(ad, lambda m: (9 if m["proj"] == "k_proj" else m["alpha"]) / m["r"])
        d = _max_dlogprob(ref, L.forward_logits(model, ids, wrong))
        assert d > 10 * LOGPROB_TOL, f"test has no teeth: k_proj alpha 9 vs 2.5 moves log-probs by {d:.2e}"
    got = _engine_logits(mdir, ids, tmp_path / "logits.npy", adir)
    _assert_logprobs_close(got, ref, f"{case}_pattern in file order {c[case + '_pattern']}")


# ----------------------------------------------------------------------------
# (e) greedy generation with a LoRA adapter, 32 steps
# ----------------------------------------------------------------------------
@needs_cli
@pytest.mark.parametrize("name", ["gqa_qv_r8_a16_f32", "gqa_all_r16_a8_rslora", "mha_all_r16_a16_rslora_bf16",
                                  "bf16model_all_r8_a16_f32"])
def test_lora_greedy_tokens_match_reference(lora, name):
    n_steps = 32
    mdir, model, adir, ad = lora(name)
    prompt = _prompt(ADAPTERS[name]["seed"] + 500, 9)
    got = _cli_generate(mdir, prompt, n_steps, adir)
    want = _assert_greedy_matches_reference(got, model, prompt, n_steps, name, lora_ad=ad)
    base = R.greedy_generate(model, prompt, n_steps)
    assert want != base, f"test has no teeth: {name} generates the same tokens as the base model"


# ----------------------------------------------------------------------------
# (f) one batch mixing LoRA adapters, PARA adapters and the base model
# ----------------------------------------------------------------------------
MIXED_LORA = ["gqa_qv_r8_a16_f32", "gqa_all_r16_a8_rslora", "gqa_all_r8_rankpat_f32"]
MIXED_PARA = list(PARA_ADAPTERS)


@needs_cli
def test_mixed_lora_para_base_batch(lora, para, tmp_path):
    ads = {n: ("lora",) + lora(n) for n in MIXED_LORA}
    ads.update({n: ("para",) + para(n) for n in MIXED_PARA})
    mdirs = {v[1] for v in ads.values()}
    assert len(mdirs) == 1, "all adapters in the batch must belong to one model"
    mdir, model = ads[MIXED_LORA[0]][1], ads[MIXED_LORA[0]][2]
    shared = _prompt(900, 6)
    names = MIXED_LORA + MIXED_PARA
    # (adapter name or None, prompt, max_tokens)
    reqs = [(n, shared, 12) for n in names] + [(None, shared, 12)]       # one prompt, six behaviours
    reqs += [(MIXED_LORA[0], _prompt(901, 1), 10), (None, _prompt(902, 17), 8),
             (MIXED_LORA[1], _prompt(903, 23), 14), (MIXED_PARA[0], _prompt(904, 3), 16),
             (MIXED_LORA[2], _prompt(905, 11), 9), (MIXED_PARA[1], _prompt(906, 30), 6),
             (None, _prompt(907, 2), 12)]
    lines = []
    for i, (n, prompt, max_tokens) in enumerate(reqs):
        obj = {"prompt_ids": prompt, "max_tokens": max_tokens, "ignore_eos": True}
        if n is not None:
            obj["adapter"] = ads[n][3]
        elif i % 2:
            obj["adapter"] = ""                                            # "" = base model too
        lines.append(json.dumps(obj))
    req_file = tmp_path / "requests.jsonl"
    req_file.write_text("\n".join(lines) + "\n")
    results = _parse_generate_jsons(_run([PARA_CLI, "generate", "--model", mdir, "--requests", str(req_file),
                                          "--json"]).stdout)
    assert len(results) == len(reqs), f"{len(reqs)} requests, {len(results)} JSON results"

    ref_tokens = []
    for i, ((n, prompt, max_tokens), res) in enumerate(zip(reqs, results)):
        kind = ads[n][0] if n else "base"
        what = f"request {i} ({n or 'base'}, prompt len {len(prompt)})"
        got = [int(t) for t in res["token_ids"]]
        alone = _cli_generate(mdir, prompt, max_tokens, ads[n][3] if n else None)
        assert got == alone, f"{what}: batched tokens differ from the same request run alone\n" \
                             f"batched: {got}\nalone  : {alone}"
        ref_tokens.append(_assert_greedy_matches_reference(
            got, model, prompt, max_tokens, what,
            lora_ad=ads[n][4] if kind == "lora" else None, para_ad=ads[n][4] if kind == "para" else None))
    # the six requests on the shared prompt must not all agree, or mixing adapters up would pass
    distinct = len({tuple(t) for t in ref_tokens[:len(names) + 1]})
    assert distinct >= 5, f"test has no teeth: shared-prompt requests generate {ref_tokens[:len(names) + 1]}"


# ----------------------------------------------------------------------------
# (g) malformed LoRA adapters are refused (never silently run as something else)
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("case,must_name", [
    ("missing_b", L.tensor_name(1, "v_proj", "B")),
    ("rank_vs_shape", L.tensor_name(0, "q_proj", "A")),
    ("unexpected_tensor", "base_model.model.lm_head.weight"),
    ("untargeted_module", "k_proj"),
    ("layer_out_of_range", "model.layers.2.self_attn.q_proj"),
    ("non_finite", L.tensor_name(0, "q_proj", "B")),
    ("dora", None),
    ("fan_in_fan_out", None),
    ("bias_all", None),
])
def test_malformed_lora_is_refused(model_dir, tmp_path, case, must_name):
    mdir, model = model_dir("gqa4x2")                   # 2 layers
    targets = ["q_proj", "v_proj"]
    t = L.random_lora_tensors(model, 4, targets, seed=45)
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
    elif case == "layer_out_of_range":
        t[L.PEFT_PREFIX + "model.layers.2.self_attn.q_proj.lora_A.weight"] = t[L.tensor_name(0, "q_proj", "A")]
    elif case == "non_finite":
        t[L.tensor_name(0, "q_proj", "B")][0, 0] = np.nan
    else:
        extra = {"dora": {"use_dora": True}, "fan_in_fan_out": {"fan_in_fan_out": True},
                 "bias_all": {"bias": "all"}}[case]
    adir = str(tmp_path / "adapter")
    L.write_lora_adapter(adir, t, 4, 8, targets, rank_pattern=rank_pattern, extra_config=extra)
    with pytest.raises(ValueError):
        L.load_lora_adapter(adir, model)
    cmd = [PARA_TOOL, "logits", "--model", mdir, "--adapter", adir, "--prompt-ids", "5,6,7",
           "--out", str(tmp_path / "logits.npy")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    msg = proc.stderr + proc.stdout
    assert proc.returncode != 0, f"{case}: engine accepted a malformed LoRA adapter: {shlex.join(cmd)}"
    if must_name:
        assert must_name in msg, f"{case}: error does not name {must_name}:\n{msg[-1500:]}"
