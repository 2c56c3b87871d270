"""Writes the para.v1.GenerateRequest seeds of tests/fuzz/corpus/grpc_request (serialized with the
Python stubs in clients/python). Run once by hand:
    python3 tests/fuzz/tools/make_grpc_seeds.py
"""
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "clients" / "python"))

from para.v1 import generation_pb2 as g  # noqa: E402

SEEDS = {
    "text": g.GenerateRequest(text="Hello world", stopping=g.StoppingCriteria(max_tokens=8, stop=["\n"])),
    "ids_sampling": g.GenerateRequest(
        token_ids=g.TokenIds(ids=[1, 5, 6, 7]), request_id="r-1", priority=5,
        sampling=g.SamplingParams(temperature=0.8, top_k=40, top_p=0.9, seed=7, repetition_penalty=1.1,
                                  presence_penalty=0.5, frequency_penalty=0.2, min_p=0.05,
                                  logit_bias={5: -100.0, 9: 2.0}),
        stopping=g.StoppingCriteria(max_tokens=16, stop_token_ids=[2], ignore_eos=True, min_tokens=2,
                                    include_stop_str_in_output=True, skip_special_tokens=False),
        logprobs=g.LogprobsOptions(top_n=5, prompt_top_n=2)),
    "chat": g.GenerateRequest(
        chat=g.ChatPrompt(messages=[g.ChatMessage(role="system", content="Be brief."),
                                    g.ChatMessage(role="user", content="Hi", name="bob")],
                          add_generation_prompt=True, template_kwargs_json='{"enable_thinking": false}')),
    "group": g.GenerateRequest(text="a", n=2, best_of=4, sampling=g.SamplingParams(temperature=1.0)),
    "beam": g.GenerateRequest(token_ids=g.TokenIds(ids=[3, 4]), n=2,
                              beam=g.BeamSearch(beam_width=3, length_penalty=1.5, early_stopping="never")),
    "bad": g.GenerateRequest(adapter="x" * 300, token_ids=g.TokenIds(ids=[-1, 1 << 30]), priority=1000,
                             sampling=g.SamplingParams(seed=(1 << 64) - 1, temperature=float("nan")),
                             stopping=g.StoppingCriteria(max_tokens=-5, stop_token_ids=[-1])),
}
out = ROOT / "tests" / "fuzz" / "corpus" / "grpc_request"
out.mkdir(parents=True, exist_ok=True)
for name, msg in SEEDS.items():
    (out / f"{name}.pb").write_bytes(msg.SerializeToString())
    print(name, msg.ByteSize())
