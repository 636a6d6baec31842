"""checkov's Terraform AWS checks on the prod stack: the mocks plan converted to a Terraform
plan JSON fails no check beyond the documented waivers, and the conversion is not vacuous
(checks that need the type, attribute and reference mapping pass on the stack and fail on
broken copies of its resources)."""

from __future__ import annotations

import copy
import json
from fnmatch import fnmatchcase
from pathlib import Path

import pytest

from infra import offline
from policies import checkov_plan
from policies.checkov_plan import CHECKOV, TF_TYPES, to_terraform_plan, unwaived


def _check_mapped(plan: offline.Plan) -> None:
    doc = to_terraform_plan(plan)
    resources = doc["planned_values"]["root_module"]["resources"]
    assert len(resources) == sum(r.custom and r.type.startswith("aws:") for r in plan.resources)
    assert {r["type"] for r in resources} <= set(TF_TYPES.values())


def test_every_aws_type_is_mapped(each_stack: offline.Plan) -> None:
    _check_mapped(each_stack)


@pytest.mark.parametrize("overrides", [{"adminAccess": "ssm"}, {"egressMode": "nat"},
                                       {"ingressMode": "public"}])
def test_relaxations_and_options_are_mapped(overrides) -> None:
    _check_mapped(offline.run("dev", overrides))


def test_unmapped_types_fail_loudly() -> None:
    with pytest.raises(checkov_plan.UnmappedType, match="aws:foo/bar:Bar: no Terraform type"):
        checkov_plan.tf_type("aws:foo/bar:Bar")


def test_attributes_blocks_and_references(stack_plan) -> None:
    doc = to_terraform_plan(stack_plan("prod"))
    by_addr = {r["address"]: r for r in doc["planned_values"]["root_module"]["resources"]}
    trail = by_addr["aws_cloudtrail.audit-trail"]["values"]
    assert trail["is_multi_region_trail"] is True and trail["sns_topic_name"]
    selectors = trail["advanced_event_selector"]
    assert selectors[1]["field_selector"][2]["starts_with"]
    params = by_addr["aws_db_parameter_group.database-params"]["values"]["parameter"]
    assert {"name": "rds.force_ssl", "value": "1", "apply_method": "pending-reboot"} in params
    bucket = by_addr["aws_s3_bucket.audit"]["values"]
    assert bucket["tags"]["Environment"] == "prod"  # tag keys are data: not snake_cased
    conf = {r["address"]: r for r in doc["configuration"]["root_module"]["resources"]}
    pab = conf["aws_s3_bucket_public_access_block.audit-public-access-block"]["expressions"]
    assert pab["bucket"]["references"] == ["aws_s3_bucket.audit.id", "aws_s3_bucket.audit"]


def _broken_copies(doc: dict) -> dict:
    """Add copies of three resources, each with one setting a checkov check looks at broken."""
    planned = doc["planned_values"]["root_module"]["resources"]
    by_addr = {r["address"]: r for r in planned}
    extra = []
    for addr, change in (("aws_db_instance.database-postgres", {"storage_encrypted": False}),
                         ("aws_cloudtrail.audit-trail", {"sns_topic_name": None})):
        bad = copy.deepcopy(by_addr[addr])
        bad["name"] = "broken"
        bad["address"] = f"{bad['type']}.broken"
        bad["values"].update(change)
        extra.append(bad)
    bucket = copy.deepcopy(by_addr["aws_s3_bucket.models"])  # no public access block
    bucket.update(name="broken", address="aws_s3_bucket.broken")
    bucket["values"]["bucket"] = "broken-bucket"
    extra.append(bucket)
    planned.extend(extra)
    return doc


@pytest.mark.skipif(not CHECKOV.exists(), reason="no .venvs/checkov (make setup builds it)")
def test_prod_fails_no_check_beyond_the_waivers(tmp_path: Path) -> None:
    doc = _broken_copies(to_terraform_plan(offline.run("prod", {"adminAccess": "ssm"})))
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(doc))
    report = checkov_plan.run_checkov(path)
    failed = checkov_plan.failed_checks(report)
    # the stack's own resources: nothing beyond the waivers
    assert [f for f in unwaived(failed) if not f[1].endswith(".broken")] == []
    # the broken copies fail the checks their broken setting belongs to
    assert {("CKV_AWS_16", "aws_db_instance.broken"), ("CKV_AWS_252", "aws_cloudtrail.broken"),
            ("CKV2_AWS_6", "aws_s3_bucket.broken")} <= {(f[0], f[1]) for f in failed}
    # ...and the same checks pass on the originals (attribute and reference mapping works)
    passed = checkov_plan.passed_checks(report)
    assert {("CKV_AWS_16", "aws_db_instance.database-postgres"),
            ("CKV_AWS_252", "aws_cloudtrail.audit-trail"), ("CKV2_AWS_6", "aws_s3_bucket.models"),
            ("CKV2_AWS_30", "aws_db_instance.database-postgres"),
            ("CKV_AWS_79", "aws_instance.admin-instance"),
            ("CKV_AWS_8", "aws_instance.admin-instance")} <= passed
    # every waiver is still needed (a fixed finding must drop its waiver)
    for check_id, pattern in checkov_plan.WAIVERS:
        assert any(f[0] == check_id and fnmatchcase(f[1], pattern) for f in failed), check_id
