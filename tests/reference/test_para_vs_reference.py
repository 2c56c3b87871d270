"""Compare PARA adapters in the C++ engine (para-tool / para-cli) with the numpy reference para_ref.py.

Run:  PARA_TOOL=build/bin/para-tool PARA_CLI=build/bin/para-cli python3 -m pytest -q tests/reference
(The reference itself is checked without binaries by test_para_ref_selfcheck.py.)
"""
import json
import os

import numpy as np
import pytest

import harness as H
import llama_ref as R
import para_ref as P
from harness import LOGPROB_TOL

if H.PARA_TOOL is None:
    pytest.skip(f"PARA adapter engine-vs-reference tests need para-tool: {H.TOOL_MISSING}", allow_module_level=True)

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
    return H.built_once(tmp_path_factory, lambda name, d: (d, H.make_tiny_model(d, MODELS[name])))


@pytest.fixture(scope="session")
def adapter(tmp_path_factory, model_dir):
    """adapter(name) -> (model path, reference model, adapter path, reference adapter)."""
    def build(name, d):
        a = ADAPTERS[name]
        mdir, model = model_dir(a["model"])
        H.make_tiny_para(d, mdir, a)
        return mdir, model, d, _check_adapter_dir(d, model, a)

    return H.built_once(tmp_path_factory, build)


def _prompt(seed, T):
    return H.random_ids(2000 + seed, T)


def _other_pooler(ad):
    return dict(ad, pooler="mean" if ad["pooler"] == "last" else "last")


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
        d = H.max_dlogprob(ref, P.forward_logits(model, ids, _other_pooler(ad)))
        assert d > 10 * LOGPROB_TOL, f"test has no teeth: swapping the pooler moves log-probs by only {d:.2e}"
    got = H.engine_logits(mdir, ids, tmp_path / "logits.npy", adir)
    H.assert_logprobs_close(got, ref, f"{name} T={T} prefill")


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
        d = H.max_dlogprob(ref[K:], P.forward_logits(model, ids, ad)[K:])
        assert d > 10 * LOGPROB_TOL, f"test has no teeth: prompt length K={K} vs {T} moves log-probs by {d:.2e}"
    got = H.engine_logits(mdir, ids, tmp_path / "logits.npy", adir, prefill_len=K)
    H.assert_logprobs_close(got, ref, f"{name} T={T} prefill-len={K}")


# ----------------------------------------------------------------------------
# (c) identity adapter == base model, bit for bit
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("prefill_len", [None, 5])
@pytest.mark.parametrize("name", ["gqa_identity_last", "mha_identity_mean"])
def test_identity_adapter_equals_base_exactly(adapter, tmp_path, name, prefill_len):
    mdir, model, adir, ad = adapter(name)
    ids = _prompt(ADAPTERS[name]["seed"], 13)
    got = H.assert_engine_adapter_is_base(mdir, adir, ids, tmp_path, prefill_len, f"{name}: identity adapter")
    ref = P.forward_logits(model, ids, ad, prompt_len=prefill_len)
    assert np.array_equal(ref, R.forward_logits(model, ids)), "reference: identity adapter != base"
    H.assert_logprobs_close(got, ref, f"{name} identity prefill-len={prefill_len}")


# ----------------------------------------------------------------------------
# (d) a random adapter really changes the logits (the parity tests are not vacuous)
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", RANDOM_ADAPTERS)
def test_adapter_changes_logits(adapter, tmp_path, name):
    mdir, model, adir, ad = adapter(name)
    ids = _prompt(ADAPTERS[name]["seed"] + 7, 7)
    H.assert_adapter_changes_logits(P.forward_logits(model, ids, ad), R.forward_logits(model, ids),
                                    mdir, adir, ids, tmp_path)


# ----------------------------------------------------------------------------
# (e) greedy generation with an adapter: vectors from the prompt, reused for every token
# ----------------------------------------------------------------------------
@H.needs_cli
@pytest.mark.parametrize("name", ["gqa_last_gelu_r8_f32", "gqa_mean_gelutanh_r16_bf16", "mha_mean_silu_r8_f32"])
def test_adapter_greedy_tokens_match_reference(adapter, name):
    n_steps = 32
    mdir, model, adir, ad = adapter(name)
    prompt = _prompt(ADAPTERS[name]["seed"] + 500, 9)
    got = H.cli_generate(mdir, prompt, n_steps, adir)
    H.assert_greedy_matches_reference(got, model, prompt, n_steps, name, para_ad=ad)


# ----------------------------------------------------------------------------
# (f) one batch mixing four adapters and the base model
# ----------------------------------------------------------------------------
MIXED = ["gqa_last_gelu_r8_f32", "gqa_mean_gelutanh_r16_bf16", "gqa_last_silu_r4_f16", "gqa_mean_relu_r8_f32"]


@H.needs_cli
def test_mixed_adapter_batch(adapter, tmp_path):
    ads = {n: adapter(n) for n in MIXED}
    mdir, model = ads[MIXED[0]][0], ads[MIXED[0]][1]
    shared = _prompt(900, 6)
    # (adapter name or None, prompt, max_tokens)
    reqs = [(n, shared, 12) for n in MIXED] + [(None, shared, 12)]       # one prompt, five behaviours
    reqs += [(MIXED[0], _prompt(901, 1), 10), (None, _prompt(902, 17), 8), (MIXED[1], _prompt(903, 23), 14),
             (MIXED[2], _prompt(904, 3), 16), (MIXED[3], _prompt(905, 11), 9), (None, _prompt(906, 2), 12),
             (MIXED[1], _prompt(907, 30), 6)]
    ref_tokens = H.run_mixed_batch(tmp_path, mdir, model, reqs, {n: ("para", a[2], a[3]) for n, a in ads.items()})
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
    got = H.engine_logits(mdir, ids, tmp_path / "logits.npy", adir, prefill_len=9)
    H.assert_logprobs_close(got, ref, f"hand-written adapter pooler={pooler}")


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
    R.write_safetensors(st, t)
    with pytest.raises(ValueError):
        P.load_para_adapter(adir, model)
    msg = H.assert_engine_refuses(mdir, adir, tmp_path / "logits.npy", case, must_name)
    if not must_name and case == "r_mismatch":
        assert ".para." in msg, f"{case}: error names no adapter tensor:\n{msg[-1500:]}"
