"""What the soak found in para-server, reduced to one request each (docs/hardening.md, "Soak"), now
fixed: a beam search that could outgrow the KV pool stalled every tenant, and gRPC GenerateStream
accepted best_of > n."""

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


def test_a_beam_search_that_could_outgrow_the_kv_pool_is_refused_at_once(small_pool_server):
    """47 prompt tokens + 8 new ones with 3 beams: 2 shared prompt blocks + 3 x 2 own + 2 fork copies
    = 10 blocks at the peak of a step, over the pool's 8. It used to be accepted, preempted, and
    then never readmitted, with the engine loop stepping for no one."""
    s = small_pool_server
    stub = h.generation_pb2_grpc.GenerationStub(s.channel())
    big = request(range(5, 52), 8, n=1)
    big.beam.beam_width = 3
    with pytest.raises(h.grpc.RpcError) as e:
        stub.Generate(big, metadata=h.bearer(h.KEYS["acme"]), timeout=10)
    assert e.value.code() == h.grpc.StatusCode.INVALID_ARGUMENT
    assert "needs up to 10 KV blocks; the pool has 8" in e.value.details()
    small = stub.Generate(request([5, 6, 7], 1), metadata=h.bearer(h.KEYS["globex"]), timeout=5)
    assert len(small.token_ids) == 1


def test_a_beam_search_that_fits_runs_beside_other_tenants(small_pool_server):
    """A beam search that fits (20 prompt tokens, 3 beams: 1 + 3 x 1 + 2 = 6 blocks) runs to its end
    while another tenant's requests take blocks too; nobody waits past a short deadline."""
    s = small_pool_server
    stub = h.generation_pb2_grpc.GenerationStub(s.channel())
    beam = request(range(5, 25), 8, n=1)
    beam.beam.beam_width = 3
    pending = stub.Generate.future(beam, metadata=h.bearer(h.KEYS["acme"]), timeout=20)
    others = [stub.Generate.future(request([5 + i, 6, 7], 20), metadata=h.bearer(h.KEYS["globex"]), timeout=20)
              for i in range(4)]
    assert all(len(f.result().token_ids) == 20 for f in others)
    assert len(pending.result().token_ids) == 8
    h.wait_idle(s)


def test_a_stream_with_best_of_above_n_is_refused_as_over_http(small_pool_server):
    stub = h.generation_pb2_grpc.GenerationStub(small_pool_server.channel())
    r = request([5, 6, 7], 4, n=2, best_of=4)
    r.sampling.temperature, r.sampling.seed = 1.0, 1
    with pytest.raises(h.grpc.RpcError) as e:
        list(stub.GenerateStream(r, metadata=h.bearer(h.KEYS["acme"]), timeout=30))
    assert e.value.code() == h.grpc.StatusCode.INVALID_ARGUMENT
    assert "best_of" in e.value.details()
