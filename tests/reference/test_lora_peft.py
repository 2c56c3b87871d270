"""LoRA adapters written by the real PEFT library, run by the C++ engine and by lora_ref.py.

Needs torch + transformers + peft in some Python: the one named by $PARA_PEFT_PYTHON, else the
interpreter running pytest. Without them every test here is skipped, saying so.

Run:  PARA_TOOL=build/bin/para-tool PARA_PEFT_PYTHON=/path/to/venv/bin/python \\
      python3 -m pytest -q tests/reference/test_lora_peft.py

What happens: para-tool make-tiny-model writes a Hugging Face LLaMA directory; a subprocess
under the PEFT Python loads it with transformers' LlamaForCausalLM (float32), wraps it with
peft.get_peft_model(LoraConfig(..., init_lora_weights=False)) (non-zero B) and save_pretrained()s
the adapter. Then it loads that directory back onto a fresh base model with
PeftModel.from_pretrained (what "PEFT's reading of the directory" means) and writes that model's
float32 logits plus each LoRA layer's r and scaling as PEFT computed them. The engine
(para-tool logits --adapter) and lora_ref must reproduce them.

"load" cases skip the creation: lora_ref writes an adapter by hand (rank_pattern / alpha_pattern
keys with overlapping matches, in an order that is not sorted) and PEFT only loads it. PEFT's
save_pretrained writes adapter_config.json with sort_keys=True, so files PEFT writes always
have sorted pattern keys; PEFT's loader then takes the first matching key in the file's order.
"""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import harness as H
import llama_ref as R
import lora_ref as L
from harness import TEETH

if H.PARA_TOOL is None:
    pytest.skip(f"PEFT LoRA tests need para-tool: {H.TOOL_MISSING}", allow_module_level=True)

MODELS = {
    "gqa4x2": dict(layers=2, hidden=64, heads=4, kv_heads=2, ffn=128, seed=71),
    "mha4x4": dict(layers=2, hidden=64, heads=4, kv_heads=4, ffn=128, seed=72),
}
ALL7 = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# name -> (model, LoraConfig kwargs, dtype the adapter is saved in); kind "create" (PEFT writes
# the adapter) unless the name is in LOAD_CASES (lora_ref writes it, PEFT only loads it)
CASES = {
    "qv_r8": ("gqa4x2", dict(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]), "float32"),
    "all_linear_r16_rslora": ("gqa4x2", dict(r=16, lora_alpha=8, target_modules="all-linear", use_rslora=True),
                              "float32"),
    "all7_rank_alpha_pattern": ("gqa4x2", dict(r=8, lora_alpha=16, target_modules=ALL7,
                                               rank_pattern={"q_proj": 4, "layers\\.1\\.mlp\\.down_proj": 2},
                                               alpha_pattern={"v_proj": 3, "model.layers.0.self_attn.o_proj": 40}),
                                "float32"),
    "mha_attn_r4_bf16": ("mha4x4", dict(r=4, lora_alpha=12, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]),
                         "bfloat16"),
    # overlapping pattern keys; PEFT sorts them when it saves (so in-memory != reloaded for alpha)
    "overlapping_patterns": ("gqa4x2", dict(r=6, lora_alpha=12, target_modules=ALL7,
                                            rank_pattern={"layers\\.0\\.self_attn\\.q_proj": 2, "q_proj": 4},
                                            alpha_pattern={"k_proj": 2.5, ".*_proj": 9}), "float32"),
    # hand-written, keys in non-sorted order: the first key in FILE order must win
    "handwritten_alpha_order": ("gqa4x2", dict(r=6, lora_alpha=12, target_modules=ALL7,
                                               alpha_pattern={"k_proj": 2.5, ".*_proj": 9}), "F32"),
    "handwritten_rank_order": ("gqa4x2", dict(r=6, lora_alpha=12, target_modules=ALL7,
                                              rank_pattern={"q_proj": 5, "layers\\.0\\.self_attn\\.q_proj": 3}),
                               "BF16"),
}
LOAD_CASES = {"handwritten_alpha_order", "handwritten_rank_order"}
PROMPTS = [H.random_ids(4000, 13), [7]]

PEFT_SCRIPT = textwrap.dedent(r'''
    import json, os, sys
    import numpy as np
    import torch
    import transformers, peft
    from transformers import LlamaForCausalLM
    from peft import LoraConfig, PeftModel, get_peft_model
    from peft.tuners.lora import LoraLayer

    spec = json.load(open(sys.argv[1]))
    torch.manual_seed(0)

    def load(model_dir):
        kw = dict(attn_implementation="eager")
        try:
            m = LlamaForCausalLM.from_pretrained(model_dir, dtype=torch.float32, **kw)
        except TypeError:       # transformers < 4.56 spells it torch_dtype
            m = LlamaForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32, **kw)
        return m.eval()

    def logits(m):
        with torch.no_grad():
            return {f"p{k}": m(torch.tensor([ids])).logits[0].float().numpy() for k, ids in enumerate(spec["prompts"])}

    info = {"versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                         "peft": peft.__version__}, "cases": {}}
    for model_dir, out in spec["base"].items():
        np.savez(out, **logits(load(model_dir)))
    def lora_modules(pm):
        out = {}
        for name, mod in pm.named_modules():
            if isinstance(mod, LoraLayer) and "default" in mod.r:
                out[name.removeprefix("base_model.model.")] = {"r": int(mod.r["default"]),
                                                               "scaling": float(mod.scaling["default"])}
        return out

    for case in spec["cases"]:
        rec = {}
        if case["kind"] == "create":
            torch.manual_seed(case["seed"])
            pm = get_peft_model(load(case["model_dir"]), LoraConfig(init_lora_weights=False, **case["config"]))
            pm.eval()
            lora_params = [p for n, p in pm.named_parameters() if "lora_" in n]
            if case["save_dtype"] == "bfloat16":      # store bf16 (values exact in f32 afterwards)
                for p in lora_params:
                    p.data = p.data.to(torch.bfloat16)
            pm.save_pretrained(case["adapter_dir"])
            for p in lora_params:
                p.data = p.data.to(torch.float32)
            rec["in_memory_modules"] = lora_modules(pm)
            in_memory = logits(pm)
            del pm
        # PEFT's own reading of the directory: the ground truth
        pm = PeftModel.from_pretrained(load(case["model_dir"]), case["adapter_dir"]).eval()
        for p in pm.parameters():
            p.data = p.data.to(torch.float32)
        rec["modules"] = lora_modules(pm)
        out = logits(pm)
        if case["kind"] == "create":
            rec["roundtrip_max_abs_logit_diff"] = max(float(np.abs(out[k] - in_memory[k]).max()) for k in out)
        np.savez(case["out"], **out)
        info["cases"][case["name"]] = rec
    json.dump(info, open(spec["info_out"], "w"), indent=1)
''')


def _probe(py):
    try:
        proc = subprocess.run([py, "-c", "import torch, transformers, peft; "
                               "print(torch.__version__, transformers.__version__, peft.__version__)"],
                              capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, str(e)
    if proc.returncode != 0:
        return None, proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"rc={proc.returncode}"
    return proc.stdout.strip(), None


@pytest.fixture(scope="session")
def peft_python():
    tried = []
    env = os.environ.get("PARA_PEFT_PYTHON")
    for py in ([env] if env else []) + [sys.executable]:
        versions, why = _probe(py)
        if versions:
            print(f"PEFT python: {py} (torch, transformers, peft = {versions})")
            return py
        if py == env:  # asked for by name: its failure is an error, not a skip
            pytest.fail(f"$PARA_PEFT_PYTHON={env!r} cannot import what these tests need: {why}")
        tried.append(f"{py}: {why}")
    pytest.skip("torch/transformers/peft not installed; set PARA_PEFT_PYTHON to a python that has them "
                f"(tried {'; '.join(tried)})")


def _run(cmd):
    return H.run(cmd, timeout=600, tail=4000)


@pytest.fixture(scope="session")
def peft_out(peft_python, tmp_path_factory):
    """Everything PEFT produced, made once: {"models": {name: (dir, ref model, base logits)},
    "cases": {name: {"adapter_dir", "logits", "modules"}}, "versions"}."""
    root = tmp_path_factory.mktemp("peft")
    models = {}
    for name, s in MODELS.items():
        d = str(root / name)
        _run([H.PARA_TOOL, "make-tiny-model", d] + H.model_args(s))
        models[name] = d
    spec = {"prompts": PROMPTS, "info_out": str(root / "info.json"),
            "base": {d: str(root / f"base_{n}.npz") for n, d in models.items()}, "cases": []}
    for i, (name, (model, cfg, save_dtype)) in enumerate(CASES.items()):
        adir = str(root / f"adapter_{name}")
        kind = "load" if name in LOAD_CASES else "create"
        if kind == "load":
            ref_model = R.load_model(models[model])
            tensors = L.random_lora_tensors(ref_model, cfg["r"], cfg["target_modules"], seed=200 + i,
                                            rank_pattern=cfg.get("rank_pattern"), scale=0.7)
            L.write_lora_adapter(adir, tensors, cfg["r"], cfg["lora_alpha"], cfg["target_modules"],
                                 rank_pattern=cfg.get("rank_pattern"), alpha_pattern=cfg.get("alpha_pattern"),
                                 dtype=save_dtype, extra_config={"base_model_name_or_path": models[model]})
        spec["cases"].append({"name": name, "kind": kind, "model_dir": models[model], "config": cfg,
                              "seed": 100 + i, "save_dtype": save_dtype, "adapter_dir": adir,
                              "out": str(root / f"logits_{name}.npz")})
    (root / "spec.json").write_text(json.dumps(spec, indent=1))
    (root / "make_peft.py").write_text(PEFT_SCRIPT)
    _run([peft_python, str(root / "make_peft.py"), str(root / "spec.json")])
    info = json.loads((root / "info.json").read_text())
    print("PEFT run:", info["versions"])

    def npz(path):
        with np.load(path) as z:
            return [z[f"p{k}"] for k in range(len(PROMPTS))]

    out = {"versions": info["versions"], "models": {}, "cases": {}}
    for n, d in models.items():
        out["models"][n] = (d, R.load_model(d), npz(spec["base"][d]))
    for c in spec["cases"]:
        rec = info["cases"][c["name"]]
        out["cases"][c["name"]] = dict(rec, adapter_dir=c["adapter_dir"], logits=npz(c["out"]))
        if "roundtrip_max_abs_logit_diff" in rec:
            print(f"{c['name']}: PEFT in-memory vs save_pretrained+from_pretrained max |dlogit| = "
                  f"{rec['roundtrip_max_abs_logit_diff']:.3e}")
    return out


def _what_peft_wrote(adir):
    """adapter_config.json (non-null keys) and the tensors, for failure messages."""
    try:
        with open(os.path.join(adir, "adapter_config.json")) as f:
            cfg = json.load(f)
        keys = list(cfg)                                            # file order, as PEFT reads it
        shown = {k: cfg[k] for k in keys if cfg[k] not in (None, {}, [], False)}
        dt = R.safetensors_dtypes(os.path.join(adir, "adapter_model.safetensors"))
        names = sorted(dt)
        return (f"\n--- adapter directory {adir} ---\nadapter_config.json keys (file order): {keys}\n"
                f"non-empty values (file order): {json.dumps(shown)}\n"
                f"{len(names)} tensors, dtypes {sorted(set(dt.values()))}; first: {names[:4]}")
    except Exception as e:      # noqa: BLE001 - diagnostics only
        return f"\n(could not read what PEFT wrote in {adir}: {e})"


def _more(adir):
    """What PEFT wrote in adir, for a failure message (nothing without adir)."""
    return (lambda: _what_peft_wrote(adir)) if adir else None


def _check_close(got, ref, what, adir=None):
    return H.assert_logprobs_close(got, ref, what, float32=False, name="logits", show=True, more=_more(adir))


def _engine_logits(mdir, ids, out, adir=None, prefill_len=None):
    H.run(H.logits_cmd(mdir, ids, out, adir or None, prefill_len), more=_more(adir))
    got = np.load(out)
    assert got.dtype == np.float32, f"engine .npy dtype {got.dtype}"
    return got


# ----------------------------------------------------------------------------
# sanity: transformers and the engine (and the reference) agree on the base model
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("model", list(MODELS))
def test_transformers_base_logits_match_engine_and_reference(peft_out, tmp_path, model):
    mdir, ref_model, hf = peft_out["models"][model]
    for k, ids in enumerate(PROMPTS):
        _check_close(R.forward_logits(ref_model, ids), hf[k], f"{model} prompt {k}: reference vs transformers")
        _check_close(_engine_logits(mdir, ids, tmp_path / "base.npy"), hf[k],
                     f"{model} prompt {k}: engine vs transformers")


# ----------------------------------------------------------------------------
# the reference reads PEFT's files as PEFT does
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("case", list(CASES))
def test_reference_ranks_and_scales_match_peft(peft_out, case):
    c = peft_out["cases"][case]
    _, ref_model, _ = peft_out["models"][CASES[case][0]]
    ad = L.load_lora_adapter(c["adapter_dir"], ref_model)
    ref = {n: (m["r"], m["scale"]) for n, m in ad["modules"].items()}
    peft = {n: (m["r"], m["scaling"]) for n, m in c["modules"].items()}
    assert sorted(ref) == sorted(peft), f"{case}: modules differ\nreference: {sorted(ref)}\npeft: {sorted(peft)}" \
        + _what_peft_wrote(c["adapter_dir"])
    bad = {n: (ref[n], peft[n]) for n in ref if ref[n][0] != peft[n][0] or abs(ref[n][1] - peft[n][1]) > 1e-12 * abs(peft[n][1])}
    assert not bad, f"{case}: (r, scale) reference vs PEFT differ: {bad}" + _what_peft_wrote(c["adapter_dir"])
    if case == "all_linear_r16_rslora":
        assert len(ref) == 2 * 7, f"all-linear should adapt all seven projections of both layers: {sorted(ref)}"


@pytest.mark.parametrize("case", list(CASES))
def test_reference_logits_match_peft(peft_out, case):
    c = peft_out["cases"][case]
    _, ref_model, base = peft_out["models"][CASES[case][0]]
    ad = L.load_lora_adapter(c["adapter_dir"], ref_model)
    for k, ids in enumerate(PROMPTS):
        _check_close(L.forward_logits(ref_model, ids, ad), c["logits"][k], f"{case} prompt {k}: reference vs PEFT",
                     c["adapter_dir"])
    d = H.max_dlogprob(c["logits"][0], base[0])
    assert d > TEETH, f"{case}: the PEFT adapter moves log-probs by only {d:.2e}; the comparison has no teeth"


# ----------------------------------------------------------------------------
# the engine runs PEFT's directory as it is
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("prefill_len", [None, 5])
@pytest.mark.parametrize("case", list(CASES))
def test_engine_logits_match_peft(peft_out, tmp_path, case, prefill_len):
    c = peft_out["cases"][case]
    mdir = peft_out["models"][CASES[case][0]][0]
    for k, ids in enumerate(PROMPTS):
        K = None if prefill_len is None else min(prefill_len, len(ids))
        got = _engine_logits(mdir, ids, tmp_path / "logits.npy", c["adapter_dir"], K)
        _check_close(got, c["logits"][k], f"{case} prompt {k} prefill-len={K}: engine vs PEFT", c["adapter_dir"])
