"""Prompt/response data: JSONL files, tokenization and batches.

A data file has one JSON object per line: {"prompt": "...", "response": "..."} and optionally
"system"; or, for models without a tokenizer (the tests' tiny random models), token ids:
{"prompt_ids": [...], "response_ids": [...]} (EOS is appended to the response here too). With chat=True the prompt is the user message rendered by the tokenizer's chat template
(with the system message when given, and the assistant header: add_generation_prompt); otherwise it
is tokenized as it is. The response is tokenized on its own and followed by the EOS token, so the
model learns to stop. Loss is on response tokens only.

Stateless functions; batches are fresh tensors owned by the caller.
"""
import json


def read_jsonl(path):
    rows = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            obj = json.loads(line)
            text = isinstance(obj.get("prompt"), str) and isinstance(obj.get("response"), str)
            ids = all(isinstance(obj.get(k), list) and obj[k] and all(isinstance(t, int) for t in obj[k])
                      for k in ("prompt_ids", "response_ids"))
            if not (text or ids):
                raise ValueError(f"{path}:{n}: each line needs string 'prompt' and 'response', "
                                 "or non-empty integer lists 'prompt_ids' and 'response_ids'")
            rows.append(obj)
    return rows


def write_jsonl(path, rows):
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def prompt_ids(tok, row, chat):
    """Token ids of a row's prompt as the model sees it."""
    if "prompt_ids" in row:
        return list(row["prompt_ids"])
    if not chat:
        return list(tok(row["prompt"])["input_ids"])
    msgs = ([{"role": "system", "content": row["system"]}] if row.get("system") else []) + \
        [{"role": "user", "content": row["prompt"]}]
    ids = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True)
    if hasattr(ids, "keys"):
        ids = ids["input_ids"]
    return list(ids)


def response_ids(tok, row, eos_id):
    """The ids the model must produce for a row, EOS included."""
    if "response_ids" in row:
        return list(row["response_ids"]) + [eos_id]
    return list(tok(row["response"], add_special_tokens=False)["input_ids"]) + [eos_id]


def encode(tok, rows, chat, eos_id):
    """[(prompt ids, response ids incl. EOS)] for rows."""
    return [(prompt_ids(tok, r, chat), response_ids(tok, r, eos_id)) for r in rows]


def train_batch(examples, pad_id):
    """Right-padded batch of (prompt, response) id lists: input_ids, attention_mask, prompt_mask
    (the prompt rows) and loss_mask (rows whose NEXT token is a response token, i.e. position t
    predicts ids[t+1]); all [B, T]."""
    import torch
    T = max(len(p) + len(r) for p, r in examples)
    B = len(examples)
    ids = torch.full((B, T), pad_id, dtype=torch.long)
    attn = torch.zeros((B, T), dtype=torch.long)
    pmask = torch.zeros((B, T), dtype=torch.long)
    lmask = torch.zeros((B, T), dtype=torch.long)
    for b, (p, r) in enumerate(examples):
        n = len(p) + len(r)
        ids[b, :n] = torch.tensor(p + r)
        attn[b, :n] = 1
        pmask[b, :len(p)] = 1
        lmask[b, len(p) - 1:n - 1] = 1
    return {"input_ids": ids, "attention_mask": attn, "prompt_mask": pmask, "loss_mask": lmask}


def left_padded(prompts, pad_id):
    """Left-padded prompt batch for generation: input_ids, attention_mask, position_ids."""
    import torch
    T = max(len(p) for p in prompts)
    B = len(prompts)
    ids = torch.full((B, T), pad_id, dtype=torch.long)
    attn = torch.zeros((B, T), dtype=torch.long)
    for b, p in enumerate(prompts):
        ids[b, T - len(p):] = torch.tensor(p)
        attn[b, T - len(p):] = 1
    pos = (attn.cumsum(1) - 1).clamp(min=0)
    return {"input_ids": ids, "attention_mask": attn, "position_ids": pos}
