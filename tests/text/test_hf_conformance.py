"""Conformance of para_text (engine/text) with the PyPI `tokenizers` package.

Each test builds a tokenizer of one family with the `tokenizers` Python API (builders.py), saves
its tokenizer.json, and runs the same strings through `tokenizers` and through the C++ driver
(tokenizer_driver, path in $PARA_TOKENIZER_DRIVER). Ids with and without special tokens, and the
decoded text with and without skip_special_tokens, must be identical for every string; so must the
decoding of random id sequences (byte tokens among them, so ill-formed UTF-8 is decoded too).
Streaming (TokenBytes through the engine's IncrementalDetokenizer) must give the decoded text: for
byte-level tokenizers exactly; for the others, the text HF decodes for the ids between two plain
anchor tokens, i.e. in the middle of a sequence (the differences at the edges of a sequence, such as
the first space that Metaspace and Strip drop, are documented in engine/text/hf_tokenizer.h).
Nothing is skipped: a missing driver or `tokenizers` package is a failure.
"""
import json
import os
import pathlib
import sys
import random
import subprocess
import zlib

import pytest

import builders
import corpus

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
import default_model  # noqa: E402

# The seven families built here, and the project's converted default model's tokenizer.json
# (SmolLM2-135M-Instruct rebuilt from its GGUF vocabulary by tools/convert_gguf.py).
SPECIALS = {name: specials for name, (_, specials) in builders.BUILDERS.items()}
SPECIALS["default_model"] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<repo_name>",
                             "<file_sep>", "<jupyter_code>", "<empty_output>"]
NAMES = list(SPECIALS)

N_STRINGS = 2000
N_RANDOM_ID_SEQUENCES = 500


def _tokenizers():
    try:
        import tokenizers  # noqa: F401
    except ImportError as e:
        pytest.fail(f"the `tokenizers` package is required (pip install -r tests/requirements.txt): {e}")
    return tokenizers


def _driver():
    path = os.environ.get("PARA_TOKENIZER_DRIVER")
    if not path or not os.access(path, os.X_OK):
        pytest.fail("PARA_TOKENIZER_DRIVER must name the built tokenizer_driver executable "
                    f"(got {path!r}); run through ctest or set it")
    return path


def run_driver(tokenizer_path, requests):
    lines = "".join(json.dumps(r) + "\n" for r in requests)
    proc = subprocess.run([_driver(), tokenizer_path], input=lines.encode(), capture_output=True,
                          timeout=600)
    assert proc.returncode == 0, f"driver failed ({proc.returncode}): {proc.stderr.decode()}"
    answers = [json.loads(l) for l in proc.stdout.decode().split("\n") if l]
    assert len(answers) == len(requests)
    return answers


def first_differences(rows, limit=5):
    return "\n".join(f"  input {inp!r}\n    tokenizers: {want!r}\n    para_text:  {got!r}"
                     for inp, want, got in rows[:limit])


def random_id_sequences(tok, rng, n):
    vocab = tok.get_vocab(with_added_tokens=True)
    ids = sorted(vocab.values())
    byte_ids = [i for t, i in vocab.items() if len(t) == 6 and t.startswith("<0x")]
    out = []
    for _ in range(n):
        length = rng.randint(0, 30)
        seq = []
        for _ in range(length):
            r = rng.random()
            if byte_ids and r < 0.35:
                seq.append(rng.choice(byte_ids))
            elif r < 0.45:
                seq.append(rng.choice(ids[:300]))  # specials and single bytes/characters
            else:
                seq.append(rng.choice(ids))
        out.append(seq)
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    _tokenizers()
    base = tmp_path_factory.mktemp("tokenizers")
    out = {name: build(str(base / f"{name}.json")) for name, (build, _) in builders.BUILDERS.items()}
    out["default_model"] = os.path.join(default_model.path(), "tokenizer.json")
    return out


@pytest.mark.parametrize("name", NAMES)
def test_encode_and_decode_match_tokenizers(built, name):
    tokenizers = _tokenizers()
    path = built[name]
    tok = tokenizers.Tokenizer.from_file(path)
    texts = corpus.strings(N_STRINGS, seed=zlib.crc32(name.encode()), specials=SPECIALS[name])
    assert len(texts) >= N_STRINGS
    answers = run_driver(path, [{"text": t} for t in texts])
    diffs = {"ids": [], "ids_with_special": [], "decoded": [], "decoded_skip_special": []}
    for text, got in zip(texts, answers):
        plain = tok.encode(text, add_special_tokens=False).ids
        special = tok.encode(text, add_special_tokens=True).ids
        want = {"ids": plain, "ids_with_special": special,
                "decoded": tok.decode(special, skip_special_tokens=False),
                "decoded_skip_special": tok.decode(special, skip_special_tokens=True)}
        for key, rows in diffs.items():
            if got[key] != want[key]:
                rows.append((text, want[key], got[key]))
    report = "\n".join(f"{key}: {len(rows)} of {len(texts)} differ\n{first_differences(rows)}"
                       for key, rows in diffs.items() if rows)
    assert not report, f"{name}: para_text differs from tokenizers\n{report}"


@pytest.mark.parametrize("name", NAMES)
def test_decode_of_random_ids_matches_tokenizers(built, name):
    tokenizers = _tokenizers()
    path = built[name]
    tok = tokenizers.Tokenizer.from_file(path)
    seqs = random_id_sequences(tok, random.Random(5), N_RANDOM_ID_SEQUENCES)
    answers = run_driver(path, [{"ids": s} for s in seqs])
    rows = []
    for seq, got in zip(seqs, answers):
        for key, skip in (("decoded", False), ("decoded_skip_special", True)):
            want = tok.decode(seq, skip_special_tokens=skip)
            if got[key] != want:
                rows.append((seq, want, got[key]))
    assert not rows, f"{name}: {len(rows)} decodes differ\n{first_differences(rows)}"


# Byte-level decoders decode a sequence exactly as its tokens stream.
BYTE_LEVEL = ["llama3", "smollm2", "added_tokens", "default_model"]


@pytest.mark.parametrize("name", NAMES)
def test_streaming_gives_the_decoded_text(built, name):
    tokenizers = _tokenizers()
    path = built[name]
    tok = tokenizers.Tokenizer.from_file(path)
    texts = corpus.strings(N_STRINGS, seed=3, specials=SPECIALS[name])
    answers = run_driver(path, [{"text": t} for t in texts])
    # A plain token with no marker: what HF decodes between two of them is the text of the
    # tokens in the middle of a sequence.
    anchor = tok.token_to_id("a")
    assert anchor is not None and tok.decode([anchor]) == "a"
    rows = []
    for text, got in zip(texts, answers):
        ids = got["ids"]
        if name in BYTE_LEVEL:
            want = tok.decode(ids, skip_special_tokens=True)
        else:
            want = tok.decode([anchor] + ids + [anchor], skip_special_tokens=True)
            assert want.startswith("a") and want.endswith("a")
            want = want[1:-1]
        if got["streamed"] != want:
            rows.append((text, want, got["streamed"]))
    assert not rows, f"{name}: {len(rows)} streams differ\n{first_differences(rows)}"
