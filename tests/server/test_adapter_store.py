"""The adapter store through the real server: the Admin API (LoadAdapter, UnloadAdapter,
ListAdapters, GetAdapter) under traffic, hostile adapter directories, residency tiers, the
manifest, memory across load/unload cycles, and a thousand adapters on one server.

Every server here gets its own adapter root (a fresh directory) and a tenants file without
adapters (`bare_config`); adapters arrive through LoadAdapter. Outputs are compared with the
offline engine (para-cli), which is the reference for what a version's weights produce."""
from __future__ import annotations

import hashlib
import json
import math
import os
import pathlib
import shutil
import statistics
import struct
import threading
import time

import grpc
import pytest

import server_harness as h
from server_harness import admin_pb2

pytestmark = h.requires_binaries

TENANTS = list(h.KEYS)
DISK, HOST, DEVICE = admin_pb2.ADAPTER_TIER_DISK, admin_pb2.ADAPTER_TIER_HOST, admin_pb2.ADAPTER_TIER_DEVICE
TIER = {DISK: "disk", HOST: "host", DEVICE: "device"}
C = grpc.StatusCode


def ids_for(i: int, n: int = 5) -> list[int]:
    return [1] + [3 + (i * 41 + j * 13) % 500 for j in range(n)]


def tiers(admin) -> dict:
    return {a.name: a.tier for a in admin.list_adapters()}


def tier_names(admin) -> dict:
    return {n: TIER[t] for n, t in tiers(admin).items()}


def para_bytes(adapter_dir) -> int:
    """What the store holds for an F32 PARA adapter: the safetensors data section."""
    header, data = st_load(pathlib.Path(adapter_dir) / "adapter_model.safetensors")
    return len(data)


def sha256_of(path) -> str:
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def stream_tokens(client, **kw) -> list[int]:
    return [t for ch in client.stream(**kw) for t in ch.token_ids]


# ---- safetensors by hand: 8-byte little-endian header length, JSON header, data ------------------

def st_load(path: pathlib.Path):
    b = pathlib.Path(path).read_bytes()
    n = struct.unpack("<Q", b[:8])[0]
    return json.loads(b[8:8 + n]), b[8 + n:]


def st_bytes(header: dict, data: bytes, header_len: int | None = None) -> bytes:
    hb = json.dumps(header).encode()
    return struct.pack("<Q", len(hb) if header_len is None else header_len) + hb + data


def st_write(path: pathlib.Path, header: dict, data: bytes, header_len: int | None = None) -> None:
    pathlib.Path(path).write_bytes(st_bytes(header, data, header_len))


def para_name(layer: int, which: str) -> str:
    return f"base_model.model.model.layers.{layer}.para.{which}"


def lora_name(layer: int, parent: str, proj: str, ab: str) -> str:
    return f"base_model.model.model.layers.{layer}.{parent}.{proj}.lora_{ab}.weight"


# =================================================================================================
# 1. Loads, replacements and unloads under continuous traffic from four tenants
# =================================================================================================

def _possible_states(events, t_send, t_done):
    """events: [(t_start, t_end, state)], the first with t_start = -inf (the initial state), in
    the admin thread's order. State j may have been the current one at some moment in
    [t_send, t_done] iff it could have taken effect before t_done (t_start_j < t_done) and was not
    certainly gone before t_send (t_end_{j+1} > t_send)."""
    out = []
    for j, (ts, _, state) in enumerate(events):
        te_next = events[j + 1][1] if j + 1 < len(events) else math.inf
        if ts < t_done and te_next > t_send:
            out.append(state)
    return out


def test_loads_replacements_and_unloads_under_traffic(tiny_model, bare_config, start_server, tmp_path):
    root = tmp_path / "root"
    # name -> (tenant, [adapter dirs the admin thread cycles through])
    spec = {
        "acme-swap": ("acme", [h.make_para_adapter(root / "acme-v1", tiny_model, 101),
                               h.make_para_adapter(root / "acme-v2", tiny_model, 102)]),
        "acme-fixed": ("acme", [h.make_para_adapter(root / "acme-fixed", tiny_model, 103)]),
        "globex-swap": ("globex", [h.make_para_adapter(root / "globex-v1", tiny_model, 201, "--pooler", "mean"),
                                   h.make_para_adapter(root / "globex-v2", tiny_model, 202, "--pooler", "mean")]),
        "initech-swap": ("initech", [h.make_lora_adapter(root / "initech-v1", tiny_model, 301, "--targets", "all"),
                                     h.make_lora_adapter(root / "initech-v2", tiny_model, 302, "--r", "4")]),
        "umbrella-flaky": ("umbrella", [h.make_para_adapter(root / "umbrella-a", tiny_model, 401),
                                        h.make_lora_adapter(root / "umbrella-b", tiny_model, 402)]),
    }
    swapped = ["acme-swap", "globex-swap", "initech-swap"]
    names_of = {t: [n for n, (owner, _) in spec.items() if owner == t] + [""] for t in TENANTS}
    prompt = {n: ids_for(k, 4 + k) for k, n in enumerate([*spec, ""])}
    max_tokens = 10

    # References: every (directory, prompt) a response may legitimately come from.
    jobs = [(d, n) for n, (_, dirs) in spec.items() for d in dirs] + [("", "")]
    out = h.cli_generate_many(tiny_model, [{"prompt_ids": prompt[n], "max_tokens": max_tokens, "ignore_eos": True,
                                            "adapter": d} for d, n in jobs], tmp_path)
    ref = {d: r["token_ids"] for (d, _), r in zip(jobs, out)}
    for n in swapped + ["umbrella-flaky"]:
        a, b = spec[n][1]
        assert ref[a] != ref[b], f"{n}: both versions give the same tokens; the test could not tell them apart"

    s = start_server(tiny_model, bare_config, "--adapter-root", root, "--kv-cache-blocks", 256, "--block-size", 16)
    events = {}  # name -> [(t_start, t_end, dir or None)]
    with s.client(h.ADMIN_KEY) as admin:
        for n, (tenant, dirs) in spec.items():
            info = admin.load_adapter(n, tenant, os.path.relpath(dirs[0], root))
            assert info.version == 1 and info.tenant == tenant
            events[n] = [(-math.inf, -math.inf, dirs[0])]

    stop = threading.Event()
    records = []  # (name, t_send, t_done, tokens or None, error or None, kind)
    lock = threading.Lock()

    def worker(tenant, streaming, offset):
        choices = names_of[tenant]
        k = offset
        with s.client(h.KEYS[tenant]) as c:
            while not stop.is_set():
                name = choices[k % len(choices)]
                k += 1
                kw = dict(token_ids=prompt[name], adapter=name, max_tokens=max_tokens, ignore_eos=True, timeout=60)
                t0 = time.monotonic()
                try:
                    toks = stream_tokens(c, **kw) if streaming else list(c.generate(**kw).token_ids)
                    err = None
                except h.GenerationError as e:
                    toks, err = None, e
                with lock:
                    records.append((name, t0, time.monotonic(), toks, err, "stream" if streaming else "unary"))

    admin_errors, versions = [], {n: [] for n in spec}

    def admin_loop(rounds=10):
        try:
            with s.client(h.ADMIN_KEY) as admin:
                for r in range(1, rounds + 1):
                    for n in swapped:
                        tenant, dirs = spec[n]
                        d = dirs[r % 2]
                        t0 = time.monotonic()
                        info = admin.load_adapter(n, tenant, os.path.relpath(d, root))
                        events[n].append((t0, time.monotonic(), d))
                        versions[n].append(info.version)
                    time.sleep(0.1)
                    n = "umbrella-flaky"
                    t0 = time.monotonic()
                    admin.unload_adapter(n)
                    events[n].append((t0, time.monotonic(), None))
                    time.sleep(0.15)
                    d = spec[n][1][r % 2]
                    t0 = time.monotonic()
                    info = admin.load_adapter(n, "umbrella", d)  # absolute, inside the root
                    events[n].append((t0, time.monotonic(), d))
                    versions[n].append(info.version)
                    time.sleep(0.1)
        except BaseException as e:  # noqa: BLE001 - reported below
            admin_errors.append(e)

    workers = [threading.Thread(target=worker, args=(t, streaming, i))
               for i, t in enumerate(TENANTS) for streaming in (False, True)]
    for w in workers:
        w.start()
    time.sleep(0.3)
    a = threading.Thread(target=admin_loop)
    t_admin = time.monotonic()
    a.start()
    a.join(timeout=120)
    admin_seconds = time.monotonic() - t_admin
    time.sleep(0.2)
    stop.set()
    for w in workers:
        w.join(timeout=60)
    assert not admin_errors, admin_errors
    assert not any(w.is_alive() for w in workers), "a worker is stuck"

    rounds = len(versions["acme-swap"])
    for n in swapped:
        assert versions[n] == list(range(2, rounds + 2)), f"{n}: versions {versions[n]} do not go up by 1"

    failures, served = [], {n: set() for n in [*spec, ""]}
    not_found = spanning = 0
    for name, t0, t1, toks, err, kind in records:
        states = _possible_states(events[name], t0, t1) if name else [""]
        spanning += len(states) > 1
        if err is not None:
            if None in states and err.code == C.NOT_FOUND and f"'{name}'" in err.message:
                not_found += 1
                continue
            failures.append(f"{kind} {name or 'base'}: {err} (possible states {states})")
            continue
        match = [d for d in states if d is not None and toks == ref[d]]
        if not match:
            others = [d for d in ref if toks == ref[d]]
            failures.append(f"{kind} {name or 'base'} sent at {t0:.3f} done {t1:.3f}: tokens match none of the "
                            f"versions that could have been current {states}; they match {others}")
        served[name].update(match)
    print(f"\n{len(records)} requests in {admin_seconds:.1f} s of admin churn ({rounds} rounds); "
          f"{spanning} overlapped a change of their adapter; "
          f"{not_found} NOT_FOUND for the unloaded adapter; per adapter: "
          + ", ".join(f"{n or 'base'}={sum(1 for r in records if r[0] == n)}" for n in served)
          + f"; umbrella-flaky versions after reloads: {versions['umbrella-flaky']}")
    assert not failures, f"{len(failures)} of {len(records)} requests wrong:\n" + "\n".join(failures[:20])
    for n in swapped:
        assert served[n] == set(spec[n][1]), f"{n}: only {served[n]} served; the churn did not exercise both versions"

    st = h.wait_idle(s, timeout=10)
    assert st.kv_blocks_free == st.kv_blocks_total
    with s.client(h.ADMIN_KEY) as admin:
        listed = {i.name: i for i in admin.list_adapters()}
        assert set(listed) == set(spec)
        assert {n: i.in_flight for n, i in listed.items()} == {n: 0 for n in spec}
        for n in swapped:
            assert listed[n].version == rounds + 1


# =================================================================================================
# 1b. A request in flight finishes on the version it started with (replace, then unload)
# =================================================================================================

def test_in_flight_stream_finishes_on_its_version_through_replace_and_unload(slow_model, bare_config,
                                                                            start_server, tmp_path):
    """On the slow model a 1600-token stream runs for seconds even alone: long enough to replace and then
    unload its adapter while it runs."""
    root = tmp_path / "root"
    v1 = h.make_para_adapter(root / "v1", slow_model, 61)
    v2 = h.make_para_adapter(root / "v2", slow_model, 62)
    long_ids, short_ids, n_long = [1, 7, 9, 11], [1, 20, 30], 1600
    out = h.cli_generate_many(slow_model, [
        {"prompt_ids": long_ids, "max_tokens": n_long, "ignore_eos": True, "adapter": v1},
        {"prompt_ids": short_ids, "max_tokens": 6, "ignore_eos": True, "adapter": v2},
        {"prompt_ids": short_ids, "max_tokens": 6, "ignore_eos": True, "adapter": v1}], tmp_path)
    ref_long_v1, ref_short_v2, ref_short_v1 = (r["token_ids"] for r in out)
    assert ref_short_v1 != ref_short_v2

    s = start_server(slow_model, bare_config, "--adapter-root", root, "--kv-cache-blocks", 1024)
    with s.client(h.ADMIN_KEY) as admin, s.client(h.KEYS["acme"]) as c:
        assert admin.load_adapter("live", "acme", "v1").version == 1
        stream = c.stream(token_ids=long_ids, adapter="live", max_tokens=n_long, ignore_eos=True, timeout=120)
        got = list(next(stream).token_ids)
        assert admin.get_adapter("live").in_flight == 1

        info = admin.load_adapter("live", "acme", "v2")
        assert (info.version, info.in_flight) == (2, 0)  # the stream holds version 1, not the new one
        assert info.retired_in_flight == 1 and info.state == h.admin_pb2.ADAPTER_STATE_READY
        assert list(c.generate(token_ids=short_ids, adapter="live", max_tokens=6, ignore_eos=True,
                               timeout=30).token_ids) == ref_short_v2
        assert h.stats(s).requests_in_flight == 1, "the long stream ended too soon for this test"

        admin.unload_adapter("live")
        with pytest.raises(h.GenerationError) as e:
            c.generate(token_ids=short_ids, adapter="live", max_tokens=6, timeout=30)
        assert e.value.code == C.NOT_FOUND and "'live'" in e.value.message
        with pytest.raises(h.GenerationError) as e:
            admin.get_adapter("live")
        assert e.value.code == C.NOT_FOUND
        assert h.stats(s).requests_in_flight == 1, "the long stream ended too soon for this test"

        last = None
        for ch in stream:
            got += ch.token_ids
            last = ch
        assert last.finish_reason == h.generation_pb2.FINISH_REASON_LENGTH
        assert got == ref_long_v1, "the stream did not finish on the version it started with"

        # The name can be loaded again afterwards, and nothing is left behind.
        info = admin.load_adapter("live", "acme", "v1")
        assert info.version == 1 and info.in_flight == 0
        assert list(c.generate(token_ids=short_ids, adapter="live", max_tokens=6, ignore_eos=True,
                               timeout=30).token_ids) == ref_short_v1
    h.wait_idle(s)


# =================================================================================================
# 2. No memory growth across load/unload cycles
# =================================================================================================

def _rss_over_cycles(s, cycles=50, warmup=5):
    """Runs load/replace/request/unload cycles; returns (RSS at start, after the warm-up, after
    `cycles` more) in KiB, the adapter's bytes and the seconds per measured cycle."""
    with s.client(h.ADMIN_KEY) as admin, s.client(h.KEYS["acme"]) as c:
        sizes = []

        def cycle():
            sizes.append(admin.load_adapter("churn", "acme", "big-a").bytes)
            assert admin.load_adapter("churn", "acme", "big-b").version == 2
            assert len(c.generate(token_ids=[1, 5, 9], adapter="churn", max_tokens=4, ignore_eos=True,
                                  timeout=30).token_ids) == 4
            admin.unload_adapter("churn")

        rss0 = s.rss_kb()
        for _ in range(warmup):
            cycle()
        warm = s.rss_kb()
        t0 = time.monotonic()
        for _ in range(cycles):
            cycle()
        seconds = (time.monotonic() - t0) / cycles
        end = s.rss_kb()
        assert list(admin.list_adapters()) == []
    h.wait_idle(s)
    return rss0, warm, end, sizes[0], seconds


@pytest.mark.memory_bound
def test_no_memory_growth_across_load_unload_cycles(tiny_model, bare_config, start_server, tmp_path):
    """A cycle: load a 2.3 MB PARA adapter, replace it with another (a new version), run a
    request on it, unload it; the manifest is rewritten on every change. A leak of the weights
    would add 50 x 2 x 2.3 MB = 230 MB over the measured cycles.

    Measured with glibc's mmap threshold fixed at its default 128 KiB (MALLOC_MMAP_THRESHOLD_):
    the weight buffers (0.25 and 0.9 MB each) are then mmapped and go back to the OS when freed,
    so RSS shows what the server really keeps. Bound: two adapters' worth (a version may be freed
    by a request's lease slightly after the unload returns) plus 4 MiB for gRPC, the manifest
    writer and allocator slack. With glibc's defaults the threshold rises after the first free
    and the buffers come from malloc arenas, where fragmentation makes RSS creep (printed, not
    asserted: it is the allocator's retention, not something the server still references)."""
    root = tmp_path / "root"
    a = h.make_para_adapter(root / "big-a", tiny_model, 71, "--r", "1024")
    h.make_para_adapter(root / "big-b", tiny_model, 72, "--r", "1024")
    args = ("--adapter-root", root, "--kv-cache-blocks", 64, "--adapter-manifest", tmp_path / "manifest.json")

    s = start_server(tiny_model, bare_config, *args, env={"MALLOC_MMAP_THRESHOLD_": "131072"})
    rss0, warm, end, size, seconds = _rss_over_cycles(s)
    s.stop()
    d = start_server(tiny_model, bare_config, *args, name="default-malloc")
    d0, dwarm, dend, _, _ = _rss_over_cycles(d)

    adapter_kb = size / 1024
    assert size == para_bytes(a) and adapter_kb > 2000
    growth = end - warm
    bound = 2 * adapter_kb + 4096
    print(f"\nRSS, static mmap threshold: start {rss0} KiB, after 5 warm-up cycles {warm} KiB, after 50 more "
          f"{end} KiB: growth {growth} KiB (bound {bound:.0f} KiB; one adapter = {adapter_kb:.0f} KiB); "
          f"{seconds * 1000:.1f} ms per cycle (2 loads, 1 request, 1 unload)"
          f"\nRSS, glibc defaults: start {d0} KiB, after warm-up {dwarm} KiB, after 50 more {dend} KiB: "
          f"growth {dend - dwarm} KiB")
    assert growth < bound, f"RSS grew by {growth} KiB over 50 load/unload cycles (bound {bound:.0f} KiB)"


# =================================================================================================
# 3. Corrupt and hostile adapter directories
# =================================================================================================

MAX_ADAPTER_BYTES = 1_000_000
MAX_LORA_RANK = 16
INVALID, NOT_FOUND, DENIED = C.INVALID_ARGUMENT, C.NOT_FOUND, C.PERMISSION_DENIED


class Hostile:
    """Builds the case directories: `good` (a valid PARA adapter) and `lora` (a valid LoRA one)
    are copied and then damaged; `outside` holds valid adapters outside the root."""

    def __init__(self, base: pathlib.Path, model: str):
        self.base, self.model = base, model
        self.root = base / "root"
        self.outside = base / "outside"
        src = base / "src"
        self.good = pathlib.Path(h.make_para_adapter(src / "good", model, 81))
        self.lora = pathlib.Path(h.make_lora_adapter(src / "lora", model, 82, "--targets", "all"))
        self.root.mkdir(parents=True)
        shutil.copytree(self.good, self.outside / "good")

    def copy(self, d: pathlib.Path, src=None) -> pathlib.Path:
        shutil.copytree(src or self.good, d)
        return d

    def patch_weights(self, d, fn, src=None):
        """Copies the adapter to d and rewrites its safetensors file: fn(header, data) returns
        (header, data[, header_len]) or raw bytes."""
        self.copy(d, src)
        f = d / "adapter_model.safetensors"
        header, data = st_load(f)
        out = fn(header, bytearray(data))
        f.write_bytes(out if isinstance(out, (bytes, bytearray)) else st_bytes(*out))

    def patch_config(self, d, fn, src=None):
        self.copy(d, src)
        f = d / "adapter_config.json"
        f.write_text(fn(json.loads(f.read_text())))


def _set_float(name, value):
    def fn(header, data):
        off = header[name]["data_offsets"][0] + 4 * 5  # the sixth element
        data[off:off + 4] = struct.pack("<f", value)
        return header, bytes(data)
    return fn


def _drop(name):
    def fn(header, data):
        del header[name]
        return header, bytes(data)
    return fn


def _reshape_half(header, data):
    t = header[para_name(0, "down.weight")]  # [8, 64] -> [8, 32]: consistent bytes, wrong shape
    t["shape"] = [8, 32]
    t["data_offsets"][1] = t["data_offsets"][0] + 8 * 32 * 4
    return header, bytes(data)


def _overlap(header, data):
    header[para_name(1, "down.weight")]["data_offsets"] = list(header[para_name(0, "down.weight")]["data_offsets"])
    return header, bytes(data)


def _past_end(header, data):
    t = header[para_name(1, "up.bias")]
    t["data_offsets"] = [t["data_offsets"][0] + 4096, t["data_offsets"][1] + 4096]
    return header, bytes(data)


def _extra_tensor(header, data):
    n = len(data)
    header[para_name(2, "down.weight")] = {"dtype": "F32", "shape": [8, 64], "data_offsets": [n, n + 2048]}
    return header, bytes(data) + bytes(2048)


def _dtype(dtype):
    def fn(header, data):
        header[para_name(0, "down.weight")]["dtype"] = dtype
        return header, bytes(data)
    return fn


def _overflow_shape(header, data):
    header[para_name(0, "down.weight")]["shape"] = [2 ** 40, 2 ** 40, 2 ** 40]
    return header, bytes(data)


def _lora_extra_module(header, data):
    n = len(data)
    header["base_model.model.lm_head.lora_A.weight"] = {"dtype": "F32", "shape": [8, 64], "data_offsets": [n, n + 2048]}
    return header, bytes(data) + bytes(2048)


def _fifo(name):
    def build(hc: Hostile, d):
        hc.copy(d)
        (d / name).unlink()
        os.mkfifo(d / name)
    return build


def _sparse_config(hc: Hostile, d):
    hc.copy(d)
    with open(d / "adapter_config.json", "r+b") as f:
        f.truncate(2 << 30)  # 2 GiB, sparse: a valid JSON object followed by NUL bytes


def _outside_weights_link(name):
    def build(hc: Hostile, d):
        hc.copy(d)
        (d / name).unlink()
        (d / name).symlink_to(hc.outside / "good" / name)
    return build


def _symlink_loop(hc: Hostile, d):
    (hc.root / "loop-b").symlink_to(d)
    d.symlink_to(hc.root / "loop-b")


def _other_model_para(hc: Hostile, d):
    other = h.make_model(hc.base / "wide-model", 3, "--hidden", "96", "--no-tokenizer")
    h.make_para_adapter(d, other, 84)


def _other_model_lora(hc: Hostile, d):
    other = h.make_model(hc.base / "deep-model", 4, "--layers", "4", "--no-tokenizer")
    h.make_lora_adapter(d, other, 85, "--targets", "q_proj,v_proj")


def _pickle_only(hc: Hostile, d):
    hc.copy(d)
    (d / "adapter_model.safetensors").unlink()
    # The start of a torch.save zip/pickle; never unpickled.
    (d / "adapter_model.bin").write_bytes(b"\x80\x02cos\nsystem\nq\x00X\x06\x00\x00\x00whoamiq\x01\x85q\x02Rq\x03.")


def _weights(fn):
    return lambda hc, d: hc.patch_weights(d, fn)


def _lora_weights(fn):
    return lambda hc, d: hc.patch_weights(d, fn, src=hc.lora)


def _config(fn):
    return lambda hc, d: hc.patch_config(d, fn)


def _lora_config(fn):
    return lambda hc, d: hc.patch_config(d, fn, src=hc.lora)


def _with(**kv):
    return lambda c: json.dumps({**c, **kv})


def _raw(text):
    return lambda c: text


# (id, builder(hc, dir) or None, load arguments (path is the case directory unless given),
#  accepted codes, substrings the message must contain)
HOSTILE = [
    # -- the safetensors container
    ("truncated-file", lambda hc, d: (hc.copy(d), (d / "adapter_model.safetensors").write_bytes(
        (hc.good / "adapter_model.safetensors").read_bytes()[:12000])), {}, [INVALID],
     ["corrupt safetensors file", "adapter_model.safetensors", "beyond the data section", "truncated"]),
    ("empty-file", lambda hc, d: (hc.copy(d), (d / "adapter_model.safetensors").write_bytes(b"")), {}, [INVALID],
     ["corrupt safetensors file", "shorter than the 8-byte header length"]),
    ("header-length-lie", _weights(lambda hd, data: (hd, bytes(data), len(st_bytes(hd, bytes(data))) + 100)), {},
     [INVALID], ["corrupt safetensors file", "exceeds the file size"]),
    ("header-length-2GiB", _weights(lambda hd, data: (hd, bytes(data), 2 << 30)), {}, [INVALID],
     ["corrupt safetensors file", "header length 2147483648 exceeds"]),
    ("header-not-json", _weights(lambda hd, data: struct.pack("<Q", 20) + b"{this is not json!!}" + bytes(data)),
     {}, [INVALID], ["corrupt safetensors file", "header is not valid JSON"]),
    ("offsets-past-end", _weights(_past_end), {}, [INVALID],
     ["corrupt safetensors file", para_name(1, "up.bias"), "beyond the data section"]),
    ("overlapping-tensors", _weights(_overlap), {}, [INVALID],
     ["corrupt safetensors file", "overlap", para_name(0, "down.weight"), para_name(1, "down.weight")]),
    ("shape-overflow", _weights(_overflow_shape), {}, [INVALID], [para_name(0, "down.weight"), "overflows"]),
    ("unknown-dtype", _weights(_dtype("Q7")), {}, [INVALID], [para_name(0, "down.weight"), "unknown dtype 'Q7'"]),
    ("integer-dtype", _weights(_dtype("I32")), {}, [INVALID], [para_name(0, "down.weight"), "dtype I32"]),
    # -- tensors against the model and the config
    ("nan-value", _weights(_set_float(para_name(0, "up.weight"), math.nan)), {}, [INVALID],
     [para_name(0, "up.weight"), "non-finite value (nan)", "index 5"]),
    ("inf-value", _weights(_set_float(para_name(1, "down.weight"), -math.inf)), {}, [INVALID],
     [para_name(1, "down.weight"), "non-finite value (-inf)"]),
    ("wrong-shape", _weights(_reshape_half), {}, [INVALID],
     [para_name(0, "down.weight"), "has shape [8, 32], expected [8, 64]"]),
    ("missing-layer-tensor", _weights(_drop(para_name(1, "up.bias"))), {}, [INVALID, NOT_FOUND],
     [para_name(1, "up.bias"), "missing"]),
    ("extra-tensor", _weights(_extra_tensor), {}, [INVALID], ["unexpected tensor", para_name(2, "down.weight")]),
    ("r-mismatch", _config(_with(r=4)), {}, [INVALID], ["has rank 8 but adapter_config.json says r = 4"]),
    ("unknown-peft-type", _config(_with(peft_type="IA3")), {}, [INVALID],
     ["adapter_config.json", 'peft_type is "IA3"']),
    ("missing-config", lambda hc, d: (hc.copy(d), (d / "adapter_config.json").unlink()), {}, [NOT_FOUND, INVALID],
     ["adapter_config.json"]),
    ("invalid-json-config", _config(_raw('{"peft_type": "PARA", "r": 8,')), {}, [INVALID],
     ["adapter_config.json", "JSON"]),
    ("pickle-only", _pickle_only, {}, [INVALID], ["adapter_model.bin", "pickle"]),
    ("other-model-para", _other_model_para, {}, [INVALID], [para_name(0, "down.weight"), "expected [8, 64]"]),
    ("other-model-lora", _other_model_lora, {}, [INVALID], ["is for layer 2 but the base model has 2 layers"]),
    ("type-mismatch", lambda hc, d: hc.copy(d), {"type": "lora"}, [INVALID], ["is para, not lora"]),
    # -- LoRA specifics
    ("lora-dora", _lora_config(_with(use_dora=True)), {}, [C.UNIMPLEMENTED, INVALID], ["DoRA"]),
    ("lora-rank-above-max", lambda hc, d: h.make_lora_adapter(d, hc.model, 86, "--r", "32"), {}, [INVALID],
     ["LoRA rank 32", f"exceeds the server's maximum LoRA rank {MAX_LORA_RANK}"]),
    ("lora-unknown-module", _lora_weights(_lora_extra_module), {}, [INVALID],
     ["unsupported tensor 'base_model.model.lm_head.lora_A.weight'"]),
    ("lora-missing-pair", _lora_weights(_drop(lora_name(0, "self_attn", "q_proj", "B"))), {}, [INVALID],
     [lora_name(0, "self_attn", "q_proj", "B"), "missing", "its pair is present"]),
    # -- where the files are
    ("dotdot-outside-root", None, {"path": "../outside/good"}, [DENIED], ["resolves outside the adapter root"]),
    ("dotdot-through-a-dir", lambda hc, d: hc.copy(d), {"path": "dotdot-through-a-dir/../../outside/good"}, [DENIED],
     ["resolves outside the adapter root"]),
    ("absolute-outside-root", None, {"path": "{outside}/good"}, [DENIED], ["resolves outside the adapter root"]),
    ("sibling-with-root-prefix", lambda hc, d: hc.copy(hc.base / "root-evil" / "good"),
     {"path": "{base}/root-evil/good"}, [DENIED], ["resolves outside the adapter root"]),
    ("symlinked-dir-escaping", lambda hc, d: d.symlink_to(hc.outside / "good"), {}, [DENIED],
     ["resolves outside the adapter root"]),
    ("symlinked-weights-escaping", _outside_weights_link("adapter_model.safetensors"), {}, [DENIED],
     ["adapter_model.safetensors", "resolves outside the adapter root"]),
    ("symlinked-config-escaping", _outside_weights_link("adapter_config.json"), {}, [DENIED],
     ["adapter_config.json", "resolves outside the adapter root"]),
    ("symlink-loop", _symlink_loop, {}, [INVALID, NOT_FOUND, DENIED], ["symlink-loop"]),
    ("nonexistent-path", None, {"path": "no-such-adapter"}, [NOT_FOUND], ["no-such-adapter", "does not exist"]),
    ("path-is-a-file", lambda hc, d: d.write_text("{}"), {}, [NOT_FOUND, INVALID], ["path-is-a-file"]),
    ("empty-path", None, {"path": ""}, [INVALID], ["path is empty"]),
    # -- what the files are
    ("wrong-sha256", lambda hc, d: hc.copy(d), {"sha256": "0" * 64}, [INVALID], ["sha256", "expected " + "0" * 64]),
    ("weights-over-max-bytes", lambda hc, d: h.make_para_adapter(d, hc.model, 87, "--r", "512"), {}, [INVALID],
     [f"the limit is {MAX_ADAPTER_BYTES}"]),
    ("config-2GiB-sparse", _sparse_config, {}, [INVALID], ["adapter_config.json", "1 MiB"]),
    ("weights-is-a-directory", lambda hc, d: (hc.copy(d), (d / "adapter_model.safetensors").unlink(),
                                              (d / "adapter_model.safetensors").mkdir()), {}, [INVALID],
     ["adapter_model.safetensors", "not a regular file"]),
    ("weights-is-a-fifo", _fifo("adapter_model.safetensors"), {}, [INVALID],
     ["adapter_model.safetensors", "not a regular file"]),
    ("config-is-a-fifo", _fifo("adapter_config.json"), {}, [INVALID], ["adapter_config.json", "not a regular file"]),
]


@pytest.fixture(scope="module")
def hostile(tiny_model, bare_config, tmp_path_factory):
    """A server whose adapter root holds every hostile case, and a valid adapter 'victim' (acme)
    that every failed load tries to replace."""
    base = tmp_path_factory.mktemp("hostile")
    hc = Hostile(base, tiny_model)
    for case_id, build, *_ in HOSTILE:
        if build is not None:
            build(hc, hc.root / case_id)
    hc.copy(hc.root / "victim")
    hc.copy(hc.root / "good")
    hc.ref = h.cli_generate(tiny_model, prompt_ids=[1, 8, 6, 4], adapter=str(hc.root / "victim"), max_tokens=8)
    s = h.ServerProcess(tiny_model, bare_config, base / "server", "--adapter-root", hc.root,
                        "--max-adapter-bytes", MAX_ADAPTER_BYTES, "--max-lora-rank", MAX_LORA_RANK,
                        "--kv-cache-blocks", 128)
    hc.server = s
    with s.client(h.ADMIN_KEY) as admin:
        hc.victim = admin.load_adapter("victim", "acme", "victim")
    yield hc
    s.stop()


def _load_args(hc, case_id, extra):
    args = {"path": case_id, "type": "auto", "sha256": ""}
    args.update(extra)
    args["path"] = args["path"].format(outside=hc.outside, base=hc.base, root=hc.root)
    return args


@pytest.mark.parametrize("case_id,build,extra,codes,substrings", HOSTILE, ids=[c[0] for c in HOSTILE])
def test_hostile_adapter_is_refused(hostile, case_id, build, extra, codes, substrings):
    args = _load_args(hostile, case_id, extra)
    with hostile.server.client(h.ADMIN_KEY) as admin:
        # Under a new name, and as a replacement of a serving adapter: both refused the same way.
        for name in (f"bad-{case_id}", "victim"):
            t0 = time.monotonic()
            with pytest.raises(h.GenerationError) as e:
                admin.load_adapter(name, "acme", args["path"], type=args["type"], sha256=args["sha256"], timeout=15)
            took = time.monotonic() - t0
            if name == "victim":
                print(f"\n{case_id}: {e.value.code.name}: {e.value.message}")
            assert e.value.code != C.DEADLINE_EXCEEDED, f"LoadAdapter hung on {case_id}"
            assert e.value.code in codes, f"{case_id}: {e.value.code.name}: {e.value.message}"
            for sub in substrings:
                assert sub in e.value.message, f"{case_id}: {sub!r} not in {e.value.message!r}"
            assert took < 5, f"{case_id}: refused only after {took:.1f} s"
        names = [a.name for a in admin.list_adapters()]
        assert f"bad-{case_id}" not in names
        v = admin.get_adapter("victim")
        assert (v.version, v.path, v.in_flight) == (1, "victim", 0), "a failed load changed the serving adapter"
    assert hostile.server.alive()


def test_names_belong_to_one_tenant_and_the_admin_api_needs_an_admin_key(hostile):
    s = hostile.server
    with s.client(h.ADMIN_KEY) as admin, s.client(h.KEYS["globex"]) as globex, s.client(h.KEYS["acme"]) as acme:
        with pytest.raises(h.GenerationError) as e:
            admin.load_adapter("victim", "globex", "good")
        assert e.value.code == DENIED and "belongs to tenant 'acme'" in e.value.message
        # Another tenant's adapter is answered as an unknown name (names stay private).
        with pytest.raises(h.GenerationError) as e:
            globex.generate(token_ids=[1, 8, 6, 4], adapter="victim", max_tokens=2)
        assert e.value.code == NOT_FOUND and e.value.message == "unknown adapter 'victim'"
        with pytest.raises(h.GenerationError) as e:
            list(globex.stream(token_ids=[1, 8, 6, 4], adapter="victim", max_tokens=2))
        assert e.value.code == NOT_FOUND
        with pytest.raises(h.GenerationError) as e:
            admin.load_adapter("x", "nobody", "good")
        assert e.value.code == NOT_FOUND and "unknown tenant 'nobody'" in e.value.message
        with pytest.raises(h.GenerationError) as e:
            admin.load_adapter("n" * 129, "acme", "good")
        assert e.value.code == INVALID and "1..128" in e.value.message
        for call in (lambda: admin.unload_adapter("no-such-name"), lambda: admin.get_adapter("no-such-name")):
            with pytest.raises(h.GenerationError) as e:
                call()
            assert e.value.code == NOT_FOUND and "no-such-name" in e.value.message
        with pytest.raises(h.GenerationError) as e:
            acme.generate(token_ids=[1, 2], adapter="no-such-name", max_tokens=2)
        assert e.value.code == NOT_FOUND and "unknown adapter 'no-such-name'" in e.value.message
        for call in (lambda: acme.load_adapter("y", "acme", "good"), lambda: acme.unload_adapter("victim"),
                     lambda: acme.list_adapters(), lambda: acme.get_adapter("victim")):
            with pytest.raises(h.GenerationError) as e:
                call()
            assert e.value.code == DENIED and "admin key" in e.value.message
        assert [a.name for a in globex.model_info().adapters] == []
        assert "victim" in [a.name for a in acme.model_info().adapters]


def test_server_serves_after_the_hostile_loads(hostile):
    s = hostile.server
    assert s.alive()
    with s.client(h.ADMIN_KEY) as admin, s.client(h.KEYS["acme"]) as acme:
        listed = {a.name: a for a in admin.list_adapters()}
        assert set(listed) == {"victim"}, sorted(listed)
        assert (listed["victim"].version, listed["victim"].path) == (1, "victim")
        r = acme.generate(token_ids=[1, 8, 6, 4], adapter="victim", max_tokens=8, ignore_eos=True, timeout=30)
        assert list(r.token_ids) == hostile.ref["token_ids"]
        # Loading valid adapters still works, with sha256 and an explicit type.
        good = hostile.root / "good"
        info = admin.load_adapter("fresh", "acme", str(good), type="para",
                                  sha256=sha256_of(good / "adapter_model.safetensors"))
        assert info.version == 1 and info.sha256 == sha256_of(good / "adapter_model.safetensors")
        assert len(acme.generate(token_ids=[1, 2, 3], adapter="fresh", max_tokens=3, ignore_eos=True).token_ids) == 3
        admin.unload_adapter("fresh")
    h.wait_idle(s)


def test_concurrent_loads_of_a_new_name_for_two_tenants_give_it_to_one(tiny_model, bare_config, start_server,
                                                                       tmp_path):
    """A name belongs to one tenant, also when two tenants' loads of a new name race: one load
    wins, the other is PERMISSION_DENIED. (The weights are 2.3 MB, so each load takes a few ms and
    the two overlap.)"""
    root = tmp_path / "root"
    h.make_para_adapter(root / "big", tiny_model, 91, "--r", "1024")
    s = start_server(tiny_model, bare_config, "--adapter-root", root, "--kv-cache-blocks", 64)
    problems = []
    for k in range(10):
        name, results = f"contested-{k}", {}
        barrier = threading.Barrier(2)

        def load(tenant):
            with s.client(h.ADMIN_KEY) as admin:
                barrier.wait(timeout=10)
                try:
                    results[tenant] = admin.load_adapter(name, tenant, "big", timeout=30)
                except h.GenerationError as e:
                    results[tenant] = e

        threads = [threading.Thread(target=load, args=(t,)) for t in ("acme", "globex")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        ok = {t: r for t, r in results.items() if not isinstance(r, h.GenerationError)}
        refused = {t: r for t, r in results.items() if isinstance(r, h.GenerationError)}
        with s.client(h.ADMIN_KEY) as admin:
            owner = admin.get_adapter(name)
        if len(ok) != 1 or any(e.code != DENIED for e in refused.values()):
            problems.append(f"{name}: both loads succeeded "
                            f"({', '.join(f'{t} got version {i.version}' for t, i in ok.items())}); "
                            f"the name now belongs to {owner.tenant!r} (version {owner.version})"
                            if len(ok) == 2 else f"{name}: {results}")
        elif owner.tenant not in ok:
            problems.append(f"{name}: {list(ok)} won but the name belongs to {owner.tenant}")
    assert not problems, f"{len(problems)} of 10 races broke name ownership:\n" + "\n".join(problems)


# =================================================================================================
# 4. Tiers: host budget (drop to disk, reload) and device budget (demote, promote)
# =================================================================================================

def test_host_tier_drops_idle_adapters_to_disk_and_never_one_in_flight(slow_model, bare_config, start_server,
                                                                       tmp_path):
    root = tmp_path / "root"
    names = [f"tier{i}" for i in range(5)]
    owner = {n: TENANTS[i % 4] for i, n in enumerate(names)}
    dirs = {n: h.make_para_adapter(root / n, slow_model, 110 + i) for i, n in enumerate(names)}
    size = para_bytes(dirs["tier0"])
    budget = int(2.5 * size)  # two adapters fit, not three
    short = {n: [1, 30 + 7 * i, 40 + i] for i, n in enumerate(names)}
    long_ids, n_long = [1, 17, 19, 23], 900
    jobs = [{"prompt_ids": short[n], "max_tokens": 6, "ignore_eos": True, "adapter": dirs[n]} for n in names]
    jobs.append({"prompt_ids": long_ids, "max_tokens": n_long, "ignore_eos": True, "adapter": dirs["tier1"]})
    out = h.cli_generate_many(slow_model, jobs, tmp_path)
    ref = {n: r["token_ids"] for n, r in zip(names, out)}
    ref_long = out[-1]["token_ids"]

    s = start_server(slow_model, bare_config, "--adapter-root", root, "--adapter-host-bytes", budget,
                     "--kv-cache-blocks", 1024)
    with s.client(h.ADMIN_KEY) as admin:
        clients = {t: s.client(h.KEYS[t]) for t in TENANTS}

        def gen(n):
            return list(clients[owner[n]].generate(token_ids=short[n], adapter=n, max_tokens=6, ignore_eos=True,
                                                   timeout=60).token_ids)

        def in_memory():
            return sorted(n for n, t in tiers(admin).items() if t != DISK)

        info = admin.load_adapter("tier0", owner["tier0"], "tier0")
        assert info.bytes == size and info.tier == HOST
        first = {"tier0": gen("tier0")}
        admin.load_adapter("tier1", owner["tier1"], "tier1")
        first["tier1"] = gen("tier1")
        admin.load_adapter("tier2", owner["tier2"], "tier2")
        admin.load_adapter("tier3", owner["tier3"], "tier3")
        listed = tier_names(admin)
        print(f"\nadapter bytes {size}, host budget {budget}; after 4 loads: {listed}")
        assert listed == {"tier0": "disk", "tier1": "disk", "tier2": "host", "tier3": "host"}
        assert sum(a.bytes for a in admin.list_adapters() if a.tier != DISK) <= budget

        # A disk-tier adapter is reloaded for its request and answers as before; the least
        # recently used idle one (tier2) makes room.
        assert gen("tier0") == first["tier0"] == ref["tier0"]
        assert in_memory() == ["tier0", "tier3"], tier_names(admin)

        # A request in flight pins its adapter: evictions go around it.
        stream = clients[owner["tier1"]].stream(token_ids=long_ids, adapter="tier1", max_tokens=n_long,
                                                ignore_eos=True, timeout=120)
        got = list(next(stream).token_ids)
        pinned = admin.get_adapter("tier1")
        assert pinned.in_flight == 1 and pinned.tier != DISK
        seen = []
        for n in ["tier2", "tier3", "tier0", "tier2"]:
            assert gen(n) == ref[n], n
            seen.append(tier_names(admin))
            assert admin.get_adapter("tier1").tier != DISK, f"tier1 was dropped with a request in flight: {seen}"
        admin.load_adapter("tier4", owner["tier4"], "tier4")  # a new load must make room around it too
        seen.append(tier_names(admin))
        assert admin.get_adapter("tier1").tier != DISK, f"tier1 was dropped with a request in flight: {seen}"
        assert h.stats(s).requests_in_flight == 1, "the long stream ended before the evictions; lengthen it"
        print("tiers while tier1 streamed:", seen)
        for ch in stream:
            got += ch.token_ids
        assert got == ref_long
        assert admin.get_adapter("tier1").in_flight == 0

        # Idle again, tier1 can go like any other.
        for n in ["tier2", "tier3"]:
            assert gen(n) == ref[n]
        assert admin.get_adapter("tier1").tier == DISK, tier_names(admin)
        assert gen("tier1") == first["tier1"]
        for c in clients.values():
            c.close()
    h.wait_idle(s)


def test_device_tier_follows_use_within_its_budget(tiny_model, bare_config, start_server, tmp_path):
    root = tmp_path / "root"
    names = [f"dev{i}" for i in range(4)]
    owner = {n: TENANTS[i] for i, n in enumerate(names)}
    dirs = {n: h.make_para_adapter(root / n, tiny_model, 120 + i) for i, n in enumerate(names)}
    size = para_bytes(dirs["dev0"])
    budget = int(2.5 * size)
    prompt = {n: ids_for(50 + i) for i, n in enumerate(names)}
    out = h.cli_generate_many(tiny_model, [{"prompt_ids": prompt[n], "max_tokens": 20, "ignore_eos": True,
                                            "adapter": dirs[n]} for n in names], tmp_path)
    ref = {n: r["token_ids"] for n, r in zip(names, out)}
    s = start_server(tiny_model, bare_config, "--adapter-root", root, "--adapter-device-bytes", budget,
                     "--kv-cache-blocks", 256)
    with s.client(h.ADMIN_KEY) as admin:
        for n in names:
            assert admin.load_adapter(n, owner[n], n).tier == HOST

        def gen(n, c=None):
            if c is None:
                with s.client(h.KEYS[owner[n]]) as c:
                    return gen(n, c)
            return list(c.generate(token_ids=prompt[n], adapter=n, max_tokens=20, ignore_eos=True,
                                   timeout=60).token_ids)

        def on_device():
            return sorted(n for n, t in tiers(admin).items() if t == DEVICE)

        steps = []
        for n, want in [("dev0", ["dev0"]), ("dev1", ["dev0", "dev1"]), ("dev2", ["dev1", "dev2"]),
                        ("dev0", ["dev0", "dev2"]), ("dev3", ["dev0", "dev3"])]:
            assert gen(n) == ref[n], n
            steps.append((n, on_device()))
            assert steps[-1][1] == want, f"after a request on {n}: device tier {steps[-1][1]}, expected {want}"
        print(f"\nadapter bytes {size}, device budget {budget}; device tier after each request: {steps}")

        # All four at once from their tenants: tiers keep changing and every request completes.
        results, errors, device_sets = {n: [] for n in names}, [], set()
        done = threading.Event()

        def tenant(n):
            try:
                with s.client(h.KEYS[owner[n]]) as c:
                    for _ in range(6):
                        results[n].append(gen(n, c))
            except BaseException as e:  # noqa: BLE001
                errors.append((n, e))

        def poll():
            with s.client(h.ADMIN_KEY) as a:
                while not done.is_set():
                    device_sets.add(tuple(sorted(n for n, t in tiers(a).items() if t == DEVICE)))
                    time.sleep(0.005)

        poller = threading.Thread(target=poll)
        poller.start()
        threads = [threading.Thread(target=tenant, args=(n,)) for n in names]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=90)
        took = time.monotonic() - t0
        done.set()
        poller.join()
        assert not errors, errors
        for n in names:
            assert results[n] == [ref[n]] * 6, n
        print(f"24 requests on 4 adapters through a 2-adapter device tier in {took:.2f} s; device sets seen: "
              f"{sorted(device_sets)}")
        assert len(device_sets) > 1
        assert all(len(d) <= 2 for d in device_sets), device_sets
        h.wait_idle(s)
        assert all(a.in_flight == 0 for a in admin.list_adapters())


def _hot_traffic(s, tenant, name, stop, lengths=(300, 347, 401, 452)):
    """Closed-loop clients of different lengths: the adapter always has a request in flight."""
    counts, errors = [0], []

    def loop(max_tokens):
        with s.client(h.KEYS[tenant]) as c:
            while not stop.is_set():
                try:
                    c.generate(token_ids=[1, 5, 9], adapter=name, max_tokens=max_tokens, ignore_eos=True, timeout=60)
                    counts[0] += 1
                except h.GenerationError as e:
                    errors.append(e)
                    return

    threads = [threading.Thread(target=loop, args=(n,)) for n in lengths]
    for t in threads:
        t.start()
    return threads, counts, errors


def test_device_tier_does_not_starve_another_tenants_adapter(tiny_model, bare_config, start_server, tmp_path):
    """The device budget holds one adapter. acme's adapter always has a request in flight (three
    clients of different lengths); globex's request for its own adapter must still run ("the
    request waits, other tenants go on" — not forever)."""
    root = tmp_path / "root"
    hot = h.make_para_adapter(root / "hot", tiny_model, 131)
    h.make_para_adapter(root / "cold", tiny_model, 132)
    ref = h.cli_generate(tiny_model, prompt_ids=[1, 2, 3], adapter=str(root / "cold"), max_tokens=8)
    s = start_server(tiny_model, bare_config, "--adapter-root", root, "--kv-cache-blocks", 256,
                     "--adapter-device-bytes", int(1.5 * para_bytes(hot)))
    with s.client(h.ADMIN_KEY) as admin:
        admin.load_adapter("hot", "acme", "hot")
        admin.load_adapter("cold", "globex", "cold")
    stop = threading.Event()
    threads, counts, errors = _hot_traffic(s, "acme", "hot", stop)
    try:
        h.wait_until(lambda: counts[0] >= 5, 20, what="acme's traffic to run")
        t0 = time.monotonic()
        with s.client(h.KEYS["globex"]) as globex:
            try:
                r = globex.generate(token_ids=[1, 2, 3], adapter="cold", max_tokens=8, ignore_eos=True, timeout=6)
                outcome = None
            except h.GenerationError as e:
                outcome = e
        waited = time.monotonic() - t0
        with s.client(h.ADMIN_KEY) as admin:
            seen = tier_names(admin)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert not errors, errors
    print(f"\nglobex waited {waited:.2f} s while acme completed {counts[0]} requests; tiers then: {seen}")
    assert outcome is None, (f"globex's request on 'cold' got {outcome} after {waited:.1f} s while acme's 'hot' "
                             f"held the device tier ({counts[0]} acme requests completed meanwhile; tiers {seen})")
    assert list(r.token_ids) == ref["token_ids"]
    h.wait_idle(s)


def test_adapter_larger_than_the_device_budget_does_not_hang(tiny_model, bare_config, start_server, tmp_path):
    """An adapter that can never fit the device tier must be refused (at load or request) or run
    anyway; a request must not wait forever."""
    root = tmp_path / "root"
    d = h.make_para_adapter(root / "a", tiny_model, 141)
    s = start_server(tiny_model, bare_config, "--adapter-root", root, "--kv-cache-blocks", 64,
                     "--adapter-device-bytes", para_bytes(d) // 2)
    with s.client(h.ADMIN_KEY) as admin, s.client(h.KEYS["acme"]) as c:
        try:
            admin.load_adapter("big", "acme", "a")
        except h.GenerationError as e:
            assert e.code != C.DEADLINE_EXCEEDED and "big" in e.message
            return
        t0 = time.monotonic()
        try:
            r = c.generate(token_ids=[1, 2, 3], adapter="big", max_tokens=4, ignore_eos=True, timeout=5)
            assert len(r.token_ids) == 4
        except h.GenerationError as e:
            assert e.code != C.DEADLINE_EXCEEDED, (
                f"the request waited {time.monotonic() - t0:.1f} s for an adapter of {para_bytes(d)} bytes to fit a "
                f"device budget of {para_bytes(d) // 2} bytes: {e}")
            assert "big" in e.message


def _cpu_ticks(pid: int) -> int:
    f = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12])  # utime + stime


def test_disk_tier_adapter_whose_files_vanished_fails_cleanly(tiny_model, bare_config, start_server, tmp_path):
    """An adapter dropped to disk whose directory was then removed cannot be reloaded: its
    requests must fail promptly with a status naming it, the server must not busy-loop, other
    adapters keep working, and SIGTERM still shuts the server down."""
    root = tmp_path / "root"
    d = h.make_para_adapter(root / "doomed", tiny_model, 151)
    h.make_para_adapter(root / "other", tiny_model, 152)
    s = start_server(tiny_model, bare_config, "--adapter-root", root, "--kv-cache-blocks", 64,
                     "--adapter-host-bytes", int(1.5 * para_bytes(d)))
    problems = []
    with s.client(h.ADMIN_KEY) as admin, s.client(h.KEYS["acme"]) as c:
        admin.load_adapter("doomed", "acme", "doomed")
        admin.load_adapter("other", "acme", "other")
        assert tier_names(admin) == {"doomed": "disk", "other": "host"}
        shutil.rmtree(root / "doomed")
        t0 = time.monotonic()
        try:
            c.generate(token_ids=[1, 2, 3], adapter="doomed", max_tokens=4, timeout=5)
            outcome = None
        except h.GenerationError as e:
            outcome = e
        took = time.monotonic() - t0
        time.sleep(0.5)
        before = _cpu_ticks(s.proc.pid)
        time.sleep(1.0)
        busy = (_cpu_ticks(s.proc.pid) - before) / os.sysconf("SC_CLK_TCK")
        print(f"\nrequest for the vanished adapter: {outcome} after {took:.2f} s; server CPU while idle "
              f"afterwards: {busy:.2f} s per second")
        if outcome is None:
            problems.append("a request on an adapter whose files are gone succeeded")
        elif outcome.code == C.DEADLINE_EXCEEDED:
            problems.append(f"the request hung until its deadline ({took:.1f} s) instead of failing with the "
                            f"reload error")
        elif "doomed" not in outcome.message:
            problems.append(f"the error does not name the adapter: {outcome}")
        info = admin.get_adapter("doomed")
        if info.state != h.admin_pb2.ADAPTER_STATE_FAILED or "does not exist" not in info.last_error:
            problems.append(f"GetAdapter does not show the failed reload: state {info.state}, "
                            f"last_error {info.last_error!r}")
        if busy > 0.2:
            problems.append(f"the server burns {busy:.2f} CPU-s per s after the failed reload (retrying it)")
        # The rest keeps working.
        if len(c.generate(token_ids=[1, 2, 3], adapter="other", max_tokens=4, ignore_eos=True,
                          timeout=10).token_ids) != 4:
            problems.append("another adapter stopped working")
    t0 = time.monotonic()
    s.sigterm()
    try:
        code = s.wait(timeout=5)
        if code != 0:
            problems.append(f"SIGTERM: exit code {code}")
    except Exception:  # noqa: BLE001 - subprocess.TimeoutExpired
        problems.append(f"SIGTERM did not stop the server within {time.monotonic() - t0:.0f} s")
        s.kill()
    assert not problems, "\n".join(problems)


# =================================================================================================
# 5. The manifest: a restart serves the same adapters
# =================================================================================================

def test_manifest_brings_the_same_adapters_back_after_a_restart(tiny_model, bare_config, start_server, tmp_path):
    root = tmp_path / "root"
    dirs = {"a": h.make_para_adapter(root / "a", tiny_model, 161),
            "b": h.make_para_adapter(root / "team-b" / "b", tiny_model, 162, "--pooler", "mean"),
            "c": h.make_lora_adapter(root / "c", tiny_model, 163, "--targets", "all"),
            "d1": h.make_para_adapter(root / "d1", tiny_model, 164),
            "d2": h.make_para_adapter(root / "d2", tiny_model, 165),
            "e": h.make_para_adapter(root / "e", tiny_model, 166)}
    manifest = tmp_path / "state" / "manifest.json"
    manifest.parent.mkdir()
    sha_a = sha256_of(pathlib.Path(dirs["a"]) / "adapter_model.safetensors")
    # name -> (tenant, path as given, type, sha256, directory it must serve)
    loads = [("acme-a", "acme", "a", "auto", sha_a, "a"),
             ("globex-b", "globex", "team-b/b", "para", "", "b"),
             ("initech-c", "initech", dirs["c"], "lora", "", "c"),
             ("acme-d", "acme", "d1", "auto", "", "d1"),
             ("acme-d", "acme", "d2", "auto", "", "d2"),  # replaced: the manifest keeps the new path
             ("umbrella-e", "umbrella", "e", "auto", "", "e")]
    kept = {"acme-a": "a", "globex-b": "b", "initech-c": "c", "acme-d": "d2"}
    owner = {n: t for n, t, *_ in loads}
    prompt = {n: ids_for(70 + i) for i, n in enumerate(owner)}
    out = h.cli_generate_many(tiny_model, [{"prompt_ids": prompt[n], "max_tokens": 12, "ignore_eos": True,
                                            "adapter": dirs[d]} for n, d in kept.items()], tmp_path)
    ref = {n: r["token_ids"] for n, r in zip(kept, out)}

    def outputs(s):
        res = {}
        for n in kept:
            with s.client(h.KEYS[owner[n]]) as c:
                res[n] = list(c.generate(token_ids=prompt[n], adapter=n, max_tokens=12, ignore_eos=True,
                                         timeout=30).token_ids)
        return res

    def registry(admin):
        return {a.name: (a.tenant, a.path, a.type, a.sha256, a.rank, a.bytes) for a in admin.list_adapters()}

    first = start_server(tiny_model, bare_config, "--adapter-root", root, "--adapter-manifest", manifest,
                         "--kv-cache-blocks", 128, name="first")
    with first.client(h.ADMIN_KEY) as admin:
        for name, tenant, path, kind, sha, _ in loads:
            admin.load_adapter(name, tenant, str(path), type=kind, sha256=sha)
        admin.unload_adapter("umbrella-e")
        before = registry(admin)
        assert admin.get_adapter("acme-d").version == 2
    assert set(before) == set(kept)
    saved = json.loads(manifest.read_text())
    print("\nmanifest:", json.dumps(saved))
    assert sorted(e["name"] for e in saved["adapters"]) == sorted(kept)
    out_before = outputs(first)
    assert out_before == ref
    first.sigterm()
    assert first.wait(timeout=30) == 0
    first.stop()

    second = start_server(tiny_model, bare_config, "--adapter-root", root, "--adapter-manifest", manifest,
                          "--kv-cache-blocks", 128, name="second")
    with second.client(h.ADMIN_KEY) as admin:
        after = registry(admin)
        assert after == before, f"restart changed the registry:\nbefore {before}\nafter  {after}"
        assert all(a.version == 1 and a.in_flight == 0 for a in admin.list_adapters())
        with pytest.raises(h.GenerationError) as e:
            admin.get_adapter("umbrella-e")
        assert e.value.code == NOT_FOUND
    assert outputs(second) == out_before
    with second.client(h.KEYS["globex"]) as globex, second.client(h.KEYS["umbrella"]) as umbrella:
        with pytest.raises(h.GenerationError) as e:
            globex.generate(token_ids=[1, 2], adapter="acme-a", max_tokens=2)
        # ownership came back too (another tenant's adapter is answered as an unknown name)
        assert e.value.code == NOT_FOUND and e.value.message == "unknown adapter 'acme-a'"
        with second.client(h.KEYS["acme"]) as acme:
            assert len(acme.generate(token_ids=[1, 2], adapter="acme-a", max_tokens=2,
                                     ignore_eos=True).token_ids) == 2
        with pytest.raises(h.GenerationError) as e:
            umbrella.generate(token_ids=[1, 2], adapter="umbrella-e", max_tokens=2)
        assert e.value.code == NOT_FOUND
    # The restarted server keeps the manifest up to date in turn.
    with second.client(h.ADMIN_KEY) as admin:
        admin.unload_adapter("initech-c")
    assert sorted(e["name"] for e in json.loads(manifest.read_text())["adapters"]) == ["acme-a", "acme-d", "globex-b"]
    h.wait_idle(second)
    second.sigterm()
    assert second.wait(timeout=30) == 0
    second.stop()

    # A manifest entry whose files are gone: the server starts, serves the rest, shows the entry as
    # FAILED with the reason, keeps it in the manifest, and a fixed directory serves it after the
    # next restart.
    shutil.move(root / "team-b", tmp_path / "team-b-away")
    third = start_server(tiny_model, bare_config, "--adapter-root", root, "--adapter-manifest", manifest,
                         "--kv-cache-blocks", 128, name="third")
    with third.client(h.ADMIN_KEY) as admin, third.client(h.KEYS["globex"]) as globex:
        info = admin.get_adapter("globex-b")
        assert info.state == h.admin_pb2.ADAPTER_STATE_FAILED and "does not exist" in info.last_error, info
        with pytest.raises(h.GenerationError) as e:
            globex.generate(token_ids=prompt["globex-b"], adapter="globex-b", max_tokens=2)
        assert e.value.code == NOT_FOUND and "did not load at start" in e.value.message
        admin.unload_adapter("acme-d")  # rewrites the manifest: the failed entry stays in it
    assert sorted(e["name"] for e in json.loads(manifest.read_text())["adapters"]) == ["acme-a", "globex-b"]
    third.sigterm()
    assert third.wait(timeout=30) == 0
    third.stop()
    shutil.move(tmp_path / "team-b-away", root / "team-b")
    fourth = start_server(tiny_model, bare_config, "--adapter-root", root, "--adapter-manifest", manifest,
                          "--kv-cache-blocks", 128, name="fourth")
    with fourth.client(h.KEYS["globex"]) as globex:
        assert list(globex.generate(token_ids=prompt["globex-b"], adapter="globex-b", max_tokens=12,
                                    ignore_eos=True, timeout=30).token_ids) == ref["globex-b"]


# =================================================================================================
# 6. A thousand adapters on one server
# =================================================================================================

def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def test_a_thousand_adapters(tiny_model, bare_config, start_server, tmp_path):
    """1000 PARA adapters (four distinct ones; half the directories are copies, half symlinks
    inside the root), loaded through LoadAdapter with the manifest on. Prints the timings for
    the notes; asserts only loose bounds."""
    n = 1000
    root = tmp_path / "root"
    src = [pathlib.Path(h.make_para_adapter(root / f"src{k}", tiny_model, 170 + k)) for k in range(4)]
    for i in range(n):
        d = root / f"a{i:04d}"
        if i % 2:
            d.symlink_to(src[i % 4])
        else:
            shutil.copytree(src[i % 4], d)
    manifest = tmp_path / "manifest.json"
    probe = 500  # acme's adapter a0500, a copy of src0
    ref = h.cli_generate(tiny_model, prompt_ids=ids_for(9), adapter=str(src[probe % 4]), max_tokens=16)
    ref_base = h.cli_generate(tiny_model, prompt_ids=ids_for(9), max_tokens=16)
    args = ("--adapter-root", root, "--adapter-manifest", manifest, "--kv-cache-blocks", 128)
    s = start_server(tiny_model, bare_config, *args, name="thousand")
    rss_empty = s.rss_kb()
    name = lambda i: f"t{i:04d}"  # noqa: E731
    with s.client(h.ADMIN_KEY) as admin:
        per_call = []
        t0 = time.monotonic()
        for i in range(n):
            t = time.monotonic()
            info = admin.load_adapter(name(i), TENANTS[i % 4], f"a{i:04d}", timeout=30)
            per_call.append(time.monotonic() - t)
            assert info.version == 1
        load_total = time.monotonic() - t0

        # Every one replaced at once from 8 clients (new versions).
        def replace(ks):
            with s.client(h.ADMIN_KEY) as a:
                for i in ks:
                    assert a.load_adapter(name(i), TENANTS[i % 4], f"a{(i + 4) % n:04d}", timeout=30).version == 2

        threads = [threading.Thread(target=replace, args=(range(k, n, 8),)) for k in range(8)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        replace_total = time.monotonic() - t0

        list_times = []
        for _ in range(5):
            t = time.monotonic()
            listed = admin.list_adapters()
            list_times.append(time.monotonic() - t)
        assert len(listed) == n and {a.version for a in listed} == {2}
        t = time.monotonic()
        acme_listed = admin.list_adapters("acme")
        list_tenant = time.monotonic() - t
        assert len(acme_listed) == n // 4
        t = time.monotonic()
        for i in range(0, n, 10):
            admin.get_adapter(name(i))
        get_time = (time.monotonic() - t) / (n // 10)
        in_memory = sum(a.bytes for a in listed if a.tier != DISK)
    rss_full = s.rss_kb()
    manifest_bytes = manifest.stat().st_size
    assert len(json.loads(manifest.read_text())["adapters"]) == n

    def ttft(adapter, server=s):
        out = []
        with server.client(h.KEYS["acme"]) as c:
            for _ in range(5):
                t = time.monotonic()
                it = c.stream(token_ids=ids_for(9), adapter=adapter, max_tokens=16, ignore_eos=True, timeout=30)
                toks = list(next(it).token_ids)
                out.append(time.monotonic() - t)
                toks += [x for ch in it for x in ch.token_ids]
                assert toks == (ref if adapter else ref_base)["token_ids"], adapter
        return out

    ttft(name(probe))  # warm-up: first use promotes it to the device tier
    ttft_adapter, ttft_base = ttft(name(probe)), ttft("")
    h.wait_idle(s)
    s.stop()

    t0 = time.monotonic()
    again = start_server(tiny_model, bare_config, *args, name="thousand-again")
    restart = time.monotonic() - t0
    with again.client(h.ADMIN_KEY) as admin:
        assert len(admin.list_adapters()) == n
    ttft_after_restart = ttft(name(probe), again)

    med = statistics.median
    per_call.sort()
    print(f"\n1000 adapters: sequential LoadAdapter {load_total:.2f} s in all, per call median "
          f"{_ms(med(per_call))}, p99 {_ms(per_call[int(0.99 * n)])}, max {_ms(per_call[-1])}; "
          f"replacing all 1000 from 8 clients {replace_total:.2f} s ({_ms(replace_total / n)} per load); "
          f"ListAdapters(all) median {_ms(med(list_times))} (max {_ms(max(list_times))}), "
          f"ListAdapters(acme: 250) {_ms(list_tenant)}, GetAdapter {_ms(get_time)}; "
          f"weights in memory {in_memory / 1e6:.1f} MB, RSS {rss_empty} KiB empty -> {rss_full} KiB with 1000; "
          f"manifest {manifest_bytes} bytes; TTFT with adapter median {_ms(med(ttft_adapter))} "
          f"(base model {_ms(med(ttft_base))}); restart from the manifest {restart:.2f} s, TTFT after "
          f"restart median {_ms(med(ttft_after_restart))}")
    assert max(list_times) < 2.0
    assert load_total < 120 and per_call[-1] < 5
    assert med(ttft_adapter) < 1.0
    assert restart < 60


def test_reload_from_disk_stays_inside_the_root(tiny_model, bare_config, start_server, tmp_path):
    """Confinement holds for reloads too: an adapter dropped to disk whose weights file was then
    replaced by a symlink leaving the root must not be reloaded from outside the root."""
    root = tmp_path / "root"
    d = h.make_para_adapter(root / "x", tiny_model, 181)
    h.make_para_adapter(root / "y", tiny_model, 182)
    outside = h.make_para_adapter(tmp_path / "outside", tiny_model, 183)
    ref_outside = h.cli_generate(tiny_model, prompt_ids=[1, 2, 3], adapter=outside, max_tokens=6)["token_ids"]
    s = start_server(tiny_model, bare_config, "--adapter-root", root, "--kv-cache-blocks", 64,
                     "--adapter-host-bytes", int(1.5 * para_bytes(d)))
    with s.client(h.ADMIN_KEY) as admin, s.client(h.KEYS["acme"]) as c:
        admin.load_adapter("x", "acme", "x")
        admin.load_adapter("y", "acme", "y")
        assert tier_names(admin) == {"x": "disk", "y": "host"}
        weights = root / "x" / "adapter_model.safetensors"
        weights.unlink()
        weights.symlink_to(pathlib.Path(outside) / "adapter_model.safetensors")
        try:
            r = c.generate(token_ids=[1, 2, 3], adapter="x", max_tokens=6, ignore_eos=True, timeout=5)
            outcome = list(r.token_ids)
        except h.GenerationError as e:
            outcome = e
    assert outcome != ref_outside, "the reload read adapter_model.safetensors through a symlink outside the root"
    assert isinstance(outcome, h.GenerationError) and outcome.code == DENIED, outcome
    assert "outside the adapter root" in outcome.message
