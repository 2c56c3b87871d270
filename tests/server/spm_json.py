"""Writes a Hugging Face tokenizer.json that tokenizes exactly like the sentencepiece BPE model
that `para-tool make-tiny-model` trains (identity normalisation, "▁" prepended to the text,
byte fallback, digits split, no whitespace removal).

Why: para-server loads Debian's libsentencepiece privately with RTLD_DEEPBIND, which the sanitizer
runtimes refuse; without it the library's bundled protobuf clashes with the system one that gRPC
loads. The sanitized server runs (scripts/sanitize.sh sets PARA_TEST_TOKENIZER=json) therefore
give every tiny test model this equivalent tokenizer.json, which para-server prefers over
tokenizer.model; the tokenizer.model stays beside it, so the tests that compare with sentencepiece
itself (test_tokenize_equals_sentencepiece_and_para_cli) check that the two agree.

The LLaMA-2-style pipeline and the merges derived from the piece scores are the GGUF converter's
(tools/convert_gguf.py, spm_pipeline), fed from the sentencepiece model instead of a GGUF."""
from __future__ import annotations

import json
import os
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "tools"))
import convert_gguf as cg  # noqa: E402


def wanted() -> bool:
    """True when the tests are asked to give tiny models a tokenizer.json (sanitized runs)."""
    return os.environ.get("PARA_TEST_TOKENIZER", "") == "json"


class _Meta:
    """The two GGUF keys spm_pipeline reads, for a sentencepiece model."""

    def __init__(self, scores):
        self.values = {"tokenizer.ggml.scores": scores, "tokenizer.ggml.add_space_prefix": True}

    def get(self, key, default=None, required=False):
        return self.values.get(key, default)


def tokenizer_json(model_file: pathlib.Path) -> dict:
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=str(model_file))
    ids = range(sp.get_piece_size())
    tokens = [sp.id_to_piece(i) for i in ids]
    types = [cg.UNKNOWN if sp.is_unknown(i) else cg.CONTROL if sp.is_control(i)
             else cg.BYTE if sp.is_byte(i) else cg.NORMAL for i in ids]
    unk = types.index(cg.UNKNOWN)
    vocab = {t: i for i, t in enumerate(tokens)}
    pipeline, _ = cg.spm_pipeline(_Meta([sp.get_score(i) for i in ids]), vocab, tokens, types, unk)
    added = [{"id": i, "content": tokens[i], "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True}
             for i in ids if types[i] in (cg.UNKNOWN, cg.CONTROL)]
    # No post_processor: BOS comes from tokenizer_config.json, as with tokenizer.model.
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
            "post_processor": None, **pipeline}


def add_tokenizer_json(model_dir: pathlib.Path) -> None:
    """Writes model_dir/tokenizer.json from model_dir/tokenizer.model (kept)."""
    model_dir = pathlib.Path(model_dir)
    doc = tokenizer_json(model_dir / "tokenizer.model")
    (model_dir / "tokenizer.json").write_text(json.dumps(doc, ensure_ascii=False))
