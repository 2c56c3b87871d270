"""PARA (Prompt-Aware Representation Adjustment) as a PyTorch module around a Hugging Face
LLaMA-family causal LM, and its export to / import from the adapter format the engine serves.

The math is the project's contract (docs/para-adapter-format.md), for every decoder layer l:

    h             = residual stream entering layer l (before input_layernorm), prompt rows only
    p             = pool(h)        "last": the final prompt row; "mean": the mean of the prompt rows
    l             = act(p @ W_down^T) @ W_up^T + b_up
    l_q, l_v, l_u = split(l, [n_heads*head_dim, n_kv_heads*head_dim, intermediate_size])
    q_proj(x) *= l_q (before RoPE);  v_proj(x) *= l_v;  up_proj(x') *= l_u

for every row of the request, prompt and response alike. The vectors come from the prompt only:
a forward call given `prompt_mask` computes them (from the rows the mask marks) and keeps them;
a call without it (a decode step on a KV cache) reuses the kept ones.

Ownership: ParaModel owns its generators; the wrapped base model is shared (frozen, never
modified: the scaling is applied by forward hooks). Not thread-safe: the kept vectors are state.
"""
import json
import math
import os

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

TARGET_MODULES = ["q_proj", "v_proj", "up_proj"]
POOLERS = ("last", "mean")
ACTIVATIONS = {
    "gelu": lambda x: F.gelu(x),
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
    "silu": F.silu,
}
TENSOR = "base_model.model.model.layers.{i}.para.{part}"
DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}


def para_sizes(config):
    """(len l_q, len l_v, len l_u) for a transformers LlamaConfig."""
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return (config.num_attention_heads * head_dim, config.num_key_value_heads * head_dim,
            config.intermediate_size)


def para_param_count(config, r):
    """Trainable parameters of a PARA adapter of rank r on a model with this config."""
    d_out = sum(para_sizes(config))
    return config.num_hidden_layers * (r * config.hidden_size + d_out * r + d_out)


class ParaGenerator(nn.Module):
    """One layer's vector generator: act(p @ W_down^T) @ W_up^T + b_up, initialised to the
    identity (W_up = 0, b_up = 1; W_down as nn.Linear initialises it)."""

    def __init__(self, hidden, d_out, r, activation):
        super().__init__()
        self.down = nn.Linear(hidden, r, bias=False)
        self.up = nn.Linear(r, d_out, bias=True)
        self.act = ACTIVATIONS[activation]
        nn.init.zeros_(self.up.weight)
        nn.init.ones_(self.up.bias)

    def forward(self, p):
        return self.up(self.act(self.down(p)))


def pool(h, prompt_mask, pooler):
    """h [B, T, hidden], prompt_mask [B, T] (1 on each row's prompt tokens, contiguous) ->
    [B, hidden]."""
    m = prompt_mask.to(h.dtype)
    if pooler == "mean":
        return (h * m[..., None]).sum(1) / m.sum(1, keepdim=True)
    pos = torch.arange(h.shape[1], device=h.device)
    last = (prompt_mask.long() * (pos + 1)).argmax(dim=1)      # index of the final prompt token
    return h[torch.arange(h.shape[0], device=h.device), last]


class ParaModel(nn.Module):
    """A base LlamaForCausalLM (frozen) plus one ParaGenerator per decoder layer.

    forward(input_ids, prompt_mask=..., **hf_kwargs): with prompt_mask, computes each layer's
    vectors from that layer's input on the masked rows and keeps them; without it, reuses the kept
    ones (KV-cache decode steps). Other keyword arguments go to the base model.
    """

    def __init__(self, base, r=12, pooler="last", activation="gelu"):
        super().__init__()
        if pooler not in POOLERS:
            raise ValueError(f"pooler must be one of {POOLERS}, got {pooler!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        self.base = base
        self.r, self.pooler, self.activation = r, pooler, activation
        cfg = base.config
        self.sizes = para_sizes(cfg)
        self.generators = nn.ModuleList(
            ParaGenerator(cfg.hidden_size, sum(self.sizes), r, activation) for _ in range(cfg.num_hidden_layers))
        for p in base.parameters():
            p.requires_grad_(False)
        self._vectors = [None] * cfg.num_hidden_layers
        self._prompt_mask = None
        self._hooks = []
        for i, layer in enumerate(self._layers()):
            self._hooks.append(layer.register_forward_pre_hook(self._layer_pre_hook(i), with_kwargs=True))
            for k, mod in enumerate((layer.self_attn.q_proj, layer.self_attn.v_proj, layer.mlp.up_proj)):
                self._hooks.append(mod.register_forward_hook(self._scale_hook(i, k)))

    def _layers(self):
        return self.base.model.layers

    def _layer_pre_hook(self, i):
        def hook(_module, args, kwargs):
            if self._prompt_mask is None:
                if self._vectors[i] is None:
                    raise RuntimeError("PARA: no vectors yet; the first call must pass prompt_mask")
                return None
            h = args[0] if args else kwargs["hidden_states"]
            lvec = self.generators[i](pool(h, self._prompt_mask, self.pooler))
            self._vectors[i] = torch.split(lvec, list(self.sizes), dim=-1)
            return None
        return hook

    def _scale_hook(self, i, k):
        def hook(_module, _inputs, output):
            return output * self._vectors[i][k][:, None, :].to(output.dtype)
        return hook

    def forward(self, input_ids, prompt_mask=None, **kwargs):
        self._prompt_mask = prompt_mask
        try:
            return self.base(input_ids=input_ids, **kwargs)
        finally:
            self._prompt_mask = None

    def reset_vectors(self):
        self._vectors = [None] * len(self._vectors)

    def trainable_parameters(self):
        return list(self.generators.parameters())

    # ------------------------------------------------------------------ files
    def adapter_config(self, base_name="informational only"):
        return {"peft_type": "PARA", "base_model_name_or_path": base_name, "r": self.r,
                "pooler": self.pooler, "activation": self.activation, "target_modules": list(TARGET_MODULES)}

    def state_tensors(self, dtype="F32"):
        """{tensor name: tensor} in the adapter format, in dtype (F32, F16 or BF16)."""
        out = {}
        for i, g in enumerate(self.generators):
            for part, t in (("down.weight", g.down.weight), ("up.weight", g.up.weight), ("up.bias", g.up.bias)):
                out[TENSOR.format(i=i, part=part)] = t.detach().to(DTYPES[dtype]).contiguous().cpu()
        return out

    def save_adapter(self, out_dir, dtype="F32", base_name="informational only", extra_config=None):
        """Writes adapter_config.json + adapter_model.safetensors into out_dir."""
        os.makedirs(out_dir, exist_ok=True)
        cfg = self.adapter_config(base_name)
        cfg.update(extra_config or {})
        with open(os.path.join(out_dir, "adapter_config.json"), "w") as f:
            json.dump(cfg, f, indent=2)
            f.write("\n")
        tensors = self.state_tensors(dtype)
        for name, t in tensors.items():
            if not torch.isfinite(t.float()).all():
                raise ValueError(f"{name} has non-finite values (in {dtype})")
        save_file(tensors, os.path.join(out_dir, "adapter_model.safetensors"))

    def load_adapter_weights(self, adapter_dir):
        """Loads the tensors of an adapter directory (same r; values upcast to the module's dtype)."""
        t = load_file(os.path.join(adapter_dir, "adapter_model.safetensors"))
        want = set(self.state_tensors())
        if set(t) != want:
            raise ValueError(f"{adapter_dir}: tensors differ from the model's: missing "
                             f"{sorted(want - set(t))[:3]}, unexpected {sorted(set(t) - want)[:3]}")
        with torch.no_grad():
            for i, g in enumerate(self.generators):
                for part, p in (("down.weight", g.down.weight), ("up.weight", g.up.weight), ("up.bias", g.up.bias)):
                    src = t[TENSOR.format(i=i, part=part)]
                    if src.shape != p.shape:
                        raise ValueError(f"{adapter_dir}: {TENSOR.format(i=i, part=part)} has shape "
                                         f"{list(src.shape)}, expected {list(p.shape)}")
                    p.copy_(src.to(p.dtype))

    @classmethod
    def from_adapter(cls, base, adapter_dir):
        with open(os.path.join(adapter_dir, "adapter_config.json")) as f:
            c = json.load(f)
        if c.get("peft_type") != "PARA":
            raise ValueError(f"{adapter_dir}: peft_type must be 'PARA', got {c.get('peft_type')!r}")
        if c.get("target_modules", TARGET_MODULES) != TARGET_MODULES:
            raise ValueError(f"{adapter_dir}: target_modules must be {TARGET_MODULES}")
        m = cls(base, r=c["r"], pooler=c.get("pooler", "last"), activation=c.get("activation", "gelu"))
        m.load_adapter_weights(adapter_dir)
        return m

    # ------------------------------------------------------------------ training helpers
    @torch.no_grad()
    def calibrate_down(self, input_ids, prompt_mask, attention_mask=None, target_std=1.0):
        """Rescales each W_down so that W_down @ p has standard deviation target_std on these
        prompts (the residual stream's scale grows with depth; this keeps every layer's generator
        in the activation's useful range). The identity init is untouched (W_up stays 0), so the
        model's outputs do not change."""
        pooled = []

        def grab(i):
            def hook(_m, args, kwargs):
                h = args[0] if args else kwargs["hidden_states"]
                pooled.append((i, pool(h, prompt_mask, self.pooler)))
            return hook
        hooks = [layer.register_forward_pre_hook(grab(i), with_kwargs=True) for i, layer in enumerate(self._layers())]
        try:
            self(input_ids, prompt_mask=prompt_mask, attention_mask=attention_mask)
        finally:
            for h in hooks:
                h.remove()
        for i, p in pooled:
            z = self.generators[i].down(p)
            std = float(z.std())
            if std > 0 and math.isfinite(std):
                self.generators[i].down.weight.mul_(target_std / std)
