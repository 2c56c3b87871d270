#!/usr/bin/env python3
"""A bounded soak of para-server: mixed, hostile traffic from 8 tenants on loopback, then checks
that nothing leaked, hung or crashed.

One server (a tiny random model, 8 tenants with PARA and LoRA adapters and the base model) gets
gRPC (para.v1 Generate, GenerateStream) and HTTP (/v1/completions, JSON and SSE) requests from
--concurrency threads: normal requests, invalid ones, client cancels mid-stream, short deadlines
and abrupt disconnects (a closed gRPC channel, an HTTP socket reset); some run as sequence groups
(n, best_of, beam search). Meanwhile a swapper thread
hot-swaps adapters through the Admin API (a new version under the same name, or unload + reload).
The run stops after --requests requests or --duration-s seconds, whichever comes first.

Checked (each failure is listed and the exit status is 1):
  - every request ends with a result or a status in the set allowed for what it did (gRPC code
    with a non-empty message; HTTP status with an OpenAI error body); NOT_FOUND only while its
    adapter was unloaded; INVALID_ARGUMENT / 400 for a request larger than the KV pool (a small
    --kv-blocks); no request outlives --request-timeout-s;
  - results are whole: every choice of an ignore_eos request has exactly max_tokens tokens and
    finish "length"; usage counts the tokens returned;
  - the server stays alive and /readyz answers 200 throughout; every swap succeeds;
  - at idle: nothing in flight or queued, every KV block free (Admin stats and /metrics), no
    adapter lease left (in_flight, retired_in_flight);
  - RSS (VmRSS, sampled every 0.5 s): the last quarter's peak is at most --rss-growth-mb above the
    first quarter's, and every sample is below --rss-cap-mb;
  - the server's output has no sanitizer report, abort or failed check, and SIGTERM ends it with
    status 0.

Usage (binaries from $PARA_SERVER / $PARA_TOOL, or the flags):
  python3 tests/soak/soak.py --requests 10000 --duration-s 1800 --seed 1
tests/soak/test_soak.py runs a 2-minute version under ctest (label soak)."""
from __future__ import annotations

import argparse
import http.client
import json
import os
import pathlib
import random
import re
import socket
import struct
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "server"))
import server_harness as h  # noqa: E402

grpc = h.grpc
pb = h.generation_pb2
C = grpc.StatusCode

# ---- the tenants and their adapters -----------------------------------------------------------

ADMIN_KEY = h.ADMIN_KEY
# tenant -> its adapters as (name, kind); every tenant also uses the base model.
TENANTS = {
    "t0": [("t0-para", "para")],
    "t1": [("t1-para-mean", "para-mean")],
    "t2": [("t2-lora", "lora")],
    "t3": [("t3-lora-qv", "lora-qv")],
    "t4": [("t4-para", "para"), ("t4-lora", "lora")],
    "t5": [],
    "t6": [("t6-para-mean", "para-mean"), ("t6-lora-qv", "lora-qv")],
    "t7": [("t7-lora", "lora")],
}
KEYS = {t: f"soak-{t}-key-0001" for t in TENANTS}
MODEL_NAME = "tiny-llama"


def make_fixtures(root: pathlib.Path, seed: int) -> dict:
    """The model, two versions of every adapter (for hot-swaps) and the tenants file."""
    model = h.make_model(root / MODEL_NAME, 11, "--max-pos", "512")
    versions, tenants = {}, {}
    for i, (tenant, adapters) in enumerate(TENANTS.items()):
        for j, (name, kind) in enumerate(adapters):
            versions[name] = [_make_adapter(root / f"{name}-v{v}", model, kind, seed * 100 + i * 10 + j * 2 + v)
                              for v in (0, 1)]
        tenants[tenant] = {"api_keys": [KEYS[tenant]], "weight": 1 + i % 3,
                           "adapters": {name: versions[name][0] for name, _ in adapters}}
    config = h.write_config(root / "tenants.json", tenants, admin_keys=(ADMIN_KEY,))
    return {"model": model, "config": config, "versions": versions}


def _make_adapter(path: pathlib.Path, model: str, kind: str, seed: int) -> str:
    if kind == "para":
        return h.make_para_adapter(path, model, seed)
    if kind == "para-mean":
        return h.make_para_adapter(path, model, seed, "--pooler", "mean")
    if kind == "lora":
        return h.make_lora_adapter(path, model, seed, "--targets", "all")
    return h.make_lora_adapter(path, model, seed)  # lora-qv: the tool's default targets


# ---- outcomes ---------------------------------------------------------------------------------

@dataclass
class Outcome:
    kind: str        # normal, invalid, cancel, deadline, disconnect
    api: str         # grpc-unary, grpc-stream, http-json, http-stream
    tenant: str
    adapter: str     # "" = base model
    start: float
    end: float = 0.0
    result: str = ""  # ok, closed (the client hung up), a gRPC code name, http-NNN, or a failure
    message: str = ""
    group: str = ""     # a sequence group: "n", "best_of" or "beam"
    shape: str = ""     # the request's prompt and sizes, for reports
    variant: str = ""   # for invalid requests: what is wrong with it
    expect: tuple = ()  # for invalid requests: the codes / statuses that are right
    problem: str = ""   # set when the result is wrong


class SwapLog:
    """When each adapter was unloaded (from just before UnloadAdapter to just after the reload)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.windows: list[tuple[str, float, float]] = []
        self.open: dict[str, float] = {}
        self.counts = {"new-version": 0, "unload-reload": 0}
        self.problems: list[str] = []

    def unloaded(self, name: str, start: float, end: float) -> bool:
        with self._lock:
            if name in self.open and self.open[name] <= end:
                return True
            return any(n == name and a <= end and b >= start for n, a, b in self.windows)


# ---- the requests -----------------------------------------------------------------------------

class Traffic:
    """Makes and runs one random request; returns its Outcome."""

    def __init__(self, server: h.ServerProcess, args, vocab: int):
        self.server, self.args, self.vocab = server, args, vocab
        self.channels = [grpc.insecure_channel(server.target) for _ in range(4)]
        self.prefixes = [[r.randrange(3, vocab) for _ in range(32)] for r in map(random.Random, range(16))]

    def close(self):
        for c in self.channels:
            c.close()

    def one(self, rng: random.Random) -> Outcome:
        kind = rng.choices(["normal", "invalid", "cancel", "deadline", "disconnect"],
                           weights=[55, 6, 13, 13, 13])[0]
        tenant = rng.choice(list(TENANTS))
        names = [n for n, _ in TENANTS[tenant]]
        adapter = rng.choice(names + [""]) if names else ""
        if kind == "deadline":
            api = rng.choice(["grpc-unary", "grpc-stream"])
        elif kind == "cancel":
            api = rng.choice(["grpc-stream", "http-stream"])
        else:
            api = rng.choice(["grpc-unary", "grpc-stream", "http-json", "http-stream"])
        o = Outcome(kind, api, tenant, adapter, time.monotonic())
        req = self._request(rng, kind, adapter, api.endswith("stream"))
        o.group = "beam" if "beam" in req else "best_of" if "best_of" in req else "n" if "n" in req else ""
        key = KEYS[tenant]
        if kind == "invalid":
            req, key, o.expect = self._spoil(rng, req, tenant, o)
        o.shape = json.dumps({k: v for k, v in req.items() if k != "adapter"})
        try:
            if api.startswith("grpc"):
                self._grpc(rng, o, req, key)
            else:
                self._http(rng, o, req, key)
        except Exception as e:  # noqa: BLE001 - every surprise is an outcome to report
            o.result, o.message = "exception", f"{type(e).__name__}: {e}"
        o.end = time.monotonic()
        return o

    # -- what to ask for
    def _request(self, rng, kind, adapter, stream: bool) -> dict:
        long = kind in ("cancel", "deadline", "disconnect")
        if rng.random() < 0.3:
            prompt = {"text": " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 20)))}
        else:
            ids = rng.choice(self.prefixes)[:rng.randint(0, 32)]
            ids += [rng.randrange(3, self.vocab) for _ in range(rng.randint(1, 24))]
            prompt = {"ids": ids}
        req = {"adapter": adapter, "prompt": prompt, "ignore_eos": long or rng.random() < 0.8,
               "max_tokens": rng.randint(150, 400) if long else rng.randint(1, 16)}
        if rng.random() < 0.4:
            req["temperature"], req["seed"] = rng.choice([0.5, 1.0]), rng.randrange(1 << 32)
        if rng.random() < 0.15:
            _group(rng, req, stream)
        return req

    def _spoil(self, rng, req, tenant, o):
        """An invalid variant of req: (request, key, allowed results)."""
        what = rng.choice(["unknown-adapter", "other-tenant", "too-long", "bad-key"])
        o.variant = what
        if what == "unknown-adapter":
            req["adapter"] = "no-such-adapter"
            return req, KEYS[tenant], ("NOT_FOUND", "http-404")
        if what == "other-tenant":
            others = [n for t, a in TENANTS.items() if t != tenant for n, _ in a]
            req["adapter"] = rng.choice(others)
            return req, KEYS[tenant], ("NOT_FOUND", "http-404")
        if what == "too-long":
            req["max_tokens"] = 100000
            return req, KEYS[tenant], ("INVALID_ARGUMENT", "http-400")
        return req, "not-a-valid-key-0001", ("UNAUTHENTICATED", "http-401")

    # -- gRPC
    def _grpc(self, rng, o: Outcome, req: dict, key: str):
        r = pb.GenerateRequest(adapter=req["adapter"])
        if "text" in req["prompt"]:
            r.text = req["prompt"]["text"]
        else:
            r.token_ids.ids.extend(req["prompt"]["ids"])
        r.stopping.max_tokens = req["max_tokens"]
        r.stopping.ignore_eos = req["ignore_eos"]
        if "seed" in req:
            r.sampling.temperature, r.sampling.seed = req["temperature"], req["seed"]
        r.n, r.best_of, r.beam.beam_width = req.get("n", 0), req.get("best_of", 0), req.get("beam", 0)
        own = o.kind == "disconnect"
        channel = grpc.insecure_channel(self.server.target) if own else rng.choice(self.channels)
        timeout = rng.uniform(0.001, 0.05) if o.kind == "deadline" else self.args.request_timeout_s
        md = h.bearer(key)
        try:
            if o.api == "grpc-unary":
                self._grpc_unary(rng, o, channel, r, md, timeout, req)
            else:
                self._grpc_stream(rng, o, channel, r, md, timeout, req)
        except grpc.RpcError as e:
            o.result, o.message = e.code().name, e.details() or ""
        finally:
            if own:
                channel.close()

    def _grpc_unary(self, rng, o, channel, r, md, timeout, req):
        stub = h.generation_pb2_grpc.GenerationStub(channel)
        if o.kind == "disconnect":
            fut = stub.Generate.future(r, metadata=md, timeout=timeout)
            time.sleep(rng.uniform(0, 0.05))
            channel.close()
            resp = fut.result()
        else:
            resp = stub.Generate(r, metadata=md, timeout=timeout)
        choices = {c.index: (len(c.token_ids), FINISH[c.finish_reason]) for c in resp.choices}
        _check(o, req, choices or {0: (len(resp.token_ids), FINISH[resp.finish_reason])},
               resp.usage.completion_tokens)

    def _grpc_stream(self, rng, o, channel, r, md, timeout, req):
        stub = h.generation_pb2_grpc.GenerationStub(channel)
        call = stub.GenerateStream(r, metadata=md, timeout=timeout)
        stop_after = rng.randint(1, 4) if o.kind in ("cancel", "disconnect") else None
        n, tokens, finish, usage = 0, {}, {}, None
        for msg in call:
            n += 1
            tokens[msg.index] = tokens.get(msg.index, 0) + len(msg.token_ids)
            if msg.finish_reason:
                finish.setdefault(msg.index, []).append(FINISH[msg.finish_reason])
            if msg.HasField("usage"):
                usage = msg.usage.completion_tokens
            if stop_after is not None and n == stop_after:
                if o.kind == "cancel":
                    call.cancel()
                else:
                    channel.close()
        _check(o, req, _one_finish(o, tokens, finish), usage)

    # -- HTTP
    def _http(self, rng, o: Outcome, req: dict, key: str):
        p = req["prompt"]
        body = {"model": req["adapter"] or MODEL_NAME, "prompt": p.get("text", p.get("ids")),
                "max_tokens": req["max_tokens"], "ignore_eos": req["ignore_eos"]}
        if "seed" in req:
            body["temperature"], body["seed"] = req["temperature"], req["seed"]
        for k, name in (("n", "n"), ("best_of", "best_of"), ("beam", "beam_width")):
            if k in req:
                body[name] = req[k]
        if o.api == "http-stream":
            body["stream"], body["stream_options"] = True, {"include_usage": True}
        conn = http.client.HTTPConnection("127.0.0.1", self.server.http_port, timeout=self.args.request_timeout_s)
        try:
            conn.request("POST", "/v1/completions", body=json.dumps(body),
                         headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
            if o.kind == "disconnect" and o.api == "http-json":
                time.sleep(rng.uniform(0, 0.05))  # hang up before (or while) the answer comes
                _reset(conn)
                o.result = "closed"
                return
            resp = conn.getresponse()
            if resp.status != 200:
                _http_error(o, resp)
            elif o.api == "http-json":
                _http_json(o, req, json.loads(resp.read()))
            else:
                self._http_stream(rng, o, req, resp, conn)
        finally:
            conn.close()

    def _http_stream(self, rng, o, req, resp, conn):
        stop_after = rng.randint(1, 4) if o.kind in ("cancel", "disconnect") else None
        events = []
        for line in resp:
            line = line.decode().rstrip("\n")
            if not line:
                continue
            if not line.startswith("data: "):
                o.result, o.message = "bad-sse", line[:200]
                return
            payload = line[len("data: "):]
            events.append(payload if payload == "[DONE]" else json.loads(payload))
            if stop_after is not None and len(events) == stop_after and payload != "[DONE]":
                if o.kind == "disconnect":
                    _reset(conn, resp)
                else:
                    resp.close()
                    conn.close()
                o.result = "closed"
                return
        _http_stream_result(o, req, events)


def _group(rng: random.Random, req: dict, stream: bool):
    """Makes req a sequence group: n samples, best_of, or beam search (they share KV blocks).
    best_of above n is not streamed: HTTP refuses it (400), and gRPC streams every candidate, not
    the best (docs/hardening.md, "Soak")."""
    pick = rng.random()
    if pick < 0.8:
        req["temperature"], req["seed"] = 1.0, rng.randrange(1 << 32)
        if pick < 0.5 or stream:
            req["n"] = rng.randint(2, 4)
        else:
            req["n"] = rng.randint(1, 2)
            req["best_of"] = rng.randint(req["n"] + 1, 4)
    else:
        req.pop("temperature", None)
        req.pop("seed", None)
        req["beam"] = rng.randint(2, 4)
        req["n"] = rng.randint(1, req["beam"])
    req["max_tokens"] = min(req["max_tokens"], 100)  # 4 sequences must fit in the KV cache


WORDS = ("hello world the capital of france is paris numbers and symbols one two three "
         "soak test tenant adapter stream cancel deadline").split()


def _reset(conn: http.client.HTTPConnection, resp=None):
    """Closes the connection with a TCP reset (SO_LINGER 0) rather than a FIN. The socket closes
    only once the response's file object is closed too."""
    if conn.sock is not None:
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    if resp is not None:
        resp.close()
    conn.close()


FINISH = {pb.FINISH_REASON_UNSPECIFIED: "", pb.FINISH_REASON_LENGTH: "length", pb.FINISH_REASON_STOP: "stop",
          pb.FINISH_REASON_EOS: "stop", pb.FINISH_REASON_CANCELLED: "cancelled"}


def _one_finish(o: Outcome, tokens: dict, finishes: dict) -> dict:
    """{index: (tokens or None, finish reason)} from a stream; a problem unless each index that
    finished did so exactly once."""
    if any(len(f) != 1 for f in finishes.values()):
        o.problem = f"finish reasons per choice: {finishes}"
    return {i: (tokens.get(i), f[0]) for i, f in finishes.items()}


def _check(o: Outcome, req: dict, choices: dict, usage_tokens: Optional[int]):
    """A whole result: n choices, each with max_tokens tokens and finish "length" under ignore_eos
    (else 1..max_tokens, "length" or "stop"); usage counts the tokens returned (n samples only:
    best_of and beam search count the sequences they dropped too)."""
    o.result = "ok"
    if o.problem:
        return
    n, most = req.get("n", 1), req["max_tokens"]
    if sorted(choices) != list(range(n)):
        o.problem = f"choices {sorted(choices)}; want {n}"
        return
    for i, (tokens, finish) in sorted(choices.items()):
        if req["ignore_eos"]:
            good = finish == "length" and tokens in (None, most)
        else:
            good = finish in ("length", "stop") and (tokens is None or 1 <= tokens <= most)
        if not good:
            o.problem = (f"choice {i}: {tokens} tokens, finish {finish!r}; max_tokens {most}, "
                         f"ignore_eos {req['ignore_eos']}")
            return
    if "best_of" in req or "beam" in req:
        return
    known = [t for t, _ in choices.values() if t is not None]
    want = sum(known) if len(known) == n else (n * most if req["ignore_eos"] else None)
    if usage_tokens is None or (want is not None and usage_tokens != want) or not n <= usage_tokens <= n * most:
        o.problem = f"usage says {usage_tokens} tokens; want {want if want is not None else f'{n}..{n * most}'}"


def _http_error(o: Outcome, resp):
    o.result = f"http-{resp.status}"
    raw = resp.read()
    try:
        err = json.loads(raw)["error"]
        o.message = err["message"]
        if not (err["message"] and err["type"] and err["code"] is not None):
            o.problem = f"incomplete error body {raw[:200]!r}"
    except (ValueError, KeyError, TypeError):
        o.problem = f"status {resp.status} without an OpenAI error body: {raw[:200]!r}"


def _http_json(o: Outcome, req: dict, body: dict):
    choices = {c["index"]: (None, c["finish_reason"]) for c in body["choices"]}
    if len(choices) != len(body["choices"]):
        o.problem = f"repeated choice indexes: {[c['index'] for c in body['choices']]}"
    _check(o, req, choices, body["usage"]["completion_tokens"])


def _http_stream_result(o: Outcome, req: dict, events: list):
    o.result = "ok"
    if not events or events[-1] != "[DONE]":
        o.problem = f"stream did not end with [DONE]: {str(events[-2:])[:200]}"
        return
    errors = [e for e in events[:-1] if "error" in e]
    if errors:
        o.result, o.message = "stream-error", str(errors[0])[:300]
        return
    finishes: dict = {}
    for e in events[:-1]:
        for c in e["choices"]:
            if c.get("finish_reason"):
                finishes.setdefault(c["index"], []).append(c["finish_reason"])
    usage = (events[-2].get("usage") or {}).get("completion_tokens")
    _check(o, req, _one_finish(o, {}, finishes), usage)


# ---- judging an outcome -----------------------------------------------------------------------

# What each kind of request may end with (besides NOT_FOUND / 404 while its adapter is unloaded).
ALLOWED = {
    "normal": {"ok"},
    "cancel": {"ok", "closed", "CANCELLED"},           # ok: it ended before the cancel
    "deadline": {"ok", "DEADLINE_EXCEEDED"},
    "disconnect": {"ok", "closed", "CANCELLED"},
}


def judge(o: Outcome, swaps: SwapLog, request_timeout: float) -> str:
    """'' when the outcome is allowed for what the request did, else what is wrong."""
    if o.problem:
        return o.problem
    if o.end - o.start > request_timeout + 5:
        return f"took {o.end - o.start:.1f} s (limit {request_timeout} s)"
    if o.result in ("INVALID_ARGUMENT", "http-400") and "KV blocks; the pool has" in o.message:
        return ""  # more than the whole KV pool (a small --kv-blocks): refused before it runs
    if o.kind == "invalid" and o.result in o.expect:
        return "" if o.message else "status without a message"
    if o.result in ALLOWED.get(o.kind, ()):
        return "" if o.result in ("ok", "closed") or o.message else "status without a message"
    if o.result in ("NOT_FOUND", "http-404") and o.adapter and "unknown adapter" in o.message:
        if swaps.unloaded(o.adapter, o.start, o.end):
            return ""
        return "NOT_FOUND while its adapter was loaded"
    if o.kind == "invalid":
        return f"want one of {o.expect}"
    return f"{o.result} not allowed for a {o.kind} request"


# ---- the swapper and the monitor --------------------------------------------------------------

def swapper(server: h.ServerProcess, versions: dict, swaps: SwapLog, stop: threading.Event,
            interval: float, rng: random.Random):
    """Every `interval` s: loads the other version of a random adapter, or unloads and reloads it."""
    owner = {n: t for t, a in TENANTS.items() for n, _ in a}
    current = {n: 0 for n in versions}
    with server.client(ADMIN_KEY) as admin:
        while not stop.wait(interval):
            name = rng.choice(sorted(versions))
            try:
                if rng.random() < 0.6:
                    current[name] ^= 1
                    admin.load_adapter(name, owner[name], versions[name][current[name]], timeout=60)
                    swaps.counts["new-version"] += 1
                else:
                    _unload_reload(admin, name, owner[name], versions[name][current[name]], swaps, rng)
                    swaps.counts["unload-reload"] += 1
            except Exception as e:  # noqa: BLE001
                swaps.problems.append(f"swap of {name}: {type(e).__name__}: {e}")


def _unload_reload(admin, name, tenant, path, swaps: SwapLog, rng):
    with swaps._lock:
        swaps.open[name] = time.monotonic()
    admin.unload_adapter(name)
    time.sleep(rng.uniform(0, 0.2))
    admin.load_adapter(name, tenant, path, timeout=60)
    with swaps._lock:
        swaps.windows.append((name, swaps.open.pop(name), time.monotonic()))


@dataclass
class Samples:
    rss_kb: list = field(default_factory=list)  # (time, KiB)
    problems: list = field(default_factory=list)


def monitor(server: h.ServerProcess, samples: Samples, stop: threading.Event):
    """Every 0.5 s: VmRSS, the process alive, /readyz 200."""
    while not stop.wait(0.5):
        if not server.alive():
            samples.problems.append(f"the server exited with {server.proc.returncode} during the run")
            return
        samples.rss_kb.append((time.monotonic(), server.rss_kb()))
        try:
            status, body = http_get(server, "/readyz")
            if status != 200:
                samples.problems.append(f"/readyz answered {status} {body[:100]!r}")
        except OSError as e:
            samples.problems.append(f"/readyz: {e}")


def http_get(server: h.ServerProcess, path: str, timeout: float = 10) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=timeout)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read().decode()
    finally:
        conn.close()


def metric_sums(text: str, name: str, label: str) -> dict:
    """The series of a counter summed by one label: {label value: total}."""
    out: dict = {}
    for labels, value in re.findall(rf"^{name}{{(.*)}} (\S+)$", text, re.M):
        m = re.search(rf'{label}="([^"]*)"', labels)
        if m:
            out[m.group(1)] = out.get(m.group(1), 0) + int(float(value))
    return dict(sorted(out.items()))


def metric(text: str, name: str) -> float:
    m = re.search(rf"^{name}(?:{{}})? (\S+)$", text, re.M)
    if not m:
        raise AssertionError(f"/metrics has no {name}")
    return float(m.group(1))


# ---- the run ----------------------------------------------------------------------------------

BAD_OUTPUT = re.compile(r"Sanitizer|runtime error:|terminate called|Aborted|Check failed|Segmentation fault|"
                        r"SIGSEGV|SIGABRT|double free|heap-use-after-free|^F\d{4} ", re.M)


@dataclass
class Report:
    outcomes: list
    swaps: SwapLog
    samples: Samples
    seconds: float
    idle: dict = field(default_factory=dict)
    problems: list = field(default_factory=list)  # every failed check, with details

    def counts(self) -> dict:
        out: dict = {}
        for o in self.outcomes:
            k = f"{o.kind} {o.api} {o.result}"
            out[k] = out.get(k, 0) + 1
        return dict(sorted(out.items()))

    def groups(self) -> dict:
        """Sequence groups that ended OK and were checked whole, by kind (n, best_of, beam)."""
        out: dict = {}
        for o in self.outcomes:
            if o.group and o.result == "ok":
                out[o.group] = out.get(o.group, 0) + 1
        return dict(sorted(out.items()))

    def messages(self) -> dict:
        """One message per result that carries one (the first seen)."""
        out: dict = {}
        for o in self.outcomes:
            if o.message and o.result not in ("ok", "closed"):
                out.setdefault(f"{o.kind} {o.result}", o.message[:160])
        return dict(sorted(out.items()))


def run_soak(args, workdir: pathlib.Path) -> Report:
    fx = make_fixtures(workdir / "fixtures", args.seed)
    server = h.ServerProcess(fx["model"], fx["config"], workdir / "server", "--adapter-root", str(workdir),
                             "--kv-cache-blocks", str(args.kv_blocks), "--block-size", "16",
                             "--threads", str(args.threads))
    try:
        return _drive(server, fx, args)
    finally:
        server.stop()


def _drive(server: h.ServerProcess, fx: dict, args) -> Report:
    with server.client(KEYS["t0"]) as c:
        vocab = c.model_info().vocab_size
    traffic, swaps, samples = Traffic(server, args, vocab), SwapLog(), Samples()
    stop_aux, outcomes, lock = threading.Event(), [], threading.Lock()
    t0 = time.monotonic()
    deadline = t0 + args.duration_s
    issued = [0]

    def worker(i: int):
        rng = random.Random(args.seed * 1000 + i)
        while time.monotonic() < deadline:
            with lock:
                if issued[0] >= args.requests:
                    return
                issued[0] += 1
            o = traffic.one(rng)
            with lock:
                outcomes.append(o)

    aux = [threading.Thread(target=monitor, args=(server, samples, stop_aux), daemon=True),
           threading.Thread(target=swapper, args=(server, fx["versions"], swaps, stop_aux, args.swap_interval_s,
                                                  random.Random(args.seed)), daemon=True)]
    workers = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(args.concurrency)]
    for t in aux + workers:
        t.start()
    problems = []
    for t in workers:
        t.join(timeout=max(1.0, deadline - time.monotonic()) + args.request_timeout_s + 30)
        if t.is_alive():
            problems.append(f"worker {t.name} still running {args.request_timeout_s + 30} s after the end")
    seconds = time.monotonic() - t0
    stop_aux.set()
    for t in aux:
        t.join(timeout=90)
    traffic.close()
    report = Report(outcomes, swaps, samples, seconds, problems=problems)
    _check_after(server, report, args)
    return report


def _check_after(server: h.ServerProcess, report: Report, args):
    p = report.problems
    for o in report.outcomes:
        why = judge(o, report.swaps, args.request_timeout_s)
        if why:
            what = o.kind + (f"/{o.variant}" if o.variant else "")
            p.append(f"{what} {o.api} {o.tenant}/{o.adapter or 'base'}: {o.result} {o.message[:200]!r}: {why}; "
                     f"request {o.shape}")
    p += report.swaps.problems + report.samples.problems
    if not server.alive():
        p.append(f"the server is gone (exit {server.proc.returncode})")
        return
    report.idle = _idle_state(server, p)
    _check_rss(report, args)
    server.sigterm()
    try:
        code = server.wait(60)
        if code != 0:
            p.append(f"SIGTERM: exit status {code}")
    except Exception:  # noqa: BLE001
        p.append("SIGTERM: still running after 60 s")
    bad = BAD_OUTPUT.findall(server.log())
    if bad:
        p.append(f"server output has {len(bad)} bad lines, first: {bad[0]!r}")


def _idle_state(server: h.ServerProcess, p: list) -> dict:
    """Waits (30 s at most) for an idle server; checks Admin stats, /metrics and adapter leases."""
    try:
        s = h.wait_idle(server, timeout=30)
    except AssertionError as e:
        p.append(f"not idle: {e}")
        s = h.stats(server)
    status, text = http_get(server, "/metrics")
    free, total = metric(text, "para_kv_cache_free_blocks"), metric(text, "para_kv_cache_blocks")
    running, waiting = metric(text, "para_num_requests_running"), metric(text, "para_num_requests_waiting")
    if status != 200 or free != total or running or waiting:
        p.append(f"/metrics at idle: {status}, free {free} of {total} blocks, running {running}, waiting {waiting}")
    with server.client(ADMIN_KEY) as admin:
        leases = {a.name: (a.in_flight, a.retired_in_flight) for a in admin.list_adapters()}
    if any(v != (0, 0) for v in leases.values()):
        p.append(f"adapter leases left (in_flight, retired_in_flight): {leases}")
    if http_get(server, "/readyz")[0] != 200:
        p.append("/readyz not 200 at the end")
    return {"kv_blocks_total": s.kv_blocks_total, "kv_blocks_free": s.kv_blocks_free,
            "prefix_cache_blocks": s.prefix_cache_blocks, "in_flight": s.requests_in_flight,
            "preemptions": s.preemptions, "metrics_free": free, "metrics_total": total,
            "adapters": len(leases),
            "finish_reasons": metric_sums(text, "para_requests_total", "finish_reason"),
            "error_codes": metric_sums(text, "para_request_errors_total", "code")}


def rss_quarters(report: Report) -> tuple[int, int, int, int, int]:
    """(first sample, peak of the first quarter, peak of the last quarter, peak, last) in KiB."""
    rss = report.samples.rss_kb
    if not rss:
        return 0, 0, 0, 0, 0
    t0, t1 = rss[0][0], rss[-1][0]
    q = (t1 - t0) / 4
    first = max(kb for t, kb in rss if t <= t0 + q)
    last = max(kb for t, kb in rss if t >= t1 - q)
    return rss[0][1], first, last, max(kb for _, kb in rss), rss[-1][1]


def _check_rss(report: Report, args):
    start, first, last, peak, end = rss_quarters(report)
    if len(report.samples.rss_kb) < 8:
        report.problems.append(f"only {len(report.samples.rss_kb)} RSS samples (0.5 s apart): too short a run to "
                               f"judge memory; send more requests")
    if last > first + args.rss_growth_mb * 1024:
        report.problems.append(f"RSS grew: last quarter's peak {last} KiB, first quarter's {first} KiB "
                               f"(allowed +{args.rss_growth_mb} MiB)")
    if peak > args.rss_cap_mb * 1024:
        report.problems.append(f"RSS peak {peak} KiB over the cap {args.rss_cap_mb} MiB")


# ---- the summary ------------------------------------------------------------------------------

def percentile(values: list, q: float) -> float:
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))]


def summary(report: Report, args) -> str:
    oks = [o.end - o.start for o in report.outcomes if o.kind == "normal" and o.result == "ok"]
    start, first, last, peak, end = rss_quarters(report)
    lines = [f"soak: {len(report.outcomes)} requests in {report.seconds:.1f} s "
             f"({len(report.outcomes) / max(report.seconds, 1e-9):.1f}/s), seed {args.seed}, "
             f"concurrency {args.concurrency}",
             f"swaps: {report.swaps.counts['new-version']} new versions, "
             f"{report.swaps.counts['unload-reload']} unload+reload",
             f"sequence groups answered whole: {report.groups()}",
             f"normal OK latency: p50 {percentile(oks, 0.5) * 1000:.1f} ms, p99 {percentile(oks, 0.99) * 1000:.1f} ms "
             f"({len(oks)} requests)",
             f"RSS MiB: start {start / 1024:.1f}, first-quarter peak {first / 1024:.1f}, "
             f"last-quarter peak {last / 1024:.1f}, peak {peak / 1024:.1f}, end {end / 1024:.1f} "
             f"({len(report.samples.rss_kb)} samples)",
             f"idle: {json.dumps(report.idle)}",
             "outcomes (kind api result: count):"]
    lines += [f"  {k}: {v}" for k, v in report.counts().items()]
    lines.append("a message of each status:")
    lines += [f"  {k}: {v!r}" for k, v in report.messages().items()]
    lines.append(f"problems: {len(report.problems)}")
    lines += [f"  {p}" for p in report.problems[:50]]
    return "\n".join(lines)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=10000, help="stop after this many requests")
    ap.add_argument("--duration-s", type=float, default=3600, help="stop after this many seconds")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--concurrency", type=int, default=16, help="client threads")
    ap.add_argument("--swap-interval-s", type=float, default=0.5, help="time between adapter hot-swaps")
    ap.add_argument("--request-timeout-s", type=float, default=60, help="a request taking longer has hung")
    ap.add_argument("--rss-growth-mb", type=float, default=32,
                    help="the last quarter's RSS peak may exceed the first quarter's by this much")
    ap.add_argument("--rss-cap-mb", type=float, default=256, help="RSS may never exceed this")
    ap.add_argument("--kv-blocks", type=int, default=64,
                    help="--kv-cache-blocks (16 positions each; 64 is small enough for preemptions)")
    ap.add_argument("--threads", type=int, default=2, help="the server's compute threads")
    ap.add_argument("--server", default=os.environ.get("PARA_SERVER"), help="default: $PARA_SERVER")
    ap.add_argument("--tool", default=os.environ.get("PARA_TOOL"), help="default: $PARA_TOOL")
    ap.add_argument("--workdir", help="keep fixtures and the server log here (default: a temporary dir)")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if not args.server or not args.tool:
        print("soak: need --server and --tool (or $PARA_SERVER, $PARA_TOOL)", file=sys.stderr)
        return 2
    h.SERVER, h.TOOL = args.server, args.tool
    with tempfile.TemporaryDirectory(prefix="para-soak-") as tmp:
        workdir = pathlib.Path(args.workdir or tmp)
        report = run_soak(args, workdir)
        print(summary(report, args))
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
