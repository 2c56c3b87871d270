"""Compare the C++ engine (para-tool / para-cli) with the numpy reference llama_ref.py.

Run:  PARA_TOOL=build/bin/para-tool PARA_CLI=build/bin/para-cli python3 -m pytest -q tests/reference
"""
import json
import os
import subprocess

import numpy as np
import pytest

import harness as H
import llama_ref as R
from harness import LOGPROB_TOL

if H.PARA_TOOL is None:
    pytest.skip(f"engine-vs-reference tests need para-tool: {H.TOOL_MISSING}", allow_module_level=True)

# name -> make-tiny-model arguments (defaults in harness.model_spec)
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
@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    """model_dir(name) -> (path, loaded reference model); each spec is built once per session."""
    return H.built_once(tmp_path_factory, lambda name, d: (d, H.make_tiny_model(d, SPECS[name], layout=True)))


def _prompt(seed, T):
    return H.random_ids(1000 + seed, T)


# ----------------------------------------------------------------------------
# (a) whole prompt as one prefill
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("T", [1, 7, 33])
@pytest.mark.parametrize("name", list(SPECS))
def test_prefill_logits_match_reference(model_dir, tmp_path, name, T):
    d, ref_model = model_dir(name)
    ids = _prompt(SPECS[name]["seed"] + T, T)
    got = H.engine_logits(d, ids, tmp_path / "logits.npy")
    H.assert_logprobs_close(got, R.forward_logits(ref_model, ids), f"{name} T={T} prefill")


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
    got = H.engine_logits(d, ids, tmp_path / "logits.npy", prefill_len=K)
    H.assert_logprobs_close(got, R.forward_logits(ref_model, ids), f"{name} T={T} prefill-len={K}")


# ----------------------------------------------------------------------------
# (c) greedy generation, 64 steps
# ----------------------------------------------------------------------------
@H.needs_cli
@pytest.mark.parametrize("name", ["gqa4x2_f32", "gqa_bf16"])
def test_greedy_tokens_match_reference(model_dir, name):
    n_steps = 64
    d, ref_model = model_dir(name)
    prompt = _prompt(SPECS[name]["seed"] + 500, 9)
    proc = H.run(H.generate_cmd(d, prompt, n_steps))
    result = H.parse_generate_jsons(proc.stdout)[-1]
    assert "finish_reason" in result, f"no finish_reason in {result}"
    got = [int(t) for t in result["token_ids"]]
    H.assert_greedy_matches_reference(got, ref_model, prompt, n_steps, name)


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
    H.run([H.PARA_TOOL, "make-tiny-model", d]
          + H.model_args(dict(layers=2, hidden=64, heads=4, kv_heads=2, ffn=128, seed=21, max_pos=256)))
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
    assert H.max_dlogprob(ref, R.forward_logits(unscaled, ids)) > 10 * LOGPROB_TOL, \
        "test has no teeth: rope scaling barely changes the reference logits"

    cmd = H.logits_cmd(d, ids, tmp_path / "logits.npy", prefill_len=prefill_len)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, (f"the engine refused rope_scaling={kind} (rc={proc.returncode}): "
                                  f"{proc.stderr.strip()[-300:]}")
    got = np.load(tmp_path / "logits.npy")
    H.assert_logprobs_close(got, ref, f"rope_scaling={kind} prefill-len={prefill_len}")
