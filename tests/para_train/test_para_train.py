"""The PARA training toolkit (tools/para_train) against the engine: adapters trained by the
PyTorch module and exported to the adapter format give the same log-probs in our engine
(para-tool logits) as in the PyTorch module, within 1e-4 (F32).

Needs torch + transformers + peft in the Python named by $PARA_PEFT_PYTHON (scripts/peft-env.sh
or scripts/para-train-env.sh makes one). Without it every test here is skipped, saying so: CI
does not build that multi-GB environment.

    test_tiny_*      the CI smoke test: a tiny random model (para-tool make-tiny-model), a few
                     training steps on token-id data, export, engine vs PyTorch (and vs the numpy
                     reference tests/reference/para_ref.py, a third, independent implementation).
    test_default_*   the same on the real default model (SmolLM2-135M-Instruct, made by
                     scripts/make-default-model.sh into $PARA_DEFAULT_MODEL), on text prompts of
                     a task's held-out split; about a minute on 2 cores.

Run:  PARA_TOOL=build/bin/para-tool PARA_PEFT_PYTHON=/path/to/venv/bin/python \\
      PARA_DEFAULT_MODEL=build/models/smollm2-135m-instruct python3 -m pytest -s tests/para_train
"""
import json
import os
import pathlib
import random
import subprocess
import sys

import numpy as np
import pytest

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "tests" / "reference"))
sys.path.insert(0, str(ROOT / "tests"))
import harness as H  # noqa: E402
import para_ref as P  # noqa: E402
import llama_ref as R  # noqa: E402

TOOLKIT = ROOT / "tools" / "para_train"
TINY = dict(layers=3, hidden=64, heads=4, kv_heads=2, ffn=128, seed=91)
TEETH = H.TEETH

if H.PARA_TOOL is None:
    pytest.skip(f"PARA training tests need para-tool: {H.TOOL_MISSING}", allow_module_level=True)


def _torch_python():
    py = os.environ.get("PARA_PEFT_PYTHON")
    if not py:
        return None, ("$PARA_PEFT_PYTHON is not set (scripts/para-train-env.sh makes a torch environment; "
                      "CI does not install torch)")
    try:
        p = subprocess.run([py, "-c", "import torch, transformers, peft"], capture_output=True, text=True,
                           timeout=300)
    except OSError as e:
        return None, f"$PARA_PEFT_PYTHON={py!r}: {e}"
    if p.returncode != 0:
        return None, f"$PARA_PEFT_PYTHON={py!r} cannot import torch, transformers, peft: " \
                     f"{(p.stderr.strip().splitlines() or ['?'])[-1]}"
    return py, None


PY, WHY = _torch_python()
if PY is None:
    print(f"SKIP para_train tests: {WHY}")
    pytest.skip(WHY, allow_module_level=True)


def toolkit(*args, timeout=900):
    """python -m para_train ARGS under $PARA_PEFT_PYTHON; fails the test with its output."""
    env = dict(os.environ, PYTHONPATH=str(TOOLKIT), TOKENIZERS_PARALLELISM="false")
    cmd = [PY, "-m", "para_train", *map(str, args)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if p.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-4000:]}\n{p.stdout[-1000:]}")
    return p.stdout


def torch_logits(tmp, model, adapter, seqs):
    """PyTorch module logits for each (ids, prompt_len) in seqs."""
    f = tmp / "ids.jsonl"
    f.write_text("".join(json.dumps({"ids": ids, "prompt_len": k}) + "\n" for ids, k in seqs))
    args = ["logits", "--model", model, "--ids-file", f, "--out", tmp / "torch.npz"]
    if adapter:
        args += ["--adapter", adapter]
    toolkit(*args)
    with np.load(tmp / "torch.npz") as z:
        return [z[f"r{i}"] for i in range(len(seqs))]


def engine_logits(tmp, model, adapter, ids, k):
    """Engine logits: prefill the prompt (k ids), then decode the rest one token at a time, so the
    response rows reuse the vectors of the prompt as in serving."""
    return H.engine_logits(model, ids, tmp / "engine.npy", adapter, prefill_len=k)


def logprob_errors(le, lt, ids, k, top=5):
    """(max over the whole vocabulary, over the answer tokens (teacher-forced: row t predicts
    ids[t+1] for t >= k-1), over each row's top-`top` tokens in PyTorch) of |dlog_softmax|."""
    err = H.logprob_error(le, lt)
    rows = np.arange(k - 1, len(ids) - 1)
    answer = err[rows, np.asarray(ids[k:])].max() if len(rows) else 0.0
    topk = np.argsort(lt, axis=1)[:, -top:]
    return float(err.max()), float(answer), float(np.take_along_axis(err, topk, axis=1).max())


def compare(tmp, model, adapter, seqs, what, whole_vocab_tol=H.LOGPROB_TOL):
    """Engine vs PyTorch log-probs over seqs: the answer tokens' and each row's top-5 within
    LOGPROB_TOL, the whole vocabulary within whole_vocab_tol; also that the adapter moves the
    PyTorch log-probs by more than TEETH from the base model's. Returns (stats, PyTorch logits)."""
    got_t = torch_logits(tmp, model, adapter, seqs)
    base_t = torch_logits(tmp, model, None, seqs)
    stats = dict(whole=0.0, answer=0.0, top5=0.0, base_whole=0.0, moved=0.0)
    for (ids, k), lt, lb in zip(seqs, got_t, base_t):
        le = engine_logits(tmp, model, adapter, ids, k)
        assert le.dtype == np.float32 and le.shape == lt.shape and np.all(np.isfinite(le))
        whole, answer, top5 = logprob_errors(le, lt, ids, k)
        base_whole = H.max_dlogprob(engine_logits(tmp, model, None, ids, k), lb)
        for key, v in (("whole", whole), ("answer", answer), ("top5", top5), ("base_whole", base_whole),
                       ("moved", H.max_dlogprob(lt, lb))):
            stats[key] = max(stats[key], v)
        where = f"{what}: prompt of {k} + {len(ids) - k} ids"
        assert answer <= H.LOGPROB_TOL, f"{where}: answer-token log-probs differ by {answer:.3e}"
        assert top5 <= H.LOGPROB_TOL, f"{where}: top-5 log-probs differ by {top5:.3e}"
        assert whole <= whole_vocab_tol, f"{where}: log-probs differ by {whole:.3e} (whole vocabulary)"
    assert stats["moved"] > TEETH, f"{what}: the trained adapter moves log-probs by only {stats['moved']:.2e}"
    print(f"{what}: {len(seqs)} sequences, max |dlogprob| engine vs PyTorch: answer tokens {stats['answer']:.2e}, "
          f"top-5 {stats['top5']:.2e}, whole vocabulary {stats['whole']:.2e} (base model without adapter: "
          f"{stats['base_whole']:.2e}); the adapter moves log-probs by up to {stats['moved']:.2f}")
    return stats, got_t


# ----------------------------------------------------------------------------
# tiny random model: the CI smoke test
# ----------------------------------------------------------------------------
def _id_rows(rng, n, vocab):
    """A learnable id task: respond with the prompt's three smallest ids, ascending."""
    rows = []
    for _ in range(n):
        p = [rng.randrange(3, vocab) for _ in range(rng.randint(4, 10))]
        rows.append({"prompt_ids": p, "response_ids": sorted(p)[:3]})
    return rows


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny")
    mdir = str(d / "model")
    H.run([H.PARA_TOOL, "make-tiny-model", mdir] + H.model_args(TINY))
    rng = random.Random(5)
    rows = _id_rows(rng, 80, H.VOCAB)
    for name, part in (("train", rows[:64]), ("test", rows[64:])):
        (d / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
    return d, mdir, rows[64:]


@pytest.mark.parametrize("pooler,activation,dtype", [("last", "gelu", "F32"), ("mean", "silu", "BF16")])
def test_tiny_trained_para_adapter_engine_matches_pytorch(tiny, tmp_path, pooler, activation, dtype):
    d, mdir, test_rows = tiny
    out = tmp_path / "run"
    print(toolkit("train", "--model", mdir, "--method", "para", "--train", d / "train.jsonl",
                  "--test", d / "test.jsonl", "--out", out, "--steps", 8, "--batch-size", 8, "--lr", 3e-2,
                  "--r", 4, "--pooler", pooler, "--activation", activation, "--dtype", dtype, "--save-every", 4,
                  "--quiet", "--max-new-tokens", 4).strip().splitlines()[-1])
    adir = str(out / "adapter")
    cfg = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert (cfg["peft_type"], cfg["r"], cfg["pooler"], cfg["activation"]) == ("PARA", 4, pooler, activation)
    assert set(R.safetensors_dtypes(os.path.join(adir, "adapter_model.safetensors")).values()) == {dtype}
    assert (out / "checkpoint-4" / "adapter" / "adapter_model.safetensors").exists()
    log = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 8

    seqs = [(r["prompt_ids"] + r["response_ids"], len(r["prompt_ids"])) for r in test_rows[:4]]
    _, got_t = compare(tmp_path, mdir, adir, seqs, f"tiny {pooler}/{activation}/{dtype}")

    # the numpy reference reads the exported files the same way
    model = R.load_model(mdir)
    ad = P.load_para_adapter(adir, model)
    for (ids, k), lt in zip(seqs, got_t):
        H.assert_logprobs_close(P.forward_logits(model, ids, ad, prompt_len=k), lt,
                                f"tiny {pooler}: numpy reference vs PyTorch", float32=False, name="reference")


def test_tiny_identity_init_is_the_base_model(tiny, tmp_path):
    """The toolkit's fresh adapter (W_up = 0, b_up = 1), exported, is exactly the base model in the
    engine, and the PyTorch module with it equals transformers' base model."""
    _, mdir, test_rows = tiny
    adir = str(tmp_path / "identity")
    toolkit("init", "--model", mdir, "--out", adir, "--r", 4)
    ids = test_rows[0]["prompt_ids"] + test_rows[0]["response_ids"]
    k = len(test_rows[0]["prompt_ids"])
    H.assert_engine_adapter_is_base(mdir, adir, ids, tmp_path, k, "toolkit identity adapter")
    with_t, base_t = torch_logits(tmp_path, mdir, adir, [(ids, k)])[0], torch_logits(tmp_path, mdir, None, [(ids, k)])[0]
    assert np.array_equal(with_t, base_t), f"identity PARA moved PyTorch logits by {np.abs(with_t - base_t).max():.3e}"


def test_tiny_lora_adapter_is_saved_by_peft_and_served(tiny, tmp_path):
    """The same toolkit trains a LoRA adapter on the same data; PEFT's save_pretrained directory
    is what the engine loads, and its logits agree with PEFT's."""
    d, mdir, test_rows = tiny
    out = tmp_path / "lora"
    toolkit("train", "--model", mdir, "--method", "lora", "--train", d / "train.jsonl", "--test", d / "test.jsonl",
            "--out", out, "--steps", 6, "--batch-size", 8, "--lr", 3e-2, "--r", 4, "--dtype", "F32", "--quiet",
            "--max-new-tokens", 4)
    cfg = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert cfg["peft_type"] == "LORA" and cfg["r"] == 4
    seqs = [(r["prompt_ids"] + r["response_ids"], len(r["prompt_ids"])) for r in test_rows[:3]]
    compare(tmp_path, mdir, str(out / "adapter"), seqs, "tiny LoRA")


# ----------------------------------------------------------------------------
# the real default model
# ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def default_model():
    import default_model as DM
    return DM.path()


def test_default_model_trained_para_adapter_engine_matches_pytorch(default_model, tmp_path):
    data = tmp_path / "data"
    toolkit("data", "--task", "isodate", "--out", data, "--train-n", 64, "--test-n", 6)
    out = tmp_path / "run"
    toolkit("train", "--model", default_model, "--method", "para", "--train", data / "train.jsonl",
            "--test", data / "test.jsonl", "--out", out, "--steps", 4, "--batch-size", 4, "--lr", 5e-3,
            "--dtype", "F32", "--eval-limit", 2, "--quiet")
    # held-out prompts (chat template applied by the tokenizer) followed by their answers
    enc = tmp_path / "enc.py"
    enc.write_text(
        "import json, sys\nsys.path.insert(0, sys.argv[3])\nfrom para_train import data as D, adapters as A\n"
        "from transformers import AutoTokenizer\n"
        "tok = AutoTokenizer.from_pretrained(sys.argv[1])\n"
        "rows = D.read_jsonl(sys.argv[2])\n"
        "print(json.dumps([[D.prompt_ids(tok, r, True), D.response_ids(tok, r, tok.eos_token_id)] for r in rows]))\n")
    p = subprocess.run([PY, str(enc), default_model, str(data / "test.jsonl"), str(TOOLKIT)], capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    pairs = json.loads(p.stdout)
    seqs = [(pr + rs, len(pr)) for pr, rs in pairs]
    # 30 layers and 49,152 logits in F32: over the whole vocabulary the far tail of the
    # distribution differs by ~1e-4 between the engine and transformers for the base model alone
    # (printed as "base model without adapter"), so the whole-vocabulary bound is 5e-4 here
    compare(tmp_path, default_model, str(out / "adapter"), seqs, "SmolLM2-135M-Instruct isodate",
            whole_vocab_tol=5e-4)
