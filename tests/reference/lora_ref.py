"""Independent numpy reference for LoRA adapters (PEFT format) on a LLaMA-family decoder.

Written from the LoRA math and PEFT's on-disk format only; builds on llama_ref.py. All
arithmetic is float64 (adapter weights are upcast exactly from F32/F16/BF16).

The math, for every adapted linear module m (HF weight W [out, in]):

    y = x W^T + s_m (x A_m^T) B_m^T  ==  x (W + s_m B_m A_m)^T
    A_m [r_m, in], B_m [out, r_m]
    s_m = alpha_m / r_m            (use_rslora false)
    s_m = alpha_m / sqrt(r_m)      (use_rslora true)

r_m / alpha_m are the config's r / lora_alpha unless a rank_pattern / alpha_pattern key matches
the module name (PEFT's rule: the FIRST key k in the dict's order for which
re.match(rf"(.*\\.)?({k})$", name) succeeds; name as in the base model, e.g.
"model.layers.0.self_attn.q_proj"). The reference folds each adapter into the weights once
(merge_lora) and then runs llama_ref.forward_logits on the merged model: no batching, no
per-token adapter path.

Files (PEFT save_pretrained layout):
    adapter_config.json         peft_type "LORA", r, lora_alpha, use_rslora, rank_pattern,
                                alpha_pattern, target_modules, ...
    adapter_model.safetensors   base_model.model.model.layers.{i}.{self_attn|mlp}.{proj}.lora_{A|B}.weight

Usage for debugging:
    python3 lora_ref.py MODEL_DIR --adapter LORA_DIR --ids 1,2,3 [--top 5] [--out f.npy]
"""
import json
import math
import os
import re
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llama_ref as R  # noqa: E402

# projection -> the block it lives in
PROJECTIONS = {"q_proj": "self_attn", "k_proj": "self_attn", "v_proj": "self_attn", "o_proj": "self_attn",
               "gate_proj": "mlp", "up_proj": "mlp", "down_proj": "mlp"}
ALL_TARGETS = list(PROJECTIONS)
PEFT_PREFIX = "base_model.model."
TENSOR_RE = re.compile(r"^base_model\.model\.(model\.layers\.(\d+)\.(self_attn|mlp)\.([a-z_]+))"
                       r"\.lora_([AB])\.weight$")


# ----------------------------------------------------------------------------
# PEFT naming rules
# ----------------------------------------------------------------------------
def module_name(layer, proj):
    """Base-model module name, e.g. model.layers.0.self_attn.q_proj."""
    return f"model.layers.{layer}.{PROJECTIONS[proj]}.{proj}"


def tensor_name(layer, proj, which):
    """Key in adapter_model.safetensors; which is "A" or "B"."""
    return f"{PEFT_PREFIX}{module_name(layer, proj)}.lora_{which}.weight"


def pattern_key(pattern_keys, name):
    """PEFT's rank_pattern / alpha_pattern rule: first key k (in order) with
    re.match(rf"(.*\\.)?({k})$", name); None if no key matches."""
    for k in pattern_keys:
        if re.match(rf"(.*\.)?({k})$", name):
            return k
    return None


def module_rank_alpha(config, name):
    """(r, alpha) of module `name` under an adapter_config dict."""
    rp = config.get("rank_pattern") or {}
    ap = config.get("alpha_pattern") or {}
    rk, ak = pattern_key(list(rp), name), pattern_key(list(ap), name)
    r = rp[rk] if rk is not None else config["r"]
    alpha = ap[ak] if ak is not None else config["lora_alpha"]
    return r, alpha


def lora_scale(r, alpha, use_rslora):
    return float(alpha) / (math.sqrt(r) if use_rslora else float(r))


def is_targeted(target_modules, name):
    """PEFT's target_modules rule: a string is a full regex match on the module name; a list
    matches a module whose name equals an entry or ends with "." + entry."""
    if target_modules is None:
        return True
    if isinstance(target_modules, str):
        return re.fullmatch(target_modules, name) is not None
    return any(name == t or name.endswith("." + t) for t in target_modules)


def linear_shapes(cfg):
    """{proj: (out, in)} of the HF weights of one decoder layer."""
    h, f, d = cfg["hidden_size"], cfg["intermediate_size"], cfg["head_dim"]
    nq, nkv = cfg["num_attention_heads"] * d, cfg["num_key_value_heads"] * d
    return {"q_proj": (nq, h), "k_proj": (nkv, h), "v_proj": (nkv, h), "o_proj": (h, nq),
            "gate_proj": (f, h), "up_proj": (f, h), "down_proj": (h, f)}


# ----------------------------------------------------------------------------
# loading
# ----------------------------------------------------------------------------
def _positive_int(v):
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def _number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def load_lora_adapter(adapter_dir, model):
    """Read and validate a PEFT LoRA adapter directory for `model` (from llama_ref.load_model).

    Returns {"r", "lora_alpha", "use_rslora", "config", "dtypes",
             "modules": {module name: {"layer", "proj", "A", "B", "r", "alpha", "scale"}}}.
    The modules are exactly those with tensors in the file. Anything inconsistent raises
    ValueError naming the file or tensor.
    """
    cfg_path = os.path.join(adapter_dir, "adapter_config.json")
    with open(cfg_path) as f:
        c = json.load(f)
    if c.get("peft_type") != "LORA":
        raise ValueError(f"{cfg_path}: peft_type must be 'LORA', got {c.get('peft_type')!r}")
    if not _positive_int(c.get("r")):
        raise ValueError(f"{cfg_path}: r must be a positive integer, got {c.get('r')!r}")
    c.setdefault("lora_alpha", 8)                          # PEFT's LoraConfig default
    if not _number(c["lora_alpha"]):
        raise ValueError(f"{cfg_path}: lora_alpha must be a number, got {c['lora_alpha']!r}")
    use_rslora = c.get("use_rslora", False)
    if not isinstance(use_rslora, bool):
        raise ValueError(f"{cfg_path}: use_rslora must be a bool, got {use_rslora!r}")
    for key, ok in (("rank_pattern", _positive_int), ("alpha_pattern", _number)):
        pat = c.get(key) or {}
        if not isinstance(pat, dict) or not all(ok(v) for v in pat.values()):
            raise ValueError(f"{cfg_path}: {key} must map regexes to {'ranks' if key == 'rank_pattern' else 'numbers'}, "
                             f"got {pat!r}")
    # variants this reference does not model: refuse rather than silently compute plain LoRA
    for key, plain in (("use_dora", False), ("fan_in_fan_out", False), ("bias", "none"), ("lora_bias", False)):
        if c.get(key, plain) not in (plain, None):
            raise ValueError(f"{cfg_path}: {key}={c[key]!r} is not plain LoRA (expected {plain!r})")

    mcfg = model["config"]
    n_layers = mcfg["num_hidden_layers"]
    shapes = linear_shapes(mcfg)
    st_path = os.path.join(adapter_dir, "adapter_model.safetensors")
    tensors = R.read_safetensors(st_path)
    found = {}
    for tname, arr in tensors.items():
        m = TENSOR_RE.match(tname)
        if not m:
            raise ValueError(f"{st_path}: unexpected tensor {tname}")
        name, layer, block, proj, which = m.group(1), int(m.group(2)), m.group(3), m.group(4), m.group(5)
        if PROJECTIONS.get(proj) != block or layer >= n_layers:
            raise ValueError(f"{st_path}: tensor {tname} names no linear module of this "
                             f"{n_layers}-layer model")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{st_path}: tensor {tname} has non-finite values")
        found.setdefault(name, {"layer": layer, "proj": proj})[which] = arr

    target_modules = c.get("target_modules")
    modules = {}
    for name in sorted(found, key=lambda n: (found[n]["layer"], ALL_TARGETS.index(found[n]["proj"]))):
        mod = found[name]
        for which in "AB":
            if which not in mod:
                raise ValueError(f"{st_path}: {PEFT_PREFIX}{name}.lora_{which}.weight is missing "
                                 f"(the file has lora_{'B' if which == 'A' else 'A'})")
        if not is_targeted(target_modules, name):
            raise ValueError(f"{st_path}: {name} has LoRA tensors but target_modules={target_modules!r} "
                             f"does not select it")
        r, alpha = module_rank_alpha(c, name)
        out_f, in_f = shapes[mod["proj"]]
        for which, want in (("A", (r, in_f)), ("B", (out_f, r))):
            if mod[which].shape != want:
                raise ValueError(f"{st_path}: tensor {PEFT_PREFIX}{name}.lora_{which}.weight has shape "
                                 f"{list(mod[which].shape)}, expected {list(want)} (r={r})")
        modules[name] = dict(mod, r=r, alpha=alpha, scale=lora_scale(r, alpha, use_rslora))
    if not modules:
        raise ValueError(f"{st_path}: no LoRA tensors")
    # every module the config targets must carry weights (PEFT would keep random init for it)
    plain_list = isinstance(target_modules, list) and not any(
        c.get(k) for k in ("layers_to_transform", "layers_pattern", "exclude_modules"))
    if plain_list:
        for i in range(n_layers):
            for proj in ALL_TARGETS:
                name = module_name(i, proj)
                if is_targeted(target_modules, name) and name not in modules:
                    raise ValueError(f"{st_path}: target_modules selects {name} but the file has no "
                                     f"{PEFT_PREFIX}{name}.lora_A.weight / lora_B.weight")
    return {"r": c["r"], "lora_alpha": c["lora_alpha"], "use_rslora": use_rslora, "config": c,
            "dtypes": R.safetensors_dtypes(st_path), "modules": modules}


# ----------------------------------------------------------------------------
# the math
# ----------------------------------------------------------------------------
def lora_delta(mod):
    """s * B @ A, the [out, in] change to the HF weight."""
    return mod["scale"] * (mod["B"] @ mod["A"])


def merge_lora(model, adapter):
    """A new model dict whose weights are W + s * B @ A for every adapted module; `model` is
    not modified (unadapted tensors are shared)."""
    if adapter is None:
        return model
    weights = dict(model["weights"])
    for name, mod in adapter["modules"].items():
        key = name + ".weight"
        weights[key] = model["weights"][key] + lora_delta(mod)
    return dict(model, weights=weights)


def forward_logits(model, ids, adapter=None):
    """float64 logits [T, vocab] of the model with the adapter merged (None = base model).
    LoRA has no prompt state, so prefill/decode splits cannot matter."""
    return R.forward_logits(merge_lora(model, adapter), ids)


def greedy_generate(model, prompt_ids, n_steps, adapter=None):
    """Greedy (argmax, first index on ties) on the merged model; generated ids only."""
    return R.greedy_generate(merge_lora(model, adapter), prompt_ids, n_steps)


# ----------------------------------------------------------------------------
# writing adapters (self-checks and hand-made adapters for the engine tests)
# ----------------------------------------------------------------------------
def random_lora_tensors(model, r, targets=("q_proj", "v_proj"), seed=0, rank_pattern=None, scale=1.0):
    """{tensor name: array} for `model`: A ~ N(0, 1/in), B ~ N(0, scale^2 / r), ranks per
    rank_pattern (PEFT rule)."""
    cfg = model["config"]
    shapes = linear_shapes(cfg)
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(cfg["num_hidden_layers"]):
        for proj in targets:
            rr, _ = module_rank_alpha({"r": r, "lora_alpha": 1, "rank_pattern": rank_pattern or {}},
                                      module_name(i, proj))
            o, n = shapes[proj]
            out[tensor_name(i, proj, "A")] = rng.normal(0.0, 1.0 / math.sqrt(n), size=(rr, n))
            out[tensor_name(i, proj, "B")] = rng.normal(0.0, scale / math.sqrt(rr), size=(o, rr))
    return out


def write_lora_adapter(adapter_dir, tensors, r, lora_alpha, targets=("q_proj", "v_proj"), use_rslora=False,
                       rank_pattern=None, alpha_pattern=None, dtype="F32", extra_config=None):
    """A PEFT-layout LoRA adapter; dtype as llama_ref.write_safetensors."""
    os.makedirs(adapter_dir, exist_ok=True)
    cfg = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": "tiny", "r": r,
           "lora_alpha": lora_alpha, "use_rslora": use_rslora, "target_modules": list(targets),
           "rank_pattern": dict(rank_pattern or {}), "alpha_pattern": dict(alpha_pattern or {}),
           "lora_dropout": 0.0, "bias": "none", "fan_in_fan_out": False, "use_dora": False,
           "inference_mode": True}
    cfg.update(extra_config or {})
    with open(os.path.join(adapter_dir, "adapter_config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    R.write_safetensors(os.path.join(adapter_dir, "adapter_model.safetensors"), tensors, dtype)


def main():
    args = R.cli_parser(__doc__, "LoRA").parse_args()
    model = R.load_model(args.model_dir)
    adapter = load_lora_adapter(args.adapter, model) if args.adapter else None
    if adapter:
        for name, m in adapter["modules"].items():
            print(f"{name}: r={m['r']} alpha={m['alpha']} scale={m['scale']:.6g}")
    ids = R.cli_ids(args.ids)
    logits = forward_logits(model, ids, adapter)
    if args.out:
        np.save(args.out, logits)
    R.print_top(logits, ids, args.top)


if __name__ == "__main__":
    main()
