"""Typed stack configuration: read once, validated before any resource is declared.

Every key lives in the ``labelstack:`` namespace of the stack file and is declared,
with the same default and description, in ``Pulumi.yaml`` (a test keeps them equal).
Environment-dependent behaviour (Multi-AZ, protection, retention floors...) is derived
from ``profile`` in :class:`Profile` rather than being a separate knob, so a prod stack
cannot be configured into a non-prod posture by accident.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
from dataclasses import dataclass
from typing import Any, Literal, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

NAMESPACE = "labelstack"

#: Retention values CloudWatch Logs accepts (days).
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731,
                      1096, 1827, 2192, 2557, 2922, 3288, 3653)
#: EKS versions this bundle is tested against (standard support as of its release).
EKS_VERSIONS = ("1.32", "1.33", "1.34")
#: PostgreSQL majors Label Studio 1.23 supports on RDS.
POSTGRES_MAJORS = ("16", "17")

_REGION = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
_ROLE_ARN = re.compile(r"^arn:aws(-[a-z]+)*:iam::\d{12}:role/[\w+=,.@/-]+$")
_PROJECT = re.compile(r"^[a-z][a-z0-9-]{1,30}$")
_PREFIX = re.compile(r"^[A-Za-z0-9!_.*'()-]+(/[A-Za-z0-9!_.*'()-]+)*/$")
_INSTANCE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")


class ConfigError(ValueError):
    """Raised with one line per bad key: the key, the value, what is allowed."""


@dataclass(frozen=True)
class Profile:
    """Posture derived from the environment profile."""

    name: str
    min_azs: int
    multi_az_db: bool
    deletion_protection: bool
    protect_data: bool  # pulumi `protect` + retain_on_delete on data resources
    force_destroy: bool  # buckets emptied on destroy (ephemeral only)
    db_backup_days: int
    min_log_retention_days: int
    gpu_min_size: int
    system_min_size: int


PROFILES: dict[str, Profile] = {
    "ephemeral": Profile("ephemeral", 2, False, False, False, True, 7, 7, 0, 1),
    "dev": Profile("dev", 2, False, False, False, False, 7, 30, 0, 1),
    "staging": Profile("staging", 2, True, True, False, False, 14, 90, 0, 2),
    "prod": Profile("prod", 3, True, True, True, False, 35, 365, 1, 3),
}


class StackConfig(BaseModel):
    """All ``labelstack:*`` keys. Field docs are the key descriptions."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid",
                              frozen=True)

    profile: Literal["ephemeral", "dev", "staging", "prod"] = Field(
        "dev", description="Environment profile: ephemeral, dev, staging or prod. Drives sizing, "
        "Multi-AZ, backups, retention floors and destroy protection.")
    owner: str = Field("platform-team", min_length=1, max_length=128,
                       description="Owner tag applied to every taggable resource.")
    cost_center: str = Field("labeling", min_length=1, max_length=128,
                             description="Cost-centre tag applied to every taggable resource.")
    az_count: int = Field(2, description="Availability zones to spread subnets over: 2 or 3 "
                          "(prod requires 3).")
    vpc_cidr: str = Field("10.40.0.0/16", description="VPC IPv4 CIDR, a private range of /16 to "
                          "/20.")
    egress_mode: Literal["none", "nat"] = Field(
        "none", description="Outbound internet: none (VPC endpoints only) or nat (an internet "
        "gateway and a regional NAT gateway serving the app subnets; a relaxation flagged by "
        "the policy pack).")
    ingress_mode: Literal["internal", "public"] = Field(
        "internal", description="Label Studio load balancer: internal, or public (creates public "
        "subnets; a relaxation flagged by the policy pack).")
    image_access: Literal["proxy", "presign"] = Field(
        "proxy", description="How browsers get images: proxy (Label Studio streams them; buckets "
        "stay VPC-endpoint only) or presign (browsers fetch presigned URLs from annotatorCidrs; "
        "adds CORS for labelStudioOrigin).")
    annotator_cidrs: tuple[str, ...] = Field(
        (), description="Public CIDRs annotators browse from; used (and required) only with "
        "imageAccess=presign.")
    label_studio_origin: str = Field(
        "", description="Exact https origin of Label Studio (no trailing slash), the URL users "
        "open; required by the Kubernetes layer (Ingress host, CSRF origin, ALLOWED_HOSTS) and "
        "by imageAccess=presign (bucket CORS rule).")
    source_projects: tuple[str, ...] = Field(
        ("segmentation", "dermatology"), description="Labeling projects; each gets its own "
        "source-image bucket.")
    source_prefixes: tuple[str, ...] = Field(
        ("images/", "tasks/"), description="Prefixes Label Studio may read in each source bucket "
        "(end with /).")
    annotations_prefix: str = Field("exports/", description="Prefix Label Studio may write "
                                    "exports under in the annotations bucket (ends with /).")
    log_retention_days: int = Field(365, description="CloudWatch Logs retention in days; a value "
                                    "CloudWatch accepts, at least the profile's floor (365 in "
                                    "prod).")
    break_glass_role_arn: str = Field("", description="IAM role ARN allowed to reach data buckets "
                                      "outside the VPC endpoint (incident response); empty for "
                                      "none.")
    namespace: str = Field("labelstack", description="Kubernetes namespace of the Label Studio "
                           "and SAM2 service accounts.")
    eks_version: str = Field("1.34", description="EKS Kubernetes version (pinned).")
    cluster_public_access_cidrs: tuple[str, ...] = Field(
        (), description="CIDRs allowed to the EKS API over the internet; empty keeps the endpoint "
        "private. Not allowed in prod.")
    admin_role_arns: tuple[str, ...] = Field(
        (), description="IAM role ARNs granted cluster-admin through EKS access entries.")
    system_instance_types: tuple[str, ...] = Field(
        ("m6i.large",), description="Instance types of the system node group.")
    gpu_instance_types: tuple[str, ...] = Field(
        ("g5.xlarge",), description="Instance types of the GPU node group (default: one 24 GB "
        "A10G).")
    gpu_max_size: int = Field(2, description="Maximum GPU nodes (minimum is 0 outside prod, 1 in "
                              "prod).")
    db_instance_class: str = Field("db.t4g.medium", description="RDS instance class for Label "
                                   "Studio's PostgreSQL.")
    db_allocated_storage: int = Field(20, description="RDS storage in GiB (20 to 16384).")
    db_engine_version: str = Field("16", description="PostgreSQL major version: 16 or 17.")
    certificate_arn: str = Field(
        "", description="ACM certificate ARN for Label Studio's HTTPS listener (the host of "
        "labelStudioOrigin); required by the Kubernetes layer. Given explicitly: no ACM "
        "discovery.")
    label_studio_image: str = Field(
        "docker.io/heartexlabs/label-studio", description="Label Studio image repository "
        "(registry/repository); with egressMode=none, a mirror reachable from the VPC (ECR).")
    label_studio_image_tag: str = Field(
        "", description="Label Studio image version pinned by digest, "
        "<version>@sha256:<64 hex>; required by the Kubernetes layer (tags alone are refused).")
    cluster_autoscaler_image: str = Field(
        "registry.k8s.io/autoscaling/cluster-autoscaler", description="Cluster Autoscaler image "
        "repository (registry/repository, the chart's version tag); with egressMode=none, a "
        "mirror reachable from the VPC (ECR pull-through cache).")
    device_plugin_image: str = Field(
        "nvcr.io/nvidia/k8s-device-plugin", description="NVIDIA device plugin image repository "
        "(registry/repository, the chart's version tag); with egressMode=none, a mirror "
        "reachable from the VPC (ECR).")
    gpu_enabled: bool = Field(True, description="Run the SAM2 backend on the GPU node group "
                              "(NVIDIA device plugin installed); false runs it on CPU nodes "
                              "with the chart's CPU values.")
    sam2_image_digest: str = Field(
        "", description="Digest (sha256:<64 hex>) of the SAM2 backend image in the stack's ECR "
        "repository, printed by `make images`; empty: the backend and the bootstrap Job are not "
        "deployed yet.")
    bootstrap_image_digest: str = Field(
        "", description="Digest (sha256:<64 hex>) of the bootstrap image in the stack's ECR "
        "repository, printed by `make images`; empty: the bootstrap Job is not deployed yet.")
    sam2_model: Literal["tiny", "small", "base_plus", "large"] = Field(
        "large", description="SAM2.1 model size the backend loads: tiny, small, base_plus or "
        "large (the checkpoint at sam2WeightsKey must match).")
    sam2_weights_key: str = Field(
        "sam2.1/sam2.1_hiera_large.pt", description="Key of the SAM2 checkpoint in the models "
        "bucket (upload it yourself; nothing is downloaded from the internet).")
    sam2_weights_sha256: str = Field(
        "", description="sha256 of the checkpoint at sam2WeightsKey; the backend refuses to "
        "start on a mismatch. Required with sam2ImageDigest.")
    service_linked_roles: Literal["lookup", "create", "existing"] = Field(
        "lookup", description="Service-linked roles the stack needs (Auto Scaling, EKS node "
        "groups, Elastic Load Balancing, RDS): lookup (create those the account lacks), create "
        "(declare all: a fresh account) or existing (create none). Created roles are kept on "
        "destroy.")
    admin_access: Literal["none", "ssm"] = Field(
        "none", description="How operators reach the private cluster: none (your own CI runner "
        "or VPN into the VPC) or ssm (Session Manager endpoints plus a small admin instance for "
        "port forwarding; no inbound rules).")
    kubernetes_layer: bool = Field(
        True, description="Deploy the Kubernetes layer (Label Studio, SAM2, the bootstrap Job). "
        "false for a new stack's first `pulumi up` from outside the VPC: AWS layers only, then "
        "reach the private API (adminAccess) and set it to true.")

    # ---- single-field checks -------------------------------------------------------------
    @field_validator("az_count")
    @classmethod
    def _azs(cls, v: int) -> int:
        if v not in (2, 3):
            raise ValueError("must be 2 or 3")
        return v

    @field_validator("vpc_cidr")
    @classmethod
    def _vpc(cls, v: str) -> str:
        net = _network(v)
        if not net.is_private or not 16 <= net.prefixlen <= 20:
            raise ValueError("must be a private IPv4 range (10/8, 172.16/12, 192.168/16) of /16 "
                             "to /20")
        return v

    @field_validator("annotator_cidrs", "cluster_public_access_cidrs")
    @classmethod
    def _cidrs(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for c in v:
            net = _network(c)
            if net.prefixlen == 0:
                raise ValueError(f"{c} opens access to the whole internet; list your own ranges")
        return v

    @field_validator("label_studio_origin")
    @classmethod
    def _origin(cls, v: str) -> str:
        if v and not re.fullmatch(r"https://[a-z0-9.-]+(:\d+)?", v):
            raise ValueError("must be an https origin such as https://labels.example.org (no "
                             "path, no trailing slash)")
        return v

    @field_validator("source_projects")
    @classmethod
    def _projects(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            raise ValueError("must name at least one labeling project")
        for p in v:
            if not _PROJECT.fullmatch(p):
                raise ValueError(f"{p!r} is not lowercase letters, digits and '-' (2-31 chars)")
        if len(set(v)) != len(v):
            raise ValueError("names must be unique")
        return v

    @field_validator("source_prefixes")
    @classmethod
    def _prefixes(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            raise ValueError("must list at least one prefix")
        for p in v:
            _check_prefix(p)
        return v

    @field_validator("annotations_prefix")
    @classmethod
    def _ann_prefix(cls, v: str) -> str:
        _check_prefix(v)
        return v

    @field_validator("log_retention_days")
    @classmethod
    def _retention(cls, v: int) -> int:
        if v not in LOG_RETENTION_DAYS:
            raise ValueError(f"must be one of {', '.join(map(str, LOG_RETENTION_DAYS))}")
        return v

    @field_validator("break_glass_role_arn")
    @classmethod
    def _break_glass(cls, v: str) -> str:
        if v and not _ROLE_ARN.fullmatch(v):
            raise ValueError("must be an IAM role ARN (arn:aws:iam::<account>:role/<name>) or "
                             "empty")
        return v

    @field_validator("admin_role_arns")
    @classmethod
    def _admins(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for a in v:
            if not _ROLE_ARN.fullmatch(a):
                raise ValueError(f"{a!r} is not an IAM role ARN (arn:aws:iam::<account>:role/"
                                 "<name>)")
        return v

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, v: str) -> str:
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", v):
            raise ValueError("must be a Kubernetes namespace name (RFC 1123 label)")
        return v

    @field_validator("eks_version")
    @classmethod
    def _eks(cls, v: str) -> str:
        if v not in EKS_VERSIONS:
            raise ValueError(f"must be one of {', '.join(EKS_VERSIONS)}")
        return v

    @field_validator("system_instance_types", "gpu_instance_types")
    @classmethod
    def _instances(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            raise ValueError("must list at least one instance type")
        for t in v:
            if not _INSTANCE.fullmatch(t):
                raise ValueError(f"{t!r} is not an EC2 instance type such as m6i.large")
        return v

    @field_validator("gpu_max_size")
    @classmethod
    def _gpu_max(cls, v: int) -> int:
        if not 1 <= v <= 100:
            raise ValueError("must be between 1 and 100")
        return v

    @field_validator("db_instance_class")
    @classmethod
    def _db_class(cls, v: str) -> str:
        if not re.fullmatch(r"db\.[a-z0-9]+\.[a-z0-9]+", v):
            raise ValueError("must be an RDS instance class such as db.t4g.medium")
        return v

    @field_validator("db_allocated_storage")
    @classmethod
    def _db_storage(cls, v: int) -> int:
        if not 20 <= v <= 16384:
            raise ValueError("must be between 20 and 16384 GiB")
        return v

    @field_validator("certificate_arn")
    @classmethod
    def _certificate(cls, v: str) -> str:
        if v and not re.fullmatch(r"arn:aws(-[a-z]+)*:acm:[a-z0-9-]+:\d{12}:certificate/[\w-]+", v):
            raise ValueError("must be an ACM certificate ARN (arn:aws:acm:<region>:<account>:"
                             "certificate/<id>) or empty")
        return v

    @field_validator("label_studio_image", "cluster_autoscaler_image", "device_plugin_image")
    @classmethod
    def _ls_image(cls, v: str) -> str:
        if not re.fullmatch(r"[a-z0-9.-]+(:\d+)?/[a-z0-9._/-]+", v):
            raise ValueError("must be registry/repository without a tag, e.g. "
                             "<account>.dkr.ecr.<region>.amazonaws.com/<repository>")
        return v

    @field_validator("label_studio_image_tag")
    @classmethod
    def _ls_image_tag(cls, v: str) -> str:
        if v and not re.fullmatch(r"[\w.-]+@sha256:[0-9a-f]{64}", v):
            raise ValueError("must be <version>@sha256:<64 hex digits>: images are pinned by "
                             "digest")
        return v

    @field_validator("db_engine_version")
    @classmethod
    def _db_engine(cls, v: str) -> str:
        if v.split(".")[0] not in POSTGRES_MAJORS:
            raise ValueError(f"major version must be one of {', '.join(POSTGRES_MAJORS)}")
        return v

    @field_validator("sam2_image_digest", "bootstrap_image_digest")
    @classmethod
    def _image_digest(cls, v: str) -> str:
        if v and not re.fullmatch(r"sha256:[0-9a-f]{64}", v):
            raise ValueError("must be sha256:<64 hex digits> (`make images` prints it) or empty")
        return v

    @field_validator("sam2_weights_sha256")
    @classmethod
    def _weights_sha(cls, v: str) -> str:
        if v and not re.fullmatch(r"[0-9a-f]{64}", v):
            raise ValueError("must be 64 lowercase hex digits (sha256sum of the checkpoint)")
        return v

    @field_validator("sam2_weights_key")
    @classmethod
    def _weights_key(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9!_.*'()-]+(/[A-Za-z0-9!_.*'()-]+)*\.pt", v):
            raise ValueError("must be an S3 key ending in .pt, e.g. sam2.1/sam2.1_hiera_large.pt")
        return v

    # ---- cross-field checks ----------------------------------------------------------------
    @model_validator(mode="after")
    def _posture(self) -> StackConfig:
        prof = PROFILES[self.profile]
        if self.az_count < prof.min_azs:
            raise _KeyError("azCount", self.az_count, f"profile {self.profile} needs at least "
                            f"{prof.min_azs} availability zones")
        if self.log_retention_days < prof.min_log_retention_days:
            raise _KeyError("logRetentionDays", self.log_retention_days,
                            f"profile {self.profile} keeps logs at least "
                            f"{prof.min_log_retention_days} days")
        if self.image_access == "presign":
            if not self.annotator_cidrs:
                raise _KeyError("annotatorCidrs", list(self.annotator_cidrs),
                                "imageAccess=presign needs the annotators' CIDRs")
            if not self.label_studio_origin:
                raise _KeyError("labelStudioOrigin", self.label_studio_origin,
                                "imageAccess=presign needs the Label Studio origin for CORS")
        elif self.annotator_cidrs:
            raise _KeyError("annotatorCidrs", list(self.annotator_cidrs),
                            "only used with imageAccess=presign; remove it or set imageAccess")
        if self.profile == "prod" and self.cluster_public_access_cidrs:
            raise _KeyError("clusterPublicAccessCidrs", list(self.cluster_public_access_cidrs),
                            "prod keeps the EKS API private; reach it from inside the VPC")
        if self.sam2_image_digest and not self.sam2_weights_sha256:
            raise _KeyError("sam2WeightsSha256", self.sam2_weights_sha256,
                            "required with sam2ImageDigest: the sha256sum of the checkpoint "
                            "uploaded at sam2WeightsKey")
        if self.bootstrap_image_digest and not self.sam2_image_digest:
            raise _KeyError("bootstrapImageDigest", self.bootstrap_image_digest,
                            "the bootstrap connects projects to the SAM2 backend: set "
                            "sam2ImageDigest too (`make images` builds both)")
        return self

    @property
    def posture(self) -> Profile:
        """The profile-derived posture."""
        return PROFILES[self.profile]


class _KeyError(ValueError):
    """A cross-field error that knows which key it is about."""

    def __init__(self, key: str, value: Any, reason: str) -> None:
        super().__init__(reason)
        self.key, self.value, self.reason = key, value, reason


def _network(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a CIDR block ({exc})") from None


def _check_prefix(p: str) -> None:
    if not _PREFIX.fullmatch(p):
        raise ValueError(f"{p!r} must be an S3 key prefix like images/ (no leading slash, "
                         "ends with /)")


def _describe(key: str, value: Any, reason: str) -> str:
    return f"{NAMESPACE}:{key}: got {json.dumps(value)}; {reason}"


def parse(raw: dict[str, Any]) -> StackConfig:
    """Validate raw camelCase key/values (already JSON-decoded) into a :class:`StackConfig`.

    Raises :class:`ConfigError` with one line per problem, each naming the key.
    """
    try:
        return StackConfig.model_validate(raw)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            ctx_err = (err.get("ctx") or {}).get("error")
            if isinstance(ctx_err, _KeyError):
                lines.append(_describe(ctx_err.key, ctx_err.value, ctx_err.reason))
                continue
            key = str(err["loc"][0]) if err["loc"] else "?"
            value = raw.get(key, err.get("input"))
            if err["type"] == "extra_forbidden":
                close = difflib.get_close_matches(key, sorted(config_keys()), n=1)
                reason = (f"unknown key; did you mean {NAMESPACE}:{close[0]}? (fix the spelling)"
                          if close else f"unknown key; known keys are "
                          f"{', '.join(sorted(config_keys()))} (check the spelling)")
            elif err["type"] == "literal_error":
                reason = f"must be one of {err['ctx']['expected']}"
            else:
                reason = err["msg"].removeprefix("Value error, ")
            lines.append(_describe(key, value, reason))
        raise ConfigError("invalid stack configuration:\n  " + "\n  ".join(lines)) from None


def config_keys() -> dict[str, Any]:
    """camelCase key -> pydantic field, in declaration order."""
    return {f.alias or n: f for n, f in StackConfig.model_fields.items()}


def _decode(key: str, value: str) -> Any:
    """Pulumi stores arrays and numbers as strings: decode JSON for non-string keys."""
    field = config_keys().get(key)
    if field is None or field.annotation is str or get_origin(field.annotation) is Literal:
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def load() -> StackConfig:
    """Read and validate the ``labelstack:*`` keys of the current stack.

    Unknown keys in the namespace are errors too (a typo would otherwise be ignored), and so
    are unknown ``aws:`` keys, other namespaces and credentials that are not Pulumi secrets.
    """
    import pulumi.runtime.config as runtime_config

    from infra import stack_file  # it imports this module

    prefix = f"{NAMESPACE}:"
    values = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    lines = stack_file.check_keys(
        [k for k in values if not k.startswith(prefix)],
        [k for k in values if not runtime_config.is_config_secret(k)])
    if lines:
        raise ConfigError("invalid stack configuration:\n  " + "\n  ".join(lines))
    raw = {k[len(prefix):]: _decode(k[len(prefix):], v) for k, v in values.items()
           if k.startswith(prefix)}
    return parse(raw)
