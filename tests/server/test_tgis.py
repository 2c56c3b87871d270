"""The TGIS-compatible fmaas.GenerationService on the para.v1 port, driven by a client generated
here from the project's proto/fmaas/generation.proto (grpcio-tools): batched Generate,
GenerateStream, Tokenize and ModelInfo with adapter_id, compared with para-cli and with
para.v1's answers; the same keys and status codes; options it cannot honour are refused by
name."""

import importlib
import pathlib
import subprocess
import sys

import grpc
import pytest

import server_harness as h

pytestmark = h.requires_binaries

PROTO_ROOT = pathlib.Path(__file__).resolve().parents[2] / "proto"
C = grpc.StatusCode


@pytest.fixture(scope="module")
def fm(tmp_path_factory):
    """(messages, stubs) generated from proto/fmaas/generation.proto."""
    out = tmp_path_factory.mktemp("fmaas-stubs")
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"--proto_path={PROTO_ROOT}", f"--python_out={out}",
                    f"--grpc_python_out={out}", str(PROTO_ROOT / "fmaas" / "generation.proto")],
                   check=True, capture_output=True, timeout=120)
    (out / "fmaas" / "__init__.py").touch()
    sys.path.insert(0, str(out))
    try:
        pb = importlib.import_module("fmaas.generation_pb2")
        stubs = importlib.import_module("fmaas.generation_pb2_grpc")
    finally:
        sys.path.remove(str(out))
    return pb, stubs


@pytest.fixture(scope="module")
def stub(server, fm):
    channel = grpc.insecure_channel(server.target)
    yield fm[1].GenerationServiceStub(channel)
    channel.close()


def md(tenant):
    return h.bearer(h.KEYS[tenant] if tenant in h.KEYS else tenant)


def greedy(pb, max_new_tokens=12, **response):
    return pb.Parameters(method=pb.GREEDY, stopping=pb.StoppingCriteria(max_new_tokens=max_new_tokens),
                         response=pb.ResponseOptions(**response))


PROMPTS = ["Hello there", "The capital of France", "one two three"]


def test_batched_generate_with_adapter_matches_the_reference(server, stub, fm, adapters, tiny_model):
    pb, _ = fm
    req = pb.BatchedGenerationRequest(model_id="anything", adapter_id="acme-para", params=greedy(pb),
                                      requests=[pb.GenerationRequest(text=t) for t in PROMPTS])
    out = stub.Generate(req, metadata=md("acme"), timeout=60)
    assert len(out.responses) == len(PROMPTS)
    with server.client(h.KEYS["acme"]) as c:
        for text, r in zip(PROMPTS, out.responses):
            want = h.cli_generate(tiny_model, prompt=text, adapter=adapters["acme-para"], max_tokens=12,
                                  ignore_eos=False)
            assert r.text == want["text"]
            assert r.generated_token_count == len(want["token_ids"])
            assert r.input_token_count == len(c.tokenize(text).ids)
            assert r.stop_reason == (pb.MAX_TOKENS if want["finish_reason"] == "length" else pb.EOS_TOKEN)
            assert r.seed == 0
    # prefix_id is the older name of adapter_id.
    old = stub.Generate(pb.BatchedGenerationRequest(prefix_id="acme-para", params=greedy(pb),
                                                    requests=[pb.GenerationRequest(text=PROMPTS[0])]),
                        metadata=md("acme"), timeout=60)
    assert old.responses[0].text == out.responses[0].text


def test_stream_equals_unary_and_reports_counts(stub, fm):
    pb, _ = fm
    params = greedy(pb, 16, input_text=True)
    unary = stub.Generate(pb.BatchedGenerationRequest(adapter_id="initech-lora", params=params,
                                                      requests=[pb.GenerationRequest(text="Hello there")]),
                          metadata=md("initech"), timeout=60).responses[0]
    msgs = list(stub.GenerateStream(pb.SingleGenerationRequest(adapter_id="initech-lora", params=params,
                                                               request=pb.GenerationRequest(text="Hello there")),
                                    metadata=md("initech"), timeout=60))
    assert msgs[0].input_token_count == unary.input_token_count and msgs[0].text == "Hello there"
    assert "".join(m.text for m in msgs) == unary.text
    assert msgs[-1].stop_reason == unary.stop_reason != pb.NOT_FINISHED
    assert msgs[-1].generated_token_count == unary.generated_token_count
    assert all(m.stop_reason == pb.NOT_FINISHED for m in msgs[:-1])


def test_stop_sequences(stub, fm):
    pb, _ = fm
    base = stub.Generate(pb.BatchedGenerationRequest(params=greedy(pb, 24), requests=[pb.GenerationRequest(
        text="one two three")]), metadata=md("umbrella"), timeout=60).responses[0].text
    assert len(base) > 6
    stop = base[3:6]
    cut = base[:base.index(stop)]
    for include in (False, True):
        params = greedy(pb, 24)
        params.stopping.stop_sequences.append(stop)
        params.stopping.include_stop_sequence = include
        r = stub.Generate(pb.BatchedGenerationRequest(params=params, requests=[pb.GenerationRequest(
            text="one two three")]), metadata=md("umbrella"), timeout=60).responses[0]
        assert r.stop_reason == pb.STOP_SEQUENCE and r.stop_sequence == stop
        assert r.text == (cut + stop if include else cut)


def test_token_details(stub, fm):
    pb, _ = fm
    params = greedy(pb, 6, generated_tokens=True, input_tokens=True, token_logprobs=True, token_ranks=True,
                    top_n_tokens=2)
    r = stub.Generate(pb.BatchedGenerationRequest(params=params, requests=[pb.GenerationRequest(text="Hello there")]),
                      metadata=md("umbrella"), timeout=60).responses[0]
    assert len(r.tokens) == r.generated_token_count == 6
    assert "".join(t.text for t in r.tokens).strip() != ""
    for t in r.tokens:
        assert t.rank == 1 and t.logprob <= 0  # greedy picks the most likely token
        assert len(t.top_tokens) == 2 and t.top_tokens[0].logprob == pytest.approx(t.logprob, abs=1e-4)
        assert t.top_tokens[0].logprob >= t.top_tokens[1].logprob
    assert len(r.input_tokens) == r.input_token_count
    assert r.input_tokens[0].logprob == 0 and all(t.logprob < 0 and t.rank >= 1 for t in r.input_tokens[1:])


def test_sampling_seed_is_reported_and_reproduces(stub, fm):
    pb, _ = fm

    def sample(seed=None):
        sampling = pb.SamplingParameters(temperature=1.5, top_k=50)
        if seed is not None:
            sampling.seed = seed
        params = pb.Parameters(method=pb.SAMPLE, sampling=sampling, stopping=pb.StoppingCriteria(max_new_tokens=10))
        return stub.Generate(pb.BatchedGenerationRequest(params=params, requests=[pb.GenerationRequest(
            text="Hello there")]), metadata=md("umbrella"), timeout=60).responses[0]
    a, b = sample(1234), sample(1234)
    assert (a.text, a.seed) == (b.text, 1234)
    free = sample()
    assert free.seed != 0 and sample(free.seed).text == free.text


def test_tokenize_and_model_info(server, stub, fm):
    pb, _ = fm
    out = stub.Tokenize(pb.BatchedTokenizeRequest(requests=[pb.TokenizeRequest(text=t) for t in PROMPTS],
                                                  return_tokens=True), metadata=md("acme"), timeout=30)
    with server.client(h.KEYS["acme"]) as c:
        for text, r in zip(PROMPTS, out.responses):
            want = c.tokenize(text)
            assert r.token_count == len(want.ids) and list(r.tokens) == list(want.pieces)
    short = stub.Tokenize(pb.BatchedTokenizeRequest(requests=[pb.TokenizeRequest(text=PROMPTS[1])],
                                                    truncate_input_tokens=2), metadata=md("acme"), timeout=30)
    assert short.responses[0].token_count == 2
    with pytest.raises(grpc.RpcError) as e:
        stub.Tokenize(pb.BatchedTokenizeRequest(requests=[pb.TokenizeRequest(text="x")], return_offsets=True),
                      metadata=md("acme"), timeout=30)
    assert e.value.code() == C.INVALID_ARGUMENT and "return_offsets" in e.value.details()
    info = stub.ModelInfo(pb.ModelInfoRequest(model_id="x"), metadata=md("acme"), timeout=30)
    assert info.model_kind == pb.ModelInfoResponse.DECODER_ONLY and info.max_sequence_length == 512


@pytest.mark.parametrize("key,adapter,params,code,words", [
    (None, "", {}, C.UNAUTHENTICATED, ""),
    ("wrong-key-0000", "", {}, C.UNAUTHENTICATED, ""),
    (h.ADMIN_KEY, "", {}, C.PERMISSION_DENIED, "admin key"),
    ("acme", "no-such-adapter", {}, C.NOT_FOUND, "no-such-adapter"),
    ("acme", "globex-para", {}, C.NOT_FOUND, "unknown adapter 'globex-para'"),  # as an unknown name (no existence leak)
    ("acme", "", {"sampling": {"typical_p": 0.5}}, C.INVALID_ARGUMENT, "typical_p"),
    ("acme", "", {"stopping": {"time_limit_millis": 10}}, C.INVALID_ARGUMENT, "time_limit_millis"),
    ("acme", "", {"response": {"top_n_tokens": 6}}, C.INVALID_ARGUMENT, "top_n_tokens"),
    ("acme", "", {"decoding": {"regex": "a+"}}, C.INVALID_ARGUMENT, "guided"),
])
def test_errors(stub, fm, key, adapter, params, code, words):
    pb, _ = fm
    p = pb.Parameters()
    for part, fields in params.items():
        for k, v in fields.items():
            setattr(getattr(p, part), k, v)
    req = pb.BatchedGenerationRequest(params=p, requests=[pb.GenerationRequest(text="hi")])
    single = pb.SingleGenerationRequest(params=p, request=pb.GenerationRequest(text="hi"))
    if adapter:
        req.adapter_id = single.adapter_id = adapter
    metadata = md(key) if key else None
    for call in (lambda: stub.Generate(req, metadata=metadata, timeout=30),
                 lambda: list(stub.GenerateStream(single, metadata=metadata, timeout=30))):
        with pytest.raises(grpc.RpcError) as e:
            call()
        assert e.value.code() == code, e.value.details()
        assert words in e.value.details()


def test_batch_names_the_bad_prompt(stub, fm):
    pb, _ = fm
    req = pb.BatchedGenerationRequest(params=greedy(pb), requests=[pb.GenerationRequest(text="ok"),
                                                                   pb.GenerationRequest(text="x" * (2 << 20))])
    with pytest.raises(grpc.RpcError) as e:
        stub.Generate(req, metadata=md("acme"), timeout=30)
    assert e.value.code() == C.INVALID_ARGUMENT and "requests[1]" in e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        stub.Generate(pb.BatchedGenerationRequest(params=greedy(pb)), metadata=md("acme"), timeout=30)
    assert e.value.code() == C.INVALID_ARGUMENT and "requests is empty" in e.value.details()
