"""Streams one generation per tenant from a running para-server (used by scripts/demo.sh).

    python3 clients/python/demo.py --target localhost:50051 --config deploy/demo/tenants.json
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from para_client import Client  # noqa: E402
from para.v1 import generation_pb2  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", required=True)
    ap.add_argument("--config", required=True, help="the server's tenants file (for the demo keys)")
    ap.add_argument("--prompt", default="Hello café")
    ap.add_argument("--max-tokens", type=int, default=24)
    args = ap.parse_args()
    cfg = json.load(open(args.config))
    for name, tenant in cfg["tenants"].items():
        adapters = list(tenant.get("adapters", {})) or [""]
        with Client(args.target, tenant["api_keys"][0]) as c:
            for adapter in adapters:
                print(f"== tenant {name}, adapter {adapter or '(base model)'}: ", end="", flush=True)
                last = None
                for chunk in c.stream(args.prompt, adapter=adapter, max_tokens=args.max_tokens, ignore_eos=True):
                    print(chunk.text_delta, end="", flush=True)
                    last = chunk
                reason = generation_pb2.FinishReason.Name(last.finish_reason)
                print(f"\n   [{last.usage.completion_tokens} tokens, {reason}, "
                      f"time to first token {last.usage.time_to_first_token_seconds * 1000:.1f} ms]")


if __name__ == "__main__":
    main()
