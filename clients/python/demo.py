"""The demo's chat: the tenants of a running para-server ask, all at the same time, held-out
questions of the task their adapters were trained for (tools/para_train: adding numbers, sorting a
list, reversing words, writing dates in ISO 8601), through the gRPC chat call (the model's own chat
template renders each conversation), so that their requests — with their PARA adapter, their LoRA
adapter, and the base model for comparison — share the server's batches. Prints each answer next
to the right one. Used by scripts/demo.sh.

    python3 clients/python/demo.py --target localhost:50051 --config build/demo/tenants.json
"""
import argparse
import json
import os
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools", "para_train"))
from para_client import Client  # noqa: E402
from para_train import tasks as T  # noqa: E402


def ask(target, key, tenant, adapter, row, out, lock):
    with Client(target, key) as c:
        text, last = "", None
        for chunk in c.chat_stream([{"role": "system", "content": row["system"]},
                                    {"role": "user", "content": row["prompt"]}],
                                   adapter=adapter, temperature=0.0, max_tokens=T.MAX_NEW_TOKENS):
            text += chunk.text_delta
            last = chunk
    answer = text.strip()
    mark = "right" if answer == row["response"] else f"wrong (expected {row['response']})"
    line = (f"  {adapter or '(base model)':13} {answer!r:42.42} {mark}  "
            f"[{last.usage.completion_tokens} tokens, first after "
            f"{last.usage.time_to_first_token_seconds * 1000:.0f} ms]")
    with lock:
        out.setdefault((tenant, row["prompt"]), []).append(line)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", required=True)
    ap.add_argument("--config", required=True, help="the server's tenants file (for the demo keys)")
    ap.add_argument("--questions", type=int, default=2, help="held-out questions per tenant")
    args = ap.parse_args()
    cfg = json.load(open(args.config))
    jobs, results, lock = [], {}, threading.Lock()
    for tenant, spec in cfg["tenants"].items():
        adapters = list(spec.get("adapters", {}))
        if not adapters:
            continue
        task = adapters[0].split("-")[0]  # adapters are named TASK-para / TASK-lora
        for row in T.splits(task, 2000, 200)[1][:args.questions]:
            for adapter in [*adapters, ""]:  # the tenant's adapters and the base model
                jobs.append(threading.Thread(target=ask, args=(args.target, spec["api_keys"][0], tenant,
                                                               adapter, row, results, lock)))
    for t in jobs:
        t.start()
    for t in jobs:
        t.join()
    for (tenant, prompt), lines in sorted(results.items()):
        print(f"== {tenant}: {prompt}")
        print("\n".join(sorted(lines)))
    if sum(len(v) for v in results.values()) != len(jobs):
        sys.exit("some requests failed")


if __name__ == "__main__":
    main()
