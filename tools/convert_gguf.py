#!/usr/bin/env python3
"""Convert a LLaMA-architecture GGUF file into a Hugging Face model directory.

Reads the GGUF with the `gguf` package (metadata, tensor types and raw bytes), dequantizes the
tensors with this file's own numpy code, and writes what transformers' LlamaForCausalLM and the
engine load: model.safetensors, config.json (transformers 5 layout), generation_config.json,
tokenizer.json (rebuilt from the GGUF vocabulary), tokenizer_config.json, chat_template.jinja and
special_tokens_map.json. Everything the converter cannot represent exactly is an error that names
the key, tensor or type; nothing is guessed. See docs/default-model.md.
"""
import argparse
import json
import os
import shutil
import struct
import sys
import time

import gguf
import numpy as np

VERSION = "1.0"


class ConvertError(Exception):
    """A GGUF this converter refuses, with the reason."""


def log(msg):
    if not QUIET:
        print(msg, file=sys.stderr, flush=True)


QUIET = False

# ----------------------------------------------------------------------------------------------
# GGML tensor types and dequantization.
#
# A quantized row is a sequence of blocks; each block holds `block` values in `nbytes` bytes
# (little-endian). Layouts (ggml's block_* structs):
#   Q8_0  (32, 34): f16 d, int8 q[32]                       x = d*q
#   Q4_0  (32, 18): f16 d, u8 qs[16]                        x[j] = d*(lo(qs[j]) - 8), x[j+16] = d*(hi(qs[j]) - 8)
#   Q4_1  (32, 20): f16 d, f16 m, u8 qs[16]                 x[j] = d*lo(qs[j]) + m,   x[j+16] = d*hi(qs[j]) + m
#   Q5_0  (32, 22): f16 d, u32 qh, u8 qs[16]                4-bit nibble as Q4_0, bit e of qh is bit 4 of value e; -16
#   Q5_1  (32, 24): f16 d, f16 m, u32 qh, u8 qs[16]         as Q5_0 without the offset, then d*q + m
#   Q4_K  (256, 144): f16 d, f16 dmin, u8 scales[12], u8 qs[128]
#   Q5_K  (256, 176): f16 d, f16 dmin, u8 scales[12], u8 qh[32], u8 qs[128]
#   Q6_K  (256, 210): u8 ql[128], u8 qh[64], int8 scales[16], f16 d
# lo/hi: the low and high nibble. F32, F16 and BF16 are plain little-endian arrays.
# ----------------------------------------------------------------------------------------------
GGML_TYPES = {  # id: (name, values per block, bytes per block)
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22), 7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34),
    12: ("Q4_K", 256, 144), 13: ("Q5_K", 256, 176), 14: ("Q6_K", 256, 210), 30: ("BF16", 1, 2),
}


def _f16(blocks, off):
    """The f16 at byte `off` of every block, as a float32 column [n, 1]."""
    return blocks[:, off:off + 2].copy().view("<f2").astype(np.float32)


def _nibbles(qs):
    """[n, 16] bytes -> [n, 32] values: the 16 low nibbles, then the 16 high nibbles."""
    return np.concatenate([qs & 0x0F, qs >> 4], axis=1)


def _bits32(blocks, off):
    """The little-endian u32 at `off` of every block, unpacked to [n, 32] bits (bit e -> column e)."""
    qh = blocks[:, off:off + 4].copy().view("<u4")
    return ((qh >> np.arange(32, dtype=np.uint32)) & 1).astype(np.uint8)


def _deq_q8_0(b):
    return _f16(b, 0) * b[:, 2:34].view(np.int8).astype(np.float32)


def _deq_q4_0(b):
    return _f16(b, 0) * (_nibbles(b[:, 2:18]).astype(np.float32) - 8.0)


def _deq_q4_1(b):
    return _f16(b, 0) * _nibbles(b[:, 4:20]).astype(np.float32) + _f16(b, 2)


def _deq_q5_0(b):
    q = _nibbles(b[:, 6:22]) | (_bits32(b, 2) << 4)
    return _f16(b, 0) * (q.astype(np.float32) - 16.0)


def _deq_q5_1(b):
    q = _nibbles(b[:, 8:24]) | (_bits32(b, 4) << 4)
    return _f16(b, 0) * q.astype(np.float32) + _f16(b, 2)


def _k_scales_mins(s):
    """The 8 6-bit scales and 8 6-bit mins packed in 12 bytes (Q4_K, Q5_K): [n, 8] each.
    Sub-blocks 0-3: low 6 bits of bytes 0-3 (scales) and 4-7 (mins); sub-blocks 4-7: a nibble of
    bytes 8-11 for the low 4 bits, and the top 2 bits of bytes 0-3 (scales) / 4-7 (mins)."""
    s = s.astype(np.uint8)
    sc_lo, mn_lo = s[:, 0:4] & 63, s[:, 4:8] & 63
    sc_hi = (s[:, 8:12] & 0x0F) | ((s[:, 0:4] >> 6) << 4)
    mn_hi = (s[:, 8:12] >> 4) | ((s[:, 4:8] >> 6) << 4)
    return (np.concatenate([sc_lo, sc_hi], axis=1).astype(np.float32),
            np.concatenate([mn_lo, mn_hi], axis=1).astype(np.float32))


def _k_quads(qs):
    """Q4_K/Q5_K's 128 bytes -> [n, 8, 32] 4-bit values: 4 chunks of 32 bytes, each giving a
    sub-block of low nibbles then a sub-block of high nibbles."""
    q = qs.reshape(-1, 4, 1, 32)
    return np.concatenate([q & 0x0F, q >> 4], axis=2).reshape(-1, 8, 32)


def _deq_q4_k(b):
    d, dmin = _f16(b, 0), _f16(b, 2)
    sc, mn = _k_scales_mins(b[:, 4:16])
    q = _k_quads(b[:, 16:144]).astype(np.float32)
    return ((d * sc)[:, :, None] * q - (dmin * mn)[:, :, None]).reshape(-1, 256)


def _deq_q5_k(b):
    d, dmin = _f16(b, 0), _f16(b, 2)
    sc, mn = _k_scales_mins(b[:, 4:16])
    qh = b[:, 16:48]                                    # bit i of qh[l] is the 5th bit of sub-block i, value l
    high = (qh[:, None, :] >> np.arange(8, dtype=np.uint8)[None, :, None]) & 1
    q = (_k_quads(b[:, 48:176]) | (high << 4)).astype(np.float32)
    return ((d * sc)[:, :, None] * q - (dmin * mn)[:, :, None]).reshape(-1, 256)


def _deq_q6_k(b):
    ql, qh = b[:, 0:128], b[:, 128:192]
    sc = b[:, 192:208].view(np.int8).astype(np.float32)          # one scale per 16 values
    d = _f16(b, 208)
    out = np.empty((b.shape[0], 256), dtype=np.float32)
    for half in range(2):                                          # 128 values each
        l4 = ql[:, 64 * half:64 * half + 64]
        h = qh[:, 32 * half:32 * half + 32]
        parts = [(l4[:, :32] & 0x0F) | ((h & 3) << 4),
                 (l4[:, 32:] & 0x0F) | (((h >> 2) & 3) << 4),
                 (l4[:, :32] >> 4) | (((h >> 4) & 3) << 4),
                 (l4[:, 32:] >> 4) | (((h >> 6) & 3) << 4)]
        q = np.concatenate(parts, axis=1).astype(np.float32) - 32.0   # [n, 128]
        s = np.repeat(sc[:, 8 * half:8 * half + 8], 16, axis=1)      # [n, 128]
        out[:, 128 * half:128 * half + 128] = d * s * q
    return out


_DEQUANT = {"Q8_0": _deq_q8_0, "Q4_0": _deq_q4_0, "Q4_1": _deq_q4_1, "Q5_0": _deq_q5_0,
            "Q5_1": _deq_q5_1, "Q4_K": _deq_q4_k, "Q5_K": _deq_q5_k, "Q6_K": _deq_q6_k}


def type_name(type_id):
    t = GGML_TYPES.get(int(type_id))
    if t:
        return t[0]
    try:
        return gguf.GGMLQuantizationType(int(type_id)).name
    except ValueError:
        return f"type {int(type_id)}"


def dequantize(raw, type_id, n_elements, what="tensor"):
    """raw: the tensor's bytes (any uint8-viewable array); returns float32 [n_elements].
    Rows are whole blocks in GGML, so the flat byte stream is a sequence of blocks."""
    if int(type_id) not in GGML_TYPES:
        raise ConvertError(f"{what}: GGML type {type_name(type_id)} is not supported "
                           f"(supported: {', '.join(sorted(t[0] for t in GGML_TYPES.values()))})")
    name, block, nbytes = GGML_TYPES[int(type_id)]
    raw = np.ascontiguousarray(raw).view(np.uint8).reshape(-1)
    if n_elements % block or raw.size != n_elements // block * nbytes:
        raise ConvertError(f"{what}: {raw.size} bytes do not hold {n_elements} {name} values")
    if name == "F32":
        return raw.view("<f4").astype(np.float32)
    if name == "F16":
        return raw.view("<f2").astype(np.float32)
    if name == "BF16":
        return (raw.view("<u2").astype(np.uint32) << 16).view(np.float32)
    blocks = raw.reshape(-1, nbytes)
    out = np.empty((blocks.shape[0], block), dtype=np.float32)
    step = max(1, (1 << 22) // block)                    # bound the temporaries to ~16 MiB
    for i in range(0, blocks.shape[0], step):
        out[i:i + step] = _DEQUANT[name](blocks[i:i + step])
    return out.reshape(-1)


# ----------------------------------------------------------------------------------------------
# Q/K rows. llama.cpp's HF->GGUF converter reorders the rows of attn_q (per query head) and attn_k
# (per KV head): within a head of d rows, HF row j*d/2 + i (j = 0 first half, 1 second half) moves
# to row 2*i + j, so that GGML's RoPE, which rotates adjacent pairs (2i, 2i+1), rotates what HF's
# rotate_half rotates, (i, i + d/2). The inverse puts row 2*i + j back at j*d/2 + i.
# ----------------------------------------------------------------------------------------------
def unpermute_qk(w, n_head):
    """GGUF attn_q / attn_k rows [n_head * d, in] -> HF q_proj / k_proj rows."""
    rows = w.shape[0]
    if rows % n_head or (rows // n_head) % 2:
        raise ConvertError(f"{rows} rows are not {n_head} heads of an even size")
    d = rows // n_head
    return w.reshape(n_head, d // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


# ----------------------------------------------------------------------------------------------
# safetensors writer: 8-byte little-endian header length, the JSON header (dtype, shape,
# data_offsets per tensor, and __metadata__), padded with spaces to a multiple of 8, then the
# tensors' bytes back to back in header order.
# ----------------------------------------------------------------------------------------------
ST_DTYPES = {"f32": ("F32", 4), "bf16": ("BF16", 2), "f16": ("F16", 2)}


def encode(values, dtype, what):
    """float32 array -> little-endian bytes in dtype ('f32', 'bf16' round-to-nearest-even, 'f16')."""
    a = np.ascontiguousarray(values, dtype=np.float32)
    if dtype == "f32":
        return a.astype("<f4").tobytes()
    if dtype == "f16":
        with np.errstate(over="ignore"):
            h = a.astype("<f2")
        if not np.array_equal(np.isfinite(h), np.isfinite(a)):
            raise ConvertError(f"{what}: values beyond float16's range (max 65504); use --dtype bf16 or f32")
        return h.tobytes()
    if dtype == "bf16":
        u = a.view(np.uint32).astype(np.uint64)
        r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
        r = np.where(np.isnan(a), np.uint16(0x7FC0), r)        # keep NaN a NaN
        return r.astype("<u2").tobytes()
    raise ConvertError(f"unknown dtype {dtype!r}")


def write_safetensors(path, entries, dtype, metadata=None):
    """entries: [(name, shape, produce)] with produce() -> float32 array of that shape, called
    once, in order, while the file is written (one tensor in memory at a time)."""
    st_name, itemsize = ST_DTYPES[dtype]
    header, off = {}, 0
    for name, shape, _ in entries:
        n = int(np.prod(shape, dtype=np.int64)) * itemsize
        header[name] = {"dtype": st_name, "shape": [int(s) for s in shape], "data_offsets": [off, off + n]}
        off += n
    header["__metadata__"] = dict(metadata or {}, format="pt")
    hb = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hb += b" " * (-len(hb) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for name, shape, produce in entries:
            arr = produce()
            if tuple(arr.shape) != tuple(shape):
                raise ConvertError(f"{name}: produced shape {arr.shape}, expected {tuple(shape)}")
            data = encode(arr, dtype, name)
            begin, end = header[name]["data_offsets"]
            if len(data) != end - begin:
                raise ConvertError(f"{name}: {len(data)} bytes, header says {end - begin}")
            f.write(data)


# ----------------------------------------------------------------------------------------------
# GGUF metadata
# ----------------------------------------------------------------------------------------------
class Meta:
    """The GGUF's key/value pairs as Python values."""

    def __init__(self, reader):
        self.fields = reader.fields

    def has(self, key):
        return key in self.fields

    def get(self, key, default=None, required=False):
        if key not in self.fields:
            if required:
                raise ConvertError(f"GGUF key {key!r} is missing")
            return default
        f = self.fields[key]
        if f.types and f.types[0] == gguf.GGUFValueType.ARRAY:
            return list(f.contents())
        return f.contents()

    def int(self, key, default=None, required=False):
        v = self.get(key, default, required)
        if v is None:
            return None
        if isinstance(v, (list, str, bytes, bool)):
            raise ConvertError(f"GGUF key {key!r} must be one integer, found {v!r}"
                               + (" (per-layer values are not supported)" if isinstance(v, list) else ""))
        return int(v)

    def float(self, key, default=None, required=False):
        v = self.get(key, default, required)
        if v is None:
            return None
        if isinstance(v, (list, str, bytes)):
            raise ConvertError(f"GGUF key {key!r} must be a number, found {v!r}")
        return short_float(v)


def short_float(v):
    """The shortest decimal that reads back as the same float32 (GGUF stores float32: 1e-05, not
    9.999999747378752e-06)."""
    return float(str(np.float32(v)))


# The llama.* keys this converter reads (refusing values it cannot represent); any other llama.*
# key is refused, since it may ask for math that a plain LlamaForCausalLM does not do.
LLAMA_KEYS_READ = {
    "context_length", "embedding_length", "block_count", "feed_forward_length",
    "attention.head_count", "attention.head_count_kv", "attention.layer_norm_rms_epsilon",
    "attention.key_length", "attention.value_length", "rope.freq_base", "rope.dimension_count",
    "rope.scaling.type", "rope.scaling.factor", "rope.scale_linear",
    "rope.scaling.original_context_length", "rope.scaling.finetuned", "vocab_size",
    "expert_count", "expert_used_count",
}


def model_config(meta, tensors):
    arch = meta.get("general.architecture", required=True)
    if arch != "llama":
        raise ConvertError(f"general.architecture is {arch!r}; only 'llama' is supported")
    if meta.int("split.count", 1) != 1:
        raise ConvertError("split GGUF files (split.count > 1) are not supported; merge them first")
    for key in meta.fields:
        if key.startswith("llama.") and key[len("llama."):] not in LLAMA_KEYS_READ:
            raise ConvertError(f"GGUF key {key!r} is not supported (it may change the model's math)")
    k = lambda s: "llama." + s  # noqa: E731
    hidden = meta.int(k("embedding_length"), required=True)
    layers = meta.int(k("block_count"), required=True)
    ffn = meta.int(k("feed_forward_length"), required=True)
    n_head = meta.int(k("attention.head_count"), required=True)
    n_kv = meta.int(k("attention.head_count_kv"), n_head)
    if n_head <= 0 or n_kv <= 0 or n_head % n_kv:
        raise ConvertError(f"head counts {n_head} / {n_kv}: query heads must be a multiple of KV heads")
    if meta.int(k("expert_count"), 0) or meta.int(k("expert_used_count"), 0):
        raise ConvertError("mixture-of-experts LLaMA (llama.expert_count) is not supported")
    head_dim = meta.int(k("attention.key_length"), None)
    if head_dim is None:
        if hidden % n_head:
            raise ConvertError(f"embedding_length {hidden} is not a multiple of head_count {n_head}")
        head_dim = hidden // n_head
    v_dim = meta.int(k("attention.value_length"), head_dim)
    if v_dim != head_dim:
        raise ConvertError(f"attention.value_length {v_dim} differs from key_length {head_dim}")
    rot = meta.int(k("rope.dimension_count"), head_dim)
    if rot != head_dim:
        raise ConvertError(f"rope.dimension_count {rot} differs from the head size {head_dim} "
                           "(partial rotary embeddings are not supported)")
    rope = {"rope_theta": meta.float(k("rope.freq_base"), 10000.0), "rope_type": "default"}
    scaling = meta.get(k("rope.scaling.type"), "none")
    factor = meta.float(k("rope.scaling.factor"), None)
    linear = meta.float(k("rope.scale_linear"), None)
    if scaling == "linear" or (scaling == "none" and linear not in (None, 1.0)):
        f = factor if scaling == "linear" else linear
        if not f or f <= 0:
            raise ConvertError("linear rope scaling without a positive factor")
        if f != 1.0:
            rope.update(rope_type="linear", factor=f)
    elif scaling != "none":
        raise ConvertError(f"llama.rope.scaling.type {scaling!r} is not supported (supported: none, linear)")
    meta.get(k("rope.scaling.original_context_length"))
    meta.get(k("rope.scaling.finetuned"))
    if "rope_freqs.weight" in tensors:
        raise ConvertError("tensor rope_freqs.weight (per-frequency RoPE factors, as llama3 rope "
                           "scaling is stored in GGUF) is not supported")
    embd = tensors.get("token_embd.weight")
    if embd is None:
        raise ConvertError("tensor token_embd.weight is missing")
    if int(embd.shape[0]) != hidden:
        raise ConvertError(f"token_embd.weight has rows of {int(embd.shape[0])}, embedding_length is {hidden}")
    vocab = int(embd.shape[1])
    gv = meta.int(k("vocab_size"), vocab)
    if gv != vocab:
        raise ConvertError(f"llama.vocab_size {gv} differs from token_embd.weight's {vocab} rows")
    return {
        "hidden_size": hidden, "intermediate_size": ffn, "num_hidden_layers": layers,
        "num_attention_heads": n_head, "num_key_value_heads": n_kv, "head_dim": head_dim,
        "max_position_embeddings": meta.int(k("context_length"), required=True),
        "rms_norm_eps": meta.float(k("attention.layer_norm_rms_epsilon"), required=True),
        "vocab_size": vocab, "rope_parameters": rope,
        "tie_word_embeddings": "output.weight" not in tensors,
    }


# ----------------------------------------------------------------------------------------------
# tensors: GGUF names -> transformers' LlamaForCausalLM names, with the expected HF shapes
# ----------------------------------------------------------------------------------------------
LAYER_TENSORS = {  # GGUF suffix: (HF suffix, shape from the config)
    "attn_norm.weight": ("input_layernorm.weight", lambda c: [c["hidden_size"]]),
    "attn_q.weight": ("self_attn.q_proj.weight",
                      lambda c: [c["num_attention_heads"] * c["head_dim"], c["hidden_size"]]),
    "attn_k.weight": ("self_attn.k_proj.weight",
                      lambda c: [c["num_key_value_heads"] * c["head_dim"], c["hidden_size"]]),
    "attn_v.weight": ("self_attn.v_proj.weight",
                      lambda c: [c["num_key_value_heads"] * c["head_dim"], c["hidden_size"]]),
    "attn_output.weight": ("self_attn.o_proj.weight",
                           lambda c: [c["hidden_size"], c["num_attention_heads"] * c["head_dim"]]),
    "ffn_norm.weight": ("post_attention_layernorm.weight", lambda c: [c["hidden_size"]]),
    "ffn_gate.weight": ("mlp.gate_proj.weight", lambda c: [c["intermediate_size"], c["hidden_size"]]),
    "ffn_up.weight": ("mlp.up_proj.weight", lambda c: [c["intermediate_size"], c["hidden_size"]]),
    "ffn_down.weight": ("mlp.down_proj.weight", lambda c: [c["hidden_size"], c["intermediate_size"]]),
}


def tensor_plan(tensors, cfg):
    """[(hf name, hf shape, gguf tensor, rows permuted over n heads or None)] in HF order; every
    GGUF tensor must be used."""
    plan, used = [], set()

    def add(gname, hname, shape, heads=None):
        t = tensors.get(gname)
        if t is None:
            raise ConvertError(f"tensor {gname} is missing")
        hf_shape = [int(s) for s in reversed([int(x) for x in t.shape])]   # GGUF ne[0] is the fastest
        if hf_shape != list(shape):
            raise ConvertError(f"tensor {gname}: shape {hf_shape} (as [out, in]), expected {list(shape)}")
        plan.append((hname, shape, t, heads))
        used.add(gname)

    add("token_embd.weight", "model.embed_tokens.weight", [cfg["vocab_size"], cfg["hidden_size"]])
    for i in range(cfg["num_hidden_layers"]):
        for gs, (hs, shape) in LAYER_TENSORS.items():
            heads = {"attn_q.weight": cfg["num_attention_heads"],
                     "attn_k.weight": cfg["num_key_value_heads"]}.get(gs)
            add(f"blk.{i}.{gs}", f"model.layers.{i}.{hs}", shape(cfg), heads)
    add("output_norm.weight", "model.norm.weight", [cfg["hidden_size"]])
    if not cfg["tie_word_embeddings"]:
        add("output.weight", "lm_head.weight", [cfg["vocab_size"], cfg["hidden_size"]])
    extra = sorted(set(tensors) - used)
    if extra:
        raise ConvertError(f"tensor {extra[0]} is not part of a LLaMA model this converter knows"
                           + (f" ({len(extra)} such tensors)" if len(extra) > 1 else ""))
    return plan


def producer(t, shape, heads):
    def produce():
        name = t.name
        w = dequantize(t.data, t.tensor_type, int(t.n_elements), f"tensor {name}").reshape(shape)
        if heads is not None:
            w = unpermute_qk(w, heads)
        return w
    return produce


# ----------------------------------------------------------------------------------------------
# tokenizer
# ----------------------------------------------------------------------------------------------
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

# The regex of Llama 3's tokenizer.json Split pre-tokenizer (llama.cpp pre type 'llama-bpe').
LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def byte_level(use_regex):
    return {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": use_regex}


def pre_tokenizer_for(pre):
    """tokenizer.json pre_tokenizer and BPE ignore_merges for a GGUF tokenizer.ggml.pre."""
    if pre == "smollm":     # digits one by one, then GPT-2's byte-level regex split
        return {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": True}, byte_level(True)]}, False
    if pre == "gpt2":
        return byte_level(True), False
    if pre == "llama-bpe":  # Llama 3
        return {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": LLAMA3_REGEX}, "behavior": "Isolated", "invert": False},
            byte_level(False)]}, True
    if pre in (None, "default"):
        raise ConvertError(
            f"tokenizer.ggml.pre is {pre!r}: the GGUF does not say how text is split before BPE "
            "(llama.cpp then uses a generic split of its own); name the original with --pre-tokenizer")
    raise ConvertError(f"tokenizer.ggml.pre {pre!r} is not supported (supported: {', '.join(PRE_TYPES)})")


PRE_TYPES = ("smollm", "gpt2", "llama-bpe")


def special_template(tokens, add_bos, add_eos, bos, eos):
    """TemplateProcessing that adds BOS and/or EOS around each sequence."""
    def piece(seq, type_id):
        out = []
        if add_bos:
            out.append({"SpecialToken": {"id": tokens[bos], "type_id": type_id}})
        out.append({"Sequence": {"id": seq, "type_id": type_id}})
        if add_eos:
            out.append({"SpecialToken": {"id": tokens[eos], "type_id": type_id}})
        return out
    specials = {}
    for flag, tid in ((add_bos, bos), (add_eos, eos)):
        if flag:
            specials[tokens[tid]] = {"id": tokens[tid], "ids": [tid], "tokens": [tokens[tid]]}
    return {"type": "TemplateProcessing", "single": piece("A", 0), "pair": piece("A", 0) + piece("B", 1),
            "special_tokens": specials}


def bpe_model(vocab, merges, **kw):
    m = {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
         "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
         "vocab": vocab, "merges": merges}
    m.update(kw)
    return m


def gpt2_pipeline(meta, vocab, pre_override):
    """Byte-level BPE (tokenizer.ggml.model 'gpt2'): the GGUF's merges, as-is."""
    if meta.get("tokenizer.ggml.add_space_prefix", False):
        raise ConvertError("tokenizer.ggml.add_space_prefix true is not supported for a byte-level BPE tokenizer")
    pre_tok, ignore_merges = pre_tokenizer_for(pre_override or meta.get("tokenizer.ggml.pre"))
    merges = []
    for m in meta.get("tokenizer.ggml.merges", required=True):
        parts = m.split(" ")
        if len(parts) != 2 or not parts[0] or not parts[1]:
            raise ConvertError(f"merge {m!r} is not two tokens separated by one space")
        a, b = parts
        for piece in (a, b, a + b):
            if piece not in vocab:
                raise ConvertError(f"merge {m!r}: {piece!r} is not in the vocabulary")
        merges.append(m)
    return {
        "normalizer": None, "pre_tokenizer": pre_tok,
        "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "model": bpe_model(vocab, merges, ignore_merges=ignore_merges),
    }, {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": True}


SPM_SPACE = "\u2581"   # sentencepiece's visible space


def spm_merges(tokens, types, scores):
    """BPE merges equivalent to a sentencepiece BPE model: sentencepiece repeatedly joins the
    adjacent pair whose concatenation is the highest-scoring normal piece, so every split of a
    normal piece into two normal pieces is a merge, ranked by the joined piece's score (highest
    first; then by ids, for a deterministic order)."""
    normal = {t: i for i, (t, ty) in enumerate(zip(tokens, types)) if int(ty) == NORMAL}
    found = []
    for piece, i in normal.items():
        for k in range(1, len(piece)):
            a, b = piece[:k], piece[k:]
            if a in normal and b in normal:
                found.append((-float(scores[i]), i, normal[a], normal[b], a, b))
    found.sort(key=lambda m: m[:4])
    for _, _, _, _, a, b in found:
        if " " in a or " " in b:
            raise ConvertError(f"piece {a + b!r} contains a space; it cannot be written as a merge")
    return [f"{a} {b}" for _, _, _, _, a, b in found]


def spm_pipeline(meta, vocab, tokens, types, unk):
    """Sentencepiece BPE (tokenizer.ggml.model 'llama'), as Hugging Face writes LLaMA-2-style
    tokenizers: spaces become U+2581 (with one prepended when add_space_prefix), BPE over the whole
    text with byte fallback to <0xXX> pieces, merges derived from the scores."""
    scores = meta.get("tokenizer.ggml.scores", required=True)
    if len(scores) != len(tokens):
        raise ConvertError(f"tokenizer.ggml.scores has {len(scores)} entries for {len(tokens)} tokens")
    if meta.get("tokenizer.ggml.merges") is not None:
        raise ConvertError("tokenizer.ggml.merges in a sentencepiece ('llama') vocabulary is not supported")
    if unk is None:
        raise ConvertError("a sentencepiece vocabulary needs tokenizer.ggml.unknown_token_id")
    for i, (t, ty) in enumerate(zip(tokens, types)):
        if int(ty) == BYTE and not (len(t) == 6 and t.startswith("<0x") and t.endswith(">")):
            raise ConvertError(f"byte token {i} is {t!r}, not <0xXX>")
    prefix = bool(meta.get("tokenizer.ggml.add_space_prefix", True))   # llama.cpp's default for SPM
    replace = {"type": "Replace", "pattern": {"String": " "}, "content": SPM_SPACE}
    normalizer = ({"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": SPM_SPACE}, replace]}
                  if prefix else replace)
    decoders = [{"type": "Replace", "pattern": {"String": SPM_SPACE}, "content": " "},
                {"type": "ByteFallback"}, {"type": "Fuse"}]
    if prefix:
        decoders.append({"type": "Strip", "content": " ", "start": 1, "stop": 0})
    return {
        "normalizer": normalizer, "pre_tokenizer": None,
        "decoder": {"type": "Sequence", "decoders": decoders},
        "model": bpe_model(vocab, spm_merges(tokens, types, scores), unk_token=tokens[unk],
                           fuse_unk=True, byte_fallback=True),
    }, None


def tokenizer_files(meta, cfg, pre_override=None):
    """(tokenizer.json, tokenizer_config.json, special_tokens_map.json, token ids, chat template)
    from the GGUF's tokenizer.* keys."""
    model = meta.get("tokenizer.ggml.model", required=True)
    if model not in ("gpt2", "llama"):
        raise ConvertError(f"tokenizer.ggml.model {model!r} is not supported "
                           "(supported: gpt2 = byte-level BPE, llama = sentencepiece BPE)")
    tokens = meta.get("tokenizer.ggml.tokens", required=True)
    n = len(tokens)
    types = meta.get("tokenizer.ggml.token_type", [NORMAL] * n)
    if len(types) != n:
        raise ConvertError(f"tokenizer.ggml.token_type has {len(types)} entries for {n} tokens")
    if n > cfg["vocab_size"]:
        raise ConvertError(f"{n} tokens but the embedding has only {cfg['vocab_size']} rows")
    for key in ("tokenizer.ggml.precompiled_charsmap", "tokenizer.ggml.remove_extra_whitespaces",
                "tokenizer.ggml.add_sep_token"):
        if meta.get(key, False):
            raise ConvertError(f"GGUF key {key!r} is not supported")
    vocab = {}
    for i, t in enumerate(tokens):
        if t in vocab:
            raise ConvertError(f"token {t!r} appears twice in tokenizer.ggml.tokens (ids {vocab[t]} and {i})")
        vocab[t] = i

    def tid(key):
        v = meta.int(key, None)
        if v is not None and not 0 <= v < n:
            raise ConvertError(f"{key} {v} is outside the vocabulary of {n} tokens")
        return v
    bos, eos = tid("tokenizer.ggml.bos_token_id"), tid("tokenizer.ggml.eos_token_id")
    unk, pad = tid("tokenizer.ggml.unknown_token_id"), tid("tokenizer.ggml.padding_token_id")
    eot, eom = tid("tokenizer.ggml.eot_token_id"), tid("tokenizer.ggml.eom_token_id")
    # llama.cpp adds BOS by default for sentencepiece vocabularies, not for byte-level ones.
    add_bos = bool(meta.get("tokenizer.ggml.add_bos_token", model == "llama"))
    add_eos = bool(meta.get("tokenizer.ggml.add_eos_token", False))
    if (add_bos and bos is None) or (add_eos and eos is None):
        raise ConvertError("add_bos_token/add_eos_token is set but the token id is missing")

    added = []
    for i, (t, ty) in enumerate(zip(tokens, types)):
        ty = int(ty)
        if ty in (CONTROL, UNKNOWN, USER_DEFINED):
            special = ty != USER_DEFINED
            added.append({"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": model == "gpt2" and not special, "special": special})
        elif ty not in (NORMAL, UNUSED, BYTE):
            raise ConvertError(f"token {i} {t!r} has unknown token type {ty}")
    if model == "gpt2":
        pipeline, post = gpt2_pipeline(meta, vocab, pre_override)
    elif pre_override:
        raise ConvertError("--pre-tokenizer applies to byte-level BPE ('gpt2') vocabularies, "
                           "this one is sentencepiece ('llama')")
    else:
        pipeline, post = spm_pipeline(meta, vocab, tokens, types, unk)
    if add_bos or add_eos:
        post = special_template(tokens, add_bos, add_eos, bos, eos)
    tok_json = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
                "normalizer": pipeline["normalizer"], "pre_tokenizer": pipeline["pre_tokenizer"],
                "post_processor": post, "decoder": pipeline["decoder"], "model": pipeline["model"]}

    named = {"bos_token": bos, "eos_token": eos, "unk_token": unk, "pad_token": pad}
    special_map = {k: tokens[v] for k, v in named.items() if v is not None}
    others = [a["content"] for a in added if a["special"] and a["id"] not in named.values()]
    if others:
        special_map["additional_special_tokens"] = others
    tok_cfg = {"tokenizer_class": "PreTrainedTokenizerFast", "add_bos_token": add_bos,
               "add_eos_token": add_eos, "clean_up_tokenization_spaces": False,
               "model_max_length": cfg["max_position_embeddings"]}
    tok_cfg.update({k: v for k, v in special_map.items() if k != "additional_special_tokens"})
    template = meta.get("tokenizer.chat_template")
    if template is not None:
        tok_cfg["chat_template"] = template
    ids = {"bos": bos, "eos": eos, "pad": pad, "eot": eot, "eom": eom}
    return tok_json, tok_cfg, special_map, ids, template


def named_templates(meta):
    """{name: template} from tokenizer.chat_templates / tokenizer.chat_template.<name>."""
    out = {}
    for name in meta.get("tokenizer.chat_templates", []) or []:
        t = meta.get(f"tokenizer.chat_template.{name}")
        if t is None:
            raise ConvertError(f"tokenizer.chat_templates names {name!r} but tokenizer.chat_template.{name} is missing")
        if not name or "/" in name or name.startswith("."):
            raise ConvertError(f"chat template name {name!r} is not a plain file name")
        out[name] = t
    return out


SAMPLING_KEYS = {  # general.sampling.* -> generation_config.json
    "general.sampling.temp": "temperature", "general.sampling.top_k": "top_k",
    "general.sampling.top_p": "top_p", "general.sampling.min_p": "min_p",
    "general.sampling.penalty_repeat": "repetition_penalty",
}


def generation_config(meta, ids):
    g = {}
    if ids["bos"] is not None:
        g["bos_token_id"] = ids["bos"]
    eos = [i for i in (ids["eos"], ids["eot"], ids["eom"]) if i is not None]
    eos = list(dict.fromkeys(eos))
    if eos:
        g["eos_token_id"] = eos[0] if len(eos) == 1 else eos
    if ids["pad"] is not None:
        g["pad_token_id"] = ids["pad"]
    for key, hf in SAMPLING_KEYS.items():
        if meta.has(key):
            v = meta.get(key)
            g[hf] = int(v) if hf == "top_k" else short_float(v)
    if any(hf in g for hf in SAMPLING_KEYS.values()):
        g["do_sample"] = True
    for key in meta.fields:
        if key.startswith("general.sampling.") and key not in SAMPLING_KEYS:
            log(f"note: {key} has no generation_config.json equivalent; left out")
    return g


# ----------------------------------------------------------------------------------------------
# the whole conversion
# ----------------------------------------------------------------------------------------------
TORCH_DTYPE = {"f32": "float32", "bf16": "bfloat16", "f16": "float16"}


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")


def convert(gguf_path, out_dir, dtype="f32", pre_override=None, force=False):
    t0 = time.time()
    if not os.path.isfile(gguf_path):
        raise ConvertError(f"{gguf_path}: no such file")
    try:
        reader = gguf.GGUFReader(gguf_path)
    except Exception as e:  # the gguf package raises ValueError and friends on a malformed file
        raise ConvertError(f"{gguf_path}: not a readable GGUF file: {e}") from e
    if reader.endianess != gguf.GGUFEndian.LITTLE:
        raise ConvertError(f"{gguf_path}: big-endian GGUF files are not supported")
    meta = Meta(reader)
    tensors = {t.name: t for t in reader.tensors}
    cfg = model_config(meta, tensors)
    plan = tensor_plan(tensors, cfg)
    tok_json, tok_cfg, special_map, ids, template = tokenizer_files(meta, cfg, pre_override)
    templates = named_templates(meta)
    qtypes = sorted({type_name(t.tensor_type) for _, _, t, _ in plan})
    for _, _, t, _ in plan:
        if int(t.tensor_type) not in GGML_TYPES:
            raise ConvertError(f"tensor {t.name}: GGML type {type_name(t.tensor_type)} is not supported "
                               f"(supported: {', '.join(sorted(v[0] for v in GGML_TYPES.values()))})")
    log(f"{os.path.basename(gguf_path)}: llama, {cfg['num_hidden_layers']} layers, hidden {cfg['hidden_size']}, "
        f"{cfg['num_attention_heads']}/{cfg['num_key_value_heads']} heads, vocab {cfg['vocab_size']}, "
        f"tensor types {', '.join(qtypes)} -> {dtype}")

    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        **{k: cfg[k] for k in ("hidden_size", "intermediate_size", "num_hidden_layers",
                               "num_attention_heads", "num_key_value_heads", "head_dim",
                               "max_position_embeddings", "rms_norm_eps", "vocab_size",
                               "tie_word_embeddings", "rope_parameters")},
        "hidden_act": "silu", "attention_bias": False, "attention_dropout": 0.0, "mlp_bias": False,
        "use_cache": True,
    }
    for key, name in (("bos_token_id", "bos"), ("eos_token_id", "eos"), ("pad_token_id", "pad")):
        if ids[name] is not None:
            config[key] = ids[name]
    config["dtype"] = config["torch_dtype"] = TORCH_DTYPE[dtype]

    out_dir = os.path.abspath(out_dir)
    if os.path.exists(out_dir) and not force:
        raise ConvertError(f"{out_dir} exists; pass --force to replace it")
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{os.path.basename(out_dir)}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        write_json(os.path.join(tmp, "config.json"), config)
        write_json(os.path.join(tmp, "generation_config.json"), generation_config(meta, ids))
        write_json(os.path.join(tmp, "tokenizer.json"), tok_json)
        write_json(os.path.join(tmp, "tokenizer_config.json"), tok_cfg)
        write_json(os.path.join(tmp, "special_tokens_map.json"), special_map)
        if template is not None:
            with open(os.path.join(tmp, "chat_template.jinja"), "w", encoding="utf-8") as f:
                f.write(template)
        if templates:
            os.makedirs(os.path.join(tmp, "additional_chat_templates"))
            for name, t in templates.items():
                with open(os.path.join(tmp, "additional_chat_templates", name + ".jinja"), "w",
                          encoding="utf-8") as f:
                    f.write(t)
        done = [0]

        def entry(hname, shape, t, heads):
            inner = producer(t, shape, heads)

            def produce():
                w = inner()
                done[0] += 1
                if done[0] % max(1, len(plan) // 8) == 0 or done[0] in (1, len(plan)):
                    log(f"  [{done[0]}/{len(plan)}] {hname} ({type_name(t.tensor_type)}) "
                        f"{time.time() - t0:.1f}s")
                return w
            return (hname, shape, produce)
        write_safetensors(os.path.join(tmp, "model.safetensors"),
                          [entry(*p) for p in plan], dtype,
                          metadata={"converted_from": os.path.basename(gguf_path),
                                    "converter": f"para-serve tools/convert_gguf.py {VERSION}"})
        if os.path.exists(out_dir):
            old = tmp + ".old"
            os.rename(out_dir, old)
            os.rename(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"wrote {out_dir} in {time.time() - t0:.1f}s")
    return out_dir


def main(argv=None):
    ap = argparse.ArgumentParser(
        prog="convert_gguf.py",
        description="Convert a LLaMA-architecture GGUF file into a Hugging Face model directory "
                    "(model.safetensors, config.json, generation_config.json, tokenizer.json, "
                    "tokenizer_config.json, chat_template.jinja, special_tokens_map.json). "
                    "Anything the converter cannot represent exactly (another architecture, an "
                    "unknown tensor, quantization type, RoPE scaling or pre-tokenizer) is an error.",
        epilog="Exit status: 0 on success, 1 on a refused or malformed GGUF, 2 on bad arguments.")
    ap.add_argument("gguf", help="the .gguf file to convert")
    ap.add_argument("out_dir", help="the model directory to write (must not exist unless --force)")
    ap.add_argument("--dtype", choices=sorted(ST_DTYPES), default="f32",
                    help="dtype of the tensors in model.safetensors: f32 (default, exact for every "
                         "supported GGUF type), bf16 (rounded to nearest even) or f16 (an error if a "
                         "value overflows)")
    ap.add_argument("--pre-tokenizer", choices=PRE_TYPES, default=None,
                    help="use this pre-tokenizer instead of the GGUF's tokenizer.ggml.pre (needed when "
                         "the GGUF says 'default' or nothing)")
    ap.add_argument("--force", action="store_true", help="replace out_dir if it exists")
    ap.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    ap.add_argument("--version", action="version", version=f"%(prog)s {VERSION}")
    args = ap.parse_args(argv)
    global QUIET
    QUIET = args.quiet
    try:
        convert(args.gguf, args.out_dir, args.dtype, args.pre_tokenizer, args.force)
    except ConvertError as e:
        print(f"convert_gguf.py: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"convert_gguf.py: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
