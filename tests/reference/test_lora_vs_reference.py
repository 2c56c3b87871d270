"""Compare LoRA adapters in the C++ engine (para-tool / para-cli) with the numpy reference lora_ref.py.

Run:  PARA_TOOL=build/bin/para-tool PARA_CLI=build/bin/para-cli python3 -m pytest -q tests/reference
(The reference itself is checked without binaries by test_lora_ref_selfcheck.py; against a
real PEFT-written adapter by test_lora_peft.py.)
"""
import json
import os
import shutil

import numpy as np
import pytest

import harness as H
import llama_ref as R
import lora_ref as L
import para_ref as P
from harness import LOGPROB_TOL, TEETH

if H.PARA_TOOL is None:
    pytest.skip(f"LoRA engine-vs-reference tests need para-tool: {H.TOOL_MISSING}", allow_module_level=True)

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
    return H.built_once(tmp_path_factory, lambda name, d: (d, H.make_tiny_model(d, MODELS[name])))


@pytest.fixture(scope="session")
def lora(tmp_path_factory, model_dir):
    """lora(name) -> (model path, reference model, adapter path, reference adapter)."""
    def build(name, d):
        a = ADAPTERS[name]
        mdir, model = model_dir(a["model"])
        cmd = [H.PARA_TOOL, "make-tiny-lora", d, "--model", mdir, "--r", str(a["r"]), "--alpha", str(a["alpha"]),
               "--targets", ",".join(a["targets"]), "--seed", str(a["seed"]), "--dtype", a["dtype"]]
        if a.get("rslora"):
            cmd.append("--rslora")
        for p in a.get("rank_pattern", []):
            cmd += ["--rank-pattern", p]
        H.run(cmd)
        return mdir, model, d, _check_lora_dir(d, model, a)

    return H.built_once(tmp_path_factory, build)


@pytest.fixture(scope="session")
def para(tmp_path_factory, model_dir):
    """para(name) -> (model path, reference model, adapter path, reference PARA adapter)."""
    def build(name, d):
        a = PARA_ADAPTERS[name]
        mdir, model = model_dir(a["model"])
        H.make_tiny_para(d, mdir, a)
        return mdir, model, d, P.load_para_adapter(d, model)

    return H.built_once(tmp_path_factory, build)


def _prompt(seed, T):
    return H.random_ids(3000 + seed, T)


def _rescaled(ad, scale_of):
    """A copy of the reference adapter with each module's scale replaced by scale_of(module)."""
    return dict(ad, modules={n: dict(m, scale=scale_of(m)) for n, m in ad["modules"].items()})


# ----------------------------------------------------------------------------
# (a) whole prompt as one prefill
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("T", [1, 7, 33])
@pytest.mark.parametrize("name", list(ADAPTERS))
def test_lora_prefill_logits_match_reference(lora, tmp_path, name, T):
    mdir, model, adir, ad = lora(name)
    ids = _prompt(ADAPTERS[name]["seed"] + T, T)
    got = H.engine_logits(mdir, ids, tmp_path / "logits.npy", adir)
    H.assert_logprobs_close(got, L.forward_logits(model, ids, ad), f"{name} T={T} prefill")


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
    got = H.engine_logits(mdir, ids, tmp_path / "logits.npy", adir, prefill_len=K)
    H.assert_logprobs_close(got, L.forward_logits(model, ids, ad), f"{name} T={T} prefill-len={K}")


# ----------------------------------------------------------------------------
# (c) each adapter visibly changes the logits (parity is not vacuous), in reference and engine
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(ADAPTERS))
def test_lora_changes_logits(lora, tmp_path, name):
    mdir, model, adir, ad = lora(name)
    ids = _prompt(ADAPTERS[name]["seed"] + 7, 7)
    H.assert_adapter_changes_logits(L.forward_logits(model, ids, ad), R.forward_logits(model, ids),
                                    mdir, adir, ids, tmp_path)


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
    d = H.max_dlogprob(L.forward_logits(model, ids, ad), L.forward_logits(model, ids, _rescaled(ad, scale_of)))
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
    H.assert_engine_adapter_is_base(mdir, adir, ids, tmp_path, prefill_len, f"{model_name}: B=0 LoRA")


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
    d = H.max_dlogprob(ref, L.forward_logits(model, ids, L.load_lora_adapter(src, model)))
    assert d > 10 * LOGPROB_TOL, f"test has no teeth: alpha_pattern moves log-probs by only {d:.2e}"
    for K in (None, 6):
        got = H.engine_logits(mdir, ids, tmp_path / "logits.npy", adir, prefill_len=K)
        H.assert_logprobs_close(got, ref, f"alpha_pattern prefill-len={K}")


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
    assert H.max_dlogprob(ref, R.forward_logits(model, ids)) > TEETH
    for K in (None, 4):
        got_logits = H.engine_logits(mdir, ids, tmp_path / "logits.npy", adir, prefill_len=K)
        H.assert_logprobs_close(got_logits, ref, f"hand-written {model_name} prefill-len={K}")


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
        d = H.max_dlogprob(ref, L.forward_logits(model, ids, wrong))
        assert d > 10 * LOGPROB_TOL, f"test has no teeth: k_proj alpha 9 vs 2.5 moves log-probs by {d:.2e}"
    got = H.engine_logits(mdir, ids, tmp_path / "logits.npy", adir)
    H.assert_logprobs_close(got, ref, f"{case}_pattern in file order {c[case + '_pattern']}")


# ----------------------------------------------------------------------------
# (e) greedy generation with a LoRA adapter, 32 steps
# ----------------------------------------------------------------------------
@H.needs_cli
@pytest.mark.parametrize("name", ["gqa_qv_r8_a16_f32", "gqa_all_r16_a8_rslora", "mha_all_r16_a16_rslora_bf16",
                                  "bf16model_all_r8_a16_f32"])
def test_lora_greedy_tokens_match_reference(lora, name):
    n_steps = 32
    mdir, model, adir, ad = lora(name)
    prompt = _prompt(ADAPTERS[name]["seed"] + 500, 9)
    got = H.cli_generate(mdir, prompt, n_steps, adir)
    want = H.assert_greedy_matches_reference(got, model, prompt, n_steps, name, lora_ad=ad)
    base = R.greedy_generate(model, prompt, n_steps)
    assert want != base, f"test has no teeth: {name} generates the same tokens as the base model"


# ----------------------------------------------------------------------------
# (f) one batch mixing LoRA adapters, PARA adapters and the base model
# ----------------------------------------------------------------------------
MIXED_LORA = ["gqa_qv_r8_a16_f32", "gqa_all_r16_a8_rslora", "gqa_all_r8_rankpat_f32"]
MIXED_PARA = list(PARA_ADAPTERS)


@H.needs_cli
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
    ref_tokens = H.run_mixed_batch(tmp_path, mdir, model, reqs, {n: (v[0], v[3], v[4]) for n, v in ads.items()},
                                   empty_adapter_for_odd_base=True)
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
    adir = str(tmp_path / "adapter")
    H.write_malformed_lora(adir, model, case, seed=45)
    with pytest.raises(ValueError):
        L.load_lora_adapter(adir, model)
    H.assert_engine_refuses(mdir, adir, tmp_path / "logits.npy", case, must_name, kind="LoRA adapter")
