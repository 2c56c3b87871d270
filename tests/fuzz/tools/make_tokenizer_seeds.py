"""Writes the tokenizer.json seeds of tests/fuzz/corpus/tokenizer_json: one small document per
tokenizer family that tests/text/builders.py assembles with the PyPI `tokenizers` package (BPE
with byte-level, metaspace, sentencepiece-style and BERT-like pieces, added tokens), trained to a
300-token vocabulary so that the fuzzer mutates small inputs. Run once by hand:
    python3 tests/fuzz/tools/make_tokenizer_seeds.py
"""
import os
import pathlib
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "tests" / "text"))

from tokenizers import trainers  # noqa: E402

_BpeTrainer = trainers.BpeTrainer


def _small_trainer(*args, **kwargs):
    kwargs["vocab_size"] = 300
    return _BpeTrainer(*args, **kwargs)


trainers.BpeTrainer = _small_trainer
import builders  # noqa: E402

out = ROOT / "tests" / "fuzz" / "corpus" / "tokenizer_json"
out.mkdir(parents=True, exist_ok=True)
for name in ("llama3_style", "smollm2_style", "llama2_style", "metaspace_style", "added_tokens_style",
             "bert_like_style", "mixed_splits_style"):
    with tempfile.TemporaryDirectory() as d:
        path = getattr(builders, name)(os.path.join(d, "tokenizer.json"))
        data = pathlib.Path(path).read_bytes()
    (out / f"{name}.json").write_bytes(data)
    print(f"{name}: {len(data)} bytes")
