"""EBS: volumes and node disks are encrypted."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from policies.model import HIGH, MEDIUM, Rule
from policies.rules._util import as_list, get

VOLUME = ("aws:ebs/volume:Volume",)
LAUNCH_TEMPLATE = ("aws:ec2/launchTemplate:LaunchTemplate",)
INSTANCE = ("aws:ec2/instance:Instance",)
BY_DEFAULT = ("aws:ebs/encryptionByDefault:EncryptionByDefault",)
SNAPSHOT_COPY = ("aws:ebs/snapshotCopy:SnapshotCopy",)


def _true(v: object) -> bool:
    return v is True or str(v).lower() == "true"


def check_volume(props: Mapping[str, Any]) -> Iterator[str]:
    if not _true(props.get("encrypted")):
        yield "volume is not encrypted"


def check_launch_template(props: Mapping[str, Any]) -> Iterator[str]:
    for m in as_list(props.get("blockDeviceMappings")):
        if m.get("ebs") is not None and not _true(get(m, "ebs", "encrypted")):
            yield f"block device {m.get('deviceName', '?')} is not encrypted"


def check_instance(props: Mapping[str, Any]) -> Iterator[str]:
    if not _true(get(props, "rootBlockDevice", "encrypted")):
        yield "root block device is not encrypted"
    for d in as_list(props.get("ebsBlockDevices")):
        if not _true(d.get("encrypted")):
            yield f"EBS block device {d.get('deviceName', '?')} is not encrypted"


def check_by_default(props: Mapping[str, Any]) -> Iterator[str]:
    if props.get("enabled") is False:
        yield "turns EBS encryption by default off for the region"


def check_snapshot_copy(props: Mapping[str, Any]) -> Iterator[str]:
    if not _true(props.get("encrypted")):
        yield "snapshot copy is not encrypted"


def check_volume_cmk(props: Mapping[str, Any]) -> Iterator[str]:
    if _true(props.get("encrypted")) and not props.get("kmsKeyId"):
        yield "volume is encrypted with the AWS managed key, not a customer-managed kmsKeyId"


_S = "ebs"
_ENC = "164.312(a)(2)(iv)"
RULES = [
    Rule("ebs-volume-encrypted", "EBS volumes are encrypted.", _S, HIGH, _ENC,
         "AWS Config encrypted-volumes / checkov CKV_AWS_3", "Set encrypted true (and kmsKeyId).",
         check_volume,
         types=VOLUME),
    Rule("ebs-volume-cmk", "Encrypted EBS volumes use a customer-managed key.", _S, MEDIUM,
         _ENC, "checkov CKV_AWS_189", "Set kmsKeyId to a customer-managed key.",
         check_volume_cmk, types=VOLUME),
    Rule("ebs-launch-template-encrypted", "Launch template block devices (node disks) are "
         "encrypted.", _S, HIGH, _ENC, "checkov CKV_AWS_8", "Set ebs.encrypted \"true\" on "
         "every blockDeviceMappings entry.", check_launch_template, types=LAUNCH_TEMPLATE),
    Rule("ebs-instance-disks-encrypted", "EC2 instance root and data disks are encrypted.", _S,
         HIGH, _ENC, "AWS Config encrypted-volumes / checkov CKV_AWS_8",
         "Set rootBlockDevice.encrypted and ebsBlockDevices[].encrypted true.",
         check_instance, types=INSTANCE),
    Rule("ebs-encryption-by-default", "The stack never turns regional EBS encryption by "
         "default off.", _S, HIGH, _ENC, "AWS Config ec2-ebs-encryption-by-default",
         "Set enabled true (or drop the resource).", check_by_default, types=BY_DEFAULT),
    Rule("ebs-snapshot-copy-encrypted", "EBS snapshot copies are encrypted.", _S, HIGH, _ENC,
         "checkov CKV_AWS_183",
         "Set encrypted true on the snapshot copy.", check_snapshot_copy, types=SNAPSHOT_COPY),
]
