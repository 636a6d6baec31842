"""Our SAM2 backend chart (helm/sam2-backend): lint, schema, GPU and CPU renders with the
values the program builds, Kubernetes schemas, the pack's workload rules and checkov."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate
import pytest
import yaml

from backend.settings import Settings
from infra.charts import ChartError, render, validate_values
from infra.k8s import sam2
from infra.k8s.netpol import LABEL_STUDIO_POD_LABELS
from policies.manifests import evaluate_manifests
from tests.k8s_checks import CHECKOV, failed_and_skipped, run_checkov

CHART = sam2.CHART_DIR
K8S_VERSION = "1.34.0"
DIGEST = "sha256:" + "1" * 64
#: checkov checks waived in the chart (annotation checkov.io/skipN on the Deployment), with
#: the reason documented in docs/sam2-on-kubernetes.md
WAIVED = {"CKV_K8S_35"}


def site(gpu: bool = True, **changes: Any) -> sam2.Sam2Site:
    base = dict(
        namespace="labelstack",
        image_repository="123456789012.dkr.ecr.us-east-1.amazonaws.com/labelstack-dev/"
                         "sam2-backend",
        image_digest=DIGEST, role_arn="arn:aws:iam::123456789012:role/identity-sam2",
        region="us-east-1", weights_uri="s3://labelstack-dev-models/sam2.1/large.pt",
        weights_sha256="a" * 64, model="large" if gpu else "small", gpu=gpu,
        s3_cidrs=("3.5.0.0/19", "52.216.0.0/15"), endpoint_cidrs=("10.40.0.0/19",),
        api_key_secret="labelstack-admin", api_key_key="api-token")
    return sam2.Sam2Site(**{**base, **changes})


def rendered(s: sam2.Sam2Site) -> list[dict[str, Any]]:
    return render(CHART, sam2.sam2_values(s), name=sam2.RELEASE, namespace=s.namespace)


@pytest.fixture(scope="module", params=["gpu", "cpu"])
def objs(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return rendered(site(gpu=request.param == "gpu"))


def kind(objs: list[dict[str, Any]], k: str) -> dict[str, Any]:
    found = [o for o in objs if o["kind"] == k]
    assert len(found) == 1, k
    return found[0]


def pod(objs: list[dict[str, Any]]) -> dict[str, Any]:
    return kind(objs, "Deployment")["spec"]["template"]["spec"]


def env(objs: list[dict[str, Any]]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom"))
            for e in pod(objs)["containers"][0]["env"]}


def test_lint_passes_without_errors() -> None:
    result = helm_python.lint(str(CHART))
    assert result["errors"] == []
    assert not [m for m in result["messages"] if m["severity"] > 1], result["messages"]


def test_ci_values_pass_the_schema() -> None:
    for f in sorted((CHART / "ci").glob("*-values.yaml")):
        validate_values(CHART, yaml.safe_load(f.read_text()))


@pytest.mark.parametrize("bad, where", [
    ({"image": {"digest": "v1.2.3"}}, "digest"),
    ({"service": {"type": "LoadBalancer"}}, "type"),
    ({"securityContext": {"readOnlyRootFilesystem": False, "allowPrivilegeEscalation": False,
                          "runAsNonRoot": True}}, "readOnlyRootFilesystem"),
    ({"weights": {"sha256": "not-a-digest"}}, "sha256"),
    ({"networkPolicy": {"s3Cidrs": ["0.0.0.0/0"]}}, "s3Cidrs"),
    ({"startupProbe": {"httpGet": {"path": "/predict", "port": "http"}}}, "path"),
    ({"replicas": 2}, "replicas"),
])
def test_schema_refuses_unsafe_or_unknown_values(bad: dict[str, Any], where: str) -> None:
    with pytest.raises(ChartError, match=where):
        validate_values(CHART, sam2._merge(sam2.sam2_values(site()), bad))


@pytest.mark.parametrize("drop, message", [
    ({"weights": {"uri": ""}}, "weights.uri is required"),
    ({"weights": {"sha256": ""}}, "weights.sha256 is required"),
    ({"auth": {"existingSecret": ""}}, "auth.existingSecret is required"),
    ({"image": {"digest": ""}}, "image.digest is required"),
])
def test_missing_required_inputs_fail_the_render_naming_the_value(drop, message) -> None:
    with pytest.raises(ChartError, match=message.replace(".", r"\.")):
        render(CHART, sam2._merge(sam2.sam2_values(site()), drop), name=sam2.RELEASE,
               namespace="labelstack")


def test_program_refuses_an_image_not_pinned_by_digest() -> None:
    with pytest.raises(ValueError, match="labelstack:sam2ImageDigest"):
        sam2.sam2_values(site(image_digest="latest"))


def test_gpu_render_targets_the_gpu_node_group() -> None:
    spec = pod(rendered(site(gpu=True)))
    assert spec["nodeSelector"] == {"labelstack.io/node-pool": "gpu"}
    assert spec["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Equal",
                                    "value": "true", "effect": "NoSchedule"}]
    assert spec["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert env(rendered(site(gpu=True)))["SAM2_DEVICE"] == "cuda"


def test_cpu_render_asks_for_no_gpu() -> None:
    objs = rendered(site(gpu=False))
    spec = pod(objs)
    assert "nodeSelector" not in spec and "tolerations" not in spec
    assert "nvidia.com/gpu" not in json.dumps(spec["containers"][0]["resources"])
    assert env(objs)["SAM2_DEVICE"] == "cpu" and env(objs)["SAM2_TORCH_THREADS"] == "4"


def test_container_runs_the_images_command_on_the_service_port(objs) -> None:
    ctr = pod(objs)["containers"][0]
    dockerfile = (CHART.parent.parent / "backend" / "Dockerfile").read_text()
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", dockerfile, re.M).group(1))
    assert ctr["command"] + ctr["args"] == cmd  # the image's own command, port 9090
    assert ctr["ports"][0]["containerPort"] == int(ctr["args"][-1]) == 9090


def test_hardened_pod(objs) -> None:
    spec = pod(objs)
    ctr = spec["containers"][0]
    assert ctr["image"] == site().image_repository + "@" + DIGEST
    sc = ctr["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"] and sc["runAsNonRoot"] is True
    assert spec["automountServiceAccountToken"] is False
    mounts = {m["mountPath"]: m["name"] for m in ctr["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert set(mounts) == {"/var/cache/sam2", "/tmp"}
    assert all("emptyDir" in volumes[n] and volumes[n]["emptyDir"]["sizeLimit"]
               for n in mounts.values())
    assert env(objs)["SAM2_WEIGHTS_DIR"] == "/var/cache/sam2"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert ctr[probe]["httpGet"] == {"path": "/health", "port": "http"}
    # loading weights may take minutes: the startup probe allows it before liveness applies
    startup = ctr["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300


def test_weights_auth_and_limits_reach_the_backend(objs) -> None:
    e = env(objs)
    assert e["SAM2_CHECKPOINT"] == "s3://labelstack-dev-models/sam2.1/large.pt"
    assert e["SAM2_CHECKPOINT_SHA256"] == "a" * 64
    assert e["SAM2_BASIC_AUTH_USER"] == {"secretKeyRef": {"name": sam2.AUTH_SECRET,
                                                          "key": "username"}}
    assert e["SAM2_BASIC_AUTH_PASS"] == {"secretKeyRef": {"name": sam2.AUTH_SECRET,
                                                          "key": "password"}}
    assert e["LABEL_STUDIO_API_KEY"] == {"secretKeyRef": {"name": "labelstack-admin",
                                                          "key": "api-token"}}
    assert "SAM2_AUTH_DISABLED" not in e and "SAM2_ALLOW_RANDOM_WEIGHTS" not in e
    # every SAM2_* variable the chart sets is a setting the backend knows
    known = {f"SAM2_{n.upper()}" for n in Settings.model_fields}
    assert {k for k in e if k.startswith("SAM2_")} - known <= {
        "SAM2_BASIC_AUTH_USER", "SAM2_BASIC_AUTH_PASS", "SAM2_AUTH_DISABLED"}


def _setting(key: str) -> str:
    """Chart limit key -> backend setting name (``imageMemoTtlSeconds`` -> ``image_memo_ttl_s``)."""
    snake = re.sub(r"([A-Z])", r"_\1", key.removesuffix("Seconds")).lower()
    return snake + ("_s" if key.endswith("Seconds") else "")


def test_every_limit_reaches_the_backend_as_its_setting(monkeypatch) -> None:
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())["limits"]
    # non-default values, so a limit the chart drops or misnames cannot pass
    changed = {k: (not v) if isinstance(v, bool) else (v * 2 + 1 if k != "imageMemoTtlSeconds"
                                                       else 2.5)
               for k, v in defaults.items()}
    changed["maxRedirects"], changed["maxJsonDepth"] = 5, 40
    changed["videoFrames"], changed["videoMaxObjects"] = 60, 12
    objs = rendered(site(overrides={"limits": changed}))
    for name, value in env(objs).items():
        if name.startswith("SAM2_") and isinstance(value, str):
            monkeypatch.setenv(name, value)
    settings = Settings()
    for key, value in changed.items():
        assert getattr(settings, _setting(key)) == value, key
    # and every SAM2_* setting with a bound is a chart value
    bounded = {n for n in Settings.model_fields if n.startswith(("max_", "cache_", "video_"))
               or n in ("fetch_timeout_s", "prompts_per_pass", "prewarm", "prewarm_max_tasks",
                        "image_memo_ttl_s", "torch_threads")}
    assert bounded <= {_setting(k) for k in defaults}, bounded - {_setting(k) for k in defaults}


def test_service_account_pdb_and_service(objs) -> None:
    sa = kind(objs, "ServiceAccount")
    assert sa["metadata"]["name"] == pod(objs)["serviceAccountName"] == "sam2-backend"
    assert sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == site().role_arn
    svc = kind(objs, "Service")
    assert svc["spec"]["type"] == "ClusterIP" and svc["spec"]["ports"][0]["port"] == 9090
    assert svc["metadata"]["name"] == sam2.RELEASE
    pdb = kind(objs, "PodDisruptionBudget")
    labels = kind(objs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_network_policy_admits_label_studio_only(objs) -> None:
    np = kind(objs, "NetworkPolicy")["spec"]
    assert np["policyTypes"] == ["Ingress", "Egress"]
    assert np["ingress"] == [{"from": [{"podSelector": {"matchLabels": LABEL_STUDIO_POD_LABELS}}],
                              "ports": [{"port": 9090, "protocol": "TCP"}]}]
    peers = [p for rule in np["egress"] for p in rule["to"]]
    cidrs = {p["ipBlock"]["cidr"] for p in peers if "ipBlock" in p}
    assert cidrs == {"3.5.0.0/19", "52.216.0.0/15", "10.40.0.0/19"}
    selected = [p["podSelector"]["matchLabels"] for p in peers if "podSelector" in p]
    assert selected == [{"k8s-app": "kube-dns"}, LABEL_STUDIO_POD_LABELS]
    for rule in np["egress"]:
        if any("ipBlock" in p for p in rule["to"]):
            assert rule["ports"] == [{"port": 443, "protocol": "TCP"}]


def test_objects_are_valid_kubernetes(objs) -> None:
    assert objs  # something rendered
    for obj in objs:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_pack_workload_rules_pass(objs) -> None:
    assert evaluate_manifests(objs) == []


def test_auth_opt_out_is_explicit_and_flagged_by_the_pack() -> None:
    """Auth is on unless auth.disabled is set; the opt-out renders SAM2_AUTH_DISABLED=true,
    which the pack reports as an advisory relaxation."""
    assert yaml.safe_load((CHART / "values.yaml").read_text())["auth"]["disabled"] is False
    objs = render(CHART, sam2._merge(sam2.sam2_values(site()), {"auth": {
        "disabled": True, "existingSecret": ""}}), name=sam2.RELEASE, namespace="labelstack")
    e = env(objs)
    assert e["SAM2_AUTH_DISABLED"] == "true" and "SAM2_BASIC_AUTH_USER" not in e
    found = evaluate_manifests(objs)
    assert [(v.rule, v.mandatory) for v in found] == [
        ("k8s-sam2-auth-disabled-relaxation", False)]


@pytest.mark.skipif(not CHECKOV.exists(), reason="checkov venv missing (make setup)")
def test_checkov_finds_no_failed_check(objs, tmp_path: Path) -> None:
    report = run_checkov(objs, tmp_path)
    failed, skipped = failed_and_skipped(report)
    assert failed == [] and report["summary"]["passed"] > 50
    assert skipped == WAIVED
