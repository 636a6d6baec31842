"""Every rule of the pack has a passing and a violating fixture (tests/policy_fixtures.py);
the violating one must produce the rule's message. Rules are taken from the pack, so a rule
without fixtures fails here."""

from __future__ import annotations

import pytest
from pulumi_policy import (
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    StackValidationArgs,
)
from pulumi_policy.proxy import unknown_checking_proxy

from policies.model import ADVISORY, MANDATORY, Rule
from policies.rules import ALL
from policies.rules.kubernetes import WORKLOADS
from tests.policy_fixtures import CASES, CONTAINER, R, deployment, patch, sc

RULES = {r.name: r for r in ALL}
RELAXATIONS = {"s3-cors-presign-relaxation", "sg-internet-web-ingress", "sg-internet-egress",
               "vpc-nat-egress-relaxation", "vpc-internet-gateway-relaxation",
               "eks-endpoint-public-relaxation", "elb-internet-facing-relaxation",
               "elb-ingress-internet-facing-relaxation", "k8s-sam2-auth-disabled-relaxation"}


def _opts() -> PolicyResourceOptions:
    return PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])


def _urn(r: R) -> str:
    return f"urn:pulumi:test::labelstack::{r.type}::{r.name}"


def to_policy_resources(resources: list[R]) -> list[PolicyResource]:
    """Fixture resources as the analyzer hands them to stack policies."""
    out = {r.name: PolicyResource(r.type, unknown_checking_proxy(r.props), _urn(r), r.name,
                                  _opts(), None, None, [], {})
           for r in resources}
    for r in resources:
        pr = out[r.name]
        pr.property_dependencies = {k: [out[n] for n in names if n in out]
                                    for k, names in r.deps.items()}
        pr.dependencies = [d for deps in pr.property_dependencies.values() for d in deps]
    return list(out.values())


def violations(rule: Rule, resources: list[R]) -> list[str]:
    """Messages the rule's pulumi_policy object reports for ``resources``."""
    found: list[str] = []
    policy = rule.policy()
    if rule.is_stack:
        policy.validate(StackValidationArgs(to_policy_resources(resources), {}),
                        lambda msg, urn=None: found.append(msg))
        return found
    for r in resources:
        # the analyzer hands props over wrapped in its unknown-checking proxies
        args = ResourceValidationArgs(r.type, unknown_checking_proxy(r.props), _urn(r), r.name,
                                      _opts(), None, {})
        policy.validate(args, lambda msg, urn=None: found.append(msg))
    return found


@pytest.mark.parametrize("name", sorted(RULES))
def test_rule_passes_its_compliant_fixture(name: str) -> None:
    assert name in CASES, f"rule {name} has no fixtures in tests/policy_fixtures.py"
    assert violations(RULES[name], CASES[name].good) == []


@pytest.mark.parametrize("name", sorted(RULES))
def test_rule_reports_its_violating_fixture(name: str) -> None:
    assert name in CASES, f"rule {name} has no fixtures in tests/policy_fixtures.py"
    case = CASES[name]
    found = violations(RULES[name], case.bad)
    assert found, f"{name}: violating fixture produced no violation"
    assert any(case.message in m for m in found), f"{name}: {found}"


def test_every_fixture_names_a_rule() -> None:
    assert sorted(set(CASES) - set(RULES)) == []


def test_relaxations_are_advisory_everything_else_mandatory() -> None:
    advisory = {r.name for r in ALL if r.enforcement == ADVISORY}
    assert advisory >= RELAXATIONS
    # the remaining advisory rules flag profile-allowed or hardening-only settings
    assert advisory - RELAXATIONS == {"s3-bucket-force-destroy", "k8s-policy-exemptions"}
    assert all(r.enforcement == MANDATORY for r in ALL if r.name not in advisory)


@pytest.mark.parametrize("kind", WORKLOADS)
def test_kubernetes_rules_read_every_workload_shape(kind: str) -> None:
    bad_container = sc(privileged=True)
    pod_spec = {"containers": [bad_container], "automountServiceAccountToken": False}
    props = {
        "kubernetes:core/v1:Pod": {"spec": pod_spec},
        "kubernetes:batch/v1:CronJob": {"spec": {"schedule": "@daily", "jobTemplate": {
            "spec": {"template": {"spec": pod_spec}}}}},
    }.get(kind, {"spec": {"template": {"spec": pod_spec}}})
    found = violations(RULES["k8s-no-privileged"], [R(kind, "w", props)])
    assert found == ["container app: privileged is true"]


@pytest.mark.parametrize(("entry", "flagged"), [
    ({"value": "true"}, True), ({"value": "1"}, True), ({"value": "YES"}, True),
    ({"value": "on"}, True), ({"value": "false"}, False), ({"value": "0"}, False),
    ({"value": ""}, False), ({"valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}}, True),
])
def test_sam2_auth_disabled_values(entry: dict, flagged: bool) -> None:
    """Every value the backend reads as true is flagged, in init containers and Jobs too; a
    value from a ConfigMap or Secret cannot be read here, so it is flagged as well."""
    rule = RULES["k8s-sam2-auth-disabled-relaxation"]
    init = patch(CONTAINER, name="init", env=[{"name": "SAM2_AUTH_DISABLED", **entry}])
    job = {"spec": {"template": {"spec": {"containers": [CONTAINER], "initContainers": [init]}}}}
    found = violations(rule, [R("kubernetes:batch/v1:Job", "j", job)])
    assert bool(found) is flagged, found
    assert all(m.startswith("container init: SAM2_AUTH_DISABLED") for m in found)


def test_batch_workloads_need_no_probes() -> None:
    job = {"spec": {"template": {"spec": {"containers": [
        patch(CONTAINER, livenessProbe=None, readinessProbe=None)]}}}}
    for name in ("k8s-liveness-probe", "k8s-readiness-probe"):
        assert violations(RULES[name], [R("kubernetes:batch/v1:Job", "j", job)]) == []
        assert violations(RULES[name], [R("kubernetes:apps/v1:Deployment", "d", job)])


def test_pod_level_security_context_counts_for_containers() -> None:
    c = sc(runAsNonRoot=None, seccompProfile=None)
    props = deployment(c, securityContext={"runAsNonRoot": True,
                                           "seccompProfile": {"type": "RuntimeDefault"}})
    for name in ("k8s-run-as-non-root", "k8s-seccomp-runtime-default"):
        assert violations(RULES[name], [R("kubernetes:apps/v1:Deployment", "d", props)]) == []


def test_init_containers_are_checked() -> None:
    props = deployment(initContainers=[patch(sc(allowPrivilegeEscalation=True), name="init")])
    assert violations(RULES["k8s-no-privilege-escalation"],
                      [R("kubernetes:apps/v1:Deployment", "d", props)]) == [
        "container init: allowPrivilegeEscalation is not false"]


def test_image_digest_and_registry_port_are_understood() -> None:
    rule = RULES["k8s-image-pinned"]
    digest = "registry.local:5000/sam2@sha256:" + "a" * 64
    for image, ok in ((digest, True), ("registry.local:5000/sam2", False),
                      ("registry.local:5000/sam2:0.4.1", True)):
        props = deployment(patch(CONTAINER, image=image))
        assert (violations(rule, [R("kubernetes:apps/v1:Deployment", "d", props)]) == []) is ok


def test_sse_join_ignores_other_buckets_settings() -> None:
    """A KMS config on one bucket must not satisfy another bucket (joined by bucket input)."""
    from tests.policy_fixtures import BUCKET, s3_stack
    stack = [*s3_stack(), R(BUCKET, "other", {})]
    found = violations(RULES["s3-bucket-sse-kms"], stack)
    assert found == ["bucket other has no BucketServerSideEncryptionConfiguration"]


def test_sse_join_by_bucket_name_without_dependencies() -> None:
    """During a real update the analyzer's props carry names; the join falls back to them."""
    from tests.policy_fixtures import BUCKET, SSE_KMS
    sse_type = ("aws:s3/bucketServerSideEncryptionConfiguration:"
                "BucketServerSideEncryptionConfiguration")
    stack = [R(BUCKET, "data", {"bucket": "labelstack-prod-data"}),
             R(sse_type, "data-sse", {"bucket": "labelstack-prod-data", "rules": SSE_KMS})]
    assert violations(RULES["s3-bucket-sse-kms"], stack) == []
    stack[1] = R(sse_type, "data-sse", {"bucket": "someone-else", "rules": SSE_KMS})
    assert violations(RULES["s3-bucket-sse-kms"], stack)


def test_log_target_bucket_may_use_sse_s3_but_data_bucket_may_not() -> None:
    from tests.policy_fixtures import s3_stack
    stack = s3_stack()
    stack.insert(0, R("aws:s3/bucket:Bucket", "logs", {}))
    assert violations(RULES["s3-bucket-sse-kms"], stack) == []


def test_log_bucket_itself_needs_no_access_logging() -> None:
    from tests.policy_fixtures import s3_stack
    stack = s3_stack()
    stack.insert(0, R("aws:s3/bucket:Bucket", "logs", {}))
    assert violations(RULES["s3-bucket-access-logging"], stack) == []
    stack = [r for r in stack if not r.type.endswith("BucketLogging")]
    assert sorted(violations(RULES["s3-bucket-access-logging"], stack)) == [
        "bucket data has neither server access logging nor CloudTrail S3 data events",
        "bucket logs has neither server access logging nor CloudTrail S3 data events"]


def test_cloudtrail_s3_data_events_satisfy_access_logging() -> None:
    from tests.policy_fixtures import TRAIL, s3_stack
    stack = [r for r in s3_stack() if not r.type.endswith("BucketLogging")]
    selector = {"fieldSelectors": [{"field": "eventCategory", "equals": ["Data"]},
                                   {"field": "resources.type", "equals": ["AWS::S3::Object"]}]}
    stack.append(R("aws:cloudtrail/trail:Trail", "trail",
                   {**TRAIL, "advancedEventSelectors": [selector]}))
    assert violations(RULES["s3-bucket-access-logging"], stack) == []


def test_rendered_manifests_are_checked(tmp_path) -> None:
    """Helm output goes through the same rules (``python -m policies.manifests``)."""
    import subprocess
    import sys

    import yaml

    from policies.manifests import evaluate_manifests
    good = {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "ls", "namespace": "labelstack"}, **deployment()}
    bad_pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "debug"},
               "spec": {"hostNetwork": True, "containers": [CONTAINER]}}
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ls"}}
    assert evaluate_manifests([good, service, None]) == []
    found = evaluate_manifests([good, bad_pod])
    assert {(v.rule, v.resource_type, v.resource) for v in found} == {
        ("k8s-no-host-namespaces", "kubernetes:core/v1:Pod", "debug"),
        ("k8s-no-default-sa-token", "kubernetes:core/v1:Pod", "debug")}
    path = tmp_path / "rendered.yaml"
    path.write_text(yaml.safe_dump_all([good, bad_pod]))
    out = subprocess.run([sys.executable, "-m", "policies.manifests", str(path)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and "k8s-no-host-namespaces" in out.stdout


def test_pgaudit_rule_names_each_gap() -> None:
    """Each violating parameter group of the rds-pgaudit case fails for its own reason."""
    from tests.policy_fixtures import PG_PARAMS, PGAUDIT
    rule = RULES["rds-pgaudit"]
    no_ddl = [*PGAUDIT[:1], {"name": "pgaudit.log", "value": "role,write"}, *PGAUDIT[2:]]
    assert violations(rule, [R(PG_PARAMS, "p", {"family": "postgres17",
                                                "parameters": no_ddl})]) == [
        "pgaudit.log does not include ddl"]
    phi = [*PGAUDIT[:2], {"name": "pgaudit.log_parameter", "value": "on"}]
    assert violations(rule, [R(PG_PARAMS, "p", {"family": "postgres17", "parameters": phi})]) == [
        "pgaudit.log_parameter writes statement parameters (PHI) into the log"]
    everything = [*PGAUDIT[:1], {"name": "pgaudit.log", "value": "all"}]
    assert violations(rule, [R(PG_PARAMS, "p", {"family": "postgres17",
                                                "parameters": everything})]) == []
