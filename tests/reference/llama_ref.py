"""Independent numpy reference for a LLaMA-family decoder (LlamaForCausalLM).

Written from the math as Hugging Face transformers defines it; this file is the
specification the C++ engine is tested against. All arithmetic is float64
(weights are upcast exactly from F32/F16/BF16).

Usage for debugging:
    python3 llama_ref.py MODEL_DIR --ids 1,2,3 [--top 5] [--out logits.npy]
"""
import argparse
import json
import math
import os
import struct

import numpy as np


# ----------------------------------------------------------------------------
# safetensors (parsed, and for the tests written, by hand)
# ----------------------------------------------------------------------------
def read_safetensors(path):
    """Return {name: float64 ndarray} for one .safetensors file."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        raw = blob[base + begin: base + end]
        dtype = info["dtype"]
        if dtype == "F32":
            arr = np.frombuffer(raw, dtype="<f4")
        elif dtype == "F16":
            arr = np.frombuffer(raw, dtype="<f2")
        elif dtype == "BF16":
            arr = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        elif dtype == "F64":
            arr = np.frombuffer(raw, dtype="<f8")
        else:
            raise ValueError(f"{path}: tensor {name}: unsupported dtype {dtype}")
        shape = tuple(info["shape"])
        if arr.size != math.prod(shape):
            raise ValueError(f"{path}: tensor {name}: {arr.size} elements for shape {shape}")
        out[name] = arr.reshape(shape).astype(np.float64)
    return out


def safetensors_dtypes(path):
    """{tensor name: dtype string} from a .safetensors header."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n).decode("utf-8"))
    return {k: v["dtype"] for k, v in header.items() if k != "__metadata__"}


def _encode(arr, dtype):
    a = np.ascontiguousarray(arr, dtype=np.float64)
    if dtype == "F32":
        return a.astype("<f4").tobytes()
    if dtype == "F16":
        return a.astype("<f2").tobytes()
    if dtype == "BF16":                                  # round to nearest even from f32
        u = a.astype("<f4").view(np.uint32).astype(np.uint64)
        u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
        return u.astype("<u2").tobytes()
    raise ValueError(f"unsupported dtype {dtype}")


def write_safetensors(path, tensors, dtype="F32"):
    """Write tensors {name: array} to one .safetensors file (models and adapters made by hand in
    the tests); dtype: one string ("F32", "F16", "BF16") or {name: dtype}."""
    header, chunks, off = {}, [], 0
    for name, arr in tensors.items():
        dt = dtype if isinstance(dtype, str) else dtype[name]
        raw = _encode(arr, dt)
        header[name] = {"dtype": dt, "shape": list(np.shape(arr)), "data_offsets": [off, off + len(raw)]}
        chunks.append(raw)
        off += len(raw)
    hb = json.dumps(header).encode("utf-8")
    hb += b" " * (-len(hb) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)) + hb + b"".join(chunks))


def load_weights(model_dir):
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            weight_map = json.load(f)["weight_map"]
        weights = {}
        for fname in sorted(set(weight_map.values())):
            weights.update(read_safetensors(os.path.join(model_dir, fname)))
        missing = set(weight_map) - set(weights)
        if missing:
            raise ValueError(f"tensors listed in index but not found: {sorted(missing)[:5]}")
        return weights
    return read_safetensors(os.path.join(model_dir, "model.safetensors"))


# ----------------------------------------------------------------------------
# config / RoPE
# ----------------------------------------------------------------------------
def rope_inv_freq(head_dim, theta, rope_scaling):
    """inv_freq[i] = theta^(-2i/d), then HF rope scaling ("linear" or "llama3")."""
    inv_freq = 1.0 / theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    if not rope_scaling:
        return inv_freq
    kind = rope_scaling.get("rope_type", rope_scaling.get("type", "default"))
    if kind == "default":
        return inv_freq
    if kind == "linear":
        return inv_freq / float(rope_scaling["factor"])
    if kind == "llama3":
        factor = float(rope_scaling["factor"])
        low = float(rope_scaling["low_freq_factor"])
        high = float(rope_scaling["high_freq_factor"])
        old_ctx = float(rope_scaling["original_max_position_embeddings"])
        low_freq_wavelen = old_ctx / low
        high_freq_wavelen = old_ctx / high
        wavelen = 2 * math.pi / inv_freq
        # long wavelengths: divide by factor; short: unchanged; in between: blend.
        scaled = np.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
        smooth = (old_ctx / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        is_medium = ~(wavelen < high_freq_wavelen) & ~(wavelen > low_freq_wavelen)
        return np.where(is_medium, smoothed, scaled)
    raise NotImplementedError(f"rope_scaling type {kind!r}")


def load_model(model_dir):
    with open(os.path.join(model_dir, "config.json")) as f:
        c = json.load(f)
    n_heads = c["num_attention_heads"]
    cfg = {
        "hidden_size": c["hidden_size"],
        "intermediate_size": c["intermediate_size"],
        "num_hidden_layers": c["num_hidden_layers"],
        "num_attention_heads": n_heads,
        "num_key_value_heads": c.get("num_key_value_heads") or n_heads,
        "head_dim": c.get("head_dim") or c["hidden_size"] // n_heads,
        "rms_norm_eps": c.get("rms_norm_eps", 1e-6),
        "rope_theta": c.get("rope_theta", 10000.0),
        "rope_scaling": c.get("rope_scaling"),
        "vocab_size": c["vocab_size"],
        "tie_word_embeddings": c.get("tie_word_embeddings", False),
    }
    rope = c.get("rope_parameters")
    if rope:  # transformers 5: theta and scaling in one object, or one per layer type
        if all(isinstance(v, dict) for v in rope.values()):
            sets = list(rope.values())
            if any(r != sets[0] for r in sets):
                raise NotImplementedError("rope_parameters that differ between layer types")
            rope = sets[0]
        cfg["rope_theta"] = rope.get("rope_theta", cfg["rope_theta"])
        cfg["rope_scaling"] = rope if rope.get("rope_type", "default") != "default" else None
    weights = load_weights(model_dir)
    if "lm_head.weight" not in weights:
        if not cfg["tie_word_embeddings"]:
            raise ValueError("lm_head.weight missing and tie_word_embeddings is false")
        weights["lm_head.weight"] = weights["model.embed_tokens.weight"]
    elif cfg["tie_word_embeddings"]:
        # HF ties the parameters: the embedding matrix is the output matrix.
        weights["lm_head.weight"] = weights["model.embed_tokens.weight"]
    inv_freq = rope_inv_freq(cfg["head_dim"], float(cfg["rope_theta"]), cfg["rope_scaling"])
    return {"config": cfg, "weights": weights, "inv_freq": inv_freq}


# ----------------------------------------------------------------------------
# forward pass
# ----------------------------------------------------------------------------
def rms_norm(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def rotate_half(x):
    half = x.shape[-1] // 2
    return np.concatenate([-x[..., half:], x[..., :half]], axis=-1)


def apply_rope(x, cos, sin):
    """x: [heads, T, d]; cos/sin: [T, d]."""
    return x * cos + rotate_half(x) * sin


def silu(x):
    return x / (1.0 + np.exp(-x))


def softmax(x, axis=-1):
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def log_softmax(logits, axis=-1):
    x = np.asarray(logits, dtype=np.float64)
    m = np.max(x, axis=axis, keepdims=True)
    return x - m - np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True))


def _linear(weights, x, name):
    y = x @ weights[name + ".weight"].T          # HF Linear weight is [out, in]
    if name + ".bias" in weights:                 # attention_bias / mlp_bias configs
        y = y + weights[name + ".bias"]
    return y


def forward_logits(model, token_ids, para=None):
    """Full causal forward over token_ids; returns float64 logits [T, vocab].

    para: optional adapter hook (PARA, see para_ref.py). Called once per layer as
    para(i, resid) with resid the residual stream [T, hidden] entering layer i (before
    input_layernorm); returns None (layer unscaled) or (l_q, l_v, l_u), vectors that scale the
    q_proj output (before RoPE), the v_proj output (the values attention reads) and the
    mlp.up_proj output of every row. k, o, gate and down projections are never scaled.
    """
    cfg, W = model["config"], model["weights"]
    ids = np.asarray(token_ids, dtype=np.int64)
    T = ids.shape[0]
    nh, nkv, d = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    eps = cfg["rms_norm_eps"]
    assert nh % nkv == 0 and d % 2 == 0

    angles = np.arange(T, dtype=np.float64)[:, None] * model["inv_freq"][None, :]
    emb = np.concatenate([angles, angles], axis=-1)            # [T, d]
    cos, sin = np.cos(emb), np.sin(emb)
    causal = np.triu(np.full((T, T), -np.inf), k=1)             # key j > query i masked

    x = W["model.embed_tokens.weight"][ids]                     # [T, hidden]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        scale = para(i, x) if para is not None else None
        h = rms_norm(x, W[p + "input_layernorm.weight"], eps)
        q = _linear(W, h, p + "self_attn.q_proj")
        k = _linear(W, h, p + "self_attn.k_proj")
        v = _linear(W, h, p + "self_attn.v_proj")
        if scale is not None:
            q, v = q * scale[0], v * scale[1]
        q = q.reshape(T, nh, d).transpose(1, 0, 2)
        k = k.reshape(T, nkv, d).transpose(1, 0, 2)
        v = v.reshape(T, nkv, d).transpose(1, 0, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        # GQA: query head h reads kv head h // (nh // nkv)
        k = np.repeat(k, nh // nkv, axis=0)
        v = np.repeat(v, nh // nkv, axis=0)
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(d) + causal  # [nh, T, T]
        attn = (softmax(scores) @ v).transpose(1, 0, 2).reshape(T, nh * d)
        x = x + _linear(W, attn, p + "self_attn.o_proj")

        h = rms_norm(x, W[p + "post_attention_layernorm.weight"], eps)
        up = _linear(W, h, p + "mlp.up_proj")
        if scale is not None:
            up = up * scale[2]
        mlp = silu(_linear(W, h, p + "mlp.gate_proj")) * up
        x = x + _linear(W, mlp, p + "mlp.down_proj")

    x = rms_norm(x, W["model.norm.weight"], eps)
    return x @ W["lm_head.weight"].T


def greedy_generate(model, prompt_ids, n_steps):
    """Greedy (argmax of last row, first index on ties); returns generated ids only."""
    ids = [int(t) for t in prompt_ids]
    out = []
    for _ in range(n_steps):
        nxt = int(np.argmax(forward_logits(model, ids)[-1]))
        ids.append(nxt)
        out.append(nxt)
    return out


# ----------------------------------------------------------------------------
# command line (debugging); para_ref.py and lora_ref.py use the same, with --adapter
# ----------------------------------------------------------------------------
def cli_parser(doc, adapter_kind=None):
    """MODEL_DIR [--adapter DIR] --ids 1,2,3 [--top K] [--out F.npy]; described by doc's first line."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("model_dir")
    if adapter_kind:
        ap.add_argument("--adapter", help=f"{adapter_kind} adapter directory (default: base model)")
    ap.add_argument("--ids", required=True, help="comma-separated token ids")
    ap.add_argument("--top", type=int, default=5, help="print top-k ids per row")
    ap.add_argument("--out", help="also save float64 logits [T, vocab] to this .npy")
    return ap


def cli_ids(text):
    """[1, 2, 3] from "1,2,3"."""
    return [int(s) for s in text.split(",") if s.strip()]


def print_top(logits, ids, k, head=0):
    """Each row's top-k ids with their logits (and its first `head` logits)."""
    for i, row in enumerate(logits):
        top = np.argsort(-row, kind="stable")[:k]
        print(f"pos {i} tok {ids[i]}: top {[(int(t), round(float(row[t]), 6)) for t in top]}")
        if head:
            print(f"  logits[:{head}] =", row[:head])


def main():
    args = cli_parser(__doc__).parse_args()
    model = load_model(args.model_dir)
    ids = cli_ids(args.ids)
    logits = forward_logits(model, ids)
    np.set_printoptions(precision=6, suppress=True, linewidth=140)
    print_top(logits, ids, args.top, head=8)
    if args.out:
        np.save(args.out, logits)


if __name__ == "__main__":
    main()
