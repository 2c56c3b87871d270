"""The demo's chat: every tenant of a running para-server asks its questions at the same time, through
the gRPC chat call (the model's own chat template renders each conversation), so that their
requests, with their PARA and LoRA adapters and the base model, share the server's batches.
Used by scripts/demo.sh.

    python3 clients/python/demo.py --target localhost:50051 --config build/demo/tenants.json
"""
import argparse
import json
import os
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from para_client import Client  # noqa: E402
from para.v1 import generation_pb2  # noqa: E402

QUESTIONS = [
    "What is the capital of France?",
    "What is the capital of Japan?",
    "Name three primary colors.",
    'Translate "hello" into Spanish.',
]


def ask(target: str, key: str, tenant: str, adapter: str, question: str, max_tokens: int, out: list) -> None:
    with Client(target, key) as c:
        text, last = "", None
        for chunk in c.chat_stream([{"role": "user", "content": question}], adapter=adapter,
                                   max_tokens=max_tokens):
            text += chunk.text_delta
            last = chunk
    reason = generation_pb2.FinishReason.Name(last.finish_reason)
    out.append(f"== {tenant} / {adapter or '(base model)'}: {question}\n   {text.strip()}\n"
               f"   [{last.usage.completion_tokens} tokens, {reason}, "
               f"time to first token {last.usage.time_to_first_token_seconds * 1000:.0f} ms]")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", required=True)
    ap.add_argument("--config", required=True, help="the server's tenants file (for the demo keys)")
    ap.add_argument("--max-tokens", type=int, default=48)
    args = ap.parse_args()
    cfg = json.load(open(args.config))
    jobs, results = [], []
    for i, (name, tenant) in enumerate(cfg["tenants"].items()):
        for j, adapter in enumerate(list(tenant.get("adapters", {})) or [""]):
            question = QUESTIONS[(i + j) % len(QUESTIONS)]
            jobs.append(threading.Thread(target=ask, args=(args.target, tenant["api_keys"][0], name, adapter,
                                                           question, args.max_tokens, results)))
    for t in jobs:
        t.start()
    for t in jobs:
        t.join()
    print("\n".join(sorted(results)))
    if len(results) != len(jobs):
        sys.exit("some requests failed")


if __name__ == "__main__":
    main()
