"""Writes a Hugging Face tokenizer.json that tokenizes exactly like the sentencepiece BPE model
that `para-tool make-tiny-model` trains (identity normalisation, a dummy "▁" prefix, byte
fallback, digits split, no whitespace removal).

Why: para-server loads Debian's libsentencepiece privately with RTLD_DEEPBIND, which the sanitizer
runtimes refuse; without it the library's bundled protobuf clashes with the system one that gRPC
loads. The sanitized server runs (scripts/sanitize.sh sets PARA_TEST_TOKENIZER=json) therefore
give every tiny test model this equivalent tokenizer.json, which para-server prefers over
tokenizer.model; the tokenizer.model stays beside it, so the tests that compare with sentencepiece
itself (test_tokenize_equals_sentencepiece_and_para_cli) check that the two agree.

The merges are derived from the vocabulary as sentencepiece's BPE applies them: a pair of pieces
is merged when their concatenation is a piece, the highest-scoring concatenation first."""
from __future__ import annotations

import json
import os
import pathlib

SPACE = "\u2581"  # sentencepiece's whitespace symbol


def wanted() -> bool:
    """True when the tests are asked to give tiny models a tokenizer.json (sanitized runs)."""
    return os.environ.get("PARA_TEST_TOKENIZER", "") == "json"


def _pieces(model_file: pathlib.Path):
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=str(model_file))
    out = []
    for i in range(sp.get_piece_size()):
        kind = ("unknown" if sp.is_unknown(i) else "control" if sp.is_control(i)
                else "byte" if sp.is_byte(i) else "normal")
        out.append((sp.id_to_piece(i), sp.get_score(i), kind))
    return out


def _merges(pieces) -> list[list[str]]:
    ids = {p: i for i, (p, _, kind) in enumerate(pieces) if kind == "normal"}
    ranked = []
    for piece, score, kind in pieces:
        if kind != "normal" or len(piece) < 2:
            continue
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in ids and right in ids:
                ranked.append((-score, ids[piece], ids[left], left, right))
    ranked.sort()
    return [[left, right] for *_, left, right in ranked]


def _added(pieces) -> list[dict]:
    return [{"id": i, "content": p, "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True}
            for i, (p, _, kind) in enumerate(pieces) if kind in ("unknown", "control")]


def tokenizer_json(model_file: pathlib.Path) -> dict:
    pieces = _pieces(model_file)
    unk = next(p for p, _, kind in pieces if kind == "unknown")
    replace_space = {"type": "Replace", "pattern": {"String": " "}, "content": SPACE}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": _added(pieces),
        "normalizer": {"type": "Sequence",
                       "normalizers": [{"type": "Prepend", "prepend": SPACE}, replace_space]},
        "pre_tokenizer": None,
        "post_processor": None,  # BOS comes from tokenizer_config.json, as with tokenizer.model
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": SPACE}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {"type": "BPE", "dropout": None, "unk_token": unk,
                  "continuing_subword_prefix": None, "end_of_word_suffix": None, "fuse_unk": True,
                  "byte_fallback": True, "ignore_merges": False,
                  "vocab": {p: i for i, (p, _, _) in enumerate(pieces)},
                  "merges": _merges(pieces)},
    }


def add_tokenizer_json(model_dir: pathlib.Path) -> None:
    """Writes model_dir/tokenizer.json from model_dir/tokenizer.model (kept)."""
    model_dir = pathlib.Path(model_dir)
    doc = tokenizer_json(model_dir / "tokenizer.model")
    (model_dir / "tokenizer.json").write_text(json.dumps(doc, ensure_ascii=False))
