"""The committed Python stubs (clients/python/para/v1) are what clients/python/generate_stubs.sh
makes from proto/para/v1 now: a proto change without regenerated stubs fails here."""
import pathlib
import re
import subprocess

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
COMMITTED = REPO / "clients" / "python" / "para" / "v1"
SCRIPT = REPO / "clients" / "python" / "generate_stubs.sh"


def pinned_grpcio_tools() -> str:
    text = (REPO / "tests" / "requirements.txt").read_text()
    m = re.search(r"^grpcio-tools==(\S+)", text, re.M)
    assert m, "tests/requirements.txt pins no grpcio-tools"
    return m.group(1)


def test_committed_stubs_equal_regenerated(tmp_path):
    grpc_tools = pytest.importorskip("grpc_tools", reason="needs grpcio-tools (tests/requirements.txt)")
    from importlib.metadata import version
    if version("grpcio-tools") != pinned_grpcio_tools():
        pytest.skip(f"grpcio-tools {version('grpcio-tools')} is installed; the stubs are made with the pinned "
                    f"{pinned_grpcio_tools()}, whose output may differ")
    del grpc_tools
    subprocess.run(["bash", str(SCRIPT), str(tmp_path)], check=True, capture_output=True, timeout=120)
    fresh = tmp_path / "para" / "v1"
    names = lambda d: sorted(p.name for p in d.iterdir() if p.is_file() and p.suffix in (".py", ".pyi"))  # noqa: E731
    assert names(fresh) == names(COMMITTED)
    assert {"generation_pb2.py", "generation_pb2_grpc.py", "admin_pb2.py", "admin_pb2_grpc.py"} <= set(names(fresh))
    stale = [n for n in names(fresh) if (fresh / n).read_bytes() != (COMMITTED / n).read_bytes()]
    assert not stale, f"stale stubs: {stale}; run clients/python/generate_stubs.sh"
