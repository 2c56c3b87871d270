"""deploy/ stays true to the server: the Kubernetes manifests (kustomize base and gateway overlay)
pass a schema validator (kubernetes-validate --strict for the built-in kinds; the custom
resources against the fields of their published definitions), every flag they and the systemd
unit pass is one para-server's --help lists, their ports and probe paths are the ones it serves,
and the metric names the endpoint picker is told to read are ones its /metrics exports."""

import pathlib
import re
import shutil
import subprocess
import urllib.request

import jsonschema
import pytest
import yaml

import server_harness as h

pytestmark = h.requires_binaries

REPO = pathlib.Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "kubernetes"


def docs_in(directory: pathlib.Path) -> list:
    out = []
    for f in sorted(directory.glob("*.yaml")):
        if f.name != "kustomization.yaml":
            out += [d for d in yaml.safe_load_all(f.read_text()) if d]
    return out


def rendered(overlay: str) -> list:
    """What `kubectl kustomize` makes of an overlay that only lists resources (no patches)."""
    k = yaml.safe_load((K8S / overlay / "kustomization.yaml").read_text())
    assert set(k) <= {"apiVersion", "kind", "resources"}, "the overlays here only list resources"
    out = []
    for r in k["resources"]:
        p = (K8S / overlay / r).resolve()
        out += rendered(str(p.relative_to(K8S))) if p.is_dir() else [
            d for d in yaml.safe_load_all(p.read_text()) if d]
    return out


def one(docs, kind, name=None):
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, (kind, name, len(found))
    return found[0]


def server_flags() -> set:
    out = h.run(h.SERVER, "--help").stdout
    return set(re.findall(r"^  --([a-z0-9-]+)$", out, re.M))


def args_of(container) -> dict:
    return dict(a[2:].split("=", 1) for a in container["args"])


def test_kustomizations_list_every_manifest():
    for overlay in ("base", "gateway"):
        k = yaml.safe_load((K8S / overlay / "kustomization.yaml").read_text())
        files = {f.name for f in (K8S / overlay).glob("*.yaml")} - {"kustomization.yaml"}
        assert files == {r for r in k["resources"] if not r.startswith("..")}, overlay


def test_builtin_kinds_pass_kubernetes_validate_strict():
    tool = shutil.which("kubernetes-validate")
    assert tool, "kubernetes-validate is missing (tests/requirements.txt)"
    files = [str(f) for f in sorted(K8S.glob("*/*.yaml")) if f.name != "kustomization.yaml"]
    p = subprocess.run([tool, "--strict", *files], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    checked = re.findall(r"^INFO .* passed for resource", p.stdout, re.M)
    builtin = [d for d in docs_in(K8S / "base") + docs_in(K8S / "gateway") if d["kind"] not in CRD_SCHEMAS]
    assert len(checked) == len(builtin) >= 8, p.stdout  # Deployments, Services, PDB, RBAC
    # Only the custom resources lack a built-in schema; those are checked below.
    for line in re.findall(r"^WARN .*$", p.stdout + p.stderr, re.M):
        assert re.search(r"kind (ServiceMonitor|InferencePool|HTTPRoute) ", line), line


# The fields of the custom resources used here, from their published definitions
# (inference.networking.k8s.io/v1 InferencePool, gateway.networking.k8s.io/v1 HTTPRoute,
# monitoring.coreos.com/v1 ServiceMonitor); unknown fields are refused.
def obj(props, required=()):
    return {"type": "object", "properties": props, "required": list(required), "additionalProperties": False}


META = obj({"name": {"type": "string"}, "labels": {"type": "object"}, "namespace": {"type": "string"}}, ["name"])
PORT_NUMBER = obj({"number": {"type": "integer", "minimum": 1, "maximum": 65535}}, ["number"])
CRD_SCHEMAS = {
    "InferencePool": obj({
        "apiVersion": {"const": "inference.networking.k8s.io/v1"}, "kind": {"const": "InferencePool"},
        "metadata": META,
        "spec": obj({
            "selector": obj({"matchLabels": {"type": "object", "minProperties": 1}}, ["matchLabels"]),
            "targetPorts": {"type": "array", "minItems": 1, "maxItems": 8, "items": PORT_NUMBER},
            "endpointPickerRef": obj({"group": {"type": "string"}, "kind": {"type": "string"},
                                      "name": {"type": "string"}, "port": PORT_NUMBER,
                                      "failureMode": {"enum": ["FailOpen", "FailClose"]}}, ["name"]),
        }, ["selector", "targetPorts", "endpointPickerRef"]),
    }, ["apiVersion", "kind", "metadata", "spec"]),
    "HTTPRoute": obj({
        "apiVersion": {"const": "gateway.networking.k8s.io/v1"}, "kind": {"const": "HTTPRoute"},
        "metadata": META,
        "spec": obj({
            "parentRefs": {"type": "array", "items": obj({"group": {"type": "string"}, "kind": {"type": "string"},
                                                          "name": {"type": "string"}}, ["name"])},
            "rules": {"type": "array", "items": obj({
                "matches": {"type": "array", "items": obj({"path": obj({
                    "type": {"enum": ["Exact", "PathPrefix", "RegularExpression"]}, "value": {"type": "string"}})})},
                "backendRefs": {"type": "array", "items": obj({
                    "group": {"type": "string"}, "kind": {"type": "string"}, "name": {"type": "string"},
                    "port": {"type": "integer"}, "weight": {"type": "integer"}}, ["name"])},
                "timeouts": obj({"request": {"type": "string", "pattern": r"^([0-9]{1,5}(h|m|s|ms)){1,4}$"},
                                 "backendRequest": {"type": "string"}}),
            })},
        }, ["parentRefs", "rules"]),
    }, ["apiVersion", "kind", "metadata", "spec"]),
    "ServiceMonitor": obj({
        "apiVersion": {"const": "monitoring.coreos.com/v1"}, "kind": {"const": "ServiceMonitor"},
        "metadata": META,
        "spec": obj({
            "selector": obj({"matchLabels": {"type": "object"}}),
            "endpoints": {"type": "array", "items": obj({"port": {"type": "string"}, "path": {"type": "string"},
                                                          "interval": {"type": "string"}})},
        }, ["selector", "endpoints"]),
    }, ["apiVersion", "kind", "metadata", "spec"]),
}


def test_custom_resources_match_their_definitions():
    docs = rendered("gateway")
    for kind, schema in CRD_SCHEMAS.items():
        jsonschema.validate(one(docs, kind), schema)
    bad = one(docs, "InferencePool")
    with pytest.raises(jsonschema.ValidationError):  # the check can fail: a misspelt field
        jsonschema.validate({**bad, "spec": {**bad["spec"], "targetPort": 8080}}, CRD_SCHEMAS["InferencePool"])


def test_deployment_flags_ports_probes_and_lifecycle(tiny_model, tenants_config, start_server):
    docs = rendered("gateway")
    deployment = one(docs, "Deployment", "para-server")
    pod = deployment["spec"]["template"]
    container = pod["spec"]["containers"][0]
    args = args_of(container)
    unknown = set(args) - server_flags()
    assert not unknown, f"flags para-server does not have: {unknown}"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc": int(args["port"]), "http": int(args["http-port"])}
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == args["http-port"]
    service = one(docs, "Service", "para-server")
    assert {p["targetPort"] for p in service["spec"]["ports"]} == set(ports)
    assert one(docs, "ServiceMonitor")["spec"]["endpoints"][0]["port"] in {p["name"] for p in service["spec"]["ports"]}
    pool = one(docs, "InferencePool")
    assert [p["number"] for p in pool["spec"]["targetPorts"]] == [ports["http"]]
    labels = pod["metadata"]["labels"]
    assert pool["spec"]["selector"]["matchLabels"] == labels == deployment["spec"]["selector"]["matchLabels"]
    assert one(docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"] == labels
    # --threads comes from the CPU request; the adapter manifest is per pod (an emptyDir).
    assert args["threads"] == "$(PARA_THREADS)"
    env = {e["name"]: e for e in container["env"]}
    assert env["PARA_THREADS"]["valueFrom"]["resourceFieldRef"]["resource"] == "requests.cpu"
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    manifest_dir = str(pathlib.PurePosixPath(args["adapter-manifest"]).parent)
    assert "emptyDir" in volumes[mounts[manifest_dir]]
    assert volumes[mounts["/etc/para"]]["secret"]["secretName"] == "para-tenants"
    # The grace period covers the preStop sleep and the drain.
    grace = pod["spec"]["terminationGracePeriodSeconds"]
    assert grace > container["lifecycle"]["preStop"]["sleep"]["seconds"] + int(args["drain-grace-seconds"])
    # The server, started with the manifest's serving options, answers every probe and exports the
    # metric names the endpoint picker is told to read (and the vLLM names it reads by default).
    portable = [f"--{k}={v}" for k, v in args.items() if k in (
        "served-model-name", "max-num-seqs", "max-loras", "drain-grace-seconds", "engine-stall-timeout-ms",
        "metrics-compat")]
    s = start_server(tiny_model, tenants_config, *portable)
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        get = container[probe]["httpGet"]
        assert get["port"] == "http"
        with urllib.request.urlopen(s.http + get["path"], timeout=5) as r:
            assert r.status == 200, (probe, get["path"])
    with urllib.request.urlopen(s.http + "/metrics", timeout=5) as r:
        exported = set(re.findall(r"^# TYPE (\S+) ", r.read().decode(), re.M))
    epp = one(docs, "Deployment", "para-server-epp")["spec"]["template"]["spec"]["containers"][0]
    metric_flags = {k: v for k, v in args_of(epp).items() if k.endswith("-metric")}
    assert len(metric_flags) == 4
    assert set(metric_flags.values()) <= exported, set(metric_flags.values()) - exported
    assert {"vllm:num_requests_waiting", "vllm:num_requests_running", "vllm:kv_cache_usage_perc",
            "vllm:lora_requests_info", "vllm:cache_config_info"} <= exported


def test_systemd_unit_and_dockerfile_use_what_exists():
    unit = (REPO / "deploy" / "systemd" / "para-server.service").read_text()
    flags = set(re.findall(r"--([a-z0-9-]+)=", unit))
    assert flags and not flags - server_flags(), flags - server_flags()
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()
    for script in re.findall(r"(scripts/[\w.-]+)", dockerfile):
        assert (REPO / script).is_file(), script
    bin_dir = pathlib.Path(h.SERVER).parent
    for binary in re.findall(r"build/bin/([\w-]+)", dockerfile):
        assert (bin_dir / binary).is_file(), binary
    cmake_options = set(re.findall(r"-D(PARA_\w+)=", dockerfile))
    declared = set(re.findall(r"option\((PARA_\w+)", (REPO / "CMakeLists.txt").read_text()))
    assert cmake_options and cmake_options <= declared, cmake_options - declared
