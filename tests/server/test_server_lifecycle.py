"""Requests that end early and a server that ends: client cancellation and deadlines free the
request's KV blocks; SIGTERM drains (health NOT_SERVING, new requests UNAVAILABLE, in-flight
streams complete, exit 0), and what is still running when the grace period ends is cancelled by
the server (finish reason CANCELLED).

These run on the slow model: a full-length request there takes ~20 s, so anything that ends it
sooner is the cancellation, the deadline or the drain under test."""
import signal
import subprocess
import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

import server_harness as h
from server_harness import generation_pb2, generation_pb2_grpc

pytestmark = h.requires_binaries

LONG = 8000  # tokens: far longer than any test waits


def long_request(**kw):
    return h.Client.request(token_ids=[1, 5, 9, 13], max_tokens=LONG, ignore_eos=True, **kw)


def test_cancelling_a_stream_frees_its_blocks(slow_server):
    h.wait_idle(slow_server)
    with slow_server.channel() as ch:
        call = generation_pb2_grpc.GenerationStub(ch).GenerateStream(long_request(), metadata=h.bearer(h.KEYS["acme"]))
        got = 0
        for chunk in call:
            got += len(chunk.token_ids)
            if got >= 5:
                break
        running = h.stats(slow_server)
        assert running.requests_in_flight == 1 and running.kv_blocks_free < running.kv_blocks_total
        t0 = time.monotonic()
        call.cancel()
        with pytest.raises(grpc.RpcError) as e:
            for _ in call:
                pass
        assert e.value.code() == grpc.StatusCode.CANCELLED
        idle = h.wait_idle(slow_server, timeout=5)
        assert time.monotonic() - t0 < 5
    # It was removed from the batch, not run to the end: the engine stops stepping.
    steps = idle.engine_steps
    time.sleep(0.3)
    assert h.stats(slow_server).engine_steps == steps
    assert steps < LONG


def test_cancelling_a_unary_call_frees_its_blocks(slow_server):
    h.wait_idle(slow_server)
    with slow_server.channel() as ch:
        fut = generation_pb2_grpc.GenerationStub(ch).Generate.future(long_request(), metadata=h.bearer(h.KEYS["acme"]))
        h.wait_until(lambda: h.stats(slow_server).requests_running == 1, 5, what="the request to run")
        time.sleep(0.2)
        fut.cancel()
        assert fut.cancelled()
        h.wait_idle(slow_server, timeout=5)


@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
def test_deadline_expiry_ends_the_request_and_frees_its_blocks(slow_server, stream):
    h.wait_idle(slow_server)
    t0 = time.monotonic()
    with slow_server.client(h.KEYS["globex"]) as c:
        with pytest.raises(h.GenerationError) as e:
            if stream:
                for _ in c.stream(token_ids=[1, 5, 9, 13], max_tokens=LONG, ignore_eos=True, timeout=1.0):
                    pass
            else:
                c.generate(token_ids=[1, 5, 9, 13], max_tokens=LONG, ignore_eos=True, timeout=1.0)
    assert e.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "deadline" in e.value.message.lower()
    assert time.monotonic() - t0 < 4
    h.wait_idle(slow_server, timeout=5)
    with slow_server.client(h.KEYS["globex"]) as c:  # still serving
        r = c.generate(token_ids=[1, 5, 9, 13], max_tokens=8, ignore_eos=True, timeout=30)
    assert len(r.token_ids) == 8 and r.finish_reason == generation_pb2.FINISH_REASON_LENGTH
    h.wait_idle(slow_server)


def test_deadline_expiring_while_queued(slow_model, slow_config, start_server):
    """With one sequence slot busy, a queued request whose deadline passes gets DEADLINE_EXCEEDED
    and never holds blocks."""
    s = start_server(slow_model, slow_config, "--kv-cache-blocks", "2048", "--max-num-seqs", "1")
    with s.channel() as ch:
        stub = generation_pb2_grpc.GenerationStub(ch)
        blocker = stub.GenerateStream(long_request(), metadata=h.bearer(h.KEYS["acme"]))
        next(blocker)
        with pytest.raises(grpc.RpcError) as e:
            stub.Generate(long_request(), metadata=h.bearer(h.KEYS["globex"]), timeout=0.5)
        assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        h.wait_until(lambda: h.stats(s).requests_waiting == 0, 5, what="the expired request to leave the queue")
        assert h.stats(s).requests_in_flight == 1
        blocker.cancel()
        h.wait_idle(s, timeout=5)


def health_status(target: str) -> int:
    with grpc.insecure_channel(target) as ch:
        return health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status


def test_sigterm_drains_in_flight_streams_then_exits_0(slow_model, slow_config, start_server):
    grace = 60
    s = start_server(slow_model, slow_config, "--kv-cache-blocks", "2048", "--drain-grace-seconds", grace)
    n_streams, max_tokens = 3, 400
    results, errors, first = {}, {}, threading.Barrier(n_streams + 1)

    def consume(i):
        try:
            with s.client(h.KEYS["acme" if i % 2 else "globex"]) as c:
                chunks = []
                for chunk in c.stream(token_ids=[1, 20 + i, 30 + i], max_tokens=max_tokens, ignore_eos=True,
                                      timeout=120):
                    chunks.append(chunk)
                    if len(chunks) == 1:
                        first.wait(timeout=30)
                results[i] = chunks
        except BaseException as e:
            errors[i] = e
            first.abort()

    threads = [threading.Thread(target=consume, args=(i,)) for i in range(n_streams)]
    for t in threads:
        t.start()
    first.wait(timeout=30)  # every stream has produced its first chunk
    assert health_status(s.target) == health_pb2.HealthCheckResponse.SERVING
    t0 = time.monotonic()
    s.sigterm()

    # During the drain: NOT_SERVING, new work refused, the admin API still answers.
    h.wait_until(lambda: health_status(s.target) == health_pb2.HealthCheckResponse.NOT_SERVING, 5,
                 what="health NOT_SERVING after SIGTERM")
    during = h.stats(s)
    assert during.draining
    assert during.requests_in_flight > 0, "the streams ended before the drain could be observed"
    with s.client(h.KEYS["acme"]) as c:
        with pytest.raises(h.GenerationError) as e:
            c.generate(token_ids=[1, 2, 3], max_tokens=4)
        assert e.value.code == grpc.StatusCode.UNAVAILABLE
        assert "shutting down" in e.value.message
        with pytest.raises(h.GenerationError) as e:
            list(c.stream(token_ids=[1, 2, 3], max_tokens=4))
        assert e.value.code == grpc.StatusCode.UNAVAILABLE
    assert h.stats(s).requests_in_flight > 0, "the streams ended before the refusals were checked"

    for t in threads:
        t.join(timeout=grace)
    assert not errors, errors
    for i, chunks in results.items():
        assert chunks[-1].finish_reason == generation_pb2.FINISH_REASON_LENGTH, i
        assert sum(len(c.token_ids) for c in chunks) == max_tokens, i
        assert chunks[-1].usage.completion_tokens == max_tokens
    assert len(results) == n_streams
    try:
        rc = s.wait(timeout=grace + 10 - (time.monotonic() - t0))
    except subprocess.TimeoutExpired:
        pytest.fail(f"para-server did not exit within the grace period:\n{s.log()}")
    assert rc == 0, s.log()
    assert time.monotonic() - t0 < grace
    assert "drained" in s.log()


def test_requests_left_at_the_end_of_the_grace_period_are_cancelled(slow_model, slow_config, start_server):
    """The server cancels what is still running when the drain's grace period ends: the stream's
    last message says CANCELLED (with the tokens made so far), unary calls likewise, and the
    process exits 0."""
    s = start_server(slow_model, slow_config, "--kv-cache-blocks", "2048", "--drain-grace-seconds", 1)
    with s.channel() as ch:
        stub = generation_pb2_grpc.GenerationStub(ch)
        stream = stub.GenerateStream(long_request(request_id="long-stream"), metadata=h.bearer(h.KEYS["acme"]),
                                     timeout=60)
        unary = stub.Generate.future(long_request(request_id="long-unary"), metadata=h.bearer(h.KEYS["globex"]),
                                     timeout=60)
        chunks = [next(stream)]
        h.wait_until(lambda: h.stats(s).requests_running == 2, 5, what="both requests to run")
        t0 = time.monotonic()
        s.sigterm()
        chunks += list(stream)  # ends normally: OK status
        r = unary.result(timeout=30)
        assert time.monotonic() - t0 < 4
    # (The client connection is closed first: an open one delays the exit, see
    # test_drain_with_nothing_in_flight_exits_promptly_despite_an_open_client_connection.)
    assert s.wait(timeout=20) == 0, s.log()
    assert time.monotonic() - t0 < 5
    last = chunks[-1]
    assert last.finish_reason == generation_pb2.FINISH_REASON_CANCELLED
    assert 0 < last.usage.completion_tokens < LONG
    assert sum(len(c.token_ids) for c in chunks) == last.usage.completion_tokens
    assert all(c.request_id == "long-stream" for c in chunks)
    assert r.finish_reason == generation_pb2.FINISH_REASON_CANCELLED
    assert r.request_id == "long-unary"
    assert 0 < len(r.token_ids) < LONG
    assert "cancelled 2 requests" in s.log()


def test_sigint_also_drains_and_exits_0(tiny_model, tenants_config, start_server):
    s = start_server(tiny_model, tenants_config, "--kv-cache-blocks", 64)
    with s.client(h.KEYS["acme"]) as c:
        assert len(c.generate("hi", max_tokens=2, ignore_eos=True).token_ids) == 2
    s.proc.send_signal(signal.SIGINT)
    assert s.wait(timeout=15) == 0, s.log()
    assert "drained" in s.log()


def test_drain_with_nothing_in_flight_exits_promptly_despite_an_open_client_connection(
        tiny_model, tenants_config, start_server):
    """Clients keep their connections (channel pools, load balancers). Once nothing is in flight,
    SIGTERM should end the process well within the grace period, whatever connections are open."""
    grace = 3
    s = start_server(tiny_model, tenants_config, "--kv-cache-blocks", 64, "--drain-grace-seconds", grace)
    with s.channel() as ch:
        stub = generation_pb2_grpc.GenerationStub(ch)
        r = stub.Generate(h.Client.request("hi", max_tokens=2, ignore_eos=True), metadata=h.bearer(h.KEYS["acme"]),
                          timeout=30)
        assert len(r.token_ids) == 2
        assert h.stats(s).requests_in_flight == 0
        t0 = time.monotonic()
        s.sigterm()
        rc = s.wait(timeout=grace + 15)
        elapsed = time.monotonic() - t0
    assert rc == 0, s.log()
    assert elapsed < grace, (f"para-server took {elapsed:.1f} s to exit after SIGTERM with nothing in flight "
                             f"(grace {grace} s) while a client connection that had made one call stayed open")
