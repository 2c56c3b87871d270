"""Generation over gRPC equals the offline engine: four tenants stream at once, each with its own
adapter (PARA last-token pooler, PARA mean pooler, LoRA, base model), and every stream equals
para-cli's greedy output for the same prompt / adapter / max_tokens; unary Generate equals the
stream. Also Tokenize and ModelInfo."""
import threading

import pytest

import server_harness as h
from server_harness import generation_pb2

pytestmark = h.requires_binaries

PROMPTS = {
    "acme": "Hello café, how are you?",
    "globex": "The quick brown fox jumps over the lazy dog",
    "initech": "naïve façade über 12345",
    "umbrella": "Once upon a time",
}
MAX_TOKENS = 48


def stream_all(server, tenant, results, barrier, errors):
    try:
        with server.client(h.KEYS[tenant]) as c:
            barrier.wait(timeout=30)
            results[tenant] = list(c.stream(PROMPTS[tenant], adapter=h.ADAPTERS[tenant], max_tokens=MAX_TOKENS,
                                            ignore_eos=True, request_id=f"{tenant}-stream"))
    except BaseException as e:  # reported by the main thread
        errors[tenant] = e


@pytest.fixture(scope="module")
def references(tiny_model, adapters):
    out = {}
    for tenant, prompt in PROMPTS.items():
        name = h.ADAPTERS[tenant]
        out[tenant] = h.cli_generate(tiny_model, prompt=prompt, adapter=adapters[name] if name else None,
                                     max_tokens=MAX_TOKENS)
        assert len(out[tenant]["token_ids"]) == MAX_TOKENS
    # The adapters must matter, or equality with the reference would prove little.
    assert len({tuple(r["token_ids"]) for r in out.values()}) == len(out)
    return out


def test_four_tenants_stream_concurrently_and_match_offline_greedy(server, references, tiny_model, adapters):
    results, errors = {}, {}
    barrier = threading.Barrier(len(PROMPTS))
    threads = [threading.Thread(target=stream_all, args=(server, t, results, barrier, errors)) for t in PROMPTS]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    for tenant, chunks in results.items():
        ref = references[tenant]
        assert chunks, tenant
        last = chunks[-1]
        assert all(c.request_id == f"{tenant}-stream" for c in chunks)
        assert all(c.finish_reason == generation_pb2.FINISH_REASON_UNSPECIFIED for c in chunks[:-1])
        assert last.finish_reason == generation_pb2.FINISH_REASON_LENGTH, tenant
        ids = [i for c in chunks for i in c.token_ids]
        text = "".join(c.text_delta for c in chunks)
        assert ids == ref["token_ids"], f"{tenant}: stream token ids differ from para-cli"
        assert text == ref["text"], f"{tenant}: stream text differs from para-cli"
        assert last.usage.completion_tokens == MAX_TOKENS
        assert last.usage.prompt_tokens == ref["prompt_tokens"]
        assert last.usage.time_to_first_token_seconds > 0


@pytest.mark.parametrize("tenant", list(PROMPTS))
def test_unary_generate_equals_the_stream(server, references, tenant):
    with server.client(h.KEYS[tenant]) as c:
        r = c.generate(PROMPTS[tenant], adapter=h.ADAPTERS[tenant], max_tokens=MAX_TOKENS, ignore_eos=True)
        chunks = list(c.stream(PROMPTS[tenant], adapter=h.ADAPTERS[tenant], max_tokens=MAX_TOKENS,
                               ignore_eos=True))
    assert list(r.token_ids) == references[tenant]["token_ids"]
    assert r.text == references[tenant]["text"]
    assert list(r.token_ids) == [i for ch in chunks for i in ch.token_ids]
    assert r.text == "".join(ch.text_delta for ch in chunks)
    assert r.finish_reason == chunks[-1].finish_reason == generation_pb2.FINISH_REASON_LENGTH
    assert r.usage.completion_tokens == MAX_TOKENS
    assert r.usage.prompt_tokens == references[tenant]["prompt_tokens"]
    assert r.request_id.startswith("req-")  # the server names requests that come without an id


def test_token_id_prompt_matches_offline(server, tiny_model, adapters):
    ids = [1, 17, 230, 99, 402, 5]
    ref = h.cli_generate(tiny_model, prompt_ids=ids, adapter=adapters["initech-lora"], max_tokens=20)
    with server.client(h.KEYS["initech"]) as c:
        r = c.generate(token_ids=ids, adapter="initech-lora", max_tokens=20, ignore_eos=True)
    assert list(r.token_ids) == ref["token_ids"]
    assert r.text == ref["text"]
    assert r.usage.prompt_tokens == len(ids)


def test_stop_string_and_logprobs(server, tiny_model):
    """A stop string taken from the reference output ends the request early with STOP and is not
    returned; logprobs come one per token with top_n alternatives, best first."""
    ref = h.cli_generate(tiny_model, prompt=PROMPTS["umbrella"], max_tokens=MAX_TOKENS)
    text = ref["text"]
    stop = next((text[i:i + 3] for i in range(8, len(text) - 3) if "\ufffd" not in text[i:i + 3]
                 and text[i:i + 3].strip()), None)
    assert stop, text
    with server.client(h.KEYS["umbrella"]) as c:
        r = c.generate(PROMPTS["umbrella"], max_tokens=MAX_TOKENS, ignore_eos=True, stop=[stop], logprobs=3)
    assert r.finish_reason == generation_pb2.FINISH_REASON_STOP
    assert r.text == text[:text.index(stop)]
    with server.client(h.KEYS["umbrella"]) as c:  # a stream never shows any of the stop string
        chunks = list(c.stream(PROMPTS["umbrella"], max_tokens=MAX_TOKENS, ignore_eos=True, stop=[stop]))
    assert "".join(ch.text_delta for ch in chunks) == r.text
    assert chunks[-1].finish_reason == generation_pb2.FINISH_REASON_STOP
    assert len(r.logprobs) == len(r.token_ids)
    for entry, tok in zip(r.logprobs, r.token_ids):
        assert entry.id == tok
        tops = [t.logprob for t in entry.top]
        assert len(tops) == 3 and tops == sorted(tops, reverse=True)
        assert entry.top[0].id == tok  # greedy


def test_stop_token_id_ends_the_request_and_is_returned(server, references):
    ref = references["initech"]["token_ids"]
    stop_id = ref[6]
    first = ref.index(stop_id)
    with server.client(h.KEYS["initech"]) as c:
        r = c.generate(PROMPTS["initech"], adapter="initech-lora", max_tokens=MAX_TOKENS, ignore_eos=True,
                       stop_token_ids=[stop_id])
        chunks = list(c.stream(PROMPTS["initech"], adapter="initech-lora", max_tokens=MAX_TOKENS, ignore_eos=True,
                               stop_token_ids=[stop_id]))
    assert list(r.token_ids) == ref[:first + 1]
    assert r.finish_reason == generation_pb2.FINISH_REASON_STOP
    assert [i for ch in chunks for i in ch.token_ids] == ref[:first + 1]
    assert chunks[-1].finish_reason == generation_pb2.FINISH_REASON_STOP
    assert "".join(ch.text_delta for ch in chunks) == r.text


def test_tokenize_equals_sentencepiece_and_para_cli(server, tiny_model):
    spm = pytest.importorskip("sentencepiece")
    sp = spm.SentencePieceProcessor(model_file=f"{tiny_model}/tokenizer.model")
    with server.client(h.KEYS["acme"]) as c:
        for text in ("Hello world", "naïve façade über 12345", "  two  spaces\nnewline", "日本語"):
            r = c.tokenize(text)
            assert list(r.ids) == [sp.bos_id()] + sp.encode(text), text
            assert list(r.pieces) == [sp.id_to_piece(i) for i in r.ids]
            ref = h.cli_generate(tiny_model, prompt=text, max_tokens=1)
            assert len(r.ids) == ref["prompt_tokens"], text
            # The same ids as a token-id prompt generate what the text prompt generates.
            g = c.generate(token_ids=list(r.ids), max_tokens=4, ignore_eos=True)
            assert list(g.token_ids) == h.cli_generate(tiny_model, prompt=text, max_tokens=4)["token_ids"]


def test_model_info_lists_only_the_callers_adapters(server, tiny_model):
    want = {
        "acme": [("acme-para", "para", 8)],
        "globex": [("globex-para", "para", 8)],
        "initech": [("initech-lora", "lora", 8)],
        "umbrella": [],
    }
    for tenant, adapters in want.items():
        with server.client(h.KEYS[tenant]) as c:
            info = c.model_info()
        assert [(a.name, a.type, a.rank) for a in info.adapters] == adapters, tenant
        assert info.model == "tiny-llama"
        assert info.vocab_size == 512
        assert info.max_model_len == 512
        assert info.num_layers == 2
        assert info.hidden_size == 64
