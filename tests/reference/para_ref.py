"""Independent numpy reference for PARA adapters on a LLaMA-family decoder.

Written from the adapter contract (math and on-disk format) only; builds on llama_ref.py.
All arithmetic is float64 (adapter weights are upcast exactly from F32/F16/BF16).

The math, per decoder layer l (h = residual stream entering layer l, before input_layernorm):

    p             = pool(h[prompt rows])            "last": final prompt row; "mean": mean of them
    l             = act(p @ W_down^T) @ W_up^T + b_up
    l_q, l_v, l_u = split(l, [n_heads*head_dim, n_kv_heads*head_dim, intermediate_size])
    q = l_q * (x @ Wq^T)  (then RoPE);   v = l_v * (x @ Wv^T);
    mlp = down(silu(x' @ Wgate^T) * (l_u * (x' @ Wup^T)))

for every row, prompt and generated alike. The vectors come from the prompt only and are
reused for every generated token. Prompt rows at every layer depend only on prompt rows
(causality), so one full pass over prompt + generated ids, pooling over the first prompt_len
rows at each layer, gives exactly what a prefill followed by decode steps gives.

Usage for debugging:
    python3 para_ref.py MODEL_DIR --adapter ADAPTER_DIR --ids 1,2,3 [--prompt-len K] [--out f.npy]
"""
import json
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llama_ref as R  # noqa: E402

TARGET_MODULES = ["q_proj", "v_proj", "up_proj"]
POOLERS = ("last", "mean")
TENSOR = "base_model.model.model.layers.{i}.para.{part}"
PARTS = ("down.weight", "up.weight", "up.bias")


# ----------------------------------------------------------------------------
# activations of the vector generator
# ----------------------------------------------------------------------------
_erf = np.vectorize(math.erf, otypes=[np.float64])


def gelu(x):
    """Exact GELU: 0.5 x (1 + erf(x / sqrt 2))."""
    x = np.asarray(x, dtype=np.float64)
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def gelu_tanh(x):
    """Tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    x = np.asarray(x, dtype=np.float64)
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def relu(x):
    return np.maximum(np.asarray(x, dtype=np.float64), 0.0)


def silu(x):
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(over="ignore"):           # exp(-x) -> inf for very negative x gives 0
        return x / (1.0 + np.exp(-x))


ACTIVATIONS = {"gelu": gelu, "gelu_tanh": gelu_tanh, "relu": relu, "silu": silu}


# ----------------------------------------------------------------------------
# adapter files
# ----------------------------------------------------------------------------
def para_sizes(cfg):
    """(len l_q, len l_v, len l_u) for a model config."""
    d = cfg["head_dim"]
    return (cfg["num_attention_heads"] * d, cfg["num_key_value_heads"] * d, cfg["intermediate_size"])


def load_para_adapter(adapter_dir, model):
    """Read and validate a PARA adapter directory for `model` (from llama_ref.load_model).

    Returns {"r", "pooler", "activation", "act", "sizes", "layers": [(W_down, W_up, b_up)],
    "dtypes": {name: dtype}, "config": raw adapter_config}. Anything the contract calls an
    error raises ValueError naming the file or tensor.
    """
    cfg_path = os.path.join(adapter_dir, "adapter_config.json")
    with open(cfg_path) as f:
        c = json.load(f)
    if c.get("peft_type") != "PARA":
        raise ValueError(f"{cfg_path}: peft_type must be 'PARA', got {c.get('peft_type')!r}")
    r = c.get("r")
    if isinstance(r, bool) or not isinstance(r, int) or r < 1:
        raise ValueError(f"{cfg_path}: r must be a positive integer, got {r!r}")
    pooler = c.get("pooler", "last")
    if pooler not in POOLERS:
        raise ValueError(f"{cfg_path}: pooler must be one of {POOLERS}, got {pooler!r}")
    activation = c.get("activation", "gelu")
    if activation not in ACTIVATIONS:
        raise ValueError(f"{cfg_path}: activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    if "target_modules" in c and c["target_modules"] != TARGET_MODULES:
        raise ValueError(f"{cfg_path}: target_modules must be {TARGET_MODULES}, got {c['target_modules']!r}")

    mcfg = model["config"]
    hidden, n_layers = mcfg["hidden_size"], mcfg["num_hidden_layers"]
    sizes = para_sizes(mcfg)
    d_out = sum(sizes)
    st_path = os.path.join(adapter_dir, "adapter_model.safetensors")
    tensors = R.read_safetensors(st_path)
    want_shapes = {}
    for i in range(n_layers):
        for part, shape in zip(PARTS, [(r, hidden), (d_out, r), (d_out,)]):
            want_shapes[TENSOR.format(i=i, part=part)] = shape
    for name in want_shapes:
        if name not in tensors:
            raise ValueError(f"{st_path}: missing tensor {name}")
    for name in tensors:
        if name not in want_shapes:
            raise ValueError(f"{st_path}: unexpected tensor {name}")
    for name, shape in want_shapes.items():
        if tensors[name].shape != shape:
            raise ValueError(f"{st_path}: tensor {name} has shape {list(tensors[name].shape)}, "
                             f"expected {list(shape)} (r={r}, hidden={hidden}, d_out={d_out})")
        if not np.all(np.isfinite(tensors[name])):
            raise ValueError(f"{st_path}: tensor {name} has non-finite values")
    layers = [tuple(tensors[TENSOR.format(i=i, part=part)] for part in PARTS) for i in range(n_layers)]
    return {"r": r, "pooler": pooler, "activation": activation, "act": ACTIVATIONS[activation],
            "sizes": sizes, "layers": layers, "dtypes": R.safetensors_dtypes(st_path), "config": c}


def para_vectors(adapter, layer, resid, prompt_len):
    """(l_q, l_v, l_u) of one layer from resid [T, hidden] (rows 0..prompt_len-1 are the prompt)."""
    rows = resid[:prompt_len]
    p = rows[-1] if adapter["pooler"] == "last" else rows.mean(axis=0)
    w_down, w_up, b_up = adapter["layers"][layer]
    lvec = adapter["act"](w_down @ p) @ w_up.T + b_up
    nq, nv, _ = adapter["sizes"]
    return lvec[:nq], lvec[nq:nq + nv], lvec[nq + nv:]


# ----------------------------------------------------------------------------
# forward / generation
# ----------------------------------------------------------------------------
def forward_logits(model, ids, adapter=None, prompt_len=None, vectors=None, record=None):
    """float64 logits [T, vocab]; row i = logits after ids[0..i].

    adapter: from load_para_adapter (None = base model). prompt_len: how many leading ids are
    the prompt the vectors are pooled from (default all); later ids are generated tokens that
    reuse the prompt's vectors. vectors: per-layer (l_q, l_v, l_u) to use instead of computing
    them (e.g. from compute_vectors). record: a list that receives each layer's vectors.
    """
    T = len(ids)
    K = T if prompt_len is None else int(prompt_len)
    if not 1 <= K <= T:
        raise ValueError(f"prompt_len {K} out of range 1..{T}")
    if adapter is None and vectors is None:
        return R.forward_logits(model, ids)

    def hook(layer, resid):
        v = vectors[layer] if vectors is not None else para_vectors(adapter, layer, resid, K)
        if record is not None:
            record.append(v)
        return v

    return R.forward_logits(model, ids, para=hook)


def compute_vectors(model, prompt_ids, adapter):
    """Per-layer (l_q, l_v, l_u) that the prompt produces."""
    rec = []
    forward_logits(model, prompt_ids, adapter, record=rec)
    return rec


def greedy_generate(model, prompt_ids, n_steps, adapter=None):
    """Greedy (argmax, first index on ties); vectors from the prompt, reused for every step.
    Returns the generated ids only."""
    if adapter is None:
        return R.greedy_generate(model, prompt_ids, n_steps)
    vecs = compute_vectors(model, prompt_ids, adapter)
    ids = [int(t) for t in prompt_ids]
    out = []
    for _ in range(n_steps):
        nxt = int(np.argmax(forward_logits(model, ids, vectors=vecs)[-1]))
        ids.append(nxt)
        out.append(nxt)
    return out


# ----------------------------------------------------------------------------
# writing adapters (self-checks, and hand-made adapters for the engine tests)
# ----------------------------------------------------------------------------
def write_para_adapter(adapter_dir, layers, r, pooler="last", activation="gelu", dtype="F32",
                       extra_config=None):
    """layers: [(W_down [r, hidden], W_up [d_out, r], b_up [d_out])]; dtype as llama_ref.write_safetensors."""
    os.makedirs(adapter_dir, exist_ok=True)
    cfg = {"peft_type": "PARA", "base_model_name_or_path": "tiny", "r": r, "pooler": pooler,
           "activation": activation, "target_modules": list(TARGET_MODULES)}
    cfg.update(extra_config or {})
    with open(os.path.join(adapter_dir, "adapter_config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    tensors = {}
    for i, parts in enumerate(layers):
        for part, arr in zip(PARTS, parts):
            tensors[TENSOR.format(i=i, part=part)] = arr
    R.write_safetensors(os.path.join(adapter_dir, "adapter_model.safetensors"), tensors, dtype)


def random_para_layers(model, r, seed, scale=1.0, identity=False):
    """Adapter weights for `model`. identity: W_up = 0, b_up = 1 (exactly the base model)."""
    cfg = model["config"]
    hidden, d_out = cfg["hidden_size"], sum(para_sizes(cfg))
    rng = np.random.default_rng(seed)
    layers = []
    for _ in range(cfg["num_hidden_layers"]):
        w_down = rng.normal(0.0, 1.0 / math.sqrt(hidden), size=(r, hidden))
        if identity:
            w_up, b_up = np.zeros((d_out, r)), np.ones(d_out)
        else:
            w_up = rng.normal(0.0, scale / math.sqrt(r), size=(d_out, r))
            b_up = 1.0 + rng.normal(0.0, 0.1 * scale, size=d_out)
        layers.append((w_down, w_up, b_up))
    return layers


def main():
    ap = R.cli_parser(__doc__, "PARA")
    ap.add_argument("--prompt-len", type=int, help="leading ids that form the prompt (default all)")
    args = ap.parse_args()
    model = R.load_model(args.model_dir)
    adapter = load_para_adapter(args.adapter, model) if args.adapter else None
    ids = R.cli_ids(args.ids)
    logits = forward_logits(model, ids, adapter, args.prompt_len)
    R.print_top(logits, ids, args.top)
    if args.out:
        np.save(args.out, logits)


if __name__ == "__main__":
    main()
