"""The converted default model (SmolLM2-135M-Instruct) in our engine against `transformers` (F32):
20 chat conversations rendered by each side's own chat template and tokenizer (ours: the C++
Jinja renderer and tokenizer.json tokenizer through `para-cli generate --requests` with
"messages"; theirs: AutoTokenizer.apply_chat_template), then 24 greedy tokens each (EOS ignored, so
every comparison covers all 24 steps). Must hold: the same prompt length, the same greedy tokens
at every step, and the top-5 log-probs within 5e-4.

Needs torch + transformers in some Python: the one named by $PARA_PEFT_PYTHON
(scripts/peft-env.sh makes one), else the interpreter running pytest. Without them the test is
skipped, saying so (CI does not build that 6 GB environment); its last results are in
docs/default-model.md.

Run:  PARA_CLI=build/bin/para-cli PARA_DEFAULT_MODEL=build/models/smollm2-135m-instruct \\
      PARA_PEFT_PYTHON=build/peft-env/bin/python python3 -m pytest -s tests/reference/test_default_model_transformers.py
"""
import json
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

import harness as H

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
import default_model  # noqa: E402

STEPS = 24
TOP = 5
TOLERANCE = 5e-4

QUESTIONS = [
    "What is the capital of France?", "What is the capital of Japan?", "Name three primary colors.",
    'Translate "hello" into Spanish.', "How many days are in a week?", "Write a haiku about the sea.",
    "What is 12 plus 7?", "Give me a synonym for happy.", "Who wrote Romeo and Juliet?",
    "Explain photosynthesis in one sentence.", "List the planets of the solar system.",
    "What does CPU stand for?", "Write a Python function that adds two numbers.",
    "Why is the sky blue?", "Tell me a joke about cats.", "Quel temps fait-il à Paris ?",
]
CONVERSATIONS = [[{"role": "user", "content": q}] for q in QUESTIONS] + [
    [{"role": "system", "content": "You are a pirate. Answer like one."},
     {"role": "user", "content": "Where is the treasure?"}],
    [{"role": "user", "content": "My name is Ada."}, {"role": "assistant", "content": "Nice to meet you, Ada!"},
     {"role": "user", "content": "What is my name?"}],
    [{"role": "system", "content": "Answer in one word."}, {"role": "user", "content": "Opposite of cold?"}],
    [{"role": "user", "content": "Count from 1 to 5."}, {"role": "assistant", "content": "1, 2, 3, 4, 5"},
     {"role": "user", "content": "Now backwards."}],
]

TRANSFORMERS_SCRIPT = textwrap.dedent(r'''
    import json, sys
    import torch, transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer
    spec = json.load(open(sys.argv[1]))
    tok = AutoTokenizer.from_pretrained(spec["model"])
    model = AutoModelForCausalLM.from_pretrained(spec["model"], dtype=torch.float32)
    model.eval()
    out = []
    with torch.no_grad():
        for conv in spec["conversations"]:
            ids = tok.apply_chat_template(conv, add_generation_prompt=True, tokenize=True)
            if hasattr(ids, "keys"):
                ids = ids["input_ids"]
            ids = list(ids)
            o = model(torch.tensor([ids]), use_cache=True)
            past, logits = o.past_key_values, o.logits[0, -1]
            steps = []
            for _ in range(spec["steps"]):
                lp = torch.log_softmax(logits.double(), -1)
                top = torch.topk(lp, spec["top"])
                steps.append({"ids": top.indices.tolist(), "logprobs": top.values.tolist()})
                nxt = int(top.indices[0])
                o = model(torch.tensor([[nxt]]), past_key_values=past, use_cache=True)
                past, logits = o.past_key_values, o.logits[0, -1]
            out.append({"prompt_ids": ids, "steps": steps})
    json.dump({"versions": [torch.__version__, transformers.__version__], "results": out},
              open(spec["out"], "w"))
''')


def _probe(py):
    try:
        p = subprocess.run([py, "-c", "import torch, transformers; print(torch.__version__, transformers.__version__)"],
                           capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, str(e)
    if p.returncode != 0:
        return None, (p.stderr.strip().splitlines() or [f"rc={p.returncode}"])[-1]
    return p.stdout.strip(), None


@pytest.fixture(scope="module")
def torch_python():
    tried = []
    env = os.environ.get("PARA_PEFT_PYTHON")
    for py in ([env] if env else []) + [sys.executable]:
        versions, why = _probe(py)
        if versions:
            return py
        if py == env:  # asked for by name: its failure is an error, not a skip
            pytest.fail(f"$PARA_PEFT_PYTHON={env!r} cannot import what these tests need: {why}")
        tried.append(f"{py}: {why}")
    pytest.skip("torch/transformers not installed; set PARA_PEFT_PYTHON to a python that has them "
                f"(scripts/peft-env.sh; tried {'; '.join(tried)})")


@H.needs_cli
def test_default_model_matches_transformers(torch_python, tmp_path):
    model = default_model.path()
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"model": model, "conversations": CONVERSATIONS, "steps": STEPS, "top": TOP,
                                "out": str(tmp_path / "hf.json")}))
    script = tmp_path / "hf.py"
    script.write_text(TRANSFORMERS_SCRIPT)
    p = subprocess.run([torch_python, str(script), str(spec)], capture_output=True, text=True, timeout=1800)
    assert p.returncode == 0, p.stderr[-3000:]
    hf = json.loads((tmp_path / "hf.json").read_text())

    requests = tmp_path / "chat.jsonl"
    requests.write_text("".join(json.dumps({"messages": c, "max_tokens": STEPS, "ignore_eos": True,
                                            "logprobs": TOP}) + "\n" for c in CONVERSATIONS))
    ours = H.parse_generate_jsons(H.run([H.PARA_CLI, "generate", "--model", model, "--requests", str(requests),
                                         "--json"], timeout=1800).stdout)
    assert len(ours) == len(CONVERSATIONS)

    worst, min_gap, problems = 0.0, float("inf"), []
    for i, (want, got) in enumerate(zip(hf["results"], ours)):
        if got["prompt_tokens"] != len(want["prompt_ids"]):
            problems.append(f"conversation {i}: prompt of {got['prompt_tokens']} tokens, transformers "
                            f"{len(want['prompt_ids'])}")
        hf_tokens = [s["ids"][0] for s in want["steps"]]
        if got["token_ids"] != hf_tokens:
            problems.append(f"conversation {i}: tokens {got['token_ids']} vs transformers {hf_tokens}")
            continue
        for step, (w, g) in enumerate(zip(want["steps"], got["logprobs"])):
            min_gap = min(min_gap, w["logprobs"][0] - w["logprobs"][1])
            ours_top = {t["id"]: t["logprob"] for t in g["top"]}
            for tid, lp in zip(w["ids"], w["logprobs"]):
                if tid in ours_top:
                    worst = max(worst, abs(ours_top[tid] - lp))
                elif lp > w["logprobs"][-1] + TOLERANCE:  # only a tie at the 5th place may swap
                    problems.append(f"conversation {i} step {step}: token {tid} missing from our top-{TOP}")
    print(f"\ntransformers {hf['versions']}: {len(CONVERSATIONS)} conversations x {STEPS} greedy tokens; "
          f"max |logprob diff| in the top-{TOP} = {worst:.2e}; smallest top-2 gap = {min_gap:.2e}")
    assert not problems, "\n".join(problems[:10])
    assert worst <= TOLERANCE


BEAM_SCRIPT = textwrap.dedent(r'''
    import json, sys
    import torch, transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer
    spec = json.load(open(sys.argv[1]))
    tok = AutoTokenizer.from_pretrained(spec["model"])
    model = AutoModelForCausalLM.from_pretrained(spec["model"], dtype=torch.float32)
    model.eval()
    eos = model.generation_config.eos_token_id
    eos = set(eos if isinstance(eos, list) else [eos])
    out = []
    with torch.no_grad():
        for conv in spec["conversations"]:
            ids = tok.apply_chat_template(conv, add_generation_prompt=True, tokenize=True)
            if hasattr(ids, "keys"):
                ids = ids["input_ids"]
            ids = list(ids)
            gen = model.generate(torch.tensor([ids]), num_beams=spec["beams"],
                                 num_return_sequences=spec["beams"], max_new_tokens=spec["steps"],
                                 do_sample=False, early_stopping=False, length_penalty=1.0)
            seqs = []
            for row in gen.tolist():
                g = row[len(ids):]
                for i, t in enumerate(g):  # up to and with the first end-of-sequence token
                    if t in eos:
                        g = g[: i + 1]
                        break
                seqs.append(g)
            out.append(seqs)
    json.dump(out, open(spec["out"], "w"))
''')


@H.needs_cli
def test_default_model_beam_search_matches_transformers(torch_python, tmp_path):
    """Beam search (3 beams, all 3 returned, 16 new tokens, EOS ends hypotheses) on 6 of the
    conversations equals transformers' generate(num_beams=3, num_return_sequences=3)."""
    model = default_model.path()
    convs = CONVERSATIONS[:4] + CONVERSATIONS[-2:]
    spec = tmp_path / "beam.json"
    spec.write_text(json.dumps({"model": model, "conversations": convs, "beams": 3, "steps": 16,
                                "out": str(tmp_path / "hf_beam.json")}))
    script = tmp_path / "beam.py"
    script.write_text(BEAM_SCRIPT)
    p = subprocess.run([torch_python, str(script), str(spec)], capture_output=True, text=True, timeout=1800)
    assert p.returncode == 0, p.stderr[-3000:]
    want = json.loads((tmp_path / "hf_beam.json").read_text())
    requests = tmp_path / "beam.jsonl"
    requests.write_text("".join(json.dumps({"messages": c, "max_tokens": 16, "beam_width": 3, "n": 3}) + "\n"
                                for c in convs))
    ours = H.parse_generate_jsons(H.run([H.PARA_CLI, "generate", "--model", model, "--requests", str(requests),
                                         "--json"], timeout=1800).stdout)
    got = [[c["token_ids"] for c in o["choices"]] for o in ours]
    print(f"\n{len(convs)} conversations x 3 beams: {sum(g == w for g, w in zip(got, want))} identical")
    assert got == want
