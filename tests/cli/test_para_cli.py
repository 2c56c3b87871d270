"""para-cli and para-tool as users run them: flags, JSONL batches, output format and errors.

The binaries come from $PARA_TOOL and $PARA_CLI (set by ctest)."""
import json
import os
import pathlib
import subprocess

import pytest

TOOL = os.environ.get("PARA_TOOL")
CLI = os.environ.get("PARA_CLI")
for _var, _path in (("PARA_TOOL", TOOL), ("PARA_CLI", CLI)):
    if _path and not (os.path.isfile(_path) and os.access(_path, os.X_OK)):
        raise RuntimeError(f"${_var}={_path!r} is not an executable file")  # a failed build: never a skip
pytestmark = pytest.mark.skipif(not (TOOL and CLI), reason="PARA_TOOL / PARA_CLI are not set (ctest sets them)")


def run(*args, check=True, stdin=None):
    p = subprocess.run(list(args), capture_output=True, text=True, timeout=300, input=stdin)
    if check and p.returncode != 0:
        raise AssertionError(f"{args} exited {p.returncode}: {p.stderr}")
    return p


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny") / "model"
    run(TOOL, "make-tiny-model", str(d), "--seed", "4")
    return str(d)


def generate_json(model, *extra):
    out = run(CLI, "generate", "--model", model, "--json", *extra).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def write_requests(tmp_path, lines):
    p = tmp_path / "req.jsonl"
    p.write_text("\n".join(l if isinstance(l, str) else json.dumps(l) for l in lines) + "\n")
    return str(p)


def test_make_tiny_model_writes_the_hugging_face_layout(model):
    names = set(os.listdir(model))
    assert {"config.json", "generation_config.json", "tokenizer_config.json", "tokenizer.model",
            "model.safetensors"} <= names
    cfg = json.load(open(os.path.join(model, "config.json")))
    assert cfg["architectures"] == ["LlamaForCausalLM"]
    assert cfg["num_key_value_heads"] == 2 and cfg["num_attention_heads"] == 4


def test_text_prompt_generates_requested_number_of_tokens(model):
    [r] = generate_json(model, "--prompt", "Hello café", "--max-tokens", "7", "--ignore-eos")
    assert len(r["token_ids"]) == 7
    assert r["finish_reason"] == "length"
    assert r["prompt_tokens"] >= 3  # BOS + at least two pieces
    assert isinstance(r["text"], str)


def test_plain_output_streams_text_and_reports_finish(model):
    p = run(CLI, "generate", "--model", model, "--prompt-ids", "1,5,9", "--max-tokens", "4", "--ignore-eos")
    assert "[4 tokens, finish_reason=length]" in p.stdout


def test_text_equals_sentencepiece_decoding(model):
    """The streamed text (assembled token by token) equals the sentencepiece library's decoding
    of the whole generated sequence, invalid byte sequences included (random models emit many)."""
    spm = pytest.importorskip("sentencepiece")
    sp = spm.SentencePieceProcessor(model_file=os.path.join(model, "tokenizer.model"))
    reqs = [{"prompt_ids": [1, 10 + i, 20 + i], "max_tokens": 24, "temperature": 1.0, "seed": i,
             "ignore_eos": True} for i in range(12)]
    results = generate_json(model, "--requests", write_requests(pathlib.Path(model).parent, reqs))
    assert any("\ufffd" in r["text"] for r in results), "expected some invalid byte sequences to be exercised"
    for r in results:
        ids = r["token_ids"]
        want = sp.decode(ids)
        if sp.id_to_piece(ids[0]).startswith("\u2581"):
            want = " " + want  # sentencepiece drops the first piece's leading space; a stream keeps it
        assert r["text"] == want


def test_requests_file_runs_together_in_input_order_with_per_line_errors(model, tmp_path):
    lines = [
        {"prompt_ids": [1, 5, 9, 13], "max_tokens": 5, "ignore_eos": True},
        "{not json",
        {"prompt": "Hello there", "max_tokens": 3, "ignore_eos": True, "logprobs": 3},
        {"prompt_ids": [1, 99999], "max_tokens": 3},
        {"prompt_ids": [1, 2], "max_tokens": 3, "temprature": 0.5},
        {"prompt_ids": [1, 7], "max_tokens": 2, "ignore_eos": True, "prompt_logprobs": 1},
    ]
    out = generate_json(model, "--requests", write_requests(tmp_path, lines))
    assert [r["index"] for r in out] == list(range(len(lines)))
    assert len(out[0]["token_ids"]) == 5
    assert "not valid JSON" in out[1]["error"] and "req.jsonl:2" in out[1]["error"]
    lp = out[2]["logprobs"]
    assert len(lp) == 3
    for entry, tok in zip(lp, out[2]["token_ids"]):
        assert entry["id"] == tok
        tops = [t["logprob"] for t in entry["top"]]
        assert len(tops) == 3 and tops == sorted(tops, reverse=True)
        assert entry["logprob"] <= tops[0] + 1e-6
        assert entry["id"] == entry["top"][0]["id"]  # default sampling here is greedy
    assert "outside the vocabulary" in out[3]["error"]
    assert "unknown request field 'temprature'" in out[4]["error"]
    assert len(out[5]["prompt_logprobs"]) == 1 and out[5]["prompt_logprobs"][0]["id"] == 7


def test_batched_greedy_equals_single_runs(model, tmp_path):
    reqs = [{"prompt_ids": [1] + [3 + (i * 37 + j * 11) % 500 for j in range(2 + i)], "max_tokens": 6,
             "ignore_eos": True} for i in range(10)]
    batched = generate_json(model, "--requests", write_requests(tmp_path, reqs), "--kv-cache-blocks", "16",
                            "--block-size", "4")
    for req, got in zip(reqs, batched):
        [solo] = generate_json(model, "--prompt-ids", ",".join(map(str, req["prompt_ids"])), "--max-tokens", "6",
                               "--ignore-eos")
        assert got["token_ids"] == solo["token_ids"]


def test_seeded_sampling_is_independent_of_the_batch(model, tmp_path):
    target = {"prompt_ids": [1, 40, 41], "max_tokens": 12, "temperature": 0.8, "top_p": 0.9, "seed": 123,
              "ignore_eos": True}
    [alone] = generate_json(model, "--requests", write_requests(tmp_path, [target]))
    others = [{"prompt_ids": [1, 50 + i], "max_tokens": 5 + i, "temperature": 1.0} for i in range(6)]
    mixed = generate_json(model, "--requests", write_requests(tmp_path, others[:3] + [target] + others[3:]))
    assert mixed[3]["token_ids"] == alone["token_ids"]


def test_stop_string_is_cut_and_reported(model):
    [full] = generate_json(model, "--prompt-ids", "1,30,31", "--max-tokens", "16", "--ignore-eos")
    text = full["text"]
    stop = text[len(text) // 2: len(text) // 2 + 2]
    assert stop.strip(), "need a non-blank stop string"
    [cut] = generate_json(model, "--prompt-ids", "1,30,31", "--max-tokens", "16", "--ignore-eos", "--stop", stop)
    assert cut["finish_reason"] == "stop"
    assert cut["text"] == text[:text.index(stop)]
    assert stop not in cut["text"]


@pytest.mark.parametrize("args,message", [
    (["--model", "/nonexistent", "--prompt", "x"], "/nonexistent/config.json"),
    (["--prompt", "x"], "--model DIR is required"),
    (["--model", "M", "--prompt", "x", "--bogus", "1"], "unknown flag --bogus"),
    (["--model", "M", "--prompt", "x", "--prompt-ids", "1"], "exactly one of --prompt"),
    (["--model", "M", "--prompt-ids", "1,x"], "'x' is not an integer"),
    (["--model", "M", "--prompt-ids", "1,2", "--temperature", "-1"], "temperature must be"),
    (["--model", "M", "--prompt-ids", "", "--max-tokens", "3"], "prompt is empty"),
])
def test_errors_are_precise(model, args, message):
    args = [model if a == "M" else a for a in args]
    p = run(CLI, "generate", *args, check=False)
    assert p.returncode != 0
    assert message in p.stderr


def test_logits_tool_rejects_bad_arguments(model, tmp_path):
    p = run(TOOL, "logits", "--model", model, "--prompt-ids", "1,2", "--out", str(tmp_path / "x.npy"),
            "--prefill-len", "5", check=False)
    assert p.returncode == 1 and "--prefill-len must be in" in p.stderr
    p = run(TOOL, "frobnicate", check=False)
    assert p.returncode == 2 and "unknown command" in p.stderr


def test_tenants_priorities_and_a_pool_that_forces_preemption(model, tmp_path):
    """Requests of several tenants through the scheduler with a tiny pool: some are preempted and
    recomputed, and every output still equals the request run alone."""
    reqs = [{"prompt_ids": [1] + [3 + (i * 53 + j * 17) % 500 for j in range(3 + i % 6)], "max_tokens": 12,
             "ignore_eos": True, "tenant": f"t{i % 3}", "priority": i % 2} for i in range(12)]
    batched = generate_json(model, "--requests", write_requests(tmp_path, reqs), "--kv-cache-blocks", "12",
                            "--block-size", "4", "--max-num-seqs", "8")
    assert all("error" not in r for r in batched), batched
    for req, got in zip(reqs, batched):
        [solo] = generate_json(model, "--prompt-ids", ",".join(map(str, req["prompt_ids"])), "--max-tokens", "12",
                               "--ignore-eos")
        assert got["token_ids"] == solo["token_ids"]


def test_request_that_can_never_fit_the_pool_is_refused_alone(model, tmp_path):
    reqs = [{"prompt_ids": [1, 5, 6], "max_tokens": 4, "ignore_eos": True},
            {"prompt_ids": [1] + [7] * 30, "max_tokens": 40}]
    out = generate_json(model, "--requests", write_requests(tmp_path, reqs), "--kv-cache-blocks", "8",
                        "--block-size", "4")
    assert len(out[0]["token_ids"]) == 4
    assert "the pool has 8" in out[1]["error"]
