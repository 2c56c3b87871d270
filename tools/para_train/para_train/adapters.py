"""Loading the base model and putting a PARA or a LoRA adapter on it, behind one interface:

    ad = make_adapter(base, "para" | "lora", r=..., ...)    # fresh (PARA: identity init)
    ad = load_adapter(base, adapter_dir)                     # from the files the engine serves
    out = ad(input_ids, attention_mask=..., prompt_mask=...)  # prompt_mask: PARA prefill/training
    ad.save(out_dir, dtype)                                  # the engine's format (PEFT's for LoRA)

Ownership: an Adapter owns its trainable parameters; the base model is frozen and may be shared
by one adapter at a time (PEFT injects its layers into the base model it wraps).
"""
import json
import os

import torch
from transformers import AutoTokenizer, LlamaForCausalLM

from .para import ParaModel, para_param_count

LORA_TARGETS = ["q_proj", "v_proj", "up_proj"]


def load_base(model_dir, dtype=torch.float32):
    """A LlamaForCausalLM in eval mode with eager attention (exact masking of padded rows), and
    its tokenizer (None when the directory has none)."""
    model = LlamaForCausalLM.from_pretrained(model_dir, dtype=dtype, attn_implementation="eager").eval()
    tok = None
    if os.path.exists(os.path.join(model_dir, "tokenizer.json")):
        tok = AutoTokenizer.from_pretrained(model_dir)
    return model, tok


def special_ids(base, tok):
    """(eos id, pad id): the tokenizer's, else the model config's; pad falls back to EOS."""
    eos = tok.eos_token_id if tok is not None else None
    if eos is None:
        eos = base.config.eos_token_id
        eos = eos[0] if isinstance(eos, list) else eos
    if eos is None:
        raise ValueError("the model has no EOS token id (tokenizer or config.json eos_token_id)")
    pad = tok.pad_token_id if tok is not None and tok.pad_token_id is not None else None
    if pad is None:
        pad = base.config.pad_token_id if base.config.pad_token_id is not None else eos
    return eos, pad


def lora_param_count(config, r, targets=LORA_TARGETS):
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    h, ffn = config.hidden_size, config.intermediate_size
    shapes = {"q_proj": (h, config.num_attention_heads * head_dim), "k_proj": (h, config.num_key_value_heads * head_dim),
              "v_proj": (h, config.num_key_value_heads * head_dim), "o_proj": (config.num_attention_heads * head_dim, h),
              "gate_proj": (h, ffn), "up_proj": (h, ffn), "down_proj": (ffn, h)}
    return config.num_hidden_layers * sum(r * (shapes[t][0] + shapes[t][1]) for t in targets)


class Adapter:
    kind = None

    def __call__(self, input_ids, prompt_mask=None, **kwargs):
        raise NotImplementedError

    def parameters(self):
        raise NotImplementedError

    def num_parameters(self):
        return sum(p.numel() for p in self.parameters())

    def train(self, on=True):
        self.module.train(on)

    def save(self, out_dir, dtype="BF16", extra_config=None):
        raise NotImplementedError


class ParaAdapter(Adapter):
    kind = "para"

    def __init__(self, module):
        self.module = module

    def __call__(self, input_ids, prompt_mask=None, **kwargs):
        return self.module(input_ids, prompt_mask=prompt_mask, **kwargs)

    def parameters(self):
        return self.module.trainable_parameters()

    def save(self, out_dir, dtype="BF16", extra_config=None):
        self.module.save_adapter(out_dir, dtype, self.module.base.name_or_path, extra_config)

    def describe(self):
        return dict(kind="para", r=self.module.r, pooler=self.module.pooler, activation=self.module.activation,
                    params=self.num_parameters())


class LoraAdapter(Adapter):
    kind = "lora"

    def __init__(self, peft_model):
        self.module = peft_model

    def __call__(self, input_ids, prompt_mask=None, **kwargs):
        return self.module(input_ids=input_ids, **kwargs)

    def parameters(self):
        return [p for n, p in self.module.named_parameters() if "lora_" in n]

    def save(self, out_dir, dtype="BF16", extra_config=None):
        """PEFT's save_pretrained, with the LoRA weights stored in dtype (then restored)."""
        params = self.parameters()
        saved = [p.data for p in params]
        torch_dtype = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}[dtype]
        for p in params:
            p.data = p.data.to(torch_dtype)
        try:
            self.module.save_pretrained(out_dir)
        finally:
            for p, d in zip(params, saved):
                p.data = d
        if extra_config:
            path = os.path.join(out_dir, "adapter_config.json")
            with open(path) as f:
                cfg = json.load(f)
            cfg.update(extra_config)
            with open(path, "w") as f:
                json.dump(cfg, f, indent=2, sort_keys=True)

    def describe(self):
        cfg = self.module.peft_config["default"]
        return dict(kind="lora", r=cfg.r, lora_alpha=cfg.lora_alpha, targets=sorted(cfg.target_modules),
                    params=self.num_parameters())


class BaseOnly(Adapter):
    """The base model alone, behind the same interface (prompt_mask ignored)."""
    kind = "base"

    def __init__(self, base):
        self.module = base

    def __call__(self, input_ids, prompt_mask=None, **kwargs):
        return self.module(input_ids=input_ids, **kwargs)

    def parameters(self):
        return []

    def describe(self):
        return dict(kind="base", params=0)


def make_adapter(base, kind, r, pooler="last", activation="gelu", lora_alpha=None, lora_targets=None):
    if kind == "para":
        return ParaAdapter(ParaModel(base, r=r, pooler=pooler, activation=activation))
    if kind == "lora":
        from peft import LoraConfig, get_peft_model
        cfg = LoraConfig(r=r, lora_alpha=lora_alpha if lora_alpha is not None else 2 * r,
                         target_modules=list(lora_targets or LORA_TARGETS), lora_dropout=0.0, bias="none")
        return LoraAdapter(get_peft_model(base, cfg))
    raise ValueError(f"adapter kind must be 'para' or 'lora', got {kind!r}")


def load_adapter(base, adapter_dir):
    """A PARA or LoRA adapter directory (by its peft_type) on base, in float32."""
    with open(os.path.join(adapter_dir, "adapter_config.json")) as f:
        peft_type = json.load(f).get("peft_type")
    if peft_type == "PARA":
        return ParaAdapter(ParaModel.from_adapter(base, adapter_dir))
    if peft_type == "LORA":
        from peft import PeftModel
        pm = PeftModel.from_pretrained(base, adapter_dir)
        for p in pm.parameters():
            p.data = p.data.to(torch.float32)
        return LoraAdapter(pm.eval())
    raise ValueError(f"{adapter_dir}: unknown peft_type {peft_type!r}")


def param_counts(config, r_para, r_lora, lora_targets=LORA_TARGETS):
    return {"para": para_param_count(config, r_para), "lora": lora_param_count(config, r_lora, lora_targets)}
