"""Shared helpers for the para-server integration tests: starting and stopping the real binary on
a loopback port, the offline reference (para-cli), fixtures on disk (tiny models, adapters,
tenants configs, TLS certificates) and small gRPC utilities.

The binaries come from $PARA_SERVER, $PARA_TOOL and $PARA_CLI (set by ctest); the Python client
package from clients/python (ctest puts it on PYTHONPATH; it is added here too for manual runs)."""
from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time
from typing import Callable, Optional, Sequence

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
CLIENT_DIR = REPO / "clients" / "python"
if str(CLIENT_DIR) not in sys.path:
    sys.path.insert(0, str(CLIENT_DIR))

import grpc  # noqa: E402
import spm_json  # noqa: E402

from para.v1 import admin_pb2, admin_pb2_grpc, generation_pb2, generation_pb2_grpc  # noqa: E402,F401
from para_client import Client, GenerationError  # noqa: E402,F401

SERVER = os.environ.get("PARA_SERVER")
TOOL = os.environ.get("PARA_TOOL")
CLI = os.environ.get("PARA_CLI")


def _missing_binaries() -> list[str]:
    out = []
    for var, path in (("PARA_SERVER", SERVER), ("PARA_TOOL", TOOL), ("PARA_CLI", CLI)):
        if not path:
            out.append(f"${var} is not set")
        elif not (os.path.isfile(path) and os.access(path, os.X_OK)):
            # set but broken (a failed build): an error, never a skip
            raise RuntimeError(f"${var}={path!r} is not an executable file")
    return out


MISSING = _missing_binaries()
# Every module that starts a server uses this.
requires_binaries = pytest.mark.skipif(
    bool(MISSING), reason="para-server integration tests need the built binaries: " + "; ".join(MISSING))

# Keys used by every tenants config here (all >= 8 characters).
ADMIN_KEY = "admin-key-0001"
KEYS = {
    "acme": "acme-key-0001",      # PARA adapter (last-token pooler)
    "globex": "globex-key-0001",  # PARA adapter (mean pooler)
    "initech": "initech-key-0001",  # LoRA adapter
    "umbrella": "umbrella-key-0001",  # no adapters: base model only
}
ADAPTERS = {"acme": "acme-para", "globex": "globex-para", "initech": "initech-lora", "umbrella": ""}


def run(*args, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"{list(args)} exited {p.returncode}:\n{p.stderr}")
    return p


# ---- fixtures on disk -------------------------------------------------------------------------

def make_model(path: pathlib.Path, seed: int, *extra: str) -> str:
    run(TOOL, "make-tiny-model", path, "--seed", seed, *extra)
    if spm_json.wanted() and (pathlib.Path(path) / "tokenizer.model").exists():
        spm_json.add_tokenizer_json(pathlib.Path(path))  # sanitized runs: see spm_json.py
    return str(path)


# A ChatML template (as Qwen and SmolLM2 use) that refuses roles it does not know.
CHATML_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if message['role'] not in ['system', 'user', 'assistant'] %}"
    "{{ raise_exception('Unknown role: ' + message['role']) }}{%- endif %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}")


def make_chat_model(path: pathlib.Path, seed: int, *, template: Optional[str] = CHATML_TEMPLATE,
                    eos_token: str = "<|im_end|>") -> str:
    """A tiny random model with a byte-level BPE tokenizer.json (trained here with the PyPI
    `tokenizers`; ids 0-2 are <|endoftext|>, <|im_start|>, <|im_end|>), a tokenizer_config.json
    and, unless `template` is None, a chat_template.jinja."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    run(TOOL, "make-tiny-model", path, "--seed", seed, "--no-tokenizer", "--max-pos", "1024")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    corpus = ["Hello world, how are you today? I am fine, thanks.", "The capital of France is Paris.",
              "system user assistant: You are a helpful assistant.", "Numbers 0123456789 and symbols !?.,;:"]
    tok.train_from_iterator(corpus * 20, trainer)
    tok.save(str(path / "tokenizer.json"))
    (path / "tokenizer_config.json").write_text(json.dumps(
        {"bos_token": "<|im_start|>", "eos_token": eos_token, "add_bos_token": False,
         "tokenizer_class": "GPT2Tokenizer"}))
    if template is not None:
        (path / "chat_template.jinja").write_text(template)
    return str(path)


def make_para_adapter(path: pathlib.Path, model: str, seed: int, *extra: str) -> str:
    run(TOOL, "make-tiny-adapter", path, "--model", model, "--seed", seed, *extra)
    return str(path)


def make_lora_adapter(path: pathlib.Path, model: str, seed: int, *extra: str) -> str:
    run(TOOL, "make-tiny-lora", path, "--model", model, "--seed", seed, *extra)
    return str(path)


def write_config(path: pathlib.Path, tenants: dict, admin_keys: Sequence[str] = (ADMIN_KEY,)) -> str:
    path.write_text(json.dumps({"admin_api_keys": list(admin_keys), "tenants": tenants}, indent=2))
    return str(path)


def cli_generate(model: str, *, prompt: Optional[str] = None, prompt_ids: Optional[Sequence[int]] = None,
                 adapter: Optional[str] = None, max_tokens: Optional[int] = 16, ignore_eos: bool = True,
                 extra: Sequence[str] = ()) -> dict:
    """The offline reference: para-cli's greedy result for one request."""
    args = [CLI, "generate", "--model", model, "--json"]
    if max_tokens is not None:
        args += ["--max-tokens", max_tokens]
    if prompt is not None:
        args += ["--prompt", prompt]
    if prompt_ids is not None:
        args += ["--prompt-ids", ",".join(map(str, prompt_ids))]
    if adapter:
        args += ["--adapter", adapter]
    if ignore_eos:
        args.append("--ignore-eos")
    args += list(extra)
    lines = [l for l in run(*args).stdout.splitlines() if l.strip()]
    assert len(lines) == 1, lines
    return json.loads(lines[0])


def cli_generate_many(model: str, requests: Sequence[dict], workdir: pathlib.Path,
                      extra: Sequence[str] = ()) -> list[dict]:
    """para-cli's results for many requests in one run (--requests FILE.jsonl; each dict holds
    prompt_ids / prompt, max_tokens, adapter (a directory, "" = base model), ignore_eos, ...),
    in input order."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / f"requests-{time.monotonic_ns()}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in requests))
    out = run(CLI, "generate", "--model", model, "--requests", path, "--json", *extra, timeout=300).stdout
    results = [json.loads(l) for l in out.splitlines() if l.strip()]
    assert [r["index"] for r in results] == list(range(len(requests))), out[:2000]
    return results


def make_certs(d: pathlib.Path) -> dict:
    """A CA, a server certificate for localhost / 127.0.0.1 and a client certificate, all signed by
    the CA; plus a second, unrelated CA with its own client certificate. Returns name -> path."""
    d.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def ca(name):
        run("openssl", "req", "-x509", *ec, "-keyout", d / f"{name}.key", "-out", d / f"{name}.pem", "-days", "2",
            "-subj", f"/CN=para test {name}", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")

    def leaf(name, ca_name, cn, ext):
        run("openssl", "req", *ec, "-keyout", d / f"{name}.key", "-out", d / f"{name}.csr", "-subj", f"/CN={cn}")
        (d / f"{name}.ext").write_text(ext)
        run("openssl", "x509", "-req", "-in", d / f"{name}.csr", "-CA", d / f"{ca_name}.pem", "-CAkey",
            d / f"{ca_name}.key", "-CAcreateserial", "-out", d / f"{name}.pem", "-days", "2", "-extfile",
            d / f"{name}.ext")

    ca("ca")
    ca("other-ca")
    leaf("server", "ca", "localhost",
         "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
         "basicConstraints=CA:FALSE\n")
    leaf("client", "ca", "para-test-client", "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n")
    leaf("rogue-client", "other-ca", "para-rogue-client",
         "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n")
    return {name: str(d / name) for name in (
        "ca.pem", "server.pem", "server.key", "client.pem", "client.key", "rogue-client.pem", "rogue-client.key")}


# ---- the server process -----------------------------------------------------------------------

def _session_root(path: pathlib.Path) -> pathlib.Path:
    """pytest's per-session temp dir (…/pytest-of-USER/pytest-N) above `path`."""
    for p in [path, *path.parents]:
        if p.name.startswith("pytest-") and p.parent.name.startswith("pytest-of-"):
            return p
    return path.parent


class ServerProcess:
    """One para-server on 127.0.0.1 with --port 0; the chosen port comes from --port-file."""

    def __init__(self, model: str, config: str, workdir: pathlib.Path, *args: str, startup_timeout: float = 60,
                 env: Optional[dict] = None):
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.port_file = workdir / "port"
        self.http_port_file = workdir / "http-port"
        self.log_path = workdir / "server.log"
        for f in (self.port_file, self.http_port_file):
            if f.exists():
                f.unlink()
        args = list(map(str, args))
        if not any(a.startswith("--adapter-root") for a in args):
            # The fixtures' adapters live beside the config in pytest's session temp dir.
            args += ["--adapter-root", str(_session_root(workdir))]
        self.args = [SERVER, "--model", model, "--config", config, "--host", "127.0.0.1", "--port", "0",
                     "--port-file", str(self.port_file), "--http-port", "0",
                     "--http-port-file", str(self.http_port_file), *args]
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.args, stdout=self._log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **env} if env else None)
        self.port = self._wait_for_port(self.port_file, startup_timeout)
        self.target = f"127.0.0.1:{self.port}"
        self.http_port = self._wait_for_port(self.http_port_file, 5)
        self.http = f"http://127.0.0.1:{self.http_port}"

    def _wait_for_port(self, port_file: pathlib.Path, timeout: float) -> int:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"para-server exited with {self.proc.returncode} before serving:\n{self.log()}")
            try:
                text = port_file.read_text()
                if text.endswith("\n") and text.strip().isdigit():
                    return int(text)
            except FileNotFoundError:
                pass
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"para-server did not write {port_file} within {timeout} s:\n{self.log()}")

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def rss_kb(self) -> int:
        """The server process's resident set size (VmRSS of /proc/PID/status) in KiB."""
        for line in pathlib.Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError(f"no VmRSS for pid {self.proc.pid}")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def sigterm(self) -> None:
        self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        """SIGTERM (drain), then SIGKILL if it does not exit promptly. Always leaves it dead."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()

    # Clients on this server.
    def client(self, key: str, **kw) -> Client:
        return Client(self.target, key, **kw)

    def channel(self) -> grpc.Channel:
        return grpc.insecure_channel(self.target)


def bearer(key: str) -> tuple:
    return (("authorization", f"Bearer {key}"),)


def stats(server: ServerProcess) -> admin_pb2.ServerStats:
    with server.client(ADMIN_KEY) as admin:
        return admin.server_stats()


def wait_until(pred: Callable[[], object], timeout: float, interval: float = 0.02, what: str = "condition"):
    """Polls pred until it returns something truthy; returns it, or fails after timeout seconds."""
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last value: {last!r})")


def wait_idle(server: ServerProcess, timeout: float = 10) -> admin_pb2.ServerStats:
    """Waits until nothing is in flight and every KV block is free again; returns those stats."""
    def idle():
        s = stats(server)
        return s if (s.requests_in_flight == 0 and s.requests_running == 0 and s.requests_waiting == 0
                     and s.kv_blocks_free == s.kv_blocks_total) else None
    try:
        return wait_until(idle, timeout, what="an idle server with a full KV pool")
    except AssertionError as e:
        raise AssertionError(f"{e}; stats now: {stats(server)}") from None


def raw_generate(channel: grpc.Channel, payload: bytes, key: str, *, stream: bool = False, timeout: float = 30):
    """Calls Generate (or GenerateStream) with hand-made request bytes; returns the decoded
    response(s). Raises grpc.RpcError as the server answers."""
    method = "/para.v1.Generation/GenerateStream" if stream else "/para.v1.Generation/Generate"
    if stream:
        call = channel.unary_stream(method, request_serializer=lambda b: b,
                                    response_deserializer=generation_pb2.GenerateStreamResponse.FromString)
        return list(call(payload, metadata=bearer(key), timeout=timeout))
    call = channel.unary_unary(method, request_serializer=lambda b: b,
                               response_deserializer=generation_pb2.GenerateResponse.FromString)
    return call(payload, metadata=bearer(key), timeout=timeout)


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field_bytes(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def field_varint(number: int, value: int) -> bytes:
    return varint(number << 3 | 0) + varint(value)
