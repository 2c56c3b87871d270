"""Self-checks of the LoRA reference (lora_ref.py); needs no engine binaries.

The models here are written by hand (random LLaMA weights, config.json + safetensors: the models
fixture in conftest.py, harness.write_tiny_llama), so these tests run anywhere numpy and pytest do:
    python3 -m pytest -q tests/reference/test_lora_ref_selfcheck.py
"""
import math

import numpy as np
import pytest

import harness as H
import llama_ref as R
import lora_ref as L

VOCAB = H.SELFCHECK_VOCAB      # the models fixture (conftest.py): harness.write_tiny_llama


def _make(tmp_path, model, name="a", r=8, alpha=16, targets=L.ALL_TARGETS, seed=0, zero_b=False, **kw):
    t = L.random_lora_tensors(model, r, targets, seed=seed, rank_pattern=kw.get("rank_pattern"))
    if zero_b:
        t = {k: (np.zeros_like(v) if k.endswith("lora_B.weight") else v) for k, v in t.items()}
    d = str(tmp_path / name)
    L.write_lora_adapter(d, t, r, alpha, targets, **kw)
    return L.load_lora_adapter(d, model), t


def _ids(seed, T=11):
    return H.random_ids(seed, T, VOCAB, low=0)


# ----------------------------------------------------------------------------
# the math
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("use_rslora", [False, True])
@pytest.mark.parametrize("r", [1, 3, 8])
def test_merged_linear_equals_explicit_low_rank_path(r, use_rslora):
    """x (W + s B A)^T == x W^T + s (x A^T) B^T on random matrices."""
    rng = np.random.default_rng(r)
    out_f, in_f, T, alpha = 24, 40, 7, 5.0
    W, A, B = rng.normal(size=(out_f, in_f)), rng.normal(size=(r, in_f)), rng.normal(size=(out_f, r))
    x = rng.normal(size=(T, in_f))
    s = L.lora_scale(r, alpha, use_rslora)
    assert s == (alpha / math.sqrt(r) if use_rslora else alpha / r)
    merged = x @ (W + L.lora_delta({"A": A, "B": B, "scale": s})).T
    explicit = x @ W.T + s * ((x @ A.T) @ B.T)
    np.testing.assert_allclose(merged, explicit, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["gqa", "mha"])
def test_zero_b_equals_base_exactly(models, tmp_path, name):
    model = models[name]
    ad, _ = _make(tmp_path, model, zero_b=True, seed=3)
    merged = L.merge_lora(model, ad)
    for k, w in model["weights"].items():
        assert np.array_equal(merged["weights"][k], w), k
    ids = _ids(4)
    assert np.array_equal(L.forward_logits(model, ids, ad), R.forward_logits(model, ids))


@pytest.mark.parametrize("targets", [("q_proj", "v_proj"), tuple(L.ALL_TARGETS), ("k_proj", "down_proj")])
@pytest.mark.parametrize("name", ["gqa", "mha"])
def test_merged_forward_equals_unmerged_forward(models, tmp_path, monkeypatch, name, targets):
    """Merged weights give the same logits as adding s (x A^T) B^T to each projection's output."""
    model = models[name]
    ad, _ = _make(tmp_path, model, r=4, alpha=7, targets=targets, seed=5,
                  rank_pattern={"layers\\.1\\..*": 2})
    ids = _ids(6, 13)
    merged = L.forward_logits(model, ids, ad)
    base = R.forward_logits(model, ids)

    base_linear = R._linear
    seen = set()

    def linear_with_lora(weights, x, mname):
        y = base_linear(weights, x, mname)
        if mname in ad["modules"]:
            m = ad["modules"][mname]
            seen.add(mname)
            y = y + m["scale"] * ((x @ m["A"].T) @ m["B"].T)
        return y

    monkeypatch.setattr(R, "_linear", linear_with_lora)
    unmerged = R.forward_logits(model, ids)
    assert seen == set(ad["modules"])
    np.testing.assert_allclose(merged, unmerged, rtol=1e-10, atol=1e-10)
    assert np.abs(merged - base).max() > 1e-3, "test has no teeth: the adapter barely moves the logits"


def test_merge_does_not_modify_the_model(models, tmp_path):
    model = models["gqa"]
    before = {k: v.copy() for k, v in model["weights"].items()}
    ad, _ = _make(tmp_path, model, seed=7)
    L.forward_logits(model, _ids(8), ad)
    assert all(np.array_equal(before[k], model["weights"][k]) for k in before)


def test_scale_is_linear_in_alpha_and_b(models, tmp_path):
    """alpha 2x == B 2x (same merged weights); rsLoRA scale = alpha/sqrt(r)."""
    model = models["gqa"]
    a1, t = _make(tmp_path, model, "a1", r=4, alpha=6, seed=9)
    t2 = {k: (2 * v if k.endswith("lora_B.weight") else v) for k, v in t.items()}
    d2 = str(tmp_path / "a2")
    L.write_lora_adapter(d2, t2, 4, 3, L.ALL_TARGETS)
    a2 = L.load_lora_adapter(d2, model)
    d3 = str(tmp_path / "a3")
    L.write_lora_adapter(d3, t, 4, 6, L.ALL_TARGETS, use_rslora=True)
    a3 = L.load_lora_adapter(d3, model)
    for name in a1["modules"]:
        assert a1["modules"][name]["scale"] == 1.5 and a3["modules"][name]["scale"] == 3.0
        np.testing.assert_allclose(L.lora_delta(a1["modules"][name]), 0.5 * L.lora_delta(a3["modules"][name]),
                                   rtol=1e-12, atol=1e-14)
    w1, w2 = L.merge_lora(model, a1)["weights"], L.merge_lora(model, a2)["weights"]
    for k in w1:
        np.testing.assert_allclose(w1[k], w2[k], rtol=1e-12, atol=1e-14)


# ----------------------------------------------------------------------------
# PEFT's naming rules
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("keys,name,want", [
    (["q_proj"], "model.layers.0.self_attn.q_proj", "q_proj"),
    (["proj"], "model.layers.0.self_attn.q_proj", None),              # must start after a dot
    ([".*proj"], "model.layers.0.self_attn.q_proj", ".*proj"),
    (["layers.0.self_attn.q_proj"], "model.layers.0.self_attn.q_proj", "layers.0.self_attn.q_proj"),
    (["layers.0.self_attn.q_proj"], "model.layers.10.self_attn.q_proj", None),
    (["model.layers.1.mlp.up_proj"], "model.layers.1.mlp.up_proj", "model.layers.1.mlp.up_proj"),
    (["q_proj", "layers.0.self_attn.q_proj"], "model.layers.0.self_attn.q_proj", "q_proj"),   # first wins
    (["layers.0.self_attn.q_proj", "q_proj"], "model.layers.0.self_attn.q_proj", "layers.0.self_attn.q_proj"),
    (["q_proj"], "model.layers.0.self_attn.q_proj_extra", None),       # anchored at the end
    (["mlp"], "model.layers.0.mlp.up_proj", None),
    (["layers\\.[01]\\.mlp\\..*"], "model.layers.1.mlp.up_proj", "layers\\.[01]\\.mlp\\..*"),
])
def test_pattern_key(keys, name, want):
    assert L.pattern_key(keys, name) == want


def test_rank_and_alpha_patterns(models, tmp_path):
    model = models["gqa"]                                          # 3 layers
    rp = {"layers\\.0\\.self_attn\\.q_proj": 2, "q_proj": 4, "down_proj": 1}
    ap = {"v_proj": 3, "layers\\.2\\..*": 40}
    ad, _ = _make(tmp_path, model, r=8, alpha=16, rank_pattern=rp, alpha_pattern=ap, seed=11)
    got = {n: (m["r"], m["alpha"]) for n, m in ad["modules"].items()}
    assert got["model.layers.0.self_attn.q_proj"] == (2, 16)
    assert got["model.layers.1.self_attn.q_proj"] == (4, 16)
    assert got["model.layers.2.self_attn.q_proj"] == (4, 40)
    assert got["model.layers.1.self_attn.v_proj"] == (8, 3)
    assert got["model.layers.2.self_attn.v_proj"] == (8, 3)          # first alpha key wins
    assert got["model.layers.0.mlp.down_proj"] == (1, 16)
    assert got["model.layers.1.mlp.up_proj"] == (8, 16)
    assert ad["modules"]["model.layers.0.self_attn.q_proj"]["scale"] == 8.0


# ----------------------------------------------------------------------------
# files
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["F16", "BF16"])
def test_half_precision_adapter_round_trip(models, tmp_path, dtype):
    model = models["mha"]
    t = L.random_lora_tensors(model, 4, L.ALL_TARGETS, seed=12)
    d = str(tmp_path / "a")
    L.write_lora_adapter(d, t, 4, 8, L.ALL_TARGETS, dtype=dtype)
    ad = L.load_lora_adapter(d, model)
    assert set(ad["dtypes"].values()) == {dtype}
    for name, m in ad["modules"].items():
        for which in "AB":
            want = t[f"{L.PEFT_PREFIX}{name}.lora_{which}.weight"]
            got = m[which]
            if dtype == "F16":
                assert np.array_equal(got, want.astype(np.float16).astype(np.float64))
            else:
                assert np.all(got.astype(np.float32).view(np.uint32) & 0xFFFF == 0)
                assert np.all(np.abs(got - want) <= np.abs(want) * 2.0 ** -8)


@pytest.mark.parametrize("case", ["missing_b", "rank_vs_shape", "peft_type", "dora", "unexpected_tensor",
                                  "untargeted_module", "targeted_missing", "wrong_block", "layer_out_of_range",
                                  "non_finite"])
def test_malformed_adapter_is_refused(models, tmp_path, case):
    model = models["mha"]                                          # 2 layers
    d = str(tmp_path / "a")
    H.write_malformed_lora(d, model, case, seed=13)
    with pytest.raises(ValueError):
        L.load_lora_adapter(d, model)
