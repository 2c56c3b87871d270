"""Liveness sees a stuck engine: /healthz, /health and grpc.health.v1 fail while work has waited
longer than --engine-stall-timeout-ms for the engine loop to make a step, and recover once it
moves again. A long prefill step (thousands of prompt tokens on the larger random model, seconds
on a CPU) stands in for a stuck engine, with the limit set far below it."""

import concurrent.futures
import time

import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

import server_harness as h

pytestmark = h.requires_binaries

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def grpc_health(s) -> int:
    with s.channel() as ch:
        return health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""), timeout=10).status


def test_liveness_fails_while_the_engine_makes_no_step(slow_model, slow_config, start_server):
    s = start_server(slow_model, slow_config, "--kv-cache-blocks", "1024", "--engine-stall-timeout-ms", "100",
                     "--max-batched-tokens", "8192")
    assert httpx.get(s.http + "/healthz").status_code == 200  # idle is not stalled
    assert grpc_health(s) == SERVING
    key = h.KEYS["umbrella"]
    prompt = [3 + (i * 7) % 200 for i in range(7000)]
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        done = pool.submit(httpx.post, s.http + "/v1/completions", timeout=600, headers={"Authorization": f"Bearer {key}"},
                           json={"model": "slow-llama", "prompt": prompt, "max_tokens": 1})
        stalled = h.wait_until(lambda: (r := httpx.get(s.http + "/healthz")).status_code == 503 and r, 120,
                               what="/healthz to report the stalled engine")
        assert "engine stalled" in stalled.text and "limit 100 ms" in stalled.text
        h.wait_until(lambda: grpc_health(s) == NOT_SERVING, 120, what="gRPC health NOT_SERVING")
        r = done.result()
        assert r.status_code == 200, r.text
    h.wait_until(lambda: httpx.get(s.http + "/healthz").status_code == 200, 30, what="/healthz to recover")
    h.wait_until(lambda: grpc_health(s) == SERVING, 30, what="gRPC health to recover")
    assert httpx.get(s.http + "/health").status_code == 200
    assert "engine stalled" in s.log()


def test_stall_check_can_be_turned_off(slow_model, slow_config, start_server):
    s = start_server(slow_model, slow_config, "--kv-cache-blocks", "1024", "--engine-stall-timeout-ms", "0")
    key = h.KEYS["umbrella"]
    prompt = [3 + (i * 7) % 200 for i in range(4000)]
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        done = pool.submit(httpx.post, s.http + "/v1/completions", timeout=600, headers={"Authorization": f"Bearer {key}"},
                           json={"model": "slow-llama", "prompt": prompt, "max_tokens": 1})
        statuses = set()
        while not done.done():
            statuses.add(httpx.get(s.http + "/healthz").status_code)
            time.sleep(0.05)
        assert done.result().status_code == 200
    assert statuses <= {200}
