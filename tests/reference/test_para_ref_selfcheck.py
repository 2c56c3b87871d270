"""Self-checks of the PARA reference (para_ref.py); needs no engine binaries.

The models here are written by hand (random LLaMA weights, config.json + safetensors: the models
fixture in conftest.py, harness.write_tiny_llama), so these tests run anywhere numpy and pytest do:
    python3 -m pytest -q tests/reference/test_para_ref_selfcheck.py
"""
import json
import math
import os

import numpy as np
import pytest

import harness as H
import llama_ref as R
import para_ref as P

VOCAB = H.SELFCHECK_VOCAB      # the models fixture (conftest.py): harness.write_tiny_llama


def make_adapter(tmp_path, model, name, r=8, pooler="last", activation="gelu", dtype="F32",
                 seed=0, identity=False, scale=1.0):
    d = str(tmp_path / name)
    P.write_para_adapter(d, P.random_para_layers(model, r, seed, scale=scale, identity=identity),
                         r, pooler, activation, dtype)
    return P.load_para_adapter(d, model)


def ids_for(seed, T):
    return H.random_ids(seed, T, VOCAB)


# ----------------------------------------------------------------------------
# A second, deliberately naive implementation: explicit KV cache, one row and one head at a
# time, RoPE on (j, j + d/2) pairs written out, prompt processed layer by layer (as the contract
# requires), then token-by-token decode steps that reuse the prompt's vectors.
# ----------------------------------------------------------------------------
def naive_logits(model, ids, adapter, prompt_len):
    cfg, W, inv_freq = model["config"], model["weights"], model["inv_freq"]
    L, nh, nkv, d = (cfg["num_hidden_layers"], cfg["num_attention_heads"],
                     cfg["num_key_value_heads"], cfg["head_dim"])
    eps, half, group = cfg["rms_norm_eps"], d // 2, nh // nkv
    assert not any(k.endswith(".bias") for k in W), "naive reference has no linear biases"
    kcache = [[[] for _ in range(nkv)] for _ in range(L)]
    vcache = [[[] for _ in range(nkv)] for _ in range(L)]
    vectors = [None] * L

    def norm(row, w):
        return row / math.sqrt(sum(float(a) * float(a) for a in row) / len(row) + eps) * w

    def rope(vec, pos):
        out = np.empty(d)
        for j in range(half):
            c, s = math.cos(pos * inv_freq[j]), math.sin(pos * inv_freq[j])
            out[j] = vec[j] * c - vec[j + half] * s
            out[j + half] = vec[j + half] * c + vec[j] * s
        return out

    def layer_row(li, x, pos):
        p = f"model.layers.{li}."
        lq, lv, lu = vectors[li]
        h = norm(x, W[p + "input_layernorm.weight"])
        q = (W[p + "self_attn.q_proj.weight"] @ h) * lq
        k = W[p + "self_attn.k_proj.weight"] @ h
        v = (W[p + "self_attn.v_proj.weight"] @ h) * lv
        for j in range(nkv):
            kcache[li][j].append(rope(k[j * d:(j + 1) * d], pos))
            vcache[li][j].append(v[j * d:(j + 1) * d])
        attn = np.zeros(nh * d)
        for a in range(nh):
            qa = rope(q[a * d:(a + 1) * d], pos)
            keys, vals = kcache[li][a // group][:pos + 1], vcache[li][a // group][:pos + 1]
            scores = [float(qa @ kk) / math.sqrt(d) for kk in keys]
            m = max(scores)
            w = [math.exp(s - m) for s in scores]
            attn[a * d:(a + 1) * d] = sum(wi * vv for wi, vv in zip(w, vals)) / sum(w)
        x = x + W[p + "self_attn.o_proj.weight"] @ attn
        h2 = norm(x, W[p + "post_attention_layernorm.weight"])
        gate = W[p + "mlp.gate_proj.weight"] @ h2
        up = (W[p + "mlp.up_proj.weight"] @ h2) * lu
        return x + W[p + "mlp.down_proj.weight"] @ (gate / (1 + np.exp(-gate)) * up)

    def head(x):
        return W["lm_head.weight"] @ norm(x, W["model.norm.weight"])

    nq, nv, nu = P.para_sizes(cfg)
    rows = [W["model.embed_tokens.weight"][t].copy() for t in ids[:prompt_len]]
    for li in range(L):                                  # prefill: whole prompt, layer by layer
        if adapter is None:
            vectors[li] = (np.ones(nq), np.ones(nv), np.ones(nu))
        else:
            stack = np.array(rows)
            pooled = stack[-1] if adapter["pooler"] == "last" else stack.sum(axis=0) / len(rows)
            w_down, w_up, b_up = adapter["layers"][li]
            z = w_down @ pooled
            act = {"gelu": lambda t: 0.5 * t * (1 + math.erf(t / math.sqrt(2))),
                   "gelu_tanh": lambda t: 0.5 * t * (1 + math.tanh(math.sqrt(2 / math.pi) * (t + 0.044715 * t ** 3))),
                   "relu": lambda t: max(t, 0.0),
                   "silu": lambda t: t / (1 + math.exp(-t))}[adapter["activation"]]
            lvec = w_up @ np.array([act(float(t)) for t in z]) + b_up
            vectors[li] = (lvec[:nq], lvec[nq:nq + nv], lvec[nq + nv:])
        rows = [layer_row(li, x, pos) for pos, x in enumerate(rows)]
    out = [head(x) for x in rows]
    for pos in range(prompt_len, len(ids)):              # decode steps reuse the vectors
        x = W["model.embed_tokens.weight"][ids[pos]].copy()
        for li in range(L):
            x = layer_row(li, x, pos)
        out.append(head(x))
    return np.array(out)


# ----------------------------------------------------------------------------
# tests
# ----------------------------------------------------------------------------
def test_activations_known_values():
    x = np.array([-3.0, -1.0, 0.0, 0.5, 1.0, 2.0])
    assert np.allclose(P.gelu(x), [-0.0040496977203, -0.15865525393146, 0.0, 0.34573123063700,
                                   0.84134474606854, 1.95449973610364], atol=1e-12)
    assert abs(P.gelu_tanh(np.array([1.0]))[0] - 0.8411919906082768) < 1e-12
    assert np.max(np.abs(P.gelu(x) - P.gelu_tanh(x))) < 1e-3
    assert np.array_equal(P.relu(x), [0, 0, 0, 0.5, 1, 2])
    assert np.allclose(P.silu(x), x / (1 + np.exp(-x)), atol=0)
    assert P.silu(np.array([-1000.0]))[0] == 0.0


@pytest.mark.parametrize("mname,pooler,act,T,K", [
    ("gqa", "last", "gelu", 9, 9),
    ("gqa", "mean", "gelu_tanh", 9, 4),
    ("mha", "last", "relu", 8, 1),
    ("mha", "mean", "silu", 8, 5),
    ("gqa", "mean", "gelu", 6, 1),
])
def test_matches_naive_implementation(models, tmp_path, mname, pooler, act, T, K):
    model = models[mname]
    ad = make_adapter(tmp_path, model, "a", r=4, pooler=pooler, activation=act, seed=T + K)
    ids = ids_for(T * 10 + K, T)
    fast = P.forward_logits(model, ids, ad, prompt_len=K)
    slow = naive_logits(model, ids, ad, K)
    assert np.max(np.abs(fast - slow)) < 1e-9
    # and the adapter is not a no-op here
    assert np.max(np.abs(R.log_softmax(fast) - R.log_softmax(R.forward_logits(model, ids)))) > 1e-2


def test_naive_base_matches_llama_ref(models):
    ids = ids_for(5, 7)
    for model in models.values():
        assert np.max(np.abs(naive_logits(model, ids, None, 3) - R.forward_logits(model, ids))) < 1e-9


@pytest.mark.parametrize("pooler", P.POOLERS)
def test_identity_adapter_is_base_model_exactly(models, tmp_path, pooler):
    model = models["gqa"]
    ad = make_adapter(tmp_path, model, "id", r=5, pooler=pooler, identity=True)
    ids = ids_for(7, 11)
    base = R.forward_logits(model, ids)
    assert np.array_equal(P.forward_logits(model, ids, ad), base)
    assert np.array_equal(P.forward_logits(model, ids, ad, prompt_len=3), base)


def test_all_ones_vectors_are_base_model_exactly(models):
    model = models["mha"]
    ones = [tuple(np.ones(n) for n in P.para_sizes(model["config"]))] * model["config"]["num_hidden_layers"]
    ids = ids_for(8, 10)
    assert np.array_equal(P.forward_logits(model, ids, vectors=ones), R.forward_logits(model, ids))


def test_mean_over_one_token_equals_last(models, tmp_path):
    model = models["gqa"]
    last = make_adapter(tmp_path, model, "last", pooler="last", seed=3)
    mean = make_adapter(tmp_path, model, "mean", pooler="mean", seed=3)
    ids = ids_for(9, 12)
    assert np.array_equal(P.forward_logits(model, ids, last, prompt_len=1),
                          P.forward_logits(model, ids, mean, prompt_len=1))
    # ... and with a longer prompt the two poolers really differ
    d = np.abs(P.forward_logits(model, ids, last, prompt_len=6) - P.forward_logits(model, ids, mean, prompt_len=6))
    assert d.max() > 1e-2


def test_fixed_vectors_equal_scaled_weights(models, tmp_path):
    """q = l_q*(x Wq^T) before RoPE, v = l_v*(x Wv^T), u = l_u*(x' Wup^T) is the base model with
    rows of Wq, Wv, Wup scaled; nothing else (k, o, gate, down) changes."""
    model = models["gqa"]
    ad = make_adapter(tmp_path, model, "a", r=6, pooler="mean", activation="silu", seed=4)
    prompt = ids_for(10, 8)
    vecs = P.compute_vectors(model, prompt, ad)
    W = dict(model["weights"])
    for i, (lq, lv, lu) in enumerate(vecs):
        p = f"model.layers.{i}."
        W[p + "self_attn.q_proj.weight"] = W[p + "self_attn.q_proj.weight"] * lq[:, None]
        W[p + "self_attn.v_proj.weight"] = W[p + "self_attn.v_proj.weight"] * lv[:, None]
        W[p + "mlp.up_proj.weight"] = W[p + "mlp.up_proj.weight"] * lu[:, None]
    scaled = dict(model, weights=W)
    ids = prompt + ids_for(11, 6)
    want = R.forward_logits(scaled, ids)
    assert np.max(np.abs(P.forward_logits(model, ids, vectors=vecs) - want)) < 1e-10
    assert np.max(np.abs(P.forward_logits(model, ids, ad, prompt_len=len(prompt)) - want)) < 1e-10


def test_layer0_vector_from_embeddings(models, tmp_path):
    model = models["mha"]
    for pooler in P.POOLERS:
        ad = make_adapter(tmp_path, model, "a" + pooler, r=3, pooler=pooler, activation="gelu", seed=5)
        prompt = ids_for(12, 5)
        emb = model["weights"]["model.embed_tokens.weight"][prompt]
        p = emb[-1] if pooler == "last" else emb.mean(axis=0)
        w_down, w_up, b_up = ad["layers"][0]
        lvec = w_up @ P.gelu(w_down @ p) + b_up
        got = np.concatenate(P.compute_vectors(model, prompt, ad)[0])
        assert np.max(np.abs(got - lvec)) < 1e-12


def test_prompt_rows_causal_and_generated_rows_reuse_vectors(models, tmp_path):
    model = models["gqa"]
    ad = make_adapter(tmp_path, model, "a", pooler="mean", activation="gelu_tanh", seed=6)
    ids = ids_for(13, 15)
    K = 6
    full = P.forward_logits(model, ids, ad, prompt_len=K)
    assert np.max(np.abs(full[:K] - P.forward_logits(model, ids[:K], ad))) < 1e-10
    # vectors pooled over all 15 tokens give different generated rows: prompt_len matters
    assert np.max(np.abs(full[K:] - P.forward_logits(model, ids, ad)[K:])) > 1e-2


def test_greedy_generate_reuses_prompt_vectors(models, tmp_path):
    model = models["gqa"]
    ad = make_adapter(tmp_path, model, "a", pooler="last", activation="relu", seed=7)
    prompt = ids_for(14, 5)
    gen = P.greedy_generate(model, prompt, 8, ad)
    logits = naive_logits(model, prompt + gen, ad, len(prompt))
    assert [int(np.argmax(row)) for row in logits[len(prompt) - 1:-1]] == gen


@pytest.mark.parametrize("dtype", ["F32", "F16", "BF16"])
def test_adapter_dtypes_round_trip(models, tmp_path, dtype):
    model = models["mha"]
    layers = P.random_para_layers(model, 4, seed=8)
    P.write_para_adapter(str(tmp_path / "a"), layers, 4, dtype=dtype)
    ad = P.load_para_adapter(str(tmp_path / "a"), model)
    assert set(ad["dtypes"].values()) == {dtype}
    for got, want in zip(ad["layers"][0], layers[0]):
        f32 = want.astype(np.float32)
        if dtype == "F32":
            exp = f32
        elif dtype == "F16":
            exp = want.astype(np.float16)
        else:
            u = f32.view(np.uint32).astype(np.uint64)
            exp = (((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16).astype(np.uint32).view(np.float32)
        assert np.array_equal(got, exp.astype(np.float64))
        assert np.max(np.abs(got - want)) < {"F32": 1e-6, "F16": 2e-3, "BF16": 2e-2}[dtype] * max(1, np.abs(want).max())


def test_defaults_pooler_last_activation_gelu(models, tmp_path):
    model = models["mha"]
    d = str(tmp_path / "a")
    P.write_para_adapter(d, P.random_para_layers(model, 2, seed=9), 2)
    cfg_path = os.path.join(d, "adapter_config.json")
    with open(cfg_path) as f:
        c = json.load(f)
    for k in ("pooler", "activation", "target_modules"):
        del c[k]
    c["some_unknown_key"] = 1
    with open(cfg_path, "w") as f:
        json.dump(c, f)
    ad = P.load_para_adapter(d, model)
    assert (ad["pooler"], ad["activation"]) == ("last", "gelu")


def _mutate_tensors(d, fn):
    path = os.path.join(d, "adapter_model.safetensors")
    t = R.read_safetensors(path)
    fn(t)
    R.write_safetensors(path, t)


@pytest.mark.parametrize("case,match", [
    ("peft_type", "peft_type"),
    ("no_r", "r must be"),
    ("pooler", "pooler"),
    ("activation", "activation"),
    ("target_modules", "target_modules"),
    ("r_mismatch", "layers.0.para.down.weight"),
    ("missing_layer", "missing tensor base_model.model.model.layers.1.para.up.bias"),
    ("extra", "unexpected tensor base_model.model.model.layers.2.para.up.bias"),
    ("shape", "layers.1.para.up.weight"),
    ("nan", "layers.0.para.up.bias"),
])
def test_loader_rejects_bad_adapters(models, tmp_path, case, match):
    model = models["mha"]                       # 2 layers
    d = str(tmp_path / "a")
    P.write_para_adapter(d, P.random_para_layers(model, 3, seed=10), 3)
    cfg_path = os.path.join(d, "adapter_config.json")
    with open(cfg_path) as f:
        c = json.load(f)
    name = "base_model.model.model.layers.{}.para.{}"
    if case == "peft_type":
        c["peft_type"] = "LORA"
    elif case == "no_r":
        del c["r"]
    elif case == "pooler":
        c["pooler"] = "max"
    elif case == "activation":
        c["activation"] = "tanh"
    elif case == "target_modules":
        c["target_modules"] = ["q_proj", "v_proj"]
    elif case == "r_mismatch":
        c["r"] = 4
    elif case == "missing_layer":
        _mutate_tensors(d, lambda t: t.pop(name.format(1, "up.bias")))
    elif case == "extra":
        _mutate_tensors(d, lambda t: t.__setitem__(name.format(2, "up.bias"), t[name.format(1, "up.bias")]))
    elif case == "shape":
        _mutate_tensors(d, lambda t: t.__setitem__(name.format(1, "up.weight"), t[name.format(1, "up.weight")][1:]))
    elif case == "nan":
        def put_nan(t):
            t[name.format(0, "up.bias")][3] = np.nan
        _mutate_tensors(d, put_nan)
    with open(cfg_path, "w") as f:
        json.dump(c, f)
    with pytest.raises(ValueError, match=match):
        P.load_para_adapter(d, model)
