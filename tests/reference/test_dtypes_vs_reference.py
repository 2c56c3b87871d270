"""Weights and KV cache in 16 bits against the numpy reference (llama_ref.py, float64).

Weights: the engine holds them in BF16 or F16 — a checkpoint stored so (--dtype auto, used as
mapped), or an F32 checkpoint converted at load (--dtype bf16|f16, rounded to nearest even) — and
the reference runs on the same 16-bit-rounded weights. The engine computes in float32 on those
values, so the logits must agree within 1e-3 log-prob (what the project holds itself to; they
agree far closer, printed).

KV cache: keys and values stored in F16 or BF16 are a real rounding of the math, so those runs are
compared with the reference (which keeps K/V in float64) within the tolerances documented in
docs/engine.md, measured here and printed: F16 within KV_F16_TOL, BF16 within KV_BF16_TOL.

Run:  PARA_TOOL=build/bin/para-tool python3 -m pytest -q -s tests/reference/test_dtypes_vs_reference.py
"""
import numpy as np
import pytest

import harness as H
import llama_ref as R

if H.PARA_TOOL is None:
    pytest.fail(f"dtype reference tests need para-tool: {H.TOOL_MISSING}", pytrace=False)

WEIGHT_TOL = 1e-3
KV_F16_TOL = 3e-3
KV_BF16_TOL = 2e-2
MATRICES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

SPECS = {
    "f32": dict(layers=3, hidden=128, heads=8, kv_heads=2, ffn=256, seed=31),
    "bf16": dict(layers=3, hidden=128, heads=8, kv_heads=2, ffn=256, seed=32, dtype="bf16"),
    "f16": dict(layers=3, hidden=128, heads=8, kv_heads=2, ffn=256, seed=33, dtype="f16"),
}


def round_to(x, dtype):
    """x rounded to BF16 or F16 (nearest even), back in float64."""
    if dtype == "f16":
        return np.asarray(x, np.float32).astype(np.float16).astype(np.float64)
    bits = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) << 16
    return rounded.astype(np.uint32).view(np.float32).astype(np.float64)


def rounded_model(ref_model, dtype):
    """The reference model with every matrix (embedding and LM head included) rounded as the
    engine's --dtype rounds them; norm weights stay as stored (the engine keeps them in F32)."""
    w = dict(ref_model["weights"])
    for name in list(w):
        if name.endswith("embed_tokens.weight") or name == "lm_head.weight" or \
                any(f".{m}.weight" in name for m in MATRICES):
            w[name] = round_to(w[name], dtype)
    return dict(ref_model, weights=w)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    return H.built_once(tmp_path_factory, lambda name, d: (d, H.make_tiny_model(d, SPECS[name], layout=True)))


CASES = [  # (checkpoint, --dtype, --kv-cache-dtype, tolerance)
    ("bf16", "auto", "f32", WEIGHT_TOL),  # stored BF16, used as mapped
    ("f16", "auto", "f32", WEIGHT_TOL),
    ("f32", "bf16", "f32", WEIGHT_TOL),  # converted at load
    ("f32", "f16", "f32", WEIGHT_TOL),
    ("bf16", "f32", "f32", WEIGHT_TOL),  # widened at load
    ("bf16", "auto", "f16", KV_F16_TOL),
    ("f32", "bf16", "f16", KV_F16_TOL),
    ("f32", "auto", "f16", KV_F16_TOL),
    ("f16", "auto", "bf16", KV_BF16_TOL),
]


@pytest.mark.parametrize("prefill_len", [None, 4])
@pytest.mark.parametrize("ckpt,dtype,kv,tol", CASES, ids=[f"{c}-w{d}-kv{k}" for c, d, k, _ in CASES])
def test_logits_match_the_reference_on_the_same_rounded_weights(model_dir, tmp_path, ckpt, dtype, kv, tol,
                                                                prefill_len):
    d, ref_model = model_dir(ckpt)
    if dtype in ("bf16", "f16"):
        ref_model = rounded_model(ref_model, dtype)
    ids = H.random_ids(77, 40)
    ref = R.forward_logits(ref_model, ids)
    got = H.engine_logits(d, ids, tmp_path / "logits.npy", prefill_len=prefill_len,
                          numerics=["--dtype", dtype, "--kv-cache-dtype", kv])
    err = H.max_dlogprob(got, ref)
    print(f"\n{ckpt} checkpoint, weights {dtype}, KV {kv}, prefill {prefill_len}: max |dlogprob| = {err:.2e}")
    assert err <= tol, f"max |dlogprob| {err:.3e} > {tol}"


def test_converting_weights_changes_the_logits(model_dir, tmp_path):
    """Teeth: F32 weights rounded to BF16 give measurably different logits, so the comparison
    above really runs on rounded weights."""
    d, ref_model = model_dir("f32")
    ids = H.random_ids(78, 20)
    got = H.engine_logits(d, ids, tmp_path / "l.npy", numerics=["--dtype", "bf16", "--kv-cache-dtype", "f32"])
    assert H.max_dlogprob(got, R.forward_logits(ref_model, ids)) > 10 * H.max_dlogprob(
        got, R.forward_logits(rounded_model(ref_model, "bf16"), ids))
