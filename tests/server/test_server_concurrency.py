"""Many requests at once: mixed tenants and adapters under a KV pool so small that the scheduler
must preempt, seeded sampling, and a crowd of streams of which half are cancelled part way. What
completes equals the offline engine; what is cancelled leaves nothing behind."""
import json
import random
import threading

import grpc

import server_harness as h
from server_harness import generation_pb2, generation_pb2_grpc

pytestmark = h.requires_binaries

TENANTS = list(h.KEYS)


def prompt_ids(i: int) -> list[int]:
    return [1] + [3 + (i * 37 + j * 11) % 500 for j in range(2 + i % 9)]


def references(model, adapters, jobs, tmp_path):
    """para-cli's results for (tenant, ids, max_tokens) jobs, in one batch run."""
    lines = []
    for tenant, ids, max_tokens in jobs:
        name = h.ADAPTERS[tenant]
        lines.append(json.dumps({"prompt_ids": ids, "max_tokens": max_tokens, "ignore_eos": True,
                                 "adapter": adapters[name] if name else "", "tenant": tenant}))
    path = tmp_path / "requests.jsonl"
    path.write_text("\n".join(lines) + "\n")
    out = h.run(h.CLI, "generate", "--model", model, "--requests", path, "--json").stdout
    results = [json.loads(l) for l in out.splitlines() if l.strip()]
    assert [r["index"] for r in results] == list(range(len(jobs)))
    return results


def test_tight_kv_pool_preempts_and_results_still_match_offline(tiny_model, adapters, tenants_config,
                                                                start_server, tmp_path):
    s = start_server(tiny_model, tenants_config, "--kv-cache-blocks", 48, "--block-size", 4)
    jobs = [(TENANTS[i % 4], prompt_ids(i), 60) for i in range(12)]
    refs = references(tiny_model, adapters, jobs, tmp_path)
    results, errors = {}, {}
    barrier = threading.Barrier(len(jobs))

    def run(i):
        tenant, ids, max_tokens = jobs[i]
        try:
            with s.client(h.KEYS[tenant]) as c:
                barrier.wait(timeout=30)
                results[i] = c.generate(token_ids=ids, adapter=h.ADAPTERS[tenant], max_tokens=max_tokens,
                                        ignore_eos=True, timeout=120)
        except BaseException as e:
            errors[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    for i, r in results.items():
        assert list(r.token_ids) == refs[i]["token_ids"], f"request {i} ({jobs[i][0]}) differs from para-cli"
        assert r.text == refs[i]["text"]
    stats = h.wait_idle(s)
    assert stats.preemptions > 0, "the pool was meant to be too small to run everything at once"
    assert sum(r.usage.preemptions for r in results.values()) == stats.preemptions


def test_seeded_sampling_is_reproducible(server, tiny_model, adapters):
    kw = dict(max_tokens=32, ignore_eos=True, temperature=0.9, top_p=0.95, top_k=50, seed=1234)
    ref = h.cli_generate(tiny_model, prompt="Hello there", adapter=adapters["globex-para"], max_tokens=32,
                         extra=["--temperature", "0.9", "--top-p", "0.95", "--top-k", "50", "--seed", "1234"])
    with server.client(h.KEYS["globex"]) as c, server.client(h.KEYS["umbrella"]) as other:
        noise = [other.stream(token_ids=prompt_ids(i), max_tokens=200, ignore_eos=True, temperature=1.0)
                 for i in range(4)]
        for n in noise:
            next(n)  # these share the batch with what follows
        unary = c.generate("Hello there", adapter="globex-para", **kw)
        streamed = [i for ch in c.stream("Hello there", adapter="globex-para", **kw) for i in ch.token_ids]
        for n in noise:
            n.close()
        other_seed = c.generate("Hello there", adapter="globex-para", **(kw | {"seed": 99}))
    assert list(unary.token_ids) == streamed == ref["token_ids"]
    assert list(other_seed.token_ids) != ref["token_ids"]
    h.wait_idle(server)


def test_crowd_of_streams_with_random_cancellations(server, tiny_model, adapters, tmp_path):
    rng = random.Random(7)
    n = 32
    plan = []  # (tenant, ids, max_tokens, cancel_after_chunks or None)
    for i in range(n):
        tenant = TENANTS[i % 4]
        if i % 2:
            plan.append((tenant, prompt_ids(i), 480, rng.randint(1, 3)))
        else:
            plan.append((tenant, prompt_ids(i), 40, None))
    refs = references(tiny_model, adapters, [(t, ids, m) for t, ids, m, c in plan if c is None], tmp_path)
    ref_of = {}
    k = 0
    for i, (_, _, _, cancel) in enumerate(plan):
        if cancel is None:
            ref_of[i] = refs[k]
            k += 1

    outcomes, errors = {}, {}
    barrier = threading.Barrier(n)

    def run(i):
        tenant, ids, max_tokens, cancel_after = plan[i]
        try:
            with server.channel() as ch:
                stub = generation_pb2_grpc.GenerationStub(ch)
                barrier.wait(timeout=30)
                call = stub.GenerateStream(
                    h.Client.request(token_ids=ids, adapter=h.ADAPTERS[tenant], max_tokens=max_tokens,
                                     ignore_eos=True, request_id=f"crowd-{i}"),
                    metadata=h.bearer(h.KEYS[tenant]), timeout=120)
                chunks = []
                try:
                    for chunk in call:
                        chunks.append(chunk)
                        if cancel_after is not None and len(chunks) == cancel_after:
                            call.cancel()
                except grpc.RpcError as e:
                    if not (cancel_after is not None and e.code() == grpc.StatusCode.CANCELLED):
                        raise
                outcomes[i] = chunks
        except BaseException as e:
            errors[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    cut_short = 0
    for i, chunks in outcomes.items():
        assert all(c.request_id == f"crowd-{i}" for c in chunks)
        ids = [t for c in chunks for t in c.token_ids]
        if i in ref_of:
            assert chunks[-1].finish_reason == generation_pb2.FINISH_REASON_LENGTH
            assert ids == ref_of[i]["token_ids"], f"stream {i} differs from para-cli"
            assert "".join(c.text_delta for c in chunks) == ref_of[i]["text"]
        else:
            assert len(ids) < plan[i][2] or chunks[-1].finish_reason == generation_pb2.FINISH_REASON_LENGTH
            cut_short += len(ids) < plan[i][2]
    assert len(outcomes) == n
    assert cut_short >= n // 4, f"only {cut_short} of {n // 2} cancellations happened before the stream ended"
    idle = h.wait_idle(server, timeout=10)
    assert idle.requests_in_flight == 0
    assert server.alive(), server.log()
    with server.client(h.KEYS["acme"]) as c:
        assert len(c.generate("still here", max_tokens=5, ignore_eos=True).token_ids) == 5


def test_priority_and_request_id_limits_are_inclusive(server):
    with server.client(h.KEYS["umbrella"]) as c:
        for p in (-100, 100):
            assert len(c.generate("hi", max_tokens=2, ignore_eos=True, priority=p).token_ids) == 2
        rid = "é" * 64  # 128 bytes
        assert c.generate("hi", max_tokens=1, request_id=rid).request_id == rid
        r = c.generate("hi", ignore_eos=True)  # max_tokens unset: 16
        assert len(r.token_ids) == 16 and r.finish_reason == generation_pb2.FINISH_REASON_LENGTH
        chunks = list(c.stream("hi", max_tokens=3, ignore_eos=True, prompt_logprobs=2, logprobs=1))
    assert all(not ch.prompt_logprobs for ch in chunks[:-1])
    assert len(chunks[-1].prompt_logprobs) == chunks[-1].usage.prompt_tokens - 1
    assert sum(len(ch.logprobs) for ch in chunks) == 3


def test_tenant_max_inflight_limits_running_sequences(slow_model, tmp_path, start_server):
    config = h.write_config(tmp_path / "tenants.json", {
        "acme": {"api_keys": [h.KEYS["acme"]], "max_inflight": 1},
        "globex": {"api_keys": [h.KEYS["globex"]]},
    })
    s = start_server(slow_model, config, "--kv-cache-blocks", 2048)
    req = h.Client.request(token_ids=[1, 5, 9], max_tokens=8000, ignore_eos=True)
    with s.channel() as ch:
        stub = generation_pb2_grpc.GenerationStub(ch)
        a1 = stub.GenerateStream(req, metadata=h.bearer(h.KEYS["acme"]))
        next(a1)
        a2 = stub.GenerateStream(req, metadata=h.bearer(h.KEYS["acme"]))
        h.wait_until(lambda: h.stats(s).requests_in_flight == 2, 5, what="the second request to arrive")
        g = stub.GenerateStream(req, metadata=h.bearer(h.KEYS["globex"]))
        next(g)  # globex is not held back by acme's limit
        st = h.stats(s)
        assert (st.requests_running, st.requests_waiting) == (2, 1), st
        a1.cancel()
        next(a2)  # acme's second request runs once its first is gone
        for c in (a2, g):
            c.cancel()
        h.wait_idle(s, timeout=10)
