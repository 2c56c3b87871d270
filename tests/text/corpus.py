"""Deterministic test strings for the tokenizer conformance tests.

strings(n, seed, specials) returns n strings mixing the hard cases of tokenization: many scripts
(CJK, Arabic, Hebrew, Devanagari, Thai, Cyrillic, Greek) and random assigned code points, emoji with ZWJ joiners and skin tones,
combining marks, runs of every kind of whitespace, digits and numbers, code, special tokens inside
text (adjacent, repeated, partial), unusual code points (U+FFFD, noncharacters, private use, NUL,
controls), long words, and the empty string. training_text() is a corpus to train BPE models on.
"""
import random
import unicodedata

WORDS = [
    # Latin, with accents and case
    "the", "The", "THE", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "don't", "it's",
    "I'm", "we'll", "they've", "you'd", "She'S", "café", "naïve", "Straße", "façade", "Ærøskøbing",
    "hello", "Hello", "HELLO", "world", "tokenizer", "internationalization", "ﬁnance", "ﬂoor",
    # Cyrillic, Greek
    "привет", "мир", "Москва", "ёжик", "Καλημέρα", "κόσμε", "ΣΊΣΥΦΟΣ", "ψυχή",
    # CJK, Japanese, Korean
    "你好", "世界", "中华人民共和国", "東京", "ひらがな", "カタカナ", "ｶﾀｶﾅ", "한국어", "안녕하세요",
    # Arabic, Hebrew (right to left), Devanagari, Thai
    "مرحبا", "بالعالم", "العَرَبِيَّة", "שלום", "עולם", "नमस्ते", "हिन्दी", "क्षत्रिय", "สวัสดี", "ภาษาไทย",
    # emoji: ZWJ sequences, skin tones, flags, keycaps, variation selectors
    "😀", "👍🏽", "👩‍👩‍👧‍👦", "🧑🏿‍🚀", "🏳️‍🌈", "🇫🇷", "1️⃣", "❤️", "☺︎", "🫠",
    # combining marks, decomposed letters, fullwidth and compatibility forms
    "e\u0301", "a\u0308\u0301", "n\u0303", "Ａｂｃ", "１２３", "①②", "½", "ﾊﾝｶｸ", "㎏", "™", "ǅ",
    # digits and numbers
    "0", "7", "42", "1234567", "3.14159", "-2.5e10", "1,000,000", "٣٤٥", "१२३", "๑๒๓", "0x1F",
    # code
    "def f(x):", "return x*2;", "int main() {", "}", "std::vector<int>", "a->b", "i++", "x != y",
    "#include <stdio.h>", "print('hi')", "`code`", "$HOME/.bashrc", "https://example.com/a?b=c",
    "foo_bar_baz", "camelCaseWord", "snake_case", "<div class=\"x\">", "&amp;", "@user", "#tag",
    # punctuation
    ",", ".", "!", "?", "...", "…", "—", "–", "«", "»", "“quoted”", "‘single’", "¿qué?", "¡hola!",
    # unusual code points
    "\ufffd", "\ufdd0", "\uffff", "\U0010ffff", "\ue000", "\U000f0000", "\x00", "\x01", "\x07",
    "\x1b[0m", "\x7f", "\u200b", "\u200d", "\ufeff", "\u2028", "\u00ad", "\u0085",
]

SPACES = [" ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", "\r", " \n ", "\u00a0", "\u2003",
          "\u3000", "\u202f", "\u2009", "\x0b", "\x0c", "\u1680", " \t \n"]


def long_word(rng):
    alphabet = rng.choice(["abcdefghij", "абвгде", "你好世界", "0123456789", "ab😀", "xyz_"])
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(40, 300)))


def random_code_point(rng):
    """A code point assigned in Python's Unicode data (14.0 on Python 3.11), or a noncharacter or
    private-use one. Characters assigned in Unicode 15.1 and later are left out: Debian 12's ICU
    (Unicode 15.0) and the Rust standard library of `tokenizers` (Unicode 16) classify them
    differently (see engine/text/hf_tokenizer.h)."""
    while True:
        r = rng.random()
        if r < 0.45:
            c = rng.randint(0x80, 0x2FFF)
        elif r < 0.8:
            c = rng.randint(0x3000, 0xFFFD)
        else:
            c = rng.randint(0x10000, 0x3134F)
        if 0xD800 <= c < 0xE000:
            continue
        ch = chr(c)
        if unicodedata.category(ch) != "Cn" or (c & 0xFFFE) == 0xFFFE or 0xFDD0 <= c <= 0xFDEF:
            return ch


def one_string(rng, specials):
    kind = rng.random()
    if kind < 0.02:
        return ""
    if kind < 0.05:
        return long_word(rng)
    if kind < 0.15:
        return "".join(random_code_point(rng) if rng.random() < 0.6 else rng.choice(" a1\n\t.")
                       for _ in range(rng.randint(1, 16)))
    parts = []
    for _ in range(rng.randint(1, 14)):
        r = rng.random()
        if specials and r < 0.12:
            s = rng.choice(specials)
            c = rng.random()
            if c < 0.15:  # a partial special token
                s = s[: rng.randint(1, max(1, len(s) - 1))]
            elif c < 0.3:  # repeated / adjacent
                s = s * rng.randint(2, 3)
            parts.append(s)
        elif r < 0.4:
            parts.append(rng.choice(SPACES))
        else:
            parts.append(rng.choice(WORDS))
        if rng.random() < 0.5:
            parts.append(" ")
    return "".join(parts)


def strings(n, seed, specials=()):
    rng = random.Random(seed)
    fixed = ["", " ", "  ", "\n", "a", " a", "a ", "\t\t", " \r\n ", "1234567890"]
    fixed += [s for s in specials] + [" " + s + " " for s in specials]
    out = fixed + [one_string(rng, list(specials)) for _ in range(n)]
    return out[: max(n, len(fixed))]


def training_text(seed=7, lines=3000):
    rng = random.Random(seed)
    return [one_string(rng, []) for _ in range(lines)]
