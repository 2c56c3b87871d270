"""Tokenizers built with the PyPI `tokenizers` package for the conformance tests.

Each builder trains (or assembles) a tokenizer of one family on corpus.training_text(), saves it
with tokenizer.save(path), and returns the path. Fields that the Python API cannot set (BPE's
ignore_merges, the legacy "a b" merges spelling) are set by editing the saved JSON, which is then
reloaded through tokenizers.Tokenizer.from_file, so `tokenizers` itself is always the oracle.
"""
import json

from tokenizers import (AddedToken, Regex, Tokenizer, decoders, models, normalizers,
                        pre_tokenizers, processors, trainers)

import corpus

# Llama 3's (and GPT-4's cl100k) pre-tokenization pattern.
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                  r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                   "<|end_header_id|>", "<|eot_id|>", "<|reserved_special_token_0|>"]


def _edit(path, fn):
    """Applies fn to the saved JSON document, rewrites it, and checks that `tokenizers` loads it."""
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    fn(doc)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False)
    Tokenizer.from_file(path)
    return path


def _legacy_merges(doc):
    doc["model"]["merges"] = [" ".join(m) for m in doc["model"]["merges"]]


def llama3_style(path):
    """(a) Byte-level BPE: Split(Llama-3 regex) + ByteLevel(use_regex=False), ignore_merges,
    special added tokens, ByteLevel decoder, ByteLevel + TemplateProcessing(BOS) post-processor."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_PATTERN), "isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=3000, special_tokens=LLAMA3_SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(corpus.training_text(), trainer)
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(
            single="<|begin_of_text|> $A",
            special_tokens=[("<|begin_of_text|>", tok.token_to_id("<|begin_of_text|>"))])])
    tok.save(path)
    return _edit(path, lambda d: d["model"].__setitem__("ignore_merges", True))


def smollm2_style(path):
    """GPT-2/SmolLM2 style: Sequence[Digits(individual), ByteLevel(add_prefix_space=False,
    use_regex=True)], ByteLevel decoder and post-processor; merges saved as "a b" strings."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(vocab_size=2500, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(corpus.training_text(seed=11), trainer)
    tok.save(path)
    return _edit(path, _legacy_merges)


def _sentencepiece_bpe(normalizer, pre_tokenizer, decoder, seed):
    """A Llama-2-like BPE: <unk>, <s>, </s>, then the 256 <0xNN> byte pieces, then merged pieces
    trained on the corpus with a small alphabet (so that byte fallback is exercised)."""
    trainer_tok = Tokenizer(models.BPE(unk_token="<unk>"))
    trainer_tok.normalizer = normalizer
    trainer_tok.pre_tokenizer = pre_tokenizer
    trainer = trainers.BpeTrainer(vocab_size=1500, limit_alphabet=120,
                                  special_tokens=["<unk>", "<s>", "</s>"], show_progress=False)
    trainer_tok.train_from_iterator(corpus.training_text(seed=seed), trainer)
    trained = json.loads(trainer_tok.to_str())["model"]
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab["<0x%02X>" % b] = len(vocab)
    for piece, _ in sorted(trained["vocab"].items(), key=lambda kv: kv[1]):
        if piece not in vocab:
            vocab[piece] = len(vocab)
    merges = [tuple(m) for m in trained["merges"]]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", fuse_unk=True,
                               byte_fallback=True))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoder
    tok.add_special_tokens(["<unk>", "<s>", "</s>"])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return tok


def llama2_style(path):
    """(b) Sentencepiece-style BPE with byte_fallback: Prepend("▁") + Replace(" ", "▁")
    normalizers, no pre-tokenizer, Llama-2's decoder sequence (Replace ▁→space, ByteFallback,
    Fuse, Strip), TemplateProcessing(<s> $A)."""
    tok = _sentencepiece_bpe(
        normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")]),
        None,
        decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                           decoders.Strip(content=" ", left=1, right=0)]),
        seed=13)
    tok.save(path)
    return path


def metaspace_style(path):
    """(b') Sentencepiece-style BPE with byte_fallback behind a Metaspace pre-tokenizer
    (prepend_scheme "first", split false) and decoder, as newer Llama/Mistral files have, with
    special tokens that can start the text."""
    tok = _sentencepiece_bpe(
        None,
        pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False),
        decoders.Sequence([decoders.Metaspace(replacement="▁", prepend_scheme="first"),
                           decoders.ByteFallback(), decoders.Fuse()]),
        seed=17)
    tok.add_special_tokens(["[INST]", "[/INST]"])
    tok.save(path)
    return path


CASES_SPECIAL = [
    AddedToken("<s>", special=True, normalized=False),
    AddedToken("</s>", special=True, normalized=False),
    AddedToken("<|im_start|>", special=True, normalized=False),
    AddedToken("<|im_end|>", special=True, normalized=False, rstrip=True),
    AddedToken("[MASK]", special=True, normalized=False, lstrip=True),
    AddedToken("<pad>", special=True, normalized=False, lstrip=True, rstrip=True),
    AddedToken("<|im", special=True, normalized=False),  # a prefix of other tokens
]
CASES_PLAIN = [
    AddedToken("hello world", normalized=True),
    AddedToken("ＡＢＣ", normalized=True),  # NFKC makes it "ABC"
    AddedToken("ﬁre", normalized=True),  # NFKC makes it "fire"
    AddedToken("<tool>", normalized=False, single_word=True),
    AddedToken("foo", normalized=True, single_word=True),
    AddedToken("@@", normalized=False),
    AddedToken("Straße", normalized=False, lstrip=True),
    AddedToken("2024", normalized=True),
    AddedToken("東京", normalized=False, rstrip=True),
    AddedToken("x y", normalized=False, single_word=True, lstrip=True, rstrip=True),
]


def added_tokens_style(path):
    """(c) Many added tokens (special and not; lstrip, rstrip, single_word, normalized variants)
    with an NFKC normalizer, Digits + ByteLevel pre-tokenizers, TemplateProcessing adding BOS."""
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=False),
        pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=2000, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(corpus.training_text(seed=19), trainer)
    tok.add_special_tokens(CASES_SPECIAL)
    tok.add_tokens(CASES_PLAIN)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))])
    tok.save(path)
    return path


def bert_like_style(path):
    """BPE with continuing_subword_prefix "##" and end_of_word_suffix "</w>", unk_token without
    fuse_unk; NFKD, Lowercase, Replace(regex), Strip normalizers; WhitespaceSplit, Punctuation
    (contiguous), Digits pre-tokenizers; BPEDecoder; BertProcessing."""
    tok = Tokenizer(models.BPE(unk_token="[UNK]", continuing_subword_prefix="##",
                               end_of_word_suffix="</w>"))
    tok.normalizer = normalizers.Sequence([
        normalizers.NFKD(), normalizers.Lowercase(), normalizers.Replace(Regex(r"\s+"), " "),
        normalizers.Strip()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation("contiguous"),
        pre_tokenizers.Digits(individual_digits=True)])
    tok.decoder = decoders.BPEDecoder(suffix="</w>")
    trainer = trainers.BpeTrainer(vocab_size=2000, limit_alphabet=150,
                                  continuing_subword_prefix="##", end_of_word_suffix="</w>",
                                  special_tokens=["[UNK]", "[CLS]", "[SEP]", "[MASK]"],
                                  show_progress=False)
    tok.train_from_iterator(corpus.training_text(seed=23), trainer)
    tok.post_processor = processors.BertProcessing(("[SEP]", tok.token_to_id("[SEP]")),
                                                   ("[CLS]", tok.token_to_id("[CLS]")))
    tok.save(path)
    return path


def mixed_splits_style(path):
    """Split pre-tokenizers with every behaviour, string and regex patterns and invert, then
    Whitespace and Metaspace (prepend_scheme always); NFC + Replace + Prepend normalizers; unk
    fused; Metaspace + Strip decoders; RobertaProcessing."""
    tok = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True))
    tok.normalizer = normalizers.Sequence([
        normalizers.NFC(), normalizers.Replace(Regex(r" {2,}"), " "),
        normalizers.Replace("\t", " <tab> "), normalizers.Prepend("^")])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"\p{P}+"), "merged_with_previous"),
        pre_tokenizers.Split(Regex(r"[0-9]"), "merged_with_next", invert=True),
        pre_tokenizers.Split("ab", "contiguous"),
        pre_tokenizers.Split(Regex(r"\n+"), "removed"),
        pre_tokenizers.Whitespace(),
        pre_tokenizers.Metaspace(replacement="_", prepend_scheme="always", split=True)])
    tok.decoder = decoders.Sequence([decoders.Metaspace(replacement="_", prepend_scheme="always"),
                                     decoders.Strip(content="x", left=1, right=0)])
    trainer = trainers.BpeTrainer(vocab_size=1500, limit_alphabet=100,
                                  special_tokens=["<unk>", "<s>", "</s>"], show_progress=False)
    tok.train_from_iterator(corpus.training_text(seed=29), trainer)
    tok.post_processor = processors.RobertaProcessing(("</s>", tok.token_to_id("</s>")),
                                                      ("<s>", tok.token_to_id("<s>")))
    tok.save(path)
    return path


BUILDERS = {
    "llama3": (llama3_style, LLAMA3_SPECIALS),
    "llama2": (llama2_style, ["<s>", "</s>", "<unk>"]),
    "metaspace": (metaspace_style, ["<s>", "</s>", "[INST]", "[/INST]"]),
    "added_tokens": (added_tokens_style,
                     [t.content for t in CASES_SPECIAL] + [t.content for t in CASES_PLAIN] +
                     ["hello  world", "HELLO WORLD", "ABC", "fire", "Strasse"]),
    "smollm2": (smollm2_style, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]),
    "bert_like": (bert_like_style, ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]),
    "mixed_splits": (mixed_splits_style, ["<unk>", "<s>", "</s>"]),
}
