"""Beam search in the engine (para-cli with beam_width) against the independent numpy beam search
(beam_ref.py) on the numpy reference model: widths 1-4, the base model and PARA and LoRA
adapters, length penalties and early-stopping modes, and stop ids that end hypotheses early.
Every returned hypothesis must have the same tokens, and the same cumulative log-prob within
1e-4; hypotheses are ranked the same.

Run:  PARA_TOOL=build/bin/para-tool PARA_CLI=build/bin/para-cli python3 -m pytest -q tests/reference
"""
import json

import numpy as np
import pytest

import beam_ref as B
import harness as H
import llama_ref as R
import lora_ref as L
import para_ref as P

if H.PARA_TOOL is None or H.PARA_CLI is None:
    pytest.fail(f"beam search tests need para-tool and para-cli: {H.TOOL_MISSING}", pytrace=False)

MODEL = dict(layers=2, hidden=64, heads=4, kv_heads=2, ffn=128, seed=61)
PROMPT = [1, 17, 203, 44, 9]
STEPS = 6


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("beam")
    mdir = str(d / "model")
    model = H.make_tiny_model(mdir, MODEL)
    para_dir, lora_dir = str(d / "para"), str(d / "lora")
    H.run([H.PARA_TOOL, "make-tiny-adapter", para_dir, "--model", mdir, "--seed", "5", "--r", "8"])
    H.run([H.PARA_TOOL, "make-tiny-lora", lora_dir, "--model", mdir, "--seed", "6", "--r", "4",
           "--targets", "all"])
    return {"dir": mdir, "model": model, "tmp": d, "para": (para_dir, P.load_para_adapter(para_dir, model)),
            "lora": (lora_dir, L.load_lora_adapter(lora_dir, model))}


def scorer(setup, adapter):
    """next_logprobs(ids) of the reference model, with `adapter` ("", "para", "lora")."""
    model = setup["model"]
    if adapter == "lora":
        merged = L.merge_lora(model, setup["lora"][1])
        return lambda ids: B.log_softmax(R.forward_logits(merged, ids)[-1])
    if adapter == "para":
        vecs = P.compute_vectors(model, PROMPT, setup["para"][1])
        return lambda ids: B.log_softmax(P.forward_logits(model, ids, vectors=vecs)[-1])
    return lambda ids: B.log_softmax(R.forward_logits(model, ids)[-1])


CASES = [  # (adapter, width, length_penalty, early_stopping, stop ids from the first step's ranks)
    ("", 1, 1.0, "heuristic", ()),
    ("", 2, 1.0, "heuristic", (1,)),
    ("", 3, 1.0, "true", (2, 4)),
    ("", 4, 0.5, "never", (1,)),
    ("", 4, 2.0, "heuristic", (3,)),
    ("para", 1, 1.0, "heuristic", ()),
    ("para", 3, 1.0, "heuristic", (1,)),
    ("para", 4, 1.0, "never", (2,)),
    ("lora", 2, 1.0, "true", (1,)),
    ("lora", 4, 1.0, "heuristic", (3,)),
]


@pytest.mark.parametrize("adapter,width,lp,es,stop_ranks", CASES,
                         ids=[f"{a or 'base'}-w{w}-lp{lp}-{es}-stop{len(s)}" for a, w, lp, es, s in CASES])
def test_beam_search_matches_the_reference(setup, adapter, width, lp, es, stop_ranks):
    nxt = scorer(setup, adapter)
    first = np.argsort(-nxt(PROMPT), kind="stable")
    stop_ids = tuple(int(first[r]) for r in stop_ranks)  # tokens the search will meet early
    want = B.beam_search(nxt, PROMPT, STEPS, width, stop_ids=stop_ids, length_penalty=lp, early_stopping=es)
    assert len(want) == width

    req = {"prompt_ids": PROMPT, "max_tokens": STEPS, "beam_width": width, "n": width, "ignore_eos": True,
           "stop_token_ids": list(stop_ids), "length_penalty": lp,
           "early_stopping": {"heuristic": False, "true": True, "never": "never"}[es]}
    if adapter:
        req["adapter"] = setup[adapter][0]
    path = setup["tmp"] / f"req-{adapter}-{width}-{lp}-{es}.jsonl"
    path.write_text(json.dumps(req) + "\n")
    out = H.parse_generate_jsons(H.run([H.PARA_CLI, "generate", "--model", setup["dir"], "--requests", str(path),
                                        "--json", "--kv-cache-dtype", "f32"]).stdout)[0]
    got = out.get("choices") or [out]
    assert [c["token_ids"] for c in got] == [ids for ids, _, _ in want], (got, want)
    if "choices" in out:
        for c, (_, _, total) in zip(got, want):
            assert abs(c["cumulative_logprob"] - total) < 1e-4
    ended = sum(1 for ids, _, _ in want if ids and ids[-1] in stop_ids)
    print(f"\n{adapter or 'base'} w={width}: lengths {[len(i) for i, _, _ in want]}, {ended} end on a stop id")


def test_some_hypotheses_end_early_on_stop_ids(setup):
    """Teeth for the cases above: a stop id among the first step's top tokens ends hypotheses
    early, so finished-hypothesis bookkeeping is exercised, not only max_tokens."""
    nxt = scorer(setup, "")
    first = np.argsort(-nxt(PROMPT), kind="stable")
    want = B.beam_search(nxt, PROMPT, STEPS, 4, stop_ids=(int(first[1]),))
    assert any(len(ids) < STEPS for ids, _, _ in want), want


def test_beam_width_one_is_greedy(setup):
    want = R.greedy_generate(setup["model"], PROMPT, STEPS)
    path = setup["tmp"] / "w1.jsonl"
    path.write_text(json.dumps({"prompt_ids": PROMPT, "max_tokens": STEPS, "beam_width": 1, "ignore_eos": True}) + "\n")
    out = H.parse_generate_jsons(H.run([H.PARA_CLI, "generate", "--model", setup["dir"], "--requests", str(path),
                                        "--json", "--kv-cache-dtype", "f32"]).stdout)[0]
    assert out["token_ids"] == [int(t) for t in want]
