"""Command line of the PARA training toolkit (run from tools/para_train, or with it on PYTHONPATH):

    python -m para_train data    --task isodate --out DIR [--train-n 2000 --test-n 200]
    python -m para_train train   --model M --method para|lora --train T.jsonl --test E.jsonl --out DIR [...]
    python -m para_train eval    --model M [--adapter A] --data E.jsonl [--limit N]
    python -m para_train logits  --model M --adapter A --ids 1,2,3 [--prompt-len K] --out L.npy
    python -m para_train logits  --model M --adapter A --ids-file R.jsonl --out L.npz
    python -m para_train init    --model M --out A [--r 12 --pooler last --activation gelu]
"""
import argparse
import json
import os
import sys
import time

from . import tasks as T


def _common(p):
    p.add_argument("--model", required=True, help="Hugging Face LLaMA model directory")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--no-chat", dest="chat", action="store_false",
                   help="tokenize prompts as they are (default: the chat template, user message)")


def _parser():
    ap = argparse.ArgumentParser(prog="para_train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("data", help="write a task's train.jsonl and test.jsonl")
    p.add_argument("--task", required=True, choices=sorted(T.TASKS))
    p.add_argument("--out", required=True)
    p.add_argument("--train-n", type=int, default=2000)
    p.add_argument("--test-n", type=int, default=200)

    p = sub.add_parser("train", help="train a PARA or LoRA adapter, export it, evaluate the export")
    _common(p)
    p.add_argument("--method", choices=["para", "lora"], required=True)
    p.add_argument("--train", required=True)
    p.add_argument("--test", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--r", type=int, default=12, help="rank (PARA bottleneck or LoRA rank)")
    p.add_argument("--pooler", choices=["last", "mean"], default="last")
    p.add_argument("--activation", choices=["gelu", "gelu_tanh", "relu", "silu"], default="gelu")
    p.add_argument("--lora-alpha", type=float, default=None, help="default 2*r")
    p.add_argument("--no-calibrate", dest="calibrate", action="store_false",
                   help="PARA: keep nn.Linear's W_down init (default: scale it to the residual stream)")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--clip", type=float, default=1.0, help="gradient norm clip (0: none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save-every", type=int, default=0, help="checkpoint every N steps (0: never)")
    p.add_argument("--resume", help="a checkpoint-STEP directory to continue from")
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--dtype", choices=["F32", "F16", "BF16"], default="BF16", help="exported tensors")
    p.add_argument("--eval-limit", type=int, default=0, help="evaluate on the first N test rows (0: all)")
    p.add_argument("--eval-batch-size", type=int, default=16)
    p.add_argument("--max-new-tokens", type=int, default=T.MAX_NEW_TOKENS)
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser("eval", help="exact-match accuracy (greedy) of the base model or an adapter")
    _common(p)
    p.add_argument("--adapter")
    p.add_argument("--data", required=True)
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-new-tokens", type=int, default=T.MAX_NEW_TOKENS)
    p.add_argument("--out", help="write the generations and the accuracy here (JSON)")

    p = sub.add_parser("logits", help="float32 logits of ids through the PyTorch module (.npy)")
    _common(p)
    p.add_argument("--adapter")
    p.add_argument("--ids", help="comma-separated token ids")
    p.add_argument("--prompt-len", type=int, help="leading ids that form the prompt (default all)")
    p.add_argument("--ids-file", help='JSONL of {"ids": [...], "prompt_len": K}: logits of each '
                   'into --out as an .npz (arrays r0, r1, ...)')
    p.add_argument("--out", required=True)

    p = sub.add_parser("init", help="write an identity PARA adapter (W_up = 0, b_up = 1)")
    _common(p)
    p.add_argument("--out", required=True)
    p.add_argument("--r", type=int, default=12)
    p.add_argument("--pooler", choices=["last", "mean"], default="last")
    p.add_argument("--activation", choices=["gelu", "gelu_tanh", "relu", "silu"], default="gelu")
    p.add_argument("--dtype", choices=["F32", "F16", "BF16"], default="F32")
    return ap


def cmd_data(a):
    from . import data as D
    train, test = T.splits(a.task, a.train_n, a.test_n)
    os.makedirs(a.out, exist_ok=True)
    D.write_jsonl(os.path.join(a.out, "train.jsonl"), train)
    D.write_jsonl(os.path.join(a.out, "test.jsonl"), test)
    print(f"{a.task}: {len(train)} train, {len(test)} test rows in {a.out}")


def _with_adapter(a):
    from . import adapters as A
    base, tok = A.load_base(a.model)
    ad = A.load_adapter(base, a.adapter) if a.adapter else A.BaseOnly(base)
    return ad, tok, A.special_ids(base, tok)


def cmd_eval(a):
    import torch
    from . import data as D
    from .evaluate import evaluate
    torch.set_num_threads(a.threads)
    ad, tok, (eos_id, pad_id) = _with_adapter(a)
    rows = D.read_jsonl(a.data)[:a.limit or None]
    t0 = time.time()
    acc, texts = evaluate(ad, tok, rows, [D.prompt_ids(tok, r, a.chat) for r in rows], a.max_new_tokens,
                          eos_id, pad_id, a.batch_size)
    res = {"adapter": a.adapter, "data": a.data, "examples": len(rows), "accuracy": acc,
           "seconds": round(time.time() - t0, 1),
           "generations": [{"prompt": r.get("prompt", r.get("prompt_ids")), "want": r.get("response", r.get("response_ids")),
                            "got": t} for r, t in zip(rows, texts)]}
    if a.out:
        with open(a.out, "w") as f:
            json.dump(res, f, indent=1)
    print(json.dumps({k: v for k, v in res.items() if k != "generations"}))


def cmd_logits(a):
    import numpy as np
    import torch
    torch.set_num_threads(a.threads)
    if (a.ids is None) == (a.ids_file is None):
        raise SystemExit("logits: give exactly one of --ids and --ids-file")
    ad, _, _ = _with_adapter(a)
    ad.train(False)

    def one(ids, k):
        k = k or len(ids)
        if not 1 <= k <= len(ids):
            raise SystemExit(f"logits: prompt length {k} outside 1..{len(ids)}")
        pm = torch.zeros((1, len(ids)), dtype=torch.long)
        pm[0, :k] = 1
        with torch.no_grad():
            return ad(torch.tensor([ids]), prompt_mask=pm).logits[0].float().numpy()

    if a.ids is not None:
        np.save(a.out, one([int(x) for x in a.ids.split(",")], a.prompt_len))
        return
    with open(a.ids_file) as f:
        reqs = [json.loads(line) for line in f if line.strip()]
    np.savez(a.out, **{f"r{i}": one(r["ids"], r.get("prompt_len")) for i, r in enumerate(reqs)})


def cmd_init(a):
    from . import adapters as A
    from .para import ParaModel
    base, _ = A.load_base(a.model)
    ParaModel(base, a.r, a.pooler, a.activation).save_adapter(a.out, a.dtype, base.name_or_path)


def main(argv=None):
    a = _parser().parse_args(argv)
    if a.cmd == "data":
        return cmd_data(a)
    if a.cmd == "train":
        from .train import train
        res = train(a)
        print(json.dumps({k: v for k, v in res.items() if k != "samples"}))
        return None
    return {"eval": cmd_eval, "logits": cmd_logits, "init": cmd_init}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
