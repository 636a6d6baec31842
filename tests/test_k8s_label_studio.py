"""Label Studio's chart rendered with exactly the values the program passes, per stack.

The program's ``helm.v4.Chart`` is opaque under mocks, but the mocks record its inputs: these
tests render the pinned upstream chart (``../shared/charts``) with those recorded values and
check the objects: the chart's schema, Kubernetes' schemas for the cluster's version, the
pack's workload rules and checkov's Kubernetes checks.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from infra import charts
from infra.k8s import label_studio_values as lsv
from infra.k8s.layer import eks_service_cidr
from infra.label_studio_settings import hardened_env
from infra.offline import HELM_CHART, ROOT, Plan
from policies.manifests import evaluate_manifests
from tests.test_secrets import leaks

CHECKOV = ROOT / ".venvs" / "checkov" / "bin" / "checkov"
#: checkov checks waived for Label Studio's objects, each with its reason (docs/kubernetes.md).
CHECKOV_WAIVERS = {
    "CKV_K8S_35": "the chart passes the database password and SECRET_KEY as env from "
                  "Secrets (secretKeyRef); it has no option to mount them as files",
    "CKV_K8S_40": "the image's files belong to UID 1001; a UID above 10000 would need a "
                  "rebuilt image",
}


def chart(plan: Plan, name: str = lsv.RELEASE) -> Any:
    return next(r for r in plan.resources if r.type == HELM_CHART and r.name == name)


def rendered(plan: Plan) -> list[dict[str, Any]]:
    """The Label Studio chart rendered with the values the program passed in ``plan``."""
    res = chart(plan)
    assert res.inputs["version"] == charts.LABEL_STUDIO.version
    assert res.inputs["repositoryOpts"]["repo"] == charts.LABEL_STUDIO.repo
    return charts.render(charts.upstream_chart_dir(charts.LABEL_STUDIO), res.inputs["values"],
                         name=res.name, namespace=res.inputs["namespace"])


def of_kind(objs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind]


def app_env(objs: list[dict[str, Any]], container: str = "app") -> dict[str, Any]:
    dep = of_kind(objs, "Deployment")[0]
    spec = dep["spec"]["template"]["spec"]
    c = next(c for c in spec["containers"] if c["name"] == container)
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c["env"]}


def test_values_pass_the_chart_schema_and_render(each_stack: Plan) -> None:
    values = chart(each_stack).inputs["values"]
    charts.validate_values(charts.upstream_chart_dir(charts.LABEL_STUDIO), values)
    kinds = sorted(o["kind"] for o in rendered(each_stack))
    assert kinds == ["Deployment", "PodDisruptionBudget", "Secret", "Service",
                     "ServiceAccount"]


def test_schema_rejects_an_unknown_key() -> None:
    site = lsv.LabelStudioSite(
        profile="dev", origin="https://l.example.org", db_host="h", db_name="d", db_user="u",
        region="us-east-1", bucket="b", folder="exports/", role_arn="arn:aws:iam::1:role/r",
        image_registry="docker.io", image_repository="heartexlabs/label-studio",
        image_tag="1.23.2@sha256:" + "a" * 64)
    values = lsv.label_studio_values(site)
    values["app"]["typo"] = True
    with pytest.raises(charts.ChartError, match=r"values\.schema\.json"):
        charts.render(charts.upstream_chart_dir(charts.LABEL_STUDIO), values,
                      name=lsv.RELEASE, namespace="labelstack")


def test_objects_validate_against_the_cluster_kubernetes_version(each_stack: Plan) -> None:
    version = json.loads(json.dumps(each_stack.config.get("labelstack:eksVersion", "1.34")))
    objs = rendered(each_stack)
    assert any(o["kind"] == "Deployment" for o in objs)
    for obj in objs:
        kubernetes_validate.validate(obj, f"{version}.0", strict=True)


def test_workload_rules_find_no_violation(each_stack: Plan) -> None:
    assert evaluate_manifests(rendered(each_stack)) == []


def test_workload_rules_would_flag_the_chart_defaults() -> None:
    """The rules can fail: the chart's own security context (no read-only root, no
    capability drop, no seccomp) and empty resources are flagged."""
    values = yaml.safe_load((charts.upstream_chart_dir(charts.LABEL_STUDIO) / "values.yaml")
                            .read_text())
    values["postgresql"]["enabled"] = False
    values["global"]["pgConfig"].update(host="h", dbName="d", userName="u",
                                        password={"secretName": "s", "secretKey": "k"})
    objs = charts.render(charts.upstream_chart_dir(charts.LABEL_STUDIO), values,
                         name=lsv.RELEASE, namespace="labelstack")
    rules = {v.rule for v in evaluate_manifests(objs)}
    assert {"k8s-read-only-root-fs", "k8s-drop-all-capabilities", "k8s-seccomp-runtime-default",
            "k8s-resource-requests", "k8s-memory-limits"} <= rules


def test_pod_is_hardened(stack_plan) -> None:
    objs = rendered(stack_plan("prod"))
    pod = of_kind(objs, "Deployment")[0]["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for c in pod["containers"] + pod["initContainers"]:
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True and sc["runAsNonRoot"] is True
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert "@sha256:" in c["image"], c["image"]
        assert c["resources"]["limits"]["memory"]
    # every path Label Studio writes is an emptyDir
    writable = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
    for c in pod["containers"]:
        assert {m["name"] for m in c["volumeMounts"]} <= writable, c["name"]


@pytest.mark.parametrize("stack,replicas", [("ephemeral", 1), ("dev", 1), ("staging", 2),
                                            ("prod", 3)])
def test_replicas_by_profile_and_a_disruption_budget(stack_plan, stack: str,
                                                     replicas: int) -> None:
    objs = rendered(stack_plan(stack))
    assert of_kind(objs, "Deployment")[0]["spec"]["replicas"] == replicas
    pdb = of_kind(objs, "PodDisruptionBudget")[0]["spec"]
    assert pdb["maxUnavailable"] == 1


def test_image_must_be_pinned_by_digest() -> None:
    with pytest.raises(ValueError, match="not pinned by digest"):
        lsv.label_studio_values(lsv.LabelStudioSite(
            profile="dev", origin="https://l.example.org", db_host="h", db_name="d",
            db_user="u", region="us-east-1", bucket="b", folder="exports/",
            role_arn="arn:aws:iam::1:role/r", image_registry="docker.io",
            image_repository="heartexlabs/label-studio", image_tag="1.23.2"))


def test_config_refuses_a_tag_without_digest(plan_with) -> None:
    from infra.config import ConfigError

    with pytest.raises(ConfigError, match="labelStudioImageTag"):
        plan_with("dev", labelStudioImageTag="1.23.2")


def test_layer_requires_origin_and_certificate(plan_with) -> None:
    from infra.config import ConfigError

    with pytest.raises(ConfigError, match=r"certificateArn.*required"):
        plan_with("dev", certificateArn=None)


def test_env_is_the_shared_hardened_settings(each_stack: Plan) -> None:
    """One source of truth: the container env is hardened_env for this stack's URL, the same
    function the local stack and the end-to-end tests start Label Studio with."""
    origin = each_stack.config["labelstack:labelStudioOrigin"]
    vpc = each_stack.config.get("labelstack:vpcCidr", "10.40.0.0/16")
    host = origin.removeprefix("https://")
    service = f"{lsv.RELEASE}-ls-app"
    expected = hardened_env(host_url=origin, secure_cookies=True,
                            ml_backend_cidrs=[eks_service_cidr(vpc)],
                            allowed_hosts=[host, service, f"{service}.labelstack",
                                           f"{service}.labelstack.svc",
                                           f"{service}.labelstack.svc.cluster.local"])
    objs = rendered(each_stack)
    env = app_env(objs)
    assert {k: env[k] for k in expected} == expected
    assert env["ALLOWED_HOSTS"].split(",")[0] == host  # not Label Studio's default '*'
    # the kubelet's readiness probe presents an allowed host
    app = of_kind(objs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]
    assert app["readinessProbe"]["httpGet"]["httpHeaders"] == [{"name": "Host", "value": host}]
    # no phone-home, whatever the egress mode
    assert env["SENTRY_DSN"] == env["FRONTEND_SENTRY_DSN"] == ""
    assert env["COLLECT_ANALYTICS"] == "false" and env["LATEST_VERSION_CHECK"] == "false"
    # the database and files: RDS over TLS, the annotations bucket through IRSA
    assert env["POSTGRE_SSL_MODE"] in ("require", "verify-ca")
    assert env["STORAGE_TYPE"] == "s3" and "STORAGE_AWS_ACCESS_KEY_ID" not in env


#: Settings that differ between the cluster and the loopback stack, and why: the URL (and
#: so the CSRF origin and the cookie flags: https vs plain http on loopback), the SSRF
#: carve-out (the Service range vs loopback), the Host allow-list (cluster only).
WHERE_IT_RUNS = {"LABEL_STUDIO_HOST", "CSRF_TRUSTED_ORIGINS", "SESSION_COOKIE_SECURE",
                 "CSRF_COOKIE_SECURE", "USER_ADDITIONAL_BANNED_SUBNETS", "ALLOWED_HOSTS"}


def test_end_to_end_tests_run_the_deployed_settings(stack_plan, tmp_path: Path) -> None:
    """The env the local stack and the end-to-end tests start Label Studio with carries the
    same hardening settings as the chart's containers; only where-it-runs values differ."""
    from local_stack.services import Postgres, S3Server, label_studio_env

    chart_env = app_env(rendered(stack_plan("prod")))
    local = label_studio_env(
        Postgres("127.0.0.1", 5432, "u", "p", "d", tmp_path, tmp_path / "log"),
        S3Server("http://127.0.0.1:9000"), url="http://127.0.0.1:8080", username="a@b.c",
        password="pw", token="t", data_dir=tmp_path, secret_key="k",
        ml_backend_cidrs=["127.0.0.0/8"])
    hardened = set(hardened_env(host_url="https://x", secure_cookies=True, ml_backend_cidrs=[],
                                allowed_hosts=["x"]))
    same = hardened - WHERE_IT_RUNS
    assert len(same) >= 9
    assert {k: chart_env[k] for k in same} == {k: local[k] for k in same}


def test_allowed_hosts_is_opt_in_for_other_callers() -> None:
    """The local stack calls hardened_env without allowed_hosts and keeps Label Studio's
    default; the cluster passes its host names."""
    plain = hardened_env(host_url="http://127.0.0.1:8080", secure_cookies=False,
                         ml_backend_cidrs=["127.0.0.0/8"])
    assert "ALLOWED_HOSTS" not in plain
    pinned = hardened_env(host_url="https://l.example.org", secure_cookies=True,
                          ml_backend_cidrs=[], allowed_hosts=["l.example.org", "svc"])
    assert pinned["ALLOWED_HOSTS"] == "l.example.org,svc"
    assert {k: v for k, v in pinned.items() if k != "ALLOWED_HOSTS"} == hardened_env(
        host_url="https://l.example.org", secure_cookies=True, ml_backend_cidrs=[])


def test_secrets_come_from_cluster_secrets_only(each_stack: Plan) -> None:
    objs = rendered(each_stack)
    env = app_env(objs)
    assert env["POSTGRE_PASSWORD"] == {"secretKeyRef": {"name": lsv.DB_SECRET,
                                                         "key": "password"}}
    assert env["SECRET_KEY"] == {"secretKeyRef": {"name": lsv.DJANGO_SECRET,
                                                   "key": lsv.DJANGO_SECRET_KEY}}
    # the chart's lookup-based django secret is not rendered; its other Secret holds nothing
    for secret in of_kind(objs, "Secret"):
        assert not secret.get("data") and not secret.get("stringData"), secret["metadata"]
    assert leaks(chart(each_stack).inputs, "chart") == []
    sa = of_kind(objs, "ServiceAccount")[0]
    assert sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam")


def test_chart_version_drift_fails_loudly(tmp_path: Path, monkeypatch) -> None:
    folder = tmp_path / charts.LABEL_STUDIO.folder
    folder.mkdir()
    (folder / "Chart.yaml").write_text("name: label-studio\nversion: 2.0.6\n")
    monkeypatch.setenv(charts.CHARTS_DIR_ENV, str(tmp_path))
    with pytest.raises(charts.ChartError, match=r"2\.0\.6.*pins label-studio 2\.0\.5"):
        charts.upstream_chart_dir(charts.LABEL_STUDIO)
    (folder / "Chart.yaml").unlink()
    with pytest.raises(charts.ChartError, match=r"no .*Chart\.yaml"):
        charts.upstream_chart_dir(charts.LABEL_STUDIO)


def test_every_pinned_chart_is_the_shared_copy() -> None:
    for pin in charts.PINS.values():
        meta = yaml.safe_load((charts.upstream_chart_dir(pin) / "Chart.yaml").read_text())
        assert (meta["name"], str(meta["version"])) == (pin.chart, pin.version)


def _checkov(objs: list[dict[str, Any]], tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / "manifests.yaml"
    path.write_text(yaml.safe_dump_all(objs))
    proc = subprocess.run(
        [str(CHECKOV), "--framework", "kubernetes", "-f", str(path), "--skip-download",
         "--compact", "--quiet", "-o", "json", "--skip-check", ",".join(CHECKOV_WAIVERS)],
        capture_output=True, text=True, timeout=600, check=False)
    assert proc.stdout.strip(), proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    return report[0] if isinstance(report, list) else report


@pytest.mark.skipif(not CHECKOV.exists(), reason="checkov venv missing: run make setup")
@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_checkov_finds_no_failed_check(stack_plan, stack: str, tmp_path: Path) -> None:
    """Label Studio's objects plus the NetworkPolicies and Ingress the program declares
    around them (checkov's NetworkPolicy check needs to see them)."""
    plan = stack_plan(stack)
    around = [{"apiVersion": r.inputs.get("apiVersion"), "kind": r.inputs.get("kind"),
               "metadata": r.inputs["metadata"], "spec": r.inputs["spec"]}
              for r in plan.resources
              if r.type in ("kubernetes:networking.k8s.io/v1:NetworkPolicy",
                            "kubernetes:networking.k8s.io/v1:Ingress")]
    report = _checkov(rendered(plan) + around, tmp_path)
    failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    assert failed == []
    assert report["summary"]["passed"] > 50


@pytest.mark.skipif(not CHECKOV.exists(), reason="checkov venv missing: run make setup")
def test_checkov_waivers_are_needed(stack_plan, tmp_path: Path) -> None:
    """Each waiver is still needed: without the skip list, exactly those checks fail."""
    objs = rendered(stack_plan("dev"))
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump_all(objs))
    proc = subprocess.run(
        [str(CHECKOV), "--framework", "kubernetes", "-f", str(path), "--skip-download",
         "--compact", "--quiet", "-o", "json", "--check", ",".join(CHECKOV_WAIVERS)],
        capture_output=True, text=True, timeout=600, check=False)
    report = json.loads(proc.stdout)
    report = report[0] if isinstance(report, list) else report
    assert {c["check_id"] for c in report["results"]["failed_checks"]} == set(CHECKOV_WAIVERS)
