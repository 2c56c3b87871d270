"""The Kubernetes manifest in deploy/ stays true to the server: every flag it passes is one
para-server accepts, the probe paths and ports are the ones it serves, and the scrape annotation
points at the HTTP port."""

import pathlib
import re
import urllib.request

import yaml

import server_harness as h

pytestmark = h.requires_binaries

MANIFEST = pathlib.Path(__file__).resolve().parents[2] / "deploy" / "kubernetes" / "para-server.yaml"


def test_manifest_flags_ports_and_probes_match_the_server(server):
    docs = list(yaml.safe_load_all(MANIFEST.read_text()))
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    service = next(d for d in docs if d["kind"] == "Service")
    pod = deployment["spec"]["template"]
    container = pod["spec"]["containers"][0]
    help_text = h.run(h.SERVER, "--helpfull", check=False)
    known = set(re.findall(r"--([a-z_]+) ", help_text.stdout + help_text.stderr))
    args = dict(a[2:].split("=", 1) for a in container["args"])
    unknown = [f for f in args if f.replace("-", "_") not in known]
    assert not unknown, f"flags para-server does not have: {unknown}"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc": int(args["port"]), "http": int(args["http-port"])}
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == args["http-port"]
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > int(args["drain-grace-seconds"])
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        get = container[probe]["httpGet"]
        assert get["port"] == "http"
        with urllib.request.urlopen(server.http + get["path"], timeout=5) as r:
            assert r.status == 200, (probe, get["path"])
    assert {p["targetPort"] for p in service["spec"]["ports"]} == {"grpc", "http"}
