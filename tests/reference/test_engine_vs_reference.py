"""Compare the C++ engine (para-tool / para-cli) with the numpy reference llama_ref.py.

Run:  PARA_TOOL=build/bin/para-tool PARA_CLI=build/bin/para-cli python3 -m pytest -q tests/reference
"""
import json
import os
import shlex
import struct
import subprocess
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llama_ref as R  # noqa: E402


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
    pytest.skip(f"engine-vs-reference tests need para-tool: {_tool_why}", allow_module_level=True)
needs_cli = pytest.mark.skipif(PARA_CLI is None, reason=f"needs para-cli: {_cli_why}")

LOGPROB_TOL = 1e-4      # max |log_softmax(engine) - log_softmax(reference)|
AMBIGUOUS_GAP = 1e-5    # greedy: reference top-2 logits this close => argmax is ambiguous
VOCAB = 512

# name -> make-tiny-model arguments (defaults in _tool_args)
SPECS = {
    "mha_f32":      dict(layers=2, hidden=64, heads=4, kv_heads=4, ffn=128, seed=11),
    "gqa4x2_f32":   dict(layers=2, hidden=64, heads=4, kv_heads=2, ffn=128, seed=12),
    "gqa8x2_f32":   dict(layers=3, hidden=128, heads=8, kv_heads=2, ffn=256, seed=13),
    "gqa_bf16":     dict(layers=2, hidden=64, heads=4, kv_heads=2, ffn=128, seed=14, dtype="bf16"),
    "gqa_f16":      dict(layers=2, hidden=64, heads=4, kv_heads=2, ffn=128, seed=15, dtype="f16"),
    "sharded3":     dict(layers=3, hidden=64, heads=4, kv_heads=2, ffn=128, seed=16, shards=3),
    "tied":         dict(layers=2, hidden=64, heads=4, kv_heads=2, ffn=128, seed=17, tie=True),
    "head_dim32":   dict(layers=2, hidden=64, heads=4, kv_heads=2, ffn=128, seed=18, head_dim=32),
    "theta500k":    dict(layers=2, hidden=64, heads=4, kv_heads=1, ffn=192, seed=19,
                         rope_theta=500000.0, max_pos=512),
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


def _tool_args(spec):
    s = dict(dtype="f32", shards=1, head_dim=None, tie=False, rope_theta=None, max_pos=None, vocab=VOCAB)
    s.update(spec)
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
    return [str(a) for a in args], s


def _st_dtypes(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    return {v["dtype"] for k, v in header.items() if k != "__metadata__"}


def _check_model_dir(d, s):
    """The tool must have written what was asked, or the test would not test what it claims."""
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    want = {"hidden_size": s["hidden"], "intermediate_size": s["ffn"], "num_hidden_layers": s["layers"],
            "num_attention_heads": s["heads"], "vocab_size": s["vocab"]}
    got = {k: cfg.get(k) for k in want}
    assert got == want, f"config.json mismatch: {got} != {want}"
    assert cfg.get("num_key_value_heads", s["heads"]) == s["kv_heads"]
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
    dtypes = set().union(*(_st_dtypes(os.path.join(d, fn)) for fn in files))
    assert dtypes == {s["dtype"].upper()}, f"asked for {s['dtype']}, safetensors hold {dtypes}"


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    """model_dir(name) -> (path, loaded reference model); each spec is built once per session."""
    cache = {}

    def get(name):
        if name not in cache:
            d = str(tmp_path_factory.mktemp(name))
            args, s = _tool_args(SPECS[name])
            _run([PARA_TOOL, "make-tiny-model", d] + args)
            _check_model_dir(d, s)
            cache[name] = (d, R.load_model(d))
        return cache[name]

    return get


def _prompt(seed, T, vocab=VOCAB):
    return [int(t) for t in np.random.default_rng(1000 + seed).integers(3, vocab, size=T)]


def _engine_logits(d, ids, out, prefill_len=None):
    cmd = [PARA_TOOL, "logits", "--model", d, "--prompt-ids", ",".join(map(str, ids)), "--out", str(out)]
    if prefill_len is not None:
        cmd += ["--prefill-len", str(prefill_len)]
    _run(cmd)
    return np.load(out)


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


# ----------------------------------------------------------------------------
# (a) whole prompt as one prefill
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("T", [1, 7, 33])
@pytest.mark.parametrize("name", list(SPECS))
def test_prefill_logits_match_reference(model_dir, tmp_path, name, T):
    d, ref_model = model_dir(name)
    ids = _prompt(SPECS[name]["seed"] + T, T)
    got = _engine_logits(d, ids, tmp_path / "logits.npy")
    _assert_logprobs_close(got, R.forward_logits(ref_model, ids), f"{name} T={T} prefill")


# ----------------------------------------------------------------------------
# (b) prefill K tokens, then one-token incremental decode steps through the paged KV cache
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("name,T,K", [
    ("gqa4x2_f32", 20, 5),
    ("gqa4x2_f32", 20, 1),
    ("mha_f32", 20, 1),
    ("gqa8x2_f32", 40, 17),   # long enough to cross typical KV-block boundaries (16, 32)
    ("gqa8x2_f32", 20, 20),   # K == T: prefill only, via the flag
    ("gqa_bf16", 20, 5),
    ("gqa_f16", 20, 1),
    ("sharded3", 20, 5),
    ("tied", 20, 1),
    ("head_dim32", 20, 5),
    ("theta500k", 33, 1),
])
def test_incremental_decode_logits_match_reference(model_dir, tmp_path, name, T, K):
    d, ref_model = model_dir(name)
    ids = _prompt(SPECS[name]["seed"] + 100 + T, T)
    got = _engine_logits(d, ids, tmp_path / "logits.npy", prefill_len=K)
    _assert_logprobs_close(got, R.forward_logits(ref_model, ids), f"{name} T={T} prefill-len={K}")


# ----------------------------------------------------------------------------
# (c) greedy generation, 64 steps
# ----------------------------------------------------------------------------
def _parse_generate_json(stdout):
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                continue
            if "token_ids" in obj:
                return obj
    pytest.fail(f"no JSON line with token_ids in para-cli output:\n{stdout[-2000:]}")


@needs_cli
@pytest.mark.parametrize("name", ["gqa4x2_f32", "gqa_bf16"])
def test_greedy_tokens_match_reference(model_dir, name):
    n_steps = 64
    d, ref_model = model_dir(name)
    prompt = _prompt(SPECS[name]["seed"] + 500, 9)
    proc = _run([PARA_CLI, "generate", "--model", d, "--prompt-ids", ",".join(map(str, prompt)),
                 "--max-tokens", str(n_steps), "--ignore-eos", "--json"])
    result = _parse_generate_json(proc.stdout)
    assert "finish_reason" in result, f"no finish_reason in {result}"
    got = [int(t) for t in result["token_ids"]]

    want = R.greedy_generate(ref_model, prompt, n_steps)
    # Reference logits at each generation step (row P-1+i predicts generated token i).
    steps = R.forward_logits(ref_model, prompt + want)[len(prompt) - 1: len(prompt) - 1 + n_steps]
    top2 = np.sort(steps, axis=1)[:, -2:]
    gaps = top2[:, 1] - top2[:, 0]
    ambiguous = np.flatnonzero(gaps < AMBIGUOUS_GAP)
    limit = int(ambiguous[0]) if ambiguous.size else n_steps
    if limit < n_steps:
        print(f"NOTE {name}: reference top-2 gap {gaps[limit]:.2e} < {AMBIGUOUS_GAP:g} at step {limit}; "
              f"comparing only the first {limit} tokens")
    else:
        assert len(got) == n_steps, f"--ignore-eos --max-tokens {n_steps} produced {len(got)} tokens"

    for i in range(limit):
        if i >= len(got) or got[i] != want[i]:
            eng = got[i] if i < len(got) else None
            detail = "" if eng is None else (
                f"; reference logits: want[{want[i]}]={steps[i, want[i]]:.6f} "
                f"engine[{eng}]={steps[i, eng]:.6f}")
            pytest.fail(f"{name}: greedy token {i} differs: engine {eng}, reference {want[i]} "
                        f"(reference top-2 gap {gaps[i]:.2e}{detail})\n"
                        f"engine   : {got}\nreference: {want}")


# ----------------------------------------------------------------------------
# (d) rope_scaling written into config.json by hand
# ----------------------------------------------------------------------------
ROPE_SCALINGS = {
    # original_max_position_embeddings=16 with head_dim 16 puts frequencies in all three llama3
    # bands (unchanged / smoothed / divided by factor), and prompts of 33 run past it.
    "llama3": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 16},
    "linear": {"rope_type": "linear", "factor": 4.0},
}


@pytest.mark.parametrize("prefill_len", [None, 3])
@pytest.mark.parametrize("kind", list(ROPE_SCALINGS))
def test_rope_scaling_logits_match_reference(tmp_path, kind, prefill_len):
    d = str(tmp_path / "model")
    args, s = _tool_args(dict(layers=2, hidden=64, heads=4, kv_heads=2, ffn=128, seed=21, max_pos=256))
    _run([PARA_TOOL, "make-tiny-model", d] + args)
    cfg_path = os.path.join(d, "config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    cfg["rope_scaling"] = ROPE_SCALINGS[kind]
    with open(cfg_path, "w") as f:
        json.dump(cfg, f, indent=2)

    ids = _prompt(21, 33)
    ref_model = R.load_model(d)
    ref = R.forward_logits(ref_model, ids)
    unscaled = dict(ref_model, inv_freq=R.rope_inv_freq(ref_model["config"]["head_dim"],
                                                        float(ref_model["config"]["rope_theta"]), None))
    assert np.abs(R.log_softmax(ref) - R.log_softmax(R.forward_logits(unscaled, ids))).max() > 10 * LOGPROB_TOL, \
        "test has no teeth: rope scaling barely changes the reference logits"

    cmd = [PARA_TOOL, "logits", "--model", d, "--prompt-ids", ",".join(map(str, ids)),
           "--out", str(tmp_path / "logits.npy")]
    if prefill_len is not None:
        cmd += ["--prefill-len", str(prefill_len)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        pytest.skip(f"engine does not accept rope_scaling={kind} (rc={proc.returncode}): "
                    f"{proc.stderr.strip()[-300:]}")
    got = np.load(tmp_path / "logits.npy")
    _assert_logprobs_close(got, ref, f"rope_scaling={kind} prefill-len={prefill_len}")
