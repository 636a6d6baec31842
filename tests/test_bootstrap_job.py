"""The bootstrap Job of ``pulumi up``: content-hash naming, the entrypoint it shares with the
end-to-end tests, what its files resolve to, and the same manifest checks as every workload."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from bootstrap.spec import load_spec
from infra.k8s import bootstrap_job as bj
from infra.k8s.label_studio_values import CONTAINER_PORT
from infra.k8s.netpol import LABEL_STUDIO_POD_LABELS
from policies.manifests import evaluate_manifests
from tests.k8s_checks import CHECKOV, failed_and_skipped, run_checkov
from tests.plans import stack_plan  # noqa: F401  (fixture)

REPO = Path(__file__).resolve().parent.parent
BUCKETS = {"source-segmentation": "labelstack-dev-source-segmentation-1a2b",
           "source-dermatology": "labelstack-dev-source-dermatology-3c4d",
           "annotations": "labelstack-dev-annotations-5e6f"}


def site(**changes: Any) -> bj.BootstrapSite:
    base = dict(namespace="labelstack",
                image="123456789012.dkr.ecr.us-east-1.amazonaws.com/labelstack-dev/bootstrap@"
                      "sha256:" + "2" * 64,
                label_studio_url="http://label-studio-ls-app.labelstack.svc.cluster.local:80",
                sam2_url="http://sam2-backend.labelstack.svc.cluster.local:9090",
                sam2_auth_secret="sam2-backend-auth", stack_outputs={"bucketNames": BUCKETS})
    return bj.BootstrapSite(**{**base, **changes})


def job_name(s: bj.BootstrapSite, spec_dir: Path = bj.SPEC_DIR) -> str:
    return bj.job_manifest(s, bj.spec_files(spec_dir))[1]["metadata"]["name"]


@pytest.fixture
def spec_copy(tmp_path: Path) -> Path:
    dst = tmp_path / "bootstrap"
    dst.mkdir()
    shutil.copy(bj.SPEC_DIR / bj.SPEC_FILE, dst / bj.SPEC_FILE)
    for folder in bj.SPEC_ASSET_DIRS:
        shutil.copytree(bj.SPEC_DIR / folder, dst / folder)
    return dst


# ---- content hash ---------------------------------------------------------------------------
def test_unchanged_spec_and_inputs_keep_the_job(spec_copy: Path) -> None:
    name = job_name(site())
    assert re.fullmatch(r"labelstack-bootstrap-[0-9a-f]{10}", name)
    assert job_name(site()) == name
    assert job_name(site(), spec_copy) == name  # same bytes elsewhere: same Job


def test_changed_spec_gives_a_new_job(spec_copy: Path) -> None:
    before = job_name(site(), spec_copy)
    spec = spec_copy / bj.SPEC_FILE
    spec.write_text(spec.read_text().replace("maximum_annotations: 2", "maximum_annotations: 3"))
    assert job_name(site(), spec_copy) != before


def test_changed_referenced_file_gives_a_new_job(spec_copy: Path) -> None:
    before = job_name(site(), spec_copy)
    with (spec_copy / "instructions" / "sam2.html").open("a") as f:
        f.write("<p>New rule: zoom before clicking.</p>\n")
    assert job_name(site(), spec_copy) != before


@pytest.mark.parametrize("change", [
    {"stack_outputs": {"bucketNames": {**BUCKETS, "annotations": "another-bucket"}}},
    {"image": site().image[:-1] + "3"},
    {"sam2_url": "http://sam2-backend.other.svc.cluster.local:9090"},
])
def test_changed_inputs_give_a_new_job(change: dict[str, Any]) -> None:
    assert job_name(site(**change)) != job_name(site())


def test_config_map_is_immutable_and_named_like_the_job() -> None:
    cm, job = bj.job_manifest(site(), bj.spec_files())
    assert cm["immutable"] is True
    assert cm["metadata"]["name"] == job["metadata"]["name"]
    volume = job["spec"]["template"]["spec"]["volumes"][0]
    assert volume["configMap"]["name"] == cm["metadata"]["name"]
    assert job["metadata"]["annotations"]["labelstack.io/content-hash"] == \
        job["metadata"]["name"].rsplit("-", 1)[1]


# ---- the same entrypoint as the end-to-end tests -----------------------------------------------
def test_job_runs_the_image_entrypoint_the_e2e_tests_run() -> None:
    ctr = bj.job_manifest(site(), bj.spec_files())[1]["spec"]["template"]["spec"][
        "containers"][0]
    dockerfile = (REPO / "bootstrap" / "Dockerfile").read_text()
    entry = json.loads(re.search(r"^ENTRYPOINT (\[.*\])$", dockerfile, re.M).group(1))
    assert ctr["command"] == entry == bj.ENTRYPOINT
    e2e = (REPO / "tests" / "test_bootstrap_e2e.py").read_text()
    assert '"-m", "bootstrap.entrypoint"' in e2e


def materialise(tmp: Path, cm: dict[str, Any], job: dict[str, Any]) -> dict[str, str]:
    """Write the ConfigMap's items where the Job mounts them (under ``tmp``) and return the
    container's environment with paths and Secret values resolved as the kubelet would."""
    pod = job["spec"]["template"]["spec"]
    mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    spec_vol = next(v for v in pod["volumes"] if v["name"] == "spec")
    for item in spec_vol["configMap"]["items"]:
        dst = tmp / mounts["spec"].lstrip("/") / item["path"]
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_text(cm["data"][item["key"]])
    token = tmp / mounts["token"].lstrip("/") / bj.ADMIN_KEYS["token"]
    token.parent.mkdir(parents=True, exist_ok=True)
    token.write_text("t" * 40)
    secret = {"username": "label-studio", "password": "pw-from-secret"}
    env = {}
    for e in pod["containers"][0]["env"]:
        if "value" in e:
            value = e["value"]
            env[e["name"]] = str(tmp / value.lstrip("/")) if value.startswith("/etc/") or \
                value.startswith("/var/") else value
        else:
            env[e["name"]] = secret[e["valueFrom"]["secretKeyRef"]["key"]]
    return env


def test_mounted_files_resolve_the_shipped_spec(tmp_path: Path) -> None:
    cm, job = bj.job_manifest(site(), bj.spec_files())
    env = materialise(tmp_path, cm, job)
    spec = load_spec(Path(env["BOOTSTRAP_SPEC"]), env=env,
                     stack_outputs_file=Path(env["LABELSTACK_STACK_OUTPUTS"]))
    projects = {p.key: p for p in spec.projects}
    sam2 = projects["sam2-segmentation"]
    assert sam2.ml_backend.url == site().sam2_url
    assert sam2.import_storage[0].bucket == BUCKETS["source-segmentation"]
    assert projects["derm-lesion-tracking"].export_storage[0].bucket == BUCKETS["annotations"]
    if sam2.ml_backend.auth == "basic":  # the names the spec reads are the ones the Job sets
        assert env[sam2.ml_backend.basic_auth_user_env] == "label-studio"
        assert env[sam2.ml_backend.basic_auth_password_env] == "pw-from-secret"


def test_entrypoint_fails_with_its_own_message_when_label_studio_never_answers(
        tmp_path: Path) -> None:
    """What a failed Job shows `pulumi up` (FallbackToLogsOnError: the last log lines)."""
    cm, job = bj.job_manifest(site(label_studio_url="http://127.0.0.1:9"), bj.spec_files())
    ctr = job["spec"]["template"]["spec"]["containers"][0]
    assert ctr["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert job["spec"]["backoffLimit"] == 0
    env = {**materialise(tmp_path, cm, job), "BOOTSTRAP_WAIT_SECONDS": "1",
           "PATH": os.environ["PATH"], "COLUMNS": "300"}
    run = subprocess.run([sys.executable, *ctr["command"][1:]], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 3, run.stderr
    assert "http://127.0.0.1:9" in run.stderr and "error" in run.stderr
    assert "t" * 40 not in run.stdout + run.stderr  # the token is never printed


# ---- manifest checks --------------------------------------------------------------------------
def objects() -> list[dict[str, Any]]:
    cm, job = bj.job_manifest(site(), bj.spec_files())
    return [cm, job, *bj.network_policies("labelstack", LABEL_STUDIO_POD_LABELS,
                                          CONTAINER_PORT)]


def test_job_is_hardened() -> None:
    pod = objects()[1]["spec"]["template"]["spec"]
    sc = pod["containers"][0]["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["readOnlyRootFilesystem"] is True
    assert pod["automountServiceAccountToken"] is False
    assert re.search(r"@sha256:[0-9a-f]{64}$", pod["containers"][0]["image"])
    token = next(v for v in pod["volumes"] if v["name"] == "token")["secret"]
    assert token["secretName"] == bj.ADMIN_SECRET


def test_objects_are_valid_kubernetes() -> None:
    objs = objects()
    assert {o["kind"] for o in objs} >= {"Job", "ConfigMap"}
    for obj in objs:
        kubernetes_validate.validate(obj, "1.34.0", strict=True)


def test_pack_workload_rules_pass() -> None:
    assert evaluate_manifests(objects()) == []


@pytest.mark.skipif(not CHECKOV.exists(), reason="checkov venv missing (make setup)")
def test_checkov_finds_no_failed_check(tmp_path: Path) -> None:
    failed, skipped = failed_and_skipped(run_checkov(objects(), tmp_path))
    assert failed == [] and skipped == {"CKV_K8S_35"}


# ---- in the program (Pulumi mocks) ------------------------------------------------------------
DIGESTS = {"sam2ImageDigest": "sha256:" + "1" * 64, "bootstrapImageDigest": "sha256:" + "2" * 64,
           "sam2WeightsSha256": "a" * 64}
SECRET_SIG = "4dabf18193072939515e22adb298388d"  # Pulumi's marker of a secret value


@pytest.fixture(scope="module")
def deployed():
    from infra import offline

    return offline.run("dev", DIGESTS)


def test_plan_runs_the_job_after_label_studio_and_the_backend(deployed) -> None:
    job = next(r for r in deployed.resources if r.type == "kubernetes:batch/v1:Job")
    assert deployed.outputs["bootstrapJobName"] == job.inputs["metadata"]["name"]
    assert {"label-studio", "sam2-backend", "admin-secret"} <= job.depends_on
    ctr = job.inputs["spec"]["template"]["spec"]["containers"][0]
    assert ctr["image"].endswith("/bootstrap@" + DIGESTS["bootstrapImageDigest"])
    assert ctr["command"] == bj.ENTRYPOINT
    cm = next(r for r in deployed.resources if r.type == "kubernetes:core/v1:ConfigMap"
              and r.name == "bootstrap-spec")
    outputs = json.loads(cm.inputs["data"][bj.STACK_OUTPUTS_FILE])
    assert set(outputs["bucketNames"]) >= {"source-segmentation", "source-dermatology",
                                           "annotations"}


def test_generated_credentials_stay_secret(deployed) -> None:
    secrets = {r.inputs["metadata"]["name"]: r for r in deployed.resources
               if r.type == "kubernetes:core/v1:Secret"}
    for name in (bj.ADMIN_SECRET, "sam2-backend-auth"):
        data = secrets[name].inputs["stringData"]
        assert data[SECRET_SIG] and set(data) == {SECRET_SIG, "value"}, name
    generated = [r for r in deployed.resources
                 if r.type == "random:index/randomPassword:RandomPassword"]
    assert len(generated) == 3  # admin password, API token, SAM2 basic-auth password
    assert "password" not in json.dumps(
        {k: v for k, v in deployed.outputs.items() if k != "adminLogin"}).lower()
    assert f"get secret {bj.ADMIN_SECRET}" in deployed.outputs["adminLogin"]


def test_stack_without_image_digests_says_what_to_do_next(stack_plan) -> None:  # noqa: F811
    plan = stack_plan("dev")
    assert not plan.of_type("kubernetes:batch/v1:Job")
    assert "make images" in plan.outputs["nextStep"]
    assert "bootstrapJobName" not in plan.outputs


def test_program_keeps_the_job_for_an_unchanged_spec_and_replaces_it_for_a_changed_one(
        deployed, spec_copy: Path, monkeypatch) -> None:
    from infra import offline

    again = offline.run("dev", DIGESTS)
    assert again.outputs["bootstrapJobName"] == deployed.outputs["bootstrapJobName"]
    spec = spec_copy / bj.SPEC_FILE
    spec.write_text(spec.read_text().replace("title: SAM2 precision segmentation",
                                             "title: SAM2 precise segmentation"))
    monkeypatch.setattr(bj, "SPEC_DIR", spec_copy)
    changed = offline.run("dev", DIGESTS)
    assert changed.outputs["bootstrapJobName"] != deployed.outputs["bootstrapJobName"]
    job = next(r for r in changed.resources if r.type == "kubernetes:batch/v1:Job")
    assert job.inputs["metadata"]["name"] == changed.outputs["bootstrapJobName"]


def test_deployed_stack_passes_the_whole_pack(deployed) -> None:
    """With the backend and the Job in the plan, no rule of the pack is violated."""
    from policies.offline import evaluate

    found = evaluate(deployed)
    assert [v for v in found if v.mandatory] == []
    assert {v.rule for v in found if v.resource.startswith(("sam2", "bootstrap"))} == set()
