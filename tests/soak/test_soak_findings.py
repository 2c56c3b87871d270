"""What the soak found in para-server, reduced to one request each (docs/hardening.md, "Soak").
Both are server bugs not fixed yet: the tests say what users need and are marked xfail(strict), so
a fix makes them pass and then fail as XPASS until the mark is removed."""
import time

import pytest

import soak  # noqa: F401 - puts tests/server on sys.path
import server_harness as h

pytestmark = h.requires_binaries


@pytest.fixture
def small_pool_server(tmp_path):
    """The tiny model with 8 KV blocks of 16 positions; tenants acme and globex."""
    model = h.make_model(tmp_path / "tiny-llama", 11, "--max-pos", "512")
    config = h.write_config(tmp_path / "tenants.json", {"acme": {"api_keys": [h.KEYS["acme"]]},
                                                       "globex": {"api_keys": [h.KEYS["globex"]]}})
    s = h.ServerProcess(model, config, tmp_path / "server", "--adapter-root", str(tmp_path),
                        "--kv-cache-blocks", "8", "--block-size", "16")
    yield s
    s.stop()


def request(ids, max_tokens, **kw) -> h.generation_pb2.GenerateRequest:
    r = h.generation_pb2.GenerateRequest(**kw)
    r.token_ids.ids.extend(ids)
    r.stopping.max_tokens, r.stopping.ignore_eos = max_tokens, True
    return r


STALL = ("server bug: an accepted beam search that fills the KV pool is preempted once and never readmitted; "
         "the engine loop stops stepping for everyone")
BEST_OF_STREAM = "server bug: gRPC GenerateStream accepts best_of > n (HTTP refuses it) and streams every candidate"


@pytest.mark.xfail(strict=True, raises=h.grpc.RpcError, reason=STALL)
def test_a_beam_search_that_fills_the_kv_pool_does_not_stall_other_tenants(small_pool_server):
    s = small_pool_server
    stub = h.generation_pb2_grpc.GenerationStub(s.channel())
    # 47 prompt tokens + 8 new ones, 3 beams: accepted (it fits the 8 blocks), yet it never ends.
    big = request(range(5, 52), 8, n=1)
    big.beam.beam_width = 3
    pending = stub.Generate.future(big, metadata=h.bearer(h.KEYS["acme"]), timeout=12)
    h.wait_until(lambda: h.stats(s).engine_steps > 0, 10, what="the beam search to start")
    time.sleep(0.5)
    # Another tenant's 1-token request must still be served.
    small = stub.Generate(request([5, 6, 7], 1), metadata=h.bearer(h.KEYS["globex"]), timeout=5)
    assert len(small.token_ids) == 1
    assert len(pending.result().token_ids) == 8


@pytest.mark.xfail(strict=True, raises=pytest.fail.Exception, reason=BEST_OF_STREAM)
def test_a_stream_with_best_of_above_n_is_refused_as_over_http(small_pool_server):
    stub = h.generation_pb2_grpc.GenerationStub(small_pool_server.channel())
    r = request([5, 6, 7], 4, n=2, best_of=4)
    r.sampling.temperature, r.sampling.seed = 1.0, 1
    with pytest.raises(h.grpc.RpcError) as e:
        list(stub.GenerateStream(r, metadata=h.bearer(h.KEYS["acme"]), timeout=30))
    assert e.value.code() == h.grpc.StatusCode.INVALID_ARGUMENT
    assert "best_of" in e.value.details()
