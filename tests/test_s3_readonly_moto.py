"""The read-only promise against a real S3 API.

The Label Studio policy document is taken from the plan (bucket names are the mocks'), and
attached to an IAM user in a ``moto_server`` we start on loopback. Then IAM enforcement is
switched on (moto's documented ``/moto-api/reset-auth`` with a count of 0: every later
request must be signed by a known key and allowed by its policies) and we call S3 as that
user.

moto evaluates actions and resources but ignores ``StringLike`` conditions, so the
``s3:prefix`` limit on ListBucket is checked on the document itself in test_identity.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from infra.offline import Plan
from tests.servers import run_s3_server

pytestmark = pytest.mark.servers

REGION = "us-east-1"
ADMIN_POLICY = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "*", "Resource": "*"}]})


def _client(service: str, url: str, key: str = "setup", secret: str = "setup"):
    return boto3.client(service, endpoint_url=url, region_name=REGION,
                        aws_access_key_id=key, aws_secret_access_key=secret,
                        config=Config(retries={"max_attempts": 1}))


def _user(iam, name: str, policy: str) -> tuple[str, str]:
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName=f"{name}-policy", PolicyDocument=policy)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


def _denied(call, *args, **kwargs) -> str:
    with pytest.raises(ClientError) as exc:
        call(*args, **kwargs)
    return exc.value.response["Error"]["Code"]


@pytest.fixture(scope="module")
def world(stack_plan) -> Iterator[dict]:
    """moto with the plan's buckets, source objects, and a user holding the LS policy."""
    plan: Plan = stack_plan("dev")
    names = plan.outputs["bucketNames"]
    policy = plan.named("identity-label-studio-policy").inputs["policy"]
    with run_s3_server() as server:
        url = server.endpoint_url
        s3, iam = _client("s3", url), _client("iam", url)
        for bucket in names.values():
            s3.create_bucket(Bucket=bucket)
        src = names["source-segmentation"]
        for key in ("images/0001.png", "tasks/batch-1.json", "outside/secret.png"):
            s3.put_object(Bucket=src, Key=key, Body=b"pixels " + key.encode())
        s3.put_object(Bucket=names["models"], Key="sam2/tiny.pt", Body=b"weights")
        ls_key = _user(iam, "label-studio", policy)
        sam2_key = _user(iam, "sam2", plan.named("identity-sam2-policy").inputs["policy"])
        admin_key = _user(iam, "admin", ADMIN_POLICY)
        r = httpx.post(f"{url}/moto-api/reset-auth", content=b"0", timeout=10)
        r.raise_for_status()
        yield {"url": url, "names": names, "policy": json.loads(policy),
               "ls": _client("s3", url, *ls_key), "admin": _client("s3", url, *admin_key),
               "sam2": _client("s3", url, *sam2_key)}


def test_enforcement_is_on(world) -> None:
    stranger = _client("s3", world["url"], "AKIAUNKNOWN000000000", "nope")
    code = _denied(stranger.list_objects_v2, Bucket=world["names"]["source-segmentation"])
    assert code in ("InvalidAccessKeyId", "AccessDenied")


def test_policy_under_test_is_the_generated_one(world) -> None:
    sids = [s["Sid"] for s in world["policy"]["Statement"]]
    assert "ReadSourceObjects" in sids and "WriteAnnotations" in sids


def test_get_and_list_source_objects(world) -> None:
    ls, names = world["ls"], world["names"]
    for project in ("segmentation", "dermatology"):
        bucket = names[f"source-{project}"]
        listed = ls.list_objects_v2(Bucket=bucket, Prefix="images/")
        assert listed["ResponseMetadata"]["HTTPStatusCode"] == 200
    src = names["source-segmentation"]
    keys = [o["Key"] for o in ls.list_objects_v2(Bucket=src, Prefix="images/")["Contents"]]
    assert keys == ["images/0001.png"]
    body = ls.get_object(Bucket=src, Key="images/0001.png")["Body"].read()
    assert body == b"pixels images/0001.png"
    assert ls.get_object(Bucket=src, Key="tasks/batch-1.json")["Body"].read().startswith(
        b"pixels")


def test_source_objects_outside_prefixes_are_not_readable(world) -> None:
    src = world["names"]["source-segmentation"]
    assert _denied(world["ls"].get_object, Bucket=src, Key="outside/secret.png") == (
        "AccessDenied")


def test_source_put_and_delete_denied(world) -> None:
    ls, admin = world["ls"], world["admin"]
    src = world["names"]["source-segmentation"]
    assert _denied(ls.put_object, Bucket=src, Key="images/0001.png", Body=b"x") == (
        "AccessDenied")
    assert _denied(ls.put_object, Bucket=src, Key="images/new.png", Body=b"x") == (
        "AccessDenied")
    assert _denied(ls.delete_object, Bucket=src, Key="images/0001.png") == "AccessDenied"
    # batch delete answers 200 with a per-key error, like S3
    batch = ls.delete_objects(Bucket=src, Delete={"Objects": [{"Key": "images/0001.png"}]})
    assert batch.get("Deleted", []) == [], batch
    assert [e["Code"] for e in batch["Errors"]] == ["AccessDenied"]
    # nothing changed (checked with an admin identity)
    assert admin.get_object(Bucket=src, Key="images/0001.png")["Body"].read() == (
        b"pixels images/0001.png")
    assert [o["Key"] for o in admin.list_objects_v2(Bucket=src)["Contents"]] == [
        "images/0001.png", "outside/secret.png", "tasks/batch-1.json"]


def test_put_under_annotations_prefix_only(world) -> None:
    ls, admin, names = world["ls"], world["admin"], world["names"]
    ann = names["annotations"]
    ls.put_object(Bucket=ann, Key="exports/project-1/export.json", Body=b"{}")
    assert admin.get_object(Bucket=ann, Key="exports/project-1/export.json")["Body"].read() == (
        b"{}")
    assert _denied(ls.put_object, Bucket=ann, Key="elsewhere/export.json", Body=b"{}") == (
        "AccessDenied")
    assert _denied(ls.put_object, Bucket=ann, Key="export.json", Body=b"{}") == "AccessDenied"
    for other in ("models", "audit", "access-logs", "source-dermatology"):
        assert _denied(ls.put_object, Bucket=names[other], Key="exports/x.json",
                       Body=b"{}") == "AccessDenied", other
    # put, not delete
    assert _denied(ls.delete_object, Bucket=ann, Key="exports/project-1/export.json") == (
        "AccessDenied")


def test_no_access_to_other_buckets(world) -> None:
    ls, names = world["ls"], world["names"]
    assert _denied(ls.get_object, Bucket=names["models"], Key="sam2/tiny.pt") == "AccessDenied"
    assert _denied(ls.list_objects_v2, Bucket=names["audit"]) == "AccessDenied"


def test_sam2_reads_models_and_nothing_else(world) -> None:
    sam2, names = world["sam2"], world["names"]
    assert sam2.get_object(Bucket=names["models"], Key="sam2/tiny.pt")["Body"].read() == (
        b"weights")
    assert [o["Key"] for o in sam2.list_objects_v2(Bucket=names["models"])["Contents"]] == [
        "sam2/tiny.pt"]
    assert _denied(sam2.put_object, Bucket=names["models"], Key="sam2/tiny.pt",
                   Body=b"x") == "AccessDenied"
    assert _denied(sam2.delete_object, Bucket=names["models"], Key="sam2/tiny.pt") == (
        "AccessDenied")
    assert _denied(sam2.get_object, Bucket=names["source-segmentation"],
                   Key="images/0001.png") == "AccessDenied"
    assert _denied(sam2.put_object, Bucket=names["annotations"], Key="exports/x.json",
                   Body=b"{}") == "AccessDenied"
