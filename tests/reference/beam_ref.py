"""Independent numpy beam search, following transformers' generate(num_beams=...) (5.x,
`_beam_search`), written here from its description, on the numpy reference model.

`next_logprobs(ids)` returns the float64 log-softmax of the next token after `ids` (prompt +
generated so far); the model, its adapter and the prompt's PARA vectors live in that closure.

Per step, with W beams: every running beam's log-probs plus its score; the top
K = max(2, 1 + #stop ids) * W continuations over all beams (ties: lower beam, then lower token);
a continuation "hits" when its token ends the sequence (EOS / stop ids) or it reaches max_length.
Among the first W, hits become finished hypotheses scored score / generated_len**length_penalty
(unless the heuristic says no improvement is possible, or early_stopping is True and W are
finished); the best W non-hit continuations are the next beams. After the step the heuristic
flag is updated and the search stops when no improvement is possible, when W hypotheses are
finished with early_stopping True, or when no continuation is left.
"""
import numpy as np


def log_softmax(x):
    x = np.asarray(x, np.float64)
    m = x.max()
    return x - (m + np.log(np.exp(x - m).sum()))


def beam_search(next_logprobs, prompt, max_new_tokens, beam_width, stop_ids=(), length_penalty=1.0,
                early_stopping="heuristic", max_model_len=None):
    """Returns the finished hypotheses best first: a list of (generated ids, score, sum logprob)."""
    W = beam_width
    P = len(prompt)
    max_length = P + max_new_tokens if max_model_len is None else min(P + max_new_tokens, max_model_len)
    K = max(2, 1 + len(stop_ids)) * W
    running = [(list(prompt), 0.0)]  # (ids, cumulative logprob); one beam before the first step
    finished = []                    # (score, ids, sum) best first, at most W
    unsatisfied = True
    cur_len = P
    while True:
        cands = []
        for b, (ids, score) in enumerate(running):
            lp = next_logprobs(ids)
            top = np.argsort(-lp, kind="stable")[:K]
            cands += [(score + lp[t], b, int(t)) for t in top]
        cands.sort(key=lambda c: (-c[0], c[1], c[2]))
        cands = cands[:K]

        def hits(tok):
            return tok in stop_ids or cur_len + 1 >= max_length

        full = len(finished) == W
        if unsatisfied and not (full and early_stopping == "true"):
            gen_len = cur_len + 1 - P
            for score, b, tok in cands[:W]:
                if hits(tok):
                    ids = running[b][0] + [tok]
                    finished.append((score / gen_len ** length_penalty, ids, score))
                    finished.sort(key=lambda f: -f[0])  # stable: earlier first among equals
                    finished = finished[:W]
        nxt = [(running[b][0] + [tok], score) for score, b, tok in cands if not hits(tok)][:W]
        running = nxt
        cur_len += 1
        if unsatisfied:
            if not running:
                unsatisfied = False
            elif len(finished) == W:
                never = early_stopping == "never" and length_penalty > 0
                best_len = (max_length - P) if never else (cur_len - P)
                unsatisfied = running[0][1] / best_len ** length_penalty > finished[-1][0]
        done_full = len(finished) == W and early_stopping == "true"
        if not unsatisfied or done_full or not running:
            break
    return [(ids[P:], score, total) for score, ids, total in finished]
