"""Every status code a user can get, each from a real request, with a message that names the
problem: INVALID_ARGUMENT, NOT_FOUND, PERMISSION_DENIED, UNAUTHENTICATED, RESOURCE_EXHAUSTED (full
queues; an oversize message). UNAVAILABLE (drain), DEADLINE_EXCEEDED and CANCELLED are covered
in test_server_lifecycle.py; a client-side cancel is checked here too."""
import types

import grpc
import pytest

import server_harness as h
from server_harness import admin_pb2, admin_pb2_grpc, generation_pb2, generation_pb2_grpc

pytestmark = h.requires_binaries

LONG = 8000


def fails(call, code, *substrings):
    """call() fails with `code` and a message holding every substring; returns the message."""
    with pytest.raises(h.GenerationError) as e:
        r = call()
        if isinstance(r, types.GeneratorType):  # a stream: the error comes while iterating
            list(r)
    assert e.value.code == code, f"expected {code.name}, got {e.value.code.name}: {e.value.message}"
    for s in substrings:
        assert s in e.value.message, f"{s!r} not in {e.value.message!r}"
    return e.value.message


# ---- INVALID_ARGUMENT ---------------------------------------------------------------------------

@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
def test_invalid_argument_bad_params(server, stream):
    with server.client(h.KEYS["acme"]) as c:
        call = c.stream if stream else c.generate
        fails(lambda: call("hi", temperature=-1.0), grpc.StatusCode.INVALID_ARGUMENT, "temperature")
        fails(lambda: call("hi", top_p=1.5), grpc.StatusCode.INVALID_ARGUMENT, "top_p")
        fails(lambda: call("hi", max_tokens=0), grpc.StatusCode.INVALID_ARGUMENT, "max_tokens")


def test_invalid_argument_prompt_longer_than_context(server):
    with server.client(h.KEYS["acme"]) as c:
        info = c.model_info()
        fails(lambda: c.generate(token_ids=[1] + [7] * info.max_model_len, max_tokens=1),
              grpc.StatusCode.INVALID_ARGUMENT, f"prompt has {info.max_model_len + 1} tokens", "context")
        long_text = "hello world " * 200  # far more than 512 tokens
        assert len(c.tokenize(long_text).ids) > info.max_model_len
        fails(lambda: c.generate(long_text, max_tokens=1), grpc.StatusCode.INVALID_ARGUMENT, "context")
        # Fits, but max_tokens asks for more than the context leaves.
        fails(lambda: c.generate(token_ids=[1] * 500, max_tokens=13), grpc.StatusCode.INVALID_ARGUMENT,
              "max_tokens must be in [1, 12]")
        r = c.generate(token_ids=[1] * 500, max_tokens=12, ignore_eos=True)
        assert len(r.token_ids) == 12


def test_invalid_argument_empty_prompt(server):
    with server.client(h.KEYS["acme"]) as c:
        fails(lambda: c.generate(""), grpc.StatusCode.INVALID_ARGUMENT, "prompt text is empty")


# ---- NOT_FOUND / PERMISSION_DENIED / UNAUTHENTICATED ---------------------------------------------

def test_not_found_unknown_adapter(server):
    with server.client(h.KEYS["acme"]) as c:
        fails(lambda: c.generate("hi", adapter="no-such-adapter"), grpc.StatusCode.NOT_FOUND, "no-such-adapter")
        fails(lambda: c.stream("hi", adapter="no-such-adapter"), grpc.StatusCode.NOT_FOUND, "no-such-adapter")


def test_another_tenants_adapter_is_answered_as_an_unknown_one(server):
    """A tenant cannot tell another tenant's adapter name from one that does not exist."""
    with server.client(h.KEYS["acme"]) as c:
        fails(lambda: c.generate("hi", adapter="initech-lora"), grpc.StatusCode.NOT_FOUND,
              "unknown adapter 'initech-lora'")
        fails(lambda: c.stream("hi", adapter="globex-para"), grpc.StatusCode.NOT_FOUND,
              "unknown adapter 'globex-para'")
        c.generate("hi", adapter="acme-para", max_tokens=2)  # its own adapter is fine


def test_permission_denied_tenant_key_on_admin_api(server):
    with server.client(h.KEYS["umbrella"]) as c:
        fails(c.server_stats, grpc.StatusCode.PERMISSION_DENIED, "admin")
    with server.client(h.ADMIN_KEY) as a:
        s = a.server_stats()
    assert s.kv_blocks_total == 512 and s.block_size == 16


@pytest.mark.parametrize("metadata,message", [
    ((), "missing API key"),
    ((("authorization", "Bearer wrong-key-123"),), "unknown API key"),
    ((("authorization", f"Bearer {h.KEYS['acme']}x"),), "unknown API key"),
    ((("authorization", h.KEYS["acme"]),), "missing API key"),  # no "Bearer " scheme
    ((("authorization", "Bearer "),), "missing API key"),
], ids=["no-key", "wrong-key", "key-prefix", "no-scheme", "empty-bearer"])
def test_unauthenticated(server, metadata, message):
    with server.channel() as ch:
        gen = generation_pb2_grpc.GenerationStub(ch)
        calls = {
            "Generate": lambda: gen.Generate(h.Client.request("hi"), metadata=metadata, timeout=10),
            "GenerateStream": lambda: list(gen.GenerateStream(h.Client.request("hi"), metadata=metadata, timeout=10)),
            "Tokenize": lambda: gen.Tokenize(generation_pb2.TokenizeRequest(text="hi"), metadata=metadata, timeout=10),
            "ModelInfo": lambda: gen.ModelInfo(generation_pb2.ModelInfoRequest(), metadata=metadata, timeout=10),
            "GetServerStats": lambda: admin_pb2_grpc.AdminStub(ch).GetServerStats(
                admin_pb2.GetServerStatsRequest(), metadata=metadata, timeout=10),
        }
        for name, call in calls.items():
            with pytest.raises(grpc.RpcError) as e:
                call()
            assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED, name
            assert message in e.value.details(), (name, e.value.details())
            assert h.KEYS["acme"] not in e.value.details()  # keys are never echoed


# ---- RESOURCE_EXHAUSTED ---------------------------------------------------------------------------

def test_resource_exhausted_oversize_message(server):
    with server.client(h.KEYS["acme"]) as c:
        fails(lambda: c.generate("x" * (5 << 20)), grpc.StatusCode.RESOURCE_EXHAUSTED, "larger than max")
        assert c.generate("hi", max_tokens=2).usage.completion_tokens >= 1


def test_resource_exhausted_oversize_message_with_lower_limit(tiny_model, tenants_config, start_server):
    s = start_server(tiny_model, tenants_config, "--max-message-bytes", 4096, "--kv-cache-blocks", 64)
    with s.client(h.KEYS["acme"]) as c:
        fails(lambda: c.generate("x" * 5000, max_tokens=1), grpc.StatusCode.RESOURCE_EXHAUSTED, "larger than max")
        # 3000 ids of two varint bytes each: over 4096 bytes.
        fails(lambda: c.generate(token_ids=[300] * 3000, max_tokens=1), grpc.StatusCode.RESOURCE_EXHAUSTED,
              "larger than max")
        assert len(c.generate("x" * 400, max_tokens=1, ignore_eos=True).token_ids) == 1


@pytest.fixture
def queue_server(slow_model, slow_config, start_server):
    """One running sequence at most; at most 2 waiting per tenant and 3 in all."""
    return start_server(slow_model, slow_config, "--kv-cache-blocks", 2048, "--max-num-seqs", 1,
                        "--max-waiting", 3, "--max-waiting-per-tenant", 2, name="queue")


def test_resource_exhausted_when_the_queues_are_full(queue_server):
    s = queue_server
    req = h.Client.request(token_ids=[1, 5, 9], max_tokens=LONG, ignore_eos=True)
    with s.channel() as ch:
        stub = generation_pb2_grpc.GenerationStub(ch)
        key = lambda t: h.bearer(h.KEYS[t])  # noqa: E731
        running = stub.GenerateStream(req, metadata=key("acme"))
        next(running)
        assert h.stats(s).requests_running == 1

        # A flood from one tenant: exactly its 2 queue places are taken, the rest are refused.
        flood = [stub.Generate.future(req, metadata=key("acme")) for _ in range(8)]
        h.wait_until(lambda: sum(f.done() for f in flood) == 6, 10, what="6 of 8 requests to be refused")
        refused = [f for f in flood if f.done()]
        for f in refused:
            assert f.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, f.details()
            assert "tenant 'acme' has 2 requests waiting (limit 2)" in f.details()
        st = h.stats(s)
        assert (st.requests_running, st.requests_waiting) == (1, 2)

        # Another tenant takes the last global place; then the whole server is full.
        other = stub.Generate.future(req, metadata=key("globex"))
        h.wait_until(lambda: h.stats(s).requests_waiting == 3, 5, what="the third waiting request")
        with pytest.raises(grpc.RpcError) as e:
            stub.Generate(req, metadata=key("globex"), timeout=10)
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "overloaded" in e.value.details() and "limit 3" in e.value.details()
        with pytest.raises(grpc.RpcError) as e:
            list(stub.GenerateStream(req, metadata=key("umbrella"), timeout=10))
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "overloaded" in e.value.details()
        assert not other.done()

        # Cancelling everything empties the server; it serves again.
        running.cancel()
        other.cancel()
        for f in flood:
            f.cancel()
        h.wait_idle(s, timeout=10)
        r = stub.Generate(h.Client.request(token_ids=[1, 5], max_tokens=3, ignore_eos=True), metadata=key("acme"),
                          timeout=30)
        assert len(r.token_ids) == 3


def test_tenant_max_waiting_from_config(slow_model, tmp_path, start_server):
    """A tenant's own max_waiting (config) applies before the server-wide per-tenant default."""
    config = h.write_config(tmp_path / "tenants.json", {
        "acme": {"api_keys": [h.KEYS["acme"]], "max_waiting": 1},
        "globex": {"api_keys": [h.KEYS["globex"]]},
    })
    s = start_server(slow_model, config, "--kv-cache-blocks", 2048, "--max-num-seqs", 1)
    req = h.Client.request(token_ids=[1, 5, 9], max_tokens=LONG, ignore_eos=True)
    with s.channel() as ch:
        stub = generation_pb2_grpc.GenerationStub(ch)
        running = stub.GenerateStream(req, metadata=h.bearer(h.KEYS["globex"]))
        next(running)
        queued = stub.Generate.future(req, metadata=h.bearer(h.KEYS["acme"]))
        h.wait_until(lambda: h.stats(s).requests_waiting == 1, 5, what="a waiting request")
        with pytest.raises(grpc.RpcError) as e:
            stub.Generate(req, metadata=h.bearer(h.KEYS["acme"]), timeout=10)
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "tenant 'acme'" in e.value.details() and "limit 1" in e.value.details()
        queued2 = stub.Generate.future(req, metadata=h.bearer(h.KEYS["globex"]))  # globex still has room
        h.wait_until(lambda: h.stats(s).requests_waiting == 2, 5, what="globex's request to queue")
        for c in (running, queued, queued2):
            c.cancel()
        h.wait_idle(s, timeout=10)


# ---- CANCELLED (client side) ----------------------------------------------------------------------

def test_client_cancel_reports_cancelled(slow_server):
    with slow_server.channel() as ch:
        call = generation_pb2_grpc.GenerationStub(ch).GenerateStream(
            h.Client.request(token_ids=[1, 5, 9], max_tokens=LONG, ignore_eos=True), metadata=h.bearer(h.KEYS["acme"]))
        next(call)
        call.cancel()
        assert call.code() == grpc.StatusCode.CANCELLED
        assert "cancel" in call.details().lower()
    h.wait_idle(slow_server, timeout=5)
