"""The comparison rules of harness.py checked on their own (no binaries): the greedy comparison
compares every token, fails on a real difference, and lets a near-tie break either way without
ending the comparison there."""
import numpy as np
import pytest

import harness as H
import llama_ref as R


def test_reference_greedy_tokens_pass(models):
    model = models["gqa"]
    prompt = H.random_ids(5, 6, vocab=H.SELFCHECK_VOCAB)
    want = R.greedy_generate(model, prompt, 12)
    assert H.assert_greedy_matches_reference(want, model, prompt, 12, "self") == want


def test_a_wrong_late_token_fails(models):
    model = models["gqa"]
    prompt = H.random_ids(6, 6, vocab=H.SELFCHECK_VOCAB)
    want = R.greedy_generate(model, prompt, 12)
    steps = H.reference_step_logits(model, prompt, want)
    order = np.argsort(steps[11])
    assert steps[11, order[-1]] - steps[11, order[-2]] > H.AMBIGUOUS_GAP, "test needs no tie at the last step"
    got = want[:11] + [int(order[-2])]
    with pytest.raises(pytest.fail.Exception, match="greedy token 11 differs"):
        H.assert_greedy_matches_reference(got, model, prompt, 12, "self")


def test_too_few_tokens_fail(models):
    model = models["gqa"]
    prompt = H.random_ids(7, 6, vocab=H.SELFCHECK_VOCAB)
    want = R.greedy_generate(model, prompt, 12)
    with pytest.raises(AssertionError, match="produced 11 tokens"):
        H.assert_greedy_matches_reference(want[:11], model, prompt, 12, "self")


def _fake_steps(monkeypatch, rows):
    monkeypatch.setattr(H, "reference_step_logits", lambda model, prompt, tokens, *a: np.array(rows))


def test_a_near_tie_broken_the_other_way_is_accepted_and_later_steps_still_compared(monkeypatch):
    # step 0: tokens 1 and 2 tie within AMBIGUOUS_GAP; steps 1 and 2 have clear winners
    rows = [[0.0, 5.0, 5.0 - H.AMBIGUOUS_GAP / 2], [0.0, 0.0, 3.0], [4.0, 0.0, 0.0]]
    _fake_steps(monkeypatch, rows)
    assert H.assert_greedy_matches_reference([2, 2, 0], None, [1], 3, "tie") == [2, 2, 0]
    with pytest.raises(pytest.fail.Exception, match="greedy token 2 differs"):
        H.assert_greedy_matches_reference([2, 2, 1], None, [1], 3, "tie")
