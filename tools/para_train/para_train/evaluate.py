"""Greedy generation with a KV cache, and exact-match evaluation.

PARA: the prefill call passes prompt_mask (the prompt rows of the left-padded batch), so each
request's vectors come from its own prompt; the decode steps reuse them. LoRA and the bare base
model ignore prompt_mask. Stateless apart from the adapter's kept vectors.
"""
import torch

from .data import left_padded


@torch.no_grad()
def greedy(ad, prompts, max_new_tokens, eos_id, pad_id, batch_size=16, progress=None):
    """Generated ids (EOS excluded) for each prompt (a list of id lists), argmax at each step."""
    out = []
    for s in range(0, len(prompts), batch_size):
        chunk = prompts[s:s + batch_size]
        b = left_padded(chunk, pad_id)
        attn, pos = b["attention_mask"], b["position_ids"]
        res = ad(b["input_ids"], prompt_mask=attn, attention_mask=attn, position_ids=pos, use_cache=True,
                 logits_to_keep=1)
        gen = [[] for _ in chunk]
        done = [False] * len(chunk)
        for step in range(max_new_tokens):
            nxt = res.logits[:, -1].argmax(-1)
            for i, t in enumerate(nxt.tolist()):
                if not done[i]:
                    if t == eos_id:
                        done[i] = True
                    else:
                        gen[i].append(t)
            if all(done) or step == max_new_tokens - 1:
                break
            attn = torch.cat([attn, torch.ones_like(attn[:, :1])], dim=1)
            pos = pos[:, -1:] + 1
            res = ad(nxt[:, None], attention_mask=attn, position_ids=pos, cache=res.cache, use_cache=True)
        out.extend(gen)
        if progress:
            progress(len(chunk))
    return out


def normalize(text):
    return text.strip()


def is_hit(row, generated, text):
    """Exact match: the ids for id rows; the text (outer whitespace stripped) for text rows."""
    if "response_ids" in row:
        return list(generated) == list(row["response_ids"])
    return normalize(text) == normalize(row["response"])


def exact_match(tok, rows, generated):
    """(accuracy in [0, 1], [decoded text, or the ids as a string without a tokenizer])."""
    texts = [tok.decode(g, skip_special_tokens=True) if tok is not None else ",".join(map(str, g))
             for g in generated]
    hits = sum(is_hit(r, g, t) for r, g, t in zip(rows, generated, texts))
    return hits / max(1, len(rows)), texts


def evaluate(ad, tok, rows, encoded_prompts, max_new_tokens, eos_id, pad_id, batch_size=16, progress=None):
    ad.train(False)
    gen = greedy(ad, encoded_prompts, max_new_tokens, eos_id, pad_id, batch_size, progress)
    return exact_match(tok, rows, gen)
