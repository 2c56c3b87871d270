"""The bounded soak (soak.py) as a test: 110 s of mixed gRPC and HTTP traffic from 8 tenants, with
client cancels, short deadlines, abrupt disconnects and adapter hot-swaps, then no leaked KV block
or adapter lease, no hung request, no crash and bounded RSS. Bound by time, not by count, so it
takes about 2 minutes however loaded the machine is; MIN_REQUESTS keeps it from passing on a run
that did next to nothing. ctest runs it as soak_tests (label soak).

The small tests below check that the soak's own judgements fail where they should."""
import pytest

import soak
from soak import Outcome, Report, Samples, SwapLog, h

SECONDS = 110
# About 500 requests a second run on the idle 2-core development machine; a heavily loaded one
# still manages well over a tenth of that.
MIN_REQUESTS = 3000


@h.requires_binaries
def test_two_minutes_of_hostile_traffic_leave_the_server_clean(tmp_path):
    args = soak.parse_args(["--duration-s", str(SECONDS), "--requests", "100000000", "--seed", "7"])
    report = soak.run_soak(args, tmp_path)
    print(soak.summary(report, args))
    assert not report.problems, "\n".join(report.problems[:50])
    assert len(report.outcomes) >= MIN_REQUESTS

    # The run did what it claims: every hostile event happened, and the server saw them.
    seen = {(o.kind, o.api, o.result) for o in report.outcomes}
    for want in [("cancel", "grpc-stream", "CANCELLED"), ("cancel", "http-stream", "closed"),
                 ("deadline", "grpc-unary", "DEADLINE_EXCEEDED"), ("deadline", "grpc-stream", "DEADLINE_EXCEEDED"),
                 ("disconnect", "grpc-unary", "CANCELLED"), ("disconnect", "grpc-stream", "CANCELLED"),
                 ("disconnect", "http-json", "closed"), ("disconnect", "http-stream", "closed"),
                 ("invalid", "grpc-unary", "UNAUTHENTICATED"), ("invalid", "http-json", "http-404")]:
        assert want in seen, want
    assert report.idle["finish_reasons"].get("cancelled", 0) > 0
    assert report.idle["finish_reasons"].get("deadline_exceeded", 0) > 0
    assert set(report.groups()) == {"n", "best_of", "beam"}  # KV blocks shared by sequence groups
    assert report.swaps.counts["new-version"] >= 10 and report.swaps.counts["unload-reload"] >= 10
    # Every tenant got answers from each of its adapters and from the base model, over both APIs.
    served = {(o.tenant, o.adapter, o.api[:4]) for o in report.outcomes if o.kind == "normal" and o.result == "ok"}
    for tenant, adapters in soak.TENANTS.items():
        for adapter in [n for n, _ in adapters] + [""]:
            assert {(tenant, adapter, "grpc"), (tenant, adapter, "http")} <= served, (tenant, adapter)


# ---- the soak's judgements --------------------------------------------------------------------

def outcome(kind="normal", result="ok", message="", adapter="t0-para", start=10.0, end=11.0, **kw):
    o = Outcome(kind, "grpc-unary", "t0", adapter, start, end, result, message, **kw)
    return o


def test_a_status_is_allowed_only_for_what_the_request_did():
    swaps = SwapLog()
    assert soak.judge(outcome(), swaps, 60) == ""
    assert soak.judge(outcome("cancel", "CANCELLED", "Locally cancelled"), swaps, 60) == ""
    assert "not allowed" in soak.judge(outcome("normal", "CANCELLED", "x"), swaps, 60)
    assert "not allowed" in soak.judge(outcome("deadline", "UNAVAILABLE", "x"), swaps, 60)
    assert "without a message" in soak.judge(outcome("deadline", "DEADLINE_EXCEEDED", ""), swaps, 60)
    assert "took" in soak.judge(outcome(end=100.0), swaps, 60)
    assert soak.judge(outcome(problem="3 tokens, want 4"), swaps, 60) == "3 tokens, want 4"
    too_big = "request needs up to 9 KV blocks; the pool has 8 (shorten the prompt or max_tokens)"
    assert soak.judge(outcome("normal", "INVALID_ARGUMENT", too_big), swaps, 60) == ""
    bad = outcome("invalid", "INVALID_ARGUMENT", "max_tokens ...", expect=("NOT_FOUND", "http-404"))
    assert "want one of" in soak.judge(bad, swaps, 60)


def test_not_found_is_allowed_only_while_the_adapter_is_unloaded():
    swaps = SwapLog()
    swaps.windows.append(("t0-para", 10.5, 12.0))
    gone = dict(result="NOT_FOUND", message="unknown adapter 't0-para'")
    assert soak.judge(outcome(**gone), swaps, 60) == ""                        # overlaps
    assert "while its adapter was loaded" in soak.judge(outcome(start=13, end=14, **gone), swaps, 60)
    assert "while its adapter was loaded" in soak.judge(outcome(adapter="t4-para", **gone), swaps, 60)
    swaps.open["t4-para"] = 10.9                                                # reload never came
    assert soak.judge(outcome(adapter="t4-para", **gone), swaps, 60) == ""


def test_rss_growth_and_cap_are_failures():
    args = soak.parse_args(["--rss-growth-mb", "10", "--rss-cap-mb", "100"])

    def problems(rss_mb):
        r = Report([], SwapLog(), Samples(rss_kb=[(float(t), int(mb * 1024)) for t, mb in enumerate(rss_mb)]), 1.0)
        soak._check_rss(r, args)
        return r.problems

    assert problems([30] * 4 + [35] * 4 + [39] * 4) == []
    assert "RSS grew" in problems([30] * 4 + [35] * 4 + [41] * 4)[0]
    assert "over the cap" in problems([30] * 4 + [101] + [30] * 7)[0]
    assert "RSS samples" in problems([30] * 3)[0]
