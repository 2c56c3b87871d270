#!/usr/bin/env python3
"""A Hugging Face LLaMA directory as a GGUF file for llama.cpp, for the peer benchmarks.

Shared by bench/peer_llamacpp.py (llama-cpp-python) and bench/peer_llamacpp_bench.py
(llama-bench, llama-batched-bench). Reads safetensors in F32, F16 or BF16, one file or shards,
with numpy memory maps, and writes GGUF F16 or F32 with the `gguf` package (the project's pin,
tests/requirements.txt), one tensor at a time, so memory stays at about one tensor:

- q_proj / k_proj rows are permuted from Hugging Face's rotary layout (two halves of each head)
  to GGML's (adjacent pairs), as llama.cpp's own converter does;
- 1-D tensors (the RMSNorm weights) stay F32, as llama.cpp's converter keeps them;
- the vocabulary is placeholders (`<unk>`, `<s>`, `</s>`, 256 byte tokens, then `▁t<i>`): the
  benchmarks feed token ids, so no tokenizer is needed or converted;
- configurations with math this converter does not carry over (biases, sliding windows, rope
  scaling other than linear) are refused, never silently dropped.

  bench/hf_to_gguf.py MODEL_DIR OUT.gguf [--type f16|f32]
"""

import argparse
import json
import os
import pathlib
import struct
import sys

import numpy as np

# Bump when the written file changes, so cached conversions are redone.
CONVERTER_VERSION = 2

SAFETENSORS_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16}


class ConvertError(Exception):
    """A model this converter refuses, with the reason."""


def safetensor_files(model: pathlib.Path) -> list:
    """The model's safetensors files: the index's shards when there is an index, else *.safetensors."""
    index = model / "model.safetensors.index.json"
    if index.exists():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [model / s for s in shards]
    files = sorted(model.glob("*.safetensors"))
    if not files:
        raise ConvertError(f"{model}: no *.safetensors files")
    return files


def read_tensors(model: pathlib.Path) -> dict:
    """name -> (memory-mapped numpy array in its stored dtype, safetensors dtype name)."""
    tensors = {}
    for path in safetensor_files(model):
        raw = np.memmap(path, dtype=np.uint8, mode="r")
        n = struct.unpack("<Q", bytes(raw[:8]))[0]
        header = json.loads(bytes(raw[8:8 + n]))
        for name, t in header.items():
            if name == "__metadata__":
                continue
            if t["dtype"] not in SAFETENSORS_DTYPES:
                raise ConvertError(f"{path.name}: {name} is {t['dtype']}; supported: F32, F16, BF16")
            a, b = t["data_offsets"]
            arr = raw[8 + n + a: 8 + n + b].view(SAFETENSORS_DTYPES[t["dtype"]]).reshape(t["shape"])
            tensors[name] = (arr, t["dtype"])
    return tensors


def to_f32(arr: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "BF16":
        return (np.asarray(arr).astype(np.uint32) << 16).view(np.float32)
    return np.asarray(arr).astype(np.float32, copy=False)


def rope_rows(w: np.ndarray, heads: int) -> np.ndarray:
    """Hugging Face rotates the two halves of each head; GGML rotates adjacent pairs."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def unrope_rows(w: np.ndarray, heads: int) -> np.ndarray:
    """The inverse of rope_rows (tests)."""
    return w.reshape(heads, w.shape[0] // heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


LAYER_NAMES = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
               "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
               "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm",
               "post_attention_layernorm": "ffn_norm"}


def rope_config(cfg: dict) -> tuple:
    """(theta, linear scaling factor or None) from transformers 4 or 5 layouts; refuses the rest."""
    theta = cfg.get("rope_theta", 10000.0)
    params = cfg.get("rope_parameters")
    if params and all(isinstance(v, dict) for v in params.values()):
        params = next(iter(params.values()))
    scaling = params if params else cfg.get("rope_scaling")
    if params:
        theta = params.get("rope_theta", theta)
    if not scaling:
        return theta, None
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind == "default":
        return theta, None
    if kind == "linear":
        return theta, float(scaling["factor"])
    raise ConvertError(f"rope type '{kind}' is not converted (default and linear are)")


def plan(model: pathlib.Path) -> tuple:
    """(config, [(gguf name, source name, transform)]) for a LLaMA directory."""
    cfg = json.loads((model / "config.json").read_text())
    for flag in ("attention_bias", "mlp_bias", "use_sliding_window", "qk_norm"):
        if cfg.get(flag):
            raise ConvertError(f"config '{flag}' is not converted")
    if cfg.get("sliding_window") is not None and cfg.get("use_sliding_window", True):
        raise ConvertError("config 'sliding_window' is not converted")
    if cfg.get("hidden_act", "silu") != "silu":
        raise ConvertError(f"hidden_act '{cfg['hidden_act']}' is not converted (silu is)")
    nh = cfg["num_attention_heads"]
    nkv = cfg.get("num_key_value_heads") or nh
    items = [("token_embd.weight", "model.embed_tokens.weight", None),
             ("output_norm.weight", "model.norm.weight", None)]
    if not cfg.get("tie_word_embeddings", False):
        items.append(("output.weight", "lm_head.weight", None))  # tied: llama.cpp reuses token_embd
    for i in range(cfg["num_hidden_layers"]):
        for hf, gg in LAYER_NAMES.items():
            fix = (lambda w: rope_rows(w, nh)) if gg == "attn_q" else (
                (lambda w: rope_rows(w, nkv)) if gg == "attn_k" else None)
            items.append((f"blk.{i}.{gg}.weight", f"model.layers.{i}.{hf}.weight", fix))
    return cfg, items


def convert(model, out, out_type: str = "f16", log=None) -> pathlib.Path:
    """Writes MODEL (HF LLaMA directory) as GGUF `out_type` (f16 | f32) to OUT; returns OUT."""
    import gguf  # the project's pin (tests/requirements.txt)

    model, out = pathlib.Path(model), pathlib.Path(out)
    if out_type not in ("f16", "f32"):
        raise ConvertError(f"--type must be f16 or f32, got {out_type!r}")
    cfg, items = plan(model)
    tensors = read_tensors(model)
    missing = [src for _, src, _ in items if src not in tensors]
    if missing:
        raise ConvertError(f"{model}: missing tensors {missing[:3]}{' ...' if len(missing) > 3 else ''}")
    h, nh = cfg["hidden_size"], cfg["num_attention_heads"]
    nkv = cfg.get("num_key_value_heads") or nh
    hd = cfg.get("head_dim") or h // nh
    theta, linear = rope_config(cfg)
    tmp = out.with_name(out.name + ".part")
    w = gguf.GGUFWriter(str(tmp), "llama")
    w.add_name(model.name)
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(h)
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_rope_dimension_count(hd)
    w.add_head_count(nh)
    w.add_head_count_kv(nkv)
    w.add_key_length(hd)
    w.add_value_length(hd)
    w.add_layer_norm_rms_eps(cfg.get("rms_norm_eps", 1e-5))
    w.add_rope_freq_base(theta)
    if linear is not None:
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(linear)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if out_type == "f16" else gguf.LlamaFileType.ALL_F32)
    V = cfg["vocab_size"]
    toks = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)]
    toks += [f"\u2581t{i}" for i in range(max(0, V - len(toks)))]
    types = [2, 3, 3] + [6] * 256 + [1] * max(0, V - 259)
    w.add_tokenizer_model("llama")
    w.add_token_list(toks[:V])
    w.add_token_scores([0.0] * V)
    w.add_token_types(types[:V])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(False)

    def out_dtype(arr):
        return np.float16 if out_type == "f16" and arr.ndim > 1 else np.float32

    for name, src, _ in items:
        arr, _ = tensors[src]
        dt = np.dtype(out_dtype(arr))
        w.add_tensor_info(name, arr.shape, dt, arr.size * dt.itemsize)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for k, (name, src, fix) in enumerate(items):
        arr, dtype = tensors[src]
        t = to_f32(arr, dtype)
        if fix is not None:
            t = fix(t)
        w.write_tensor_data(np.ascontiguousarray(t.astype(out_dtype(arr), copy=False)))
        if log and k % 50 == 0:
            log(f"  {k}/{len(items)} tensors")
    w.close()
    os.replace(tmp, out)
    (out.with_name(out.name + ".stamp")).write_text(stamp(model))
    return out


def stamp(model: pathlib.Path) -> str:
    """What a cached conversion was made from: the converter version and the inputs' sizes/mtimes."""
    files = [model / "config.json", *safetensor_files(model)]
    return json.dumps({"converter": CONVERTER_VERSION,
                       "inputs": [[f.name, f.stat().st_size, int(f.stat().st_mtime)] for f in files]})


def ensure(model, out_dir, out_type: str = "f16", log=print) -> pathlib.Path:
    """The GGUF `out_type` conversion of MODEL in OUT_DIR, converting only when it is missing or stale."""
    model, out_dir = pathlib.Path(model), pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"peer-{out_type}.gguf"
    st = out.with_name(out.name + ".stamp")
    if out.exists() and st.exists() and st.read_text() == stamp(model):
        return out
    if log:
        log(f"converting {model} to {out} ...")
    return convert(model, out, out_type, log=log)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=pathlib.Path)
    ap.add_argument("out", type=pathlib.Path)
    ap.add_argument("--type", default="f16", choices=["f16", "f32"])
    args = ap.parse_args()
    try:
        convert(args.model, args.out, args.type, log=lambda m: print(m, file=sys.stderr))
    except ConvertError as e:
        sys.exit(f"hf_to_gguf: {e}")


if __name__ == "__main__":
    main()
