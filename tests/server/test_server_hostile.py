"""Malformed and hostile requests: each gets the right status and a message naming the problem,
on both Generate and GenerateStream, and the server keeps serving afterwards.

Requests are sent as raw bytes (identity serializer) so that things the Python protobuf library
refuses to build — invalid UTF-8, unknown fields, bytes that are not a protobuf — reach the
server as a hostile client would send them."""
import math

import grpc
import pytest

import server_harness as h
from server_harness import generation_pb2

pytestmark = h.requires_binaries

INVALID = grpc.StatusCode.INVALID_ARGUMENT
VOCAB = 512  # the tiny model's vocabulary (checked below through ModelInfo)


def req(prompt="Hello there", **kw) -> bytes:
    return h.Client.request(prompt, **kw).SerializeToString()


def with_sampling(**fields) -> bytes:
    r = h.Client.request("Hello there", max_tokens=4)
    for k, v in fields.items():
        setattr(r.sampling, k, v)
    return r.SerializeToString()


def no_prompt() -> bytes:
    r = generation_pb2.GenerateRequest()
    r.stopping.max_tokens = 4
    return r.SerializeToString()


def empty_token_ids() -> bytes:
    r = generation_pb2.GenerateRequest()
    r.token_ids.SetInParent()  # the oneof is set to an empty TokenIds
    return r.SerializeToString()


# field numbers (generation.proto): GenerateRequest.text = 2, .stopping = 5, .sampling = 4,
# .request_id = 7; StoppingCriteria.stop = 2, SamplingParams.temperature = 1.
BAD_UTF8 = b"Hello \xff\xfe w\xc3orld \xed\xa0\x80"  # invalid bytes, a cut sequence, a surrogate

# (id, request bytes, acceptable (code, message substring) answers)
CASES = [
    ("max_tokens-negative", req(max_tokens=-5), [(INVALID, "max_tokens must be in [1, ")]),
    ("max_tokens-zero", req(max_tokens=0), [(INVALID, "max_tokens must be in [1, ")]),
    ("max_tokens-huge", req(max_tokens=2**31 - 1), [(INVALID, "max_tokens must be in [1, ")]),
    ("temperature-nan", with_sampling(temperature=math.nan), [(INVALID, "temperature")]),
    ("temperature-inf", with_sampling(temperature=math.inf), [(INVALID, "temperature")]),
    ("temperature-negative", with_sampling(temperature=-0.5), [(INVALID, "temperature")]),
    ("top_p-above-1", with_sampling(top_p=1.5), [(INVALID, "top_p")]),
    ("top_p-zero", with_sampling(top_p=0.0), [(INVALID, "top_p")]),
    ("top_p-nan", with_sampling(top_p=math.nan), [(INVALID, "top_p")]),
    ("top_k-negative", with_sampling(top_k=-5), [(INVALID, "top_k")]),
    ("repetition_penalty-zero", with_sampling(repetition_penalty=0.0), [(INVALID, "repetition_penalty")]),
    ("repetition_penalty-nan", with_sampling(repetition_penalty=math.nan), [(INVALID, "repetition_penalty")]),
    ("repetition_penalty-negative", with_sampling(repetition_penalty=-1.0), [(INVALID, "repetition_penalty")]),
    ("prompt-10MB-over-message-limit", req("a" * (10 << 20)),
     [(grpc.StatusCode.RESOURCE_EXHAUSTED, "larger than max")]),
    ("prompt-2MB-over-prompt-limit", req("a" * (2 << 20)),
     [(INVALID, f"prompt text is {2 << 20} bytes; the limit is {1 << 20}")]),
    ("text-invalid-utf8", h.field_bytes(2, BAD_UTF8), [(INVALID, "UTF-8")]),
    ("request_id-invalid-utf8", req() + h.field_bytes(7, b"id-\xff"), [(INVALID, "UTF-8")]),
    ("stop-invalid-utf8", req() + h.field_bytes(5, h.field_bytes(2, b"\xc3")), [(INVALID, "UTF-8")]),
    ("unknown-field-99", req(max_tokens=4) + h.field_varint(99, 1), [(INVALID, "#99")]),
    ("unknown-nested-field", req(max_tokens=4) + h.field_bytes(4, h.field_varint(99, 7)),
     [(INVALID, "sampling.#99")]),
    ("text-as-varint-wire-type", h.field_varint(2, 5), [(INVALID, "#2"), (INVALID, "not a valid")]),
    ("stop-1000-strings", req(stop=[f"s{i}" for i in range(1000)]), [(INVALID, "1000 stop strings; at most 16")]),
    ("stop-overlong", req(stop=["x" * 300]), [(INVALID, "a stop string is 300 bytes; at most 256")]),
    ("stop-empty", req(stop=[""]), [(INVALID, "a stop string is empty")]),
    ("token-id-out-of-vocabulary", req(None, token_ids=[1, 5, VOCAB]), [(INVALID, "outside the vocabulary")]),
    ("token-id-int32-max", req(None, token_ids=[1, 2**31 - 1]), [(INVALID, "outside the vocabulary")]),
    ("token-id-negative", req(None, token_ids=[1, -3, 5]), [(INVALID, "outside the vocabulary")]),
    ("no-prompt", no_prompt(), [(INVALID, "no prompt")]),
    ("empty-text", h.field_bytes(2, b""), [(INVALID, "no prompt"), (INVALID, "empty")]),
    ("empty-token_ids", empty_token_ids(), [(INVALID, "token_ids is empty")]),
    ("logprobs-top_n-21", req(logprobs=21), [(INVALID, "logprobs must be in [0, 20]")]),
    ("logprobs-top_n-negative", req(logprobs=-1), [(INVALID, "logprobs must be in [0, 20]")]),
    ("prompt_logprobs-21", req(prompt_logprobs=21), [(INVALID, "logprobs must be in [0, 20]")]),
    ("priority-1000", req(priority=1000), [(INVALID, "priority must be in [-100, 100]")]),
    ("priority-minus-1000", req(priority=-1000), [(INVALID, "priority must be in [-100, 100]")]),
    ("request_id-200-bytes", req(request_id="r" * 200), [(INVALID, "request_id is longer than 128 bytes")]),
    ("stop_token_ids-out-of-range", req(stop_token_ids=[VOCAB + 100]), [(INVALID, "stop token id")]),
    ("stop_token_ids-negative", req(stop_token_ids=[-1]), [(INVALID, "stop token id")]),
    ("unknown-adapter-and-bad-params", req(adapter="no-such-adapter", temperature=math.nan, max_tokens=-1),
     [(grpc.StatusCode.NOT_FOUND, "no-such-adapter"), (INVALID, "temperature"), (INVALID, "max_tokens")]),
    ("other-tenants-adapter", req(adapter="initech-lora"), [(grpc.StatusCode.NOT_FOUND, "unknown adapter 'initech-lora'")]),
    ("garbage-bytes", b"\xff" * 16 + b"\x00\x13\x37 not a protobuf \x80\x80\x80",
     [(INVALID, "not a valid para.v1.GenerateRequest")]),
    ("truncated-protobuf", req("Hello there, this prompt is cut")[:-8],
     [(INVALID, "not a valid para.v1.GenerateRequest")]),
]


@pytest.fixture(scope="module")
def channel(server):
    with server.channel() as ch:
        with server.client(h.KEYS["acme"]) as c:
            assert c.model_info().vocab_size == VOCAB
        yield ch


@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
@pytest.mark.parametrize("payload,answers", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hostile_request_gets_the_right_status(server, channel, payload, answers, stream):
    with pytest.raises(grpc.RpcError) as e:
        h.raw_generate(channel, payload, h.KEYS["acme"], stream=stream)
    code, details = e.value.code(), e.value.details() or ""
    assert any(code == c and s in details for c, s in answers), \
        f"got {code.name}: {details!r}; expected one of {[(c.name, s) for c, s in answers]}"
    assert server.alive(), server.log()


def test_hostile_requests_without_a_key_are_unauthenticated_first(server, channel):
    """Nothing about a request is judged before its caller is known."""
    for name, payload, _ in CASES:
        if name == "prompt-10MB-over-message-limit":
            continue  # refused by gRPC before the handler runs
        with pytest.raises(grpc.RpcError) as e:
            h.raw_generate(channel, payload, "not-a-valid-key")
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED, (name, e.value.details())


@pytest.mark.parametrize("payload,code,substring", [
    (h.field_bytes(1, BAD_UTF8), INVALID, "UTF-8"),
    (b"\xff" * 16 + b" not a protobuf", INVALID, "not a valid"),
    (generation_pb2.TokenizeRequest(text="a" * (2 << 20)).SerializeToString(), INVALID, "limit"),
    (generation_pb2.TokenizeRequest(text="a" * (10 << 20)).SerializeToString(), grpc.StatusCode.RESOURCE_EXHAUSTED,
     "larger than max"),
], ids=["invalid-utf8", "garbage-bytes", "text-over-prompt-limit", "text-over-message-limit"])
def test_hostile_tokenize_request(server, channel, payload, code, substring):
    """Tokenize answers malformed requests like Generate does: INVALID_ARGUMENT with a reason (a
    bare UNIMPLEMENTED would tell the user the method does not exist)."""
    call = channel.unary_unary("/para.v1.Generation/Tokenize", request_serializer=lambda b: b,
                               response_deserializer=generation_pb2.TokenizeResponse.FromString)
    with pytest.raises(grpc.RpcError) as e:
        call(payload, metadata=h.bearer(h.KEYS["acme"]), timeout=30)
    assert e.value.code() == code, f"got {e.value.code().name}: {e.value.details()!r}"
    assert substring in (e.value.details() or ""), e.value.details()
    assert server.alive(), server.log()


def test_server_still_serves_normally_after_hostile_requests(server, channel, tiny_model):
    assert server.alive(), server.log()
    with server.client(h.KEYS["acme"]) as c:
        r = c.generate("Hello there", adapter="acme-para", max_tokens=6, ignore_eos=True)
        chunks = list(c.stream("Hello there", max_tokens=6, ignore_eos=True))
    assert len(r.token_ids) == 6 and r.finish_reason == generation_pb2.FINISH_REASON_LENGTH
    assert [i for ch in chunks for i in ch.token_ids] == h.cli_generate(tiny_model, prompt="Hello there",
                                                                        max_tokens=6)["token_ids"]
    h.wait_idle(server)
