"""The training loop: prompt/response JSONL, loss on response tokens only, AdamW with a linear
warmup then cosine decay, checkpoints (resumable), a progress bar, a seed; at the end the adapter
is exported in the engine's format, loaded back from those files and evaluated (exact match,
greedy) on the test split, and the result is written next to it.

Output directory:
    adapter/                 the exported adapter (PARA format, or PEFT's for LoRA)
    checkpoint-STEP/         adapter (F32) + optimizer/scheduler/RNG state, every --save-every steps
    train_log.jsonl          one line per logged step: step, loss, lr, elapsed seconds
    result.json              settings, parameter count, training time, test accuracy (of the
                             exported adapter), and the first generations
"""
import json
import math
import os
import random
import time

import torch
from tqdm import tqdm

from . import adapters as A
from . import data as D
from .evaluate import evaluate


def set_seed(seed):
    random.seed(seed)
    torch.manual_seed(seed)


def cosine_schedule(optimizer, warmup, total):
    def factor(step):
        if step < warmup:
            return (step + 1) / max(1, warmup)
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def response_loss(ad, batch):
    """Mean cross-entropy of the response tokens (each predicted from the tokens before it)."""
    out = ad(batch["input_ids"], prompt_mask=batch["prompt_mask"], attention_mask=batch["attention_mask"])
    sel = batch["loss_mask"].bool()
    targets = batch["input_ids"].roll(-1, dims=1)
    return torch.nn.functional.cross_entropy(out.logits[sel].float(), targets[sel])


def batches(n_examples, batch_size, seed):
    """Endless stream of index lists: each epoch a fresh permutation (random.Random(seed))."""
    rng = random.Random(seed)
    while True:
        order = list(range(n_examples))
        rng.shuffle(order)
        for s in range(0, n_examples - batch_size + 1, batch_size):
            yield order[s:s + batch_size]


def save_checkpoint(ad, opt, sched, step, out_dir):
    d = os.path.join(out_dir, f"checkpoint-{step}")
    ad.save(os.path.join(d, "adapter"), "F32")
    torch.save({"step": step, "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "torch_rng": torch.get_rng_state(), "py_rng": random.getstate()}, os.path.join(d, "state.pt"))
    return d


def train(args):
    torch.set_num_threads(args.threads)
    set_seed(args.seed)
    base, tok = A.load_base(args.model)
    eos_id, pad_id = A.special_ids(base, tok)
    train_rows, test_rows = D.read_jsonl(args.train), D.read_jsonl(args.test)[:args.eval_limit or None]
    train_ex = D.encode(tok, train_rows, args.chat, eos_id)

    if args.resume:
        ad = A.load_adapter(base, os.path.join(args.resume, "adapter"))
    else:
        ad = A.make_adapter(base, args.method, args.r, args.pooler, args.activation, args.lora_alpha)
    params = ad.parameters()
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)
    sched = cosine_schedule(opt, args.warmup, args.steps)
    stream = batches(len(train_ex), args.batch_size, args.seed)
    start = 0
    if args.resume:
        st = torch.load(os.path.join(args.resume, "state.pt"), weights_only=False)
        opt.load_state_dict(st["optimizer"])
        sched.load_state_dict(st["scheduler"])
        start = st["step"]
        for _ in range(start):          # the data stream picks up where it stopped
            next(stream)
        torch.set_rng_state(st["torch_rng"])
        random.setstate(st["py_rng"])
    elif args.method == "para" and args.calibrate:
        b = D.train_batch([train_ex[i] for i in range(min(64, len(train_ex)))], pad_id)
        ad.module.calibrate_down(b["input_ids"], b["prompt_mask"], b["attention_mask"])

    os.makedirs(args.out, exist_ok=True)
    log = open(os.path.join(args.out, "train_log.jsonl"), "a")
    ad.train(True)
    t0, cpu0 = time.time(), time.process_time()
    bar = tqdm(range(start, args.steps), desc=f"train {args.method}", disable=args.quiet)
    loss_avg = None
    for step in bar:
        batch = D.train_batch([train_ex[i] for i in next(stream)], pad_id)
        loss = response_loss(ad, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if args.clip:
            torch.nn.utils.clip_grad_norm_(params, args.clip)
        opt.step()
        sched.step()
        lv = loss.item()
        loss_avg = lv if loss_avg is None else 0.9 * loss_avg + 0.1 * lv
        bar.set_postfix(loss=f"{loss_avg:.4f}", lr=f"{sched.get_last_lr()[0]:.2e}")
        if (step + 1) % args.log_every == 0 or step + 1 == args.steps:
            log.write(json.dumps({"step": step + 1, "loss": lv, "loss_avg": loss_avg,
                                  "lr": sched.get_last_lr()[0], "elapsed_s": round(time.time() - t0, 2)}) + "\n")
            log.flush()
        if args.save_every and (step + 1) % args.save_every == 0 and step + 1 < args.steps:
            save_checkpoint(ad, opt, sched, step + 1, args.out)
    train_s, train_cpu = time.time() - t0, time.process_time() - cpu0
    log.close()

    adir = os.path.join(args.out, "adapter")
    ad.save(adir, args.dtype, extra_config={"para_train": {"task_data": os.path.basename(args.train),
                                                           "steps": args.steps, "seed": args.seed}}
            if args.method == "para" else None)
    result = {"method": args.method, "adapter": ad.describe(), "steps": args.steps, "batch_size": args.batch_size,
              "lr": args.lr, "seed": args.seed, "chat": args.chat, "train_seconds": round(train_s, 1),
              "train_cpu_seconds": round(train_cpu, 1),
              "threads": args.threads, "final_loss_avg": loss_avg, "dtype": args.dtype}
    if test_rows:
        # evaluate what was exported: a fresh base model with the adapter read back from its files
        base2, _ = A.load_base(args.model)
        ad2 = A.load_adapter(base2, adir)
        acc, texts = evaluate(ad2, tok, test_rows, [D.prompt_ids(tok, r, args.chat) for r in test_rows],
                              args.max_new_tokens, eos_id, pad_id, args.eval_batch_size)
        result.update({"test_accuracy": acc, "test_examples": len(test_rows),
                       "samples": [{"prompt": r.get("prompt", r.get("prompt_ids")),
                                    "want": r.get("response", r.get("response_ids")), "got": t}
                                   for r, t in list(zip(test_rows, texts))[:8]]})
    with open(os.path.join(args.out, "result.json"), "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    return result
