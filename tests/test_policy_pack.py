"""The pack as Pulumi runs it: importable without the analyzer, >= 60 rules with full
metadata, and ``policies/__main__.py`` serving them over the analyzer's gRPC protocol."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import yaml
from google.protobuf import empty_pb2, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc
from pulumi_policy import ResourceValidationPolicy, StackValidationPolicy

ROOT = Path(__file__).resolve().parent.parent
PACK = ROOT / "policies"


def test_importing_the_pack_does_not_start_the_analyzer() -> None:
    code = ("import sys, policies, policies.pack, policies.offline; "
            "assert 'policies.__main__' not in sys.modules; "
            "print(len(policies.pack.policies()))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=True)
    assert int(out.stdout.strip()) >= 60


def test_only_main_builds_the_policy_pack() -> None:
    builders = [p.relative_to(ROOT).as_posix() for p in PACK.rglob("*.py")
                if re.search(r"\bPolicyPack\(", p.read_text())]
    assert builders == ["policies/__main__.py"]
    tree = ast.parse((PACK / "__main__.py").read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)
             and getattr(n.func, "id", "") == "PolicyPack"]
    assert len(calls) == 1


def test_pack_has_at_least_60_rules_with_metadata() -> None:
    from policies.model import SAFEGUARDS
    from policies.rules import ALL
    assert len(ALL) >= 60
    names = [r.name for r in ALL]
    assert len(set(names)) == len(names)
    services = {r.service for r in ALL}
    assert services >= {"s3", "kms", "iam", "network", "ebs", "rds", "eks", "ecr", "elb",
                        "cloudtrail", "logs", "secretsmanager", "kubernetes"}
    for r in ALL:
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)+", r.name), r.name
        assert r.description.endswith("."), r.name
        assert r.safeguard in SAFEGUARDS, r.name
        assert r.mirrors.startswith(("AWS Config ", "checkov ", "custom ", "Pod Security")), r.name
        assert len(r.remediation) > 10, r.name
        policy = r.policy()
        assert isinstance(policy, StackValidationPolicy if r.is_stack
                          else ResourceValidationPolicy)
        assert policy.severity is r.severity and policy.enforcement_level is r.enforcement
        assert policy.framework.reference == r.safeguard
        assert policy.remediation_steps == r.remediation


def test_policy_yaml_points_at_the_project_virtualenv() -> None:
    meta = yaml.safe_load((PACK / "PulumiPolicy.yaml").read_text())
    assert meta["runtime"]["name"] == "python"
    venv = (PACK / meta["runtime"]["options"]["virtualenv"]).resolve()
    assert venv == (ROOT / ".venvs/main").resolve()
    assert meta["version"]


@pytest.fixture(scope="module")
def analyzer() -> Iterator[analyzer_pb2_grpc.AnalyzerStub]:
    """``policies/__main__.py`` run the way the Pulumi CLI runs a pack: it prints its port."""
    proc = subprocess.Popen([sys.executable, "-u", str(PACK / "__main__.py")], cwd=PACK,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().strip()
        assert line.isdigit(), f"no port from the pack: {line!r} {proc.stderr.read()}"
        channel = grpc.insecure_channel(f"127.0.0.1:{line}")
        grpc.channel_ready_future(channel).result(timeout=30)
        yield analyzer_pb2_grpc.AnalyzerStub(channel)
        channel.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_main_serves_every_rule(analyzer: analyzer_pb2_grpc.AnalyzerStub) -> None:
    from policies.rules import ALL
    info = analyzer.GetAnalyzerInfo(empty_pb2.Empty())
    assert info.name == "labelstack-hipaa"
    assert [p.name for p in info.policies] == [r.name for r in ALL]
    by_name = {p.name: p for p in info.policies}
    assert by_name["rds-not-public"].enforcementLevel == analyzer_pb2.MANDATORY
    assert by_name["vpc-nat-egress-relaxation"].enforcementLevel == analyzer_pb2.ADVISORY
    assert by_name["rds-storage-encrypted"].framework.reference == "164.312(a)(2)(iv)"


def _analyze(analyzer: analyzer_pb2_grpc.AnalyzerStub, type_: str, props: dict
             ) -> list[analyzer_pb2.AnalyzeDiagnostic]:
    st = struct_pb2.Struct()
    st.update(props)
    req = analyzer_pb2.AnalyzeRequest(type=type_, properties=st, name="db",
                                      urn=f"urn:pulumi:prod::labelstack::{type_}::db")
    return list(analyzer.Analyze(req).diagnostics)


def test_analyzer_reports_a_public_unencrypted_database(
        analyzer: analyzer_pb2_grpc.AnalyzerStub) -> None:
    from tests.policy_fixtures import RDS, patch
    assert _analyze(analyzer, "aws:rds/instance:Instance", RDS) == []
    found = _analyze(analyzer, "aws:rds/instance:Instance",
                     patch(RDS, storageEncrypted=False, publiclyAccessible=True))
    assert {d.policyName for d in found} == {"rds-storage-encrypted", "rds-not-public"}
    assert all(d.enforcementLevel == analyzer_pb2.MANDATORY for d in found)
    assert any("publiclyAccessible is true" in d.message for d in found)


def test_pack_config_changes_enforcement(analyzer: analyzer_pb2_grpc.AnalyzerStub) -> None:
    """``--policy-pack-config {"rds-not-public": "advisory"}`` reaches the rule."""
    from tests.policy_fixtures import RDS, patch
    cfg = {"rds-not-public": analyzer_pb2.PolicyConfig(enforcementLevel=analyzer_pb2.ADVISORY)}
    analyzer.Configure(analyzer_pb2.ConfigureAnalyzerRequest(policyConfig=cfg))
    try:
        found = _analyze(analyzer, "aws:rds/instance:Instance",
                         patch(RDS, publiclyAccessible=True))
        assert [(d.policyName, d.enforcementLevel) for d in found] == [
            ("rds-not-public", analyzer_pb2.ADVISORY)]
    finally:
        analyzer.Configure(analyzer_pb2.ConfigureAnalyzerRequest(policyConfig={}))


def test_rule_table_in_docs_is_up_to_date() -> None:
    from policies.docs import OUT, render
    assert OUT.read_text() == render(), "docs/policies.md is stale: run python -m policies.docs"
    for name in __import__("policies.rules", fromlist=["ALL"]).by_name():
        assert f"| `{name}` |" in OUT.read_text()


def _stack_request(plan) -> analyzer_pb2.AnalyzeStackRequest:
    """A plan as the engine sends it to AnalyzeStack (props, dependencies per input)."""
    from policies.offline import urn
    urns: dict[str, list[str]] = {}
    for r in plan.resources:
        urns.setdefault(r.name, []).append(urn(plan.stack, r))
    out = []
    for r in plan.resources:
        props = struct_pb2.Struct()
        props.update(r.inputs)
        deps = {k: analyzer_pb2.AnalyzerPropertyDependencies(
            urns=[u for n in sorted(v) for u in urns.get(n, [])])
            for k, v in r.property_deps.items()}
        out.append(analyzer_pb2.AnalyzerResource(
            type=r.type, properties=props, urn=urn(plan.stack, r), name=r.name,
            dependencies=[u for n in sorted(r.depends_on) for u in urns.get(n, [])],
            propertyDependencies=deps))
    return analyzer_pb2.AnalyzeStackRequest(resources=out)


def _analyze_plan(analyzer: analyzer_pb2_grpc.AnalyzerStub, plan) -> set[tuple[str, int]]:
    """(policy, enforcement) of every diagnostic: stack rules plus each resource's rules."""
    found = {(d.policyName, d.enforcementLevel)
             for d in analyzer.AnalyzeStack(_stack_request(plan)).diagnostics}
    for res in _stack_request(plan).resources:
        req = analyzer_pb2.AnalyzeRequest(type=res.type, properties=res.properties,
                                          urn=res.urn, name=res.name)
        found |= {(d.policyName, d.enforcementLevel)
                  for d in analyzer.Analyze(req).diagnostics}
    return found


def test_analyzer_and_offline_check_agree_on_prod(analyzer: analyzer_pb2_grpc.AnalyzerStub,
                                                  stack_plan) -> None:
    import copy

    from policies.offline import evaluate
    plan = stack_plan("prod")
    offline = {(v.rule, analyzer_pb2.MANDATORY if v.mandatory else analyzer_pb2.ADVISORY)
               for v in evaluate(plan)}
    assert _analyze_plan(analyzer, plan) == offline
    public = copy.deepcopy(plan)
    for r in public.resources:
        if r.type.endswith("BucketPublicAccessBlock"):
            r.inputs["restrictPublicBuckets"] = False
    assert ("s3-bucket-public-access-block", analyzer_pb2.MANDATORY) in _analyze_plan(
        analyzer, public)


def test_stack_rules_run_during_preview_with_unknown_values(
        analyzer: analyzer_pb2_grpc.AnalyzerStub) -> None:
    """In a preview the bucket id and key ARN are unknown: the join still holds through
    property dependencies and a computed key counts as set."""
    from pulumi_policy.proxy import UNKNOWN_STRING_VALUE as UNKNOWN

    from tests.policy_fixtures import s3_stack
    stack = s3_stack()
    for r in stack:
        if "bucket" in r.props:
            r.props["bucket"] = UNKNOWN
    stack[1].props["rules"][0]["applyServerSideEncryptionByDefault"]["kmsMasterKeyId"] = UNKNOWN

    def diagnostics(resources) -> list[analyzer_pb2.AnalyzeDiagnostic]:
        req = []
        for r in resources:
            props = struct_pb2.Struct()
            props.update(r.props)
            u = f"urn:pulumi:prod::labelstack::{r.type}::{r.name}"
            deps = {k: analyzer_pb2.AnalyzerPropertyDependencies(
                urns=[f"urn:pulumi:prod::labelstack::aws:s3/bucket:Bucket::{n}" for n in v])
                for k, v in r.deps.items()}
            req.append(analyzer_pb2.AnalyzerResource(type=r.type, properties=props, urn=u,
                                                     name=r.name, propertyDependencies=deps))
        return list(analyzer.AnalyzeStack(
            analyzer_pb2.AnalyzeStackRequest(resources=req)).diagnostics)

    assert diagnostics(stack) == []
    stack[1].props["rules"][0]["applyServerSideEncryptionByDefault"]["sseAlgorithm"] = "AES256"
    found = diagnostics(stack)
    assert [d.policyName for d in found] == ["s3-bucket-sse-kms"]
    assert "encrypts with AES256" in found[0].message
